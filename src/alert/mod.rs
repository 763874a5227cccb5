//! Alerts as they arrive: the CAP 1.2 document (`cap`) and the signed COSE
//! envelope around it (`envelope`).

pub mod cap;
pub mod envelope;
