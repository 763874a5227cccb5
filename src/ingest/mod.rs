//! Ingest: the QUIC server (`quic`), the receipt format (`protocol`) and the
//! pipeline from bytes to a durable, dispatched alert (`pipeline`).

pub mod pipeline;
pub mod protocol;
pub mod quic;

pub use pipeline::Pipeline;
pub use protocol::Receipt;
