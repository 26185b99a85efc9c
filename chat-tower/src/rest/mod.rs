//! The REST endpoints of contract v2, each documented for OpenAPI. One file per resource,
//! each with its request and response types:
//! - `guests`: `POST /guests` (guest mode: a display name gets a token);
//! - `rooms`: `POST /create-room`, `GET /rooms`, `GET /rooms/{roomId}`;
//! - `join`: `POST /join-room/{roomId}` (membership, invites, and the WebSocket token);
//! - `members`: `GET /rooms/{roomId}/members`, `DELETE /rooms/{roomId}/members/me`,
//!   `POST /rooms/{roomId}/invites`;
//! - `messages`: `GET /rooms/{roomId}/messages` (history pages);
//! - `directs`: `GET /directs` (the caller's conversations) and `GET /directs/{userId}/messages`
//!   (the caller's direct messages with one user);
//! - `contract`: `GET /openapi.json` and `GET /asyncapi.json`;
//! - `body`: reading and validating request bodies.

use axum::{extract::NestedPath, http::Extensions};

pub(crate) mod body;
pub(crate) mod contract;
pub(crate) mod directs;
pub(crate) mod guests;
pub(crate) mod join;
pub(crate) mod members;
pub(crate) mod messages;
pub(crate) mod rooms;

pub use directs::{
    ConversationSummary, ConversationsQuery, ConversationsResponse, DirectHistoryMessage,
    DirectHistoryResponse, DirectType,
};
pub use guests::{GuestRequest, GuestResponse};
pub use join::{JoinRoomRequest, JoinRoomResponse};
pub use members::{InviteResponse, INVITE_TTL};
pub use messages::{HistoryMessage, HistoryQuery, HistoryResponse, MessageType};
pub use rooms::{CreateRoomRequest, PageQuery};

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
