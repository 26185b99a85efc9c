//! [`AllowedOrigins`]: which browser origins may open the WebSocket (checked before the
//! upgrade).

use axum::http::{header, request::Parts};

use crate::error::ChatRejection;

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
