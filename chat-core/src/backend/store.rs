//! Room and presence state: the [`RoomStore`] and [`PresenceStore`] traits and their types.
//!
//! Both live in the backend (in memory, or Redis) so that every node answers the same.

use serde::{Deserialize, Serialize};

use super::{broker::NodeId, Reply};
use crate::protocol::{RoomId, User, UserId};

/// A room as created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "name": "General", "createdAt": "2026-11-29T10:00:00Z"})))]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    /// The room id, a UUID string.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
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

/// Rooms, their members, and the users the chat has seen.
pub trait RoomStore: Send + Sync + 'static {
    /// Stores a new room.
    fn create(&self, room: RoomInfo) -> Reply<'_, ()>;
    /// The room with this id, if any.
    fn get<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Option<RoomInfo>>;
    /// All rooms, oldest first.
    fn list(&self) -> Reply<'_, Vec<RoomInfo>>;
    /// Makes `user` a member of `room` (idempotent; refreshes the display name). Returns
    /// `false` if the room does not exist.
    fn add_member<'a>(&'a self, room: &'a RoomId, user: &'a User) -> Reply<'a, bool>;
    /// Whether `user` is a member of `room`.
    fn is_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool>;
    /// The members of `room`, in the order they first joined.
    fn members<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Vec<User>>;
    /// Records that a user exists (on token issue and on connect).
    fn remember_user<'a>(&'a self, user: &'a User) -> Reply<'a, ()>;
    /// Whether the chat has seen this user.
    fn user_known<'a>(&'a self, user: &'a UserId) -> Reply<'a, bool>;
}

/// Who is online in which room, counted per connection and per node, so that `user_joined` and
/// `user_left` are sent once per user (not per tab) and a crashed node's users can be removed.
pub trait PresenceStore: Send + Sync + 'static {
    /// Counts one more connection of `user` in `room` on `node`. Returns `true` when this is
    /// the user's first connection in the room anywhere (send `user_joined`).
    fn enter<'a>(&'a self, room: &'a RoomId, user: &'a User, node: NodeId) -> Reply<'a, bool>;
    /// Counts one connection less. Returns `true` when it was the user's last connection in the
    /// room anywhere (send `user_left`).
    fn exit<'a>(&'a self, room: &'a RoomId, user: &'a User, node: NodeId) -> Reply<'a, bool>;
    /// The users online in `room` now.
    fn online<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Vec<User>>;
    /// How many users are online in each of `rooms`.
    fn online_counts<'a>(&'a self, rooms: &'a [RoomId]) -> Reply<'a, Vec<usize>>;
}
