//! What a node runs on: the backend traits, bundled in [`Backend`], and their two
//! implementations side by side.
//!
//! - [`broker`]: the [`Broker`] trait (pub/sub between nodes, atomic append+publish) and
//!   the envelope types it carries;
//! - [`store`]: [`RoomStore`] (rooms, members, known users) and [`PresenceStore`] (who is
//!   online where); `paging` (crate-private): the sort keys, cursors and page cutting that
//!   both backends list by, so that they list in the same order; `store_suite` (tests): the
//!   store tests every backend runs;
//! - [`history`]: [`HistoryStore`] (room history pages);
//! - [`events`]: a node's bounded event stream, and what it does on overflow;
//! - [`memory`]: the in-process backend (default), [`memory::MemoryCluster`];
//! - `redis` (feature `redis`): the Redis backend, `redis::RedisBackend`.
//!
//! The traits are object-safe (they return [`Reply`], a [`BoxFuture`]), so a node holds them as
//! `Arc<dyn …>` whatever backend it runs on.

use std::{future::Future, pin::Pin, sync::Arc};

pub mod broker;
pub mod events;
pub mod history;
pub mod memory;
mod paging;
#[cfg(feature = "redis")]
pub mod redis;
pub mod store;
#[cfg(test)]
mod store_suite;

use broker::Broker;
use history::HistoryStore;
use memory::MemoryCluster;
use store::{PresenceStore, RoomStore};

use crate::error::BackendError;

/// A boxed, `Send` future: the return type of the object-safe backend traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a backend call returns: a [`BoxFuture`] of its result.
pub type Reply<'a, T> = BoxFuture<'a, Result<T, BackendError>>;

/// A node's event stream: what its broker receives on the topics it subscribed to (bounded;
/// see [`events`] for what overflow does).
pub use events::Events;

/// Everything a node needs from outside itself. Build one with [`Backend::memory`] (a
/// single-node chat), [`MemoryCluster::node`] (several nodes in one process) or, with the
/// `redis` feature, `RedisBackend::connect` and `into_backend`.
///
/// Not `Clone`: it carries the node's event stream, which has one reader, the `Chat` it is
/// given to.
pub struct Backend {
    /// Pub/sub between nodes, and the atomic append-and-publish of room messages.
    pub broker: Arc<dyn Broker>,
    /// Rooms, members and known users.
    pub rooms: Arc<dyn RoomStore>,
    /// Who is online where.
    pub presence: Arc<dyn PresenceStore>,
    /// Room history.
    pub history: Arc<dyn HistoryStore>,
    /// This node's event stream, handed over with the backend.
    pub events: Events,
}

impl Backend {
    /// A single node on its own in-memory cluster: no Redis needed.
    pub fn memory() -> Self {
        MemoryCluster::new().node()
    }

    /// Splits the event stream (for the node's dispatcher) from the handles the engine keeps.
    pub(crate) fn into_parts(self) -> (Handles, Events) {
        let Self {
            broker,
            rooms,
            presence,
            history,
            events,
        } = self;
        let handles = Handles {
            broker,
            rooms,
            presence,
            history,
        };
        (handles, events)
    }
}

/// The broker and stores of a [`Backend`] whose event stream went to its node's dispatcher.
#[derive(Clone)]
pub(crate) struct Handles {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) rooms: Arc<dyn RoomStore>,
    pub(crate) presence: Arc<dyn PresenceStore>,
    pub(crate) history: Arc<dyn HistoryStore>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("node", &self.broker.node_id())
            .finish_non_exhaustive()
    }
}
