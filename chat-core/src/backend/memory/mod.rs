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

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{
    broker::{Broker, BrokerEvent, Envelope, NewRoomMessage, NodeId, SenderCopy, Topic},
    history::{HistoryPage, HistoryStore},
    store::{PresenceStore, RoomInfo, RoomStore},
    Backend, BoxFuture,
};
use crate::{
    error::BackendError,
    protocol::{MessageId, RoomId, RoomMessage, ServerFrame, User, UserId},
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
    pubsub: Mutex<PubSub>,
    rooms: Mutex<Rooms>,
    presence: Mutex<Presence>,
}

#[derive(Default)]
struct PubSub {
    nodes: HashMap<NodeId, mpsc::UnboundedSender<BrokerEvent>>,
    subscribers: HashMap<Topic, HashSet<NodeId>>,
    logs: HashMap<RoomId, RoomLog>,
}

#[derive(Default)]
struct RoomLog {
    next_seq: u64,
    entries: VecDeque<(u64, Bytes)>,
}

#[derive(Default)]
struct Rooms {
    order: Vec<RoomId>,
    rooms: HashMap<RoomId, RoomRecord>,
    users: HashMap<UserId, User>,
}

struct RoomRecord {
    info: RoomInfo,
    /// Members in the order they first joined; the value indexes `member_list`.
    members: HashMap<UserId, usize>,
    member_list: Vec<User>,
}

/// A user online in a room, with their connections per node. A Vec, not a map: a user is
/// almost always on one node, and this entry exists per user and room (bytes per connection).
type OnlineUser = (User, Vec<(NodeId, u32)>);

#[derive(Default)]
struct Presence {
    /// room -> user -> (user, connections per node). The user's entry exists while any count
    /// is above zero; BTreeMap keeps `online` in a stable order.
    rooms: HashMap<RoomId, BTreeMap<UserId, OnlineUser>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves maps that are still consistent (every
    // critical section is a few inserts/removes), so a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            events: Mutex::new(None),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&node.events) = Some(rx);
        lock(&self.inner.pubsub).nodes.insert(node.id, tx);
        Backend {
            broker: node.clone(),
            rooms: node.clone(),
            presence: node.clone(),
            history: node,
        }
    }

    /// Simulates a node crash: drops its subscriptions and removes its users from presence,
    /// returning the `(room, user)` pairs whose last connection was on that node. (The Redis
    /// backend does this when a node's heartbeat expires.)
    pub fn remove_node(&self, node: NodeId) -> Vec<(RoomId, User)> {
        {
            let mut ps = lock(&self.inner.pubsub);
            ps.nodes.remove(&node);
            for subs in ps.subscribers.values_mut() {
                subs.remove(&node);
            }
        }
        let mut gone = Vec::new();
        let mut presence = lock(&self.inner.presence);
        for (room, users) in presence.rooms.iter_mut() {
            users.retain(|_, (user, per_node)| {
                per_node.retain(|(n, _)| *n != node);
                if per_node.is_empty() {
                    gone.push((room.clone(), user.clone()));
                    false
                } else {
                    true
                }
            });
        }
        gone
    }
}

/// One node's view of a [`MemoryCluster`]; implements every backend trait.
struct MemoryNode {
    id: NodeId,
    cluster: Arc<Inner>,
    events: Mutex<Option<mpsc::UnboundedReceiver<BrokerEvent>>>,
}

impl PubSub {
    fn deliver(&self, envelope: Envelope) -> usize {
        let Some(nodes) = self.subscribers.get(&envelope.topic) else {
            return 0;
        };
        let mut reached = 0;
        for node in nodes {
            if let Some(tx) = self.nodes.get(node) {
                if tx.send(BrokerEvent::Envelope(envelope.clone())).is_ok() {
                    reached += 1;
                }
            }
        }
        reached
    }
}

impl Broker for MemoryNode {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<usize, BackendError>> {
        let reached = lock(&self.cluster.pubsub).deliver(envelope);
        Box::pin(async move { Ok(reached) })
    }

    fn publish_room_message(
        &self,
        msg: NewRoomMessage,
    ) -> BoxFuture<'_, Result<RoomMessage, BackendError>> {
        let cap = self
            .cluster
            .history_per_room
            .unwrap_or(DEFAULT_HISTORY_PER_ROOM);
        let mut ps = lock(&self.cluster.pubsub);
        let log = ps.logs.entry(msg.room.clone()).or_default();
        log.next_seq += 1;
        let seq = log.next_seq;
        let message = RoomMessage {
            id: MessageId::new(seq.to_string()),
            room: msg.room,
            from: msg.from,
            body: msg.body,
            ts: msg.ts,
        };
        let frame = ServerFrame::Message(message.clone()).encode();
        if log.entries.len() >= cap {
            log.entries.pop_front();
        }
        log.entries.push_back((seq, frame.clone()));
        ps.deliver(Envelope {
            origin: msg.origin,
            topic: Topic::Room(message.room.clone()),
            frame,
        });
        drop(ps);
        Box::pin(async move { Ok(message) })
    }

    fn publish_direct(
        &self,
        envelope: Envelope,
        copy_to: Option<SenderCopy>,
    ) -> BoxFuture<'_, Result<usize, BackendError>> {
        let ps = lock(&self.cluster.pubsub);
        let copy = copy_to.filter(|copy| {
            // Needed if the sender has other connections here or another node listens.
            copy.here
                || ps
                    .subscribers
                    .get(&copy.topic)
                    .is_some_and(|nodes| nodes.iter().any(|node| *node != self.id))
        });
        let copy = copy.map(|copy| Envelope {
            topic: copy.topic,
            ..envelope.clone()
        });
        let reached = ps.deliver(envelope);
        if let (true, Some(copy)) = (reached > 0, copy) {
            ps.deliver(copy);
        }
        drop(ps);
        Box::pin(async move { Ok(reached) })
    }

    fn subscribe(&self, topics: Vec<Topic>) -> BoxFuture<'_, Result<(), BackendError>> {
        let mut ps = lock(&self.cluster.pubsub);
        for topic in topics {
            ps.subscribers.entry(topic).or_default().insert(self.id);
        }
        Box::pin(async { Ok(()) })
    }

    fn unsubscribe(&self, topics: Vec<Topic>) -> BoxFuture<'_, Result<(), BackendError>> {
        let mut ps = lock(&self.cluster.pubsub);
        for topic in topics {
            if let Some(nodes) = ps.subscribers.get_mut(&topic) {
                nodes.remove(&self.id);
                if nodes.is_empty() {
                    ps.subscribers.remove(&topic);
                }
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<BrokerEvent>> {
        lock(&self.events).take()
    }
}

impl RoomStore for MemoryNode {
    fn create(&self, room: RoomInfo) -> BoxFuture<'_, Result<(), BackendError>> {
        let mut rooms = lock(&self.cluster.rooms);
        if !rooms.rooms.contains_key(&room.room_id) {
            rooms.order.push(room.room_id.clone());
            rooms.rooms.insert(
                room.room_id.clone(),
                RoomRecord {
                    info: room,
                    members: HashMap::new(),
                    member_list: Vec::new(),
                },
            );
        }
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(
        &'a self,
        room: &'a RoomId,
    ) -> BoxFuture<'a, Result<Option<RoomInfo>, BackendError>> {
        let info = lock(&self.cluster.rooms)
            .rooms
            .get(room)
            .map(|r| r.info.clone());
        Box::pin(async move { Ok(info) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RoomInfo>, BackendError>> {
        let rooms = lock(&self.cluster.rooms);
        let list = rooms
            .order
            .iter()
            .filter_map(|id| rooms.rooms.get(id).map(|r| r.info.clone()))
            .collect();
        Box::pin(async move { Ok(list) })
    }

    fn add_member<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let mut rooms = lock(&self.cluster.rooms);
        let found = match rooms.rooms.get_mut(room) {
            Some(record) => {
                match record.members.get(&user.id) {
                    Some(&i) => record.member_list[i] = user.clone(),
                    None => {
                        record
                            .members
                            .insert(user.id.clone(), record.member_list.len());
                        record.member_list.push(user.clone());
                    }
                }
                true
            }
            None => false,
        };
        if found {
            rooms.users.insert(user.id.clone(), user.clone());
        }
        Box::pin(async move { Ok(found) })
    }

    fn is_member<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a UserId,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let member = lock(&self.cluster.rooms)
            .rooms
            .get(room)
            .is_some_and(|r| r.members.contains_key(user));
        Box::pin(async move { Ok(member) })
    }

    fn members<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, Result<Vec<User>, BackendError>> {
        let members = lock(&self.cluster.rooms)
            .rooms
            .get(room)
            .map(|r| r.member_list.clone())
            .unwrap_or_default();
        Box::pin(async move { Ok(members) })
    }

    fn remember_user<'a>(&'a self, user: &'a User) -> BoxFuture<'a, Result<(), BackendError>> {
        lock(&self.cluster.rooms)
            .users
            .insert(user.id.clone(), user.clone());
        Box::pin(async { Ok(()) })
    }

    fn user_known<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<bool, BackendError>> {
        let known = lock(&self.cluster.rooms).users.contains_key(user);
        Box::pin(async move { Ok(known) })
    }
}

impl PresenceStore for MemoryNode {
    fn enter<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let mut presence = lock(&self.cluster.presence);
        let users = presence.rooms.entry(room.clone()).or_default();
        let (_, per_node) = users
            .entry(user.id.clone())
            .or_insert_with(|| (user.clone(), Vec::with_capacity(1)));
        let first = per_node.is_empty();
        match per_node.iter_mut().find(|(n, _)| *n == node) {
            Some((_, count)) => *count += 1,
            None => per_node.push((node, 1)),
        }
        Box::pin(async move { Ok(first) })
    }

    fn exit<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let mut presence = lock(&self.cluster.presence);
        let mut last = false;
        if let Some(users) = presence.rooms.get_mut(room) {
            if let Some((_, per_node)) = users.get_mut(&user.id) {
                if let Some(i) = per_node.iter().position(|(n, _)| *n == node) {
                    per_node[i].1 = per_node[i].1.saturating_sub(1);
                    if per_node[i].1 == 0 {
                        per_node.swap_remove(i);
                    }
                }
                if per_node.is_empty() {
                    users.remove(&user.id);
                    last = true;
                }
            }
            if users.is_empty() {
                presence.rooms.remove(room);
            }
        }
        Box::pin(async move { Ok(last) })
    }

    fn online<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, Result<Vec<User>, BackendError>> {
        let users = lock(&self.cluster.presence)
            .rooms
            .get(room)
            .map(|users| users.values().map(|(u, _)| u.clone()).collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(users) })
    }

    fn online_counts<'a>(
        &'a self,
        rooms: &'a [RoomId],
    ) -> BoxFuture<'a, Result<Vec<usize>, BackendError>> {
        let presence = lock(&self.cluster.presence);
        let counts = rooms
            .iter()
            .map(|r| presence.rooms.get(r).map_or(0, |u| u.len()))
            .collect();
        Box::pin(async move { Ok(counts) })
    }
}

impl HistoryStore for MemoryNode {
    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, BackendError>> {
        let result = (|| {
            let before = before.map(parse_seq).transpose()?;
            let ps = lock(&self.cluster.pubsub);
            let Some(log) = ps.logs.get(room) else {
                return Ok(HistoryPage::default());
            };
            // Entries are in ascending seq order: find where `before` cuts, take `limit` back.
            let end = match before {
                Some(b) => log.entries.partition_point(|(seq, _)| *seq < b),
                None => log.entries.len(),
            };
            let start = end.saturating_sub(limit);
            let messages = log
                .entries
                .range(start..end)
                .map(|(_, f)| f.clone())
                .collect();
            let next_before = (start > 0)
                .then(|| {
                    log.entries
                        .get(start)
                        .map(|(seq, _)| MessageId::new(seq.to_string()))
                })
                .flatten();
            Ok(HistoryPage {
                messages,
                next_before,
            })
        })();
        Box::pin(async move { result })
    }

    fn after<'a>(
        &'a self,
        room: &'a RoomId,
        after: &'a MessageId,
        limit: usize,
    ) -> BoxFuture<'a, Result<(Vec<Bytes>, bool), BackendError>> {
        let result = (|| {
            let after = parse_seq(after)?;
            let ps = lock(&self.cluster.pubsub);
            let Some(log) = ps.logs.get(room) else {
                return Ok((Vec::new(), false));
            };
            let start = log.entries.partition_point(|(seq, _)| *seq <= after);
            let end = (start + limit).min(log.entries.len());
            let frames = log
                .entries
                .range(start..end)
                .map(|(_, f)| f.clone())
                .collect();
            Ok((frames, end < log.entries.len()))
        })();
        Box::pin(async move { result })
    }
}

fn parse_seq(id: &MessageId) -> Result<u64, BackendError> {
    id.as_str()
        .parse::<u64>()
        .map_err(|_| BackendError::InvalidCursor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::broker::{Origin, NO_CONN};

    fn msg(backend: &Backend, room: &RoomId, body: &str) -> NewRoomMessage {
        NewRoomMessage {
            origin: Origin {
                node: backend.broker.node_id(),
                conn: NO_CONN,
            },
            room: room.clone(),
            from: User::new("u", "U"),
            body: body.into(),
            ts: 1,
        }
    }

    #[tokio::test]
    async fn history_pages_back_and_caps_the_ring() {
        let cluster = MemoryCluster::with_history_per_room(5);
        let node = cluster.node();
        let room = RoomId::new("r");
        for i in 0..8 {
            node.broker
                .publish_room_message(msg(&node, &room, &format!("m{i}")))
                .await
                .unwrap();
        }
        let page = node.history.page(&room, None, 3).await.unwrap();
        assert_eq!(page.messages.len(), 3);
        assert!(std::str::from_utf8(&page.messages[2])
            .unwrap()
            .contains("\"m7\""));
        let next = page.next_before.unwrap();
        assert_eq!(next.as_str(), "6");
        let page = node.history.page(&room, Some(&next), 3).await.unwrap();
        // Only 5 are kept (ids 4..=8): the page before id 6 is ids 4 and 5, and nothing older.
        assert_eq!(page.messages.len(), 2);
        assert!(page.next_before.is_none());
        let bad = node
            .history
            .page(&room, Some(&MessageId::new("x")), 3)
            .await;
        assert!(matches!(bad, Err(BackendError::InvalidCursor)));
        let (after, more) = node
            .history
            .after(&room, &MessageId::new("6"), 10)
            .await
            .unwrap();
        assert_eq!(after.len(), 2);
        assert!(!more);
    }

    #[tokio::test]
    async fn publish_reaches_each_subscribed_node_once() {
        let cluster = MemoryCluster::new();
        let (a, b, c) = (cluster.node(), cluster.node(), cluster.node());
        let room = RoomId::new("r");
        let mut rx_b = b.broker.take_events().unwrap();
        assert!(b.broker.take_events().is_none());
        b.broker
            .subscribe(vec![Topic::Room(room.clone())])
            .await
            .unwrap();
        b.broker
            .subscribe(vec![Topic::Room(room.clone())])
            .await
            .unwrap();
        let _ = c;
        let sent = a
            .broker
            .publish_room_message(msg(&a, &room, "hi"))
            .await
            .unwrap();
        assert_eq!(sent.id.as_str(), "1");
        let Some(BrokerEvent::Envelope(env)) = rx_b.recv().await else {
            panic!("no envelope")
        };
        assert_eq!(env.origin.node, a.broker.node_id());
        assert!(rx_b.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_direct_copy_goes_only_where_another_tab_can_get_it() {
        let cluster = MemoryCluster::new();
        let (a, b) = (cluster.node(), cluster.node());
        let (sender, recipient) = (
            Topic::User(UserId::new("ann")),
            Topic::User(UserId::new("bob")),
        );
        let mut rx_a = a.broker.take_events().unwrap();
        let mut rx_b = b.broker.take_events().unwrap();
        // Ann is connected on A, Bob on B.
        a.broker.subscribe(vec![sender.clone()]).await.unwrap();
        b.broker.subscribe(vec![recipient.clone()]).await.unwrap();
        let send = |here: bool| {
            let envelope = Envelope {
                origin: Origin {
                    node: a.broker.node_id(),
                    conn: 1,
                },
                topic: recipient.clone(),
                frame: Bytes::from_static(b"{}"),
            };
            let copy = SenderCopy {
                topic: sender.clone(),
                here,
            };
            a.broker.publish_direct(envelope, Some(copy))
        };
        let topics = |rx: &mut mpsc::UnboundedReceiver<BrokerEvent>| {
            let mut topics = Vec::new();
            while let Ok(BrokerEvent::Envelope(env)) = rx.try_recv() {
                topics.push(env.topic);
            }
            topics
        };
        // Ann's only connection sent it: no copy.
        assert_eq!(send(false).await.unwrap(), 1);
        assert_eq!(topics(&mut rx_a), vec![]);
        assert_eq!(topics(&mut rx_b), vec![recipient.clone()]);
        // Another of Ann's connections on A: the copy, to A.
        assert_eq!(send(true).await.unwrap(), 1);
        assert_eq!(topics(&mut rx_a), vec![sender.clone()]);
        assert_eq!(topics(&mut rx_b), vec![recipient.clone()]);
        // Another of Ann's connections on B: the copy, to both nodes listening.
        b.broker.subscribe(vec![sender.clone()]).await.unwrap();
        assert_eq!(send(false).await.unwrap(), 1);
        assert_eq!(topics(&mut rx_a), vec![sender.clone()]);
        assert_eq!(topics(&mut rx_b), vec![recipient.clone(), sender.clone()]);
    }

    #[tokio::test]
    async fn presence_counts_users_not_connections() {
        let cluster = MemoryCluster::new();
        let (a, b) = (cluster.node(), cluster.node());
        let room = RoomId::new("r");
        let ann = User::new("ann", "Ann");
        let (na, nb) = (a.broker.node_id(), b.broker.node_id());
        assert!(a.presence.enter(&room, &ann, na).await.unwrap());
        assert!(!b.presence.enter(&room, &ann, nb).await.unwrap());
        assert!(!a.presence.enter(&room, &ann, na).await.unwrap());
        assert_eq!(
            a.presence
                .online_counts(std::slice::from_ref(&room))
                .await
                .unwrap(),
            vec![1]
        );
        assert!(!a.presence.exit(&room, &ann, na).await.unwrap());
        assert!(!a.presence.exit(&room, &ann, na).await.unwrap());
        assert_eq!(cluster.remove_node(nb), vec![(room.clone(), ann.clone())]);
        assert!(a.presence.online(&room).await.unwrap().is_empty());
    }
}
