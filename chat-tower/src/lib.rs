//! # chat-tower: roomcast as a mountable axum router
//!
//! ```no_run
//! use axum::Router;
//! use chat_tower::ChatBuilder;
//!
//! # async fn run() -> std::io::Result<()> {
//! #[derive(Clone)]
//! struct AppState { /* the host's own state */ }
//!
//! let (chat_router, chat) = ChatBuilder::new().build();
//! let app: Router = Router::new()
//!     .route("/", axum::routing::get(|| async { "host home" }))
//!     .nest("/chat", chat_router)
//!     .with_state(AppState {});
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // Header-read and idle timeouts and a connection cap (`ChatConfig::http_*`).
//! let config = chat.chat().config().clone();
//! chat_tower::serve(listener, app, &config, async move { chat.shutdown().await }).await
//! # }
//! ```
//!
//! ## Layout
//! One concern per file; the names say which.
//! - `builder`: [`ChatBuilder`], backend, config, identity, policy → `(Router<S>, ChatHandle)`,
//!   `S` being the host's router state; `builder::redis` (feature `redis`):
//!   `ChatBuilder::redis(url)`, Redis and its shared secret.
//! - `handle`: [`ChatHandle`], the host's side of a built chat: tokens, shutdown; `sends`:
//!   its server-side sends and typed history (`chat.room(&id).send(body)`,
//!   `chat.user(&id).send(body)`, `.send_as(&bot, body)`, `chat.room(&id).history(..)`).
//! - `router`: assembles the routes (REST, WebSocket, documents); every route but the two
//!   documents resolves the caller first (`identity::resolve`).
//! - `origin`: [`AllowedOrigins`], which browser origins may open the WebSocket.
//! - [`identity`]: the host's [`IdentityExtractor`] (`extractor`), who a request is
//!   (`resolve`), the chat's [`TokenSigner`] for user tokens and invites (`token_signer`), and
//!   where a request carries its token (`presented_token`).
//! - [`rest`]: the REST endpoints of contract v2, one file per resource with its types
//!   (`guests`, `rooms`, `join`, `members`, `messages`, `contract`), and request bodies and
//!   names (`body`).
//! - `ws`: the WebSocket endpoint (`upgrade`) and axum's socket as the session's transport
//!   (`socket`, for `chat_core::session::serve`).
//! - [`error`]: [`ChatRejection`], rendered as RFC 9457 problem+json ([`Problem`]).
//! - [`serve`](mod@serve): [`serve()`], an HTTP/1 server with a header-read timeout, an idle
//!   timeout and a connection cap (`ChatConfig::http_*`), WebSocket upgrades kept.
//! - [`ops`]: for operators, mounted where the host decides: `/healthz` and `/readyz`
//!   ([`ops::health`]), `/metrics` in Prometheus text format ([`ops::metrics`] and
//!   [`ops::install_prometheus`], feature `prometheus`), and the request-id layer
//!   ([`ops::request_id`]).
//! - [`openapi`]: the OpenAPI document, the problem responses endpoints share (`problems`),
//!   and the WebSocket frame schemas with the AsyncAPI document (`asyncapi`).

#![warn(missing_docs)]

pub use chat_core;

mod builder;
mod client_addr;
pub mod error;
mod handle;
pub mod identity;
pub mod openapi;
pub mod ops;
mod origin;
pub mod rest;
mod router;
mod sends;
pub mod serve;
mod state;
mod ws;

pub use builder::{ChatBuilder, DEFAULT_TOKEN_TTL};
pub use client_addr::{BadNetwork, TrustedProxies};
pub use error::{ChatRejection, Problem};
pub use handle::ChatHandle;
pub use identity::{
    FromExtension, FromExtractor, IdentityExtractor, NoIdentity, TokenSigner, VerifiedToken,
};
pub use origin::AllowedOrigins;
pub use serve::serve;

/// The README's code blocks, compiled as doc tests so that they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
