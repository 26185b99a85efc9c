//! Room history: the [`HistoryStore`] trait.
//!
//! Messages are appended by [`super::broker::Broker::publish_room_message`] (append and publish
//! are one step, which is where message ids come from); this trait reads them back.

use std::time::Duration;

use bytes::Bytes;

use super::Reply;
use crate::protocol::{MessageId, RoomId, UserId};

/// One page of a room's history.
#[derive(Clone, Debug, Default)]
pub struct HistoryPage {
    /// Room message frames (JSON, `"type":"message"`), oldest first.
    pub messages: Vec<Bytes>,
    /// Pass as `before` to get the page before this one; `None` when there is none.
    pub next_before: Option<MessageId>,
}

/// Reads a room's history.
pub trait HistoryStore: Send + Sync + 'static {
    /// Up to `limit` messages of `room` older than `before` (or the newest, without `before`),
    /// oldest first. An id this store never issued is [`InvalidCursor`](crate::error::BackendError::InvalidCursor).
    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage>;

    /// Up to `limit` messages of `room` newer than `after`, oldest first (for `join` with
    /// `since`). The `bool` is `true` when more follow.
    fn after<'a>(
        &'a self,
        room: &'a RoomId,
        after: &'a MessageId,
        limit: usize,
    ) -> Reply<'a, (Vec<Bytes>, bool)>;

    /// Up to `limit` direct messages between `a` and `b` (both ways; `a` and `b` in either
    /// order) older than `before` (or the newest), oldest first, as the `direct` frames that
    /// were delivered. Kept by `Broker::publish_direct` (`Keep`); ids are UUIDv7 strings, and
    /// `before` that is not one is [`InvalidCursor`](crate::error::BackendError::InvalidCursor).
    fn direct_page<'a>(
        &'a self,
        a: &'a UserId,
        b: &'a UserId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage>;
}

/// The two users of a conversation in a fixed order, whoever sent: its key in a store.
pub(crate) fn conversation<'a>(a: &'a UserId, b: &'a UserId) -> (&'a UserId, &'a UserId) {
    if a.as_str() <= b.as_str() {
        (a, b)
    } else {
        (b, a)
    }
}

/// A direct message id as this chat issues them (a UUID, lower-case and hyphenated, which for
/// UUIDv7 sorts by time), or `InvalidCursor`.
pub(crate) fn direct_id(id: &MessageId) -> Result<&str, crate::error::BackendError> {
    let s = id.as_str();
    match uuid::Uuid::parse_str(s) {
        Ok(uuid) if uuid.hyphenated().to_string() == s => Ok(s),
        _ => Err(crate::error::BackendError::InvalidCursor),
    }
}

/// The smallest id a UUIDv7 made `max_age` ago can have, as a prefix of its string: ids of
/// direct messages older than that sort below it (too old to keep or serve).
pub(crate) fn direct_floor(max_age: Duration) -> String {
    let ms = crate::protocol::now_ms().saturating_sub(millis(max_age));
    let ms = u64::try_from(ms).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("{:08x}-{:04x}", ms >> 16, ms & 0xffff)
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
