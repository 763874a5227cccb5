//! Retry timing: exponential backoff with full jitter, a peer's `Retry-After`
//! honoured as a floor, and never past the alert's expiry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// Backoff policy.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (1 = first retry), or None when the
    /// attempts are used up or the wait would end after `expires`.
    pub fn next_wait(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
        expires: Option<DateTime<Utc>>,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        // full jitter over [exp/2, exp]
        let lo = exp / 2;
        let jitter =
            rand::thread_rng().gen_range(0..=exp.as_millis().saturating_sub(lo.as_millis()) as u64);
        let mut wait = lo + Duration::from_millis(jitter);
        if let Some(ra) = retry_after {
            wait = wait.max(ra);
        }
        if let Some(e) = expires {
            let until = chrono::Duration::from_std(wait).ok()?;
            if now + until >= e {
                return None;
            }
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 5,
        };
        let now = Utc::now();
        let w1 = p.next_wait(1, None, now, None).unwrap();
        assert!(w1 >= Duration::from_millis(100) && w1 <= Duration::from_millis(200));
        let w4 = p.next_wait(4, None, now, None).unwrap();
        assert!(w4 <= Duration::from_secs(1));
        assert!(p.next_wait(5, None, now, None).is_none());
    }

    #[test]
    fn honours_retry_after_and_expiry() {
        let p = RetryPolicy {
            base: Duration::from_millis(10),
            max: Duration::from_secs(1),
            max_attempts: 5,
        };
        let now = Utc::now();
        let w = p
            .next_wait(1, Some(Duration::from_secs(3)), now, None)
            .unwrap();
        assert_eq!(w, Duration::from_secs(3));
        let soon = now + chrono::Duration::seconds(2);
        assert!(p
            .next_wait(1, Some(Duration::from_secs(3)), now, Some(soon))
            .is_none());
    }
}
