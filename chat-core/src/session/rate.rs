//! The per-connection rate limit on client frames.

use tokio::time::Instant;

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug)]
pub(super) struct RateLimiter {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl RateLimiter {
    pub(super) fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            burst,
            per_second: f64::from(per_second.max(1)),
            last: Instant::now(),
        }
    }

    pub(super) fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_burst_then_rate() {
        let mut limiter = RateLimiter::new(10, 3);
        assert!(limiter.allow() && limiter.allow() && limiter.allow());
        assert!(!limiter.allow());
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        assert!(limiter.allow());
        assert!(!limiter.allow());
    }
}
