//! The memory history store: a bounded log per room, ids counting up from 1, capped by count
//! and by age (an entry older than `history_max_age` is not served, and dropped at the next
//! append).

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{ready, MemoryNode};
use crate::{
    backend::{
        history::{
            conversation, direct_floor, direct_id, millis, Conversation, ConversationCursor,
            ConversationPage, HistoryPage, HistoryStore,
        },
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
        // Seqs are consecutive: a first one kept past `after + 1` means the caps dropped what
        // came right after `after`.
        let first_kept = self
            .entries
            .get(start)
            .map_or(self.next_seq.saturating_add(1), |(seq, _, _)| *seq);
        let trimmed = first_kept > after.saturating_add(1);
        (self.frames(start, end), end < self.entries.len() || trimmed)
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

    fn conversations<'a>(
        &'a self,
        user: &'a UserId,
        before: Option<&'a ConversationCursor>,
        limit: usize,
    ) -> Reply<'a, ConversationPage> {
        let config = &self.cluster.config;
        let floor = direct_floor(config.history_max_age);
        let floor_ms = crate::protocol::now_ms().saturating_sub(millis(config.history_max_age));
        let (found, more) = {
            let ps = lock(&self.cluster.pubsub);
            let Some(index) = ps.conversations.get(user) else {
                return ready(Ok(ConversationPage::default()));
            };
            let (listed, more) = index.page(floor_ms, before, limit);
            // A conversation whose messages have all aged out is not listed.
            let found: Vec<(ConversationCursor, Bytes)> = listed
                .into_iter()
                .filter_map(|cursor| {
                    let (lo, hi) = conversation(user, &cursor.peer);
                    let last = ps.directs.get(&(lo.clone(), hi.clone()))?.last(&floor)?;
                    Some((cursor, last))
                })
                .collect();
            (found, more)
        };
        // The pub/sub lock is released first: rooms come before it in the lock order.
        let next_before = more;
        let conversations = found
            .into_iter()
            .map(|(cursor, last)| Conversation {
                peer_name: self.name_of(&cursor.peer),
                peer: cursor.peer.clone(),
                last,
                cursor,
            })
            .collect();
        ready(Ok(ConversationPage {
            conversations,
            next_before,
        }))
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

    /// The newest message not older than `floor`.
    fn last(&self, floor: &str) -> Option<Bytes> {
        let (id, frame) = self.entries.last_key_value()?;
        (id.as_str() >= floor).then(|| frame.clone())
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

/// One user's conversations: the other users by the time of the last message between them
/// (`HistoryStore::conversations`), at most a cap of them.
#[derive(Default)]
pub(super) struct Conversations {
    at: HashMap<UserId, i64>,
    order: BTreeSet<(i64, UserId)>,
}

impl Conversations {
    /// A message with `peer` at `at` (Unix ms): the conversation moves to the top (never
    /// back: a late, older timestamp leaves it where it is). Past `cap` the least recent
    /// ones drop out, and those last active before `floor_ms`.
    pub(super) fn touch(&mut self, peer: &UserId, at: i64, cap: usize, floor_ms: i64) {
        let at = match self.at.get(peer) {
            Some(&previous) if previous >= at => previous,
            Some(&previous) => {
                self.order.remove(&(previous, peer.clone()));
                at
            }
            None => at,
        };
        self.at.insert(peer.clone(), at);
        self.order.insert((at, peer.clone()));
        self.forget_before(floor_ms);
        while self.order.len() > cap.max(1) {
            self.pop_least_recent();
        }
    }

    /// Drops the conversations last active before `floor_ms`.
    pub(super) fn forget_before(&mut self, floor_ms: i64) {
        while self.order.first().is_some_and(|(at, _)| *at < floor_ms) {
            self.pop_least_recent();
        }
    }

    fn pop_least_recent(&mut self) {
        if let Some((_, peer)) = self.order.pop_first() {
            self.at.remove(&peer);
        }
    }

    /// Whether no conversation is listed.
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Up to `limit` places after `before` (most recent first), none before `floor_ms`; and
    /// the last of them when more follow.
    fn page(
        &self,
        floor_ms: i64,
        before: Option<&ConversationCursor>,
        limit: usize,
    ) -> (Vec<ConversationCursor>, Option<ConversationCursor>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let upper = before.map_or(Unbounded, |c| Excluded((c.at, c.peer.clone())));
        let mut listed: Vec<ConversationCursor> = self
            .order
            .range((Unbounded, upper))
            .rev()
            .take_while(|(at, _)| *at >= floor_ms)
            .take(limit + 1)
            .map(|(at, peer)| ConversationCursor {
                at: *at,
                peer: peer.clone(),
            })
            .collect();
        let more = listed.len() > limit;
        listed.truncate(limit);
        let next = if more { listed.last().cloned() } else { None };
        (listed, next)
    }
}

#[cfg(test)]
mod conversation_tests {
    use super::*;

    fn cursor(at: i64, peer: &str) -> ConversationCursor {
        ConversationCursor {
            at,
            peer: UserId::new(peer),
        }
    }

    #[test]
    fn conversations_list_most_recent_first_within_the_cap_and_the_age() {
        let mut list = Conversations::default();
        for (peer, at) in [("a", 10), ("b", 20), ("c", 20), ("a", 30), ("d", 5)] {
            list.touch(&UserId::new(peer), at, 3, 0);
        }
        // d came in last but is the least recent: the cap of 3 drops it.
        let (page, next) = list.page(0, None, 2);
        assert_eq!(page, [cursor(30, "a"), cursor(20, "c")]);
        assert_eq!(next, Some(cursor(20, "c")));
        let (page, next) = list.page(0, next.as_ref(), 2);
        assert_eq!((page, next), (vec![cursor(20, "b")], None));
        // An older timestamp does not move a conversation back.
        list.touch(&UserId::new("a"), 1, 3, 0);
        assert_eq!(list.page(0, None, 1).0, [cursor(30, "a")]);
        // The age floor: only a (30) is recent enough.
        assert_eq!(list.page(25, None, 10).0, [cursor(30, "a")]);
        list.forget_before(25);
        assert_eq!(list.order.len(), 1);
        assert_eq!(list.at.len(), 1);
    }
}
