//! Ingest: the QUIC server (`quic`), the receipt format (`protocol`) and the
//! pipeline from bytes to a durable, dispatched alert (`pipeline`), and the
//! widening schedule of an alert (`widening`).

pub mod budget;
pub mod pipeline;
pub mod protocol;
pub mod quic;
pub mod widening;

pub use pipeline::Pipeline;
pub use protocol::Receipt;
