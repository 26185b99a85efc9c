//! Room and presence state: the [`RoomStore`] and [`PresenceStore`] traits and their types.
//!
//! Both live in the backend (in memory, or Redis) so that every node answers the same.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    broker::{ConnId, Envelope, NodeId},
    Reply,
};
use crate::protocol::{RoomId, User, UserId};

/// Who may see and join a room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Listed to everyone; anyone identified may join.
    #[default]
    Public,
    /// Listed to and readable by members only; joined with an invite.
    Private,
}

/// A room as created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "name": "General", "createdAt": "2026-11-29T10:00:00Z", "visibility": "public"})))]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    /// The room id, a UUID string.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Who may see and join the room; rooms stored before v2 are public.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub visibility: Visibility,
    /// The user who created the room, if the room has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
}

/// One page of a listing; `next` is the opaque cursor of the next page (None: last page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page, in the listing's order.
    pub items: Vec<T>,
    /// The cursor to pass for the page after this one; `None` on the last page.
    pub next: Option<String>,
}

/// A member of a room: a user who joined it, online or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice", "online": true})))]
pub struct Member {
    /// The user's id.
    pub id: UserId,
    /// The user's display name.
    pub name: String,
    /// Whether the user has a connection in the room now, on any node.
    pub online: bool,
}

/// What [`RoomStore::add_member_capped`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddMember {
    /// The user is a member (now, or already was).
    Member,
    /// There is no such room.
    NoRoom,
    /// The room has as many members as it may have; the user is not one of them.
    Full,
}

/// Rooms, their members, and the users the chat has seen.
///
/// Listings are paged with cursors that only the store that issued them reads: every page
/// costs work in proportion to its size, never to the size of the whole listing. A `limit` of
/// 0 is taken as 1. A cursor this store did not issue is
/// [`BackendError::InvalidCursor`](crate::error::BackendError::InvalidCursor); a cursor stays
/// valid when what it pointed at is gone (a member who left), and the next page starts after
/// where it was.
pub trait RoomStore: Send + Sync + 'static {
    /// Stores a new room (a room that exists already is left as it is). Does not add members,
    /// not even the owner.
    fn create(&self, room: RoomInfo) -> Reply<'_, ()>;
    /// The room with this id, if any.
    fn get<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Option<RoomInfo>>;
    /// Newest first: every public room and the private rooms `viewer` is a member of; at most
    /// `limit` after `cursor`. A cursor this store did not issue →
    /// [`BackendError::InvalidCursor`](crate::error::BackendError::InvalidCursor).
    ///
    /// "Newest" is by `created_at` (rooms created in the same instant are ordered by id), so
    /// a room created after a page was read never makes later pages repeat or skip a room.
    fn list<'a>(
        &'a self,
        viewer: &'a UserId,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> Reply<'a, Page<RoomInfo>>;
    /// Makes `user` a member of `room` (idempotent; refreshes the display name). Returns
    /// `false` if the room does not exist.
    fn add_member<'a>(&'a self, room: &'a RoomId, user: &'a User) -> Reply<'a, bool>;
    /// [`RoomStore::add_member`] for a client, within the room's member cap: a user who is
    /// not a member yet is refused ([`AddMember::Full`]) when the room has `max_members`
    /// already, checked in the same step as the insert.
    fn add_member_capped<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        max_members: usize,
    ) -> Reply<'a, AddMember>;
    /// Ends a membership; false if `user` was not a member (or no such room).
    fn remove_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool>;
    /// Whether `user` is a member of `room`.
    fn is_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool>;
    /// Members in the order they first joined; at most `limit` after `cursor` (InvalidCursor
    /// as above). A member who left and joined again is back at the end.
    fn members<'a>(
        &'a self,
        room: &'a RoomId,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> Reply<'a, Page<User>>;
    /// How many members `room` has (0 for no such room).
    fn member_count<'a>(&'a self, room: &'a RoomId) -> Reply<'a, usize>;
    /// Whether the two users are members of at least one common room.
    fn share_a_room<'a>(&'a self, a: &'a UserId, b: &'a UserId) -> Reply<'a, bool>;
    /// Records that a user exists (on token issue, on connect, and on a join, which the store
    /// records by itself), for the store's room TTL from now.
    fn remember_user<'a>(&'a self, user: &'a User) -> Reply<'a, ()>;
    /// Whether the chat has seen this user within the room TTL.
    fn user_known<'a>(&'a self, user: &'a UserId) -> Reply<'a, bool>;
    /// Up to `limit` of the rooms `user` is a member of (which ones is the store's choice):
    /// for ending a user's memberships in batches, each batch costing its size.
    fn user_rooms<'a>(&'a self, user: &'a UserId, limit: usize) -> Reply<'a, Vec<RoomId>>;
    /// Records that `user`'s tokens issued at or before `until` (Unix milliseconds) are
    /// void, for `ttl` (at least the tokens' lifetime: a voided token has expired by then).
    /// A later record replaces an earlier one.
    fn revoke_tokens<'a>(&'a self, user: &'a UserId, until: i64, ttl: Duration) -> Reply<'a, ()>;
    /// Takes one guest creation from the bucket of the client `block` (an IPv4 address or an
    /// IPv6 /64 prefix): `per_minute` a minute, all of them at once after a quiet minute,
    /// counted for every node on this store. `Ok(Err(wait))`: none is left, one is due in
    /// `wait`.
    fn admit_guest<'a>(
        &'a self,
        block: std::net::IpAddr,
        per_minute: u32,
    ) -> Reply<'a, Result<(), Duration>>;
    /// Takes one of `user`'s `quota`, counted for every node on this store (a join, a room
    /// creation; messages take theirs inside the publish, [`NewRoomMessage::quota`]).
    /// [`BackendError::OverQuota`](crate::error::BackendError::OverQuota) when none is left.
    /// Default: nothing is counted (each node's own limits only).
    ///
    /// [`NewRoomMessage::quota`]: super::broker::NewRoomMessage::quota
    fn take_quota<'a>(&'a self, user: &'a UserId, quota: crate::Quota) -> Reply<'a, ()> {
        let _ = (user, quota);
        Box::pin(std::future::ready(Ok(())))
    }
    /// Up to when `user`'s tokens are void (Unix milliseconds), if a record is kept.
    fn tokens_revoked_until<'a>(&'a self, user: &'a UserId) -> Reply<'a, Option<i64>>;
}

/// Who is online in which room, counted per connection and per node, so that `user_joined` and
/// `user_left` are sent once per user (not per tab) and a crashed node's users can be removed.
///
/// Entering and exiting are per connection and idempotent: a connection counted in already
/// is not counted twice, and the exit of a connection that is not counted (it exited already,
/// or its node was reaped) changes nothing. So a failed exit can be retried until it lands
/// (and an exit whose reply was lost, but which happened, is not counted twice).
pub trait PresenceStore: Send + Sync + 'static {
    /// Counts connection `conn` of `user` in `room` on `node`. Returns `true` when this is
    /// the user's first connection in the room anywhere (send `user_joined`); `false` as well
    /// for a connection counted already.
    fn enter<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
    ) -> Reply<'a, bool>;
    /// Counts connection `conn` out. When it was the user's last connection in the room
    /// anywhere, publishes `left` (the room's `user_left`) in the same step and returns
    /// `true`: the announcement cannot be lost between the two, nor sent twice when the exit
    /// is retried.
    fn exit<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
        left: Envelope,
    ) -> Reply<'a, bool>;
    /// At most `limit` of the users online in `room` now (which ones is the store's choice;
    /// all of them, in id order, when there are no more than `limit`), and how many are online
    /// in all.
    fn online<'a>(&'a self, room: &'a RoomId, limit: usize) -> Reply<'a, (Vec<User>, usize)>;
    /// Whether each of `users` is online in `room` now: work in proportion to `users`,
    /// whatever the room's size.
    fn are_online<'a>(&'a self, room: &'a RoomId, users: &'a [UserId]) -> Reply<'a, Vec<bool>>;
    /// How many users are online in each of `rooms`.
    fn online_counts<'a>(&'a self, rooms: &'a [RoomId]) -> Reply<'a, Vec<usize>>;
    /// Records that `node` has `open` WebSockets of `user` now (0: none; the node's own count
    /// is the truth, so a record that a failed call left wrong is right again at the user's
    /// next connection or close there). With `max`, first checks that the user's WebSockets
    /// on every live node, these included, would be at most `max`: `false`, and nothing
    /// recorded, when they would be more. A dead node's record does not count. Default:
    /// nothing is counted across nodes (`true`).
    fn count_sockets<'a>(
        &'a self,
        user: &'a UserId,
        node: NodeId,
        open: usize,
        max: Option<usize>,
    ) -> Reply<'a, bool> {
        let _ = (user, node, open, max);
        Box::pin(std::future::ready(Ok(true)))
    }
}
