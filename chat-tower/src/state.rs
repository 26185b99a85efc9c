//! The router's own state, shared by every handler.

use std::sync::Arc;

use axum::http::{header, request::Parts};
use chat_core::{Chat, User};

use crate::{
    error::ChatRejection,
    identity::{presented_token, IdentityExtractor, TokenSigner},
};

/// Which browser origins may open a WebSocket. Requests without an `Origin` header (not from a
/// browser) are always allowed: origin checks protect browsers' ambient credentials.
#[derive(Clone, Debug, Default)]
pub enum AllowedOrigins {
    /// The `Origin` must name the same host (and port) as the request's `Host`. The default.
    #[default]
    SameHost,
    /// Any origin.
    Any,
    /// Exactly these origins (e.g. `https://app.example.com`), plus the same host.
    List(Vec<String>),
}

impl AllowedOrigins {
    pub(crate) fn check(&self, parts: &Parts) -> Result<(), ChatRejection> {
        let Some(origin) = parts.headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let same_host = !host.is_empty() && origin_host.eq_ignore_ascii_case(host);
        let allowed = match self {
            Self::Any => true,
            Self::SameHost => same_host,
            Self::List(list) => same_host || list.iter().any(|o| o == origin),
        };
        if allowed {
            Ok(())
        } else {
            Err(ChatRejection::Forbidden(format!(
                "origin {origin} is not allowed"
            )))
        }
    }
}

#[derive(Clone)]
pub(crate) struct ChatState {
    pub(crate) inner: Arc<StateInner>,
}

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
