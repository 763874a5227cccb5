//! Local servers that speak providers' real wire protocols (APNs and FCM over
//! HTTP/2 with TLS, the OAuth token endpoint, an SMPP 3.4 SMS centre, an SMTP
//! sink, a raw label-printer port), with fault injection. The
//! integration tests, the push bench and `tocsin demo` use them; they are
//! compiled into the library so the demo can run them in-process.
//!
//! `apns_server` (rules in `apns_request`) and `fcm_server` (rules in
//! `fcm_message`) are the servers; `tls` and `keys` make the throwaway
//! certificate and credentials they trust; `h2client` is a bare hyper
//! client for tests and the bench's baseline; `host` reads the machine
//! itself (wake-up lateness, steal) for load tests to print. Servers start on the current
//! tokio runtime at `127.0.0.1:0` and stop when dropped. Nothing here is
//! used by the daemon's production path.

pub mod apns_request;
pub mod apns_server;
pub mod faults;
pub mod fcm_message;
pub mod fcm_server;
pub mod h2client;
pub mod host;
mod jwt;
pub mod keys;
pub mod printer;
pub mod prom;
mod serve;
pub mod smsc;
pub mod smtp_sink;
pub mod tls;
