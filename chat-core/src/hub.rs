//! The node-local side of fan-out: who on this node listens to what, and the ref-counted
//! broker subscriptions that follow from it.
//!
//! The [`Hub`] is the only place frames from the broker go: the dispatcher task hands each
//! envelope to [`Hub::deliver`], which copies the (already serialized, reference-counted) frame
//! bytes into the bounded queue of every local connection on the topic, except the connection
//! that published it. Nothing here publishes, so nothing received is ever re-published.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex, RwLock,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use crate::{
    broker::{Broker, ConnId, Envelope, NodeId, Topic},
    error::BackendError,
    protocol::{RoomId, UserId},
};

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

/// One connection's outgoing queue and its alarm, in one allocation shared by the hub (which
/// queues) and the connection (the one consumer).
///
/// Hand-written rather than a tokio channel because of what every idle connection pays: a
/// bounded `mpsc` allocates a 32-slot block and a semaphore up front (about 500 bytes with
/// the separate alarm), and its pop returns a permit through the semaphore's mutex. Here an
/// empty queue owns no buffer, a frame is a `Bytes` clone (no `Arc` around it), and the
/// consumer is woken only when the queue goes from empty to not empty.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    capacity: usize,
    /// The consumer, woken when a frame lands in an empty queue.
    waker: AtomicWaker,
    pub(crate) alarm: Alarm,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Set when the connection is gone: frames are refused instead of piling up until its
    /// cleanup removes it from the hub.
    closed: bool,
}

/// Slots an emptied queue may keep. A burst grows the buffer; once drained, a larger one is
/// freed, so an idle connection holds at most this many (32 bytes each).
const RETAINED_SLOTS: usize = 8;

/// A connection's outbox, as the hub holds it.
pub(crate) type Peer = Arc<Outbox>;

impl Outbox {
    /// An empty outbox holding at most `capacity` frames.
    pub(crate) fn new(capacity: usize) -> Peer {
        Arc::new(Self {
            queue: Mutex::default(),
            capacity: capacity.max(1),
            waker: AtomicWaker::new(),
            alarm: Alarm::default(),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The critical sections are a push or a pop: consistent even after a panic elsewhere.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame without waiting. A full queue raises [`Alarm::SLOW`] (the connection
    /// then closes as a slow consumer instead of letting its backlog grow); a closed one
    /// refuses it. Returns whether it was queued.
    pub(crate) fn send(&self, frame: Bytes) -> bool {
        let mut queue = self.queue();
        if queue.closed {
            return false;
        }
        if queue.frames.len() >= self.capacity {
            drop(queue);
            self.alarm.raise(Alarm::SLOW);
            return false;
        }
        let was_empty = queue.frames.is_empty();
        queue.frames.push_back(frame);
        drop(queue);
        // The consumer drains to empty before it waits, so only this transition needs a wake.
        if was_empty {
            self.waker.wake();
        }
        true
    }

    /// The next queued frame, without waiting.
    pub(crate) fn try_pop(&self) -> Option<Bytes> {
        let mut queue = self.queue();
        let frame = queue.frames.pop_front()?;
        let spare = (queue.frames.is_empty() && queue.frames.capacity() > RETAINED_SLOTS)
            .then(|| std::mem::take(&mut queue.frames));
        drop(queue);
        drop(spare);
        Some(frame)
    }

    /// The next queued frame, or `Pending` until one is queued (`None` once closed).
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(frame) = self.try_pop() {
            return Poll::Ready(Some(frame));
        }
        self.waker.register(cx.waker());
        // A frame queued between the first look and the registration did not wake us.
        match self.try_pop() {
            Some(frame) => Poll::Ready(Some(frame)),
            None if self.queue().closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// Refuses further frames and frees what is queued; a waiting consumer gets `None`.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut queue = self.queue();
            queue.closed = true;
            std::mem::take(&mut queue.frames)
        };
        drop(dropped);
        self.waker.wake();
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
        let frame = &envelope.frame;
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
            peer.send(frame);
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
        side: &Outbox,
        keep: impl Fn(&Bytes) -> bool,
        tail: impl FnOnce() -> Option<Bytes>,
    ) {
        let mut rooms = write(&self.rooms);
        for frame in first {
            peer.send(frame);
        }
        while let Some(frame) = side.try_pop() {
            if keep(&frame) {
                peer.send(frame);
            }
        }
        if let Some(frame) = tail() {
            peer.send(frame);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frame(i: usize) -> Bytes {
        Bytes::from(format!("{{\"n\":{i}}}"))
    }

    #[test]
    fn outbox_keeps_order_and_wakes_only_an_empty_queues_consumer() {
        let outbox = Outbox::new(16);
        let counter = Arc::new(Counter::default());
        let waker = counter.clone().into();
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_pop(&mut cx).is_pending());
        for i in 0..3 {
            assert!(outbox.send(frame(i)));
        }
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "one wake for the burst"
        );
        for i in 0..3 {
            assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(Some(frame(i))));
        }
        assert!(outbox.poll_pop(&mut cx).is_pending());
        assert!(outbox.send(frame(3)));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(outbox.try_pop(), Some(frame(3)));
    }

    #[test]
    fn a_full_outbox_raises_slow_and_a_closed_one_refuses() {
        let outbox = Outbox::new(2);
        assert!(outbox.send(frame(0)) && outbox.send(frame(1)));
        assert_eq!(outbox.alarm.raised(), 0);
        assert!(!outbox.send(frame(2)));
        assert_eq!(outbox.alarm.raised(), Alarm::SLOW);
        assert_eq!(outbox.try_pop(), Some(frame(0)));

        let counter = Arc::new(Counter::default());
        let waker = counter.clone().into();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(Some(frame(1))));
        assert!(outbox.poll_pop(&mut cx).is_pending());
        outbox.close();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "closing wakes the consumer"
        );
        assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(None));
        assert!(!outbox.send(frame(3)));
    }

    #[test]
    fn a_drained_outbox_gives_back_what_a_burst_grew() {
        let outbox = Outbox::new(1_024);
        for i in 0..100 {
            assert!(outbox.send(frame(i)));
        }
        assert!(outbox.queue().frames.capacity() >= 100);
        while outbox.try_pop().is_some() {}
        assert_eq!(outbox.queue().frames.capacity(), 0);
        // A queue that stays small keeps its buffer: no allocation per frame.
        assert!(outbox.send(frame(0)));
        assert_eq!(outbox.try_pop(), Some(frame(0)));
        assert!(outbox.queue().frames.capacity() > 0);
    }
}
