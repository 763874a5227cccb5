//! The redb-backed store: tables, transactions and typed accessors. Every
//! write that acknowledges something to the outside commits with
//! `Durability::Immediate`; nothing here is async (callers use a blocking
//! thread or `spawn_blocking`).
//!
//! Storage faults (a full disk, `EFBIG`, a read-only or vanished file) are
//! [`JournalError::Unavailable`]. After one, redb refuses every later
//! operation (`PreviousIo`) until the database is closed and opened again, so
//! the journal drops its handle and reopens the file (redb repairs it from
//! the last durable commit) on the next call: when space returns, the next
//! submission commits without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::commit::{CommitOutcome, NewAlert};
use super::records::{AlertRecord, AlertState, CursorRecord, SubscriberRecord};
use crate::alert::cap::MsgType;
use crate::reject::{RejectCode, Rejection};

const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
const ENVELOPES: TableDefinition<u64, &[u8]> = TableDefinition::new("envelopes");
const ALERT_IDS: TableDefinition<&str, u64> = TableDefinition::new("alert_ids");
const CURSORS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("cursors");
const SUBSCRIBERS: TableDefinition<u32, &[u8]> = TableDefinition::new("subscribers");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Journal failures. Any of them means "not accepted".
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("journal: {0}")]
    Store(#[from] redb::Error),
    #[error("journal: corrupt record: {0}")]
    Corrupt(String),
    #[error("journal: {0}")]
    Io(#[from] std::io::Error),
    /// The storage failed (disk full, file too large, read-only, I/O error);
    /// the journal reopens itself on a later call.
    #[error("journal: store unavailable: {0}")]
    Unavailable(String),
}

impl JournalError {
    /// True for storage faults (nothing wrong with the data, the disk said
    /// no): the caller may try again later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Io(_) => true,
            Self::Open { source, .. } => matches!(source, redb::DatabaseError::Storage(_)),
            Self::Store(e) => matches!(
                e,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            ),
            Self::Corrupt(_) => false,
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for JournalError {
            fn from(e: $t) -> Self {
                Self::Store(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// After a storage fault, at most one reopen attempt per this interval (a
/// reopen reads the whole file to repair it).
const REOPEN_EVERY: Duration = Duration::from_millis(50);

/// The journal: a handle to one redb file, reopened after a storage fault.
pub struct Journal {
    path: PathBuf,
    /// `None` after a storage fault until a reopen succeeds. Every accessor
    /// holds the read lock for its whole transaction, so a reopen (write
    /// lock) never races an open transaction.
    db: RwLock<Option<Database>>,
    /// When the last reopen was tried.
    last_reopen: Mutex<Option<Instant>>,
}

fn corrupt(e: impl std::fmt::Display) -> JournalError {
    JournalError::Corrupt(e.to_string())
}

impl Journal {
    /// Open (or create) `dir/tocsin.redb`.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("tocsin.redb");
        let db = Database::create(&path).map_err(|source| JournalError::Open {
            path: path.clone(),
            source,
        })?;
        let tx = db.begin_write()?;
        {
            tx.open_table(ALERTS)?;
            tx.open_table(ENVELOPES)?;
            tx.open_table(ALERT_IDS)?;
            tx.open_table(CURSORS)?;
            tx.open_table(SUBSCRIBERS)?;
            tx.open_table(META)?;
        }
        tx.commit()?;
        Ok(Self {
            path,
            db: RwLock::new(Some(db)),
            last_reopen: Mutex::new(None),
        })
    }

    /// Run `f` on the open database. A storage fault closes the handle; the
    /// next call reopens the file (at most every [`REOPEN_EVERY`]).
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        if self.db.read().is_none() {
            self.reopen()?;
        }
        let result = {
            let guard = self.db.read();
            match guard.as_ref() {
                Some(db) => f(db),
                None => Err(JournalError::Unavailable("journal closed".into())),
            }
        };
        match result {
            Err(e) if e.is_unavailable() => {
                let mut w = self.db.write();
                if w.take().is_some() {
                    tracing::error!(error = %e, "journal storage failed; reopening on the next call");
                }
                Err(JournalError::Unavailable(e.to_string()))
            }
            r => r,
        }
    }

    /// Open the file again after a storage fault (redb repairs it from the
    /// last durable commit).
    fn reopen(&self) -> Result<(), JournalError> {
        let mut w = self.db.write();
        if w.is_some() {
            return Ok(());
        }
        {
            let mut last = self.last_reopen.lock();
            if last.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                return Err(JournalError::Unavailable(
                    "journal closed after a storage fault".into(),
                ));
            }
            *last = Some(Instant::now());
        }
        match Database::create(&self.path) {
            Ok(db) => {
                tracing::warn!("journal reopened after a storage fault");
                *w = Some(db);
                Ok(())
            }
            Err(e) => Err(JournalError::Unavailable(format!("reopen: {e}"))),
        }
    }

    /// Commit a group of new alerts in one durable transaction. Each gets an
    /// outcome; rejected ones (identifier reused, unknown reference) change
    /// nothing. A transaction error fails the whole group.
    pub fn commit_alerts(&self, batch: &[NewAlert]) -> Result<Vec<CommitOutcome>, JournalError> {
        let writes: Vec<Change> = batch
            .iter()
            .map(|a| Change::Alert(Box::new(a.clone())))
            .collect();
        Ok(self.write(&writes)?.into_iter().flatten().collect())
    }

    /// Apply a group of writes, in order, in one transaction: durable
    /// (`Durability::Immediate`) when any of them is an alert or cursors,
    /// otherwise riding the next durable commit. Each alert gets its
    /// outcome (the other writes `None`). A transaction error fails the
    /// whole group. The group-commit thread writes this way: one writer,
    /// one fsync for everything queued.
    pub fn write(&self, writes: &[Change]) -> Result<Vec<Option<CommitOutcome>>, JournalError> {
        self.with_db(|db| {
            let mut tx = db.begin_write()?;
            let durable = writes.iter().any(Change::needs_fsync);
            tx.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            let mut outcomes = Vec::with_capacity(writes.len());
            {
                let mut t = Tables {
                    alerts: tx.open_table(ALERTS)?,
                    envs: tx.open_table(ENVELOPES)?,
                    ids: tx.open_table(ALERT_IDS)?,
                    meta: tx.open_table(META)?,
                    cursors: tx.open_table(CURSORS)?,
                };
                let mut next = t.meta.get("next_alert")?.map(|v| v.value()).unwrap_or(1);
                let first = next;
                for w in writes {
                    outcomes.push(match w {
                        Change::Alert(a) => Some(t.put_alert(a, &mut next)?),
                        Change::Finish {
                            seq,
                            state,
                            cursors,
                        } => {
                            t.put_finish(*seq, *state, cursors)?;
                            None
                        }
                        Change::Cursors(rows) => {
                            for (seq, name, c) in rows {
                                t.put_cursor(*seq, name, c)?;
                            }
                            None
                        }
                    });
                }
                if next != first {
                    t.meta.insert("next_alert", next)?;
                }
            }
            tx.commit()?;
            Ok(outcomes)
        })
    }

    /// One alert record.
    pub fn alert(&self, seq: u64) -> Result<Option<AlertRecord>, JournalError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ALERTS)?;
            let v = t.get(seq)?;
            v.map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
                .transpose()
        })
    }

    /// The sequence number of an alert id (`sender,identifier,sent`).
    pub fn seq_of(&self, alert_id: &str) -> Result<Option<u64>, JournalError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ALERT_IDS)?;
            let v = t.get(alert_id)?;
            Ok(v.map(|v| v.value()))
        })
    }

    /// The envelope of an alert, as received.
    pub fn envelope(&self, seq: u64) -> Result<Option<Vec<u8>>, JournalError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ENVELOPES)?;
            let v = t.get(seq)?;
            Ok(v.map(|v| v.value().to_vec()))
        })
    }

    /// Every alert record, newest first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, JournalError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ALERTS)?;
            let mut out = Vec::new();
            for item in t.iter()?.rev().take(limit) {
                let (_, v) = item?;
                out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
    }

    /// Number of alerts journaled.
    pub fn alert_count(&self) -> Result<u64, JournalError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ALERTS)?;
            Ok(t.len()?)
        })
    }

    /// Set an alert's state. Not fsynced on its own: it becomes durable with
    /// the next durable commit (the next alert or cursor flush). Losing it in
    /// a crash is harmless: the alert resumes, finds its cursors done, and
    /// sets the state again. One fsync per alert here would halve ingest.
    pub fn set_state(&self, seq: u64, state: AlertState) -> Result<(), JournalError> {
        self.finish(seq, state, &[])
    }

    /// Set an alert's final state together with the job cursors not yet
    /// committed (same transaction, not fsynced on its own). redb makes
    /// commits durable in order, so no later durable commit can persist the
    /// state without these cursors: a finished alert never reads "completed"
    /// beside a cursor that is not done.
    pub fn finish(
        &self,
        seq: u64,
        state: AlertState,
        cursors: &[(String, CursorRecord)],
    ) -> Result<(), JournalError> {
        self.write(&[Change::Finish {
            seq,
            state,
            cursors: cursors.to_vec(),
        }])
        .map(drop)
    }

    /// Every job cursor of an alert, by channel name.
    pub fn cursors(&self, seq: u64) -> Result<BTreeMap<String, CursorRecord>, JournalError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(CURSORS)?;
            let mut out = BTreeMap::new();
            for item in t.range((seq, "")..(seq + 1, ""))? {
                let (k, v) = item?;
                let (_, ch) = k.value();
                out.insert(
                    ch.to_string(),
                    serde_json::from_slice(v.value()).map_err(corrupt)?,
                );
            }
            Ok(out)
        })
    }

    /// Start an all-or-nothing import: nothing is visible until `commit`,
    /// and dropping the import leaves the journal as it was.
    pub fn begin_import(&self) -> Result<SubscriberImport, JournalError> {
        self.with_db(|db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            let next = {
                let meta = tx.open_table(META)?;
                let v = meta.get("next_subscriber")?.map(|v| v.value()).unwrap_or(0);
                v
            };
            let next = u32::try_from(next).map_err(|_| corrupt("subscriber ids exhausted"))?;
            Ok(SubscriberImport {
                tx,
                next,
                buf: Vec::with_capacity(128),
            })
        })
    }

    /// Remove one subscriber (a token or number the provider rejected).
    pub fn remove_subscriber(&self, id: u32) -> Result<(), JournalError> {
        self.with_db(|db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            {
                let mut t = tx.open_table(SUBSCRIBERS)?;
                t.remove(id)?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Visit every stored subscriber in id order.
    pub fn for_each_subscriber(
        &self,
        mut f: impl FnMut(u32, SubscriberRecord),
    ) -> Result<u64, JournalError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(SUBSCRIBERS)?;
            let mut n = 0;
            for item in t.iter()? {
                let (k, v) = item?;
                let rec = SubscriberRecord::decode(v.value())
                    .ok_or_else(|| corrupt(format!("subscriber {}", k.value())))?;
                f(k.value(), rec);
                n += 1;
            }
            Ok(n)
        })
    }

    /// Number of stored subscribers.
    pub fn subscriber_count(&self) -> Result<u64, JournalError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(SUBSCRIBERS)?;
            Ok(t.len()?)
        })
    }
}

/// An import in progress (one write transaction).
pub struct SubscriberImport {
    tx: redb::WriteTransaction,
    next: u32,
    buf: Vec<u8>,
}

impl SubscriberImport {
    /// Stage one subscriber; returns its id.
    pub fn add(&mut self, s: &SubscriberRecord) -> Result<u32, JournalError> {
        let id = self.next;
        s.encode(&mut self.buf);
        self.tx
            .open_table(SUBSCRIBERS)?
            .insert(id, self.buf.as_slice())?;
        self.next = id
            .checked_add(1)
            .ok_or_else(|| corrupt("subscriber ids exhausted"))?;
        Ok(id)
    }

    /// Make the whole import durable at once.
    pub fn commit(self) -> Result<(), JournalError> {
        {
            let mut meta = self.tx.open_table(META)?;
            meta.insert("next_subscriber", u64::from(self.next))?;
        }
        self.tx.commit()?;
        Ok(())
    }
}

/// One change for [`Journal::write`].
#[derive(Debug, Clone)]
pub enum Change {
    /// A new alert: durable before its receipt.
    Alert(Box<NewAlert>),
    /// An alert's final state with the cursors its jobs left uncommitted
    /// (not fsynced on its own; see [`Journal::finish`]). The state is kept
    /// when the alert is no longer live.
    Finish {
        seq: u64,
        state: AlertState,
        cursors: Vec<(String, CursorRecord)>,
    },
    /// Job cursors `(alert seq, journal name, cursor)`: durable.
    Cursors(Vec<(u64, String, CursorRecord)>),
}

impl Change {
    pub(super) fn needs_fsync(&self) -> bool {
        !matches!(self, Self::Finish { .. })
    }
}

/// The tables one write transaction touches.
struct Tables<'t> {
    alerts: redb::Table<'t, u64, &'static [u8]>,
    envs: redb::Table<'t, u64, &'static [u8]>,
    ids: redb::Table<'t, &'static str, u64>,
    meta: redb::Table<'t, &'static str, u64>,
    cursors: redb::Table<'t, (u64, &'static str), &'static [u8]>,
}

impl Tables<'_> {
    /// Journal one new alert as `next` (advanced when accepted), or refuse
    /// it (identifier reused, unknown reference) changing nothing.
    fn put_alert(&mut self, a: &NewAlert, next: &mut u64) -> Result<CommitOutcome, JournalError> {
        if let Some(seq) = self.ids.get(a.alert_id.as_str())?.map(|v| v.value()) {
            let rec = read_alert(&self.alerts, seq)?;
            return Ok(if rec.digest == a.digest {
                CommitOutcome::Duplicate(rec)
            } else {
                CommitOutcome::Rejected(Rejection::new(
                    RejectCode::IdentifierReused,
                    "this alert id was accepted before with different content",
                ))
            });
        }
        let mut referenced = Vec::with_capacity(a.references.len());
        for r in &a.references {
            let Some(s) = self.ids.get(r.as_str())?.map(|v| v.value()) else {
                return Ok(CommitOutcome::Rejected(Rejection::new(
                    RejectCode::ReferenceUnknown,
                    "a referenced alert was never accepted here",
                )));
            };
            let old = read_alert(&self.alerts, s)?;
            // Only the authority that issued an alert may update or cancel
            // it (the CAP sender in a reference proves nothing).
            if old.authority != a.authority {
                return Ok(CommitOutcome::Rejected(Rejection::new(
                    RejectCode::ReferenceForeign,
                    "a referenced alert was issued by another authority",
                )));
            }
            referenced.push(old);
        }
        let seq = *next;
        *next += 1;
        let new_state = match a.msg_type {
            MsgType::Cancel => AlertState::Cancelled,
            _ => AlertState::Superseded,
        };
        let refs: Vec<u64> = referenced.iter().map(|r| r.seq).collect();
        for mut old in referenced {
            if old.state.is_live() || old.state == AlertState::Completed {
                old.state = new_state;
                old.replaced_by = Some(seq);
                let bytes = serde_json::to_vec(&old).map_err(corrupt)?;
                self.alerts.insert(old.seq, bytes.as_slice())?;
            }
        }
        let rec = AlertRecord {
            seq,
            receipt: a.receipt.clone(),
            alert_id: a.alert_id.clone(),
            authority: a.authority.clone(),
            digest: a.digest.clone(),
            state: AlertState::Active,
            accepted_at: a.accepted_at,
            expires: a.expires,
            msg_type: format!("{:?}", a.msg_type),
            status: a.status.clone(),
            references: refs,
            replaced_by: None,
            targeted: a.targeted.clone(),
            expansion: a.expansion.clone(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(corrupt)?;
        self.alerts.insert(seq, bytes.as_slice())?;
        self.envs.insert(seq, &*a.envelope)?;
        self.ids.insert(a.alert_id.as_str(), seq)?;
        Ok(CommitOutcome::Accepted(rec))
    }

    /// Set a live alert's final state and write its last cursors.
    fn put_finish(
        &mut self,
        seq: u64,
        state: AlertState,
        cursors: &[(String, CursorRecord)],
    ) -> Result<(), JournalError> {
        if self.alerts.get(seq)?.is_none() {
            // Cannot happen (jobs start after their alert is durable); if it
            // did, it must not fail the alerts sharing this transaction.
            tracing::warn!(seq, "final state for an alert not in the journal; ignored");
            return Ok(());
        }
        let mut rec = read_alert(&self.alerts, seq)?;
        if rec.state.is_live() {
            rec.state = state;
            let bytes = serde_json::to_vec(&rec).map_err(corrupt)?;
            self.alerts.insert(seq, bytes.as_slice())?;
        }
        for (name, c) in cursors {
            self.put_cursor(seq, name, c)?;
        }
        Ok(())
    }

    /// Write a job cursor. A finished cursor is final: a flush that read the
    /// board before the job's last batch may reach the writer after the
    /// alert's final state, and must not turn it back to unfinished.
    fn put_cursor(&mut self, seq: u64, name: &str, c: &CursorRecord) -> Result<(), JournalError> {
        if !c.done {
            if let Some(old) = self.cursors.get((seq, name))? {
                let old: CursorRecord = serde_json::from_slice(old.value()).map_err(corrupt)?;
                if old.done {
                    return Ok(());
                }
            }
        }
        let bytes = serde_json::to_vec(c).map_err(corrupt)?;
        self.cursors.insert((seq, name), bytes.as_slice())?;
        Ok(())
    }
}

fn read_alert(
    t: &impl ReadableTable<u64, &'static [u8]>,
    seq: u64,
) -> Result<AlertRecord, JournalError> {
    let v = t
        .get(seq)?
        .ok_or_else(|| corrupt(format!("alert {seq} missing")))?;
    serde_json::from_slice(v.value()).map_err(corrupt)
}
