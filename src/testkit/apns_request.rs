//! The APNs request rules, without I/O: Apple's `reason` codes and their
//! statuses, the request-header checks (`apns-topic`, `apns-push-type`,
//! `apns-priority`, `apns-expiration`, `apns-collapse-id`, `apns-id`,
//! repeated headers), the device-token shape, the payload limit and shape,
//! and ES256 provider-token verification, as Apple's "Sending notification
//! requests to APNs", "Establishing a token-based connection to APNs" and
//! "Handling notification responses from APNs" describe them. The server in
//! [`super::apns_server`] applies them in order; fault injection, token
//! lists and caching live there.

use hyper::header::{HeaderMap, HeaderValue};
use hyper::StatusCode;

use super::jwt;

/// Apple's limit on the JSON payload of a regular notification.
pub const MAX_PAYLOAD: usize = 4096;
/// Apple's limit on `apns-collapse-id`.
pub const MAX_COLLAPSE_ID: usize = 64;
/// A provider token is valid for one hour after its `iat`.
const TOKEN_LIFETIME_SECS: i64 = 3600;
/// Clock skew tolerated for an `iat` in the future.
const FUTURE_SKEW_SECS: i64 = 60;
/// Longest device token accepted (Apple's are 64 hex digits today).
const MAX_TOKEN_LEN: usize = 200;

/// Apple's `reason` strings this server answers with (`BadPayload` is its
/// own: Apple documents no reason for a malformed JSON payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    BadCollapseId,
    BadDeviceToken,
    BadExpirationDate,
    BadMessageId,
    BadPriority,
    BadPayload,
    DuplicateHeaders,
    InvalidPushType,
    MissingDeviceToken,
    MissingTopic,
    PayloadEmpty,
    TopicDisallowed,
    ExpiredProviderToken,
    InvalidProviderToken,
    MissingProviderToken,
    BadPath,
    MethodNotAllowed,
    Unregistered,
    PayloadTooLarge,
    TooManyRequests,
    ServiceUnavailable,
}

impl Reason {
    /// The HTTP status Apple pairs with this reason.
    pub fn status(self) -> StatusCode {
        use Reason::*;
        match self {
            BadCollapseId | BadDeviceToken | BadExpirationDate | BadMessageId | BadPriority
            | BadPayload | DuplicateHeaders | InvalidPushType | MissingDeviceToken
            | MissingTopic | PayloadEmpty | TopicDisallowed => StatusCode::BAD_REQUEST,
            ExpiredProviderToken | InvalidProviderToken | MissingProviderToken => {
                StatusCode::FORBIDDEN
            }
            BadPath => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Unregistered => StatusCode::GONE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `reason` string.
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            BadCollapseId => "BadCollapseId",
            BadDeviceToken => "BadDeviceToken",
            BadExpirationDate => "BadExpirationDate",
            BadMessageId => "BadMessageId",
            BadPriority => "BadPriority",
            BadPayload => "BadPayload",
            DuplicateHeaders => "DuplicateHeaders",
            InvalidPushType => "InvalidPushType",
            MissingDeviceToken => "MissingDeviceToken",
            MissingTopic => "MissingTopic",
            PayloadEmpty => "PayloadEmpty",
            TopicDisallowed => "TopicDisallowed",
            ExpiredProviderToken => "ExpiredProviderToken",
            InvalidProviderToken => "InvalidProviderToken",
            MissingProviderToken => "MissingProviderToken",
            BadPath => "BadPath",
            MethodNotAllowed => "MethodNotAllowed",
            Unregistered => "Unregistered",
            PayloadTooLarge => "PayloadTooLarge",
            TooManyRequests => "TooManyRequests",
            ServiceUnavailable => "ServiceUnavailable",
        }
    }
}

/// What the headers said, once they passed.
pub struct Meta {
    /// `apns-priority` (10 when absent).
    pub priority: u8,
    /// `apns-expiration`.
    pub expiration: Option<u64>,
}

/// Headers Apple answers `DuplicateHeaders` for when repeated.
const SINGLE_HEADERS: [&str; 7] = [
    "authorization",
    "apns-topic",
    "apns-push-type",
    "apns-priority",
    "apns-expiration",
    "apns-collapse-id",
    "apns-id",
];

/// Apple refuses a request that repeats any of [`SINGLE_HEADERS`].
pub fn duplicate_headers(h: &HeaderMap) -> Result<(), Reason> {
    if SINGLE_HEADERS
        .iter()
        .any(|name| h.get_all(*name).iter().nth(1).is_some())
    {
        return Err(Reason::DuplicateHeaders);
    }
    Ok(())
}

/// The `apns-*` headers of a notification request for `topic`.
pub fn check_headers(h: &HeaderMap, topic: &str) -> Result<Meta, Reason> {
    match h.get("apns-topic") {
        None => return Err(Reason::MissingTopic),
        Some(t) if t.as_bytes() != topic.as_bytes() => return Err(Reason::TopicDisallowed),
        Some(_) => {}
    }
    if h.get("apns-push-type").map(HeaderValue::as_bytes) != Some(b"alert") {
        return Err(Reason::InvalidPushType);
    }
    let priority = match h.get("apns-priority").map(HeaderValue::as_bytes) {
        None | Some(b"10") => 10,
        Some(b"5") => 5,
        Some(b"1") => 1,
        Some(_) => return Err(Reason::BadPriority),
    };
    let expiration = match h.get("apns-expiration") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Reason::BadExpirationDate)?,
        ),
    };
    if let Some(c) = h.get("apns-collapse-id") {
        if c.len() > MAX_COLLAPSE_ID {
            return Err(Reason::BadCollapseId);
        }
    }
    Ok(Meta {
        priority,
        expiration,
    })
}

/// A device token from the path: present, hex digits, not absurdly long.
pub fn check_token_shape(token: &str) -> Result<(), Reason> {
    if token.is_empty() {
        return Err(Reason::MissingDeviceToken);
    }
    if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Reason::BadDeviceToken);
    }
    Ok(())
}

/// A payload: present, at most [`MAX_PAYLOAD`] bytes, a JSON object whose
/// `aps` is an object.
pub fn check_payload(body: &[u8]) -> Result<(), Reason> {
    if body.is_empty() {
        return Err(Reason::PayloadEmpty);
    }
    if body.len() > MAX_PAYLOAD {
        return Err(Reason::PayloadTooLarge);
    }
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !is_object || serde_json::from_slice::<PayloadShape>(body).is_err() {
        return Err(Reason::BadPayload);
    }
    Ok(())
}

/// A verified token issued at `iat` is usable at `now`: not from the future
/// (beyond 60 s of skew), not older than an hour.
pub fn token_age_ok(iat: i64, now: i64) -> Result<(), Reason> {
    if iat > now + FUTURE_SKEW_SECS {
        return Err(Reason::InvalidProviderToken);
    }
    if now - iat > TOKEN_LIFETIME_SECS {
        return Err(Reason::ExpiredProviderToken);
    }
    Ok(())
}

/// Signature, `alg`, `kid` and `iss`; returns `iat` (time is checked per use).
pub fn verify_jwt(
    token: &str,
    team_id: &str,
    key_id: &str,
    public_key: &[u8],
) -> Result<i64, Reason> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: String,
        iat: i64,
    }
    let bad = Reason::InvalidProviderToken;
    let parts = jwt::split(token).ok_or(bad)?;
    let header: Header = jwt::decode_json(parts.header).ok_or(bad)?;
    if header.alg != "ES256" || header.kid.as_deref() != Some(key_id) {
        return Err(bad);
    }
    let claims: Claims = jwt::decode_json(parts.claims).ok_or(bad)?;
    if claims.iss != team_id {
        return Err(bad);
    }
    let sig = jwt::decode(parts.signature).ok_or(bad)?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public_key)
        .verify(parts.signing_input.as_bytes(), &sig)
        .map_err(|_| bad)?;
    Ok(claims.iat)
}

/// `8-4-4-4-12` hex digits, either case.
pub fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A payload is a JSON object whose `aps` is an object; nothing else is
/// looked at (and nothing is allocated for the rest).
#[derive(serde::Deserialize)]
struct PayloadShape {
    #[allow(dead_code)] // only its presence and shape matter
    aps: AnyObject,
}

/// Any JSON object, contents skipped.
struct AnyObject;

impl<'de> serde::Deserialize<'de> for AnyObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AnyObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<AnyObject, A::Error> {
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_token_age() {
        let now = 1_700_000_000;
        assert_eq!(token_age_ok(now - 3600, now), Ok(()));
        assert_eq!(token_age_ok(now + 60, now), Ok(()));
        assert_eq!(
            token_age_ok(now - 3601, now),
            Err(Reason::ExpiredProviderToken)
        );
        assert_eq!(
            token_age_ok(now + 61, now),
            Err(Reason::InvalidProviderToken)
        );
    }

    #[test]
    fn shapes() {
        assert!(is_uuid(b"123e4567-E89B-12d3-a456-426614174000"));
        assert!(!is_uuid(b"123e4567e89b12d3a456426614174000"));
        assert_eq!(check_token_shape(""), Err(Reason::MissingDeviceToken));
        assert_eq!(check_token_shape("abc-1"), Err(Reason::BadDeviceToken));
        assert_eq!(check_token_shape("00ff"), Ok(()));
        assert_eq!(check_payload(b" {\"aps\":{}}"), Ok(()));
        assert_eq!(check_payload(b"{\"aps\":[]}"), Err(Reason::BadPayload));
        assert_eq!(check_payload(b"[{\"aps\":{}}]"), Err(Reason::BadPayload));
        assert_eq!(check_payload(b"{\"aps\":{}"), Err(Reason::BadPayload));
    }

    #[test]
    fn every_reason_has_its_status() {
        assert_eq!(Reason::Unregistered.status(), StatusCode::GONE);
        assert_eq!(Reason::MissingProviderToken.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            Reason::TooManyRequests.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            Reason::PayloadTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(Reason::BadPath.as_str(), "BadPath");
    }
}
