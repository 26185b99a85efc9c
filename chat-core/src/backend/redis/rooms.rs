//! The Redis room store: `P:rooms` (sorted by creation), each room's info, members and join
//! order, and `P:users`.

use redis::AsyncCommands;

use super::RedisNode;
use crate::{
    backend::{
        store::{RoomInfo, RoomStore},
        Reply,
    },
    error::BackendError,
    protocol::{now_ms, RoomId, User, UserId},
};

impl RoomStore for RedisNode {
    fn create(&self, room: RoomInfo) -> Reply<'_, ()> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let created_ms = time::OffsetDateTime::parse(
                &room.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or_else(|_| now_ms());
            let _: () = redis::pipe()
                .atomic()
                .hset_multiple(
                    keys.room_key(&room.room_id, "info"),
                    &[
                        ("name", room.name.as_str()),
                        ("createdAt", room.created_at.as_str()),
                    ],
                )
                .ignore()
                .zadd(keys.rooms(), room.room_id.as_str(), created_ms)
                .ignore()
                .query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Option<RoomInfo>> {
        Box::pin(async move {
            let (name, created_at): (Option<String>, Option<String>) = self
                .conn()
                .hmget(
                    self.shared.keys.room_key(room, "info"),
                    &["name", "createdAt"],
                )
                .await
                .map_err(BackendError::redis)?;
            Ok(name.zip(created_at).map(|(name, created_at)| RoomInfo {
                room_id: room.clone(),
                name,
                created_at,
            }))
        })
    }

    fn list(&self) -> Reply<'_, Vec<RoomInfo>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let mut conn = self.conn();
            let ids: Vec<String> = conn
                .zrange(keys.rooms(), 0, -1)
                .await
                .map_err(BackendError::redis)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.hmget(
                    keys.room_key(&RoomId::new(id.as_str()), "info"),
                    &["name", "createdAt"],
                );
            }
            let infos: Vec<(Option<String>, Option<String>)> = pipe
                .query_async(&mut conn)
                .await
                .map_err(BackendError::redis)?;
            Ok(ids
                .into_iter()
                .zip(infos)
                .filter_map(|(id, (name, created_at))| {
                    Some(RoomInfo {
                        room_id: RoomId::new(id),
                        name: name?,
                        created_at: created_at?,
                    })
                })
                .collect())
        })
    }

    fn add_member<'a>(&'a self, room: &'a RoomId, user: &'a User) -> Reply<'a, bool> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let added: i64 = self
                .invoke(
                    self.shared
                        .scripts
                        .add_member
                        .key(keys.room_key(room, "info"))
                        .key(keys.room_key(room, "members"))
                        .key(keys.room_key(room, "order"))
                        .key(keys.users())
                        .arg(user.id.as_str())
                        .arg(&user.name)
                        .arg(now_ms()),
                )
                .await?;
            Ok(added == 1)
        })
    }

    fn is_member<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> Reply<'a, bool> {
        Box::pin(async move {
            self.conn()
                .hexists(self.shared.keys.room_key(room, "members"), user.as_str())
                .await
                .map_err(BackendError::redis)
        })
    }

    fn members<'a>(&'a self, room: &'a RoomId) -> Reply<'a, Vec<User>> {
        Box::pin(self.users_with_names(room, "order", "zset"))
    }

    fn remember_user<'a>(&'a self, user: &'a User) -> Reply<'a, ()> {
        Box::pin(async move {
            let _: () = self
                .conn()
                .hset(self.shared.keys.users(), user.id.as_str(), &user.name)
                .await
                .map_err(BackendError::redis)?;
            Ok(())
        })
    }

    fn user_known<'a>(&'a self, user: &'a UserId) -> Reply<'a, bool> {
        Box::pin(async move {
            self.conn()
                .hexists(self.shared.keys.users(), user.as_str())
                .await
                .map_err(BackendError::redis)
        })
    }
}

impl RedisNode {
    pub(super) async fn users_with_names(
        &self,
        room: &RoomId,
        source: &str,
        kind: &str,
    ) -> Result<Vec<User>, BackendError> {
        let keys = &self.shared.keys;
        let (ids, names): (Vec<String>, Vec<Option<String>>) = self
            .invoke(
                self.shared
                    .scripts
                    .users_with_names
                    .key(keys.room_key(room, source))
                    .key(keys.room_key(room, "members"))
                    .arg(kind),
            )
            .await?;
        Ok(ids
            .into_iter()
            .zip(names)
            .map(|(id, name)| User {
                name: name.unwrap_or_else(|| id.clone()),
                id: UserId::new(id),
            })
            .collect())
    }
}
