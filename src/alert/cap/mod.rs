//! OASIS CAP 1.2: the model (`model`), a hardened parser (`parse`) and a
//! serialiser (`write`). Protocol-free: bytes in, typed alert out, and back.

mod limits;
mod model;
mod parse;
mod write;

pub use limits::CapLimits;
pub use model::*;
pub use parse::{parse, CapError};
pub use write::to_xml;
