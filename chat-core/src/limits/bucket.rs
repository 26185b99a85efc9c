//! A token bucket that may go into debt, refilled by the time its owner says has passed.
//!
//! A bucket is only its tokens (an `f32`: 4 bytes): its owner keeps the time it was last
//! refilled, so that the four buckets of a user's entry in [`super::UserLimits`] share one
//! stamp. The arithmetic is done in `f64` and rounded to the nearest `f32` once per refill;
//! an `f32` holds every whole count of tokens up to 2^24 exactly.

use std::time::Duration;

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

    /// One token every `interval` (at least a microsecond), `burst` at once (at least 1).
    pub(crate) fn every(interval: Duration, burst: u32) -> Self {
        Self {
            per_second: 1.0 / interval.max(Duration::from_micros(1)).as_secs_f64(),
            burst: f64::from(burst.max(1)),
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
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: f32,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(rate: Rate) -> Self {
        Self {
            tokens: rate.burst as f32,
        }
    }

    fn tokens(self) -> f64 {
        f64::from(self.tokens)
    }

    fn set(&mut self, tokens: f64) {
        // Within [-burst, burst], and a burst is a u32: no overflow to infinity.
        self.tokens = tokens as f32;
    }

    /// Whole tokens in the bucket (none while in debt).
    pub(crate) fn left(self) -> u32 {
        self.tokens().max(0.0).floor() as u32
    }

    /// Adds what `elapsed` at the rate is worth, up to the burst.
    pub(crate) fn refill(&mut self, rate: Rate, elapsed: Duration) {
        if elapsed.is_zero() {
            return;
        }
        let tokens = self.tokens() + elapsed.as_secs_f64() * rate.per_second;
        self.set(tokens.min(rate.burst));
    }

    /// Takes `cost` tokens if the bucket holds them; else nothing is taken and the error is
    /// how long until it will (a cost above the burst costs the burst: it could never pass).
    pub(crate) fn take(&mut self, rate: Rate, cost: u32) -> Result<(), Duration> {
        let cost = f64::from(cost).min(rate.burst);
        if self.tokens() >= cost {
            self.set(self.tokens() - cost);
            Ok(())
        } else {
            Err(rate.wait(self.tokens(), cost))
        }
    }

    /// Takes `cost` tokens whether or not the bucket holds them: what is missing is a debt
    /// that the refill pays first (at most one burst of it, so a debt ends within two bursts'
    /// worth of time). For costs known only after the work is done.
    pub(crate) fn charge(&mut self, rate: Rate, cost: u32) {
        self.set((self.tokens() - f64::from(cost)).max(-rate.burst));
    }

    /// How long until the bucket holds one token again (zero if it does).
    pub(crate) fn wait(self, rate: Rate) -> Duration {
        rate.wait(self.tokens(), 1.0)
    }

    /// Whether the bucket is full: then it is no different from a new one.
    pub(crate) fn is_full(self, rate: Rate) -> bool {
        self.tokens() >= rate.burst
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A bucket with the stamp its owner would keep, refilled before each use.
    struct Clocked {
        rate: Rate,
        bucket: Bucket,
        last: Instant,
    }

    impl Clocked {
        fn new(rate: Rate) -> Self {
            Self {
                rate,
                bucket: Bucket::full(rate),
                last: Instant::now(),
            }
        }

        fn now(&mut self) -> &mut Bucket {
            let now = Instant::now();
            self.bucket.refill(self.rate, now - self.last);
            self.last = now;
            &mut self.bucket
        }

        fn take(&mut self, cost: u32) -> Result<(), Duration> {
            let rate = self.rate;
            self.now().take(rate, cost)
        }

        fn charge(&mut self, cost: u32) {
            let rate = self.rate;
            self.now().charge(rate, cost);
        }

        fn wait(&mut self) -> Duration {
            let rate = self.rate;
            self.now().wait(rate)
        }

        fn is_full(&mut self) -> bool {
            let rate = self.rate;
            self.now().is_full(rate)
        }
    }

    /// `result` is a refusal to wait `expected` (within a microsecond: float arithmetic).
    fn waits(result: Result<(), Duration>, expected: Duration) -> bool {
        result.is_err_and(|d| d.abs_diff(expected) < Duration::from_micros(1))
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate_and_how_long_to_wait() {
        let mut bucket = Clocked::new(Rate::per_second(10, 3));
        for _ in 0..3 {
            assert!(bucket.take(1).is_ok());
        }
        assert!(waits(bucket.take(1), 100 * MS));
        tokio::time::advance(40 * MS).await;
        assert!(waits(bucket.take(1), 60 * MS));
        tokio::time::advance(60 * MS).await;
        assert!(bucket.take(1).is_ok());
        assert!(bucket.take(1).is_err());
        // A long pause refills up to the burst, no more.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(bucket.is_full());
        assert!(bucket.take(3).is_ok());
        assert!(bucket.take(1).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_take_takes_nothing_and_a_cost_above_the_burst_costs_the_burst() {
        let mut bucket = Clocked::new(Rate::per_second(1, 5));
        assert!(bucket.take(3).is_ok());
        assert!(waits(bucket.take(3), Duration::from_secs(1)));
        assert!(bucket.take(2).is_ok());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(bucket.take(1_000).is_ok());
        assert!(!bucket.is_full());
    }

    #[tokio::test(start_paused = true)]
    async fn a_charge_goes_into_debt_down_to_one_burst() {
        let mut bucket = Clocked::new(Rate::per_second(10, 20));
        bucket.charge(25);
        // 20 - 25 = -5: 6 tokens to go before one is there.
        assert!(waits(Err(bucket.wait()), 600 * MS));
        bucket.charge(1_000);
        // Floored at -20: 2.1 s until the next token, 4 s until full.
        assert!(waits(bucket.take(1), 2_100 * MS));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(bucket.is_full());
    }

    #[tokio::test(start_paused = true)]
    async fn per_minute_is_a_burst_of_that_many_then_one_each_share_of_the_minute() {
        let mut bucket = Clocked::new(Rate::per_minute(10));
        for _ in 0..10 {
            assert!(bucket.take(1).is_ok());
        }
        assert!(waits(bucket.take(1), Duration::from_secs(6)));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(bucket.take(1).is_ok());
    }

    #[test]
    fn a_bucket_is_four_bytes() {
        assert_eq!(std::mem::size_of::<Bucket>(), 4);
    }
}
