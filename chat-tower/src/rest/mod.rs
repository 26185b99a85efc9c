//! The REST endpoints of contract v1, each documented for OpenAPI. One file per resource,
//! each with its request and response types:
//! - `rooms`: `POST /create-room`, `GET /rooms`, `GET /rooms/{roomId}`;
//! - `join`: `POST /join-room/{roomId}` (membership and the WebSocket token);
//! - `messages`: `GET /rooms/{roomId}/messages` (history pages);
//! - `contract`: `GET /openapi.json` and `GET /asyncapi.json`;
//! - `body`: reading and validating request bodies.

use axum::{extract::NestedPath, http::Extensions};

mod body;
pub(crate) mod contract;
pub(crate) mod join;
pub(crate) mod messages;
pub(crate) mod rooms;

pub use join::{JoinRoomRequest, JoinRoomResponse};
pub use messages::{HistoryMessage, HistoryQuery, HistoryResponse, MessageType};
pub use rooms::CreateRoomRequest;

/// The OpenAPI tag of the REST endpoints.
pub const TAG: &str = "chat";

/// Where the host mounted the chat router (e.g. `/chat`), without a trailing `/`; empty when
/// it is not nested.
fn mount_prefix(extensions: &Extensions) -> String {
    extensions
        .get::<NestedPath>()
        .map(|p| p.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}
