//! An in-process channel that accepts every delivery and counts, per
//! recipient, how often it was delivered. The demo uses it to stand in for
//! providers whose channels have not landed yet (and says so in its report),
//! the dispatch bench uses it as the no-op channel, and tests use it to prove
//! exactly-once delivery.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use async_trait::async_trait;

use super::{AlertContent, Channel, Outcome, Reach, Recipient};

/// Counts deliveries per recipient id.
pub struct SinkChannel {
    name: &'static str,
    reach: Reach,
    counts: Vec<AtomicU8>,
    total: AtomicU64,
}

impl SinkChannel {
    /// A sink for recipient ids below `capacity`.
    pub fn new(name: &'static str, reach: Reach, capacity: usize) -> Self {
        Self {
            name,
            reach,
            counts: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            total: AtomicU64::new(0),
        }
    }

    /// Deliveries accepted so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// (recipients delivered once, recipients delivered more than once).
    pub fn once_and_repeated(&self) -> (u64, u64) {
        let mut once = 0;
        let mut more = 0;
        for c in &self.counts {
            match c.load(Ordering::Relaxed) {
                0 => {}
                1 => once += 1,
                _ => more += 1,
            }
        }
        (once, more)
    }

    /// How often recipient `id` was delivered.
    pub fn count(&self, id: u32) -> u8 {
        self.counts
            .get(id as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl Channel for SinkChannel {
    fn name(&self) -> &'static str {
        self.name
    }

    fn reach(&self) -> Reach {
        self.reach
    }

    async fn deliver(
        &self,
        _alert: &AlertContent,
        recipients: &[Recipient<'_>],
        out: &mut Vec<Outcome>,
    ) {
        for r in recipients {
            if let Some(c) = self.counts.get(r.id as usize) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            out.push(Outcome::Delivered);
        }
        self.total
            .fetch_add(recipients.len() as u64, Ordering::Relaxed);
    }
}
