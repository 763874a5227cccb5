//! The changes the journal's one writer applies, and their encoding in the
//! write-ahead log: one log record holds one group, as JSON with the
//! envelopes (the bulk of an alert) appended raw after it, in order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::commit::NewAlert;
use super::records::{AlertState, CursorRecord};
use super::store::JournalError;

/// One change for [`Journal::write`](super::Journal::write).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    /// A new alert: durable before its receipt.
    Alert(Box<NewAlert>),
    /// An alert's final state with the cursors its jobs left uncommitted
    /// (not fsynced on its own; see [`Journal::finish`](super::Journal::finish)).
    /// The state is kept when the alert is no longer live.
    Finish {
        seq: u64,
        state: AlertState,
        cursors: Vec<(String, CursorRecord)>,
    },
    /// Job cursors `(alert seq, journal name, cursor)`: durable.
    Cursors(Vec<(u64, String, CursorRecord)>),
}

impl Change {
    /// Whether the change must be durable before its caller hears back.
    pub(super) fn needs_fsync(&self) -> bool {
        !matches!(self, Self::Finish { .. })
    }

    /// Envelope bytes the change carries (what sizes a group).
    pub(super) fn envelope_len(&self) -> usize {
        match self {
            Self::Alert(a) => a.envelope.len(),
            _ => 0,
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> JournalError {
    JournalError::Corrupt(format!("log record: {e}"))
}

/// Encode a group into `out` (cleared first): `u32` JSON length, the JSON
/// (envelopes left out), then each alert's envelope as `u32` length + bytes.
pub(super) fn encode_group(changes: &[Change], out: &mut Vec<u8>) -> Result<(), JournalError> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, changes).map_err(corrupt)?;
    let json_len = u32::try_from(out.len() - 4).map_err(corrupt)?;
    out[..4].copy_from_slice(&json_len.to_le_bytes());
    for c in changes {
        if let Change::Alert(a) = c {
            let len = u32::try_from(a.envelope.len()).map_err(corrupt)?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&a.envelope);
        }
    }
    Ok(())
}

/// Split off a `u32`-length-prefixed slice.
fn take<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], JournalError> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("truncated length"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt("truncated field"));
    }
    let (field, rest) = rest.split_at(len);
    *bytes = rest;
    Ok(field)
}

/// Decode what [`encode_group`] wrote.
pub(super) fn decode_group(mut bytes: &[u8]) -> Result<Vec<Change>, JournalError> {
    let json = take(&mut bytes)?;
    let mut changes: Vec<Change> = serde_json::from_slice(json).map_err(corrupt)?;
    for c in &mut changes {
        if let Change::Alert(a) = c {
            a.envelope = Arc::from(take(&mut bytes)?);
        }
    }
    if !bytes.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::cap::MsgType;
    use crate::journal::fixtures;

    #[test]
    fn a_group_survives_its_encoding() {
        let alert = |n: u64| NewAlert {
            msg_type: MsgType::Cancel,
            references: vec!["s,old,t".into()],
            targeted: BTreeMap::from([("apns".into(), 3)]),
            ..fixtures::alert(n, n, 100 + n as usize)
        };
        let cursor = fixtures::cursor(5, true);
        let group = vec![
            Change::Alert(Box::new(alert(1))),
            Change::Finish {
                seq: 4,
                state: AlertState::Expired,
                cursors: vec![("feed".into(), cursor.clone())],
            },
            Change::Alert(Box::new(alert(2))),
            Change::Cursors(vec![(9, "apns".into(), cursor)]),
        ];
        let mut bytes = Vec::new();
        encode_group(&group, &mut bytes).unwrap();
        let back = decode_group(&bytes).unwrap();
        assert_eq!(format!("{group:?}"), format!("{back:?}"));
        // Every truncation is an error, never a shorter group.
        for cut in 0..bytes.len() {
            assert!(decode_group(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
