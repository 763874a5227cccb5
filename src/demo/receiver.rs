//! A partner's side of the feed channel, as a real HTTP server: it checks the
//! `Tocsin-Signature` HMAC, decodes the COSE envelope and verifies the
//! authority's signature itself, and counts deliveries by `Idempotency-Key`
//! (so repeats are visible). The demo runs a few; integration tests use it as
//! the local partner. It can be told to answer 503 for a while.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use ed25519_dalek::VerifyingKey;
use parking_lot::Mutex;

use crate::alert::envelope::Envelope;
use crate::channel::feed::verify_signature_header;

/// What one receiver saw.
#[derive(Default)]
pub struct Received {
    /// Requests whose HMAC and COSE signature verified.
    pub valid: AtomicU64,
    /// Requests refused (bad HMAC, bad envelope, bad signature).
    pub invalid: AtomicU64,
    /// Hits per Idempotency-Key.
    pub by_key: Mutex<HashMap<String, u32>>,
    /// Envelopes received, in order (exact bytes).
    pub bodies: Mutex<Vec<Vec<u8>>>,
    /// Answer 503 to this many more requests.
    pub fail_next: AtomicU32,
    /// Delay every answer by this many milliseconds.
    pub delay_ms: AtomicU64,
}

impl Received {
    /// Distinct idempotency keys seen.
    pub fn distinct(&self) -> usize {
        self.by_key.lock().len()
    }
}

struct Rx {
    secret: Vec<u8>,
    authority_key: Option<VerifyingKey>,
    seen: Arc<Received>,
}

async fn handle(State(rx): State<Arc<Rx>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let d = rx.seen.delay_ms.load(Ordering::Relaxed);
    if d > 0 {
        tokio::time::sleep(Duration::from_millis(d)).await;
    }
    if rx
        .seen
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let sig = headers
        .get("tocsin-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ctype_ok = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == crate::channel::feed::COSE_CONTENT_TYPE);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let envelope_ok = match Envelope::decode(&body) {
        Ok(env) => match &rx.authority_key {
            Some(k) => env.signers().first().is_some_and(|s| env.verify(s, k)),
            None => true,
        },
        Err(_) => false,
    };
    if !ctype_ok
        || !verify_signature_header(&rx.secret, sig, &body)
        || !envelope_ok
        || key.is_none()
    {
        rx.seen.invalid.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    if let Some(k) = key {
        *rx.seen.by_key.lock().entry(k).or_insert(0) += 1;
    }
    rx.seen.bodies.lock().push(body.to_vec());
    rx.seen.valid.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

/// Start a receiver on 127.0.0.1 (ephemeral port); returns its address and counters.
pub async fn start(
    secret: Vec<u8>,
    authority_key: Option<VerifyingKey>,
) -> std::io::Result<(SocketAddr, Arc<Received>)> {
    let seen = Arc::new(Received::default());
    let rx = Arc::new(Rx {
        secret,
        authority_key,
        seen: seen.clone(),
    });
    let app = Router::new().route("/alerts", post(handle)).with_state(rx);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, seen))
}
