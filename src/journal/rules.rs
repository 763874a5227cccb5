//! The journal's write rules, written once for every place a change lands:
//! the in-memory overlay every group goes to (`overlay.rs`) and a redb write
//! transaction, in which the replay of the write-ahead log applies them
//! after a crash (`store.rs`). The rules read nothing but the rows given
//! (no clock, no randomness), so the same changes on the same state always
//! give the same outcomes: what the log replays is what the receipts said.

use std::sync::Arc;

use super::change::Change;
use super::commit::{CommitOutcome, NewAlert};
use super::records::{AlertRecord, AlertState, CursorRecord};
use super::store::JournalError;
use crate::alert::cap::MsgType;
use crate::reject::{RejectCode, Rejection};

/// What the rules read.
pub(super) trait Rows {
    /// The sequence number of an alert id.
    fn seq_of(&self, alert_id: &str) -> Result<Option<u64>, JournalError>;
    fn alert(&self, seq: u64) -> Result<Option<AlertRecord>, JournalError>;
    fn cursor(&self, seq: u64, name: &str) -> Result<Option<CursorRecord>, JournalError>;
    /// The sequence number the next accepted alert gets.
    fn next_seq(&self) -> Result<u64, JournalError>;
}

/// What the rules write.
pub(super) trait RowsMut: Rows {
    /// Store an alert record (new or changed).
    fn put_alert(&mut self, rec: &AlertRecord) -> Result<(), JournalError>;
    /// Store a new alert's envelope and index its id.
    fn put_new(&mut self, rec: &AlertRecord, envelope: &Arc<[u8]>) -> Result<(), JournalError>;
    fn put_cursor(&mut self, seq: u64, name: &str, c: &CursorRecord) -> Result<(), JournalError>;
    fn set_next_seq(&mut self, next: u64) -> Result<(), JournalError>;
}

/// Apply a group in order. Each alert gets its outcome (the other changes
/// `None`); an error fails the whole group.
pub(super) fn apply(
    rows: &mut impl RowsMut,
    changes: &[Change],
) -> Result<Vec<Option<CommitOutcome>>, JournalError> {
    let first = rows.next_seq()?;
    let mut next = first;
    let mut outcomes = Vec::with_capacity(changes.len());
    for c in changes {
        outcomes.push(match c {
            Change::Alert(a) => Some(put_alert(rows, a, &mut next)?),
            Change::Finish {
                seq,
                state,
                cursors,
            } => {
                put_finish(rows, *seq, *state, cursors)?;
                None
            }
            Change::Cursors(rows_) => {
                for (seq, name, c) in rows_ {
                    put_cursor(rows, *seq, name, c)?;
                }
                None
            }
        });
    }
    if next != first {
        rows.set_next_seq(next)?;
    }
    Ok(outcomes)
}

fn known(rows: &impl Rows, seq: u64) -> Result<AlertRecord, JournalError> {
    rows.alert(seq)?
        .ok_or_else(|| JournalError::Corrupt(format!("alert {seq} missing")))
}

/// Journal one new alert as `next` (advanced when accepted), or refuse it
/// (identifier reused, unknown or foreign reference) changing nothing.
fn put_alert(
    rows: &mut impl RowsMut,
    a: &NewAlert,
    next: &mut u64,
) -> Result<CommitOutcome, JournalError> {
    if let Some(seq) = rows.seq_of(&a.alert_id)? {
        let rec = known(rows, seq)?;
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
        let Some(s) = rows.seq_of(r)? else {
            return Ok(CommitOutcome::Rejected(Rejection::new(
                RejectCode::ReferenceUnknown,
                "a referenced alert was never accepted here",
            )));
        };
        let old = known(rows, s)?;
        // Only the authority that issued an alert may update or cancel it
        // (the CAP sender in a reference proves nothing).
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
            rows.put_alert(&old)?;
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
    rows.put_new(&rec, &a.envelope)?;
    Ok(CommitOutcome::Accepted(rec))
}

/// Set a live alert's final state and write its last cursors.
fn put_finish(
    rows: &mut impl RowsMut,
    seq: u64,
    state: AlertState,
    cursors: &[(String, CursorRecord)],
) -> Result<(), JournalError> {
    let Some(mut rec) = rows.alert(seq)? else {
        // Cannot happen (jobs start after their alert is durable); if it
        // did, it must not fail the alerts sharing this transaction.
        tracing::warn!(seq, "final state for an alert not in the journal; ignored");
        return Ok(());
    };
    if rec.state.is_live() {
        rec.state = state;
        rows.put_alert(&rec)?;
    }
    for (name, c) in cursors {
        put_cursor(rows, seq, name, c)?;
    }
    Ok(())
}

/// Write a job cursor. A finished cursor is final: a flush that read the
/// board before the job's last batch may reach the writer after the alert's
/// final state, and must not turn it back to unfinished.
fn put_cursor(
    rows: &mut impl RowsMut,
    seq: u64,
    name: &str,
    c: &CursorRecord,
) -> Result<(), JournalError> {
    if !c.done && rows.cursor(seq, name)?.is_some_and(|old| old.done) {
        return Ok(());
    }
    rows.put_cursor(seq, name, c)
}
