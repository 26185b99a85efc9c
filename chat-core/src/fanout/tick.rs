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

use super::{runqueue::RunQueue, Outbox, INLINE_PER_ENVELOPE};
use crate::sync::lock;

/// The node's flush tick. An outbox that gets a frame less than a period after its last write
/// (or while being written) is handed over with [`FlushTick::schedule`] and its session is
/// not woken; [`FlushTick::run`] writes every such outbox's queue at most a period after the
/// first of them was handed over (inline, from the tick's task, in one write per connection;
/// a connection whose session is writing is woken instead): per batch, no wake-up and no
/// timer.
///
/// **The period follows the node's load, not the traffic's shape**: it is `write_coalesce`
/// while the node keeps up, and `write_coalesce_max` while it is behind: the events the
/// dispatcher found waiting average [`BEHIND_MEAN`] or more, or the frames it dispatches are
/// already [`BEHIND_AGE_MS`] old on average (from their publish time: the host's cores are
/// busy, so frames queue before the dispatcher ever sees a backlog), or the process's threads
/// wait for a core ([`BEHIND_WAITING`]: the host's cores are short, even if this node keeps
/// up, and fewer, larger writes leave more of them for everyone). The first two are moving
/// averages over the dispatcher's last eight or so events, the third a reading over the last
/// 100 ms or so (`runqueue`), looked at as each batch starts. It goes back to the shortest
/// once all three are under their calm marks ([`CALM_MEAN`], [`CALM_AGE8`], [`CALM_WAITING`]),
/// or after a quiet spell. So a burst is met at once and not remembered once drained, and a node
/// with headroom adds at most the shortest period to a frame, however dense its rooms. The
/// tick's own lateness is no signal: tokio's timer wakes up to a millisecond late on an idle
/// runtime. The figures behind this are in `docs/perf.md` (session 8).
///
/// The wait ends inside the period: tokio's timers fire on whole milliseconds and round a
/// deadline up, so the tick sleeps [`TIMER_GRAIN`] less than the period.
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
    /// Eight times the moving average of the dispatcher's backlog ([`FlushTick::note_backlog`]).
    backlog8: CacheLine<AtomicU64>,
    /// Eight times the moving average of the dispatched frames' age in milliseconds
    /// ([`FlushTick::note_age`]).
    age8: CacheLine<AtomicU64>,
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

/// A pause this long with nothing to write resets the backlog's average.
const QUIET: Duration = Duration::from_millis(100);

/// Events waiting for the dispatcher, on average, that mean the node is behind.
pub(crate) const BEHIND_MEAN: u64 = 8;

/// The average backlog under which the node has caught up.
pub(crate) const CALM_MEAN: u64 = 2;

/// Frames this old on average when dispatched (milliseconds since their publish time) mean
/// the node is behind. A node with spare cores dispatches a frame well under a millisecond
/// after its publish; clocks of instances on different hosts that disagree by more than this
/// make a node batch harder than it needs to (more latency, never a loss).
///
/// Four, not two: on a host whose cores are merely busy (W1 at 10/s on two cores), frames are
/// 2–3 ms old when dispatched, and batching at `write_coalesce_max` then bought nothing (one
/// frame every 2 ms per connection, written alone either way) for five more milliseconds of
/// p99: 276k–283k deliveries per CPU-s at p99 9.5–9.8 ms with 2, 271k–274k at 4.0–4.4 ms with
/// 4, interleaved; the same at 20 and 40/s per client, where the backlog says "behind" on its
/// own (`docs/perf.md`, session 9).
pub(crate) const BEHIND_AGE_MS: u64 = 4;

/// The average age under which the node has caught up, in eighths of a millisecond (1 ms).
pub(crate) const CALM_AGE8: u64 = 8;

/// Threads of this process waiting for a core, on average, in thousandths (`runqueue`), that
/// mean the host is short of cores. W1 at 10/s with two instances, Redis and the load generator
/// on two cores reads 600–750 (and batching at `write_coalesce_max` then does 12–30% more
/// deliveries per CPU-second at no worse p99); its rooms on spare cores (3 × 50) read about 240,
/// and one room of 50 about 65 (`docs/perf.md`, session 14).
pub(crate) const BEHIND_WAITING: u64 = 500;

/// The average number of waiting threads (thousandths) under which the host has cores again.
pub(crate) const CALM_WAITING: u64 = 250;

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
            backlog8: CacheLine(AtomicU64::new(0)),
            age8: CacheLine(AtomicU64::new(0)),
        })
    }

    /// The dispatcher saw `events` waiting (called for each event it takes: a load and a
    /// store of the moving average, `avg += (events - avg) / 8`).
    pub(crate) fn note_backlog(&self, events: usize) {
        let backlog8 = &self.backlog8.0;
        let old = backlog8.load(Ordering::Relaxed);
        backlog8.store(old - old / 8 + events as u64, Ordering::Relaxed);
    }

    /// The moving average of the dispatcher's backlog.
    fn backlog(&self) -> u64 {
        self.backlog8.0.load(Ordering::Relaxed) / 8
    }

    /// The dispatcher delivered a frame published `ms` milliseconds ago (per envelope with a
    /// `ts`; the same reading as the latency metric's).
    pub(crate) fn note_age(&self, ms: u64) {
        let age8 = &self.age8.0;
        let old = age8.load(Ordering::Relaxed);
        age8.store(old - old / 8 + ms.min(10_000), Ordering::Relaxed);
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
        let mut runqueue = RunQueue::default();
        loop {
            let waiting = Instant::now();
            std::future::poll_fn(|cx| self.poll_due(cx)).await;
            let now = Instant::now();
            if now >= waiting + QUIET {
                // A quiet spell: nothing is behind any more.
                self.backlog8.0.store(0, Ordering::Relaxed);
                self.age8.0.store(0, Ordering::Relaxed);
            }
            let load = Load {
                backlog: self.backlog(),
                age8: self.age8.0.load(Ordering::Relaxed),
                waiting: if self.max > self.min {
                    runqueue.waiting_permille(now)
                } else {
                    0
                },
            };
            if let Some(period) = next_period(self.period(), load, self.min, self.max) {
                tracing::debug!(
                    ?period,
                    backlog = load.backlog,
                    age_ms = load.age8 as f64 / 8.0,
                    waiting = load.waiting as f64 / 1_000.0,
                    "flush tick period"
                );
                self.set_period(period);
            }
            let deadline = now + self.period();
            tokio::time::sleep_until(deadline - TIMER_GRAIN.min(self.period())).await;
            std::mem::swap(&mut batch, &mut self.due().outboxes);
            // As in `Hub::deliver`: in a big batch the first ones' sessions are woken to write
            // on the other cores, and only the last few are written here; unless the process's
            // threads already wait for a core, when there are no other cores to write on and
            // a wake-up and a poll per connection would only add to the wait.
            let inline_from = if load.waiting >= BEHIND_WAITING {
                0
            } else {
                batch.len().saturating_sub(INLINE_PER_ENVELOPE)
            };
            for (i, outbox) in batch.drain(..).enumerate() {
                outbox.release(i >= inline_from);
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

/// What the tick reads of the node's load as a batch starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Load {
    /// The dispatcher's average backlog (events).
    pub(super) backlog: u64,
    /// Its frames' average age, in eighths of a millisecond.
    pub(super) age8: u64,
    /// The process's threads waiting for a core on average, in thousandths.
    pub(super) waiting: u64,
}

/// The period for the next batch, if it changes: the longest while the dispatcher's average
/// backlog is [`BEHIND_MEAN`] events or more, or its frames' average age is
/// [`BEHIND_AGE_MS`] or more, or the process's threads waiting for a core are
/// [`BEHIND_WAITING`] or more; the shortest once all three are under their calm marks, else
/// unchanged (no flapping at the edge).
pub(super) fn next_period(
    period: Duration,
    load: Load,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let next = if load.backlog >= BEHIND_MEAN
        || load.age8 >= BEHIND_AGE_MS * 8
        || load.waiting >= BEHIND_WAITING
    {
        max
    } else if load.backlog < CALM_MEAN && load.age8 < CALM_AGE8 && load.waiting < CALM_WAITING {
        min
    } else {
        period
    };
    (next != period).then_some(next)
}
