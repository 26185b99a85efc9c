//! The Redis presence store: connections per node and user (`:presence`) and per user
//! (`:online`) in each room, mirrored locally so that a reaped node can restore its own.

use super::RedisNode;
use crate::{
    backend::{broker::NodeId, store::PresenceStore, Reply},
    error::BackendError,
    protocol::{RoomId, User, UserId},
    sync::lock,
};

impl PresenceStore for RedisNode {
    fn enter<'a>(&'a self, room: &'a RoomId, user: &'a User, node: NodeId) -> Reply<'a, bool> {
        Box::pin(async move {
            debug_assert_eq!(node, self.shared.node);
            let total = self
                .shared
                .scripts
                .enter(&self.shared, &mut self.conn(), room, user, 1)
                .await?;
            lock(&self.shared.presence)
                .entry((room.clone(), user.id.clone()))
                .or_insert_with(|| (user.clone(), 0))
                .1 += 1;
            Ok(total == 1)
        })
    }

    fn exit<'a>(&'a self, room: &'a RoomId, user: &'a User, node: NodeId) -> Reply<'a, bool> {
        Box::pin(async move {
            {
                let mut local = lock(&self.shared.presence);
                let key = (room.clone(), user.id.clone());
                if let Some(entry) = local.get_mut(&key) {
                    entry.1 = entry.1.saturating_sub(1);
                    if entry.1 == 0 {
                        local.remove(&key);
                    }
                }
            }
            let keys = &self.shared.keys;
            let mut exit = self.shared.scripts.exit.prepare_invoke();
            exit.key(keys.room_key(room, "presence"))
                .key(keys.room_key(room, "online"))
                .key(keys.room_key(room, "info"))
                .key(keys.room_key(room, "members"))
                .key(keys.room_key(room, "order"))
                .key(keys.room_key(room, "log"))
                .arg(format!("{node}|{}", user.id))
                .arg(user.id.as_str())
                .arg(self.shared.config.room_ttl_ms());
            // 1: the user's last connection in the room; 0: not; -1: already reaped.
            let result: i64 = self.invoke(&exit).await?;
            Ok(result == 1)
        })
    }

    fn online<'a>(&'a self, room: &'a RoomId, limit: usize) -> Reply<'a, (Vec<User>, usize)> {
        Box::pin(async move {
            let (mut users, total) = self.users_with_names(room, "online", 0, limit).await?;
            // In id order, as the memory store gives them.
            users.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            let total = total
                .first()
                .map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX));
            Ok((users, total))
        })
    }

    fn are_online<'a>(&'a self, room: &'a RoomId, users: &'a [UserId]) -> Reply<'a, Vec<bool>> {
        Box::pin(async move {
            if users.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
            // HMGET of the given users only: one field each.
            let counts: Vec<Option<i64>> = redis::cmd("HMGET")
                .arg(self.shared.keys.room_key(room, "online"))
                .arg(&ids)
                .query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)?;
            Ok(counts.into_iter().map(|c| c.unwrap_or(0) > 0).collect())
        })
    }

    fn online_counts<'a>(&'a self, rooms: &'a [RoomId]) -> Reply<'a, Vec<usize>> {
        Box::pin(async move {
            if rooms.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for room in rooms {
                pipe.hlen(self.shared.keys.room_key(room, "online"));
            }
            pipe.query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)
        })
    }
}
