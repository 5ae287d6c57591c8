//! A token bucket: `per_second` tokens a second, holding at most twice that (the
//! burst). Used for browser requests, MQTT publishes per client and connects per
//! source address.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: u32) -> TokenBucket {
        let per_second = f64::from(per_second);
        TokenBucket {
            per_second,
            tokens: per_second * 2.0,
            refilled: Instant::now(),
        }
    }

    fn capacity(&self) -> f64 {
        self.per_second * 2.0
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity());
    }

    /// Takes one token if there is one.
    pub fn take(&mut self) -> bool {
        self.refill(Instant::now());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `count` tokens, going into debt; how long until the debt is paid.
    pub fn take_owing(&mut self, count: u32) -> Option<Duration> {
        self.refill(Instant::now());
        self.tokens -= f64::from(count);
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.per_second))
    }

    /// Full again at `now`: forgetting it changes nothing.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_then_refusals_or_debt() {
        let mut bucket = TokenBucket::new(5);
        assert_eq!((0..20).filter(|_| bucket.take()).count(), 10);
        assert!(!bucket.is_full(Instant::now()));
        let mut owing = TokenBucket::new(10);
        assert_eq!(owing.take_owing(20), None);
        let wait = owing.take_owing(5).unwrap();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(TokenBucket::new(1).is_full(Instant::now()));
    }
}
