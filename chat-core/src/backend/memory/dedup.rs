//! The memory backend's idempotent sends: the `clientMsgId`s sent in the last window, per
//! sender and target, with the first send's id and timestamp. Kept under the pub/sub lock, so
//! the check and the publish are one step (as the Redis scripts make them).

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use crate::{
    backend::broker::Topic,
    protocol::{MessageId, UserId},
};

/// Sender, target (the room's or the recipient's topic) and `clientMsgId`.
type Key = (UserId, Topic, String);

/// Sent `clientMsgId`s, each until its window is over. Bounded by what was sent within the
/// window: expired entries are dropped as new ones come.
#[derive(Default)]
pub(super) struct Sent {
    /// The first send's id and ts, whether it was held for an offline recipient, and until
    /// when it is remembered.
    first: HashMap<Key, (MessageId, i64, bool, Instant)>,
    /// Keys in the order they were remembered, with when they expire: the oldest go first.
    expiry: VecDeque<(Instant, Key)>,
}

impl Sent {
    /// The first send of `key` if it is still remembered.
    pub(super) fn get(&mut self, key: &Key) -> Option<(MessageId, i64, bool)> {
        let now = Instant::now();
        self.expire(now);
        match self.first.get(key) {
            Some((id, ts, held, until)) if *until > now => Some((id.clone(), *ts, *held)),
            _ => None,
        }
    }

    /// Remembers the first send of `key` for `window` (`held`: a direct message held for its
    /// recipient, which a retry's ack says again).
    pub(super) fn remember(
        &mut self,
        key: Key,
        (id, ts, held): (MessageId, i64, bool),
        window: Duration,
    ) {
        let now = Instant::now();
        self.expire(now);
        let until = now + window;
        self.expiry.push_back((until, key.clone()));
        self.first.insert(key, (id, ts, held, until));
    }

    /// Drops what expired, oldest first. Windows are one config value per node, so the queue
    /// is in expiry order (nodes with different windows only make some entries wait longer
    /// in the queue; `get` checks the time itself).
    fn expire(&mut self, now: Instant) {
        while let Some((until, _)) = self.expiry.front() {
            if *until > now {
                break;
            }
            if let Some((until, key)) = self.expiry.pop_front() {
                if self.first.get(&key).is_some_and(|entry| entry.3 <= until) {
                    self.first.remove(&key);
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.first.len()
    }
}

/// The key of a send.
pub(super) fn key(from: &UserId, target: Topic, client_msg_id: &str) -> Key {
    (from.clone(), target, client_msg_id.to_owned())
}
