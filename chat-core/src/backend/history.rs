//! Room history: the [`HistoryStore`] trait.
//!
//! Messages are appended by [`super::broker::Broker::publish_room_message`] (append and publish
//! are one step, which is where message ids come from); this trait reads them back.

use bytes::Bytes;

use super::Reply;
use crate::protocol::{MessageId, RoomId};

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
}
