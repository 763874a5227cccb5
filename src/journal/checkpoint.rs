//! The checkpoint thread: on request, it writes a frozen overlay layer (the
//! rows of every group logged since the last checkpoint) to redb in one
//! transaction with `Durability::Immediate`, together with the log position
//! it covers. It is redb's only writer of alerts and cursors, runs at nice
//! +10 (a waking receipt thread preempts it; under `SCHED_IDLE` it starved
//! behind the fan-out) beside the journal's writer, which meanwhile answers
//! from the overlay's next layer, so no receipt waits for redb.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use redb::Database;

use super::overlay::Overlay;
use super::store::{self, JournalError};

type Db = Arc<RwLock<Option<Database>>>;

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
        let thread = std::thread::Builder::new()
            .name("tocsin-checkpoint".into())
            .spawn(move || {
                crate::runtime::lower_priority(10, false);
                for job in rx {
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
        })
    }

    /// Start one checkpoint: write `rows` and log position `lsn`/`end`
    /// durably. False when the thread is gone.
    pub fn request(&mut self, rows: Arc<Overlay>, lsn: u64, end: u64) -> bool {
        self.sent += 1;
        let job = Job {
            id: self.sent,
            rows,
            lsn,
            end,
        };
        self.requests.as_ref().is_some_and(|r| r.send(job).is_ok())
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

fn stopped() -> JournalError {
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
