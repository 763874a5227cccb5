//! The journal with its log, as a crash leaves it: each test copies the
//! state directory while the journal is open (redb's file holds only its
//! last checkpoint then; the rest is in the log) and opens the copy.

use std::path::Path;

use super::fixtures::{self, cursor, seq};
use super::*;
use crate::alert::cap::MsgType;

fn alert(n: u64, body: usize) -> NewAlert {
    fixtures::alert(n, n, body)
}

fn cancel(n: u64, of: u64) -> NewAlert {
    NewAlert {
        msg_type: MsgType::Cancel,
        references: vec![alert(of, 0).alert_id],
        ..alert(n, 64)
    }
}

fn one(j: &Journal, a: NewAlert) -> CommitOutcome {
    j.commit_alerts(&[a]).unwrap().remove(0)
}

/// The state directory as a crash at this instant would leave it.
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for f in ["tocsin.redb", "tocsin.wal"] {
        std::fs::copy(from.join(f), to.path().join(f)).unwrap();
    }
    to
}

/// The copy's redb file alone, without its log.
fn redb_alone(copy: &Path) -> (tempfile::TempDir, Journal) {
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(copy.join("tocsin.redb"), bare.path().join("tocsin.redb")).unwrap();
    let j = Journal::open(bare.path()).unwrap();
    (bare, j)
}

/// Alerts in the copy's redb file alone, without its log.
fn in_redb_alone(copy: &Path) -> u64 {
    redb_alone(copy).1.alert_count().unwrap()
}

/// What a reader sees: every alert (seq, id, state, envelope length) and
/// every cursor.
fn contents(j: &Journal) -> Vec<String> {
    let mut out = Vec::new();
    for r in j.alerts(usize::MAX).unwrap() {
        let env = j.envelope(r.seq).unwrap().map(|e| e.len());
        assert_eq!(j.seq_of(&r.alert_id).unwrap(), Some(r.seq));
        assert_eq!(j.alert(r.seq).unwrap().map(|a| a.state), Some(r.state));
        out.push(format!(
            "{} {} {:?} {:?} {:?}",
            r.seq,
            r.alert_id,
            r.state,
            env,
            j.cursors(r.seq).unwrap()
        ));
    }
    out.push(format!("count {}", j.alert_count().unwrap()));
    out
}

#[test]
fn acknowledged_writes_survive_a_crash_between_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path()).unwrap();
    let s1 = seq(&one(&j, alert(1, 3000)));
    let s2 = seq(&one(&j, alert(2, 100)));
    j.write(&[Change::Cursors(vec![(s1, "feed".into(), cursor(5, false))])])
        .unwrap();
    j.finish(
        s2,
        AlertState::Completed,
        &[("apns".into(), cursor(9, true))],
    )
    .unwrap();
    let s3 = seq(&one(&j, cancel(3, 1)));
    let before = contents(&j);
    assert_eq!(before.len(), 4, "{before:?}");

    let copy = crash_copy(dir.path());
    assert_eq!(
        in_redb_alone(copy.path()),
        0,
        "no checkpoint yet: all in the log"
    );
    let r = Journal::open(copy.path()).unwrap();
    assert_eq!(contents(&r), before);
    assert_eq!(r.alert(s1).unwrap().unwrap().state, AlertState::Cancelled);
    // The replay went through the same rules: the next alert continues the
    // sequence, a resend is a duplicate, other bytes are refused.
    assert_eq!(seq(&one(&r, alert(4, 10))), s3 + 1);
    assert!(matches!(one(&r, alert(2, 100)), CommitOutcome::Duplicate(x) if x.seq == s2));
    let mut other = alert(2, 100);
    other.digest = "ff".into();
    assert!(matches!(one(&r, other), CommitOutcome::Rejected(_)));
    // Opened twice more: nothing replays twice.
    drop(r);
    let r = Journal::open(copy.path()).unwrap();
    assert_eq!(r.alert_count().unwrap(), 4);
}

#[test]
fn a_checkpoint_window_answers_from_the_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path()).unwrap();
    let s1 = seq(&one(&j, alert(1, 500)));
    // An open write transaction keeps the checkpoint waiting, and so the
    // window open: alert 1 is frozen, every write below goes to the layer
    // over it.
    let hold = j.begin_import().unwrap();
    j.start_checkpoint().unwrap();
    assert!(j.in_window());
    let s2 = seq(&one(&j, alert(2, 700)));
    assert_eq!(s2, s1 + 1);
    assert!(matches!(one(&j, alert(1, 500)), CommitOutcome::Duplicate(x) if x.seq == s1));
    let s3 = seq(&one(&j, cancel(3, 1)));
    assert!(matches!(one(&j, cancel(4, 99)), CommitOutcome::Rejected(_)));
    j.write(&[Change::Cursors(vec![(s2, "feed".into(), cursor(3, false))])])
        .unwrap();
    j.finish(
        s2,
        AlertState::Completed,
        &[("feed".into(), cursor(7, true))],
    )
    .unwrap();
    // A stale flush after the final state leaves the cursor done.
    j.write(&[Change::Cursors(vec![(s2, "feed".into(), cursor(4, false))])])
        .unwrap();
    assert!(j.in_window(), "the checkpoint finished while held");
    let during = contents(&j);
    assert_eq!(
        during[..3]
            .iter()
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        [
            format!("{s3} {} Active", alert(3, 0).alert_id),
            format!("{s2} {} Completed", alert(2, 0).alert_id),
            format!("{s1} {} Cancelled", alert(1, 0).alert_id),
        ]
    );
    assert!(j.cursors(s2).unwrap()["feed"].done);
    assert_eq!(j.alert_count().unwrap(), 3);

    // A crash now: redb has nothing yet (alert 1 is frozen, its checkpoint
    // held); the log has everything.
    let copy = crash_copy(dir.path());
    // The checkpoint runs once the transaction is gone; the next write ends
    // the window and drops the frozen layer.
    drop(hold);
    end_of_checkpoint(&j);
    assert_eq!(contents(&j), during);
    // One more checkpoint takes the rest into redb: its file alone now reads
    // back everything, states and cursors included.
    j.checkpoint().unwrap();
    assert!(j.overlay_is_empty());
    assert_eq!(contents(&j), during);
    let after = crash_copy(dir.path());
    assert_eq!(contents(&redb_alone(after.path()).1), during);
    assert_eq!(
        in_redb_alone(copy.path()),
        0,
        "the checkpoint was held: all in the log"
    );
    let r = Journal::open(copy.path()).unwrap();
    assert_eq!(contents(&r), during);
}

#[test]
fn a_small_log_laps_with_checkpoints_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB of log, 2 KiB alerts: many laps, each forcing a checkpoint.
    let j = Journal::open_with(dir.path(), 64 << 10).unwrap();
    for n in 1..=300u64 {
        assert_eq!(seq(&one(&j, alert(n, 2048))), n);
    }
    let before = contents(&j);
    let copy = crash_copy(dir.path());
    let r = Journal::open_with(copy.path(), 64 << 10).unwrap();
    assert_eq!(contents(&r), before);
    drop(r);
    // Opened with another log size: the old log is replayed, then replaced.
    let r = Journal::open_with(copy.path(), 1 << 20).unwrap();
    assert_eq!(contents(&r), before);
    assert_eq!(
        std::fs::metadata(copy.path().join("tocsin.wal"))
            .unwrap()
            .len(),
        1 << 20
    );
    assert_eq!(seq(&one(&r, alert(301, 10))), 301);
}

#[test]
fn a_log_from_another_journal_is_not_replayed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ja = Journal::open(a.path()).unwrap();
    one(&ja, alert(1, 100));
    let copy = crash_copy(a.path());
    drop(Journal::open(b.path()).unwrap());
    // b's redb beside a's log.
    std::fs::copy(copy.path().join("tocsin.wal"), b.path().join("tocsin.wal")).unwrap();
    let jb = Journal::open(b.path()).unwrap();
    assert_eq!(jb.alert_count().unwrap(), 0);
}

/// Write nothing until the running checkpoint's result has been taken in.
fn end_of_checkpoint(j: &Journal) {
    while j.in_window() {
        std::thread::sleep(std::time::Duration::from_millis(5));
        j.write(&[]).unwrap();
    }
}

/// After a checkpoint, redb's file alone (without the log) reads back
/// what the journal shows.
fn redb_alone_reads_back_after_a_checkpoint(j: &Journal, dir: &Path) {
    let shown = contents(j);
    j.checkpoint().unwrap();
    let copy = crash_copy(dir);
    assert_eq!(contents(&redb_alone(copy.path()).1), shown);
}

fn duplicate_of(j: &Journal, a: NewAlert) -> Option<u64> {
    match one(j, a) {
        CommitOutcome::Duplicate(r) => Some(r.seq),
        _ => None,
    }
}

/// A checkpoint sent before a storage fault, still queued when the journal
/// reopens, never writes its older rows over the replay.
#[test]
fn a_checkpoint_sent_before_a_fault_never_runs_after_the_reopen() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path()).unwrap();
    one(&j, alert(1, 100));
    one(&j, alert(2, 100));
    let knobs = j.checkpoint_knobs();
    knobs.delay_ms.store(300, SeqCst);
    // The job (alerts 1 and 2) is slow to start.
    j.start_checkpoint().unwrap();
    let s3 = seq(&one(&j, alert(3, 100)));
    j.fault();
    // The next call reopens and replays.
    assert_eq!(j.alert_count().unwrap(), 3);
    knobs.delay_ms.store(0, SeqCst);
    // Time for a stale job to do harm, were it still to run.
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(seq(&one(&j, alert(4, 100))), s3 + 1);
    assert_eq!(duplicate_of(&j, alert(3, 100)), Some(s3));
    redb_alone_reads_back_after_a_checkpoint(&j, dir.path());
}

/// A failed checkpoint closes the database; the reopen replays the log, so
/// nothing answered is lost and the sequence goes on.
#[test]
fn a_failed_checkpoint_loses_nothing() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path()).unwrap();
    let s1 = seq(&one(&j, alert(1, 100)));
    let knobs = j.checkpoint_knobs();
    knobs.fail.store(true, SeqCst);
    j.start_checkpoint().unwrap();
    let s2 = seq(&one(&j, alert(2, 100)));
    end_of_checkpoint(&j);
    knobs.fail.store(false, SeqCst);
    assert_eq!(duplicate_of(&j, alert(1, 100)), Some(s1));
    assert_eq!(duplicate_of(&j, alert(2, 100)), Some(s2));
    assert_eq!(seq(&one(&j, alert(3, 100))), s2 + 1);
    redb_alone_reads_back_after_a_checkpoint(&j, dir.path());
}

/// Without a checkpoint thread, checkpoints refuse to start and the rows
/// stay in the overlay and the log: readers and the rules still see them.
#[test]
fn a_dead_checkpoint_thread_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path()).unwrap();
    let s1 = seq(&one(&j, alert(1, 100)));
    j.stop_checkpoints();
    assert!(j.start_checkpoint().is_err());
    let s2 = seq(&one(&j, alert(2, 100)));
    assert!(j.start_checkpoint().is_err());
    one(&j, alert(3, 100));
    assert_eq!(j.seq_of(&alert(1, 0).alert_id).unwrap(), Some(s1));
    assert_eq!(duplicate_of(&j, alert(2, 100)), Some(s2));
    assert_eq!(j.alert_count().unwrap(), 3);
    let before = contents(&j);
    let copy = crash_copy(dir.path());
    assert_eq!(contents(&Journal::open(copy.path()).unwrap()), before);
}
