//! The host's orders about one user ([`Control`]), applied to this node's connections of that
//! user: raise an end cause on each, or take each out of a room and have it leave.
//!
//! A control arrives on the user's topic, which a node subscribes to while it has a
//! connection of that user: the node that has none never hears of it, and the frames of
//! rooms and direct messages never pass through here.

use std::collections::HashMap;

use super::{Alarm, Hub};
use crate::{
    backend::broker::{ConnId, Control, ControlAction},
    protocol::{RoomId, UserId},
    sync::{lock, read, write},
};

/// Rooms that the hub took connections out of, until each connection has left them.
pub(crate) type Evictions = HashMap<ConnId, Vec<RoomId>>;

impl Hub {
    /// Applies `control` to this node's connections of its user.
    pub(crate) fn control(&self, control: &Control) {
        match &control.action {
            ControlAction::Revoke => self.raise_user(&control.user, Alarm::REVOKED),
            ControlAction::Remove => self.raise_user(&control.user, Alarm::REMOVED),
            ControlAction::Leave(room) => self.evict(room, &control.user),
        }
    }

    /// Raises `cause` on every local connection of `user`.
    fn raise_user(&self, user: &UserId, cause: u8) {
        if let Some(outboxes) = read(&self.users).get(user) {
            for (_, outbox) in outboxes {
                outbox.alarm.raise(cause);
            }
        }
    }

    /// Takes `user`'s local connections out of `room`'s fan-out at once (nothing the room
    /// delivers from now on reaches them), and has each connection leave the room (its
    /// `left`, presence, `user_left`) from its own task, told by the [`Alarm::EVICTED`] chore.
    fn evict(&self, room: &RoomId, user: &UserId) {
        // Lock order: users, then rooms (nothing else holds both).
        let users = read(&self.users);
        let Some(conns) = users.get(user) else {
            return;
        };
        let mut rooms = write(&self.rooms);
        let Some(outboxes) = rooms.get_mut(room) else {
            return;
        };
        let mut evictions = lock(&self.evictions);
        for (conn, outbox) in conns {
            if outboxes.remove(conn).is_some() {
                evictions.entry(*conn).or_default().push(room.clone());
                outbox.alarm.chore(Alarm::EVICTED);
            }
        }
        if outboxes.is_empty() {
            rooms.remove(room);
        }
    }

    /// The rooms the hub took `conn` out of since the last call.
    pub(crate) fn take_evictions(&self, conn: ConnId) -> Vec<RoomId> {
        lock(&self.evictions).remove(&conn).unwrap_or_default()
    }
}
