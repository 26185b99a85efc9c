//! The memory presence store: connections per room, user and node.

use std::collections::{BTreeMap, HashMap};

use super::{ready, MemoryNode};
use crate::{
    backend::{broker::NodeId, store::PresenceStore, Reply},
    protocol::{RoomId, User, UserId},
    sync::lock,
};

/// A user online in a room, with their connections per node. A Vec, not a map: a user is
/// almost always on one node, and this entry exists per user and room (bytes per connection).
type OnlineUser = (User, Vec<(NodeId, u32)>);

#[derive(Default)]
pub(super) struct Presence {
    /// room -> user -> (user, connections per node). The user's entry exists while any count
    /// is above zero; BTreeMap keeps `online` in a stable order.
    rooms: HashMap<RoomId, BTreeMap<UserId, OnlineUser>>,
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
    fn enter<'a>(&'a self, room: &'a RoomId, user: &'a User, node: NodeId) -> Reply<'a, bool> {
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
        drop(presence);
        lock(&self.cluster.rooms).touch(room);
        ready(Ok(first))
    }

    fn exit<'a>(&'a self, room: &'a RoomId, user: &'a User, node: NodeId) -> Reply<'a, bool> {
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
