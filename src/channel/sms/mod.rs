//! SMS channel: sends alerts as SMS through SMPP or HTTP gateways. [`text`] owns the pure
//! coding, segmentation and template rules the transports share; it never does I/O.
pub mod text;
