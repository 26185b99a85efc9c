//! The per-connection flood guard: every frame a client sends (pings, leaves and bad frames
//! as well as what the per-user limits count) takes a token; with none left the session
//! stops reading the socket until one is back. Nothing is refused or dropped: TCP pushes
//! back on the client, and a flooding connection costs at most its rate in frames handled.

use tokio::time::Instant;

use crate::limits::bucket::{Bucket, Rate};

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug)]
pub(super) struct FloodGuard {
    rate: Rate,
    bucket: Bucket,
    last: Instant,
}

impl FloodGuard {
    pub(super) fn new(per_second: u32, burst: u32) -> Self {
        let rate = Rate::per_second(per_second, burst);
        Self {
            rate,
            bucket: Bucket::full(rate),
            last: Instant::now(),
        }
    }

    /// Counts a frame that arrived; `Some(until)` if the session must not read the next one
    /// before then.
    pub(super) fn count(&mut self) -> Option<Instant> {
        let now = Instant::now();
        self.bucket
            .refill(self.rate, now.saturating_duration_since(self.last));
        self.last = now;
        self.bucket.charge(self.rate, 1);
        let wait = self.bucket.wait(self.rate);
        (!wait.is_zero()).then(|| now + wait)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_guard_allows_a_burst_then_paces_at_the_rate() {
        let mut guard = FloodGuard::new(10, 3);
        assert_eq!(guard.count(), None);
        assert_eq!(guard.count(), None);
        let until = guard.count().unwrap();
        assert_eq!(until - Instant::now(), Duration::from_millis(100));
        tokio::time::sleep_until(until).await;
        // One token is back: one frame, then a pause again.
        let until = guard.count().unwrap();
        assert_eq!(until - Instant::now(), Duration::from_millis(100));
    }
}
