//! The checkpoint thread: on request, it writes a frozen overlay layer (the
//! rows of every group logged since the last checkpoint) to redb in one
//! transaction with `Durability::Immediate`, together with the log position
//! it covers. Apart from the replay on open, it is redb's only writer of
//! alerts and cursors. It runs at nice +10 (a waking receipt thread preempts
//! it; under `SCHED_IDLE` it starved behind the fan-out) beside the journal's
//! writer, which meanwhile answers from the overlay's next layer, so no
//! receipt waits for redb unless the log is full.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::overlay::Overlay;
use super::store::{self, Db, JournalError};

/// One checkpoint: the rows to write and the log position they reach.
struct Job {
    id: u64,
    rows: Arc<Overlay>,
    lsn: u64,
    end: u64,
}

/// Handle to the thread; dropping it stops and joins the thread, so the
/// database is closed when the journal is.
pub(super) struct Checkpointer {
    requests: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<(u64, Result<Duration, JournalError>)>,
    thread: Option<JoinHandle<()>>,
    /// Id of the request sent last; results of earlier ones are stale.
    sent: u64,
    #[cfg(test)]
    pub knobs: Arc<Knobs>,
}

/// Test controls of the thread: a delay before each job, or a failure.
#[cfg(test)]
#[derive(Default)]
pub(super) struct Knobs {
    pub delay_ms: std::sync::atomic::AtomicU64,
    pub fail: std::sync::atomic::AtomicBool,
}

fn run(db: &Db, job: &Job) -> Result<Duration, JournalError> {
    let t0 = Instant::now();
    let guard = db.read();
    let db = guard
        .as_ref()
        .ok_or_else(|| JournalError::Unavailable("journal closed".into()))?;
    store::checkpoint_commit(db, &job.rows, job.lsn, job.end)?;
    Ok(t0.elapsed())
}

impl Checkpointer {
    pub fn start(db: Db) -> Result<Self, JournalError> {
        let (requests, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel();
        #[cfg(test)]
        let knobs = Arc::new(Knobs::default());
        #[cfg(test)]
        let k = knobs.clone();
        let thread = std::thread::Builder::new()
            .name("tocsin-checkpoint".into())
            .spawn(move || {
                crate::runtime::lower_priority(10, false);
                for job in rx {
                    #[cfg(test)]
                    {
                        use std::sync::atomic::Ordering::SeqCst;
                        std::thread::sleep(Duration::from_millis(k.delay_ms.load(SeqCst)));
                        if k.fail.load(SeqCst) {
                            let e = JournalError::Unavailable("test: checkpoint failed".into());
                            if tx.send((job.id, Err(e))).is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    if tx.send((job.id, run(&db, &job))).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            requests: Some(requests),
            done,
            thread: Some(thread),
            sent: 0,
            #[cfg(test)]
            knobs,
        })
    }

    /// Start one checkpoint: write `rows` and log position `lsn`/`end`
    /// durably. When the thread is gone, the rows come back.
    pub fn request(&mut self, rows: Arc<Overlay>, lsn: u64, end: u64) -> Result<(), Arc<Overlay>> {
        self.sent += 1;
        let job = Job {
            id: self.sent,
            rows,
            lsn,
            end,
        };
        match &self.requests {
            Some(r) => r.send(job).map_err(|e| e.0.rows),
            None => Err(job.rows),
        }
    }

    /// Stop the thread (tests: a dead checkpoint thread).
    #[cfg(test)]
    pub fn stop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// The result of the checkpoint requested last, if it is done.
    pub fn poll(&self) -> Option<Result<Duration, JournalError>> {
        loop {
            match self.done.try_recv() {
                Ok((id, r)) if id == self.sent => return Some(r),
                Ok(_) => continue,
                Err(mpsc::TryRecvError::Empty) => return None,
                Err(mpsc::TryRecvError::Disconnected) => return Some(Err(stopped())),
            }
        }
    }

    /// Wait for the result of the checkpoint requested last.
    pub fn wait(&self) -> Result<Duration, JournalError> {
        loop {
            match self.done.recv() {
                Ok((id, r)) if id == self.sent => return r,
                Ok(_) => continue,
                Err(_) => return Err(stopped()),
            }
        }
    }
}

/// The error for a checkpoint thread that is gone.
pub(super) fn stopped() -> JournalError {
    JournalError::Corrupt("checkpoint thread stopped".into())
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
