//! tocsin: an emergency-alert fan-out daemon. Signed CAP 1.2 alerts arrive
//! over QUIC, are verified against issuing authorities and their policy,
//! journaled durably, targeted to subscribers through an H3-sorted index and
//! fanned out to channels (partner feeds first; push, SMS, e-mail and labels
//! plug into the same `Channel` trait). This file only declares modules.

pub mod alert;
pub mod authority;
pub mod channel;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dev;
pub mod dispatch;
pub mod http;
pub mod ingest;
pub mod journal;
pub mod metrics;
pub mod reject;
pub mod runtime;
pub mod subscribers;
pub mod target;
pub mod testkit;
pub mod tls;
