//! Log lines for failures that come by the thousand: a mass disconnect while Redis is slow
//! fails one presence exit and one unsubscribe per connection, each retried until it lands.
//! One line per failure was 20,000–28,000 lines per instance when 100,000 connections closed
//! at once on 6 instances (docs/perf.md, session 9); [`Throttled`] lets one through per
//! interval and counts the rest into it.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        OnceLock,
    },
    time::Instant,
};

/// Presence exits that failed (`connection::leave`); the retry task reports what it held back
/// when its queue is empty again.
pub(crate) static EXIT_FAILURES: Throttled = Throttled::new();
/// Unsubscribes that failed (`fanout::subscriptions`); likewise.
pub(crate) static UNSUBSCRIBE_FAILURES: Throttled = Throttled::new();

/// Milliseconds on the monotonic clock since the first call (a wall clock stepped back would
/// hold lines back for as long).
fn monotonic_ms() -> i64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// At most one log line per interval for one kind of failure; the others are counted.
#[derive(Debug)]
pub(crate) struct Throttled {
    /// When the last line was let through (Unix ms; `i64::MIN`: never).
    last_ms: AtomicI64,
    /// Failures not logged since then.
    held_back: AtomicU64,
}

impl Throttled {
    /// One line per second at most.
    pub(crate) const EVERY_MS: i64 = 1_000;

    pub(crate) const fn new() -> Self {
        Self {
            last_ms: AtomicI64::new(i64::MIN),
            held_back: AtomicU64::new(0),
        }
    }

    /// Whether this failure gets its line, with how many were held back since the last one
    /// (`Some(n)`); `None`: counted, not logged.
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(monotonic_ms())
    }

    /// How many were held back since the last line, now counted as reported (for a summary
    /// line when the failures are over).
    pub(crate) fn take_held_back(&self) -> u64 {
        self.held_back.swap(0, Ordering::Relaxed)
    }

    fn admit_at(&self, now_ms: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == i64::MIN || now_ms.saturating_sub(last) >= Self::EVERY_MS;
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Throttled;

    #[test]
    fn one_line_per_interval_and_the_rest_counted_into_the_next() {
        let failures = Throttled::new();
        assert_eq!(failures.admit_at(10_000), Some(0));
        for ms in 10_001..10_500 {
            assert_eq!(failures.admit_at(ms), None);
        }
        assert_eq!(failures.admit_at(10_999), None);
        // 500 held back, the next line says so.
        assert_eq!(failures.admit_at(11_000), Some(500));
        assert_eq!(failures.admit_at(11_001), None);
        assert_eq!(failures.admit_at(13_000), Some(1));
        assert_eq!(failures.admit_at(13_001), None);
        assert_eq!(failures.take_held_back(), 1);
        assert_eq!(failures.take_held_back(), 0);
    }
}
