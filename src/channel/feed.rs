//! Partner feeds (push side): every partner whose coverage touches the
//! alert gets an HTTP POST of the original signed envelope
//! (`Content-Type: application/cose`), so it can verify the issuing
//! authority itself. Headers: `Idempotency-Key` (derived from alert id and
//! partner, stable across retries and restarts), `Tocsin-Signature`
//! (`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`), `Tocsin-Alert-Id`
//! and `Tocsin-Msg-Type`. 2xx → delivered; 408/429/5xx and transport errors →
//! retry (honouring `Retry-After`); other 4xx → rejected. The pull side (Atom
//! feed) is served by `http`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{AlertContent, Channel, Outcome, Reach, Recipient};
use crate::dispatch::Partner;

/// Content type of the forwarded envelope.
pub const COSE_CONTENT_TYPE: &str = "application/cose";

/// The partner-feed channel.
pub struct FeedChannel {
    client: reqwest::Client,
    partners: Arc<Vec<Partner>>,
    concurrency: usize,
}

/// Errors building the channel.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("feed channel: {0}")]
    Client(String),
}

impl FeedChannel {
    /// A channel posting to `partners`, with an optional extra trusted CA (PEM).
    pub fn new(
        partners: Arc<Vec<Partner>>,
        timeout: Duration,
        concurrency: usize,
        extra_ca_pem: Option<&[u8]>,
    ) -> Result<Self, FeedError> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(concurrency.clamp(1, 64))
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| FeedError::Client(format!("feed CA: {e}")))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        let client = b.build().map_err(|e| FeedError::Client(e.to_string()))?;
        Ok(Self {
            client,
            partners,
            concurrency: concurrency.max(1),
        })
    }

    async fn post(&self, alert: &AlertContent, id: u32) -> Outcome {
        let Some(p) = self.partners.get(id as usize) else {
            return Outcome::Rejected {
                reason: "unknown_partner",
                drop: false,
            };
        };
        let body = bytes::Bytes::copy_from_slice(&alert.envelope);
        let t = chrono::Utc::now().timestamp();
        let req = self
            .client
            .post(&p.endpoint)
            .header(reqwest::header::CONTENT_TYPE, COSE_CONTENT_TYPE)
            .header("Idempotency-Key", idempotency_key(&alert.alert_id, &p.name))
            .header("Tocsin-Signature", signature_header(&p.secret, t, &body))
            .header("Tocsin-Alert-Id", header_safe(&alert.alert_id))
            .header("Tocsin-Msg-Type", format!("{:?}", alert.msg_type()))
            .body(body);
        match req.send().await {
            Ok(resp) => classify(resp.status().as_u16(), retry_after(resp.headers())),
            Err(e) if e.is_builder() => Outcome::Rejected {
                reason: "bad_endpoint",
                drop: false,
            },
            Err(_) => Outcome::Retry {
                after: None,
                reason: "transport",
            },
        }
    }
}

/// Map an HTTP status to an outcome.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 425 | 429 => Outcome::Retry {
            after: retry_after,
            reason: "throttled",
        },
        500..=599 => Outcome::Retry {
            after: retry_after,
            reason: "server_error",
        },
        _ => Outcome::Rejected {
            reason: "http_4xx",
            drop: false,
        },
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

fn header_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(256)
        .collect()
}

/// The `Idempotency-Key` for one alert and partner: 32 hex digits.
pub fn idempotency_key(alert_id: &str, partner: &str) -> String {
    let mut h = Sha256::new();
    h.update(alert_id.as_bytes());
    h.update(b"\n");
    h.update(partner.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The `Tocsin-Signature` header value for `body` sent at unix time `t`.
pub fn signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(hmac_sha256(secret, t, body)))
}

fn hmac_sha256(secret: &[u8], t: i64, body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Check a `Tocsin-Signature` header (what a partner does); constant time.
pub fn verify_signature_header(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

#[async_trait]
impl Channel for FeedChannel {
    fn name(&self) -> &'static str {
        "feed"
    }

    fn reach(&self) -> Reach {
        Reach::Partners(crate::channel::PartnerRole::Feed)
    }

    async fn deliver(
        &self,
        alert: &AlertContent,
        recipients: &[Recipient<'_>],
        out: &mut Vec<Outcome>,
    ) {
        // Partners are few: an owned id list keeps the stream free of borrowed lifetimes.
        let ids: Vec<u32> = recipients.iter().map(|r| r.id).collect();
        let results: Vec<Outcome> = futures::stream::iter(ids)
            .map(|id| self.post(alert, id))
            .buffered(self.concurrency)
            .collect()
            .await;
        out.extend(results);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_and_detects_change() {
        let h = signature_header(b"k", 1700000000, b"body");
        assert!(verify_signature_header(b"k", &h, b"body"));
        assert!(!verify_signature_header(b"k", &h, b"bodx"));
        assert!(!verify_signature_header(b"other", &h, b"body"));
    }

    #[test]
    fn statuses_classify() {
        assert_eq!(classify(204, None), Outcome::Delivered);
        assert!(matches!(classify(503, None), Outcome::Retry { .. }));
        assert!(matches!(
            classify(429, Some(Duration::from_secs(2))),
            Outcome::Retry { after: Some(_), .. }
        ));
        assert!(matches!(classify(404, None), Outcome::Rejected { .. }));
    }

    #[test]
    fn idempotency_key_is_stable() {
        assert_eq!(idempotency_key("a,b,c", "p"), idempotency_key("a,b,c", "p"));
        assert_ne!(idempotency_key("a,b,c", "p"), idempotency_key("a,b,c", "q"));
        assert_eq!(idempotency_key("a,b,c", "p").len(), 32);
    }
}
