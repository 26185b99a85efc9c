//! A user's access, as the host ends it: the token revocation record `P:user:{U}:revoked`
//! (up to when, in Unix ms, the user's tokens are void; it expires with the tokens it voids),
//! and the user's rooms read from `P:user:{U}:rooms`: in batches to end their memberships,
//! and the two users' common ones to tell whether they share a room (the default policy for
//! direct messages), entries of expired rooms dropped as either meets them.

use std::time::Duration;

use redis::AsyncCommands;

use super::RedisNode;
use crate::{
    backend::paging,
    error::BackendError,
    protocol::{RoomId, UserId},
};

/// Common rooms of two users checked for existence per round trip.
const SHARED_ROOMS_CHECKED: usize = 16;

/// The most rooms the smaller of two users' indexes may hold for their common rooms to be
/// read and checked one by one (see [`RedisNode::share_a_live_room`]).
const SHARED_ROOMS_READ: usize = 1_000;

impl RedisNode {
    /// Up to `limit` of the user's rooms: the first entries of their sort keys. Entries of
    /// rooms that expired (`RedisConfig::room_ttl`) are removed from the user's index on the
    /// way, so that a batch is never only ghosts.
    pub(super) async fn first_user_rooms(
        &self,
        user: &UserId,
        limit: usize,
    ) -> Result<Vec<RoomId>, BackendError> {
        let last = isize::try_from(limit.max(1)).unwrap_or(isize::MAX) - 1;
        let index = self.shared.keys.user_key(user, "rooms");
        let mut conn = self.conn();
        loop {
            let keys: Vec<String> = conn
                .zrange(&index, 0, last)
                .await
                .map_err(BackendError::redis)?;
            let rooms = with_rooms(keys);
            let ghosts = self.ghosts(&rooms).await?;
            if ghosts.is_empty() {
                return Ok(rooms.into_iter().map(|(_, r)| r).collect());
            }
            self.drop_ghosts(&[user], &ghosts).await?;
        }
    }

    /// Whether `a` and `b` are members of a common room that still exists. A user's `:rooms`
    /// index keeps an expired room's entry until something meets it, so the common entries
    /// are checked, a few at a time, until one's room exists, and the expired ones met are
    /// dropped from both users' indexes: an idle room that expired does not let its former
    /// members keep messaging each other. Only for a direct message under the default policy.
    ///
    /// Bounded work: one round trip answers "nothing in common" (`ZINTERCARD … LIMIT 1`) and
    /// reads the sizes; the common entries are read (`ZINTER`) only while the smaller index
    /// holds at most [`SHARED_ROOMS_READ`] entries. Past that (a user in thousands of rooms),
    /// a common entry is taken as a shared room without the check, as before it.
    pub(super) async fn share_a_live_room(
        &self,
        a: &UserId,
        b: &UserId,
    ) -> Result<bool, BackendError> {
        let keys = &self.shared.keys;
        let (rooms_a, rooms_b) = (keys.user_key(a, "rooms"), keys.user_key(b, "rooms"));
        let mut conn = self.conn();
        let (any, size_a, size_b): (usize, usize, usize) = redis::pipe()
            .cmd("ZINTERCARD")
            .arg(2)
            .arg(&rooms_a)
            .arg(&rooms_b)
            .arg("LIMIT")
            .arg(1)
            .zcard(&rooms_a)
            .zcard(&rooms_b)
            .query_async(&mut conn)
            .await
            .map_err(BackendError::redis)?;
        if any == 0 {
            return Ok(false);
        }
        if size_a.min(size_b) > SHARED_ROOMS_READ {
            return Ok(true);
        }
        let common: Vec<String> = redis::cmd("ZINTER")
            .arg(2)
            .arg(&rooms_a)
            .arg(&rooms_b)
            .query_async(&mut conn)
            .await
            .map_err(BackendError::redis)?;
        for chunk in common.chunks(SHARED_ROOMS_CHECKED) {
            let rooms = with_rooms(chunk.iter().cloned());
            let ghosts = self.ghosts(&rooms).await?;
            if !ghosts.is_empty() {
                self.drop_ghosts(&[a, b], &ghosts).await?;
            }
            if ghosts.len() < rooms.len() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Drops `ghosts` (sort keys of expired rooms) from `users`' `:rooms` and `:private`
    /// indexes, in one round trip.
    async fn drop_ghosts(&self, users: &[&UserId], ghosts: &[String]) -> Result<(), BackendError> {
        let keys = &self.shared.keys;
        let mut pipe = redis::pipe();
        for user in users {
            pipe.zrem(keys.user_key(user, "rooms"), ghosts)
                .ignore()
                .zrem(keys.user_key(user, "private"), ghosts)
                .ignore();
        }
        pipe.query_async(&mut self.conn())
            .await
            .map_err(BackendError::redis)
    }

    /// The sort keys of those rooms that no longer exist (expired).
    pub(super) async fn ghosts(
        &self,
        rooms: &[(String, RoomId)],
    ) -> Result<Vec<String>, BackendError> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (_, room) in rooms {
            pipe.exists(self.shared.keys.room_key(room, "info"));
        }
        let exists: Vec<bool> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(BackendError::redis)?;
        Ok(rooms
            .iter()
            .zip(exists)
            .filter(|(_, exists)| !exists)
            .map(|((key, _), _)| key.clone())
            .collect())
    }

    /// `SET P:user:{U}:revoked <until_ms> PX <ttl>`.
    pub(super) async fn set_revoked(
        &self,
        user: &UserId,
        until_ms: i64,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        // At least 1 ms (PX 0 is an error); a lifetime past u64 milliseconds is for good.
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = self.shared.keys.user_key(user, "revoked");
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(until_ms);
        if ttl_ms < i64::MAX as u64 {
            set.arg("PX").arg(ttl_ms);
        }
        let () = set
            .query_async(&mut self.conn())
            .await
            .map_err(BackendError::redis)?;
        Ok(())
    }

    /// The user's revocation record, if one is kept.
    pub(super) async fn get_revoked(&self, user: &UserId) -> Result<Option<i64>, BackendError> {
        self.conn()
            .get(self.shared.keys.user_key(user, "revoked"))
            .await
            .map_err(BackendError::redis)
    }
}

/// Each sort key with its room (strings that are not sort keys are skipped).
fn with_rooms(keys: impl IntoIterator<Item = String>) -> Vec<(String, RoomId)> {
    keys.into_iter()
        .filter_map(|key| paging::room_of_key(&key).map(|room| (key, room)))
        .collect()
}
