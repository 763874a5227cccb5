//! Issuing authorities: who may sign alerts (`registry`), and the checks an
//! alert must pass before it is journaled (`policy`: keys, jurisdiction,
//! events, statuses, issuing standards, replay window, rate), and the live
//! registry a SIGHUP reloads (`shared`).

pub mod policy;
pub mod registry;
pub mod shared;

pub use policy::{VerifiedAlert, Verifier};
pub use registry::{Authority, AuthorityKey, Coverage, Registry, RegistryError};
pub use shared::{ReloadReport, SharedRegistry};
