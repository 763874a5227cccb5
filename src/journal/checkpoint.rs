//! The checkpoint thread: on request, one empty redb commit with
//! `Durability::Immediate`, which makes every earlier non-durable commit
//! durable (one flush and one fsync of the pages they wrote). It runs beside
//! the journal's writer, which meanwhile answers from the overlay, so no
//! receipt waits for redb's fsync.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use redb::{Database, Durability};

use super::store::JournalError;

type Db = Arc<RwLock<Option<Database>>>;

/// Handle to the thread; dropping it stops and joins the thread, so the
/// database is closed when the journal is.
pub(super) struct Checkpointer {
    requests: Option<mpsc::Sender<u64>>,
    done: mpsc::Receiver<(u64, Result<Duration, JournalError>)>,
    thread: Option<JoinHandle<()>>,
    /// Id of the request sent last; results of earlier ones are stale.
    sent: u64,
}

fn commit(db: &Db) -> Result<Duration, JournalError> {
    let t0 = Instant::now();
    let guard = db.read();
    let db = guard
        .as_ref()
        .ok_or_else(|| JournalError::Unavailable("journal closed".into()))?;
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    tx.commit()?;
    Ok(t0.elapsed())
}

impl Checkpointer {
    pub fn start(db: Db) -> Result<Self, JournalError> {
        let (requests, rx) = mpsc::channel::<u64>();
        let (tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tocsin-checkpoint".into())
            .spawn(move || {
                for id in rx {
                    if tx.send((id, commit(&db))).is_err() {
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

    /// Start one checkpoint. False when the thread is gone.
    pub fn request(&mut self) -> bool {
        self.sent += 1;
        let id = self.sent;
        self.requests.as_ref().is_some_and(|r| r.send(id).is_ok())
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
