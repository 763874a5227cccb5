//! A pool of N HTTP/2 client connections over TLS to one `https://` origin
//! (hyper's low-level `client::conn::http2` on tokio-rustls, ALPN `h2`
//! required). Each connection multiplexes up to the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` requests; beyond that hyper queues the
//! request until a stream frees. Requests go round-robin over healthy
//! connections; a dead one (closed, failed, GOAWAY, failed keep-alive ping,
//! or two requests in a row unanswered within the request timeout) is replaced lazily — in the background while others are healthy, in the
//! caller when none is — with exponential reconnect backoff, so an outage
//! costs one connect attempt per slot per backoff step, not one per request.
//! `tocsin_push_connections{channel}` counts open connections. The pool
//! moves bytes only: it never interprets a status and never retries.
//!
//! Trust: the optional extra CA (PEM, for test servers) plus the platform
//! bundle (`SSL_CERT_FILE`, else the usual Linux paths). There is no
//! compiled-in root set: `webpki-roots` is only an indirect dependency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper::header::HeaderMap;
use hyper::http::uri::{Authority, PathAndQuery, Scheme, Uri};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::PushError;
use crate::metrics::{ChannelLabel, Metrics};

/// Response bodies larger than this are cut off (provider errors are tiny).
const MAX_BODY: usize = 64 * 1024;
/// First reconnect delay after a failed connect; doubles up to `MAX_BACKOFF`.
const BASE_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// HTTP/2 PING interval and timeout: finds connections that died silently.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in a row that ran out their time on one connection before it is
/// retired: a half-open connection (the peer gone without FIN or RST, or a
/// middlebox dropping everything) answers nothing, and the keep-alive ping
/// would find it only after up to `PING_INTERVAL + PING_TIMEOUT`.
const MAX_TIMEOUTS_IN_A_ROW: u32 = 2;
/// Platform CA bundles, tried in order after `SSL_CERT_FILE`.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Pool sizing and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// HTTP/2 connections kept open (at least 1).
    pub connections: usize,
    /// Whole request: connection checkout, send, response and body.
    pub request_timeout: Duration,
    /// DNS + TCP + TLS + HTTP/2 handshake of one connection.
    pub connect_timeout: Duration,
}

/// One answered request: status, headers and the (small) body.
#[derive(Debug)]
pub struct H2Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A pool of HTTP/2 connections to one origin; clone freely.
#[derive(Clone)]
pub struct H2Pool {
    inner: Arc<Inner>,
}

struct Inner {
    /// `https://host:port`, for error messages.
    origin: String,
    authority: Authority,
    /// Path of the base URL without a trailing `/` (usually empty).
    prefix: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    h2: Builder<TokioExecutor>,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    open: Gauge,
    request_timeout: Duration,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held while this slot connects: one attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// A background reconnect task is running.
    reconnecting: AtomicBool,
}

#[derive(Default)]
struct SlotState {
    conn: Option<(u64, SendRequest<Full<Bytes>>)>,
    generation: u64,
    failures: u32,
    /// Requests on the current connection that timed out since the last answer.
    timeouts: u32,
    next_try: Option<Instant>,
    last_error: String,
}

impl Slot {
    /// A clone of the live connection's sender; forgets a closed one.
    fn ready(&self) -> Option<(u64, SendRequest<Full<Bytes>>)> {
        let mut st = self.state.lock();
        match &st.conn {
            Some((gen, sr)) if !sr.is_closed() => Some((*gen, sr.clone())),
            Some(_) => {
                st.conn = None;
                None
            }
            None => None,
        }
    }
}

impl H2Pool {
    /// A pool to `base_url` (`https://host[:port][/prefix]`), trusting the
    /// platform roots plus `extra_ca_pem`. Connects lazily, on first use.
    pub fn new(
        channel: &'static str,
        base_url: &str,
        opts: PoolOptions,
        extra_ca_pem: Option<&[u8]>,
        metrics: &Metrics,
    ) -> Result<Self, PushError> {
        let bad = |reason: &str| PushError::BadUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = base_url.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme() != Some(&Scheme::HTTPS) {
            return Err(bad("the scheme must be https"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
        if uri.query().is_some() {
            return Err(bad("a query is not allowed"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(443);
        let server_name =
            ServerName::try_from(host.clone()).map_err(|e| bad(&format!("host: {e}")))?;
        let prefix = uri.path().trim_end_matches('/').to_owned();

        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| PushError::Tls(e.to_string()))?
        .with_root_certificates(root_store(extra_ca_pem)?)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];

        let mut h2 = Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true);

        let n = opts.connections.max(1);
        let open = metrics
            .push_connections
            .get_or_create(&ChannelLabel { channel })
            .clone();
        Ok(Self {
            inner: Arc::new(Inner {
                origin: format!("https://{authority}"),
                authority,
                prefix,
                host,
                port,
                server_name,
                tls: TlsConnector::from(Arc::new(cfg)),
                h2,
                slots: (0..n).map(|_| Slot::default()).collect(),
                next: AtomicUsize::new(0),
                open,
                request_timeout: opts.request_timeout,
                connect_timeout: opts.connect_timeout,
            }),
        })
    }

    /// The base URL's path without a trailing `/` (empty for a bare origin);
    /// request paths are this plus the provider's path.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// `https://<origin><path>` as a request URI (HTTP/2 needs scheme and authority).
    pub fn uri(&self, path: PathAndQuery) -> Uri {
        let mut parts = hyper::http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(self.inner.authority.clone());
        parts.path_and_query = Some(path);
        // Scheme, authority and path are each valid, so the parts form a valid URI.
        Uri::from_parts(parts).unwrap_or_default()
    }

    /// Send one request on a pooled connection and read the whole response,
    /// within the request timeout.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<H2Response, PushError> {
        tokio::time::timeout(self.inner.request_timeout, self.send_untimed(req))
            .await
            .map_err(|_| PushError::Timeout)?
    }

    /// [`send`](Self::send) without its own timer: for a caller that bounds
    /// a whole batch of requests, started together, by one deadline
    /// ([`request_timeout`](Self::request_timeout)) instead of arming one
    /// timer per request.
    pub async fn send_untimed(&self, req: Request<Full<Bytes>>) -> Result<H2Response, PushError> {
        let inner = &self.inner;
        let (slot, generation, mut sr) = inner.checkout().await?;
        let mut flight = InFlight {
            inner,
            slot,
            generation,
            started: Instant::now(),
            settled: false,
        };
        let sent = sr.send_request(req).await;
        flight.settled = true;
        let resp = match sent {
            Ok(r) => {
                inner.answered(slot, generation);
                r
            }
            Err(e) => {
                // Stream refused, connection reset or GOAWAY: whatever it
                // was, stop handing out this connection.
                inner.forget(slot, generation);
                return Err(PushError::Transport(e.to_string()));
            }
        };
        let (parts, body) = resp.into_parts();
        // Provider answers to a delivered notification have no body: skip
        // the collector unless the server says one follows.
        let body = if hyper::body::Body::is_end_stream(&body) {
            Bytes::new()
        } else {
            Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| PushError::Transport(format!("response body: {e}")))?
                .to_bytes()
        };
        Ok(H2Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// The whole-request timeout the pool was configured with.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Open connections right now (closed ones not yet noticed may count).
    pub fn open_connections(&self) -> usize {
        self.inner
            .slots
            .iter()
            .filter(|s| s.state.lock().conn.is_some())
            .count()
    }
}

/// A request between checkout and the response head. Dropped unanswered
/// after at least half the request timeout (the caller's deadline passed),
/// it counts as a timeout against its connection; dropped sooner (the
/// batch was cancelled) it counts for nothing.
struct InFlight<'a> {
    inner: &'a Inner,
    slot: usize,
    generation: u64,
    started: Instant,
    settled: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.settled && self.started.elapsed() >= self.inner.request_timeout / 2 {
            self.inner.timed_out(self.slot, self.generation);
        }
    }
}

impl Inner {
    /// A healthy connection, round-robin; connects one when none is.
    async fn checkout(
        self: &Arc<Self>,
    ) -> Result<(usize, u64, SendRequest<Full<Bytes>>), PushError> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for k in 0..n {
            let i = (start + k) % n;
            if let Some((generation, sr)) = self.slots[i].ready() {
                if k > 0 {
                    self.reconnect_in_background(start);
                }
                return Ok((i, generation, sr));
            }
        }
        // Boxed: the connect future (TCP + TLS + HTTP/2 handshake) is large,
        // and inlined it would make every request's future that large too.
        Box::pin(self.connect_slot(start)).await
    }

    fn reconnect_in_background(self: &Arc<Self>, i: usize) {
        let slot = &self.slots[i];
        {
            let st = slot.state.lock();
            if st.next_try.is_some_and(|t| Instant::now() < t) {
                return;
            }
        }
        if slot.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.connect_slot(i).await {
                tracing::debug!(origin = %me.origin, error = %e, "push reconnect failed");
            }
            me.slots[i].reconnecting.store(false, Ordering::Release);
        });
    }

    async fn connect_slot(
        self: &Arc<Self>,
        i: usize,
    ) -> Result<(usize, u64, SendRequest<Full<Bytes>>), PushError> {
        let slot = &self.slots[i];
        let _one_at_a_time = slot.connecting.lock().await;
        if let Some((generation, sr)) = slot.ready() {
            return Ok((i, generation, sr));
        }
        {
            let st = slot.state.lock();
            if st.next_try.is_some_and(|t| Instant::now() < t) {
                return Err(PushError::Connect {
                    origin: self.origin.clone(),
                    reason: format!(
                        "backing off after {} failed attempts: {}",
                        st.failures, st.last_error
                    ),
                });
            }
        }
        let result = match tokio::time::timeout(self.connect_timeout, self.connect()).await {
            Ok(r) => r,
            Err(_) => Err(PushError::Connect {
                origin: self.origin.clone(),
                reason: "timed out".into(),
            }),
        };
        let mut st = slot.state.lock();
        match result {
            Ok(sr) => {
                st.generation += 1;
                st.timeouts = 0;
                st.failures = 0;
                st.next_try = None;
                st.conn = Some((st.generation, sr.clone()));
                Ok((i, st.generation, sr))
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let shift = (st.failures - 1).min(16);
                let wait = BASE_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
                st.next_try = Some(Instant::now() + wait);
                st.last_error = e.to_string();
                tracing::warn!(origin = %self.origin, error = %e, failures = st.failures, "push connection failed");
                Err(e)
            }
        }
    }

    /// Stop handing out connection `generation` of slot `i` (if still current).
    /// The connection answered: its run of timeouts ends.
    fn answered(&self, i: usize, generation: u64) {
        let mut st = self.slots[i].state.lock();
        if st.generation == generation {
            st.timeouts = 0;
        }
    }

    /// A request on the connection ran out its time; retire the connection
    /// after `MAX_TIMEOUTS_IN_A_ROW`.
    fn timed_out(&self, i: usize, generation: u64) {
        let mut st = self.slots[i].state.lock();
        if st.generation != generation || st.conn.is_none() {
            return;
        }
        st.timeouts += 1;
        if st.timeouts >= MAX_TIMEOUTS_IN_A_ROW {
            st.conn = None;
            tracing::debug!(origin = %self.origin, "push connection retired after requests timed out");
        }
    }

    fn forget(&self, i: usize, generation: u64) {
        let mut st = self.slots[i].state.lock();
        if st.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            st.conn = None;
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, PushError> {
        let err = |reason: String| PushError::Connect {
            origin: self.origin.clone(),
            reason,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| err(format!("tcp: {e}")))?;
        // Small frames must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| err(format!("tls: {e}")))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
            return Err(err("server did not negotiate HTTP/2 (ALPN h2)".into()));
        }
        let (sr, conn) = self
            .h2
            .handshake(TokioIo::new(crate::runtime::Cooperative(tls)))
            .await
            .map_err(|e| err(format!("http2 handshake: {e}")))?;
        let open = self.open.clone();
        open.inc();
        let origin = self.origin.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%origin, error = %e, "push connection ended");
            }
            open.dec();
        });
        Ok(sr)
    }
}

/// Trusted roots: `extra_ca_pem` plus the platform bundle when one exists.
fn root_store(extra_ca_pem: Option<&[u8]>) -> Result<rustls::RootCertStore, PushError> {
    let mut store = rustls::RootCertStore::empty();
    if let Some(pem) = extra_ca_pem {
        let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<_, _>>()
            .map_err(|e| PushError::Tls(format!("extra CA: {e}")))?;
        if certs.is_empty() {
            return Err(PushError::Tls("extra CA: no certificate in the PEM".into()));
        }
        for c in certs {
            store
                .add(c)
                .map_err(|e| PushError::Tls(format!("extra CA: {e}")))?;
        }
    }
    let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let bundle = env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
        .find_map(|p| std::fs::read(p).ok());
    if let Some(pem) = bundle {
        let mut rd = pem.as_slice();
        let certs = rustls_pemfile::certs(&mut rd).filter_map(Result::ok);
        store.add_parsable_certificates(certs);
    }
    if store.is_empty() {
        return Err(PushError::Tls(
            "no trusted roots: set the channel's `ca` or install the system CA bundle".into(),
        ));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PoolOptions {
        PoolOptions {
            connections: 2,
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(500),
        }
    }

    #[test]
    fn base_urls_are_checked() {
        let m = Metrics::new();
        for bad in ["http://x", "https://", "not a url", "https://h/?q=1"] {
            assert!(
                H2Pool::new("apns", bad, opts(), None, &m).is_err(),
                "{bad} accepted"
            );
        }
        let p = H2Pool::new("apns", "https://example.test:8443/base/", opts(), None, &m);
        if let Ok(p) = p {
            assert_eq!(p.prefix(), "/base");
            let u = p.uri(PathAndQuery::from_static("/base/3/device/x"));
            assert_eq!(u.to_string(), "https://example.test:8443/base/3/device/x");
        }
    }

    #[test]
    fn garbage_ca_is_an_error() {
        let m = Metrics::new();
        let r = H2Pool::new("apns", "https://h", opts(), Some(b"nope"), &m);
        assert!(matches!(r, Err(PushError::Tls(_))));
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error_then_backs_off() {
        // Bind then drop a listener: its port refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .map(|c| c.cert.pem())
            .unwrap_or_default();
        let m = Metrics::new();
        let Ok(p) = H2Pool::new(
            "apns",
            &format!("https://127.0.0.1:{port}"),
            PoolOptions {
                connections: 1,
                ..opts()
            },
            Some(ca.as_bytes()),
            &m,
        ) else {
            panic!("pool")
        };
        let req = || {
            Request::post(p.uri(PathAndQuery::from_static("/x")))
                .body(Full::new(Bytes::new()))
                .unwrap_or_default()
        };
        let first = p.send(req()).await;
        assert!(matches!(first, Err(PushError::Connect { .. })), "{first:?}");
        let second = p.send(req()).await;
        match second {
            Err(PushError::Connect { reason, .. }) => assert!(reason.contains("backing off")),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.open_connections(), 0);
    }
}
