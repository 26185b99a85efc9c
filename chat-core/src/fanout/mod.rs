//! Node-local fan-out: who on this node listens to what, and how frames reach them.
//!
//! The [`Hub`] is the only place frames from the broker go: the node's dispatcher hands each
//! envelope to [`Hub::deliver`], which gives the (already serialized, reference-counted) frame
//! to the [`Outbox`] of every local connection on the topic, except the connection that
//! published it. Nothing here publishes, so nothing received is ever re-published.
//!
//! - [`outbox`]: a connection's queue and the write state machine (inline writes, coalescing);
//! - [`tick`]: the node's [`FlushTick`], which releases coalesced writes; `runqueue`: how long
//!   the process's threads waited for a core (one of the tick's signs of load);
//! - [`alarm`]: the [`Alarm`] a session polls (end causes, keepalive pings, rooms to leave);
//! - `control`: the host's orders about a user (revoke, remove, leave a room) applied to the
//!   user's local connections;
//! - [`subscriptions`]: broker subscriptions ref-counted per node.

mod alarm;
mod control;
mod outbox;
mod runqueue;
mod subscriptions;
mod tick;
mod write;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use bytes::Bytes;

pub(crate) use self::{
    alarm::Alarm,
    outbox::{Outbox, Push},
    subscriptions::Subscriptions,
    tick::FlushTick,
    write::{Flushed, Inline, InlineWrite, Outgoing, Writing},
};
use crate::{
    backend::broker::{ConnId, Envelope, NodeId, Topic},
    protocol::{RoomId, UserId},
    sync::{lock, read, write},
};

type Outboxes = HashMap<ConnId, Arc<Outbox>>;
/// A user's connections on this node: usually one or a few tabs, so a Vec (one small
/// allocation) rather than a map, which matters at tens of thousands of connections.
type UserOutboxes = Vec<(ConnId, Arc<Outbox>)>;

/// At most this many recipients of one envelope are written inline by the dispatcher; in a
/// bigger room the others are queued first, so that their tasks write on the other cores
/// while the dispatcher writes the last few. 64 keeps a typical room wholly inline
/// (measurements in `docs/perf.md`, "Inline writes per envelope").
pub(super) const INLINE_PER_ENVELOPE: usize = 64;

/// A snapshot of a [`Hub`] for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct HubStats {
    pub(crate) connections: usize,
    /// Rooms with a local connection in them.
    pub(crate) rooms: usize,
    /// (connection, room) pairs.
    pub(crate) memberships: usize,
    /// Frames queued over all connections.
    pub(crate) queued: usize,
    /// The longest queue.
    pub(crate) queue_max: usize,
}

/// Local connections per room and per user.
pub(crate) struct Hub {
    node: NodeId,
    // RwLock: fan-out (read) is the hot path and runs on the dispatcher task; joins, leaves
    // and connects (write) are rare by comparison. Never held across an await.
    rooms: RwLock<HashMap<RoomId, Outboxes>>,
    users: RwLock<HashMap<UserId, UserOutboxes>>,
    /// Rooms the host's controls took connections out of, until they have left them (rare:
    /// one map for the node rather than a field per connection).
    evictions: Mutex<control::Evictions>,
}

impl Hub {
    pub(crate) fn new(node: NodeId) -> Self {
        Self {
            node,
            rooms: RwLock::default(),
            users: RwLock::default(),
            evictions: Mutex::default(),
        }
    }

    /// This node's id.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// Fans one envelope out to the local connections on its topic, skipping its origin
    /// connection. Returns how many connections it was written or queued for.
    ///
    /// With [`Push::Inline`], idle connections get the frame written to their socket on the
    /// spot (see [`Outbox`]); the dispatcher asks for it while it keeps up, and for
    /// [`Push::Batch`] (the flush tick writes) when it is behind (8 events or more waiting:
    /// `node::tasks::BATCH_BACKLOG`).
    pub(crate) fn deliver(&self, envelope: &Envelope, how: Push) -> usize {
        // The sending connection, if it is on this node: it gets its `ack`, not an echo.
        let skip = envelope
            .origin
            .conn
            .filter(|_| envelope.origin.node == self.node);
        let frame = &envelope.frame;
        let send = |len: usize, outboxes: &mut dyn Iterator<Item = (ConnId, &Arc<Outbox>)>| {
            // In a big room, the first recipients are queued (their tasks start writing on the
            // other cores at once) and only the last few are written here.
            let inline_from = if how == Push::Inline {
                len.saturating_sub(INLINE_PER_ENVELOPE)
            } else {
                usize::MAX
            };
            let other = if how == Push::Inline { Push::Wake } else { how };
            outboxes
                .enumerate()
                .filter(|(_, (conn, _))| Some(*conn) != skip)
                .filter(|(i, (_, outbox))| {
                    let how = if *i >= inline_from {
                        Push::Inline
                    } else {
                        other
                    };
                    outbox.push(frame.clone(), how)
                })
                .count()
        };
        match &envelope.topic {
            Topic::Room(room) => read(&self.rooms).get(room).map_or(0, |outboxes| {
                send(outboxes.len(), &mut outboxes.iter().map(|(c, o)| (*c, o)))
            }),
            Topic::User(user) => read(&self.users).get(user).map_or(0, |outboxes| {
                send(outboxes.len(), &mut outboxes.iter().map(|(c, o)| (*c, o)))
            }),
        }
    }

    /// Calls `f` on every local connection's outbox.
    fn each(&self, mut f: impl FnMut(ConnId, &Arc<Outbox>)) {
        for outboxes in read(&self.users).values() {
            for (conn, outbox) in outboxes {
                f(*conn, outbox);
            }
        }
    }

    /// Queues a frame for every local connection (e.g. a `resync` after a broker reconnect).
    pub(crate) fn broadcast_all(&self, frame: &Bytes) {
        self.each(|_, outbox| {
            outbox.send(frame.clone());
        });
    }

    /// Makes a keepalive ping due on the local connections whose id is `slice` modulo
    /// `slices` (the node's keepalive sweep: one timer per node, not one per connection).
    pub(crate) fn ping_slice(&self, slice: u64, slices: u64) {
        self.each(|conn, outbox| {
            if conn % slices == slice {
                outbox.alarm.ping();
            }
        });
    }

    /// Raises `cause` on every local connection (shutdown).
    pub(crate) fn raise_all(&self, cause: u8) {
        self.each(|_, outbox| outbox.alarm.raise(cause));
    }

    /// Adds a connection to a room and, under the same lock, queues `first` for it, so that
    /// every frame the room delivers to it afterwards comes after `first` (the `joined` reply
    /// and any replayed history).
    pub(crate) fn add_to_room(
        &self,
        room: &RoomId,
        conn: ConnId,
        outbox: &Arc<Outbox>,
        first: Vec<Bytes>,
    ) {
        self.add_to_room_with(room, conn, outbox, || {
            for frame in first {
                outbox.send(frame);
            }
        });
    }

    /// Adds a connection to a room after `fill` ran under the room table's write lock: no
    /// delivery interleaves, so what `fill` queues comes before anything the room delivers.
    pub(crate) fn add_to_room_with(
        &self,
        room: &RoomId,
        conn: ConnId,
        outbox: &Arc<Outbox>,
        fill: impl FnOnce(),
    ) {
        let mut rooms = write(&self.rooms);
        fill();
        rooms
            .entry(room.clone())
            .or_default()
            .insert(conn, outbox.clone());
    }

    pub(crate) fn remove_from_room(&self, room: &RoomId, conn: ConnId) {
        let mut rooms = write(&self.rooms);
        if let Some(outboxes) = rooms.get_mut(room) {
            outboxes.remove(&conn);
            if outboxes.is_empty() {
                rooms.remove(room);
            }
        }
    }

    pub(crate) fn add_user_conn(&self, user: &UserId, conn: ConnId, outbox: Arc<Outbox>) {
        write(&self.users)
            .entry(user.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push((conn, outbox));
    }

    pub(crate) fn remove_user_conn(&self, user: &UserId, conn: ConnId) {
        let mut users = write(&self.users);
        if let Some(outboxes) = users.get_mut(user) {
            outboxes.retain(|(c, _)| *c != conn);
            if outboxes.is_empty() {
                users.remove(user);
            }
        }
        drop(users);
        lock(&self.evictions).remove(&conn);
    }

    /// The users with a connection on this node.
    pub(crate) fn users(&self) -> Vec<UserId> {
        read(&self.users).keys().cloned().collect()
    }

    /// `user`'s connections on this node.
    pub(crate) fn user_connections(&self, user: &UserId) -> usize {
        read(&self.users).get(user).map_or(0, Vec::len)
    }

    /// What the node holds now, for the metrics' gauges: read when they are rendered, so
    /// that the hot path keeps nothing up to date for them.
    pub(crate) fn stats(&self) -> HubStats {
        let (rooms, memberships) = {
            let rooms = read(&self.rooms);
            (rooms.len(), rooms.values().map(HashMap::len).sum())
        };
        let mut stats = HubStats {
            rooms,
            memberships,
            ..HubStats::default()
        };
        self.each(|_, outbox| {
            let queued = outbox.queued();
            stats.connections += 1;
            stats.queued += queued;
            stats.queue_max = stats.queue_max.max(queued);
        });
        stats
    }

    /// Local connections on this node (for metrics and tests).
    pub(crate) fn connection_count(&self) -> usize {
        read(&self.users).values().map(Vec::len).sum()
    }
}
