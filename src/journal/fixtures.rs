//! Test data shared by the journal's unit tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;

use super::commit::{CommitOutcome, NewAlert};
use super::records::CursorRecord;
use crate::alert::cap::MsgType;

/// Alert `n` of authority gz, with an envelope of `body` bytes and the
/// digest `digest`.
pub fn alert(n: u64, digest: u64, body: usize) -> NewAlert {
    NewAlert {
        alert_id: format!("police.gz@example.gov.cn,W-{n},2026-11-29T10:00:00+08:00"),
        receipt: format!("r-{n}"),
        authority: "gz".into(),
        digest: format!("{digest:064x}"),
        envelope: Arc::from(vec![n as u8; body]),
        accepted_at: Utc::now(),
        expires: None,
        msg_type: MsgType::Alert,
        status: "Actual".into(),
        references: Vec::new(),
        targeted: BTreeMap::new(),
        expansion: None,
    }
}

pub fn cursor(delivered: u64, done: bool) -> CursorRecord {
    CursorRecord {
        key: Some((7, 9)),
        delivered,
        failed: 0,
        dropped: 0,
        done,
    }
}

/// The sequence number of an accepted or duplicate alert.
pub fn seq(o: &CommitOutcome) -> u64 {
    match o {
        CommitOutcome::Accepted(r) | CommitOutcome::Duplicate(r) => r.seq,
        CommitOutcome::Rejected(r) => panic!("{r:?}"),
    }
}
