//! [`ChatHandle`]: what the host keeps of a built chat, for server-side sends, tokens and
//! shutdown.

use chat_core::Chat;

use crate::identity::TokenSigner;

/// The host's handle on a built chat: server-side sends, tokens, shutdown.
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

    /// Closes every WebSocket (close code 1001) after in-flight work, and waits for them.
    pub async fn shutdown(&self) {
        self.chat.shutdown().await
    }
}
