//! The WebSocket endpoint: `upgrade` checks origin and identity and upgrades the request;
//! `socket` adapts axum's socket to [`chat_core::session::serve`].

mod socket;
pub(crate) mod upgrade;
