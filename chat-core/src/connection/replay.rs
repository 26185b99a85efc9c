//! Joining with `since` without gaps or duplicates.
//!
//! From before the history is read until the replay is queued, the room's live frames for
//! this connection collect in a side queue ([`ReplayBuffer`]), so that nothing published
//! meanwhile falls between the replay and the live stream. A message can be in the history
//! before it reaches this node (the broker's delivery lags its append), so a replayed message
//! may still arrive live afterwards: [`ReplayFilter`] drops those until the first live message
//! the replay did not hold.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use bytes::Bytes;
use tracing::warn;

use crate::{
    backend::broker::ConnId,
    fanout::{Alarm, Hub, Outbox},
    protocol::{message_key, ResyncFrame, RoomId, ServerFrame},
};

/// Message ids replayed by recent joins with `since`, per room, and whether the replayed copy
/// has been taken yet.
#[derive(Debug, Default)]
pub(super) struct ReplayFilter(Vec<(RoomId, HashMap<String, bool>)>);

impl ReplayFilter {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `frame` is a second (live) copy of a replayed message: the replayed copy is
    /// queued first and passes; a later copy is dropped; the first message the replay did not
    /// hold ends the check for that room. Free when no such join is settling (no parsing).
    pub(super) fn drops(&mut self, frame: &[u8], outbox: &Outbox) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let Some((room, id)) = message_key(frame) else {
            return false;
        };
        let Some(i) = self.0.iter().position(|(r, _)| *r == room) else {
            return false;
        };
        match self.0[i].1.get_mut(&id) {
            Some(seen) if *seen => true,
            Some(seen) => {
                *seen = true;
                false
            }
            None => {
                self.remove(i, outbox);
                false
            }
        }
    }

    /// Ends the check for `room` (the connection left it): otherwise it could last as long as
    /// the connection, and with it the per-frame probe and the ban on inline writes.
    pub(super) fn forget(&mut self, room: &RoomId, outbox: &Outbox) {
        if let Some(i) = self.0.iter().position(|(r, _)| r == room) {
            self.remove(i, outbox);
        }
    }

    fn remove(&mut self, i: usize, outbox: &Outbox) {
        self.0.swap_remove(i);
        if self.0.is_empty() {
            outbox.set_filtering(false);
        }
    }

    fn watch(&mut self, room: &RoomId, ids: HashSet<String>) {
        if !ids.is_empty() {
            let seen = ids.into_iter().map(|id| (id, false)).collect();
            self.0.push((room.clone(), seen));
        }
    }
}

/// The side queue of a join with `since`: registered in the room in the connection's place
/// until [`ReplayBuffer::complete`]; dropped before that, it takes itself out of the room and
/// turns the connection's filtering back to what it was.
pub(super) struct ReplayBuffer<'a> {
    hub: &'a Hub,
    room: &'a RoomId,
    conn: ConnId,
    outbox: Arc<Outbox>,
    side: Arc<Outbox>,
    filtering_before: bool,
    completed: bool,
}

impl<'a> ReplayBuffer<'a> {
    /// Starts buffering `room`'s live frames for `conn`. The connection takes frames through
    /// its filter from now on: no inline writes around the replay.
    pub(super) fn start(
        hub: &'a Hub,
        room: &'a RoomId,
        conn: ConnId,
        outbox: &Arc<Outbox>,
        filter: &ReplayFilter,
        capacity: usize,
    ) -> Self {
        outbox.set_filtering(true);
        let side = Outbox::new(capacity, None);
        hub.add_to_room(room, conn, &side, Vec::new());
        Self {
            hub,
            room,
            conn,
            outbox: outbox.clone(),
            side,
            filtering_before: !filter.is_empty(),
            completed: false,
        }
    }

    /// Queues `first` (the `joined` reply and the replay), then the buffered frames the replay
    /// does not hold (they were published after the history read, so they follow it in
    /// order), then a `resync` if the side queue overflowed; puts the connection in the room
    /// in the side queue's place, with no delivery in between; and has `filter` drop late
    /// live copies of what was replayed.
    pub(super) fn complete(mut self, first: Vec<Bytes>, filter: &mut ReplayFilter) {
        let replayed: HashSet<String> = first
            .iter()
            .filter_map(|f| message_key(f).map(|(_, id)| id))
            .collect();
        let (outbox, side) = (&self.outbox, &self.side);
        let mut lost = false;
        self.hub.add_to_room_with(self.room, self.conn, outbox, || {
            for frame in first {
                outbox.send(frame);
            }
            while let Some(frame) = side.try_pop() {
                if message_key(&frame).is_none_or(|(_, id)| !replayed.contains(&id)) {
                    outbox.send(frame);
                }
            }
            // A side queue that overflowed dropped frames: say so.
            lost = side.alarm.raised() & Alarm::SLOW != 0;
            if lost {
                crate::metrics::metrics().resyncs_replay.increment(1);
                let resync = ServerFrame::Resync(ResyncFrame {
                    reason: "replay_overflow".into(),
                });
                outbox.send(resync.encode());
            }
        });
        self.completed = true;
        if lost {
            warn!(room = %self.room, "join with since: live frames overflowed while replaying");
        }
        filter.watch(self.room, replayed);
    }
}

impl Drop for ReplayBuffer<'_> {
    fn drop(&mut self) {
        if !self.completed {
            self.hub.remove_from_room(self.room, self.conn);
            self.outbox.set_filtering(self.filtering_before);
        }
    }
}
