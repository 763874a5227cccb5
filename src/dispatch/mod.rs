//! Dispatch (DESIGN §6): a plan per alert (`plan`), jobs per alert × channel
//! run by the `dispatcher` with per-channel concurrency and token-bucket
//! rates (`rate`), retries with backoff bounded by expiry (`retry`), progress
//! counters (`progress`) and cursors committed to the journal in batches
//! (`cursors`).

pub mod cursors;
pub mod dispatcher;
pub mod plan;
pub mod progress;
pub mod rate;
pub mod retry;

pub use dispatcher::{ChannelLimits, Dispatcher, Widening};
pub use plan::{JobPlan, Partner, Plan, Scope, Targets};
pub use progress::{AlertProgress, JobProgress};
