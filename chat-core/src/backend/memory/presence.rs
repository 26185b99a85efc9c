//! The memory presence store: connections per room, user and node.

use std::collections::{BTreeMap, HashMap};

use super::{ready, MemoryNode};
use crate::{
    backend::{
        broker::{ConnId, Envelope, NodeId},
        store::PresenceStore,
        Reply,
    },
    protocol::{RoomId, User, UserId},
    sync::lock,
};

/// A user online in a room, with their connections (node, connection). A Vec, not a map: a
/// user has few connections, and this entry exists per user and room (bytes per connection).
type OnlineUser = (User, Vec<(NodeId, ConnId)>);

#[derive(Default)]
pub(super) struct Presence {
    /// room -> user -> (user, connections). The user's entry exists while it has a
    /// connection; BTreeMap keeps `online` in a stable order.
    rooms: HashMap<RoomId, BTreeMap<UserId, OnlineUser>>,
    /// user -> node -> open WebSockets (`count_sockets`), while any.
    sockets: HashMap<UserId, HashMap<NodeId, usize>>,
}

impl Presence {
    /// Whether anybody is online in `room`.
    pub(super) fn anyone_in(&self, room: &RoomId) -> bool {
        self.rooms.contains_key(room)
    }
}

impl Presence {
    /// Removes every connection on `node`; returns the `(room, user)` pairs that had no other.
    pub(super) fn remove_node(&mut self, node: NodeId) -> Vec<(RoomId, User)> {
        self.sockets.retain(|_, nodes| {
            nodes.remove(&node);
            !nodes.is_empty()
        });
        let mut gone = Vec::new();
        for (room, users) in self.rooms.iter_mut() {
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

impl PresenceStore for MemoryNode {
    fn count_sockets<'a>(
        &'a self,
        user: &'a UserId,
        node: NodeId,
        open: usize,
        max: Option<usize>,
    ) -> Reply<'a, bool> {
        let mut presence = lock(&self.cluster.presence);
        let nodes = presence.sockets.entry(user.clone()).or_default();
        let others: usize = nodes
            .iter()
            .filter(|(n, _)| **n != node)
            .map(|(_, open)| open)
            .sum();
        let admitted = max.is_none_or(|max| others + open <= max);
        if admitted {
            if open > 0 {
                nodes.insert(node, open);
            } else {
                nodes.remove(&node);
            }
        }
        if nodes.is_empty() {
            presence.sockets.remove(user);
        }
        ready(Ok(admitted))
    }

    fn enter<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
    ) -> Reply<'a, bool> {
        let mut presence = lock(&self.cluster.presence);
        let users = presence.rooms.entry(room.clone()).or_default();
        let (_, conns) = users
            .entry(user.id.clone())
            .or_insert_with(|| (user.clone(), Vec::with_capacity(1)));
        let first = conns.is_empty();
        if !conns.contains(&(node, conn)) {
            conns.push((node, conn));
        }
        drop(presence);
        lock(&self.cluster.rooms).touch(room);
        ready(Ok(first))
    }

    fn exit<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
        left: Envelope,
    ) -> Reply<'a, bool> {
        let mut presence = lock(&self.cluster.presence);
        let mut last = false;
        if let Some(users) = presence.rooms.get_mut(room) {
            if let Some((_, conns)) = users.get_mut(&user.id) {
                if let Some(i) = conns.iter().position(|c| *c == (node, conn)) {
                    conns.swap_remove(i);
                    last = conns.is_empty();
                }
                if conns.is_empty() {
                    users.remove(&user.id);
                }
            }
            if users.is_empty() {
                presence.rooms.remove(room);
            }
        }
        if last {
            // Under the presence lock (then the pub/sub lock, always in this order: see
            // `expiry`), so that the exit and its announcement are one step, as in the Redis
            // script.
            let _ = self.publish_locked(left);
        }
        drop(presence);
        // The room's idle time counts from its last user's leaving.
        lock(&self.cluster.rooms).touch(room);
        ready(Ok(last))
    }

    fn online<'a>(&'a self, room: &'a RoomId, limit: usize) -> Reply<'a, (Vec<User>, usize)> {
        let online = lock(&self.cluster.presence)
            .rooms
            .get(room)
            .map(|users| {
                let some = users.values().take(limit).map(|(u, _)| u.clone());
                (some.collect(), users.len())
            })
            .unwrap_or_default();
        ready(Ok(online))
    }

    fn are_online<'a>(&'a self, room: &'a RoomId, users: &'a [UserId]) -> Reply<'a, Vec<bool>> {
        let presence = lock(&self.cluster.presence);
        let online = presence.rooms.get(room);
        let flags = users
            .iter()
            .map(|u| online.is_some_and(|o| o.contains_key(u)))
            .collect();
        ready(Ok(flags))
    }

    fn online_counts<'a>(&'a self, rooms: &'a [RoomId]) -> Reply<'a, Vec<usize>> {
        let presence = lock(&self.cluster.presence);
        let counts = rooms
            .iter()
            .map(|r| presence.rooms.get(r).map_or(0, |u| u.len()))
            .collect();
        ready(Ok(counts))
    }
}
