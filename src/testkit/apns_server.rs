//! A local APNs provider API: HTTP/2 over TLS (ALPN `h2` only, like
//! `api.push.apple.com`), `POST /3/device/{token}` with token-based (ES256
//! JWT) authentication, following Apple's "Sending notification requests to
//! APNs" and "Handling notification responses from APNs": the same request
//! headers, status codes and `{"reason": …}` bodies, `apns-id` on every
//! answer, `SETTINGS_MAX_CONCURRENT_STREAMS` 1000 by default. Tests and the
//! bench tell it to throttle (429 with `Retry-After`, which Apple does not
//! send but tocsin honours), fail (503), expire the provider token (403) or
//! drop a connection, through atomics on [`ApnsState`].
//!
//! Deliberately not done: certificate-based auth, push types other than
//! `alert`, `TooManyProviderTokenUpdates`, `DeviceTokenNotForTopic`,
//! `IdleTimeout` and the `Shutdown` GOAWAY, payload limits
//! for VoIP (5 KB). A malformed JSON payload is answered 400 `BadPayload`, a
//! reason Apple does not document. Provider tokens are verified once per
//! distinct token string and cached, so a bench measures the client, not
//! this server's ECDSA.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use super::apns_request::{
    check_headers, check_payload, check_token_shape, duplicate_headers, is_uuid, token_age_ok,
    verify_jwt, Meta,
};
pub use super::apns_request::{Reason, MAX_COLLAPSE_ID, MAX_PAYLOAD};
use super::keys::ApnsTestKey;
use super::serve::{self, take, unix_millis, unix_secs, ConnKill};
use super::tls::TestTls;

/// The topic [`ApnsServerOptions::from_key`] configures.
pub const DEFAULT_TOPIC: &str = "org.tocsin.alerts";
/// Bodies are read up to this size; anything larger is 413 anyway.
const BODY_READ_LIMIT: usize = 64 * 1024;
/// Distinct provider tokens remembered before the cache is cleared.
const JWT_CACHE_MAX: usize = 4096;

/// How the server is set up; fixed for its lifetime.
#[derive(Clone, Debug)]
pub struct ApnsServerOptions {
    /// Expected `iss` of provider tokens.
    pub team_id: String,
    /// Expected `kid` of provider tokens.
    pub key_id: String,
    /// Uncompressed P-256 point provider tokens are verified with.
    pub public_key: Vec<u8>,
    /// The only `apns-topic` accepted (the app's bundle id).
    pub topic: String,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` per connection.
    pub max_concurrent_streams: u32,
    /// Keep every accepted notification in [`ApnsState::received`].
    pub record: bool,
    /// Count accepted notifications per token even without `record` (cheap
    /// exactly-once checks over a million deliveries).
    pub count_tokens: bool,
}

impl ApnsServerOptions {
    /// Options trusting `key`, topic [`DEFAULT_TOPIC`], 1000 streams,
    /// recording on.
    pub fn from_key(key: &ApnsTestKey) -> ApnsServerOptions {
        ApnsServerOptions {
            team_id: key.team_id.clone(),
            key_id: key.key_id.clone(),
            public_key: key.public_key.clone(),
            topic: DEFAULT_TOPIC.to_string(),
            max_concurrent_streams: 1000,
            record: true,
            count_tokens: true,
        }
    }
}

/// One notification the server accepted (recorded only with `record`).
#[derive(Clone, Debug, PartialEq)]
pub struct ApnsReceived {
    /// The device token from the path.
    pub token: String,
    /// `apns-id` as the client sent it.
    pub apns_id: Option<String>,
    /// `apns-collapse-id`.
    pub collapse_id: Option<String>,
    /// `apns-expiration` (Unix seconds; 0 = deliver once or never).
    pub expiration: Option<u64>,
    /// `apns-priority` (10 when absent, as Apple assumes).
    pub priority: u8,
    /// `apns-push-type`.
    pub push_type: String,
    /// `apns-topic`.
    pub topic: String,
    /// The JSON payload.
    pub payload: serde_json::Value,
}

/// Shared state: fault switches (set them from the test), counters and the
/// record. Every switch is read on each request.
#[derive(Debug)]
pub struct ApnsState {
    /// Answer the next N requests 429 `TooManyRequests` with `Retry-After`.
    pub throttle_next: AtomicU32,
    /// The `Retry-After` seconds sent with 429 (default 1).
    pub retry_after_secs: AtomicU64,
    /// Answer the next N requests 503 `ServiceUnavailable`.
    pub fail_next: AtomicU32,
    /// Answer the next N requests 403 `ExpiredProviderToken`.
    pub expire_next: AtomicU32,
    /// When [`requests`](Self::requests) reaches this value, drop that
    /// request's TCP connection (RST, no answers), then reset to 0.
    /// 0 = never. See [`ApnsState::close_after_next`].
    pub close_after: AtomicU64,
    /// Hold every answer this long.
    pub delay_ms: AtomicU64,
    /// Freeze the connection of the next N requests: half-open, the socket
    /// stays open but nothing more is read, answered or PING-acknowledged.
    pub freeze_next: AtomicU32,
    /// Requests seen (every request, whatever its outcome).
    pub requests: AtomicU64,
    /// Requests answered 200.
    pub delivered: AtomicU64,
    /// Accepted notifications in arrival order (only with `record`).
    pub received: Mutex<Vec<ApnsReceived>>,
    /// Accepted notifications per device token (only with `record`).
    pub by_token: Mutex<HashMap<String, u32>>,
    unregistered: RwLock<HashMap<String, u64>>,
    bad_tokens: RwLock<HashSet<String>>,
    jwt_cache: RwLock<HashMap<Box<str>, Result<i64, Reason>>>,
    id_seed: u64,
    id_counter: AtomicU64,
    cfg: ApnsServerOptions,
}

impl ApnsState {
    fn new(cfg: ApnsServerOptions) -> ApnsState {
        ApnsState {
            throttle_next: AtomicU32::new(0),
            retry_after_secs: AtomicU64::new(1),
            fail_next: AtomicU32::new(0),
            expire_next: AtomicU32::new(0),
            close_after: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            freeze_next: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            received: Mutex::new(Vec::new()),
            by_token: Mutex::new(HashMap::new()),
            unregistered: RwLock::new(HashMap::new()),
            bad_tokens: RwLock::new(HashSet::new()),
            jwt_cache: RwLock::new(HashMap::new()),
            id_seed: rand::random(),
            id_counter: AtomicU64::new(0),
            cfg,
        }
    }

    /// From now on answer `token` 410 `Unregistered` (timestamp = now).
    pub fn mark_unregistered(&self, token: &str) {
        self.unregistered
            .write()
            .insert(token.to_string(), unix_millis());
    }

    /// From now on answer `token` 400 `BadDeviceToken`.
    pub fn mark_bad_token(&self, token: &str) {
        self.bad_tokens.write().insert(token.to_string());
    }

    /// Drop the connection carrying the `n`-th request from now (n ≥ 1).
    pub fn close_after_next(&self, n: u64) {
        let now = self.requests.load(Ordering::SeqCst);
        self.close_after.store(now + n.max(1), Ordering::SeqCst);
    }

    /// Requests answered 200 so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    /// A copy of the record.
    pub fn received(&self) -> Vec<ApnsReceived> {
        self.received.lock().clone()
    }

    /// Accepted notifications for `token` (only with `record`).
    pub fn count_for(&self, token: &str) -> u32 {
        self.by_token.lock().get(token).copied().unwrap_or(0)
    }

    /// The options the server runs with.
    pub fn options(&self) -> &ApnsServerOptions {
        &self.cfg
    }

    /// A fresh UUID-shaped id (version 4 bits set), uppercase like Apple's.
    fn next_id(&self) -> HeaderValue {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let v = (u128::from(self.id_seed) << 64) | u128::from(n);
        // version 4, variant 10xx
        let v = (v & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        // Apple answers with upper-case UUIDs.
        let mut buf = crate::channel::content::uuid_text(&v.to_be_bytes());
        buf.make_ascii_uppercase();
        HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static(""))
    }
}

/// A running APNs-protocol server; dropping it shuts it down.
pub struct ApnsServer {
    addr: SocketAddr,
    tls: TestTls,
    state: Arc<ApnsState>,
    cancel: CancellationToken,
}

impl ApnsServer {
    /// Start on `127.0.0.1:0` on the current tokio runtime.
    pub fn start(opts: ApnsServerOptions) -> std::io::Result<ApnsServer> {
        let tls = TestTls::localhost()?;
        let streams = opts.max_concurrent_streams;
        let state = Arc::new(ApnsState::new(opts));
        let st = state.clone();
        let listening = serve::listen(
            serve::bind()?,
            tls.server_config(&[b"h2"])?,
            move |io, kill| {
                let st = st.clone();
                async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        let kill = kill.clone();
                        async move { Ok::<_, Infallible>(handle(&st, &kill, req).await) }
                    });
                    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    b.max_concurrent_streams(streams);
                    // On an idle-class runtime (the load test's), it gives
                    // the CPU back as the daemon's fan-out does.
                    let io = TokioIo::new(crate::runtime::Cooperative(io));
                    let _ = b.serve_connection(io, svc).await;
                }
            },
        )?;
        Ok(ApnsServer {
            addr: listening.addr,
            tls,
            state,
            cancel: listening.cancel,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`, the base URL a client is configured with.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The PEM a client trusts to reach this server.
    pub fn ca_pem(&self) -> &[u8] {
        self.tls.ca_pem()
    }

    /// Fault switches, counters and the record.
    pub fn state(&self) -> Arc<ApnsState> {
        self.state.clone()
    }

    /// Stop accepting and drop every connection.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for ApnsServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

type Resp = Response<Full<Bytes>>;

/// `{"reason":"…"}` answer with `apns-id`.
fn reject(reason: Reason, apns_id: HeaderValue) -> Resp {
    let body = format!("{{\"reason\":\"{}\"}}", reason.as_str());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = reason.status();
    r.headers_mut().insert("apns-id", apns_id);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(st: &ApnsState, kill: &ConnKill, req: Request<Incoming>) -> Resp {
    let n = st.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if serve::close_due(n, &st.close_after) {
        kill.fire();
        // Never answer: the connection task drops the socket.
        return std::future::pending().await;
    }
    if take(&st.freeze_next) {
        kill.freeze();
        return std::future::pending().await;
    }
    let delay = st.delay_ms.load(Ordering::Relaxed);
    if delay != 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let apns_id = match req.headers().get("apns-id") {
        Some(v) if is_uuid(v.as_bytes()) => v.clone(),
        Some(_) => return reject(Reason::BadMessageId, st.next_id()),
        None => st.next_id(),
    };
    match check(st, &req) {
        Ok(meta) => {
            let (parts, body) = req.into_parts();
            let body = match Limited::new(body, BODY_READ_LIMIT).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return reject(Reason::PayloadTooLarge, apns_id),
            };
            if let Err(reason) = check_payload(&body) {
                return reject(reason, apns_id);
            }
            st.delivered.fetch_add(1, Ordering::SeqCst);
            let token = parts.uri.path().trim_start_matches("/3/device/");
            if st.cfg.record {
                record(st, &parts.headers, token, &meta, &body);
            } else if st.cfg.count_tokens {
                *st.by_token.lock().entry(token.to_string()).or_insert(0) += 1;
            }
            let mut r = Response::new(Full::new(Bytes::new()));
            r.headers_mut().insert("apns-id", apns_id);
            r.headers_mut().insert("apns-unique-id", st.next_id());
            r
        }
        Err(Rejection::Plain(reason)) => reject(reason, apns_id),
        Err(Rejection::Throttled) => {
            let mut r = reject(Reason::TooManyRequests, apns_id);
            let secs = st.retry_after_secs.load(Ordering::Relaxed);
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Err(Rejection::Unregistered(ts)) => {
            let body = format!("{{\"reason\":\"Unregistered\",\"timestamp\":{ts}}}");
            let mut r = reject(Reason::Unregistered, apns_id);
            *r.body_mut() = Full::new(Bytes::from(body));
            r
        }
    }
}

fn record(st: &ApnsState, h: &HeaderMap, token: &str, meta: &Meta, body: &[u8]) {
    let s = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let rec = ApnsReceived {
        token: token.to_string(),
        apns_id: s("apns-id"),
        collapse_id: s("apns-collapse-id"),
        expiration: meta.expiration,
        priority: meta.priority,
        push_type: s("apns-push-type").unwrap_or_default(),
        topic: s("apns-topic").unwrap_or_default(),
        payload: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
    };
    *st.by_token.lock().entry(rec.token.clone()).or_insert(0) += 1;
    st.received.lock().push(rec);
}

enum Rejection {
    Plain(Reason),
    Throttled,
    Unregistered(u64),
}

impl From<Reason> for Rejection {
    fn from(r: Reason) -> Self {
        Rejection::Plain(r)
    }
}

/// Everything but the body: path, method, faults, auth, headers, token.
fn check(st: &ApnsState, req: &Request<Incoming>) -> Result<Meta, Rejection> {
    let token = req
        .uri()
        .path()
        .strip_prefix("/3/device/")
        .ok_or(Reason::BadPath)?;
    if token.contains('/') {
        return Err(Reason::BadPath.into());
    }
    if req.method() != Method::POST {
        return Err(Reason::MethodNotAllowed.into());
    }
    if take(&st.expire_next) {
        return Err(Reason::ExpiredProviderToken.into());
    }
    if take(&st.throttle_next) {
        return Err(Rejection::Throttled);
    }
    if take(&st.fail_next) {
        return Err(Reason::ServiceUnavailable.into());
    }
    let h = req.headers();
    duplicate_headers(h)?;
    check_auth(st, h.get(hyper::header::AUTHORIZATION))?;
    let meta = check_headers(h, &st.cfg.topic)?;
    check_token_shape(token)?;
    {
        let bad = st.bad_tokens.read();
        if !bad.is_empty() && bad.contains(token) {
            return Err(Reason::BadDeviceToken.into());
        }
    }
    {
        let gone = st.unregistered.read();
        if let Some(ts) = gone.get(token) {
            return Err(Rejection::Unregistered(*ts));
        }
    }
    Ok(meta)
}

/// `authorization: bearer <JWT>`, verified once per distinct token.
fn check_auth(st: &ApnsState, auth: Option<&HeaderValue>) -> Result<(), Reason> {
    let auth = auth
        .and_then(|v| v.to_str().ok())
        .ok_or(Reason::MissingProviderToken)?;
    let token = match auth.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(Reason::InvalidProviderToken),
    };
    if token.is_empty() {
        return Err(Reason::MissingProviderToken);
    }
    let cached = st.jwt_cache.read().get(token).copied();
    let verdict = match cached {
        Some(v) => v,
        None => {
            let c = &st.cfg;
            let v = verify_jwt(token, &c.team_id, &c.key_id, &c.public_key);
            let mut cache = st.jwt_cache.write();
            if cache.len() >= JWT_CACHE_MAX {
                cache.clear();
            }
            cache.insert(token.into(), v);
            v
        }
    };
    token_age_ok(verdict?, unix_secs())
}

#[cfg(test)]
#[path = "apns_server_tests.rs"]
mod tests;
