//! A token bucket that holds a rate exactly: tokens accrue continuously at
//! `rate` per second up to `burst`; taking more than are there tells how long
//! to wait. Used for per-channel provider quotas and per-authority limits.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A thread-safe token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `rate` tokens per second, at most `burst` saved up (starts full).
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Take `n` tokens if they are there now.
    pub fn try_take(&self, n: u32) -> bool {
        let mut s = self.state.lock();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        let tokens = (s.0 + elapsed * self.rate).min(self.burst);
        if tokens >= f64::from(n) {
            *s = (tokens - f64::from(n), now);
            true
        } else {
            false
        }
    }

    /// Take `n` tokens now (possibly going into debt) and return how long the
    /// caller must wait before using them. Debt keeps the long-run rate exact.
    pub fn take_or_wait(&self, n: u32) -> Duration {
        let mut s = self.state.lock();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        let tokens = (s.0 + elapsed * self.rate).min(self.burst);
        let want = f64::from(n);
        if tokens >= want {
            *s = (tokens - want, now);
            Duration::ZERO
        } else {
            *s = (tokens - want, now);
            Duration::from_secs_f64((want - tokens) / self.rate)
        }
    }

    /// Check without taking: true when `n` tokens could be taken now.
    pub fn would_allow(&self, n: u32) -> bool {
        let s = self.state.lock();
        let elapsed = Instant::now().saturating_duration_since(s.1).as_secs_f64();
        (s.0 + elapsed * self.rate).min(self.burst) >= f64::from(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse() {
        let b = TokenBucket::new(1.0, 3);
        assert!(b.try_take(1));
        assert!(b.try_take(1));
        assert!(b.try_take(1));
        assert!(!b.would_allow(1));
    }

    #[test]
    fn debt_gives_exact_wait() {
        let b = TokenBucket::new(100.0, 10);
        assert_eq!(b.take_or_wait(10), Duration::ZERO);
        let w = b.take_or_wait(50);
        // 50 tokens at 100/s, minus the microseconds elapsed
        assert!(
            w > Duration::from_millis(490) && w <= Duration::from_millis(500),
            "{w:?}"
        );
    }
}
