//! A token bucket on tokio's clock (so tests can pause time) that may go into debt.

use std::time::Duration;

use tokio::time::Instant;

/// How fast a bucket refills and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// `per_second` sustained, `burst` at once (each at least 1).
    pub(crate) fn per_second(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
        }
    }

    /// `per_minute` a minute, all of them at once if the last minute had none (at least 1).
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        let n = f64::from(per_minute.max(1));
        Self {
            per_second: n / 60.0,
            burst: n,
        }
    }

    /// How long until a bucket holding `tokens` holds `want`.
    fn wait(&self, tokens: f64, want: f64) -> Duration {
        let seconds = (want - tokens).max(0.0) / self.per_second;
        // `from_secs_f64` panics on values it cannot hold; a rate of at least 1 a minute and
        // a debt of at most one burst keep this to hours at most, but clamp anyway.
        Duration::from_secs_f64(seconds.min(86_400.0))
    }
}

/// A token bucket: full at first, refilled at its [`Rate`] up to the burst.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
    }

    /// Takes `cost` tokens if the bucket holds them; else nothing is taken and the error is
    /// how long until it will (a cost above the burst costs the burst: it could never pass).
    pub(crate) fn take(&mut self, rate: Rate, cost: u32, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        let cost = f64::from(cost).min(rate.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(rate.wait(self.tokens, cost))
        }
    }

    /// Takes `cost` tokens whether or not the bucket holds them: what is missing is a debt
    /// that the refill pays first (at most one burst of it, so a debt ends within two bursts'
    /// worth of time). For costs known only after the work is done.
    pub(crate) fn charge(&mut self, rate: Rate, cost: u32, now: Instant) {
        self.refill(rate, now);
        self.tokens = (self.tokens - f64::from(cost)).max(-rate.burst);
    }

    /// How long until the bucket holds one token again (zero if it does).
    pub(crate) fn wait(&mut self, rate: Rate, now: Instant) -> Duration {
        self.refill(rate, now);
        rate.wait(self.tokens, 1.0)
    }

    /// Whether the bucket is full: then it is no different from a new one, and can go.
    pub(crate) fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= rate.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `result` is a refusal to wait `expected` (within a microsecond: float arithmetic).
    fn waits(result: Result<(), Duration>, expected: Duration) -> bool {
        result.is_err_and(|d| d.abs_diff(expected) < Duration::from_micros(1))
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate_and_how_long_to_wait() {
        let rate = Rate::per_second(10, 3);
        let mut bucket = Bucket::full(rate, Instant::now());
        for _ in 0..3 {
            assert!(bucket.take(rate, 1, Instant::now()).is_ok());
        }
        assert!(waits(bucket.take(rate, 1, Instant::now()), 100 * MS));
        tokio::time::advance(40 * MS).await;
        assert!(waits(bucket.take(rate, 1, Instant::now()), 60 * MS));
        tokio::time::advance(60 * MS).await;
        assert!(bucket.take(rate, 1, Instant::now()).is_ok());
        assert!(bucket.take(rate, 1, Instant::now()).is_err());
        // A long pause refills up to the burst, no more.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(bucket.is_full(rate, Instant::now()));
        assert!(bucket.take(rate, 3, Instant::now()).is_ok());
        assert!(bucket.take(rate, 1, Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_take_takes_nothing_and_a_cost_above_the_burst_costs_the_burst() {
        let rate = Rate::per_second(1, 5);
        let mut bucket = Bucket::full(rate, Instant::now());
        assert!(bucket.take(rate, 3, Instant::now()).is_ok());
        assert!(waits(
            bucket.take(rate, 3, Instant::now()),
            Duration::from_secs(1)
        ));
        assert!(bucket.take(rate, 2, Instant::now()).is_ok());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(bucket.take(rate, 1_000, Instant::now()).is_ok());
        assert!(!bucket.is_full(rate, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_charge_goes_into_debt_down_to_one_burst() {
        let rate = Rate::per_second(10, 20);
        let mut bucket = Bucket::full(rate, Instant::now());
        bucket.charge(rate, 25, Instant::now());
        // 20 - 25 = -5: 6 tokens to go before one is there.
        assert!(waits(Err(bucket.wait(rate, Instant::now())), 600 * MS));
        bucket.charge(rate, 1_000, Instant::now());
        // Floored at -20: 2.1 s until the next token, 4 s until full.
        assert!(waits(bucket.take(rate, 1, Instant::now()), 2_100 * MS));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(bucket.is_full(rate, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn per_minute_is_a_burst_of_that_many_then_one_each_share_of_the_minute() {
        let rate = Rate::per_minute(10);
        let mut bucket = Bucket::full(rate, Instant::now());
        for _ in 0..10 {
            assert!(bucket.take(rate, 1, Instant::now()).is_ok());
        }
        assert!(waits(
            bucket.take(rate, 1, Instant::now()),
            Duration::from_secs(6)
        ));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(bucket.take(rate, 1, Instant::now()).is_ok());
    }
}
