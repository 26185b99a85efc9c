//! [`FlushTick`]: one timer per node for every connection whose writes are being coalesced.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use super::Outbox;
use crate::sync::lock;

/// The node's flush tick. An outbox that gets a frame less than a period after its last write
/// (or while being written) is handed over with [`FlushTick::schedule`] and its session is
/// not woken; [`FlushTick::run`] wakes every such session a period after the first of them was
/// handed over, and each writes what it has queued in one write: per batch, one wake-up and
/// no timer.
///
/// **The period adapts to the traffic**: it is `write_coalesce` or `write_coalesce_max`.
/// Every [`ADAPT_EVERY`] the tick looks at the batches it released: 1.5 frames or more on
/// average means connections receive frames faster than the period, so the longest period
/// buys proportionally fewer writes; below 1.25 frames, or with few batches, it goes back to
/// the shortest, as it does after a quiet spell. There are no steps in between, because
/// batches grow with the period; so at middling rates either end can be stable. The figures
/// behind this are in `docs/perf.md` ("Flush tick").
pub(crate) struct FlushTick {
    min: Duration,
    max: Duration,
    /// The current period in nanoseconds: read by every outbox that gets a frame, written a
    /// few times a second by the tick. On a cache line of its own, away from `due`, which the
    /// dispatcher locks for every batch.
    period_ns: CacheLine<AtomicU64>,
    due: Mutex<Due>,
    /// The tick's task, while it waits for the first outbox of the next batch.
    waker: AtomicWaker,
}

/// The outboxes waiting for the next tick.
#[derive(Default)]
pub(super) struct Due {
    pub(super) outboxes: Vec<Arc<Outbox>>,
    /// The tick's task is gone (the chat was dropped, or the task died): outboxes wake their
    /// sessions themselves instead of waiting for a tick that will not come.
    stopped: bool,
}

/// A value alone on its cache line (no false sharing with its neighbours).
#[repr(align(64))]
#[derive(Debug, Default)]
struct CacheLine<T>(T);

/// How often the tick adapts its period, and how long a quiet spell resets it.
pub(super) const ADAPT_EVERY: Duration = Duration::from_millis(100);

/// Fewer batches than this in a window (counted at the shortest period: twice as many at a
/// period twice as long count the same): coalescing is rare, the period shrinks.
pub(super) const ADAPT_MIN_BATCHES: usize = 32;

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

    pub(super) fn due(&self) -> MutexGuard<'_, Due> {
        lock(&self.due)
    }

    /// `outbox` waits for the next tick (called once per batch, by the outbox itself); it is
    /// given back if the tick has stopped.
    pub(super) fn schedule(&self, outbox: Arc<Outbox>) -> Result<(), Arc<Outbox>> {
        let first = {
            let mut due = self.due();
            if due.stopped {
                return Err(outbox);
            }
            due.outboxes.push(outbox);
            due.outboxes.len() == 1
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
            std::mem::swap(&mut batch, &mut self.due().outboxes);
            for outbox in batch.drain(..) {
                // A session that was writing when its frames came took them with its batch:
                // nothing left, no write, nothing learnt about batching.
                let frames = outbox.release();
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
        if !self.due().outboxes.is_empty() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.due().outboxes.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Stops the tick: every waiting outbox is released now, and later ones are refused (so
    /// they wake their sessions). Also breaks the cycle between this tick and the outboxes
    /// it holds. Idempotent.
    pub(crate) fn stop(&self) {
        let outboxes = {
            let mut due = self.due();
            due.stopped = true;
            std::mem::take(&mut due.outboxes)
        };
        for outbox in outboxes {
            outbox.release();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the tick released since `start`.
#[derive(Debug)]
pub(super) struct Window {
    pub(super) start: Instant,
    /// Connections woken (one write each).
    pub(super) batches: usize,
    /// Frames they had queued.
    pub(super) frames: usize,
}

impl Window {
    pub(super) fn new(start: Instant) -> Self {
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
    pub(super) fn adapt(&self, period: Duration, min: Duration, max: Duration) -> Option<Duration> {
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
