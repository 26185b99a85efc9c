//! Idle rooms go away: a room with nobody online, and no create, join, presence change or
//! message for `MemoryConfig::room_ttl`, is deleted with its members and its history; a user
//! not seen (token, connection, join) for as long is forgotten, and direct messages held for
//! an offline user past their age are dropped, and a conversation's direct messages after as
//! long without one.
//!
//! The sweep runs as the store is used (`create`, `get`, `list`, `remember_user`), at most once per
//! `room_ttl / 10` or per minute, whichever is shorter, so no task of its own is needed; `get` also
//! checks the room it reads, so an expired room is gone at once to whoever asks for it.
//! Locks are taken in one order, rooms → presence → pub/sub (a presence exit publishes its
//! `user_left` under the presence lock), and nested only here and there.

use std::time::{Duration, Instant};

use super::MemoryNode;
use crate::{protocol::RoomId, sync::lock};

impl MemoryNode {
    /// Sweeps idle rooms if the last sweep is old enough.
    pub(super) fn sweep_if_due(&self) {
        let every = (self.cluster.config.room_ttl / 10).min(Duration::from_secs(60));
        let now = Instant::now();
        {
            let mut swept = lock(&self.cluster.swept);
            if swept.is_some_and(|at| now.duration_since(at) < every) {
                return;
            }
            *swept = Some(now);
        }
        self.sweep(None);
    }

    /// Deletes `room` if it is idle.
    pub(super) fn expire_if_idle(&self, room: &RoomId) {
        self.sweep(Some(room));
    }

    /// Deletes the idle rooms (only `only`, if given); returns how many.
    pub(super) fn sweep(&self, only: Option<&RoomId>) -> usize {
        // Ages, not `now - ttl`: an `Instant` may not reach back a whole TTL (on Linux it
        // counts from boot).
        let (now, ttl) = (Instant::now(), self.cluster.config.room_ttl);
        let old = |at: Instant| now.saturating_duration_since(at) >= ttl;
        let mut rooms = lock(&self.cluster.rooms);
        let presence = lock(&self.cluster.presence);
        let mut pubsub = lock(&self.cluster.pubsub);
        let idle = |id: &RoomId, active: Instant| {
            old(active)
                && !presence.anyone_in(id)
                && pubsub
                    .logs
                    .get(id)
                    .and_then(|log| log.last_append())
                    .is_none_or(old)
        };
        let gone: Vec<RoomId> = match only {
            Some(id) => rooms
                .rooms
                .get(id)
                .filter(|r| idle(id, r.active))
                .map(|_| id.clone())
                .into_iter()
                .collect(),
            None => rooms
                .rooms
                .iter()
                .filter(|(id, r)| idle(id, r.active))
                .map(|(id, _)| id.clone())
                .collect(),
        };
        for id in &gone {
            rooms.delete(id);
            pubsub.logs.remove(id);
        }
        if only.is_none() {
            rooms.users.retain(|_, (seen, _)| !old(*seen));
            pubsub.expire_held(crate::protocol::now_ms());
            pubsub
                .directs
                .retain(|_, log| log.last_append().is_some_and(|at| !old(at)));
            let config = &self.cluster.config;
            let floor_ms = crate::protocol::now_ms()
                .saturating_sub(crate::backend::history::millis(config.history_max_age));
            pubsub.conversations.retain(|_, list| {
                list.forget_before(floor_ms);
                !list.is_empty()
            });
        }
        if !gone.is_empty() {
            tracing::debug!(rooms = gone.len(), "idle rooms expired");
        }
        gone.len()
    }
}
