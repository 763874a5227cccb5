//! Live progress of every alert and job: atomic counters the workers bump
//! and the admin API, the demo's progress bars and tests read. No locks on
//! the delivery path (the job list is locked only when a stage starts or a
//! reader looks).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// Counters of one job (alert × channel).
#[derive(Debug)]
pub struct JobProgress {
    pub channel: &'static str,
    /// Stage of a widening alert (0: the alert as accepted).
    pub stage: u32,
    pub targeted: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub retried: AtomicU64,
    pub done: AtomicBool,
}

impl JobProgress {
    /// A job of `stage` with `targeted` planned deliveries.
    pub fn new(channel: &'static str, stage: u32, targeted: u64) -> Self {
        Self {
            channel,
            stage,
            targeted: AtomicU64::new(targeted),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }

    /// Deliveries with a final outcome.
    pub fn finished(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// Progress of one alert.
#[derive(Debug)]
pub struct AlertProgress {
    pub seq: u64,
    pub alert_id: String,
    pub receipt: String,
    pub started: Instant,
    pub first_delivery: OnceLock<Duration>,
    pub finished_after: OnceLock<Duration>,
    /// Jobs of every stage started so far.
    pub jobs: Mutex<Vec<Arc<JobProgress>>>,
    /// Stages of a widening alert still to come.
    pub stages_pending: AtomicBool,
}

/// JSON view of a job.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub channel: &'static str,
    pub stage: u32,
    pub targeted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub retried: u64,
    pub done: bool,
}

impl AlertProgress {
    /// Record a delivery time (only the first one sticks).
    pub fn mark_delivery(&self) {
        let _ = self.first_delivery.set(self.started.elapsed());
    }

    /// The jobs started so far (all stages).
    pub fn jobs(&self) -> Vec<Arc<JobProgress>> {
        self.jobs.lock().clone()
    }

    /// True when no stage is to come and every job is done.
    pub fn is_done(&self) -> bool {
        !self.stages_pending.load(Ordering::Acquire)
            && self
                .jobs
                .lock()
                .iter()
                .all(|j| j.done.load(Ordering::Acquire))
    }

    /// Snapshot for JSON.
    pub fn view(&self) -> Vec<JobView> {
        self.jobs
            .lock()
            .iter()
            .map(|j| JobView {
                channel: j.channel,
                stage: j.stage,
                targeted: j.targeted.load(Ordering::Relaxed),
                delivered: j.delivered.load(Ordering::Relaxed),
                failed: j.failed.load(Ordering::Relaxed),
                dropped: j.dropped.load(Ordering::Relaxed),
                retried: j.retried.load(Ordering::Relaxed),
                done: j.done.load(Ordering::Relaxed),
            })
            .collect()
    }
}
