//! # chat-core: the roomcast chat engine
//!
//! Rooms, room messages, direct messages, system messages, presence and history, spread over
//! any number of nodes through a [`backend::broker::Broker`]. No HTTP framework in here:
//! `chat-tower` puts this engine behind an axum router.
//!
//! ## Layout
//! - [`protocol`]: ids, users and the WebSocket frames (serde + JSON Schema).
//! - `node`: [`Chat`], one node: the REST queries, publishing, and the node's background
//!   tasks (the broker dispatcher, the flush tick, the keepalive sweep).
//! - `connection`: [`Connection`], one client on a node: join (with replay), leave, send,
//!   and its teardown.
//! - [`session`]: the per-connection `select!` loop over a generic stream and sink, the
//!   transport adapter, frame handling and the per-connection flood guard.
//! - `fanout`: node-local fan-out: the hub (who listens to what), each connection's outbox
//!   (queue, inline writes, coalescing), the flush tick, and ref-counted broker subscriptions.
//! - [`backend`]: what a node runs on: the [`Backend`] bundle of the [`backend::broker::Broker`]
//!   (pub/sub between nodes, atomic append+publish) and the room, presence and history stores;
//!   beside them their implementations, [`backend::memory`] (default) and `backend::redis`
//!   (feature `redis`).
//! - [`archive`]: room history kept beyond the backend's caps ([`archive::Archive`];
//!   PostgreSQL with the feature `postgres`), put beside a backend with
//!   [`Backend::with_archive`].
//! - [`error`]: [`BackendError`] from a backend, [`Error`] from an engine operation.
//! - [`hooks`]: the policy hooks; [`config`]: limits with documented defaults; `limits`: the
//!   node's per-user limits (messages, joins, direct messages, room creation, connections).
//!
//! ## A message's path
//! Connection on node A → [`Connection::send_message`] →
//! [`backend::broker::Broker::publish_room_message`] (history append assigns the id, then
//! publish, one step) → every subscribed node's event
//! stream, A's included → that node's dispatcher → the hub's fan-out into each local
//! connection's outbox, skipping the sender's connection → [`session::serve`] writes it to the
//! socket (or the dispatcher writes it inline when the connection is idle).

pub mod archive;
pub mod backend;
mod caller;
pub mod config;
mod connection;
pub mod error;
mod fanout;
pub mod hooks;
mod limits;
mod logs;
mod metrics;
mod node;
pub mod protocol;
pub mod session;
mod sync;

pub use backend::{Backend, BoxFuture};
pub use caller::Caller;
pub use config::ChatConfig;
pub use connection::Connection;
pub use error::{BackendError, ClientError, Error, Limit};
pub use limits::Quota;
pub use node::{
    Chat, MemberPage, MessagePage, RoomDetails, RoomHandle, RoomPage, RoomSummary, UserHandle,
    ROOM_DETAILS_MEMBERS,
};
pub use protocol::{ErrorCode, MessageId, RoomId, RoomMessage, User, UserId};
pub use session::{EndSignal, SessionEnd};

/// Internals for the fuzz target and the property tests: not part of the public API, and not
/// covered by semver.
#[doc(hidden)]
pub mod __private {
    pub use crate::session::frames::{error_frame, handle_text};
}
