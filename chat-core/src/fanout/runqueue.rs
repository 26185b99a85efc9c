//! [`RunQueue`]: how long this process's threads waited for a core, the flush tick's sign that
//! the host's cores are short (so that fewer, larger writes pay) even while the dispatcher
//! keeps up.
//!
//! Linux keeps, per thread, the time it spent runnable but not running
//! (`/proc/self/task/<tid>/schedstat`, second field, in nanoseconds). Summed over the
//! process's threads and divided by the time between two samples, it is how many of them
//! waited for a core on average. A host with cores to spare reads near zero whatever the
//! traffic; two instances, Redis and a load generator sharing two cores at W1 10/s read 0.6 to
//! 0.75, and W1's rooms on spare cores (3 × 50) 0.24 (`docs/perf.md`, session 14). Elsewhere
//! (no `/proc`) there is no reading and the tick goes by the dispatcher's signs alone.

use std::time::Duration;

use tokio::time::Instant;

/// Readings closer together than this are not taken: a reading costs a directory listing
/// and a read per thread.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The process's threads' total time waiting for a core, and when it was read.
#[derive(Debug, Default)]
pub(super) struct RunQueue {
    last: Option<(Instant, u64)>,
    /// The last reading: threads waiting on average, in thousandths.
    waiting: u64,
}

impl RunQueue {
    /// How many of the process's threads waited for a core on average (in thousandths) over
    /// the time since the previous reading, read again if [`SAMPLE_EVERY`] has passed; 0 where
    /// it cannot be read.
    pub(super) fn waiting_permille(&mut self, now: Instant) -> u64 {
        if let Some((at, _)) = self.last {
            if now.saturating_duration_since(at) < SAMPLE_EVERY {
                return self.waiting;
            }
        }
        let Some(total) = total_wait_ns() else {
            return 0;
        };
        if let Some((at, before)) = self.last {
            let elapsed = now.saturating_duration_since(at).as_nanos().max(1);
            // A thread that ended took its time with it: the total may go down.
            let waited = u128::from(total.saturating_sub(before));
            self.waiting = u64::try_from(waited * 1_000 / elapsed).unwrap_or(u64::MAX);
        }
        self.last = Some((now, total));
        self.waiting
    }
}

/// The sum over this process's threads of their time waiting for a core, in nanoseconds.
#[cfg(target_os = "linux")]
fn total_wait_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let mut path = task.path();
        path.push("schedstat");
        // A thread that ended since the listing has no file: skipped.
        if let Ok(stat) = std::fs::read_to_string(path) {
            total = total.saturating_add(parse_wait(&stat).unwrap_or(0));
        }
    }
    Some(total)
}

#[cfg(not(target_os = "linux"))]
fn total_wait_ns() -> Option<u64> {
    None
}

/// The second field of a `schedstat` line: "<on cpu ns> <waiting ns> <timeslices>".
fn parse_wait(stat: &str) -> Option<u64> {
    stat.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_the_second_field() {
        assert_eq!(parse_wait("180512 70960 3\n"), Some(70_960));
        assert_eq!(parse_wait("180512"), None);
        assert_eq!(parse_wait("a b c"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reading_is_taken_at_most_every_sample_period() {
        let mut queue = RunQueue::default();
        let start = Instant::now();
        assert_eq!(
            queue.waiting_permille(start),
            0,
            "one reading is no rate yet"
        );
        assert!(queue.last.is_some(), "this process's threads were read");
        let first = queue.last.map(|(at, _)| at);
        queue.waiting_permille(start + SAMPLE_EVERY / 2);
        assert_eq!(
            queue.last.map(|(at, _)| at),
            first,
            "too soon: not read again"
        );
        queue.waiting_permille(start + SAMPLE_EVERY);
        assert_eq!(queue.last.map(|(at, _)| at), Some(start + SAMPLE_EVERY));
    }
}
