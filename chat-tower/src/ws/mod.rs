//! The WebSocket endpoint: `upgrade` checks origin and identity and upgrades the request;
//! `raw` (over `io`) is the session's transport on an HTTP/1.1 upgrade, `socket` adapts axum's
//! socket (HTTP/2's extended CONNECT) to [`chat_core::session::serve`].

mod io;
mod raw;
mod socket;
pub(crate) mod upgrade;
