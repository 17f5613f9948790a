//! A token bucket, pure: time comes in as an argument.

use std::time::{Duration, Instant};

/// Holds up to `capacity` tokens, refilled at `rate` per second; a take that finds too
/// few is refused with how long until it would succeed.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `rate` per second.
    pub fn new(capacity: f64, rate: f64, now: Instant) -> Self {
        Self {
            capacity: capacity.max(0.0),
            rate: rate.max(0.0),
            tokens: capacity.max(0.0),
            last: now,
        }
    }

    /// Changes size and rate (a config change), keeping the tokens it holds (at most
    /// the new capacity).
    pub fn resize(&mut self, capacity: f64, rate: f64, now: Instant) {
        self.refill(now);
        self.capacity = capacity.max(0.0);
        self.rate = rate.max(0.0);
        self.tokens = self.tokens.min(self.capacity);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = self.last.max(now);
    }

    /// Takes `n` tokens, or says how long until `n` would be there. A request larger
    /// than the whole bucket is let through once the bucket is full, leaving it in
    /// debt, so nothing is refused forever.
    pub fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let needed = n.min(self.capacity);
        if self.tokens >= needed {
            self.tokens -= n;
            return Ok(());
        }
        if self.rate <= 0.0 {
            return Err(Duration::MAX);
        }
        let wait = (needed - self.tokens) / self.rate;
        Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
    }

    /// Puts back `n` tokens taken but not used (at most up to the capacity).
    pub fn give_back(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + n).min(self.capacity);
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_burst_is_served_then_refused_with_the_time_to_the_next_token() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(4.0, 2.0, t0);
        for _ in 0..4 {
            bucket.take(1.0, t0).expect("within the burst");
        }
        let wait = bucket.take(1.0, t0).expect_err("bucket empty");
        assert_eq!(
            wait,
            Duration::from_millis(500),
            "2 per second: one in 500 ms"
        );
        assert_eq!(
            bucket.take(1.0, at(t0, 250)).expect_err("half a token"),
            Duration::from_millis(250)
        );
        bucket.take(1.0, at(t0, 500)).expect("refilled");
    }

    #[test]
    fn the_bucket_never_holds_more_than_its_capacity() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3.0, 100.0, t0);
        assert_eq!(bucket.available(at(t0, 60_000)), 3.0);
        bucket.give_back(10.0, at(t0, 60_000));
        assert_eq!(bucket.available(at(t0, 60_000)), 3.0);
    }

    #[test]
    fn an_oversized_take_waits_for_a_full_bucket_then_leaves_debt() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 10.0, t0);
        bucket.take(50.0, t0).expect("half");
        let wait = bucket.take(500.0, t0).expect_err("needs a full bucket");
        assert_eq!(wait, Duration::from_secs(5));
        bucket
            .take(500.0, at(t0, 5_000))
            .expect("full bucket: let through");
        let wait = bucket.take(1.0, at(t0, 5_000)).expect_err("in debt");
        assert_eq!(wait, Duration::from_millis(40_100));
    }

    #[test]
    fn settling_gives_back_what_was_reserved_but_not_used() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000.0, 1.0, t0);
        bucket.take(900.0, t0).expect("reserve");
        bucket.give_back(850.0, t0);
        assert_eq!(bucket.available(t0), 950.0);
    }

    #[test]
    fn a_zero_rate_bucket_refuses_once_empty() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1.0, 0.0, t0);
        bucket.take(1.0, t0).expect("one");
        assert_eq!(bucket.take(1.0, at(t0, 1_000)), Err(Duration::MAX));
    }

    #[test]
    fn resizing_keeps_what_the_bucket_holds() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 1.0, t0);
        bucket.take(8.0, t0).expect("take");
        bucket.resize(100.0, 50.0, t0);
        assert_eq!(bucket.available(t0), 2.0);
        bucket.resize(1.0, 1.0, t0);
        assert_eq!(bucket.available(t0), 1.0);
    }
}
