//! The node-local side of fan-out: who on this node listens to what, and the ref-counted
//! broker subscriptions that follow from it.
//!
//! The [`Hub`] is the only place frames from the broker go: the dispatcher task hands each
//! envelope to [`Hub::deliver`], which copies the (already serialized, reference-counted) frame
//! bytes into the bounded queue of every local connection on the topic, except the connection
//! that published it. Nothing here publishes, so nothing received is ever re-published.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex, RwLock,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;

use crate::{
    broker::{Broker, ConnId, Envelope, NodeId, Topic},
    error::BackendError,
    protocol::{RoomId, UserId},
};

/// A queued frame. The queue holds a pointer rather than the `Bytes` itself: a tokio channel
/// allocates its slots in blocks of 32 up front, so the slot size is paid by every idle
/// connection (8 bytes instead of 32 saves about 800 bytes each). One `Arc` is allocated per
/// envelope, then shared by every local recipient.
pub(crate) type Frame = Arc<Bytes>;

/// Why a connection must end, raised from outside its session: the chat is shutting down,
/// or its queue overflowed. The session polls it on every turn of its loop, so polling is a
/// load and an uncontended waker registration (a `Notify` took a lock per poll, and the
/// chat-wide shutdown `watch` a shared one: 5 to 7% of fan-out CPU).
#[derive(Debug, Default)]
pub(crate) struct Alarm {
    raised: AtomicU8,
    waker: AtomicWaker,
}

impl Alarm {
    /// The chat is shutting down.
    pub(crate) const SHUTDOWN: u8 = 1;
    /// The outgoing queue overflowed.
    pub(crate) const SLOW: u8 = 2;

    /// Raises `cause` (idempotent) and wakes the session.
    pub(crate) fn raise(&self, cause: u8) {
        self.raised.fetch_or(cause, Ordering::AcqRel);
        self.waker.wake();
    }

    /// What has been raised so far (0: nothing).
    pub(crate) fn raised(&self) -> u8 {
        self.raised.load(Ordering::Acquire)
    }

    /// Ready with the raised causes once anything is raised.
    pub(crate) fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<u8> {
        match self.raised() {
            0 => {
                self.waker.register(cx.waker());
                match self.raised() {
                    0 => Poll::Pending,
                    raised => Poll::Ready(raised),
                }
            }
            raised => Poll::Ready(raised),
        }
    }
}

/// The sending half of one connection's outgoing queue.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    tx: mpsc::Sender<Frame>,
    /// Raised with [`Alarm::SLOW`] when a frame could not be queued because the queue was
    /// full: the connection then closes as a slow consumer instead of letting its backlog grow.
    alarm: Arc<Alarm>,
}

impl Peer {
    pub(crate) fn new(tx: mpsc::Sender<Frame>, alarm: Arc<Alarm>) -> Self {
        Self { tx, alarm }
    }

    /// Queues a frame without waiting. A full queue marks the connection slow.
    pub(crate) fn send(&self, frame: Frame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.alarm.raise(Alarm::SLOW);
                false
            }
            // The connection is closing; its cleanup removes it from the hub.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

type Peers = HashMap<ConnId, Peer>;
/// A user's connections on this node: usually one or a few tabs, so a Vec (one small
/// allocation) rather than a map, which matters at tens of thousands of connections.
type UserPeers = Vec<(ConnId, Peer)>;

/// Local connections per room and per user, and broker subscription counts.
pub(crate) struct Hub {
    node: NodeId,
    // RwLock: fan-out (read) is the hot path and runs on the dispatcher task; joins, leaves
    // and connects (write) are rare by comparison. Never held across an await.
    rooms: RwLock<HashMap<RoomId, Peers>>,
    users: RwLock<HashMap<UserId, UserPeers>>,
    /// Local interest per topic. The tokio mutex serializes subscribe/unsubscribe of one topic
    /// (so a leave's UNSUBSCRIBE can never overtake a later join's SUBSCRIBE); the std mutex
    /// around the map is only held to find or create a topic's slot.
    topics: Mutex<HashMap<Topic, Arc<tokio::sync::Mutex<usize>>>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Critical sections are plain map updates, consistent even after a panic elsewhere.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub(crate) fn new(node: NodeId) -> Self {
        Self {
            node,
            rooms: RwLock::default(),
            users: RwLock::default(),
            topics: Mutex::default(),
        }
    }

    /// Fans one envelope out to the local connections on its topic, skipping its origin
    /// connection. Returns how many connections it was queued for.
    pub(crate) fn deliver(&self, envelope: &Envelope) -> usize {
        let skip = (envelope.origin.node == self.node).then_some(envelope.origin.conn);
        let frame: Frame = Arc::new(envelope.frame.clone());
        let send = |peers: &mut dyn Iterator<Item = (ConnId, &Peer)>| {
            peers
                .filter(|(conn, _)| Some(*conn) != skip)
                .filter(|(_, peer)| peer.send(frame.clone()))
                .count()
        };
        match &envelope.topic {
            Topic::Room(room) => read(&self.rooms)
                .get(room)
                .map_or(0, |peers| send(&mut peers.iter().map(|(c, p)| (*c, p)))),
            Topic::User(user) => read(&self.users)
                .get(user)
                .map_or(0, |peers| send(&mut peers.iter().map(|(c, p)| (*c, p)))),
        }
    }

    /// Queues a frame for every local connection (e.g. a `resync` after a broker reconnect).
    pub(crate) fn broadcast_all(&self, frame: &Bytes) {
        let frame: Frame = Arc::new(frame.clone());
        for peers in read(&self.users).values() {
            for (_, peer) in peers {
                peer.send(frame.clone());
            }
        }
    }

    /// Raises `cause` on every local connection (shutdown).
    pub(crate) fn raise_all(&self, cause: u8) {
        for peers in read(&self.users).values() {
            for (_, peer) in peers {
                peer.alarm.raise(cause);
            }
        }
    }

    /// Adds a connection to a room and, under the same lock, queues `first` for it, so that
    /// every frame the room delivers to it afterwards comes after `first` (the `joined` reply
    /// and any replayed history).
    pub(crate) fn add_to_room(&self, room: &RoomId, conn: ConnId, peer: &Peer, first: Vec<Bytes>) {
        let mut rooms = write(&self.rooms);
        for frame in first {
            peer.send(Arc::new(frame));
        }
        rooms
            .entry(room.clone())
            .or_default()
            .insert(conn, peer.clone());
    }

    /// Finishes a join that buffered live frames in `side` (see `Connection::join`): under the
    /// write lock, so no delivery interleaves, queues `first`, then the buffered frames that
    /// `keep` accepts, then what `tail` returns, and puts `peer` in the room in place of the
    /// buffering one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn complete_join(
        &self,
        room: &RoomId,
        conn: ConnId,
        peer: &Peer,
        first: Vec<Bytes>,
        side: &mut mpsc::Receiver<Frame>,
        keep: impl Fn(&Bytes) -> bool,
        tail: impl FnOnce() -> Option<Bytes>,
    ) {
        let mut rooms = write(&self.rooms);
        for frame in first {
            peer.send(Arc::new(frame));
        }
        while let Ok(frame) = side.try_recv() {
            if keep(&frame) {
                peer.send(frame);
            }
        }
        if let Some(frame) = tail() {
            peer.send(Arc::new(frame));
        }
        rooms
            .entry(room.clone())
            .or_default()
            .insert(conn, peer.clone());
    }

    pub(crate) fn remove_from_room(&self, room: &RoomId, conn: ConnId) {
        let mut rooms = write(&self.rooms);
        if let Some(peers) = rooms.get_mut(room) {
            peers.remove(&conn);
            if peers.is_empty() {
                rooms.remove(room);
            }
        }
    }

    pub(crate) fn add_user_conn(&self, user: &UserId, conn: ConnId, peer: Peer) {
        write(&self.users)
            .entry(user.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push((conn, peer));
    }

    pub(crate) fn remove_user_conn(&self, user: &UserId, conn: ConnId) {
        let mut users = write(&self.users);
        if let Some(peers) = users.get_mut(user) {
            peers.retain(|(c, _)| *c != conn);
            if peers.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Local connections on this node (for metrics and tests).
    pub(crate) fn connection_count(&self) -> usize {
        read(&self.users).values().map(Vec::len).sum()
    }

    fn slot(&self, topic: &Topic) -> Arc<tokio::sync::Mutex<usize>> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.entry(topic.clone()).or_default().clone()
    }

    /// One more local interest in `topic`; subscribes the node on the first.
    pub(crate) async fn acquire(
        &self,
        broker: &dyn Broker,
        topic: &Topic,
    ) -> Result<(), BackendError> {
        let slot = self.slot(topic);
        let mut count = slot.lock().await;
        if *count == 0 {
            broker.subscribe(vec![topic.clone()]).await?;
        }
        *count += 1;
        Ok(())
    }

    /// One less local interest in `topic`; unsubscribes the node after the last.
    pub(crate) async fn release(&self, broker: &dyn Broker, topic: &Topic) {
        let slot = self.slot(topic);
        let mut count = slot.lock().await;
        *count = count.saturating_sub(1);
        if *count > 0 {
            return;
        }
        if let Err(err) = broker.unsubscribe(vec![topic.clone()]).await {
            // The subscription may linger in the broker: its frames then find no local
            // connection and are dropped here, which is harmless.
            tracing::warn!(cause = %err, ?topic, "unsubscribe failed");
        }
        drop(count);
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        // Two references left (the map's and `slot`) means nobody is waiting on this topic, so
        // the entry can go; new acquirers clone under this same lock, so this cannot race.
        if Arc::strong_count(&slot) == 2 {
            if let Some(current) = topics.get(topic) {
                if Arc::ptr_eq(current, &slot) {
                    topics.remove(topic);
                }
            }
        }
    }

    /// Topics with local interest (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
