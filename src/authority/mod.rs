//! Issuing authorities: who may sign alerts (`registry`), and the checks an
//! alert must pass before it is journaled (`policy`: keys, jurisdiction,
//! events, statuses, issuing standards, replay window, rate).

pub mod policy;
pub mod registry;

pub use policy::{VerifiedAlert, Verifier};
pub use registry::{Authority, AuthorityKey, Coverage, Registry, RegistryError};
