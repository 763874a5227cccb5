//! The durable journal (DESIGN §8): one redb file in the state directory
//! holding accepted alerts (record + envelope as received), the alert-id
//! index used for duplicates and references, job cursors and counts, and
//! subscribers, with a write-ahead log beside it (`wal.rs`). Alerts are in
//! the log, fsynced, before any receipt says "accepted"; the group committer
//! (`commit.rs`) batches concurrent submissions into one fsync. Logged
//! groups live in memory (`overlay.rs`) until a checkpoint writes them to
//! redb durably, off the receipt path (`checkpoint.rs`). Cursors commit in
//! batches (`cursors`).

mod change;
mod checkpoint;
mod commit;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod log_tests;
mod overlay;
mod records;
mod rules;
mod store;
mod wal;

pub use change::Change;
pub use commit::{CommitOutcome, GroupCommitter, GroupTimes, NewAlert};
pub use records::{AlertRecord, AlertState, CursorRecord, SubscriberRecord};
pub use store::{Journal, JournalError, SubscriberImport};
