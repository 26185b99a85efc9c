//! The in-memory backend: broker, room store, presence and history in one process.
//!
//! A [`MemoryCluster`] is what one Redis server is to the Redis backend: shared state that any
//! number of nodes (engines) in the same process attach to with [`MemoryCluster::node`]. A
//! single-instance chat uses one node; tests run several nodes on one cluster to exercise the
//! multi-instance paths (loop prevention, once-per-user system events) without Redis.
//!
//! Locks are `std::sync::Mutex`es held for a few map operations and never across an `.await`.
//! Publishing sends into each subscribed node's event channel while holding the pub/sub
//! lock: that is what makes the order of a topic the same on every node, like Redis does.
//! A publisher must not wait on a receiver: the channel is bounded ([`MemoryConfig::event_queue`])
//! and what does not fit is recorded for a `resync` (see [`super::events`]).
//!
//! Growth is bounded like on Redis ([`MemoryConfig`]): a room idle for `room_ttl` (nobody
//! online, no message, no join) is removed with its members and history by a sweep that runs
//! as the store is used (at most once per `room_ttl / 10` or per minute, whichever is
//! shorter) and is looked up as gone at once; history keeps `history_per_room` messages, none older than
//! `history_max_age`.
//!
//! One file per store: `pubsub` (the broker, and the room logs it appends to),
//! `dedup` (the `clientMsgId`s it checks in the same step), `rooms`, `presence`, `history`;
//! `expiry` (the sweep of idle rooms).

mod dedup;
mod expiry;
mod history;
mod presence;
mod pubsub;
mod rooms;
#[cfg(test)]
mod tests;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{broker::NodeId, events, Backend, Reply};
use crate::{
    error::BackendError,
    protocol::{RoomId, User, UserId},
    sync::lock,
};

/// Room messages kept per room unless [`MemoryCluster::with_history_per_room`] says otherwise.
pub const DEFAULT_HISTORY_PER_ROOM: usize = 1_000;

/// Settings of a [`MemoryCluster`], each with a documented default (the same as
/// `RedisConfig`'s).
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    /// Room messages kept per room (at least 1). Default 1,000.
    pub history_per_room: usize,
    /// A room with nobody online and no message or join for this long is deleted with its
    /// members and history. Default 7 days: a week covers a weekly meeting's room and
    /// weekends, while a room made and abandoned (or by a flood) is gone within a week.
    pub room_ttl: Duration,
    /// Room messages older than this are no longer served and are dropped. Default 30 days.
    pub history_max_age: Duration,
    /// Events a node's channel holds before it drops them for a `resync`
    /// (see [`super::events`]). Default [`events::DEFAULT_EVENT_QUEUE`] (65,536).
    pub event_queue: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            history_per_room: DEFAULT_HISTORY_PER_ROOM,
            room_ttl: Duration::from_secs(7 * 24 * 3600),
            history_max_age: Duration::from_secs(30 * 24 * 3600),
            event_queue: events::DEFAULT_EVENT_QUEUE,
        }
    }
}

/// Shared in-memory state for one or more nodes. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryCluster {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    config: MemoryConfig,
    pubsub: Mutex<pubsub::PubSub>,
    rooms: Mutex<rooms::Rooms>,
    presence: Mutex<presence::Presence>,
    /// Guests created per client address and each user's quotas, for every node of the
    /// cluster.
    limits: crate::limits::SharedLimits,
    /// When idle rooms were last swept.
    swept: Mutex<Option<std::time::Instant>>,
}

impl MemoryCluster {
    /// An empty cluster with the default [`MemoryConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cluster keeping `n` messages per room (at least 1).
    pub fn with_history_per_room(n: usize) -> Self {
        Self::with_config(MemoryConfig {
            history_per_room: n,
            ..MemoryConfig::default()
        })
    }

    /// An empty cluster with these settings.
    pub fn with_config(mut config: MemoryConfig) -> Self {
        config.history_per_room = config.history_per_room.max(1);
        Self {
            inner: Arc::new(Inner {
                config,
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
        let (tx, events) = events::channel(self.inner.config.event_queue);
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

impl MemoryNode {
    /// Takes one of `user`'s `quota` (under no other lock: the shared limits have their own).
    fn take_quota_now(&self, user: &UserId, quota: crate::Quota) -> Result<(), BackendError> {
        self.cluster
            .limits
            .take_quota(user, quota)
            .map_err(|retry_after| BackendError::OverQuota {
                limit: quota.limit,
                retry_after,
            })
    }
}

/// An answer that is ready at once: the in-memory stores do their work when called and never
/// wait.
fn ready<'a, T: Send + 'a>(value: Result<T, BackendError>) -> Reply<'a, T> {
    Box::pin(std::future::ready(value))
}
