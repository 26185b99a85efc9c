//! A long-term archive of room history beside the backend's bounded one.
//!
//! The backend keeps a room's recent history (Redis: 1,000 messages and 30 days by default).
//! With an [`Archive`] ([`Backend::with_archive`]) every room message is also handed to the
//! archive as it is published, and a history page that reaches past the oldest message the
//! backend still has goes on from the archive, with the same ids and frames: a client pages
//! back through both without noticing the seam. Direct messages the same way: each one the
//! backend kept in its conversation's history is handed over, and a conversation's pages go
//! on from the archive.
//!
//! - `mod` (this file): the [`Archive`] trait, [`Archived`], and the two wrappers that
//!   [`Backend::with_archive`] puts around the backend's broker (hand over what was
//!   published) and history (go on from the archive);
//! - `postgres` (feature `postgres`): [`PostgresArchive`](postgres::PostgresArchive), one
//!   table, written in batches by a background task.
//!
//! Handing over never waits for the archive: a message the archive could not take (its queue
//! full while the database is down) is counted (`roomcast_archive_dropped_total`) and logged,
//! and stays in the backend's history for as long as the backend keeps it.

#[cfg(feature = "postgres")]
pub mod postgres;

use std::sync::Arc;

use bytes::Bytes;

use crate::{
    backend::{
        broker::DirectSent,
        broker::{Broker, Control, Envelope, NewDirect, NewRoomMessage, NodeId, Topic},
        history::{conversation, ConversationCursor, ConversationPage, HistoryPage, HistoryStore},
        Backend, Reply,
    },
    error::BackendError,
    protocol::{wire, MessageId, RoomId, RoomMessage, UserId},
};

/// A published room message, as the archive keeps it: its room, id and frame (the same
/// bytes as the backend's history serves).
#[derive(Clone, Debug)]
pub struct Archived {
    /// The room.
    pub room: RoomId,
    /// The message's id, as the backend issued it.
    pub id: MessageId,
    /// The `message` frame.
    pub frame: Bytes,
}

/// A direct message the backend kept in its conversation's history, as the archive keeps it.
#[derive(Clone, Debug)]
pub struct ArchivedDirect {
    /// The conversation's two users, the lesser id first (whoever sent).
    pub users: (UserId, UserId),
    /// The message's id (a UUIDv7: ids sort by time).
    pub id: MessageId,
    /// Its timestamp (Unix epoch milliseconds).
    pub ts: i64,
    /// The `direct` frame.
    pub frame: Bytes,
}

/// Where room history goes beyond what the backend keeps.
///
/// The direct-message methods have defaults that keep nothing, so an archive written for
/// rooms only still builds.
pub trait Archive: Send + Sync + 'static {
    /// Takes a published message to keep, without waiting (stored in the background; keeping
    /// one twice keeps it once).
    fn keep(&self, message: Archived);

    /// Up to `limit` messages of `room` older than `before` (the newest it has without
    /// `before`), oldest first, with the cursor of the page before (`None` at the start of
    /// what the archive has). An id the backend never issued is
    /// [`InvalidCursor`](crate::error::BackendError::InvalidCursor).
    ///
    /// An archive that knows it has not stored everything older than `before` yet (messages
    /// still waiting to be written after an outage, which the backend may have trimmed
    /// meanwhile) answers an error rather than a page with a gap.
    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage>;

    /// Takes a direct message to keep, without waiting, as [`keep`](Self::keep). Default:
    /// nothing is kept.
    fn keep_direct(&self, message: ArchivedDirect) {
        let _ = message;
    }

    /// Up to `limit` messages of the conversation of `users` (the lesser id first) older than
    /// `before` (the newest without it), as [`page`](Self::page). Default: none.
    fn direct_page<'a>(
        &'a self,
        users: (&'a UserId, &'a UserId),
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        let _ = (users, before, limit);
        Box::pin(async { Ok(HistoryPage::default()) })
    }
}

impl Backend {
    /// This backend with `archive` beside its history: every room message published through
    /// it is handed to the archive, and history pages go on from the archive where the
    /// backend's history ends (see the [module docs](crate::archive)).
    pub fn with_archive(mut self, archive: Arc<dyn Archive>) -> Self {
        self.broker = Arc::new(ArchivingBroker {
            inner: self.broker,
            archive: archive.clone(),
        });
        self.history = Arc::new(ArchivedHistory {
            inner: self.history,
            archive,
        });
        self
    }
}

/// The backend's broker, handing every room message it published to the archive.
struct ArchivingBroker {
    inner: Arc<dyn Broker>,
    archive: Arc<dyn Archive>,
}

impl Broker for ArchivingBroker {
    fn node_id(&self) -> NodeId {
        self.inner.node_id()
    }

    fn publish(&self, envelope: Envelope) -> Reply<'_, usize> {
        self.inner.publish(envelope)
    }

    fn publish_room_message(&self, message: NewRoomMessage) -> Reply<'_, RoomMessage> {
        Box::pin(async move {
            let message = self.inner.publish_room_message(message).await?;
            // A duplicate returns the first copy: kept again, which keeps it once.
            let RoomMessage {
                id,
                room,
                from,
                body,
                ts,
            } = &message;
            self.archive.keep(Archived {
                frame: wire::room_message(id.as_str(), room, from, body, *ts),
                room: room.clone(),
                id: id.clone(),
            });
            Ok(message)
        })
    }

    fn publish_direct<'a>(&'a self, direct: NewDirect<'a>) -> Reply<'a, DirectSent> {
        Box::pin(async move {
            let kept = direct.keep.map(|keep| {
                let (a, b) = conversation(keep.from, keep.to);
                ArchivedDirect {
                    users: (a.clone(), b.clone()),
                    id: keep.id.clone(),
                    ts: keep.ts,
                    frame: direct.envelope.frame.clone(),
                }
            });
            let sent = self.inner.publish_direct(direct).await?;
            // What the backend kept: a message that reached the recipient or is held for
            // them (a duplicate was kept the first time).
            let backend_kept = matches!(sent, DirectSent::Held | DirectSent::Published(1..));
            if let (Some(kept), true) = (kept, backend_kept) {
                self.archive.keep_direct(kept);
            }
            Ok(sent)
        })
    }

    fn release_held<'a>(&'a self, user: &'a UserId) -> Reply<'a, usize> {
        self.inner.release_held(user)
    }

    fn publish_control(&self, control: Control) -> Reply<'_, usize> {
        self.inner.publish_control(control)
    }

    fn subscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
        self.inner.subscribe(topics)
    }

    fn unsubscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()> {
        self.inner.unsubscribe(topics)
    }

    fn ready(&self, subscribed: bool) -> Reply<'_, ()> {
        self.inner.ready(subscribed)
    }
}

/// The backend's history, going on from the archive where it ends.
struct ArchivedHistory {
    inner: Arc<dyn HistoryStore>,
    archive: Arc<dyn Archive>,
}

impl HistoryStore for ArchivedHistory {
    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        Box::pin(async move {
            let page = self.inner.page(room, before, limit).await?;
            go_on(page, before, limit, room_key, |oldest, limit| async move {
                self.archive.page(room, oldest.as_ref(), limit).await
            })
            .await
        })
    }

    fn after<'a>(
        &'a self,
        room: &'a RoomId,
        after: &'a MessageId,
        limit: usize,
    ) -> Reply<'a, (Vec<Bytes>, bool)> {
        self.inner.after(room, after, limit)
    }

    fn direct_page<'a>(
        &'a self,
        a: &'a UserId,
        b: &'a UserId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        Box::pin(async move {
            let page = self.inner.direct_page(a, b, before, limit).await?;
            let users = conversation(a, b);
            go_on(
                page,
                before,
                limit,
                wire::direct_key,
                |oldest, limit| async move {
                    self.archive
                        .direct_page(users, oldest.as_ref(), limit)
                        .await
                },
            )
            .await
        })
    }

    fn conversations<'a>(
        &'a self,
        user: &'a UserId,
        before: Option<&'a ConversationCursor>,
        limit: usize,
    ) -> Reply<'a, ConversationPage> {
        self.inner.conversations(user, before, limit)
    }
}

fn room_key(frame: &[u8]) -> Option<String> {
    wire::message_key(frame).map(|(_, id)| id)
}

/// `page`, the backend's answer for `before`, going on from the archive (`older`) where the
/// backend's history ends; `key` reads a frame's id.
async fn go_on<F, Older>(
    mut page: HistoryPage,
    before: Option<&MessageId>,
    limit: usize,
    key: fn(&[u8]) -> Option<String>,
    older: F,
) -> Result<HistoryPage, BackendError>
where
    F: FnOnce(Option<MessageId>, usize) -> Older,
    Older: std::future::Future<Output = Result<HistoryPage, BackendError>>,
{
    if page.next_before.is_some() {
        return Ok(page);
    }
    if page.messages.len() >= limit {
        // A full page and nothing older in the backend: the archive may have more, so the
        // page says where to go on (a next page that finds none is empty).
        page.next_before = page
            .messages
            .first()
            .and_then(|frame| key(frame))
            .map(MessageId::new);
        return Ok(page);
    }
    // The backend has nothing older: the archive goes on from its oldest message, or from
    // `before` when the backend has nothing that old any more, or from the top when the
    // backend has nothing at all (quiet for longer than the backend keeps history, or a
    // backend that lost it).
    let oldest = match page.messages.first() {
        Some(frame) => match key(frame) {
            Some(id) => Some(MessageId::new(id)),
            None => return Ok(page),
        },
        None => before.cloned(),
    };
    let older = match older(oldest.clone(), limit - page.messages.len()).await {
        Ok(older) => older,
        // The archive is down (or catching up): what the backend had, and a cursor to ask
        // again for the rest (which fails while it is down, rather than ending the history).
        Err(err) if !page.messages.is_empty() => {
            tracing::warn!(cause = %err, "history archive unavailable: a shorter page");
            page.next_before = oldest;
            return Ok(page);
        }
        Err(err) => return Err(err),
    };
    let mut messages = older.messages;
    messages.append(&mut page.messages);
    Ok(HistoryPage {
        messages,
        next_before: older.next_before,
    })
}

#[cfg(test)]
mod tests;
