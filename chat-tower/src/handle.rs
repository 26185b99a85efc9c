//! [`ChatHandle`]: what the host keeps of a built chat, for server-side sends, tokens, ending
//! a user's access, and shutdown.

use chat_core::{Chat, Error, RoomId, UserId};

use crate::identity::TokenSigner;

/// The host's handle on a built chat: server-side sends, tokens, ending a user's access,
/// shutdown.
#[derive(Clone, Debug)]
pub struct ChatHandle {
    chat: Chat,
    tokens: TokenSigner,
}

impl ChatHandle {
    pub(crate) fn new(chat: Chat, tokens: TokenSigner) -> Self {
        Self { chat, tokens }
    }

    /// The engine, for server-side sends (`send_to_room`, `send_direct`) and queries.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// Issues a token for a user the host has identified (e.g. for its own login flow).
    pub fn issue_token(&self, user: &chat_core::User) -> String {
        self.tokens
            .issue(&chat_core::Caller::member(user.clone()))
            .0
    }

    /// Revokes `user`'s access, on every instance, within about a second: every token of the
    /// user issued until now is refused (REST and WebSocket upgrade: 401), and every open
    /// connection of the user is closed with 4401. Tokens issued afterwards work (the user
    /// logs in again, and the host issues a new one with [`ChatHandle::issue_token`]).
    ///
    /// Only the chat's tokens are revoked: a user whom the host's identity hook still names
    /// gets in again; keeping them out is the hook's business. The instances' clocks should
    /// agree to well under the token lifetime (tokens are compared by their issue time).
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the backend fails (call it again).
    pub async fn revoke_user(&self, user: &UserId) -> Result<(), Error> {
        self.chat.revoke_user(user, self.tokens.ttl()).await
    }

    /// Removes `user`, on every instance, within about a second: their tokens are refused as
    /// with [`ChatHandle::revoke_user`], every open connection of the user is closed with
    /// 4403 (and leaves its rooms: `user_left`), and their room memberships end.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the backend fails part way (call it again).
    pub async fn remove_user(&self, user: &UserId) -> Result<(), Error> {
        self.chat.remove_user(user, self.tokens.ttl()).await
    }

    /// Ends `user`'s membership of `room`: the user's connections in the room, on every
    /// instance, get `left` and nothing more from it, and the others get `user_left` where
    /// that was the user's last connection there. Returns whether the user was a member.
    /// The user's tokens and other rooms are untouched; a public room they may join again.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the backend fails.
    pub async fn remove_member(&self, room: &RoomId, user: &UserId) -> Result<bool, Error> {
        self.chat.remove_member(room, user).await
    }

    /// Closes every WebSocket (close code 1001) after in-flight work, and waits for them.
    pub async fn shutdown(&self) {
        self.chat.shutdown().await
    }

    /// Drains this instance for a rolling restart ([`Chat::drain`]): new WebSockets get a
    /// 503, every open one writes what is queued and closes with 1012, and its presence
    /// leaves. Returns `false` if `ChatConfig::drain_timeout` passed first.
    pub async fn drain(&self) -> bool {
        self.chat.drain().await
    }
}
