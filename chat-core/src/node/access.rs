//! The host ending a user's access, on every node: revoking it (tokens void, connections
//! closed with 4401), removing the user (the same with 4403, and their memberships end), or
//! ending one membership (the user's connections leave the room).
//!
//! Each is a record in the backend (the revocation record, the membership) and a
//! [`Control`] published to the user's topic: the nodes with a connection of that user are
//! subscribed to it already, and apply it to those connections (`fanout::control`).

use std::time::Duration;

use tracing::info;

use super::Chat;
use crate::{
    backend::broker::{Control, ControlAction},
    error::Error,
    protocol::{now_ms, RoomId, UserId},
};

/// Rooms read per batch while a removed user's memberships end.
const ROOMS_PER_BATCH: usize = 100;

impl Chat {
    /// Revokes `user`'s access: their tokens issued up to now are void (a record kept for
    /// `token_ttl`, the tokens' lifetime; see [`Chat::tokens_revoked_until`]), and every
    /// connection of the user, on every node, is closed with 4401. Tokens issued afterwards
    /// work: the user can come back.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the record could not be written or the order not published
    /// (then nothing or only the record is in effect: call it again).
    pub async fn revoke_user(&self, user: &UserId, token_ttl: Duration) -> Result<(), Error> {
        self.void_tokens(user, token_ttl).await?;
        self.order(user, ControlAction::Revoke).await?;
        info!(%user, "access revoked");
        Ok(())
    }

    /// Removes `user`: their tokens are void as with [`Chat::revoke_user`], every connection
    /// of the user, on every node, is closed with 4403 (and leaves its rooms, with
    /// `user_left`), and their memberships end.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if a store or the broker fails part way (what was done stays
    /// done: call it again).
    pub async fn remove_user(&self, user: &UserId, token_ttl: Duration) -> Result<(), Error> {
        self.void_tokens(user, token_ttl).await?;
        self.order(user, ControlAction::Remove).await?;
        let rooms = &self.backend().rooms;
        loop {
            let batch = rooms.user_rooms(user, ROOMS_PER_BATCH).await?;
            let mut removed = 0;
            for room in &batch {
                removed += usize::from(rooms.remove_member(room, user).await?);
            }
            // A batch that removed nothing would come back the same: stop rather than loop.
            if batch.len() < ROOMS_PER_BATCH || removed == 0 {
                break;
            }
        }
        info!(%user, "user removed");
        Ok(())
    }

    /// Ends `user`'s membership of `room` (for the host; no policy asked): the user's
    /// connections in the room, on every node, get `left` and nothing more from it, and the
    /// room gets `user_left` where that was the user's last connection there. Returns whether
    /// the user was a member (the connections are told to leave either way).
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the store or the broker fails.
    pub async fn remove_member(&self, room: &RoomId, user: &UserId) -> Result<bool, Error> {
        let was_member = self.backend().rooms.remove_member(room, user).await?;
        self.order(user, ControlAction::Leave(room.clone())).await?;
        Ok(was_member)
    }

    /// Up to when (Unix milliseconds) `user`'s tokens are void, if their access was revoked
    /// within the tokens' lifetime: a token issued at or before it must be refused.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the store fails.
    pub async fn tokens_revoked_until(&self, user: &UserId) -> Result<Option<i64>, Error> {
        Ok(self.backend().rooms.tokens_revoked_until(user).await?)
    }

    async fn void_tokens(&self, user: &UserId, token_ttl: Duration) -> Result<(), Error> {
        let rooms = &self.backend().rooms;
        Ok(rooms.revoke_tokens(user, now_ms(), token_ttl).await?)
    }

    /// Publishes an order to the user's topic (0 nodes reached: no connection anywhere).
    async fn order(&self, user: &UserId, action: ControlAction) -> Result<(), Error> {
        let control = Control {
            user: user.clone(),
            action,
        };
        self.backend().broker.publish_control(control).await?;
        Ok(())
    }
}
