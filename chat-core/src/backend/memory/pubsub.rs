//! The memory broker: which node listens to which topic, each node's event channel, and the
//! room logs that a room message is appended to in the same step as it is published.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{
    dedup,
    history::{Conversations, DirectLog, RoomLog},
    ready, MemoryNode,
};
use crate::{
    backend::{
        broker::{
            Broker, BrokerEvent, Control, DirectSent, Envelope, NewDirect, NewRoomMessage, NodeId,
            Topic,
        },
        events::EventSender,
        history::{conversation, direct_floor, millis},
        Reply,
    },
    protocol::{now_ms, wire, MessageId, RoomId, RoomMessage, UserId},
    sync::lock,
};

/// A direct message held for its recipient.
pub(super) struct Held {
    /// Unix epoch ms after which it is not delivered.
    until: i64,
    from: UserId,
    /// From a guest (`Hold::guest`).
    guest: bool,
    envelope: Envelope,
}

#[derive(Default)]
pub(super) struct PubSub {
    pub(super) nodes: HashMap<NodeId, EventSender>,
    subscribers: HashMap<Topic, HashSet<NodeId>>,
    /// Under this lock, not the history's own: the append and the publish are one step.
    pub(super) logs: HashMap<RoomId, RoomLog>,
    /// Sent `clientMsgId`s (idempotent sends), under this lock for the same reason.
    pub(super) sent: dedup::Sent,
    /// Direct messages held for recipients with no connection ([`Hold`]): each with the time
    /// (Unix epoch ms) after which it is not delivered. Under this lock: holding is decided by
    /// the publish that reached nobody, and a release must see every message held before it.
    pub(super) held: HashMap<UserId, VecDeque<Held>>,
    /// Direct messages per conversation (its two users in `history::conversation` order),
    /// under this lock: kept in the same step as the publish.
    pub(super) directs: HashMap<(UserId, UserId), DirectLog>,
    /// Each user's conversations, updated in the same step as `directs`.
    pub(super) conversations: HashMap<UserId, Conversations>,
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

    /// Sends `control` to every node subscribed to its user's topic.
    fn control(&self, control: &Control) -> usize {
        let Some(nodes) = self.subscribers.get(&control.topic()) else {
            return 0;
        };
        nodes
            .iter()
            .filter_map(|node| self.nodes.get(node))
            .filter(|tx| tx.send(BrokerEvent::Control(control.clone())).is_ok())
            .count()
    }

    /// Drops held direct messages past their age (the store's sweep).
    pub(super) fn expire_held(&mut self, now: i64) {
        self.held.retain(|_, waiting| {
            waiting.retain(|held| held.until > now);
            !waiting.is_empty()
        });
    }

    /// Forgets a node: its channel and its subscriptions.
    pub(super) fn remove_node(&mut self, node: NodeId) {
        self.nodes.remove(&node);
        for subs in self.subscribers.values_mut() {
            subs.remove(&node);
        }
    }
}

impl MemoryNode {
    /// Publishes under the pub/sub lock; returns how many nodes it reached.
    pub(super) fn publish_locked(&self, envelope: Envelope) -> usize {
        lock(&self.cluster.pubsub).deliver(envelope)
    }
}

impl Broker for MemoryNode {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn publish(&self, envelope: Envelope) -> Reply<'_, usize> {
        ready(Ok(self.publish_locked(envelope)))
    }

    fn publish_room_message(&self, msg: NewRoomMessage) -> Reply<'_, RoomMessage> {
        let config = &self.cluster.config;
        let mut ps = lock(&self.cluster.pubsub);
        let dedup = msg.dedup.as_ref().map(|dedup| {
            let target = Topic::Room(msg.room.clone());
            (
                dedup::key(&msg.from.id, target, &dedup.client_msg_id),
                dedup.window,
            )
        });
        if let Some((key, _)) = &dedup {
            if let Some((id, ts, _)) = ps.sent.get(key) {
                drop(ps);
                return ready(Ok(RoomMessage {
                    id,
                    room: msg.room,
                    from: msg.from,
                    body: msg.body,
                    ts,
                }));
            }
        }
        if let Some(quota) = msg.quota {
            if let Err(err) = self.take_quota_now(&msg.from.id, quota) {
                return ready(Err(err));
            }
        }
        let log = ps.logs.entry(msg.room.clone()).or_default();
        let seq = log.next_seq();
        let id = seq.to_string();
        let frame = wire::room_message(&id, &msg.room, &msg.from, &msg.body, msg.ts);
        log.push(
            config.history_per_room,
            config.history_max_age,
            seq,
            frame.clone(),
        );
        let message = RoomMessage {
            id: MessageId::new(id),
            room: msg.room,
            from: msg.from,
            body: msg.body,
            ts: msg.ts,
        };
        ps.deliver(Envelope {
            origin: msg.origin,
            topic: Topic::Room(message.room.clone()),
            frame,
        });
        if let Some((key, window)) = dedup {
            ps.sent
                .remember(key, (message.id.clone(), message.ts, false), window);
        }
        drop(ps);
        ready(Ok(message))
    }

    fn publish_direct<'a>(&'a self, direct: NewDirect<'a>) -> Reply<'a, DirectSent> {
        let NewDirect {
            envelope,
            copy_to,
            dedup,
            hold,
            keep,
            charge,
        } = direct;
        // Only a known recipient's messages are held (rooms before pub/sub: the lock order).
        let hold = hold.filter(|hold| self.knows(hold.to));
        let floor = keep.map(|_| direct_floor(self.cluster.config.history_max_age));
        let mut ps = lock(&self.cluster.pubsub);
        let key = dedup.map(|d| {
            let target = Topic::User(d.to.clone());
            (dedup::key(d.from, target, &d.dedup.client_msg_id), d)
        });
        if let Some((key, _)) = &key {
            if let Some((id, ts, held)) = ps.sent.get(key) {
                return ready(Ok(DirectSent::Duplicate { id, ts, held }));
            }
        }
        if let Some(charge) = charge {
            if let Err(err) = self.take_quota_now(charge.user, charge.quota) {
                return ready(Err(err));
            }
        }
        let copy = copy_to.filter(|copy| {
            // Needed if the sender has other connections here or another node listens.
            copy.here
                || ps
                    .subscribers
                    .get(&copy.topic)
                    .is_some_and(|nodes| nodes.iter().any(|node| *node != self.id))
        });
        let copy = copy.map(|copy| copy.envelope(&envelope));
        let held = match hold {
            Some(hold) if !ps.subscribers.contains_key(&envelope.topic) => {
                let waiting = ps.held.entry(hold.to.clone()).or_default();
                // Those past their age take no room: dropped from the oldest on, as Redis does
                // (the sweep drops the others).
                while waiting.front().is_some_and(|held| held.until <= hold.ts) {
                    waiting.pop_front();
                }
                let from_sender = waiting.iter().filter(|h| h.from == *hold.from).count();
                let from_guests = || waiting.iter().filter(|h| h.guest).count();
                if waiting.len() >= hold.max
                    || from_sender >= hold.max_per_sender
                    || (hold.guest && from_guests() >= hold.max_from_guests)
                {
                    return ready(Ok(DirectSent::InboxFull));
                }
                waiting.push_back(Held {
                    until: hold.until(),
                    from: hold.from.clone(),
                    guest: hold.guest,
                    envelope: envelope.clone(),
                });
                true
            }
            _ => false,
        };
        let frame = envelope.frame.clone();
        let reached = if held { 0 } else { ps.deliver(envelope) };
        let sent = held || reached > 0;
        if let (true, Some(keep), Some(floor)) = (sent, keep, floor) {
            let (lo, hi) = conversation(keep.from, keep.to);
            let cap = self.cluster.config.history_per_room;
            ps.directs
                .entry((lo.clone(), hi.clone()))
                .or_default()
                .push(cap, &floor, keep.id.as_str(), frame);
            let floor_ms = now_ms().saturating_sub(millis(self.cluster.config.history_max_age));
            for (user, peer) in [(keep.from, keep.to), (keep.to, keep.from)] {
                ps.conversations.entry(user.clone()).or_default().touch(
                    peer,
                    keep.ts,
                    keep.listed,
                    floor_ms,
                );
            }
        }
        if let (true, Some(copy)) = (sent, copy) {
            ps.deliver(copy);
        }
        // Only what reached the recipient or is held for them: a retry of an undelivered one
        // is tried again.
        if let (true, Some((key, d))) = (sent, key) {
            ps.sent
                .remember(key, (d.id.clone(), d.ts, held), d.dedup.window);
        }
        drop(ps);
        ready(Ok(if held {
            DirectSent::Held
        } else {
            DirectSent::Published(reached)
        }))
    }

    fn release_held<'a>(&'a self, user: &'a UserId) -> Reply<'a, usize> {
        let mut ps = lock(&self.cluster.pubsub);
        let Some(waiting) = ps.held.remove(user) else {
            return ready(Ok(0));
        };
        let now = now_ms();
        let mut released = 0;
        for held in waiting.into_iter().filter(|held| held.until > now) {
            ps.deliver(held.envelope);
            released += 1;
        }
        ready(Ok(released))
    }

    fn publish_control(&self, control: Control) -> Reply<'_, usize> {
        // A variant of its own on the event channel: the memory backend's equivalent of the
        // flag in a Redis payload.
        ready(Ok(lock(&self.cluster.pubsub).control(&control)))
    }

    fn subscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
        let mut ps = lock(&self.cluster.pubsub);
        for topic in topics {
            ps.subscribers.entry(topic).or_default().insert(self.id);
        }
        ready(Ok(()))
    }

    fn unsubscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
        let mut ps = lock(&self.cluster.pubsub);
        for topic in topics {
            if let Some(nodes) = ps.subscribers.get_mut(&topic) {
                nodes.remove(&self.id);
                if nodes.is_empty() {
                    ps.subscribers.remove(&topic);
                }
            }
        }
        ready(Ok(()))
    }
}
