//! Room and direct-message history: the [`HistoryStore`] trait.
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

/// One of a user's conversations (`HistoryStore::conversations`).
#[derive(Clone, Debug)]
pub struct Conversation {
    /// The other user.
    pub peer: UserId,
    /// The other user's name as the chat last saw it (a token, a connection or a join, within
    /// the room TTL), if it did.
    pub peer_name: Option<String>,
    /// The conversation's last direct message (a `direct` frame).
    pub last: Bytes,
    /// Where the conversation sits in the list: the time of its last message.
    pub cursor: ConversationCursor,
}

/// A place in a user's list of conversations (most recent first): the time of a
/// conversation's last message (Unix epoch ms) and the other user, which orders conversations
/// whose last messages share a millisecond. As text `"<ms>:<user id>"`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConversationCursor {
    /// Unix epoch milliseconds of the conversation's last message.
    pub at: i64,
    /// The other user.
    pub peer: UserId,
}

impl ConversationCursor {
    /// Reads the text form; anything not of that form is
    /// [`InvalidCursor`](crate::error::BackendError::InvalidCursor). One of that form that no
    /// conversation sits at is a place all the same: the page goes on from there.
    pub fn parse(s: &str) -> Result<Self, crate::error::BackendError> {
        let (at, peer) = s
            .split_once(':')
            .ok_or(crate::error::BackendError::InvalidCursor)?;
        match at.parse::<i64>() {
            Ok(ms) if ms >= 0 && ms.to_string() == at && !peer.is_empty() => Ok(Self {
                at: ms,
                peer: UserId::new(peer),
            }),
            _ => Err(crate::error::BackendError::InvalidCursor),
        }
    }
}

impl std::fmt::Display for ConversationCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.at, self.peer.as_str())
    }
}

/// One page of a user's conversations, most recent first.
#[derive(Clone, Debug, Default)]
pub struct ConversationPage {
    /// The conversations, the one with the most recent message first.
    pub conversations: Vec<Conversation>,
    /// Pass as `before` for the next (less recent) page; `None` at the end of the list.
    pub next_before: Option<ConversationCursor>,
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
    /// `since`). The `bool` is `true` when they are not all that came after `after`: more
    /// follow, or the history's caps (its length, its age) dropped some of those that came
    /// right after it (a backend that cannot tell for sure says so whenever `after` itself is
    /// gone). Either way the client must reload the history (`resync`).
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

    /// Up to `limit` of `user`'s conversations (a direct message kept either way, with
    /// `ChatConfig::keep_direct_history`) after `before` in the list (or from its start), the
    /// one with the most recent message first. At most `ChatConfig::conversations_per_user`
    /// are listed, and none whose last message is older than the history's age.
    fn conversations<'a>(
        &'a self,
        user: &'a UserId,
        before: Option<&'a ConversationCursor>,
        limit: usize,
    ) -> Reply<'a, ConversationPage>;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_cursors_read_back_only_what_they_wrote() {
        let cursor = ConversationCursor {
            at: 1_795_946_218_367,
            peer: UserId::new("a:b c"),
        };
        assert_eq!(cursor.to_string(), "1795946218367:a:b c");
        assert_eq!(
            ConversationCursor::parse(&cursor.to_string()).ok(),
            Some(cursor)
        );
        for bad in [
            "", "17", "17:", ":a", "-1:a", "+1:a", "01:a", "1.5:a", "x:a",
        ] {
            assert!(ConversationCursor::parse(bad).is_err(), "{bad}");
        }
    }
}
