//! Shared plumbing of the two push channels (APNs and FCM): a pool of HTTP/2
//! connections over TLS to one provider origin (`h2pool`), the JWTs both
//! providers want (`jwt`: ES256 provider tokens for APNs, RS256 assertions
//! for Google's OAuth JWT-bearer grant), the OAuth token source for FCM
//! (`oauth`), and the per-language payload rendering (`render`). It hands
//! the channels ready request bodies and raw responses; it never decides an
//! `Outcome` and never logs a device token (only `token_tag`, a short hash).

pub mod h2pool;
pub mod jwt;
pub mod oauth;
pub mod render;

use std::time::Duration;

use hyper::header::{HeaderMap, RETRY_AFTER};

/// Errors of the push plumbing: building a channel, or one transport attempt.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The APNs p8 key (or another signing key) could not be used.
    #[error("signing key: {0}")]
    BadKey(String),
    /// The FCM service-account JSON is unusable.
    #[error("service account: {0}")]
    BadServiceAccount(String),
    /// A configured URL is not an absolute `https://host[:port]` URL.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A required setting is missing or out of range.
    #[error("settings: {0}")]
    Settings(String),
    /// TLS configuration (roots, extra CA).
    #[error("tls: {0}")]
    Tls(String),
    /// Could not open a connection (DNS, TCP, TLS, ALPN, HTTP/2 handshake).
    #[error("connect to {origin}: {reason}")]
    Connect { origin: String, reason: String },
    /// A request got no answer within the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection failed while the request was in flight.
    #[error("transport: {0}")]
    Transport(String),
    /// Minting or fetching an auth token failed.
    #[error("auth token: {0}")]
    Token(String),
}

/// A `Retry-After` header as a delay: delta-seconds or an HTTP date, capped at 1 h.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(3600);
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(CAP));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
    Some(Duration::from_millis(ms.unsigned_abs()).min(CAP))
}

/// A short, non-reversible tag for a device token, for logs (never log the token).
pub fn token_tag(token: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..4])
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The outcome of a request that got no HTTP answer: retried, on another
/// connection when the pool replaced this one.
pub fn transport_outcome(channel: &'static str, e: &PushError) -> crate::channel::Outcome {
    let reason = match e {
        PushError::Timeout => "timeout",
        _ => {
            tracing::debug!(channel, error = %e, "push request failed");
            "connection"
        }
    };
    crate::channel::Outcome::Retry {
        after: None,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn token_tag_is_short_and_stable() {
        assert_eq!(token_tag("abc"), token_tag("abc"));
        assert_eq!(token_tag("abc").len(), 8);
        assert_ne!(token_tag("abc"), token_tag("abd"));
    }
}
