//! Read budget: the bytes of envelopes held by streams still being read,
//! over all connections, are bounded (`ingest.max_buffered_bytes`). Without
//! it, every connection could hold `max_concurrent_streams` streams of up to
//! `max_envelope_bytes` each for `read_timeout_ms`. A stream that finds the
//! budget spent waits for it (inside its read timeout) instead of growing
//! memory. What is held shows as `tocsin_ingest_buffered_bytes`.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget accounting unit.
const UNIT: usize = 1024;

/// The shared budget; clone freely.
#[derive(Clone)]
pub struct ReadBudget {
    units: Arc<Semaphore>,
    total: usize,
    gauge: Gauge,
}

/// Budget held by one envelope, given back on drop.
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
    budget: ReadBudget,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.permit.take();
        self.budget.publish();
    }
}

/// Why an envelope could not be read.
#[derive(Debug)]
pub enum ReadFailure {
    /// More than the limit arrived.
    TooLong,
    /// The stream failed (reset, connection lost).
    Stream(quinn::ReadError),
}

impl ReadBudget {
    /// A budget of `bytes` (at least one unit), reported in `gauge`.
    pub fn new(bytes: usize, gauge: Gauge) -> Self {
        let total = (bytes / UNIT).max(1);
        Self {
            units: Arc::new(Semaphore::new(total)),
            total,
            gauge,
        }
    }

    fn publish(&self) {
        let used = (self.total - self.units.available_permits()) * UNIT;
        self.gauge.set(i64::try_from(used).unwrap_or(i64::MAX));
    }

    /// Read a whole stream of at most `max` bytes, taking budget as its bytes
    /// arrive. The budget is held until the returned [`Held`] is dropped
    /// (once the pipeline is done with the bytes), or at once on a failure.
    pub async fn read(
        &self,
        recv: &mut quinn::RecvStream,
        max: usize,
    ) -> Result<(Vec<u8>, Held), ReadFailure> {
        let mut buf: Vec<u8> = Vec::new();
        let mut held = Held {
            permit: None,
            budget: self.clone(),
        };
        let mut units = 0usize;
        while let Some(chunk) = recv
            .read_chunk(max + 1 - buf.len(), true)
            .await
            .map_err(ReadFailure::Stream)?
        {
            let len = buf.len() + chunk.bytes.len();
            if len > max {
                return Err(ReadFailure::TooLong);
            }
            let need = len.div_ceil(UNIT);
            if need > units {
                let more = u32::try_from(need - units).map_err(|_| ReadFailure::TooLong)?;
                // The semaphore is never closed.
                let Ok(p) = self.units.clone().acquire_many_owned(more).await else {
                    return Err(ReadFailure::TooLong);
                };
                match &mut held.permit {
                    Some(h) => h.merge(p),
                    None => held.permit = Some(p),
                }
                units = need;
                self.publish();
            }
            buf.extend_from_slice(&chunk.bytes);
        }
        Ok((buf, held))
    }
}
