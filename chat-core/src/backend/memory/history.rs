//! The memory history store: a bounded log per room, ids counting up from 1, capped by count
//! and by age (an entry older than `history_max_age` is not served, and dropped at the next
//! append).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{ready, MemoryNode};
use crate::{
    backend::{
        history::{conversation, direct_floor, direct_id, HistoryPage, HistoryStore},
        Reply,
    },
    error::BackendError,
    protocol::{MessageId, RoomId, UserId},
    sync::lock,
};

/// One room's messages: `(id, frame, when appended)` in ascending id order, the oldest
/// dropped past the caps.
#[derive(Default)]
pub(super) struct RoomLog {
    next_seq: u64,
    entries: VecDeque<(u64, Bytes, Instant)>,
    /// Entries appended before this are too old to serve (`None`: all may be served).
    max_age: Option<Duration>,
}

impl RoomLog {
    /// The id of the next message.
    pub(super) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Keeps `frame` as message `seq`, dropping the oldest if `cap` are kept already and
    /// those older than `max_age`.
    pub(super) fn push(&mut self, cap: usize, max_age: Duration, seq: u64, frame: Bytes) {
        self.max_age = Some(max_age);
        let fresh = self.fresh_from();
        self.entries.drain(..fresh);
        if self.entries.len() >= cap {
            self.entries.pop_front();
        }
        self.entries.push_back((seq, frame, Instant::now()));
    }

    /// When the last message was appended.
    pub(super) fn last_append(&self) -> Option<Instant> {
        self.entries.back().map(|(_, _, at)| *at)
    }

    /// The index of the first entry young enough to be served.
    fn fresh_from(&self) -> usize {
        let Some(max_age) = self.max_age else {
            return 0;
        };
        // Ages, not `now - max_age`: an `Instant` may not reach back that far (on Linux it
        // counts from boot).
        let now = Instant::now();
        self.entries
            .partition_point(|(_, _, at)| now.saturating_duration_since(*at) > max_age)
    }

    fn page(&self, before: Option<u64>, limit: usize) -> HistoryPage {
        // Entries are in ascending seq order: find where `before` cuts, take `limit` back.
        let first = self.fresh_from();
        let end = match before {
            Some(b) => self.entries.partition_point(|(seq, _, _)| *seq < b),
            None => self.entries.len(),
        }
        .max(first);
        let start = end.saturating_sub(limit).max(first);
        let next_before = (start > first)
            .then(|| {
                self.entries
                    .get(start)
                    .map(|(seq, _, _)| MessageId::new(seq.to_string()))
            })
            .flatten();
        HistoryPage {
            messages: self.frames(start, end),
            next_before,
        }
    }

    fn after(&self, after: u64, limit: usize) -> (Vec<Bytes>, bool) {
        let start = self
            .entries
            .partition_point(|(seq, _, _)| *seq <= after)
            .max(self.fresh_from());
        let end = (start + limit).min(self.entries.len());
        (self.frames(start, end), end < self.entries.len())
    }

    fn frames(&self, start: usize, end: usize) -> Vec<Bytes> {
        self.entries
            .range(start..end)
            .map(|(_, f, _)| f.clone())
            .collect()
    }
}

impl MemoryNode {
    /// Reads one room's log (kept under the pub/sub lock, see `pubsub`).
    fn with_log<T>(&self, room: &RoomId, read: impl FnOnce(&RoomLog) -> T) -> Option<T> {
        lock(&self.cluster.pubsub).logs.get(room).map(read)
    }
}

impl HistoryStore for MemoryNode {
    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        ready(before.map(parse_seq).transpose().map(|before| {
            self.with_log(room, |log| log.page(before, limit))
                .unwrap_or_default()
        }))
    }

    fn after<'a>(
        &'a self,
        room: &'a RoomId,
        after: &'a MessageId,
        limit: usize,
    ) -> Reply<'a, (Vec<Bytes>, bool)> {
        ready(parse_seq(after).map(|after| {
            self.with_log(room, |log| log.after(after, limit))
                .unwrap_or_default()
        }))
    }

    fn direct_page<'a>(
        &'a self,
        a: &'a UserId,
        b: &'a UserId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        let before = match before.map(direct_id).transpose() {
            Ok(before) => before,
            Err(err) => return ready(Err(err)),
        };
        let floor = direct_floor(self.cluster.config.history_max_age);
        let (lo, hi) = conversation(a, b);
        let ps = lock(&self.cluster.pubsub);
        let page = ps
            .directs
            .get(&(lo.clone(), hi.clone()))
            .map(|log| log.page(&floor, before, limit))
            .unwrap_or_default();
        ready(Ok(page))
    }
}

/// A message id as this store issues them: a decimal `u64` from 1, no sign or leading zero.
fn parse_seq(id: &MessageId) -> Result<u64, BackendError> {
    let s = id.as_str();
    s.parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && n.to_string() == s)
        .ok_or(BackendError::InvalidCursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_the_ids_this_store_issues() {
        assert_eq!(parse_seq(&MessageId::new("17")).ok(), Some(17));
        for bad in [
            "0",
            "0-0",
            "01",
            "+1",
            "-1",
            "",
            "abc",
            "18446744073709551616",
        ] {
            assert!(parse_seq(&MessageId::new(bad)).is_err(), "{bad}");
        }
    }
}

/// One conversation's direct messages: frames by id (UUIDv7 strings sort by time), capped by
/// count and age like a room's log, and gone after `room_ttl` without a message.
#[derive(Default)]
pub(super) struct DirectLog {
    entries: std::collections::BTreeMap<String, Bytes>,
    last_append: Option<Instant>,
}

impl DirectLog {
    /// Keeps `frame` as message `id`, dropping the oldest past `cap` and those made before
    /// `floor` (a [`direct_floor`]).
    pub(super) fn push(&mut self, cap: usize, floor: &str, id: &str, frame: Bytes) {
        self.entries = self.entries.split_off(floor);
        self.entries.insert(id.to_owned(), frame);
        while self.entries.len() > cap.max(1) {
            self.entries.pop_first();
        }
        self.last_append = Some(Instant::now());
    }

    /// When the last message was appended.
    pub(super) fn last_append(&self) -> Option<Instant> {
        self.last_append
    }

    fn page(&self, floor: &str, before: Option<&str>, limit: usize) -> HistoryPage {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let upper = before.map_or(Unbounded, Excluded);
        let mut newest: Vec<(&String, &Bytes)> = self
            .entries
            .range::<str, _>((Included(floor), upper))
            .rev()
            .take(limit + 1)
            .collect();
        let more = newest.len() > limit;
        newest.truncate(limit);
        newest.reverse();
        HistoryPage {
            next_before: more
                .then(|| newest.first().map(|(id, _)| MessageId::new(id.as_str())))
                .flatten(),
            messages: newest.into_iter().map(|(_, frame)| frame.clone()).collect(),
        }
    }
}
