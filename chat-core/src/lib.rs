//! # chat-core: the roomcast chat engine
//!
//! Rooms, room messages, direct messages, system messages, presence and history, spread over
//! any number of nodes through a [`broker::Broker`]. No HTTP framework in here: `chat-tower`
//! puts this engine behind an axum router.
//!
//! ## Layout
//! - [`protocol`]: ids, users and the WebSocket frames (serde + JSON Schema).
//! - [`engine`]: [`Chat`] (one node) and [`Connection`] (one client on it): the operations.
//! - [`session`]: the per-connection `select!` loop over a generic stream and sink.
//! - `hub`: node-local fan-out and ref-counted broker subscriptions.
//! - [`broker`]: the [`broker::Broker`] trait (pub/sub between nodes, atomic append+publish).
//! - [`store`], [`history`]: room/presence and history traits.
//! - [`memory`]: the in-memory backend (default); `redis` (feature `redis`): the Redis one.
//! - [`hooks`]: the policy hooks; [`config`]: limits with documented defaults.
//!
//! ## A message's path
//! Connection on node A → [`Connection::send_message`] → [`broker::Broker::publish_room_message`]
//! (history append assigns the id, then publish, one step) → every subscribed node's event
//! stream, A's included → that node's dispatcher → `hub` fan-out into each local connection's
//! bounded queue, skipping the sender's connection → [`session::run`] writes it to the socket.

pub mod backend;
pub mod broker;
pub mod config;
pub mod engine;
pub mod error;
pub mod history;
pub mod hooks;
mod hub;
pub mod memory;
pub mod protocol;
#[cfg(feature = "redis")]
pub mod redis;
pub mod session;
pub mod store;
mod sync;

pub use backend::Backend;
pub use config::ChatConfig;
pub use engine::{Chat, Connection, EndCause, EndSignal, RoomDetails, RoomSummary};
pub use error::{BackendError, Error};
pub use protocol::{ErrorCode, MessageId, RoomId, User, UserId};
