//! [`Backend`]: the broker and stores one node runs on, bundled.

use std::sync::Arc;

use crate::{
    broker::Broker,
    history::HistoryStore,
    memory::MemoryCluster,
    store::{PresenceStore, RoomStore},
};

/// Everything a node needs from outside itself. Build one with [`Backend::memory`] (a
/// single-node chat), [`MemoryCluster::node`] (several nodes in one process) or, with the
/// `redis` feature, `RedisBackend::connect`.
#[derive(Clone)]
pub struct Backend {
    /// Pub/sub between nodes, and the atomic append-and-publish of room messages.
    pub broker: Arc<dyn Broker>,
    /// Rooms, members and known users.
    pub rooms: Arc<dyn RoomStore>,
    /// Who is online where.
    pub presence: Arc<dyn PresenceStore>,
    /// Room history.
    pub history: Arc<dyn HistoryStore>,
}

impl Backend {
    /// A single node on its own in-memory cluster: no Redis needed.
    pub fn memory() -> Self {
        MemoryCluster::new().node()
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("node", &self.broker.node_id())
            .finish_non_exhaustive()
    }
}
