//! A local FCM HTTP v1 endpoint and OAuth2 token endpoint over TLS (HTTP/2
//! or HTTP/1.1 by ALPN, since token requests often use HTTP/1.1).
//! `POST /token` implements the JWT-bearer grant (RFC 7523) as Google's
//! "Using OAuth 2.0 for Server to Server Applications" describes it: an RS256
//! assertion from the service account (`iss` = client email, `aud` = this
//! token URL, the `firebase.messaging` scope, at most an hour long) buys an
//! opaque access token valid for 3600 s. `POST
//! /v1/projects/{project}/messages:send` follows the FCM v1 reference:
//! bearer token, the `Message` body checked by [`fcm_message`], answers
//! `{"name": "projects/…/messages/…"}` or Google's JSON error with an
//! `FcmError` detail. Faults through atomics on [`FcmState`]: throttle (429
//! `QUOTA_EXCEEDED` with `Retry-After`, as FCM sends), fail (503
//! `UNAVAILABLE`), drop a connection, revoke every issued access token.
//!
//! Deliberately not done: topics and conditions, `validate_only`, batch
//! sends, token introspection, `refresh_token` grants, the `SENDER_ID_MISMATCH`
//! and `THIRD_PARTY_AUTH_ERROR` codes. A scope problem is answered
//! `invalid_scope` as Google does, not `invalid_grant`.
//!
//! [`fcm_message`]: super::fcm_message

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::fcm_message::{self, ApiError};
use super::jwt;
use super::keys::{self, ServiceAccountError, ServiceAccountPublic, FCM_SCOPE};
use super::serve::{self, take, unix_millis, unix_secs, ConnKill};
use super::tls::TestTls;

/// Lifetime of an issued access token.
const ACCESS_TOKEN_SECS: i64 = 3600;
/// Longest assertion Google accepts (`exp - iat`).
const MAX_ASSERTION_SECS: i64 = 3600;
/// Clock skew tolerated for an `iat` in the future.
const FUTURE_SKEW_SECS: i64 = 60;
/// Bodies are read up to this size (a send body is ~4 KB at most).
const BODY_READ_LIMIT: usize = 64 * 1024;
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How the server is set up; fixed for its lifetime.
#[derive(Clone, Debug)]
pub struct FcmServerOptions {
    /// The only project sends are accepted for.
    pub project_id: String,
    /// The service account whose assertions the token endpoint accepts.
    pub service_account: ServiceAccountPublic,
    /// Keep every accepted message in [`FcmState::received`].
    pub record: bool,
    /// Count accepted messages per token even without `record`.
    pub count_tokens: bool,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` per HTTP/2 connection.
    pub max_concurrent_streams: u32,
}

impl FcmServerOptions {
    /// Options for a service-account JSON: its project, recording on.
    pub fn from_json(service_account_json: &str) -> Result<FcmServerOptions, ServiceAccountError> {
        let sa = ServiceAccountPublic::from_json(service_account_json)?;
        Ok(FcmServerOptions {
            project_id: sa.project_id.clone(),
            service_account: sa,
            record: true,
            count_tokens: true,
            max_concurrent_streams: 1000,
        })
    }

    /// Options for [`keys::test_service_account`] (project `tocsin-test`).
    pub fn test() -> FcmServerOptions {
        FcmServerOptions::from_json(keys::test_service_account())
            .expect("the bundled test service account parses")
    }
}

/// One message the server accepted (recorded only with `record`).
#[derive(Clone, Debug, PartialEq)]
pub struct FcmReceived {
    /// `message.token`.
    pub token: String,
    /// The whole `message` object.
    pub message: Value,
    /// The `Authorization` header it came with.
    pub authorization: String,
}

/// Shared state: fault switches, counters, issued tokens and the record.
#[derive(Debug)]
pub struct FcmState {
    /// Answer the next N sends 429 `RESOURCE_EXHAUSTED` with `Retry-After`.
    pub throttle_next: AtomicU32,
    /// The `Retry-After` seconds sent with 429 (default 1).
    pub retry_after_secs: AtomicU64,
    /// Answer the next N sends 503 `UNAVAILABLE`.
    pub fail_next: AtomicU32,
    /// When [`requests`](Self::requests) reaches this value, drop that
    /// send's TCP connection (RST, no answers), then reset to 0. 0 = never.
    pub close_after: AtomicU64,
    /// Hold every send's answer this long.
    pub delay_ms: AtomicU64,
    /// `POST /token` requests seen.
    pub token_requests: AtomicU64,
    /// Send requests seen (every outcome).
    pub requests: AtomicU64,
    /// Sends answered 200.
    pub delivered: AtomicU64,
    /// Accepted messages in arrival order (only with `record`).
    pub received: Mutex<Vec<FcmReceived>>,
    /// Accepted messages per registration token (only with `record`).
    pub by_token: Mutex<HashMap<String, u32>>,
    unregistered: RwLock<HashSet<String>>,
    invalid_tokens: RwLock<HashSet<String>>,
    /// access token → expiry (Unix seconds).
    issued: RwLock<HashMap<String, i64>>,
    issued_count: AtomicU64,
    message_count: AtomicU64,
    audiences: Vec<String>,
    cfg: FcmServerOptions,
}

impl FcmState {
    /// From now on answer sends to `token` 404 `UNREGISTERED`.
    pub fn mark_unregistered(&self, token: &str) {
        self.unregistered.write().insert(token.to_string());
    }

    /// From now on answer sends to `token` 400 `INVALID_ARGUMENT`.
    pub fn mark_invalid_token(&self, token: &str) {
        self.invalid_tokens.write().insert(token.to_string());
    }

    /// Invalidate every access token issued so far (the next send with one
    /// is 401; the client must fetch a new token).
    pub fn revoke_tokens(&self) {
        self.issued.write().clear();
    }

    /// Drop the connection carrying the `n`-th send from now (n ≥ 1).
    pub fn close_after_next(&self, n: u64) {
        let now = self.requests.load(Ordering::SeqCst);
        self.close_after.store(now + n.max(1), Ordering::SeqCst);
    }

    /// Sends answered 200 so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    /// Access tokens issued so far.
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::SeqCst)
    }

    /// A copy of the record.
    pub fn received(&self) -> Vec<FcmReceived> {
        self.received.lock().clone()
    }

    /// Accepted messages for `token` (only with `record`).
    pub fn count_for(&self, token: &str) -> u32 {
        self.by_token.lock().get(token).copied().unwrap_or(0)
    }

    /// The options the server runs with.
    pub fn options(&self) -> &FcmServerOptions {
        &self.cfg
    }
}

/// A running FCM-protocol server; dropping it shuts it down.
pub struct FcmServer {
    addr: SocketAddr,
    tls: TestTls,
    state: Arc<FcmState>,
    cancel: CancellationToken,
}

impl FcmServer {
    /// Start on `127.0.0.1:0` on the current tokio runtime.
    pub fn start(opts: FcmServerOptions) -> std::io::Result<FcmServer> {
        let tls = TestTls::localhost()?;
        let streams = opts.max_concurrent_streams;
        let listener = serve::bind()?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let state = Arc::new(FcmState {
            throttle_next: AtomicU32::new(0),
            retry_after_secs: AtomicU64::new(1),
            fail_next: AtomicU32::new(0),
            close_after: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            received: Mutex::new(Vec::new()),
            by_token: Mutex::new(HashMap::new()),
            unregistered: RwLock::new(HashSet::new()),
            invalid_tokens: RwLock::new(HashSet::new()),
            issued: RwLock::new(HashMap::new()),
            issued_count: AtomicU64::new(0),
            message_count: AtomicU64::new(0),
            audiences: vec![
                format!("https://127.0.0.1:{port}/token"),
                format!("https://localhost:{port}/token"),
            ],
            cfg: opts,
        });
        let st = state.clone();
        let listening = serve::listen(
            listener,
            tls.server_config(&[b"h2", b"http/1.1"])?,
            move |io, kill| {
                let st = st.clone();
                async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        let kill = kill.clone();
                        async move { Ok::<_, Infallible>(handle(&st, &kill, req).await) }
                    });
                    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    b.http2().max_concurrent_streams(streams);
                    let _ = b.serve_connection(TokioIo::new(io), svc).await;
                }
            },
        )?;
        Ok(FcmServer {
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

    /// `https://127.0.0.1:PORT`, the FCM base URL a client is configured with.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT/token`, the OAuth token endpoint (and the
    /// `aud` assertions must carry; the `localhost` spelling is accepted too).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// The PEM a client trusts to reach this server.
    pub fn ca_pem(&self) -> &[u8] {
        self.tls.ca_pem()
    }

    /// Fault switches, counters and the record.
    pub fn state(&self) -> Arc<FcmState> {
        self.state.clone()
    }

    /// Invalidate every issued access token (see [`FcmState::revoke_tokens`]).
    pub fn revoke_tokens(&self) {
        self.state.revoke_tokens();
    }

    /// Stop accepting and drop every connection.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for FcmServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

fn api_error(e: &ApiError) -> Resp {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &e.body())
}

fn plain_error(code: u16, status: &'static str, message: &str) -> ApiError {
    ApiError {
        code,
        status,
        message: message.to_string(),
        fcm_code: None,
        field: None,
    }
}

async fn handle(st: &FcmState, kill: &ConnKill, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if path == "/token" {
        if parts.method != Method::POST {
            return api_error(&plain_error(404, "NOT_FOUND", "Method not found."));
        }
        st.token_requests.fetch_add(1, Ordering::SeqCst);
        return token_endpoint(st, body).await;
    }
    let project = path
        .strip_prefix("/v1/projects/")
        .and_then(|rest| rest.strip_suffix("/messages:send"))
        .filter(|p| !p.is_empty() && !p.contains('/'));
    let (Some(project), true) = (project, parts.method == Method::POST) else {
        return api_error(&plain_error(404, "NOT_FOUND", "Method not found."));
    };
    let n = st.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if serve::close_due(n, &st.close_after) {
        kill.fire();
        // Never answer: the connection task drops the socket.
        return std::future::pending().await;
    }
    let delay = st.delay_ms.load(Ordering::Relaxed);
    if delay != 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let authorization = match check_bearer(st, &parts.headers) {
        Ok(a) => a,
        Err(e) => return api_error(&e),
    };
    if project != st.cfg.project_id {
        return api_error(&plain_error(
            403,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            ),
        ));
    }
    if take(&st.throttle_next) {
        let mut r = api_error(&ApiError {
            code: 429,
            status: "RESOURCE_EXHAUSTED",
            message: "Quota exceeded for quota metric 'Send requests'.".into(),
            fcm_code: Some("QUOTA_EXCEEDED"),
            field: None,
        });
        let secs = st.retry_after_secs.load(Ordering::Relaxed);
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    if take(&st.fail_next) {
        return api_error(&ApiError {
            code: 503,
            status: "UNAVAILABLE",
            message: "The service is currently unavailable.".into(),
            fcm_code: Some("UNAVAILABLE"),
            field: None,
        });
    }
    let body = match Limited::new(body, BODY_READ_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return api_error(&ApiError::invalid(
                "Request payload size exceeds the limit.",
            ))
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return api_error(&ApiError::invalid(format!(
                "Invalid JSON payload received. {e}"
            )))
        }
    };
    let token = match fcm_message::validate(&value) {
        Ok(t) => t,
        Err(e) => return api_error(&e),
    };
    if st.invalid_tokens.read().contains(token) {
        return api_error(&ApiError::invalid(
            "The registration token is not a valid FCM registration token",
        ));
    }
    if st.unregistered.read().contains(token) {
        return api_error(&ApiError {
            code: 404,
            status: "NOT_FOUND",
            message: "Requested entity was not found.".into(),
            fcm_code: Some("UNREGISTERED"),
            field: None,
        });
    }
    st.delivered.fetch_add(1, Ordering::SeqCst);
    if st.cfg.record || st.cfg.count_tokens {
        *st.by_token.lock().entry(token.to_string()).or_insert(0) += 1;
    }
    if st.cfg.record {
        st.received.lock().push(FcmReceived {
            token: token.to_string(),
            message: value["message"].clone(),
            authorization,
        });
    }
    let id = st.message_count.fetch_add(1, Ordering::Relaxed);
    json_response(
        StatusCode::OK,
        &json!({
            "name": format!("projects/{project}/messages/0:{}%{id:016x}", unix_millis())
        }),
    )
}

/// The `Authorization: Bearer` token must be one we issued and still valid;
/// returns the header for the record.
fn check_bearer(st: &FcmState, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthenticated = || {
        plain_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
    };
    let header = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthenticated)?;
    let token = match header.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(unauthenticated()),
    };
    match st.issued.read().get(token) {
        Some(exp) if *exp > unix_secs() => Ok(header.to_string()),
        _ => Err(unauthenticated()),
    }
}

fn oauth_error(error: &str, description: &str) -> Resp {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
}

async fn token_endpoint(st: &FcmState, body: Incoming) -> Resp {
    let body = match Limited::new(body, BODY_READ_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return oauth_error("invalid_request", "Request too large."),
    };
    let form = parse_form(&body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match get("grant_type") {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )
        }
        None => return oauth_error("invalid_request", "Missing required parameter: grant_type"),
    }
    let Some(assertion) = get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    if let Err((error, description)) = verify_assertion(st, assertion) {
        return oauth_error(error, &description);
    }
    let n = st.issued_count.fetch_add(1, Ordering::SeqCst) + 1;
    let access_token = format!("ya29.test-{n}");
    st.issued
        .write()
        .insert(access_token.clone(), unix_secs() + ACCESS_TOKEN_SECS);
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_SECS,
            "token_type": "Bearer",
        }),
    )
}

/// RS256 signature, `iss`, `aud`, `scope`, `iat`/`exp`.
fn verify_assertion(st: &FcmState, assertion: &str) -> Result<(), (&'static str, String)> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: String,
        aud: String,
        #[serde(default)]
        scope: String,
        iat: i64,
        exp: i64,
    }
    let grant = |d: &str| ("invalid_grant", d.to_string());
    let parts = jwt::split(assertion).ok_or_else(|| grant("Invalid JWT: malformed."))?;
    let header: Header =
        jwt::decode_json(parts.header).ok_or_else(|| grant("Invalid JWT: bad header."))?;
    if header.alg != "RS256" {
        return Err(grant("Invalid JWT Signature."));
    }
    let claims: Claims =
        jwt::decode_json(parts.claims).ok_or_else(|| grant("Invalid JWT: bad claims."))?;
    let sig = jwt::decode(parts.signature).ok_or_else(|| grant("Invalid JWT Signature."))?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &st.cfg.service_account.public_key,
    )
    .verify(parts.signing_input.as_bytes(), &sig)
    .map_err(|_| grant("Invalid JWT Signature."))?;
    if claims.iss != st.cfg.service_account.client_email {
        return Err(grant("Invalid JWT Signature."));
    }
    if !st.audiences.contains(&claims.aud) {
        return Err(grant(&format!(
            "Invalid JWT: Failed audience check. The right audience is {}",
            st.audiences[0]
        )));
    }
    let now = unix_secs();
    if claims.iat > now + FUTURE_SKEW_SECS
        || claims.exp <= now
        || claims.exp <= claims.iat
        || claims.exp - claims.iat > MAX_ASSERTION_SECS
    {
        return Err(grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    if !claims.scope.split(' ').any(|s| s == FCM_SCOPE) {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.".to_string(),
        ));
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` pairs, percent- and `+`-decoded.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let k = kv.next().unwrap_or_default();
            let v = kv.next().unwrap_or_default();
            (url_decode(k), url_decode(v))
        })
        .collect()
}

fn url_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex_val(s[i + 1]), hex_val(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
#[path = "fcm_server_tests.rs"]
mod tests;
