//! Group commit: concurrent submissions queue here, one blocking thread
//! drains up to `commit_batch` of them into one durable redb transaction and
//! answers each caller. One fsync then acknowledges many alerts (DESIGN §10:
//! ≈ 8 k single commits/s, far more in groups).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::records::AlertRecord;
use super::store::{Journal, JournalError};
use crate::alert::cap::MsgType;
use crate::metrics::Metrics;
use crate::reject::Rejection;
use crate::target::expand::Expansion;

/// An alert ready to be journaled.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub alert_id: String,
    pub receipt: String,
    pub authority: String,
    pub digest: String,
    pub envelope: Arc<[u8]>,
    pub accepted_at: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub msg_type: MsgType,
    pub status: String,
    /// Alert ids (`sender,identifier,sent`) this one updates or cancels.
    pub references: Vec<String>,
    pub targeted: BTreeMap<String, u64>,
    /// Widening schedule, when the event widens.
    pub expansion: Option<Expansion>,
}

/// What the journal made of one alert.
#[derive(Debug, Clone)]
pub enum CommitOutcome {
    /// Durable now.
    Accepted(AlertRecord),
    /// The same envelope was accepted before: here is its record.
    Duplicate(AlertRecord),
    /// Refused by a check that needs the journal.
    Rejected(Rejection),
}

/// Why a group failed, as each caller of the group gets it.
#[derive(Debug, Clone)]
struct GroupFailure {
    /// A storage fault (disk full, I/O): "store unavailable", try later.
    unavailable: bool,
    message: String,
}

type Request = (
    NewAlert,
    oneshot::Sender<Result<CommitOutcome, GroupFailure>>,
);

/// Handle to the group-commit thread.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Request>,
}

impl GroupCommitter {
    /// Start the commit thread over `journal`.
    pub fn start(journal: Arc<Journal>, max_batch: usize, metrics: Metrics) -> Self {
        let (tx, mut rx) = mpsc::channel::<Request>(max_batch * 4);
        std::thread::Builder::new()
            .name("tocsin-journal".into())
            .spawn(move || {
                let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let alerts: Vec<NewAlert> = batch.iter().map(|(a, _)| a.clone()).collect();
                    let t0 = Instant::now();
                    let result = journal.commit_alerts(&alerts);
                    metrics
                        .journal_commit_seconds
                        .observe(t0.elapsed().as_secs_f64());
                    match result {
                        Ok(outcomes) => {
                            for ((_, reply), o) in batch.drain(..).zip(outcomes) {
                                let _ = reply.send(Ok(o));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "journal commit failed");
                            let failure = GroupFailure {
                                unavailable: e.is_unavailable(),
                                message: e.to_string(),
                            };
                            for (_, reply) in batch.drain(..) {
                                let _ = reply.send(Err(failure.clone()));
                            }
                        }
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start journal thread"));
        Self { tx }
    }

    /// Journal one alert; resolves once it is durable (or refused). A
    /// storage fault is [`JournalError::Unavailable`].
    pub async fn commit(&self, alert: NewAlert) -> Result<CommitOutcome, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((alert, reply))
            .await
            .map_err(|_| JournalError::Corrupt("journal thread stopped".into()))?;
        rx.await
            .map_err(|_| JournalError::Corrupt("journal thread stopped".into()))?
            .map_err(|f| {
                if f.unavailable {
                    JournalError::Unavailable(f.message)
                } else {
                    JournalError::Corrupt(f.message)
                }
            })
    }
}
