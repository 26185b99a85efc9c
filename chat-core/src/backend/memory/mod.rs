//! The in-memory backend: broker, room store, presence and history in one process.
//!
//! A [`MemoryCluster`] is what one Redis server is to the Redis backend: shared state that any
//! number of nodes (engines) in the same process attach to with [`MemoryCluster::node`]. A
//! single-instance chat uses one node; tests run several nodes on one cluster to exercise the
//! multi-instance paths (loop prevention, once-per-user system events) without Redis.
//!
//! Locks are `std::sync::Mutex`es held for a few map operations and never across an `.await`.
//! Publishing sends into each subscribed node's unbounded channel while holding the pub/sub
//! lock: that is what makes the order of a topic the same on every node, like Redis does.
//! The channel is unbounded because a publisher must not wait on a receiver; the receiver (the
//! node's dispatcher) only moves bytes into bounded per-connection queues, so it keeps up.
//!
//! One file per store: `pubsub` (the broker, and the room logs it appends to),
//! `dedup` (the `clientMsgId`s it checks in the same step), `rooms`, `presence`, `history`.

mod dedup;
mod history;
mod presence;
mod pubsub;
mod rooms;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{broker::NodeId, Backend, Reply};
use crate::{
    error::BackendError,
    protocol::{RoomId, User},
    sync::lock,
};

/// Room messages kept per room unless [`MemoryCluster::with_history_per_room`] says otherwise.
pub const DEFAULT_HISTORY_PER_ROOM: usize = 1_000;

/// Shared in-memory state for one or more nodes. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryCluster {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    history_per_room: Option<usize>,
    pubsub: Mutex<pubsub::PubSub>,
    rooms: Mutex<rooms::Rooms>,
    presence: Mutex<presence::Presence>,
}

impl MemoryCluster {
    /// An empty cluster keeping [`DEFAULT_HISTORY_PER_ROOM`] messages per room.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cluster keeping `n` messages per room (at least 1).
    pub fn with_history_per_room(n: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                history_per_room: Some(n.max(1)),
                ..Inner::default()
            }),
        }
    }

    /// Attaches a new node (with a fresh [`NodeId`]) and returns its backend.
    pub fn node(&self) -> Backend {
        let node = Arc::new(MemoryNode {
            id: NodeId::random(),
            cluster: self.inner.clone(),
        });
        let (tx, events) = mpsc::unbounded_channel();
        lock(&self.inner.pubsub).nodes.insert(node.id, tx);
        Backend {
            broker: node.clone(),
            rooms: node.clone(),
            presence: node.clone(),
            history: node,
            events,
        }
    }

    /// Simulates a node crash: drops its subscriptions and removes its users from presence,
    /// returning the `(room, user)` pairs whose last connection was on that node. (The Redis
    /// backend does this when a node's heartbeat expires.)
    pub fn remove_node(&self, node: NodeId) -> Vec<(RoomId, User)> {
        lock(&self.inner.pubsub).remove_node(node);
        lock(&self.inner.presence).remove_node(node)
    }
}

/// One node's view of a [`MemoryCluster`]; implements every backend trait.
struct MemoryNode {
    id: NodeId,
    cluster: Arc<Inner>,
}

/// An answer that is ready at once: the in-memory stores do their work when called and never
/// wait.
fn ready<'a, T: Send + 'a>(value: Result<T, BackendError>) -> Reply<'a, T> {
    Box::pin(std::future::ready(value))
}
