//! The redb-backed store: tables, transactions and typed accessors, with
//! the write-ahead log in front (`wal.rs`) and the overlay beside it
//! (`overlay.rs`). A receipt waits for the log's `fdatasync` only; redb
//! takes the groups in batches at checkpoints, off the receipt path. Nothing
//! here is async (callers use a blocking thread or `spawn_blocking`).
//!
//! Storage faults (a full disk, `EFBIG`, a read-only or vanished file) are
//! [`JournalError::Unavailable`]. A fault in the log leaves redb as it was.
//! After a fault in redb, it refuses every later operation (`PreviousIo`)
//! until the database is closed and opened again, so the journal drops its
//! handle and reopens the file on the next call (redb repairs it from its
//! last durable commit, the log replays the rest): when space returns, the
//! next submission commits without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::change::{self, Change};
use super::checkpoint::Checkpointer;
use super::commit::{CommitOutcome, NewAlert};
use super::overlay::{Layers, Overlay, View};
use super::records::{AlertRecord, AlertState, CursorRecord, SubscriberRecord};
use super::rules::{self, Rows, RowsMut};
use super::wal::Wal;

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

/// A checkpoint starts at least this often while anything is written, and
/// whenever a quarter of the log is in use.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The log's size with the default envelope limit.
const DEFAULT_LOG_BYTES: u64 = 8 << 20;

/// The log's size for envelopes of up to `max_envelope` bytes: a group is at
/// most a quarter of it (see [`Journal::max_group_bytes`]) plus one alert.
fn log_bytes_for(max_envelope: usize) -> u64 {
    DEFAULT_LOG_BYTES.max(8 * max_envelope as u64)
}

const NEXT_ALERT: &str = "next_alert";
const LOG_EPOCH: &str = "log_epoch";
/// Lsn of the last logged group redb holds.
const LOG_LSN: &str = "log_lsn";
/// Where in the log the group after [`LOG_LSN`] starts.
const LOG_END: &str = "log_end";

/// The database handle, `None` after a storage fault until reopened.
pub(super) type Db = Arc<RwLock<Option<Database>>>;

/// The journal: a redb file and its write-ahead log (`wal.rs`).
///
/// Every write goes through [`Journal::write`]: the group's rules are applied
/// to the overlay over a read snapshot of redb (`overlay.rs`), and the group
/// is appended to the log, which is `fdatasync`ed when the group holds
/// anything that must be durable. Readers look in the overlay first. A
/// checkpoint thread (`checkpoint.rs`) writes the overlay's rows to redb in
/// one durable transaction now and then, which frees the log behind them. On
/// open, and on the reopen after a storage fault, the log's groups after
/// redb's last checkpoint are replayed.
pub struct Journal {
    path: PathBuf,
    /// The writer's state; taken before `db` when both are needed.
    log: Mutex<Log>,
    overlay: RwLock<Layers>,
    /// `None` after a storage fault until a reopen succeeds. Every accessor
    /// holds the read lock for its whole transaction, so a reopen (write
    /// lock) never races an open transaction.
    db: Db,
    /// When the last reopen was tried.
    last_reopen: Mutex<Option<Instant>>,
    log_bytes: u64,
}

/// The writer's side of the journal.
struct Log {
    wal: Wal,
    checkpointer: Checkpointer,
    /// A checkpoint is running, covering the log up to this offset.
    window: Option<u64>,
    last_checkpoint: Instant,
    /// How long finished checkpoints took, until collected.
    took: Vec<Duration>,
    buf: Vec<u8>,
}

fn corrupt(e: impl std::fmt::Display) -> JournalError {
    JournalError::Corrupt(e.to_string())
}

impl Journal {
    /// Open (or create) `dir/tocsin.redb` and its log `dir/tocsin.wal` at the
    /// default size.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        Self::open_with(dir, DEFAULT_LOG_BYTES)
    }

    /// Open (or create) the journal in `dir` with a log sized for envelopes
    /// of up to `max_envelope` bytes (`ingest.max_envelope_bytes`).
    pub fn open_for(dir: &Path, max_envelope: usize) -> Result<Self, JournalError> {
        Self::open_with(dir, log_bytes_for(max_envelope))
    }

    /// Open (or create) the journal in `dir` with a log of `log_bytes`
    /// (an existing log of another size is replaced once replayed).
    pub fn open_with(dir: &Path, log_bytes: u64) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("tocsin.redb");
        let db = Database::create(&path).map_err(|source| JournalError::Open {
            path: path.clone(),
            source,
        })?;
        let tx = db.begin_write()?;
        let epoch = {
            tx.open_table(ALERTS)?;
            tx.open_table(ENVELOPES)?;
            tx.open_table(ALERT_IDS)?;
            tx.open_table(CURSORS)?;
            tx.open_table(SUBSCRIBERS)?;
            let mut meta = tx.open_table(META)?;
            let epoch = meta.get(LOG_EPOCH)?.map(|v| v.value());
            match epoch {
                Some(e) => e,
                None => {
                    // Names this journal's log records: a log beside another
                    // redb file is never replayed into it.
                    let e = rand::random::<u64>();
                    meta.insert(LOG_EPOCH, e)?;
                    e
                }
            }
        };
        tx.commit()?;
        let wal = Wal::open(&dir.join("tocsin.wal"), log_bytes, epoch)?;
        let db: Db = Arc::new(RwLock::new(Some(db)));
        let checkpointer = Checkpointer::start(db.clone())?;
        let journal = Self {
            path,
            log: Mutex::new(Log {
                wal,
                checkpointer,
                window: None,
                last_checkpoint: Instant::now(),
                took: Vec::new(),
                buf: Vec::new(),
            }),
            overlay: RwLock::new(Layers::default()),
            db,
            last_reopen: Mutex::new(None),
            log_bytes,
        };
        {
            let mut log = journal.log.lock();
            let mut overlay = journal.overlay.write();
            let guard = journal.db.read();
            if let Some(db) = guard.as_ref() {
                journal.recover(db, &mut log, &mut overlay)?;
            }
        }
        Ok(journal)
    }

    /// Apply the log's groups after redb's last durable one, durably, and
    /// start the log after them. Drops the overlay's layers and the window
    /// of a checkpoint (whose job the caller has waited for): the log holds
    /// their groups.
    fn recover(
        &self,
        db: &Database,
        log: &mut Log,
        overlay: &mut Layers,
    ) -> Result<(), JournalError> {
        let (lsn, end) = {
            let tx = db.begin_read()?;
            let meta = tx.open_table(META)?;
            let get = |k| -> Result<u64, JournalError> {
                Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0))
            };
            (get(LOG_LSN)?, get(LOG_END)?)
        };
        let found = log.wal.scan(lsn, end)?;
        let (mut lsn, mut end) = (lsn, end);
        if let Some(last) = found.last() {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            {
                let mut t = Tables::open(&tx)?;
                for f in &found {
                    rules::apply(&mut t, &change::decode_group(&f.payload)?)?;
                }
                t.set_log_position(last.lsn, last.end)?;
            }
            tx.commit()?;
            (lsn, end) = (last.lsn, last.end);
            tracing::info!(groups = found.len(), "journal log replayed");
        }
        log.wal.restart(lsn, end);
        if log.wal.size() != self.log_bytes {
            log.wal.resize(self.log_bytes)?;
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            Tables::open(&tx)?.set_log_position(lsn, 0)?;
            tx.commit()?;
            log.wal.restart(lsn, 0);
        }
        overlay.clear();
        log.window = None;
        log.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Run `f` on the open database, reopening it first after a storage
    /// fault (at most every [`REOPEN_EVERY`]).
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        self.ensure_open()?;
        self.run_db(f)
    }

    /// Reopen the database if a storage fault closed it. The log's lock comes
    /// first everywhere, and only its holder takes the overlay's write lock
    /// (so the writer may read the overlay while holding the database's read
    /// lock); a reader must call this before it takes the overlay's lock,
    /// never while holding it, since the reopen takes the overlay's write
    /// lock and then the database's.
    fn ensure_open(&self) -> Result<(), JournalError> {
        if self.db.read().is_none() {
            self.reopen(&mut self.log.lock())?;
        }
        Ok(())
    }

    /// [`Journal::ensure_open`] for a caller holding the log.
    fn ensure_open_locked(&self, log: &mut Log) -> Result<(), JournalError> {
        if self.db.read().is_none() {
            self.reopen(log)?;
        }
        Ok(())
    }

    /// Run `f` on the database if it is open. A storage fault closes the
    /// handle; the next call reopens the file.
    fn run_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let result = {
            let guard = self.db.read();
            match guard.as_ref() {
                Some(db) => f(db),
                None => Err(JournalError::Unavailable("journal closed".into())),
            }
        };
        match result {
            Err(e) if e.is_unavailable() => {
                self.close(&e);
                Err(JournalError::Unavailable(e.to_string()))
            }
            r => r,
        }
    }

    /// Drop the database handle; the next call reopens and replays the log.
    fn close(&self, why: &JournalError) {
        if self.db.write().take().is_some() {
            tracing::error!(error = %why, "journal storage failed; reopening on the next call");
        }
    }

    /// Open the file again after a storage fault (redb repairs it from the
    /// last durable commit) and replay the log into it.
    fn reopen(&self, log: &mut Log) -> Result<(), JournalError> {
        // A checkpoint sent before the fault must not write its (older) rows
        // after the replay: wait for it first. On the closed handle it fails
        // at once. (`checkpoint_commit` also refuses a job older than redb.)
        if self.db.read().is_none() && log.window.take().is_some() {
            let _ = log.checkpointer.wait();
        }
        let mut overlay = self.overlay.write();
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
        let db = Database::create(&self.path)
            .map_err(|e| JournalError::Unavailable(format!("reopen: {e}")))?;
        self.recover(&db, log, &mut overlay)
            .map_err(|e| JournalError::Unavailable(format!("reopen: {e}")))?;
        tracing::warn!("journal reopened after a storage fault");
        *w = Some(db);
        Ok(())
    }

    /// The most envelope bytes one group should carry (a quarter of the
    /// log; one alert may go past it).
    pub fn max_group_bytes(&self) -> usize {
        usize::try_from(self.log_bytes / 4).unwrap_or(usize::MAX)
    }

    /// How long each checkpoint finished since the last call took.
    pub fn checkpoint_times(&self) -> Vec<Duration> {
        std::mem::take(&mut self.log.lock().took)
    }

    /// Commit a group of new alerts as one durable group. Each gets an
    /// outcome; rejected ones (identifier reused, unknown reference) change
    /// nothing. A transaction error fails the whole group.
    pub fn commit_alerts(&self, batch: &[NewAlert]) -> Result<Vec<CommitOutcome>, JournalError> {
        let writes: Vec<Change> = batch
            .iter()
            .map(|a| Change::Alert(Box::new(a.clone())))
            .collect();
        Ok(self.write(&writes)?.into_iter().flatten().collect())
    }

    /// Apply a group of changes, in order: each alert gets its outcome (the
    /// other changes `None`), and an error fails the whole group, leaving
    /// the journal as it was. Returns once the group is in the log, after an
    /// `fdatasync` when any change must be durable (alerts and cursors);
    /// final states alone ride the next one. The group-commit thread writes
    /// this way: one writer, one fsync for everything queued.
    pub fn write(&self, changes: &[Change]) -> Result<Vec<Option<CommitOutcome>>, JournalError> {
        let mut guard = self.log.lock();
        let log = &mut *guard;
        if log.window.is_some() {
            if let Some(r) = log.checkpointer.poll() {
                // A failure closed the database; reopened just below.
                let _ = self.end_window(log, r);
            }
        }
        self.ensure_open_locked(log)?;
        let mut buf = std::mem::take(&mut log.buf);
        let out = self.write_logged(log, changes, &mut buf);
        log.buf = buf;
        out
    }

    fn write_logged(
        &self,
        log: &mut Log,
        changes: &[Change],
        buf: &mut Vec<u8>,
    ) -> Result<Vec<Option<CommitOutcome>>, JournalError> {
        change::encode_group(changes, buf)?;
        self.make_room(log, buf.len())?;
        let durable = changes.iter().any(Change::needs_fsync);
        let out = self.write_to_overlay(log, changes, buf, durable)?;
        if log.window.is_none()
            && (log.wal.used() >= log.wal.size() / 4
                || log.last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
        {
            // The group is logged and answered either way; without
            // checkpoints the log fills and `make_room` refuses.
            if let Err(e) = self.begin_checkpoint(log) {
                tracing::error!(error = %e, "journal checkpoint not started");
            }
        }
        Ok(out)
    }

    /// Apply the group to the overlay over a read snapshot of redb, log it,
    /// then show it to readers. Only the log's holder changes the overlay's
    /// layers, so the snapshot and the layers agree. Until the next
    /// checkpoint, redb's file does not have the group; the log and the
    /// overlay do.
    fn write_to_overlay(
        &self,
        log: &mut Log,
        changes: &[Change],
        buf: &[u8],
        durable: bool,
    ) -> Result<Vec<Option<CommitOutcome>>, JournalError> {
        let (out, group) = self.run_db(|db| {
            let tx = db.begin_read()?;
            let base = Snapshot::open(&tx)?;
            let before = self.overlay.read();
            let mut group = Overlay::default();
            let out = rules::apply(
                &mut View {
                    base: &base,
                    before: &before,
                    group: &mut group,
                },
                changes,
            )?;
            Ok((out, group))
        })?;
        log.wal
            .append(buf, durable)
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        self.overlay.write().merge(group);
        Ok(out)
    }

    /// Freeze the overlay's rows and hand them to the checkpoint thread,
    /// which writes them to redb durably; later groups go to a fresh layer.
    /// When the thread is gone, the rows stay in the overlay and the log.
    fn begin_checkpoint(&self, log: &mut Log) -> Result<(), JournalError> {
        let (lsn, covers) = (log.wal.lsn(), log.wal.head());
        let rows = self.overlay.write().freeze();
        match log.checkpointer.request(rows, lsn, covers) {
            Ok(()) => {
                log.window = Some(covers);
                log.last_checkpoint = Instant::now();
                Ok(())
            }
            Err(rows) => {
                self.overlay.write().thaw(rows);
                Err(super::checkpoint::stopped())
            }
        }
    }

    /// The checkpoint finished: free the log behind it and drop the frozen
    /// layer (redb holds its rows now). On a failure the handle is closed:
    /// the reopen replays the log, which still holds every group since.
    fn end_window(
        &self,
        log: &mut Log,
        result: Result<Duration, JournalError>,
    ) -> Result<(), JournalError> {
        let Some(covers) = log.window.take() else {
            return Ok(());
        };
        match result {
            Ok(took) => {
                log.wal.set_tail(covers);
                log.took.push(took);
                self.overlay.write().checkpointed();
                Ok(())
            }
            Err(e) => {
                self.close(&e);
                Err(e)
            }
        }
    }

    /// Free log space for a record of `len` bytes: finish the running
    /// checkpoint, or run one, until it fits.
    fn make_room(&self, log: &mut Log, len: usize) -> Result<(), JournalError> {
        while !log.wal.fits(len) {
            if log.window.is_some() {
                let r = log.checkpointer.wait();
                // A failure closed the database; reopened just below.
                let _ = self.end_window(log, r);
                self.ensure_open_locked(log)?;
            } else if log.wal.used() > 0 {
                // Groups logged since the last checkpoint: one frees their space.
                self.begin_checkpoint(log)?;
            } else {
                return Err(JournalError::Corrupt(format!(
                    "a group of {len} bytes does not fit the {}-byte log",
                    log.wal.size()
                )));
            }
        }
        Ok(())
    }

    /// Write everything logged to redb durably (used on close; the log
    /// makes it so for a crash).
    pub fn checkpoint(&self) -> Result<(), JournalError> {
        let mut log = self.log.lock();
        if log.window.is_some() {
            let r = log.checkpointer.wait();
            let _ = self.end_window(&mut log, r);
        }
        self.ensure_open_locked(&mut log)?;
        self.begin_checkpoint(&mut log)?;
        let r = log.checkpointer.wait();
        self.end_window(&mut log, r)
    }

    /// One alert record.
    pub fn alert(&self, seq: u64) -> Result<Option<AlertRecord>, JournalError> {
        if let Some(r) = self.overlay.read().alert(seq) {
            return Ok(Some(r.clone()));
        }
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ALERTS)?;
            decode_alert(&t, seq)
        })
    }

    /// The sequence number of an alert id (`sender,identifier,sent`).
    pub fn seq_of(&self, alert_id: &str) -> Result<Option<u64>, JournalError> {
        if let Some(s) = self.overlay.read().seq_of(alert_id) {
            return Ok(Some(s));
        }
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ALERT_IDS)?;
            let v = t.get(alert_id)?;
            Ok(v.map(|v| v.value()))
        })
    }

    /// The envelope of an alert, as received.
    pub fn envelope(&self, seq: u64) -> Result<Option<Vec<u8>>, JournalError> {
        if let Some(e) = self.overlay.read().envelope(seq) {
            return Ok(Some(e.to_vec()));
        }
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ENVELOPES)?;
            let v = t.get(seq)?;
            Ok(v.map(|v| v.value().to_vec()))
        })
    }

    /// Every alert record, newest first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, JournalError> {
        self.ensure_open()?;
        let overlay = self.overlay.read();
        let mut out: BTreeMap<u64, AlertRecord> = self.run_db(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ALERTS)?;
            let mut out = BTreeMap::new();
            for item in t.iter()?.rev().take(limit) {
                let (k, v) = item?;
                out.insert(
                    k.value(),
                    serde_json::from_slice(v.value()).map_err(corrupt)?,
                );
            }
            Ok(out)
        })?;
        // The overlay's alerts are the newest, or newer versions (a frozen
        // layer may be in this snapshot too: the same rows).
        out.extend(overlay.alerts().map(|r| (r.seq, r.clone())));
        Ok(out.into_values().rev().take(limit).collect())
    }

    /// Number of alerts journaled.
    pub fn alert_count(&self) -> Result<u64, JournalError> {
        self.ensure_open()?;
        let overlay = self.overlay.read();
        let (n, next) = self.run_db(|db| {
            let tx = db.begin_read()?;
            let snap = Snapshot::open(&tx)?;
            Ok((snap.alerts.len()?, snap.next_seq()?))
        })?;
        // A frozen layer may be in this snapshot already: count what is not.
        Ok(n + overlay.new_alerts_from(next) as u64)
    }

    /// Set an alert's state. Not fsynced on its own: it becomes durable with
    /// the next durable commit (the next alert or cursor flush). Losing it in
    /// a crash is harmless: the alert resumes, finds its cursors done, and
    /// sets the state again. One fsync per alert here would halve ingest.
    pub fn set_state(&self, seq: u64, state: AlertState) -> Result<(), JournalError> {
        self.finish(seq, state, &[])
    }

    /// Set an alert's final state together with the job cursors not yet
    /// committed (one log record, not fsynced on its own). The log makes
    /// records durable in order and a replay stops at the first missing one,
    /// so no later durable write can persist the state without these
    /// cursors: a finished alert never reads "completed" beside a cursor
    /// that is not done.
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
        self.ensure_open()?;
        let overlay = self.overlay.read();
        let mut out = self.run_db(|db| {
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
        })?;
        out.extend(
            overlay
                .cursors(seq)
                .map(|(name, c)| (name.to_string(), c.clone())),
        );
        Ok(out)
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

/// A checkpoint's transaction: write `rows` and log position `lsn`/`end`,
/// durably (run by the checkpoint thread, `checkpoint.rs`).
pub(super) fn checkpoint_commit(
    db: &Database,
    rows: &Overlay,
    lsn: u64,
    end: u64,
) -> Result<(), JournalError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut t = Tables::open(&tx)?;
        // A replay after a reopen may have taken redb past this job: its
        // rows are older than redb's then.
        let held = t.meta.get(LOG_LSN)?.map(|v| v.value()).unwrap_or(0);
        if held > lsn {
            return Err(JournalError::Corrupt(format!(
                "stale checkpoint: redb holds lsn {held}, the job {lsn}"
            )));
        }
        rows.write_to(&mut t)?;
        t.set_log_position(lsn, end)?;
    }
    tx.commit()?;
    Ok(())
}

/// The tables one write transaction touches.
struct Tables<'t> {
    alerts: redb::Table<'t, u64, &'static [u8]>,
    envs: redb::Table<'t, u64, &'static [u8]>,
    ids: redb::Table<'t, &'static str, u64>,
    meta: redb::Table<'t, &'static str, u64>,
    cursors: redb::Table<'t, (u64, &'static str), &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Self, JournalError> {
        Ok(Self {
            alerts: tx.open_table(ALERTS)?,
            envs: tx.open_table(ENVELOPES)?,
            ids: tx.open_table(ALERT_IDS)?,
            meta: tx.open_table(META)?,
            cursors: tx.open_table(CURSORS)?,
        })
    }

    /// Record that redb holds the log's groups up to `lsn`, and where the
    /// next one starts.
    fn set_log_position(&mut self, lsn: u64, end: u64) -> Result<(), JournalError> {
        self.meta.insert(LOG_LSN, lsn)?;
        self.meta.insert(LOG_END, end)?;
        Ok(())
    }
}

/// The rules' reads, the same for the write transaction and a snapshot.
macro_rules! rows_from_tables {
    ($t:ty) => {
        impl Rows for $t {
            fn seq_of(&self, alert_id: &str) -> Result<Option<u64>, JournalError> {
                Ok(self.ids.get(alert_id)?.map(|v| v.value()))
            }

            fn alert(&self, seq: u64) -> Result<Option<AlertRecord>, JournalError> {
                decode_alert(&self.alerts, seq)
            }

            fn cursor(&self, seq: u64, name: &str) -> Result<Option<CursorRecord>, JournalError> {
                decode_cursor(&self.cursors, seq, name)
            }

            fn next_seq(&self) -> Result<u64, JournalError> {
                Ok(self.meta.get(NEXT_ALERT)?.map(|v| v.value()).unwrap_or(1))
            }
        }
    };
}
rows_from_tables!(Tables<'_>);
rows_from_tables!(Snapshot);

impl RowsMut for Tables<'_> {
    fn put_alert(&mut self, rec: &AlertRecord) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(rec).map_err(corrupt)?;
        self.alerts.insert(rec.seq, bytes.as_slice())?;
        Ok(())
    }

    fn put_new(&mut self, rec: &AlertRecord, envelope: &Arc<[u8]>) -> Result<(), JournalError> {
        self.put_alert(rec)?;
        self.envs.insert(rec.seq, &**envelope)?;
        self.ids.insert(rec.alert_id.as_str(), rec.seq)?;
        Ok(())
    }

    fn put_cursor(&mut self, seq: u64, name: &str, c: &CursorRecord) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(c).map_err(corrupt)?;
        self.cursors.insert((seq, name), bytes.as_slice())?;
        Ok(())
    }

    fn set_next_seq(&mut self, next: u64) -> Result<(), JournalError> {
        self.meta.insert(NEXT_ALERT, next)?;
        Ok(())
    }
}

/// The same rows in a read snapshot (under the overlay).
struct Snapshot {
    alerts: redb::ReadOnlyTable<u64, &'static [u8]>,
    ids: redb::ReadOnlyTable<&'static str, u64>,
    meta: redb::ReadOnlyTable<&'static str, u64>,
    cursors: redb::ReadOnlyTable<(u64, &'static str), &'static [u8]>,
}

impl Snapshot {
    fn open(tx: &redb::ReadTransaction) -> Result<Self, JournalError> {
        Ok(Self {
            alerts: tx.open_table(ALERTS)?,
            ids: tx.open_table(ALERT_IDS)?,
            meta: tx.open_table(META)?,
            cursors: tx.open_table(CURSORS)?,
        })
    }
}

fn decode_alert(
    t: &impl ReadableTable<u64, &'static [u8]>,
    seq: u64,
) -> Result<Option<AlertRecord>, JournalError> {
    t.get(seq)?
        .map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
        .transpose()
}

fn decode_cursor(
    t: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    seq: u64,
    name: &str,
) -> Result<Option<CursorRecord>, JournalError> {
    t.get((seq, name))?
        .map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
        .transpose()
}

impl Drop for Journal {
    /// A clean close leaves nothing for the next open to replay.
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "journal: final checkpoint failed; the log keeps it");
        }
    }
}

#[cfg(test)]
impl Journal {
    /// Start a checkpoint now (tests hold it with an open write transaction
    /// to keep its window open).
    pub(super) fn start_checkpoint(&self) -> Result<(), JournalError> {
        let mut log = self.log.lock();
        self.begin_checkpoint(&mut log)
    }

    /// The checkpoint thread's test controls.
    pub(super) fn checkpoint_knobs(&self) -> Arc<super::checkpoint::Knobs> {
        self.log.lock().checkpointer.knobs.clone()
    }

    /// Stop the checkpoint thread.
    pub(super) fn stop_checkpoints(&self) {
        self.log.lock().checkpointer.stop();
    }

    /// Close the database as a storage fault would.
    pub(super) fn fault(&self) {
        self.close(&JournalError::Unavailable("test: storage fault".into()));
    }

    pub(super) fn in_window(&self) -> bool {
        self.log.lock().window.is_some()
    }

    /// Whether the overlay holds nothing.
    pub(super) fn overlay_is_empty(&self) -> bool {
        self.overlay.read().is_empty()
    }
}
