//! Group commit: the journal's one writer. Concurrent submissions, job
//! cursors and final states queue here; one blocking thread drains up to
//! `commit_batch` alerts (and at most a quarter of the write-ahead log's
//! bytes) with everything queued beside them into one group, which
//! [`Journal::write`] applies to the overlay and logs with one `fdatasync`,
//! and answers each caller, with when the group's write began and ended
//! (the receipt's step metrics). One sync then acknowledges many alerts and
//! cursors, and no writer waits on another.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::records::{AlertRecord, AlertState, CursorRecord};
use serde::{Deserialize, Serialize};

use super::change::Change;
use super::store::{Journal, JournalError};
use crate::alert::cap::MsgType;
use crate::metrics::Metrics;
use crate::reject::Rejection;
use crate::target::expand::Expansion;

/// An alert ready to be journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewAlert {
    pub alert_id: String,
    pub receipt: String,
    pub authority: String,
    pub digest: String,
    /// Kept out of the log record's JSON: stored raw beside it (`change.rs`).
    #[serde(skip)]
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

impl From<GroupFailure> for JournalError {
    fn from(f: GroupFailure) -> Self {
        if f.unavailable {
            JournalError::Unavailable(f.message)
        } else {
            JournalError::Corrupt(f.message)
        }
    }
}

/// When the group that carried a change was written: its write
/// ([`Journal::write`]) began and ended. Every caller of the group gets
/// them, failed or not.
#[derive(Debug, Clone, Copy)]
pub struct GroupTimes {
    pub began: Instant,
    pub ended: Instant,
}

type Reply = oneshot::Sender<(Result<Option<CommitOutcome>, GroupFailure>, GroupTimes)>;

/// Handle to the journal's one writer thread. Every journal write of the
/// daemon goes through it (new alerts, job cursors, final states), so they
/// never wait on each other for redb's write lock and share fsyncs.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<(Change, Reply)>,
}

impl GroupCommitter {
    /// Start the writer thread over `journal`; one transaction takes up to
    /// `max_batch` alerts and any cursors and final states queued with them.
    pub fn start(journal: Arc<Journal>, max_batch: usize, metrics: Metrics) -> Self {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel::<(Change, Reply)>(max_batch * 4);
        let writer = Writer {
            max_bytes: journal.max_group_bytes(),
            journal,
            metrics,
            max_batch,
            bytes: 0,
            changes: Vec::with_capacity(max_batch * 4),
            replies: Vec::with_capacity(max_batch * 4),
            alerts: 0,
            durable: false,
        };
        std::thread::Builder::new()
            .name("tocsin-journal".into())
            .spawn(move || {
                crate::runtime::short_slice();
                // A runtime of the thread's own, for the timed wait in `run`.
                match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt.block_on(writer.run(rx)),
                    Err(e) => tracing::error!(error = %e, "cannot start journal thread"),
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start journal thread"));
        Self { tx }
    }

    /// Queue one change and wait for its group; with the group's times
    /// unless the writer thread is gone.
    async fn write(
        &self,
        change: Change,
    ) -> (
        Result<Option<CommitOutcome>, JournalError>,
        Option<GroupTimes>,
    ) {
        let stopped = || JournalError::Corrupt("journal thread stopped".into());
        let (reply, rx) = oneshot::channel();
        if self.tx.send((change, reply)).await.is_err() {
            return (Err(stopped()), None);
        }
        match rx.await {
            Ok((result, times)) => (result.map_err(JournalError::from), Some(times)),
            Err(_) => (Err(stopped()), None),
        }
    }

    /// Journal one alert; resolves once it is durable (or refused). A
    /// storage fault is [`JournalError::Unavailable`].
    pub async fn commit(&self, alert: NewAlert) -> Result<CommitOutcome, JournalError> {
        self.commit_timed(alert).await.0
    }

    /// [`commit`](Self::commit), with when its group was written (for the
    /// receipt's step metrics), failed or not.
    pub async fn commit_timed(
        &self,
        alert: NewAlert,
    ) -> (Result<CommitOutcome, JournalError>, Option<GroupTimes>) {
        let (result, times) = self.write(Change::Alert(Box::new(alert))).await;
        let outcome = result
            .and_then(|o| o.ok_or_else(|| JournalError::Corrupt("no outcome for an alert".into())));
        (outcome, times)
    }

    /// Set an alert's final state with its last cursors (see
    /// [`Journal::finish`]); resolves once written, before it is durable.
    pub async fn finish(
        &self,
        seq: u64,
        state: AlertState,
        cursors: Vec<(String, CursorRecord)>,
    ) -> Result<(), JournalError> {
        self.write(Change::Finish {
            seq,
            state,
            cursors,
        })
        .await
        .0
        .map(drop)
    }

    /// Commit job cursors `(alert seq, journal name, cursor)`; resolves once
    /// they are durable.
    pub async fn save_cursors(
        &self,
        rows: Vec<(u64, String, CursorRecord)>,
    ) -> Result<(), JournalError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(Change::Cursors(rows)).await.0.map(drop)
    }
}

/// Final states wait at most this long for a durable change to ride with:
/// they need no fsync of their own, but alone each would still cost the
/// writer a group ahead of the next alert.
const FINISH_LINGER: Duration = Duration::from_millis(20);

/// The writer thread's state: the changes of the transaction being gathered.
struct Writer {
    journal: Arc<Journal>,
    metrics: Metrics,
    max_batch: usize,
    /// Envelope bytes one group may carry (a quarter of the log).
    max_bytes: usize,
    changes: Vec<Change>,
    replies: Vec<Reply>,
    /// Alerts among `changes`.
    alerts: usize,
    /// Envelope bytes among `changes`.
    bytes: usize,
    /// Whether any of `changes` must be durable when answered.
    durable: bool,
}

impl Writer {
    /// Until every handle is gone: take what is queued (up to `max_batch`
    /// alerts), write it as one group, answer. Final states alone wait
    /// up to [`FINISH_LINGER`] for a durable change to ride with.
    async fn run(mut self, mut rx: mpsc::Receiver<(Change, Reply)>) {
        let mut linger_until: Option<tokio::time::Instant> = None;
        loop {
            let next = match linger_until {
                None => rx.recv().await,
                Some(t) => match tokio::time::timeout_at(t, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.flush();
                        linger_until = None;
                        continue;
                    }
                },
            };
            let Some(first) = next else {
                self.flush();
                return;
            };
            self.push(first);
            while self.alerts < self.max_batch
                && self.changes.len() < self.max_batch * 4
                && self.bytes < self.max_bytes
            {
                match rx.try_recv() {
                    Ok(c) => self.push(c),
                    Err(_) => break,
                }
            }
            if self.durable
                || self.changes.len() >= self.max_batch * 4
                || self.bytes >= self.max_bytes
            {
                self.flush();
                linger_until = None;
            } else if linger_until.is_none() {
                linger_until = Some(tokio::time::Instant::now() + FINISH_LINGER);
            }
        }
    }

    fn push(&mut self, (change, reply): (Change, Reply)) {
        self.alerts += usize::from(matches!(change, Change::Alert(_)));
        self.bytes += change.envelope_len();
        self.durable |= change.needs_fsync();
        self.changes.push(change);
        self.replies.push(reply);
    }

    /// Write what was gathered as one group and answer every caller.
    fn flush(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        let began = Instant::now();
        let result = self.journal.write(&self.changes);
        let times = GroupTimes {
            began,
            ended: Instant::now(),
        };
        // Answer first: the callers' receipts wait for nothing below.
        let had_alerts = self.alerts > 0;
        self.changes.clear();
        self.alerts = 0;
        self.bytes = 0;
        self.durable = false;
        match result {
            Ok(outcomes) => {
                for (reply, o) in self.replies.drain(..).zip(outcomes) {
                    let _ = reply.send((Ok(o), times));
                }
            }
            Err(e) => {
                let failure = GroupFailure {
                    unavailable: e.is_unavailable(),
                    message: e.to_string(),
                };
                for reply in self.replies.drain(..) {
                    let _ = reply.send((Err(failure.clone()), times));
                }
                tracing::error!(error = %e, "journal commit failed");
            }
        }
        if had_alerts {
            self.metrics
                .journal_commit_seconds
                .observe(times.ended.duration_since(began).as_secs_f64());
        }
        for t in self.journal.checkpoint_times() {
            self.metrics
                .journal_checkpoint_seconds
                .observe(t.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::journal::fixtures::{cursor, seq};

    fn alert(n: u64, digest: u64) -> NewAlert {
        crate::journal::fixtures::alert(n, digest, 512)
    }

    /// Alerts, cursors and final states from many callers at once all land,
    /// each alert with its own sequence number, duplicates recognised; a
    /// final state for an unknown alert fails nobody.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_writer_takes_every_kind_of_change() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let w = GroupCommitter::start(journal.clone(), 8, Metrics::new());
        let mut tasks = Vec::new();
        for n in 0..64u64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                let o = w.commit(alert(n, n)).await.unwrap();
                let s = seq(&o);
                w.save_cursors(vec![(s, "feed".into(), cursor(n, false))])
                    .await
                    .unwrap();
                w.finish(999_999, AlertState::Completed, Vec::new())
                    .await
                    .unwrap();
                w.finish(
                    s,
                    AlertState::Completed,
                    vec![("feed".into(), cursor(n, true))],
                )
                .await
                .unwrap();
                (n, s)
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        let mut distinct: Vec<u64> = seqs.iter().map(|(_, s)| *s).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct, (1..=64).collect::<Vec<_>>());
        for &(n, s) in &seqs {
            let rec = journal.alert(s).unwrap().unwrap();
            assert_eq!(rec.state, AlertState::Completed);
            assert_eq!(rec.receipt, format!("r-{n}"));
            let c = &journal.cursors(s).unwrap()["feed"];
            assert!(c.done && c.delivered == n, "{c:?}");
        }
        // The same envelope again is a duplicate; other bytes under the same
        // id are refused; neither takes a sequence number.
        let (n, s) = seqs[5];
        assert!(
            matches!(w.commit(alert(n, n)).await.unwrap(), CommitOutcome::Duplicate(r) if r.seq == s)
        );
        assert!(matches!(
            w.commit(alert(n, n + 1000)).await.unwrap(),
            CommitOutcome::Rejected(_)
        ));
        assert_eq!(seq(&w.commit(alert(100, 100)).await.unwrap()), 65);
        // A stale flush after the final state leaves the cursor finished.
        w.save_cursors(vec![(s, "feed".into(), cursor(1, false))])
            .await
            .unwrap();
        assert!(journal.cursors(s).unwrap()["feed"].done);
    }

    /// A final state alone is written within the linger, without a durable
    /// write to carry it.
    #[tokio::test]
    async fn a_final_state_alone_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let w = GroupCommitter::start(journal.clone(), 8, Metrics::new());
        let s = seq(&w.commit(alert(1, 1)).await.unwrap());
        let t0 = Instant::now();
        w.finish(s, AlertState::Expired, Vec::new()).await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert_eq!(
            journal.alert(s).unwrap().unwrap().state,
            AlertState::Expired
        );
    }
}
