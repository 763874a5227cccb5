//! Cursor board: jobs publish their low-water cursor here after every
//! completed batch; one task commits all dirty cursors to the journal in a
//! single durable transaction every `cursor_commit_ms` (or at once when a job
//! finishes). A crash therefore repeats at most the deliveries of one commit
//! interval plus the batches in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::journal::{CursorRecord, GroupCommitter};

/// The journal name of a job's cursor: the channel for stage 0 (the alert as
/// accepted), `channel@stage` for a later stage of a widening alert.
pub fn cursor_name(channel: &str, stage: u32) -> String {
    if stage == 0 {
        channel.to_string()
    } else {
        format!("{channel}@{stage}")
    }
}

/// Dirty cursors waiting for the next commit.
#[derive(Default)]
pub struct CursorBoard {
    dirty: Mutex<HashMap<(u64, &'static str, u32), CursorRecord>>,
    urgent: Notify,
}

impl CursorBoard {
    /// Publish a job's cursor; `urgent` asks for a commit now.
    pub fn publish(
        &self,
        seq: u64,
        channel: &'static str,
        stage: u32,
        rec: CursorRecord,
        urgent: bool,
    ) {
        self.dirty.lock().insert((seq, channel, stage), rec);
        if urgent {
            self.urgent.notify_one();
        }
    }

    /// The cursors of alert `seq` still waiting for a commit, by journal
    /// name (they stay dirty: the next flush writes them as well).
    pub fn pending_for(&self, seq: u64) -> Vec<(String, CursorRecord)> {
        self.dirty
            .lock()
            .iter()
            .filter(|((s, _, _), _)| *s == seq)
            .map(|((_, c, stage), r)| (cursor_name(c, *stage), r.clone()))
            .collect()
    }

    /// Commit everything dirty now (durably, through the journal's writer);
    /// on a failure they stay dirty for the next round.
    pub async fn flush(&self, writer: &GroupCommitter) {
        let items: Vec<_> = self.dirty.lock().drain().collect();
        if items.is_empty() {
            return;
        }
        let rows = items
            .iter()
            .map(|((s, c, stage), r)| (*s, cursor_name(c, *stage), r.clone()))
            .collect();
        if let Err(e) = writer.save_cursors(rows).await {
            tracing::error!(error = %e, "cursor commit failed; will retry");
            let mut d = self.dirty.lock();
            for (k, v) in items {
                d.entry(k).or_insert(v);
            }
        }
    }

    /// Run the periodic committer until `stop`, then flush once more.
    pub fn spawn_committer(
        self: &Arc<Self>,
        writer: GroupCommitter,
        every: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let board = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = board.urgent.notified() => {}
                    _ = stop.cancelled() => break,
                }
                board.flush(&writer).await;
            }
            board.flush(&writer).await;
        })
    }
}
