//! # chat-core: the roomcast chat engine
//!
//! Rooms, room messages, direct messages, system messages, presence and history, spread over
//! any number of nodes through a [`backend::broker::Broker`]. No HTTP framework in here:
//! `chat-tower` puts this engine behind an axum router.
//!
//! ## Layout
//! - [`protocol`]: ids, users and the WebSocket frames (serde + JSON Schema).
//! - [`engine`]: [`Chat`] (one node) and [`Connection`] (one client on it): the operations.
//! - [`session`]: the per-connection `select!` loop over a generic stream and sink.
//! - `hub`: node-local fan-out and ref-counted broker subscriptions.
//! - [`backend`]: what a node runs on: the [`Backend`] bundle of the [`backend::broker::Broker`]
//!   (pub/sub between nodes, atomic append+publish) and the room, presence and history stores;
//!   beside them their implementations, [`backend::memory`] (default) and `backend::redis`
//!   (feature `redis`).
//! - [`error`]: [`BackendError`] from a backend, [`Error`] from an engine operation.
//! - [`hooks`]: the policy hooks; [`config`]: limits with documented defaults.
//!
//! ## A message's path
//! Connection on node A → [`Connection::send_message`] →
//! [`backend::broker::Broker::publish_room_message`] (history append assigns the id, then
//! publish, one step) → every subscribed node's event
//! stream, A's included → that node's dispatcher → `hub` fan-out into each local connection's
//! bounded queue, skipping the sender's connection → [`session::run`] writes it to the socket.

pub mod backend;
pub mod config;
pub mod engine;
pub mod error;
pub mod hooks;
mod hub;
pub mod protocol;
pub mod session;
mod sync;

pub use backend::{Backend, BoxFuture};
pub use config::ChatConfig;
pub use engine::{Chat, Connection, EndCause, EndSignal, RoomDetails, RoomSummary};
pub use error::{BackendError, Error};
pub use protocol::{ErrorCode, MessageId, RoomId, User, UserId};
