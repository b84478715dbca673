//! Byte-rate token buckets: one per direction of every session, one for the whole node.
//!
//! A bucket never refuses: it says how long the caller must wait before the bytes it just
//! took are paid for (tokens may go negative, i.e. into debt). The relay waits that long
//! before reading more from the sender, so an over-rate sender is slowed down rather than
//! buffered; a sender that stays over the rate for the flood grace period is a flood.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A token bucket over bytes.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// `rate` bytes per second sustained, `burst` bytes at most in advance (0 means no limit).
    pub fn new(rate: u64, burst: u64) -> Self {
        #[allow(clippy::cast_precision_loss)] // rates are far below 2^52
        let (rate, burst) = (rate as f64, burst.max(rate) as f64);
        Self {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes `bytes` at `now`; returns how long to wait before going on (zero when within
    /// the budget).
    pub fn take(&mut self, bytes: usize, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        #[allow(clippy::cast_precision_loss)]
        {
            self.tokens -= bytes as f64;
        }
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A bucket shared by every session of the node.
#[derive(Debug, Clone)]
pub struct SharedBucket(Arc<Mutex<TokenBucket>>);

impl SharedBucket {
    pub fn new(rate: u64) -> Self {
        Self(Arc::new(Mutex::new(TokenBucket::new(rate, rate))))
    }

    pub fn take(&self, bytes: usize, now: Instant) -> Duration {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(bytes, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_burst_there_is_no_wait_then_debt_costs_time() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 2000);
        assert_eq!(bucket.take(2000, start), Duration::ZERO);
        let wait = bucket.take(500, start);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // After the debt is repaid, the budget refills at the rate.
        let later = start + Duration::from_millis(1500);
        assert_eq!(bucket.take(1000, later), Duration::ZERO);
    }

    #[test]
    fn a_zero_rate_means_unlimited() {
        let mut bucket = TokenBucket::new(0, 0);
        assert_eq!(bucket.take(usize::MAX, Instant::now()), Duration::ZERO);
    }
}
