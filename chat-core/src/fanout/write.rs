//! The hand-offs of the write path: what an inline write did, what the session takes from
//! its outbox, and the guard that marks the session's own write.

use bytes::Bytes;

use super::Outbox;

/// What an inline write did.
#[derive(Debug)]
pub(crate) enum Inline {
    /// Written and flushed.
    Written,
    /// Accepted, but the flush would block: the session finishes it.
    Unflushed,
    /// Not taken (the session holds the transport, or it is backed up): queue it.
    Busy(Bytes),
    /// The transport failed; the session finds out on its next read or write.
    Failed,
}

/// What an inline write of a connection's whole queue did ([`InlineWrite::try_write_queued`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// All written and flushed.
    Written,
    /// Some or all taken, but the socket is full: the session flushes and writes the rest.
    Unflushed,
    /// Nothing taken (the session holds the transport).
    Busy,
    /// The transport failed; the session finds out on its next read or write.
    Failed,
}

/// A connection's transport as the dispatcher (or the flush tick) writes to it, outside the
/// connection's session (the session's transport adapter implements it). One attempt that
/// must not wait: a lock held elsewhere or a full socket is [`Inline::Busy`] or
/// [`Inline::Unflushed`].
pub(crate) trait InlineWrite: Send + Sync {
    fn try_write(&self, frame: Bytes) -> Inline;
    /// Writes what `frames` holds, front first, in one flush, taking what the socket accepts.
    fn try_write_queued(&self, frames: &mut std::collections::VecDeque<Bytes>) -> Flushed;
}

/// What the session takes from its outbox.
#[derive(Debug, PartialEq)]
pub(crate) enum Outgoing {
    /// The next frame to write.
    Frame(Bytes),
    /// Nothing new, but an inline write left bytes to flush.
    Flush,
    /// An inline write failed: the connection is broken.
    Failed,
}

/// The session is writing to its transport: no inline write until this is dropped, which
/// ends the write (and starts the coalescing interval).
#[must_use = "dropping the guard ends the write at once"]
#[derive(Debug)]
pub(crate) struct Writing<'a>(&'a Outbox);

impl<'a> Writing<'a> {
    pub(super) fn new(outbox: &'a Outbox) -> Self {
        Self(outbox)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.end_write();
    }
}
