//! The REST side of a node: rooms, membership and history, and the types it answers with.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::Chat;
use crate::{
    backend::history::HistoryPage,
    backend::store::{Member, RoomInfo, Visibility},
    error::{BackendError, Error},
    protocol::{MessageId, RoomId, User, UserId},
};

/// A room with how many users are online in it now (`GET /rooms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "name": "General", "createdAt": "2026-11-29T10:00:00Z", "online": 3})))]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// The room id.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Users connected to the room now, across all nodes.
    pub online: usize,
}

/// A room with its members (`GET /rooms/{roomId}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "name": "General", "createdAt": "2026-11-29T10:00:00Z", "members": [{"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice", "online": true}]})))]
#[serde(rename_all = "camelCase")]
pub struct RoomDetails {
    /// The room id.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Everyone who joined the room, with whether they are online now.
    pub members: Vec<Member>,
}

impl Chat {
    /// Creates a room named `name` (default: "Room " and the first 8 characters of its id).
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the room store fails.
    pub async fn create_room(&self, name: Option<String>) -> Result<RoomInfo, Error> {
        let now = time::OffsetDateTime::now_utc();
        let created_at = now
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| BackendError::Corrupt(e.to_string()))?;
        let id = uuid::Uuid::new_v4().to_string();
        let room = RoomInfo {
            name: name.unwrap_or_else(|| format!("Room {}", &id[..8])),
            room_id: RoomId::new(id),
            created_at,
            visibility: Visibility::Public,
            owner: None,
        };
        self.backend().rooms.create(room.clone()).await?;
        Ok(room)
    }

    /// All rooms, oldest first, with who is online.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if a store fails.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, Error> {
        let viewer = UserId::new("");
        let mut rooms = self
            .backend()
            .rooms
            .list(&viewer, None, usize::MAX)
            .await?
            .items;
        rooms.reverse();
        let ids: Vec<RoomId> = rooms.iter().map(|r| r.room_id.clone()).collect();
        let online = self.backend().presence.online_counts(&ids).await?;
        Ok(rooms
            .into_iter()
            .zip(online.into_iter().chain(std::iter::repeat(0)))
            .map(|(r, online)| RoomSummary {
                room_id: r.room_id,
                name: r.name,
                created_at: r.created_at,
                online,
            })
            .collect())
    }

    /// One room with its members.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], or [`Error::Unavailable`] if a store fails.
    pub async fn room(&self, room: &RoomId) -> Result<RoomDetails, Error> {
        let info = self.room_info(room).await?;
        let backend = self.backend();
        let members = backend.rooms.members(room, None, usize::MAX).await?.items;
        let online: HashSet<UserId> = backend
            .presence
            .online(room, usize::MAX)
            .await?
            .0
            .into_iter()
            .map(|u| u.id)
            .collect();
        Ok(RoomDetails {
            room_id: info.room_id,
            name: info.name,
            created_at: info.created_at,
            members: members
                .into_iter()
                .map(|u| Member {
                    online: online.contains(&u.id),
                    id: u.id,
                    name: u.name,
                })
                .collect(),
        })
    }

    /// A room's stored record.
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

    /// Makes `user` a member of `room` (`POST /join-room/{roomId}`).
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

    /// A page of a room's history, oldest first.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`]; [`Error::Unavailable`] wrapping
    /// [`BackendError::InvalidCursor`] for a `before` this chat never issued.
    pub async fn history(
        &self,
        room: &RoomId,
        before: Option<&MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        self.room_info(room).await?;
        let limit = limit.clamp(1, self.config().history_page_max);
        Ok(self.backend().history.page(room, before, limit).await?)
    }
}
