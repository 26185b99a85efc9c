//! [`FlushTick`]: one timer per node for every connection whose writes are being coalesced.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use super::{Outbox, INLINE_PER_ENVELOPE};
use crate::sync::lock;

/// The node's flush tick. An outbox that gets a frame less than a period after its last write
/// (or while being written) is handed over with [`FlushTick::schedule`] and its session is
/// not woken; [`FlushTick::run`] writes every such outbox's queue at most a period after the
/// first of them was handed over (inline, from the tick's task, in one write per connection;
/// a connection whose session is writing is woken instead): per batch, no wake-up and no
/// timer.
///
/// **The period follows the node's load, not the traffic's shape**: it is `write_coalesce`
/// while the node keeps up, and `write_coalesce_max` while it is behind: over the last
/// [`ADAPT_EVERY`], the events the dispatcher found waiting averaged [`BEHIND_MEAN`] or more,
/// or reached [`BEHIND_BURST`] at once. It goes back to the shortest once a window averages
/// under [`CALM_MEAN`] (with no burst of a quarter of that), or after a quiet spell. The
/// tick's own lateness is not a signal: on a shared host the OS delays a timer by a few
/// milliseconds now and then, whatever the node's own load. So a node with headroom adds at
/// most the shortest period to a frame, however dense its rooms, and batches harder only when
/// that buys back the CPU it is short of. The figures behind this are in `docs/perf.md`
/// ("Flush tick").
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
    /// The dispatcher's backlog since the tick last looked ([`FlushTick::note_backlog`]).
    backlog: CacheLine<Backlog>,
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

/// The dispatcher's backlog as it takes events: their number, the sum and the longest of the
/// backlogs it saw.
#[derive(Debug, Default)]
struct Backlog {
    events: AtomicU64,
    sum: AtomicU64,
    max: AtomicUsize,
}

/// Events waiting for the dispatcher, on average over a window, that mean the node is behind.
pub(crate) const BEHIND_MEAN: u64 = 8;

/// A backlog this long, even once, means the node is behind (about 25,000 deliveries of work
/// in a room of 25 local members).
pub(crate) const BEHIND_BURST: usize = 1_024;

/// The average backlog under which the node has caught up.
pub(crate) const CALM_MEAN: u64 = 2;

/// tokio's timers fire on whole milliseconds, rounding a deadline up: a sleep this much
/// shorter than the period ends within the period, never up to a millisecond past it.
const TIMER_GRAIN: Duration = Duration::from_micros(999);

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
            backlog: CacheLine(Backlog::default()),
        })
    }

    /// The dispatcher saw `events` waiting (called for each event it takes: two uncontended
    /// adds, a load, and a store only for the longest backlog of the window).
    pub(crate) fn note_backlog(&self, events: usize) {
        let backlog = &self.backlog.0;
        backlog.events.fetch_add(1, Ordering::Relaxed);
        backlog.sum.fetch_add(events as u64, Ordering::Relaxed);
        if events > backlog.max.load(Ordering::Relaxed) {
            backlog.max.store(events, Ordering::Relaxed);
        }
    }

    /// What the dispatcher saw since the last call: (events taken, sum of backlogs, longest).
    fn take_backlog(&self) -> (u64, u64, usize) {
        let backlog = &self.backlog.0;
        (
            backlog.events.swap(0, Ordering::Relaxed),
            backlog.sum.swap(0, Ordering::Relaxed),
            backlog.max.swap(0, Ordering::Relaxed),
        )
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
            let deadline = now + self.period();
            tokio::time::sleep_until(deadline - TIMER_GRAIN.min(self.period())).await;
            std::mem::swap(&mut batch, &mut self.due().outboxes);
            // As in `Hub::deliver`: in a big batch the first ones' sessions are woken to write
            // on the other cores, and only the last few are written here.
            let inline_from = batch.len().saturating_sub(INLINE_PER_ENVELOPE);
            for (i, outbox) in batch.drain(..).enumerate() {
                outbox.release(i >= inline_from);
            }
            let now = Instant::now();
            if now >= window.start + ADAPT_EVERY {
                (window.events, window.backlog_sum, window.backlog_max) = self.take_backlog();
                if let Some(period) = window.adapt(self.period(), self.min, self.max) {
                    tracing::debug!(
                        ?period,
                        events = window.events,
                        backlog_sum = window.backlog_sum,
                        backlog_max = window.backlog_max,
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
            outbox.release(false);
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the tick saw of the node's load since `start`.
#[derive(Debug)]
pub(super) struct Window {
    pub(super) start: Instant,
    /// Events the dispatcher took.
    pub(super) events: u64,
    /// The sum of the backlogs it found as it took them.
    pub(super) backlog_sum: u64,
    /// The longest backlog.
    pub(super) backlog_max: usize,
}

impl Window {
    pub(super) fn new(start: Instant) -> Self {
        Self {
            start,
            events: 0,
            backlog_sum: 0,
            backlog_max: 0,
        }
    }

    /// The next period, if it changes: the longest while the node is behind (an average
    /// backlog of [`BEHIND_MEAN`] events, or [`BEHIND_BURST`] at once), the shortest once it
    /// has caught up (an average under [`CALM_MEAN`] and no burst of a quarter of
    /// [`BEHIND_BURST`]), else unchanged.
    pub(super) fn adapt(&self, period: Duration, min: Duration, max: Duration) -> Option<Duration> {
        let mean_at_least = |n: u64| self.backlog_sum >= n * self.events.max(1);
        let next = if mean_at_least(BEHIND_MEAN) || self.backlog_max >= BEHIND_BURST {
            max
        } else if !mean_at_least(CALM_MEAN) && self.backlog_max < BEHIND_BURST / 4 {
            min
        } else {
            period
        };
        (next != period).then_some(next)
    }
}
