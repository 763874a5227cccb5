//! The durable journal (DESIGN §8): one redb file in the state directory
//! holding accepted alerts (record + envelope as received), the alert-id
//! index used for duplicates and references, job cursors and counts, and
//! subscribers. Alerts commit with `Durability::Immediate` before any receipt
//! says "accepted"; the group committer (`commit.rs`) batches concurrent
//! submissions into one fsync. Cursors commit in batches (`cursors`).

mod commit;
mod records;
mod store;

pub use commit::{CommitOutcome, GroupCommitter, NewAlert};
pub use records::{AlertRecord, AlertState, CursorRecord, SubscriberRecord};
pub use store::{Change, Journal, JournalError, SubscriberImport};
