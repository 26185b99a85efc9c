//! The router's own state, shared by every handler.

use std::sync::Arc;

use chat_core::Chat;

use crate::{client_addr::TrustedProxies, identity::TokenSigner, origin::AllowedOrigins};

/// What every handler gets: one `Arc`, so cloning it per request is cheap.
#[derive(Clone)]
pub(crate) struct ChatState {
    pub(crate) inner: Arc<StateInner>,
}

/// The settings of a built chat, fixed at [`crate::ChatBuilder::build`].
pub(crate) struct StateInner {
    pub(crate) chat: Chat,
    pub(crate) tokens: TokenSigner,
    /// Guest mode: `POST /guests` (and the v1 guest join) make users from display names.
    pub(crate) guests: bool,
    /// Whose `X-Forwarded-For` names the client, for the per-address guest limit.
    pub(crate) proxies: TrustedProxies,
    pub(crate) origins: AllowedOrigins,
    pub(crate) openapi: utoipa::openapi::OpenApi,
}

impl ChatState {
    pub(crate) fn chat(&self) -> &Chat {
        &self.inner.chat
    }
}
