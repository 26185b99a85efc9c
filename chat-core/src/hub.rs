//! The node-local side of fan-out: who on this node listens to what, and the ref-counted
//! broker subscriptions that follow from it.
//!
//! The [`Hub`] is the only place frames from the broker go: the dispatcher task hands each
//! envelope to [`Hub::deliver`], which copies the (already serialized, reference-counted) frame
//! bytes into the bounded queue of every local connection on the topic, except the connection
//! that published it. Nothing here publishes, so nothing received is ever re-published.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, RwLock,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::{
    backend::broker::{Broker, ConnId, Envelope, NodeId, Topic},
    error::BackendError,
    protocol::{RoomId, UserId},
};

/// Why a connection must end, raised from outside its session: the chat is shutting down,
/// or its queue overflowed; and, apart from those, whether a keepalive ping is due. The
/// session polls it on every turn of its loop, so polling is a load and an uncontended
/// waker registration (a `Notify` took a lock per poll, and the chat-wide shutdown `watch` a
/// shared one: 5 to 7% of fan-out CPU).
#[derive(Debug, Default)]
pub(crate) struct Alarm {
    raised: AtomicU8,
    waker: AtomicWaker,
    /// A keepalive ping is due (raised by the node's keepalive sweep, taken by the session).
    /// Apart from the end causes: it is taken, not sticky, and has its own waker so that
    /// taking it never leaves the end signal unregistered.
    ping: AtomicBool,
    ping_waker: AtomicWaker,
}

impl Alarm {
    /// The chat is shutting down.
    pub(crate) const SHUTDOWN: u8 = 1;
    /// The outgoing queue overflowed.
    pub(crate) const SLOW: u8 = 2;

    /// Raises `cause` (idempotent) and wakes the session.
    pub(crate) fn raise(&self, cause: u8) {
        self.raised.fetch_or(cause, Ordering::AcqRel);
        self.waker.wake();
    }

    /// What has been raised so far (0: nothing).
    pub(crate) fn raised(&self) -> u8 {
        self.raised.load(Ordering::Acquire)
    }

    /// A ping is due: wakes the session.
    pub(crate) fn ping(&self) {
        self.ping.store(true, Ordering::Release);
        self.ping_waker.wake();
    }

    /// Ready (and taken) once a ping is due. `registered` is the caller's record of the waker
    /// it left here: while the task's waker is unchanged, a poll is one atomic swap.
    pub(crate) fn poll_ping(
        &self,
        cx: &mut Context<'_>,
        registered: &mut Option<std::task::Waker>,
    ) -> Poll<()> {
        if self.ping.swap(false, Ordering::AcqRel) {
            // Waking took the waker out: register again on the next poll.
            *registered = None;
            return Poll::Ready(());
        }
        if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        self.ping_waker.register(cx.waker());
        *registered = Some(cx.waker().clone());
        if self.ping.swap(false, Ordering::AcqRel) {
            *registered = None;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Ready with the raised causes once anything is raised.
    pub(crate) fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<u8> {
        match self.raised() {
            0 => {
                self.waker.register(cx.waker());
                match self.raised() {
                    0 => Poll::Pending,
                    raised => Poll::Ready(raised),
                }
            }
            raised => Poll::Ready(raised),
        }
    }
}

/// One connection's outgoing queue and its alarm, in one allocation shared by the hub (which
/// queues) and the connection (the one consumer).
///
/// Hand-written rather than a tokio channel because of what every idle connection pays: a
/// bounded `mpsc` allocates a 32-slot block and a semaphore up front (about 500 bytes with
/// the separate alarm), and its pop returns a permit through the semaphore's mutex. Here an
/// empty queue owns no buffer, a frame is a `Bytes` clone (no `Arc` around it), and the
/// consumer is woken only when the queue goes from empty to not empty.
///
/// **Direct writes.** While a session runs, its transport is attached here, and a frame
/// offered with [`Outbox::offer`] to an idle connection (nothing queued, the session not
/// writing, the coalescing interval over) is written to the socket on the spot by the caller,
/// without waking the connection's task. Anything else is queued, and the session writes it
/// in order after what it popped: a frame is written directly only when no earlier frame is
/// still waiting, so the order per connection is the order of `offer`/`send` calls.
///
/// **Coalescing.** A frame for a connection written less than the tick's period ago (or
/// being written) is queued without waking anyone: the outbox is handed to the node's
/// [`FlushTick`], which wakes the session at its next tick (at most one period later; the
/// period adapts between `write_coalesce` and `write_coalesce_max`), and the session writes
/// everything queued by then in one write.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    capacity: usize,
    /// The node's flush tick, when writes are coalesced (`ChatConfig::write_coalesce`).
    tick: Option<Arc<FlushTick>>,
    /// The consumer, woken when a frame lands in an empty queue, or when it must finish a
    /// flush that a direct write began.
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
    /// The running session's transport, for direct writes.
    writer: Option<Arc<dyn DirectWrite>>,
    /// The session is writing (from its pop until its flush completed), or has to finish a
    /// flush that a direct write left: no direct write meanwhile.
    writing: bool,
    /// A direct write left its flush to the session.
    flush_pending: bool,
    /// A direct write failed: the session ends the connection (the frame is lost with it).
    failed: bool,
    /// A `join` with `since` is dropping duplicates as the session pops: no direct writes.
    filtering: bool,
    /// Handed to the flush tick: what is queued waits for it (the session is not woken
    /// before, and nothing is written directly).
    scheduled: bool,
    /// When the last write was flushed (kept only when coalescing).
    last_write: Option<Instant>,
}

impl Queue {
    /// Pops the next frame for the consumer, which is writing from now on; a drained queue
    /// gives back the buffer a burst grew (returned, to be freed outside the lock).
    fn pop(&mut self) -> Option<(Bytes, Option<VecDeque<Bytes>>)> {
        let frame = self.frames.pop_front()?;
        self.writing = true;
        let spare = (self.frames.is_empty() && self.frames.capacity() > RETAINED_SLOTS)
            .then(|| std::mem::take(&mut self.frames));
        Some((frame, spare))
    }
}

/// What a direct write did.
#[derive(Debug)]
pub(crate) enum Direct {
    /// Written and flushed.
    Written,
    /// Accepted, but the flush would block: the session finishes it.
    Unflushed,
    /// Not taken (the session holds the transport, or it is backed up): queue it.
    Busy(Bytes),
    /// The transport failed; the session finds out on its next read or write.
    Failed,
}

/// A connection's transport as the hub writes to it without its session: it must not wait
/// (a lock held elsewhere or a full socket is [`Direct::Busy`] or [`Direct::Unflushed`]).
pub(crate) trait DirectWrite: Send + Sync {
    fn try_write(&self, frame: Bytes) -> Direct;
}

/// What the session takes from its outbox.
#[derive(Debug, PartialEq)]
pub(crate) enum Outgoing {
    /// The next frame to write.
    Frame(Bytes),
    /// Nothing new, but a direct write left bytes to flush.
    Flush,
    /// A direct write failed: the connection is broken.
    Failed,
}

/// What a direct write leaves to do once the queue lock is released.
struct Written {
    /// The frame went out (or will, with the session's flush).
    delivered: bool,
    /// The session must take over (flush, or end the connection).
    wake: bool,
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

/// Whether the connection was written less than `period` before `now`.
fn recently(queue: &Queue, period: Duration, now: Instant) -> bool {
    queue.last_write.is_some_and(|last| now < last + period)
}

/// The node's flush tick: one timer for every connection whose writes are being coalesced,
/// instead of one per connection. An outbox that gets a frame less than a period after its
/// last write (or while being written) is handed over with [`FlushTick::schedule`] and its
/// session is not woken; [`FlushTick::run`] wakes every such session a period after the
/// first of them was handed over, and each writes what it has queued in one write. Per batch
/// that is one wake-up and no timer, where a timer per connection cost two wake-ups and a
/// timer-wheel entry.
///
/// **The period adapts to the traffic**: it is `write_coalesce` or `write_coalesce_max`.
/// Every [`ADAPT_EVERY`] the tick looks at the batches it released: when they held 1.5
/// frames or more on average, connections receive frames faster than the period, so a
/// longer one buys proportionally fewer writes (the period goes to the longest); below 1.25
/// frames, or with few batches, the wait buys little and it goes back to the shortest. A
/// quiet spell of that length resets it too. So light traffic keeps the latency of the
/// shortest period, and heavy fan-out (where writes cost most of the CPU) gets the batching
/// of the longest. There are no steps in between: batches grow with the period, so traffic
/// dense enough to double it would double it again up to the longest (session 4 doubled it
/// one window at a time: 400 ms to reach 32 ms, a fifth of a 2-second burst), and traffic
/// too light for the longest is too light for any shorter one. For the same reason, at
/// middling rates both ends can be stable (`docs/perf.md`, 5 messages/s per sender: 1.1
/// frames per batch at 2 ms, 2.4 at 8 ms), and where the period settles depends on how the
/// traffic arrived.
pub(crate) struct FlushTick {
    min: Duration,
    max: Duration,
    /// The current period in nanoseconds: read by every outbox that gets a frame (see
    /// [`FlushTick::period`]), written a few times a second by the tick. On a cache line of
    /// its own, away from `due`, which the dispatcher locks for every batch.
    period_ns: CacheLine<AtomicU64>,
    due: Mutex<Due>,
    /// The tick's task, while it waits for the first outbox of the next batch.
    waker: AtomicWaker,
}

/// The outboxes waiting for the next tick.
#[derive(Default)]
struct Due {
    peers: Vec<Peer>,
    /// The tick's task is gone (the chat was dropped, or the task died): outboxes wake their
    /// sessions themselves instead of waiting for a tick that will not come.
    stopped: bool,
}

/// A value alone on its cache line (no false sharing with its neighbours).
#[repr(align(64))]
#[derive(Debug, Default)]
struct CacheLine<T>(T);

/// How often the tick adapts its period, and how long a quiet spell resets it.
const ADAPT_EVERY: Duration = Duration::from_millis(100);

/// Fewer batches than this in a window (counted at the shortest period: twice as many at a
/// period twice as long count the same): coalescing is rare, the period shrinks.
const ADAPT_MIN_BATCHES: usize = 32;

impl std::fmt::Debug for FlushTick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushTick")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("period", &self.period())
            .finish_non_exhaustive()
    }
}

impl FlushTick {
    /// A tick every `min` to `max` (adapting to the traffic) while any outbox waits for
    /// one; none while idle.
    pub(crate) fn new(min: Duration, max: Duration) -> Arc<Self> {
        let max = max.max(min);
        Arc::new(Self {
            min,
            max,
            period_ns: CacheLine(AtomicU64::new(nanos(min))),
            due: Mutex::default(),
            waker: AtomicWaker::new(),
        })
    }

    /// The current period: a connection written less than this long ago waits for the tick.
    pub(crate) fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns.0.load(Ordering::Relaxed))
    }

    fn set_period(&self, period: Duration) {
        self.period_ns.0.store(nanos(period), Ordering::Relaxed);
    }

    fn due(&self) -> std::sync::MutexGuard<'_, Due> {
        // Pushes and swaps only: consistent even after a panic elsewhere.
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `peer` waits for the next tick (called once per batch, by its outbox); it is given
    /// back if the tick has stopped.
    fn schedule(&self, peer: Peer) -> Result<(), Peer> {
        let first = {
            let mut due = self.due();
            if due.stopped {
                return Err(peer);
            }
            due.peers.push(peer);
            due.peers.len() == 1
        };
        if first {
            self.waker.wake();
        }
        Ok(())
    }

    /// Ticks for as long as the node runs (the chat aborts the task when dropped). However
    /// the task ends, even before its first poll, the tick stops: waiting outboxes are
    /// released and later ones wake their sessions themselves.
    pub(crate) fn run(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send {
        /// Stops the tick when the task's future is dropped (aborted, or unwinding).
        struct StopOnDrop(Arc<FlushTick>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.stop();
            }
        }
        let stop = StopOnDrop(self);
        async move {
            let tick = &stop.0;
            tick.ticks().await;
        }
    }

    async fn ticks(&self) {
        let mut batch = Vec::new();
        let mut window = Window::new(Instant::now());
        loop {
            let waiting = Instant::now();
            std::future::poll_fn(|cx| self.poll_due(cx)).await;
            let now = Instant::now();
            if now >= waiting + ADAPT_EVERY {
                // A quiet spell: start again from the shortest period.
                self.set_period(self.min);
                window = Window::new(now);
            }
            tokio::time::sleep(self.period()).await;
            std::mem::swap(&mut batch, &mut self.due().peers);
            for peer in batch.drain(..) {
                // A session that was writing when its frames came took them with its batch:
                // nothing left, no write, nothing learnt about batching.
                let frames = peer.release();
                if frames > 0 {
                    window.batches += 1;
                    window.frames += frames;
                }
            }
            let now = Instant::now();
            if now >= window.start + ADAPT_EVERY {
                if let Some(period) = window.adapt(self.period(), self.min, self.max) {
                    tracing::debug!(
                        ?period,
                        batches = window.batches,
                        frames = window.frames,
                        "flush tick period"
                    );
                    self.set_period(period);
                }
                window = Window::new(now);
            }
        }
    }

    /// Ready once an outbox waits for a tick.
    fn poll_due(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.due().peers.is_empty() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.due().peers.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Stops the tick: every waiting outbox is released now, and later ones are refused (so
    /// they wake their sessions). Also breaks the cycle between this tick and the outboxes
    /// it holds. Idempotent.
    pub(crate) fn stop(&self) {
        let peers = {
            let mut due = self.due();
            due.stopped = true;
            std::mem::take(&mut due.peers)
        };
        for peer in peers {
            peer.release();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the tick released since `start`.
#[derive(Debug)]
struct Window {
    start: Instant,
    /// Connections woken (one write each).
    batches: usize,
    /// Frames they had queued.
    frames: usize,
}

impl Window {
    fn new(start: Instant) -> Self {
        Self {
            start,
            batches: 0,
            frames: 0,
        }
    }

    /// The next period, if it changes: the longest when batches average 1.5 frames or more,
    /// the shortest below 1.25 or when there were few batches (coalescing is rare: the
    /// traffic is light), kept between 1.25 and 1.5. "Few" is counted in batches of the
    /// shortest period: a longer one makes fewer batches of the same traffic, and must not
    /// read that as the traffic getting lighter.
    fn adapt(&self, period: Duration, min: Duration, max: Duration) -> Option<Duration> {
        let scaled = self.batches as u128 * period.as_nanos();
        let next = if scaled < ADAPT_MIN_BATCHES as u128 * min.as_nanos() {
            min
        } else if self.frames * 2 >= self.batches * 3 {
            max
        } else if self.frames * 4 < self.batches * 5 {
            min
        } else {
            period
        };
        (next != period).then_some(next)
    }
}

/// Slots an emptied queue may keep. A burst grows the buffer; once drained, a larger one is
/// freed, so an idle connection holds at most this many (32 bytes each).
const RETAINED_SLOTS: usize = 8;

/// A connection's outbox, as the hub holds it.
pub(crate) type Peer = Arc<Outbox>;

impl Outbox {
    /// An empty outbox holding at most `capacity` frames; with a `tick`, a connection is
    /// written at most once per tick period (see the type's documentation).
    pub(crate) fn new(capacity: usize, tick: Option<Arc<FlushTick>>) -> Peer {
        Arc::new(Self {
            queue: Mutex::default(),
            capacity: capacity.max(1),
            tick,
            waker: AtomicWaker::new(),
            alarm: Alarm::default(),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The critical sections are a push or a pop: consistent even after a panic elsewhere.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame without waiting. A full queue raises [`Alarm::SLOW`] (the connection
    /// then closes as a slow consumer instead of letting its backlog grow); a closed one
    /// refuses it. Returns whether it was queued.
    pub(crate) fn send(self: &Arc<Self>, frame: Bytes) -> bool {
        self.push(frame, false)
    }

    /// Like [`Outbox::send`], but an idle connection's frame is written to its socket at once
    /// (see the type's documentation). Returns whether it was written or queued.
    pub(crate) fn offer(self: &Arc<Self>, frame: Bytes) -> bool {
        self.push(frame, true)
    }

    fn push(self: &Arc<Self>, frame: Bytes, direct: bool) -> bool {
        let mut queue = self.queue();
        if queue.closed {
            return false;
        }
        // Frames already wait, and their consumer was woken or scheduled: join them.
        if !queue.frames.is_empty() || queue.scheduled {
            return self.enqueue(queue, frame, Then::Nothing);
        }
        // One clock read per frame, shared by the coalescing check and a direct write.
        let now = self.tick.as_ref().map(|_| Instant::now());
        let then = match (&self.tick, now) {
            // Being written, or written less than a period ago: wait for the tick.
            (Some(tick), Some(now)) if queue.writing || recently(&queue, tick.period(), now) => {
                Then::Schedule
            }
            _ if queue.writing || !direct || queue.filtering => Then::Wake,
            _ => match self.write_directly(&mut queue, frame, now) {
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
        mut queue: std::sync::MutexGuard<'_, Queue>,
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
                if let Err(peer) = tick.schedule(self.clone()) {
                    peer.release();
                }
            }
            // The consumer drains to empty before it waits, so only the transition from empty
            // (or from scheduled, by the tick) needs a wake.
            (Then::Wake | Then::Schedule, _) => self.waker.wake(),
            (Then::Nothing, _) => {}
        }
        true
    }

    /// Writes `frame` to the attached transport, or gives it back to be queued.
    /// `now` (when coalescing) becomes the last write's time; the caller checked that the
    /// coalescing interval is over.
    fn write_directly(
        &self,
        queue: &mut Queue,
        frame: Bytes,
        now: Option<Instant>,
    ) -> Result<Written, Bytes> {
        let Some(writer) = &queue.writer else {
            return Err(frame);
        };
        let delivered = match writer.try_write(frame) {
            Direct::Written => {
                queue.last_write = now;
                return Ok(Written {
                    delivered: true,
                    wake: false,
                });
            }
            Direct::Busy(frame) => return Err(frame),
            Direct::Unflushed => {
                queue.flush_pending = true;
                true
            }
            // Not a frame dropped quietly: the session ends the connection.
            Direct::Failed => {
                queue.failed = true;
                false
            }
        };
        // The session takes over: it flushes (or ends) before writing anything else, and
        // nothing is written directly until it has. Woken once the queue lock is released.
        queue.last_write = now;
        queue.writing = true;
        Ok(Written {
            delivered,
            wake: true,
        })
    }

    /// The next queued frame, without waiting. The caller is now writing (see
    /// [`Outbox::end_write`]).
    pub(crate) fn try_pop(&self) -> Option<Bytes> {
        let mut queue = self.queue();
        let (frame, spare) = queue.pop()?;
        drop(queue);
        drop(spare);
        Some(frame)
    }

    /// What to write next: a flush left by a direct write, then queued frames; `Pending`
    /// until there is one (`None` once closed). Anything but `Pending` means the caller is
    /// writing until it calls [`Outbox::end_write`].
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

    /// The caller is about to write (a ping, a close): no direct write until
    /// [`Outbox::end_write`].
    pub(crate) fn begin_write(&self) {
        self.queue().writing = true;
    }

    /// The caller's write is flushed: direct writes may resume, and the coalescing interval
    /// starts now.
    pub(crate) fn end_write(&self) {
        let now = self.tick.as_ref().map(|_| Instant::now());
        let mut queue = self.queue();
        queue.writing = false;
        // What a direct write left unflushed went out with this flush.
        queue.flush_pending = false;
        if now.is_some() {
            queue.last_write = now;
        }
    }

    /// The flush tick came: what is queued may be written now. Returns how many frames wait.
    fn release(&self) -> usize {
        let mut queue = self.queue();
        queue.scheduled = false;
        let queued = queue.frames.len();
        drop(queue);
        if queued > 0 {
            self.waker.wake();
        }
        queued
    }

    /// Lets the hub write to `writer` directly (while a session runs).
    pub(crate) fn attach(&self, writer: Arc<dyn DirectWrite>) {
        self.queue().writer = Some(writer);
    }

    /// Stops direct writes (the session is ending, or closing the transport itself).
    pub(crate) fn detach(&self) {
        let writer = self.queue().writer.take();
        drop(writer);
    }

    /// Turns direct writes off while the session filters what it pops (`join` with `since`).
    pub(crate) fn set_filtering(&self, filtering: bool) {
        self.queue().filtering = filtering;
    }

    /// Whether direct writes are off for a replay's duplicate check (for tests).
    #[cfg(test)]
    pub(crate) fn filtering(&self) -> bool {
        self.queue().filtering
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

type Peers = HashMap<ConnId, Peer>;
/// A user's connections on this node: usually one or a few tabs, so a Vec (one small
/// allocation) rather than a map, which matters at tens of thousands of connections.
type UserPeers = Vec<(ConnId, Peer)>;

/// At most this many recipients of one envelope are written directly by the dispatcher; in a
/// bigger room the others are queued first, so that their tasks write on the other cores
/// while the dispatcher writes the last few. Measured in the 1,000-member room: every
/// recipient written directly cost 15 to 20% of efficiency and 3 ms of p99 (one task doing
/// all the sends); 16 or 64 were within noise of queueing all; 64 keeps the whole of a
/// 50-member room direct (at 2/s: 115k-119k deliveries per CPU-s against 94k-99k with 16).
const DIRECT_PER_ENVELOPE: usize = 64;

/// Local connections per room and per user, and broker subscription counts.
pub(crate) struct Hub {
    node: NodeId,
    // RwLock: fan-out (read) is the hot path and runs on the dispatcher task; joins, leaves
    // and connects (write) are rare by comparison. Never held across an await.
    rooms: RwLock<HashMap<RoomId, Peers>>,
    users: RwLock<HashMap<UserId, UserPeers>>,
    /// Local interest per topic. The tokio mutex serializes subscribe/unsubscribe of one topic
    /// (so a leave's UNSUBSCRIBE can never overtake a later join's SUBSCRIBE); the std mutex
    /// around the map is only held to find or create a topic's slot.
    topics: Mutex<HashMap<Topic, Arc<tokio::sync::Mutex<usize>>>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Critical sections are plain map updates, consistent even after a panic elsewhere.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub(crate) fn new(node: NodeId) -> Self {
        Self {
            node,
            rooms: RwLock::default(),
            users: RwLock::default(),
            topics: Mutex::default(),
        }
    }

    /// Fans one envelope out to the local connections on its topic, skipping its origin
    /// connection. Returns how many connections it was written or queued for.
    ///
    /// With `direct`, idle connections get the frame written to their socket on the spot
    /// (see [`Outbox`]); the dispatcher asks for it only while it is keeping up.
    pub(crate) fn deliver(&self, envelope: &Envelope, direct: bool) -> usize {
        let skip = (envelope.origin.node == self.node).then_some(envelope.origin.conn);
        let frame = &envelope.frame;
        let send = |len: usize, peers: &mut dyn Iterator<Item = (ConnId, &Peer)>| {
            // In a big room, the first recipients are queued (their tasks start writing on the
            // other cores at once) and only the last few are written here.
            let direct_from = if direct {
                len.saturating_sub(DIRECT_PER_ENVELOPE)
            } else {
                usize::MAX
            };
            peers
                .enumerate()
                .filter(|(_, (conn, _))| Some(*conn) != skip)
                .filter(|(i, (_, peer))| peer.push(frame.clone(), *i >= direct_from))
                .count()
        };
        match &envelope.topic {
            Topic::Room(room) => read(&self.rooms).get(room).map_or(0, |peers| {
                send(peers.len(), &mut peers.iter().map(|(c, p)| (*c, p)))
            }),
            Topic::User(user) => read(&self.users).get(user).map_or(0, |peers| {
                send(peers.len(), &mut peers.iter().map(|(c, p)| (*c, p)))
            }),
        }
    }

    /// Queues a frame for every local connection (e.g. a `resync` after a broker reconnect).
    pub(crate) fn broadcast_all(&self, frame: &Bytes) {
        for peers in read(&self.users).values() {
            for (_, peer) in peers {
                peer.send(frame.clone());
            }
        }
    }

    /// Makes a keepalive ping due on the local connections whose id is `slice` modulo
    /// `slices` (the node's keepalive sweep: one timer per node, not one per connection).
    pub(crate) fn ping_slice(&self, slice: u64, slices: u64) {
        for peers in read(&self.users).values() {
            for (conn, peer) in peers {
                if conn % slices == slice {
                    peer.alarm.ping();
                }
            }
        }
    }

    /// Raises `cause` on every local connection (shutdown).
    pub(crate) fn raise_all(&self, cause: u8) {
        for peers in read(&self.users).values() {
            for (_, peer) in peers {
                peer.alarm.raise(cause);
            }
        }
    }

    /// Adds a connection to a room and, under the same lock, queues `first` for it, so that
    /// every frame the room delivers to it afterwards comes after `first` (the `joined` reply
    /// and any replayed history).
    pub(crate) fn add_to_room(&self, room: &RoomId, conn: ConnId, peer: &Peer, first: Vec<Bytes>) {
        let mut rooms = write(&self.rooms);
        for frame in first {
            peer.send(frame);
        }
        rooms
            .entry(room.clone())
            .or_default()
            .insert(conn, peer.clone());
    }

    /// Finishes a join that buffered live frames in `side` (see `Connection::join`): under the
    /// write lock, so no delivery interleaves, queues `first`, then the buffered frames that
    /// `keep` accepts, then what `tail` returns, and puts `peer` in the room in place of the
    /// buffering one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn complete_join(
        &self,
        room: &RoomId,
        conn: ConnId,
        peer: &Peer,
        first: Vec<Bytes>,
        side: &Outbox,
        keep: impl Fn(&Bytes) -> bool,
        tail: impl FnOnce() -> Option<Bytes>,
    ) {
        let mut rooms = write(&self.rooms);
        for frame in first {
            peer.send(frame);
        }
        while let Some(frame) = side.try_pop() {
            if keep(&frame) {
                peer.send(frame);
            }
        }
        if let Some(frame) = tail() {
            peer.send(frame);
        }
        rooms
            .entry(room.clone())
            .or_default()
            .insert(conn, peer.clone());
    }

    pub(crate) fn remove_from_room(&self, room: &RoomId, conn: ConnId) {
        let mut rooms = write(&self.rooms);
        if let Some(peers) = rooms.get_mut(room) {
            peers.remove(&conn);
            if peers.is_empty() {
                rooms.remove(room);
            }
        }
    }

    pub(crate) fn add_user_conn(&self, user: &UserId, conn: ConnId, peer: Peer) {
        write(&self.users)
            .entry(user.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push((conn, peer));
    }

    pub(crate) fn remove_user_conn(&self, user: &UserId, conn: ConnId) {
        let mut users = write(&self.users);
        if let Some(peers) = users.get_mut(user) {
            peers.retain(|(c, _)| *c != conn);
            if peers.is_empty() {
                users.remove(user);
            }
        }
    }

    /// `user`'s connections on this node.
    pub(crate) fn user_connections(&self, user: &UserId) -> usize {
        read(&self.users).get(user).map_or(0, Vec::len)
    }

    /// Local connections on this node (for metrics and tests).
    pub(crate) fn connection_count(&self) -> usize {
        read(&self.users).values().map(Vec::len).sum()
    }

    fn slot(&self, topic: &Topic) -> Arc<tokio::sync::Mutex<usize>> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.entry(topic.clone()).or_default().clone()
    }

    /// One more local interest in `topic`; subscribes the node on the first.
    pub(crate) async fn acquire(
        &self,
        broker: &dyn Broker,
        topic: &Topic,
    ) -> Result<(), BackendError> {
        let slot = self.slot(topic);
        let mut count = slot.lock().await;
        if *count == 0 {
            broker.subscribe(vec![topic.clone()]).await?;
        }
        *count += 1;
        Ok(())
    }

    /// One less local interest in `topic`; unsubscribes the node after the last.
    pub(crate) async fn release(&self, broker: &dyn Broker, topic: &Topic) {
        let slot = self.slot(topic);
        let mut count = slot.lock().await;
        *count = count.saturating_sub(1);
        if *count > 0 {
            return;
        }
        if let Err(err) = broker.unsubscribe(vec![topic.clone()]).await {
            // The subscription may linger in the broker: its frames then find no local
            // connection and are dropped here, which is harmless.
            tracing::warn!(cause = %err, ?topic, "unsubscribe failed");
        }
        drop(count);
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        // Two references left (the map's and `slot`) means nobody is waiting on this topic, so
        // the entry can go; new acquirers clone under this same lock, so this cannot race.
        if Arc::strong_count(&slot) == 2 {
            if let Some(current) = topics.get(topic) {
                if Arc::ptr_eq(current, &slot) {
                    topics.remove(topic);
                }
            }
        }
    }

    /// Topics with local interest (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frame(i: usize) -> Bytes {
        Bytes::from(format!("{{\"n\":{i}}}"))
    }

    #[test]
    fn outbox_keeps_order_and_wakes_only_an_empty_queues_consumer() {
        let outbox = Outbox::new(16, None);
        let counter = Arc::new(Counter::default());
        let waker = counter.clone().into();
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_pop(&mut cx).is_pending());
        for i in 0..3 {
            assert!(outbox.send(frame(i)));
        }
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "one wake for the burst"
        );
        for i in 0..3 {
            assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(Some(frame(i))));
        }
        assert!(outbox.poll_pop(&mut cx).is_pending());
        assert!(outbox.send(frame(3)));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(outbox.try_pop(), Some(frame(3)));
    }

    #[test]
    fn a_full_outbox_raises_slow_and_a_closed_one_refuses() {
        let outbox = Outbox::new(2, None);
        assert!(outbox.send(frame(0)) && outbox.send(frame(1)));
        assert_eq!(outbox.alarm.raised(), 0);
        assert!(!outbox.send(frame(2)));
        assert_eq!(outbox.alarm.raised(), Alarm::SLOW);
        assert_eq!(outbox.try_pop(), Some(frame(0)));

        let counter = Arc::new(Counter::default());
        let waker = counter.clone().into();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(Some(frame(1))));
        assert!(outbox.poll_pop(&mut cx).is_pending());
        outbox.close();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "closing wakes the consumer"
        );
        assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(None));
        assert!(!outbox.send(frame(3)));
    }

    /// A transport that takes every direct write.
    #[derive(Default)]
    struct Taker(AtomicUsize);

    impl DirectWrite for Taker {
        fn try_write(&self, _: Bytes) -> Direct {
            self.0.fetch_add(1, Ordering::SeqCst);
            Direct::Written
        }
    }

    #[test]
    fn a_big_room_is_queued_but_for_its_last_recipients_and_the_sender_is_skipped() {
        use crate::backend::broker::{Origin, NO_CONN};
        let node = NodeId::random();
        let hub = Hub::new(node);
        let room = RoomId::new("big");
        let peers: Vec<(Peer, Arc<Taker>)> = (1..=100)
            .map(|conn| {
                let peer = Outbox::new(8, None);
                let taker = Arc::new(Taker::default());
                peer.attach(taker.clone());
                hub.add_to_room(&room, conn, &peer, Vec::new());
                (peer, taker)
            })
            .collect();
        let envelope = |conn| Envelope {
            origin: Origin { node, conn },
            topic: Topic::Room(room.clone()),
            frame: frame(0),
        };
        let direct = |peers: &[(Peer, Arc<Taker>)]| -> usize {
            peers.iter().map(|(_, t)| t.0.load(Ordering::SeqCst)).sum()
        };
        let queued = |peers: &[(Peer, Arc<Taker>)]| -> usize {
            peers.iter().filter(|(p, _)| p.try_pop().is_some()).count()
        };
        assert_eq!(hub.deliver(&envelope(NO_CONN), true), 100);
        assert_eq!(direct(&peers), DIRECT_PER_ENVELOPE);
        assert_eq!(queued(&peers), 100 - DIRECT_PER_ENVELOPE);
        // Without the dispatcher's go-ahead, nothing is written directly; the sender's own
        // connection gets nothing.
        for (peer, _) in &peers {
            peer.end_write();
        }
        assert_eq!(hub.deliver(&envelope(7), false), 99);
        assert_eq!(direct(&peers), DIRECT_PER_ENVELOPE);
        assert_eq!(queued(&peers), 99);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_soon_after_a_write_wait_for_the_tick_and_leave_together() {
        let period = Duration::from_millis(5);
        let tick = FlushTick::new(period, period);
        let task = tokio::spawn(tick.clone().run());
        let outbox = Outbox::new(16, Some(tick.clone()));
        let taker = Arc::new(Taker::default());
        outbox.attach(taker.clone());
        let counter = Arc::new(Counter::default());
        let waker = counter.clone().into();
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_take(&mut cx).is_pending());

        // An idle connection: written at once, by the caller.
        assert!(outbox.offer(frame(0)));
        assert_eq!(taker.0.load(Ordering::SeqCst), 1);
        // Within the period: queued, and nobody is woken before the tick.
        for i in 1..4 {
            assert!(outbox.offer(frame(i)));
        }
        assert_eq!(taker.0.load(Ordering::SeqCst), 1);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert!(outbox.poll_take(&mut cx).is_pending(), "held for the tick");
        tokio::time::sleep(period + Duration::from_millis(1)).await;
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "one wake for the batch"
        );
        for i in 1..4 {
            assert_eq!(
                outbox.poll_take(&mut cx),
                Poll::Ready(Some(Outgoing::Frame(frame(i))))
            );
        }
        // A frame while the batch is being written waits for the next tick too.
        assert!(outbox.offer(frame(4)));
        outbox.end_write();
        assert!(outbox.poll_take(&mut cx).is_pending());
        tokio::time::sleep(period + Duration::from_millis(1)).await;
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(
            outbox.poll_take(&mut cx),
            Poll::Ready(Some(Outgoing::Frame(frame(4))))
        );
        assert!(outbox.poll_take(&mut cx).is_pending());
        outbox.end_write();
        // After a quiet period the next frame is written at once again.
        tokio::time::sleep(period).await;
        assert!(outbox.offer(frame(5)));
        assert_eq!(taker.0.load(Ordering::SeqCst), 2);
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        task.abort();
        tick.stop();
    }

    #[test]
    fn the_tick_period_goes_long_under_dense_traffic_and_short_under_light() {
        let ms = Duration::from_millis;
        let (min, max) = (ms(2), ms(32));
        let window = |batches, frames| Window {
            start: Instant::now(),
            batches,
            frames,
        };
        // 1.5 frames per batch or more: the longest period, in one step.
        assert_eq!(window(100, 150).adapt(ms(2), min, max), Some(ms(32)));
        assert_eq!(window(100, 400).adapt(ms(32), min, max), None);
        // Between 1.25 and 1.5: kept.
        assert_eq!(window(100, 140).adapt(ms(32), min, max), None);
        assert_eq!(window(100, 140).adapt(ms(2), min, max), None);
        // Below 1.25, or too few batches to matter: the shortest, in one step.
        assert_eq!(window(100, 110).adapt(ms(32), min, max), Some(ms(2)));
        assert_eq!(
            window(ADAPT_MIN_BATCHES - 1, 200).adapt(ms(2), min, max),
            None
        );
        assert_eq!(window(1, 30).adapt(ms(32), min, max), Some(ms(2)));
        assert_eq!(window(0, 0).adapt(ms(2), min, max), None);
        // "Few" is counted at the shortest period: one busy connection makes 50 batches per
        // window at 2 ms and 3 at 32 ms, and keeps its long period.
        assert_eq!(window(50, 200).adapt(ms(2), min, max), Some(ms(32)));
        assert_eq!(window(3, 30).adapt(ms(32), min, max), None);
        // A period set between the ends (none is, but the rule holds) moves to one of them.
        assert_eq!(window(100, 400).adapt(ms(8), min, max), Some(ms(32)));
        assert_eq!(window(100, 100).adapt(ms(8), min, max), Some(ms(2)));
    }

    /// Takes everything queued on `peers`, as their sessions would.
    fn drain(peers: &[Peer]) {
        for peer in peers {
            while peer.try_pop().is_some() {}
        }
    }

    /// A flush tick adapting between `min` and `max`, its task, and `n` outboxes on it.
    fn running_tick(
        min: Duration,
        max: Duration,
        n: usize,
    ) -> (Arc<FlushTick>, tokio::task::JoinHandle<()>, Vec<Peer>) {
        let tick = FlushTick::new(min, max);
        let task = tokio::spawn(tick.clone().run());
        let peers = (0..n)
            .map(|_| Outbox::new(64, Some(tick.clone())))
            .collect();
        (tick, task, peers)
    }

    #[tokio::test(start_paused = true)]
    async fn the_tick_lengthens_while_connections_receive_faster_than_it() {
        let ms = Duration::from_millis;
        let (tick, task, peers) = running_tick(ms(2), ms(32), 64);
        let pump = |peers: &[Peer]| {
            // Each connection gets two frames soon after its last write: held for the tick.
            for peer in peers {
                peer.end_write();
                assert!(peer.send(frame(0)) && peer.send(frame(1)));
            }
        };
        let mut seen = Vec::new();
        for _ in 0..200 {
            pump(&peers);
            tokio::time::sleep(tick.period() + ms(1)).await;
            drain(&peers);
            if seen.last() != Some(&tick.period()) {
                seen.push(tick.period());
            }
        }
        assert_eq!(seen, vec![ms(2), ms(32)], "straight to the maximum");
        // Light traffic: a frame now and then; the period comes back down.
        for _ in 0..40 {
            peers[0].end_write();
            assert!(peers[0].send(frame(0)));
            tokio::time::sleep(ms(20)).await;
            drain(&peers);
        }
        assert_eq!(tick.period(), ms(2));
        task.abort();
        tick.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn frames_a_writing_session_took_do_not_count_as_batches() {
        let ms = Duration::from_millis;
        let (tick, task, peers) = running_tick(ms(2), ms(8), 64);
        for _ in 0..200 {
            for (i, peer) in peers.iter().enumerate() {
                peer.end_write();
                for n in 0..4 {
                    assert!(peer.send(frame(n)));
                }
                // Three in four were taken by their session's batch before the tick: the
                // tick finds them empty, and only the others say how well frames batch.
                if i % 4 != 0 {
                    while peer.try_pop().is_some() {}
                }
            }
            tokio::time::sleep(tick.period() + ms(1)).await;
            drain(&peers);
        }
        assert_eq!(tick.period(), ms(8));
        task.abort();
        tick.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_tick_hands_its_connections_back_to_their_sessions() {
        let ms = Duration::from_millis;
        let tick = FlushTick::new(ms(5), ms(5));
        let task = tokio::spawn(tick.clone().run());
        let outbox = Outbox::new(16, Some(tick.clone()));
        let counter = Arc::new(Counter::default());
        let waker = counter.clone().into();
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_take(&mut cx).is_pending());
        outbox.end_write();
        assert!(outbox.send(frame(0)));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "waiting for the tick");
        // The task dies (here: aborted, as when the chat is dropped): its guard stops the
        // tick, and the waiting connection is woken rather than left behind.
        task.abort();
        let _ = task.await;
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            outbox.poll_take(&mut cx),
            Poll::Ready(Some(Outgoing::Frame(frame(0))))
        );
        assert!(outbox.poll_take(&mut cx).is_pending());
        outbox.end_write();
        // Later frames within the period wake the session at once.
        assert!(outbox.send(frame(1)));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert!(tick.due().peers.is_empty());
    }

    #[test]
    fn a_drained_outbox_gives_back_what_a_burst_grew() {
        let outbox = Outbox::new(1_024, None);
        for i in 0..100 {
            assert!(outbox.send(frame(i)));
        }
        assert!(outbox.queue().frames.capacity() >= 100);
        while outbox.try_pop().is_some() {}
        assert_eq!(outbox.queue().frames.capacity(), 0);
        // A queue that stays small keeps its buffer: no allocation per frame.
        assert!(outbox.send(frame(0)));
        assert_eq!(outbox.try_pop(), Some(frame(0)));
        assert!(outbox.queue().frames.capacity() > 0);
    }
}
