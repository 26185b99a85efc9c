//! A user's access, as the host ends it: the token revocation record `P:user:{U}:revoked`
//! (up to when, in Unix ms, the user's tokens are void; it expires with the tokens it voids),
//! and the user's rooms read in batches from `P:user:{U}:rooms` to end their memberships.

use std::time::Duration;

use redis::AsyncCommands;

use super::RedisNode;
use crate::{
    backend::paging,
    error::BackendError,
    protocol::{RoomId, UserId},
};

impl RedisNode {
    /// Up to `limit` of the user's rooms: the first entries of their sort keys.
    pub(super) async fn first_user_rooms(
        &self,
        user: &UserId,
        limit: usize,
    ) -> Result<Vec<RoomId>, BackendError> {
        let last = isize::try_from(limit.max(1)).unwrap_or(isize::MAX) - 1;
        let keys: Vec<String> = self
            .conn()
            .zrange(self.shared.keys.user_key(user, "rooms"), 0, last)
            .await
            .map_err(BackendError::redis)?;
        Ok(keys.iter().filter_map(|k| paging::room_of_key(k)).collect())
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
