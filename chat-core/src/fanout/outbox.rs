//! [`Outbox`]: one connection's outgoing queue, its alarm, and the write state machine shared
//! by the dispatcher (inline writes), the flush tick and the connection's session.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use super::{Alarm, FlushTick, Flushed, Inline, InlineWrite, Outgoing, Writing};
use crate::sync::lock;

/// One connection's outgoing queue and its alarm, in one allocation shared by the hub (which
/// queues) and the connection (the one consumer).
///
/// Hand-written rather than a tokio channel because of what every idle connection pays: an
/// empty queue owns no buffer, a frame is a `Bytes` clone, and the consumer is woken only
/// when the queue goes from empty to not empty (see `docs/perf.md`, "Outbox").
///
/// **Inline writes.** While a session runs, its transport is attached here
/// ([`Outbox::attach`]), and a frame offered with [`Outbox::offer`] to an idle connection
/// (nothing queued, the session not writing, the coalescing interval over) is written to the
/// socket on the spot by the caller, without waking the connection's task. Anything else is
/// queued, and the session writes it in order after what it took: a frame is written inline
/// only when no earlier frame is still waiting, so the order per connection is the order of
/// `offer`/`send` calls.
///
/// **Coalescing.** A frame for a connection written less than the tick's period ago (or being
/// written) is queued without waking anyone: the outbox is handed to the node's
/// [`FlushTick`], which wakes the session at its next tick, and the session writes everything
/// queued by then in one write.
///
/// **The session's side** of the state machine: [`Outbox::poll_take`] says what to write;
/// from then until the [`Writing`] guard it adopts is dropped, nothing is written inline.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    capacity: usize,
    /// The node's flush tick, when writes are coalesced (`ChatConfig::write_coalesce`).
    tick: Option<Arc<FlushTick>>,
    /// The consumer, woken when a frame lands in an empty queue, or when it must finish a
    /// flush that an inline write began.
    waker: AtomicWaker,
    pub(crate) alarm: Alarm,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Set when the connection is gone: frames are refused instead of piling up until its
    /// cleanup removes it from the hub.
    closed: bool,
    /// The running session's transport, for inline writes.
    writer: Option<Arc<dyn InlineWrite>>,
    /// The session is writing (from its take until its flush completed), or has to finish a
    /// flush that an inline write left: no inline write meanwhile.
    writing: bool,
    /// An inline write left its flush to the session.
    flush_pending: bool,
    /// An inline write failed: the session ends the connection (the frame is lost with it).
    failed: bool,
    /// A `join` with `since` is dropping duplicates as the session takes: no inline writes.
    filtering: bool,
    /// Handed to the flush tick: what is queued waits for it (the session is not woken
    /// before, and nothing is written inline).
    scheduled: bool,
    /// When the last write was flushed (kept only when coalescing).
    last_write: Option<Instant>,
}

/// Slots an idle connection's queue may keep (32 bytes each): [`Outbox::trim`], at each
/// keepalive ping, frees a larger buffer.
const RETAINED_SLOTS: usize = 8;

/// Slots a queue keeps when it drains. Under batched traffic (the flush tick at 8 ms, W1 at
/// 20/s) each batch is about ten frames: freeing the buffer at every drain made each batch
/// allocate it again and grow it twice (4, 8, 16 slots), a fifth of the allocator's time on
/// the fan-out path. A larger buffer (a burst, a slow consumer) is freed at once.
const KEPT_WHILE_ACTIVE: usize = 32;

impl Queue {
    /// Pops the next frame for the consumer, which is writing from now on; a drained queue
    /// gives back the buffer a burst grew (returned, to be freed outside the lock).
    fn pop(&mut self) -> Option<(Bytes, Option<VecDeque<Bytes>>)> {
        let frame = self.frames.pop_front()?;
        self.writing = true;
        Some((frame, self.take_spare(KEPT_WHILE_ACTIVE)))
    }

    /// An empty queue's buffer if it holds more than `keep` slots (to be freed outside the
    /// lock).
    fn take_spare(&mut self, keep: usize) -> Option<VecDeque<Bytes>> {
        (self.frames.is_empty() && self.frames.capacity() > keep)
            .then(|| std::mem::take(&mut self.frames))
    }

    /// Whether the connection was written less than `period` before `now`.
    fn written_within(&self, period: Duration, now: Instant) -> bool {
        self.last_write.is_some_and(|last| now < last + period)
    }
}

/// What an inline write leaves to do once the queue lock is released.
struct Written {
    /// The frame went out (or will, with the session's flush).
    delivered: bool,
    /// The session must take over (flush, or end the connection).
    wake: bool,
}

/// How [`Outbox::push`] hands a frame on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued, the session woken at once.
    Wake,
    /// Written to the socket on the spot if the connection is idle ([`Outbox::offer`]).
    Inline,
    /// Queued for the flush tick's next batch (the dispatcher is behind: the tick writes each
    /// connection's frames in one go); without a tick, like [`Push::Wake`].
    Batch,
}

/// Whom a queued frame must be announced to.
enum Then {
    /// Nobody: earlier frames are waiting, their consumer already knows.
    Nothing,
    /// The consumer, now.
    Wake,
    /// The flush tick (the consumer was written to less than a period ago).
    Schedule,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` frames; with a `tick`, a connection is
    /// written at most once per tick period (see the type's documentation).
    pub(crate) fn new(capacity: usize, tick: Option<Arc<FlushTick>>) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::default(),
            capacity: capacity.max(1),
            tick,
            waker: AtomicWaker::new(),
            alarm: Alarm::default(),
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The critical sections are a push or a pop: consistent even after a panic elsewhere.
        lock(&self.queue)
    }

    /// Queues a frame without waiting. A full queue raises [`Alarm::SLOW`] (the connection
    /// then closes as a slow consumer instead of letting its backlog grow); a closed one
    /// refuses it. Returns whether it was queued.
    pub(crate) fn send(self: &Arc<Self>, frame: Bytes) -> bool {
        self.push(frame, Push::Wake)
    }

    /// Like [`Outbox::send`], but an idle connection's frame is written to its socket at once
    /// (see the type's documentation). Returns whether it was written or queued.
    pub(crate) fn offer(self: &Arc<Self>, frame: Bytes) -> bool {
        self.push(frame, Push::Inline)
    }

    /// Queues `frame` (or writes it) as `how` says.
    pub(crate) fn push(self: &Arc<Self>, frame: Bytes, how: Push) -> bool {
        let mut queue = self.queue();
        if queue.closed {
            return false;
        }
        // Frames already wait, and their consumer was woken or scheduled: join them.
        if !queue.frames.is_empty() || queue.scheduled {
            return self.enqueue(queue, frame, Then::Nothing);
        }
        // One clock read per frame, shared by the coalescing check and an inline write.
        let now = self.tick.as_ref().map(|_| Instant::now());
        let then = match (&self.tick, now) {
            // Being written, or written less than a period ago: wait for the tick.
            (Some(tick), Some(now))
                if how == Push::Batch
                    || queue.writing
                    || queue.written_within(tick.period(), now) =>
            {
                Then::Schedule
            }
            _ if queue.writing || how != Push::Inline || queue.filtering => Then::Wake,
            _ => match self.write_inline(&mut queue, frame, now) {
                Ok(Written { delivered, wake }) => {
                    drop(queue);
                    if wake {
                        self.waker.wake();
                    }
                    return delivered;
                }
                Err(frame) => return self.enqueue(queue, frame, Then::Wake),
            },
        };
        self.enqueue(queue, frame, then)
    }

    /// Queues `frame` behind the lock the caller holds, then tells whom `then` names.
    fn enqueue(
        self: &Arc<Self>,
        mut queue: MutexGuard<'_, Queue>,
        frame: Bytes,
        then: Then,
    ) -> bool {
        if queue.frames.len() >= self.capacity {
            drop(queue);
            self.alarm.raise(Alarm::SLOW);
            return false;
        }
        queue.frames.push_back(frame);
        if matches!(then, Then::Schedule) {
            queue.scheduled = true;
        }
        drop(queue);
        match (then, &self.tick) {
            (Then::Schedule, Some(tick)) => {
                if let Err(outbox) = tick.schedule(self.clone()) {
                    outbox.release(false);
                }
            }
            // The consumer drains to empty before it waits, so only the transition from empty
            // (or from scheduled, by the tick) needs a wake.
            (Then::Wake | Then::Schedule, _) => self.waker.wake(),
            (Then::Nothing, _) => {}
        }
        true
    }

    /// Writes `frame` to the attached transport, or gives it back to be queued. `now` (when
    /// coalescing) becomes the last write's time; the caller checked that the coalescing
    /// interval is over.
    fn write_inline(
        &self,
        queue: &mut Queue,
        frame: Bytes,
        now: Option<Instant>,
    ) -> Result<Written, Bytes> {
        let Some(writer) = &queue.writer else {
            return Err(frame);
        };
        let delivered = match writer.try_write(frame) {
            Inline::Written => {
                queue.last_write = now;
                return Ok(Written {
                    delivered: true,
                    wake: false,
                });
            }
            Inline::Busy(frame) => return Err(frame),
            Inline::Unflushed => {
                queue.flush_pending = true;
                true
            }
            // Not a frame dropped quietly: the session ends the connection.
            Inline::Failed => {
                queue.failed = true;
                false
            }
        };
        // The session takes over: it flushes (or ends) before writing anything else, and
        // nothing is written inline until it has. Woken once the queue lock is released.
        queue.last_write = now;
        queue.writing = true;
        Ok(Written {
            delivered,
            wake: true,
        })
    }

    /// The next queued frame, without waiting. The caller is now writing (it adopts the write
    /// with [`Outbox::adopt_write`], or is not a session and never writes inline).
    pub(crate) fn try_pop(&self) -> Option<Bytes> {
        let mut queue = self.queue();
        let (frame, spare) = queue.pop()?;
        drop(queue);
        drop(spare);
        Some(frame)
    }

    /// What to write next: a flush left by an inline write, then queued frames; `Pending`
    /// until there is one (`None` once closed). Anything but `Pending` means the caller is
    /// writing: it adopts the write with [`Outbox::adopt_write`].
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        if let Poll::Ready(taken) = self.take() {
            return Poll::Ready(taken);
        }
        self.waker.register(cx.waker());
        // A frame queued between the first look and the registration did not wake us.
        self.take()
    }

    /// One look under the lock: what to write, `None` if closed and drained, else `Pending`.
    fn take(&self) -> Poll<Option<Outgoing>> {
        let mut queue = self.queue();
        if queue.failed {
            return Poll::Ready(Some(Outgoing::Failed));
        }
        if std::mem::take(&mut queue.flush_pending) {
            return Poll::Ready(Some(Outgoing::Flush));
        }
        // What is queued waits for the tick, which wakes the consumer.
        if queue.scheduled && !queue.closed {
            queue.writing = false;
            return Poll::Pending;
        }
        let Some((frame, spare)) = queue.pop() else {
            // Nothing to write: the consumer is between writes.
            queue.writing = false;
            return if queue.closed {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        };
        drop(queue);
        drop(spare);
        Poll::Ready(Some(Outgoing::Frame(frame)))
    }

    /// The next queued frame, or `Pending` until one is queued (`None` once closed).
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            match self.poll_take(cx) {
                Poll::Ready(Some(Outgoing::Frame(frame))) => return Poll::Ready(Some(frame)),
                // Nobody attached a transport, so nobody left a flush: nothing to do.
                Poll::Ready(Some(Outgoing::Flush)) => continue,
                Poll::Ready(Some(Outgoing::Failed) | None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The caller is about to write (a ping, a close): no inline write until the guard drops.
    pub(crate) fn begin_write(&self) -> Writing<'_> {
        self.queue().writing = true;
        Writing::new(self)
    }

    /// The guard for a write that [`Outbox::poll_take`] (or [`Outbox::try_pop`]) began.
    pub(crate) fn adopt_write(&self) -> Writing<'_> {
        Writing::new(self)
    }

    /// The caller's write is over: inline writes may resume, and the coalescing interval
    /// starts now.
    pub(super) fn end_write(&self) {
        let now = self.tick.as_ref().map(|_| Instant::now());
        let mut queue = self.queue();
        queue.writing = false;
        // What an inline write left unflushed went out with this flush.
        queue.flush_pending = false;
        if now.is_some() {
            queue.last_write = now;
        }
    }

    /// The flush tick came: what is queued is written now, with `inline` by the caller (the
    /// tick's task) when the session is idle, else by the session, which is woken. Returns how
    /// many frames were waiting.
    pub(super) fn release(&self, inline: bool) -> usize {
        let mut queue = self.queue();
        queue.scheduled = false;
        let queued = queue.frames.len();
        if queued == 0 {
            return 0;
        }
        let wake = if !inline || queue.writing || queue.filtering || queue.closed {
            true
        } else {
            self.write_queued_inline(&mut queue)
        };
        let spare = queue.take_spare(KEPT_WHILE_ACTIVE);
        drop(queue);
        drop(spare);
        if wake {
            self.waker.wake();
        }
        queued
    }

    /// Writes the whole queue to the attached transport in one flush. Returns whether the
    /// session must take over (no transport, a held one, a full socket, a failure).
    fn write_queued_inline(&self, queue: &mut Queue) -> bool {
        let Queue {
            writer,
            frames,
            last_write,
            ..
        } = queue;
        let Some(writer) = writer else {
            return true;
        };
        match writer.try_write_queued(frames) {
            Flushed::Written => {
                *last_write = Some(Instant::now());
                false
            }
            Flushed::Busy => true,
            Flushed::Unflushed => {
                queue.flush_pending = true;
                queue.writing = true;
                queue.last_write = Some(Instant::now());
                true
            }
            // Not frames dropped quietly: the session ends the connection.
            Flushed::Failed => {
                queue.failed = true;
                queue.writing = true;
                true
            }
        }
    }

    /// Frees the buffer that traffic grew, if the queue is empty and it holds more than an
    /// idle connection keeps (called at each keepalive ping: an active connection keeps its
    /// buffer between batches, an idle one gives it back within a ping interval).
    pub(crate) fn trim(&self) {
        let spare = self.queue().take_spare(RETAINED_SLOTS);
        drop(spare);
    }

    /// Frames waiting in the queue now (metrics, read at scrape time).
    pub(crate) fn queued(&self) -> usize {
        self.queue().frames.len()
    }

    /// Lets the dispatcher write to `writer` inline (while a session runs).
    pub(crate) fn attach(&self, writer: Arc<dyn InlineWrite>) {
        self.queue().writer = Some(writer);
    }

    /// Stops inline writes (the session is ending, or closing the transport itself).
    pub(crate) fn detach(&self) {
        let writer = self.queue().writer.take();
        drop(writer);
    }

    /// Turns inline writes off while the connection filters what it takes (a `join` with
    /// `since`).
    pub(crate) fn set_filtering(&self, filtering: bool) {
        self.queue().filtering = filtering;
    }

    /// Whether inline writes are off for a replay's duplicate check.
    #[cfg(test)]
    pub(crate) fn filtering(&self) -> bool {
        self.queue().filtering
    }

    /// How many frames the queue's buffer holds without growing.
    #[cfg(test)]
    pub(super) fn buffer_capacity(&self) -> usize {
        self.queue().frames.capacity()
    }

    /// Refuses further frames and frees what is queued; a waiting consumer gets `None`.
    pub(crate) fn close(&self) {
        let (dropped, writer) = {
            let mut queue = self.queue();
            queue.closed = true;
            (std::mem::take(&mut queue.frames), queue.writer.take())
        };
        drop(dropped);
        drop(writer);
        self.waker.wake();
    }
}
