//! The REST side of a node: rooms, membership and history, each asked by a [`Caller`] and
//! decided by the policy, and the types it answers with.

use serde::{Deserialize, Serialize};

use super::Chat;
use crate::{
    backend::history::{ConversationCursor, ConversationPage, HistoryPage},
    backend::store::{AddMember, Member, RoomInfo, Visibility},
    error::{BackendError, Error},
    hooks::{CreateRoomEvent, Decision, RoomEvent},
    protocol::{MessageId, RoomId, User, UserId},
    Caller,
};

/// Members listed with a room's details (`GET /rooms/{roomId}`); the rest page through
/// `GET /rooms/{roomId}/members`.
pub const ROOM_DETAILS_MEMBERS: usize = 100;

/// A room with how many users are online in it now (`GET /rooms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "name": "General", "createdAt": "2026-11-29T10:00:00Z", "visibility": "public", "online": 3})))]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// The room id.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Public or private.
    pub visibility: Visibility,
    /// Users connected to the room now, across all nodes.
    pub online: usize,
}

/// A page of the room list (`GET /rooms`), newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RoomPage {
    /// The rooms of this page.
    pub rooms: Vec<RoomSummary>,
    /// The cursor of the next page; `null` on the last.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// A room with its first members (`GET /rooms/{roomId}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "name": "General", "createdAt": "2026-11-29T10:00:00Z", "visibility": "public", "memberCount": 1, "members": [{"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice", "online": true}]})))]
#[serde(rename_all = "camelCase")]
pub struct RoomDetails {
    /// The room id.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Public or private.
    pub visibility: Visibility,
    /// How many members the room has.
    pub member_count: usize,
    /// The first members (at most 100), in the order they joined, with whether they are
    /// online now.
    pub members: Vec<Member>,
}

/// A page of a room's members (`GET /rooms/{roomId}/members`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MemberPage {
    /// The members of this page, in the order they joined.
    pub members: Vec<Member>,
    /// The cursor of the next page; `null` on the last.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// A cursor the store did not issue is the client's mistake, not an outage.
fn bad_cursor(err: BackendError) -> Error {
    match err {
        BackendError::InvalidCursor => Error::BadCursor,
        other => other.into(),
    }
}

impl Chat {
    /// Creates a room for `caller`, who becomes its owner and first member. The name
    /// defaults to "Room " and the first 8 characters of its id.
    ///
    /// # Errors
    /// [`Error::RateLimited`] over the caller's room-creation quota
    /// ([`crate::ChatConfig::user_rooms_per_minute`], on this node and, with
    /// [`crate::ChatConfig::shared_user_limits`], on every node); [`Error::Forbidden`] if the policy
    /// refuses; [`Error::Unavailable`] if a store fails.
    pub async fn create_room(
        &self,
        caller: &Caller,
        name: Option<String>,
        visibility: Visibility,
    ) -> Result<RoomInfo, Error> {
        self.take_limit(&caller.user.id, crate::limits::Limit::RoomCreations)
            .await?;
        let id = uuid::Uuid::new_v4().to_string();
        let name = name.unwrap_or_else(|| format!("Room {}", &id[..8]));
        let event = CreateRoomEvent::new(caller.clone(), name.clone(), visibility);
        if let Decision::Deny(reason) = self.policy().create_room(&event, self).await {
            return Err(Error::Forbidden(reason));
        }
        let room = self
            .store_room(id, name, visibility, Some(caller.user.id.clone()))
            .await?;
        self.add_member(&room.room_id, &caller.user).await?;
        Ok(room)
    }

    /// Creates a room from the host's side: no caller, no policy asked, no owner and no
    /// members yet. The name defaults as in [`Chat::create_room`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the room store fails.
    pub async fn open_room(
        &self,
        name: Option<String>,
        visibility: Visibility,
    ) -> Result<RoomInfo, Error> {
        let id = uuid::Uuid::new_v4().to_string();
        let name = name.unwrap_or_else(|| format!("Room {}", &id[..8]));
        self.store_room(id, name, visibility, None).await
    }

    async fn store_room(
        &self,
        id: String,
        name: String,
        visibility: Visibility,
        owner: Option<UserId>,
    ) -> Result<RoomInfo, Error> {
        let created_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| BackendError::Corrupt(e.to_string()))?;
        let room = RoomInfo {
            name,
            room_id: RoomId::new(id),
            created_at,
            visibility,
            owner,
        };
        self.backend().rooms.create(room.clone()).await?;
        Ok(room)
    }

    /// A page of the rooms `caller` sees listed, newest first, with who is online.
    ///
    /// # Errors
    /// [`Error::BadFrame`] for a cursor this chat never issued; [`Error::Unavailable`].
    pub async fn rooms(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RoomPage, Error> {
        let limit = limit.clamp(1, self.config().history_page_max);
        let page = self
            .backend()
            .rooms
            .list(&caller.user.id, cursor, limit)
            .await
            .map_err(bad_cursor)?;
        let mut listed = Vec::with_capacity(page.items.len());
        for room in page.items {
            // The store lists public rooms and the private rooms the caller is a member of;
            // membership of public rooms is not looked up one by one (see `Policy::listed`).
            let is_member = room.visibility == Visibility::Private;
            let event = RoomEvent::new(caller.clone(), room).member(is_member);
            if self.policy().listed(&event, self).await {
                listed.push(event.room);
            }
        }
        let ids: Vec<RoomId> = listed.iter().map(|r| r.room_id.clone()).collect();
        let online = self.backend().presence.online_counts(&ids).await?;
        let rooms = listed
            .into_iter()
            .zip(online.into_iter().chain(std::iter::repeat(0)))
            .map(|(r, online)| RoomSummary {
                room_id: r.room_id,
                name: r.name,
                created_at: r.created_at,
                visibility: r.visibility,
                online,
            })
            .collect();
        Ok(RoomPage {
            rooms,
            next_cursor: page.next,
        })
    }

    /// One room with its first members, if `caller` may read it.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`] (also when the policy refuses), [`Error::Unavailable`].
    pub async fn room(&self, caller: &Caller, room: &RoomId) -> Result<RoomDetails, Error> {
        let info = self.readable(caller, room).await?;
        let member_count = self.backend().rooms.member_count(room).await?;
        let members = self.member_page(room, None, ROOM_DETAILS_MEMBERS).await?;
        Ok(RoomDetails {
            room_id: info.room_id,
            name: info.name,
            created_at: info.created_at,
            visibility: info.visibility,
            member_count,
            members: members.members,
        })
    }

    /// A page of a room's members, if `caller` may read the room.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], [`Error::BadFrame`] (cursor), [`Error::Unavailable`].
    pub async fn members(
        &self,
        caller: &Caller,
        room: &RoomId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MemberPage, Error> {
        self.readable(caller, room).await?;
        let limit = limit.clamp(1, self.config().history_page_max);
        self.member_page(room, cursor, limit).await
    }

    async fn member_page(
        &self,
        room: &RoomId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MemberPage, Error> {
        let backend = self.backend();
        let page = backend
            .rooms
            .members(room, cursor, limit)
            .await
            .map_err(bad_cursor)?;
        // The page's users only: a room's size never matters.
        let ids: Vec<UserId> = page.items.iter().map(|u| u.id.clone()).collect();
        let online = backend.presence.are_online(room, &ids).await?;
        Ok(MemberPage {
            members: page
                .items
                .into_iter()
                .zip(online.into_iter().chain(std::iter::repeat(false)))
                .map(|(u, online)| Member {
                    online,
                    id: u.id,
                    name: u.name,
                })
                .collect(),
            next_cursor: page.next,
        })
    }

    /// A room's stored record, whoever asks (for the host; clients go through the policy).
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], or [`Error::Unavailable`] if the room store fails.
    pub async fn room_info(&self, room: &RoomId) -> Result<RoomInfo, Error> {
        self.backend()
            .rooms
            .get(room)
            .await?
            .ok_or_else(|| Error::RoomNotFound(room.clone()))
    }

    /// The room, if `caller` may read it; a refusal looks like a missing room.
    async fn readable(&self, caller: &Caller, room: &RoomId) -> Result<RoomInfo, Error> {
        let info = self.room_info(room).await?;
        let is_member = self
            .backend()
            .rooms
            .is_member(room, &caller.user.id)
            .await?;
        let event = RoomEvent::new(caller.clone(), info).member(is_member);
        match self.policy().read(&event, self).await {
            Decision::Allow => Ok(event.room),
            Decision::Deny(_) => Err(Error::RoomNotFound(room.clone())),
        }
    }

    /// `caller` joins `room` (`POST /join-room/{roomId}`) and is a member from now on.
    /// `invited`: the caller presented a valid invite to this room.
    ///
    /// # Errors
    /// [`Error::RateLimited`] (the caller's joins on this node, shared with the WebSocket
    /// `join`), [`Error::RoomNotFound`] (also a private room the caller may not join: its
    /// existence is not revealed), [`Error::Forbidden`], [`Error::Unavailable`].
    pub async fn join_room(
        &self,
        caller: &Caller,
        room: &RoomId,
        invited: bool,
    ) -> Result<RoomInfo, Error> {
        self.take_limit(&caller.user.id, crate::limits::Limit::Joins)
            .await?;
        let info = self.room_info(room).await?;
        let is_member = self
            .backend()
            .rooms
            .is_member(room, &caller.user.id)
            .await?;
        let event = RoomEvent::new(caller.clone(), info)
            .member(is_member)
            .invited(invited);
        self.admit(&event).await?;
        self.add_member_capped(room, &caller.user).await?;
        Ok(event.room)
    }

    /// The policy's `join` decision; a private room the caller may not see is "not found".
    pub(crate) async fn admit(&self, event: &RoomEvent) -> Result<(), Error> {
        match self.policy().join(event, self).await {
            Decision::Allow => Ok(()),
            Decision::Deny(_)
                if event.room.visibility == Visibility::Private && !event.is_member =>
            {
                Err(Error::RoomNotFound(event.room.room_id.clone()))
            }
            Decision::Deny(reason) => Err(Error::Forbidden(reason)),
        }
    }

    /// `caller` stops being a member of `room` (`DELETE /rooms/{roomId}/members/me`).
    ///
    /// # Errors
    /// [`Error::RoomNotFound`] if the caller was not a member; [`Error::Unavailable`].
    /// The caller's connections in the room, on every instance, leave it too (`left`).
    pub async fn leave_room(&self, caller: &Caller, room: &RoomId) -> Result<(), Error> {
        if self.remove_member(room, &caller.user.id).await? {
            Ok(())
        } else {
            Err(Error::RoomNotFound(room.clone()))
        }
    }

    /// The room, if `caller` is a member of it (who may invite others).
    ///
    /// # Errors
    /// [`Error::RoomNotFound`] if the caller is not a member; [`Error::Unavailable`].
    pub async fn membership(&self, caller: &Caller, room: &RoomId) -> Result<RoomInfo, Error> {
        let info = self.room_info(room).await?;
        if self
            .backend()
            .rooms
            .is_member(room, &caller.user.id)
            .await?
        {
            Ok(info)
        } else {
            Err(Error::RoomNotFound(room.clone()))
        }
    }

    /// Makes `user` a member of `room`, with no policy asked (for the host).
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], or [`Error::Unavailable`] if a store fails.
    pub async fn add_member(&self, room: &RoomId, user: &User) -> Result<(), Error> {
        // The store checks the room's existence in the same step as the insert.
        if !self.backend().rooms.add_member(room, user).await? {
            return Err(Error::RoomNotFound(room.clone()));
        }
        Ok(())
    }

    /// Makes `user` a member of `room` within `ChatConfig::max_members_per_room` (for
    /// clients: `join-room`, a WebSocket `join`).
    pub(crate) async fn add_member_capped(&self, room: &RoomId, user: &User) -> Result<(), Error> {
        let limit = self.config().max_members_per_room;
        match self
            .backend()
            .rooms
            .add_member_capped(room, user, limit)
            .await?
        {
            AddMember::Member => Ok(()),
            AddMember::NoRoom => Err(Error::RoomNotFound(room.clone())),
            AddMember::Full => Err(Error::RoomFull {
                room: room.clone(),
                limit,
            }),
        }
    }

    /// Lets a client at `address` create one more guest, within
    /// [`ChatConfig::guests_per_minute`](crate::ChatConfig::guests_per_minute) for its address
    /// (an IPv6 one by its /64 prefix), counted for every instance on the backend (with
    /// Redis, by Redis's clock). The caller (the HTTP layer) says which address that is;
    /// clients it cannot tell apart share one address, and so one limit.
    ///
    /// # Errors
    /// [`Error::RateLimited`] ([`Limit::Guests`](crate::Limit::Guests)) with how long to
    /// wait; [`Error::Unavailable`] if the backend fails.
    pub async fn admit_guest(&self, address: std::net::IpAddr) -> Result<(), Error> {
        let block = crate::limits::client_block(address);
        let per_minute = self.config().guests_per_minute;
        match self.backend().rooms.admit_guest(block, per_minute).await? {
            Ok(()) => Ok(()),
            Err(retry_after) => {
                crate::metrics::metrics().rate_limited(crate::Limit::Guests);
                Err(Error::RateLimited {
                    limit: crate::Limit::Guests,
                    retry_after,
                })
            }
        }
    }

    /// Records that `user` exists (so that direct messages to it tell "offline" from
    /// "unknown").
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the room store fails.
    pub async fn remember(&self, user: &User) -> Result<(), Error> {
        Ok(self.backend().rooms.remember_user(user).await?)
    }

    /// Whether two users are members of a common room.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the room store fails.
    pub async fn share_a_room(&self, a: &UserId, b: &UserId) -> Result<bool, Error> {
        Ok(self.backend().rooms.share_a_room(a, b).await?)
    }

    /// A page of a room's history, oldest first, if `caller` may read the room.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`]; [`Error::BadCursor`] for a `before` this chat never issued;
    /// [`Error::Unavailable`] if the backend fails.
    pub async fn history(
        &self,
        caller: &Caller,
        room: &RoomId,
        before: Option<&MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        self.readable(caller, room).await?;
        let limit = limit.clamp(1, self.config().history_page_max);
        self.backend()
            .history
            .page(room, before, limit)
            .await
            .map_err(bad_cursor)
    }

    /// A page of the direct messages between `caller` and `peer` (both ways), oldest first, as
    /// the `direct` frames that were delivered (`ChatConfig::keep_direct_history`). Only the
    /// caller's own conversations: there is no one else's to ask for. A user the chat never
    /// saw has an empty history, like one the caller never wrote to.
    ///
    /// # Errors
    /// [`Error::BadCursor`] for a `before` that is not a direct message id;
    /// [`Error::Unavailable`] if the backend fails.
    pub async fn direct_history(
        &self,
        caller: &Caller,
        peer: &UserId,
        before: Option<&MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        let limit = limit.clamp(1, self.config().history_page_max);
        self.backend()
            .history
            .direct_page(&caller.user.id, peer, before, limit)
            .await
            .map_err(bad_cursor)
    }

    /// A page of the caller's conversations (`ChatConfig::keep_direct_history`): each other
    /// user a direct message was kept with, either way, and the last such message, the most
    /// recent conversation first; page on with `before` set to the page's `next_before`. At
    /// most `ChatConfig::conversations_per_user` are listed, none whose last message is older
    /// than the history's age.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the backend fails.
    pub async fn conversations(
        &self,
        caller: &Caller,
        before: Option<&ConversationCursor>,
        limit: usize,
    ) -> Result<ConversationPage, Error> {
        let limit = limit.clamp(1, self.config().history_page_max);
        self.backend()
            .history
            .conversations(&caller.user.id, before, limit)
            .await
            .map_err(bad_cursor)
    }
}
