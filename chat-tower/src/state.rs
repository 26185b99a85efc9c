//! The router's own state, shared by every handler.

use std::sync::Arc;

use axum::http::request::Parts;
use chat_core::{Chat, User};

use crate::{
    error::ChatRejection,
    identity::{presented_token, IdentityExtractor, TokenSigner},
    origin::AllowedOrigins,
};

/// What every handler gets: one `Arc`, so cloning it per request is cheap.
#[derive(Clone)]
pub(crate) struct ChatState {
    pub(crate) inner: Arc<StateInner>,
}

/// The settings of a built chat, fixed at [`crate::ChatBuilder::build`].
pub(crate) struct StateInner {
    pub(crate) chat: Chat,
    pub(crate) tokens: TokenSigner,
    pub(crate) identity: Box<dyn IdentityExtractor>,
    pub(crate) guests: bool,
    pub(crate) origins: AllowedOrigins,
    pub(crate) openapi: utoipa::openapi::OpenApi,
}

impl ChatState {
    pub(crate) fn chat(&self) -> &Chat {
        &self.inner.chat
    }

    /// The request's user: a token of ours, else the host's identity, else nobody.
    pub(crate) async fn identify(&self, parts: &Parts) -> Result<Option<User>, ChatRejection> {
        if let Some(token) = presented_token(parts) {
            return self.inner.tokens.verify(&token).map(Some);
        }
        self.inner.identity.extract(parts).await
    }
}
