//! The stable rejection codes of the ingest protocol. The receipt, the
//! `tocsin_alerts_total{result}` label and the README table share these
//! strings; never rename one, only add.

use std::fmt;

/// Why a submission was refused. `as_str` is the wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    EnvelopeTooLarge,
    EnvelopeMalformed,
    SignatureInvalid,
    KeyUnknown,
    KeyRevoked,
    KeyExpired,
    KeyNotYetValid,
    PayloadTooLarge,
    XmlMalformed,
    XmlDtdForbidden,
    XmlEntityForbidden,
    CapInvalid,
    CapLimitExceeded,
    PolygonNotClosed,
    PolygonTooManyVertices,
    PolygonInvalid,
    CircleInvalid,
    GeocodeUnknown,
    AreaEmpty,
    SenderMismatch,
    OutsideJurisdiction,
    CosignRequired,
    EventNotAllowed,
    StatusNotAllowed,
    StandardNotMet,
    SentOutOfWindow,
    IdentifierReused,
    ReferenceUnknown,
    ReferenceForeign,
    RateLimited,
    Internal,
    StoreUnavailable,
}

impl RejectCode {
    /// Every code, in README order.
    pub const ALL: [RejectCode; 32] = [
        Self::EnvelopeTooLarge,
        Self::EnvelopeMalformed,
        Self::SignatureInvalid,
        Self::KeyUnknown,
        Self::KeyRevoked,
        Self::KeyExpired,
        Self::KeyNotYetValid,
        Self::PayloadTooLarge,
        Self::XmlMalformed,
        Self::XmlDtdForbidden,
        Self::XmlEntityForbidden,
        Self::CapInvalid,
        Self::CapLimitExceeded,
        Self::PolygonNotClosed,
        Self::PolygonTooManyVertices,
        Self::PolygonInvalid,
        Self::CircleInvalid,
        Self::GeocodeUnknown,
        Self::AreaEmpty,
        Self::SenderMismatch,
        Self::OutsideJurisdiction,
        Self::CosignRequired,
        Self::EventNotAllowed,
        Self::StatusNotAllowed,
        Self::StandardNotMet,
        Self::SentOutOfWindow,
        Self::IdentifierReused,
        Self::ReferenceUnknown,
        Self::ReferenceForeign,
        Self::RateLimited,
        Self::Internal,
        Self::StoreUnavailable,
    ];

    /// The stable snake_case wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnvelopeTooLarge => "envelope_too_large",
            Self::EnvelopeMalformed => "envelope_malformed",
            Self::SignatureInvalid => "signature_invalid",
            Self::KeyUnknown => "key_unknown",
            Self::KeyRevoked => "key_revoked",
            Self::KeyExpired => "key_expired",
            Self::KeyNotYetValid => "key_not_yet_valid",
            Self::PayloadTooLarge => "payload_too_large",
            Self::XmlMalformed => "xml_malformed",
            Self::XmlDtdForbidden => "xml_dtd_forbidden",
            Self::XmlEntityForbidden => "xml_entity_forbidden",
            Self::CapInvalid => "cap_invalid",
            Self::CapLimitExceeded => "cap_limit_exceeded",
            Self::PolygonNotClosed => "polygon_not_closed",
            Self::PolygonTooManyVertices => "polygon_too_many_vertices",
            Self::PolygonInvalid => "polygon_invalid",
            Self::CircleInvalid => "circle_invalid",
            Self::GeocodeUnknown => "geocode_unknown",
            Self::AreaEmpty => "area_empty",
            Self::SenderMismatch => "sender_mismatch",
            Self::OutsideJurisdiction => "outside_jurisdiction",
            Self::CosignRequired => "cosign_required",
            Self::EventNotAllowed => "event_not_allowed",
            Self::StatusNotAllowed => "status_not_allowed",
            Self::StandardNotMet => "standard_not_met",
            Self::SentOutOfWindow => "sent_out_of_window",
            Self::IdentifierReused => "identifier_reused",
            Self::ReferenceUnknown => "reference_unknown",
            Self::ReferenceForeign => "reference_foreign",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal_error",
            Self::StoreUnavailable => "store_unavailable",
        }
    }

    /// The code with this wire name, if any.
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// One line on what the code means (README table, `--help`).
    pub fn meaning(self) -> &'static str {
        match self {
            Self::EnvelopeTooLarge => "the stream carried more than ingest.max_envelope_bytes",
            Self::EnvelopeMalformed => {
                "not a COSE_Sign1/COSE_Sign envelope with EdDSA, kid and the CAP content type"
            }
            Self::SignatureInvalid => {
                "a signature does not verify (wrong key, or payload changed after signing)"
            }
            Self::KeyUnknown => "no configured authority has a key with this kid",
            Self::KeyRevoked => "the signing key is revoked",
            Self::KeyExpired => "the signing key's not_after has passed",
            Self::KeyNotYetValid => "the signing key's not_before is in the future",
            Self::PayloadTooLarge => "the CAP document exceeds its size limit",
            Self::XmlMalformed => "the CAP payload is not well-formed UTF-8 XML",
            Self::XmlDtdForbidden => "the CAP payload has a DOCTYPE (DTDs are refused)",
            Self::XmlEntityForbidden => "the CAP payload uses a non-predefined entity",
            Self::CapInvalid => "the document is not valid CAP 1.2 (missing or bad field)",
            Self::CapLimitExceeded => "a count or length limit on CAP content was exceeded",
            Self::PolygonNotClosed => "a polygon's first and last points differ",
            Self::PolygonTooManyVertices => "a polygon has more vertices than allowed",
            Self::PolygonInvalid => "a polygon has bad coordinates or no area",
            Self::CircleInvalid => "a circle has a bad centre or radius",
            Self::GeocodeUnknown => "a geocode is not in the geocode table",
            Self::AreaEmpty => "an info block has no polygon, circle or known geocode",
            Self::SenderMismatch => "the CAP sender is not one the signing authority may use",
            Self::OutsideJurisdiction => "the area is not inside the authority's jurisdiction",
            Self::CosignRequired => "the alert needs a co-signature from a higher authority",
            Self::EventNotAllowed => "the authority may not issue this event code",
            Self::StatusNotAllowed => "the authority may not issue this status",
            Self::StandardNotMet => "the issuing standard of the event code is not met",
            Self::SentOutOfWindow => "sent is outside the replay window (stale or future)",
            Self::IdentifierReused => "the alert id was accepted before with different bytes",
            Self::ReferenceUnknown => {
                "an Update/Cancel references an alert that was never accepted"
            }
            Self::ReferenceForeign => {
                "an Update/Cancel references an alert another authority issued (only the issuer may update or cancel)"
            }
            Self::RateLimited => "the authority exceeded its submission rate",
            Self::Internal => "the daemon failed to journal the alert; nothing was accepted",
            Self::StoreUnavailable => {
                "the journal's storage failed (disk full, read-only, I/O error); nothing was accepted, resend later"
            }
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection: code plus a human message (never personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
}

impl Rejection {
    /// Build a rejection from a code and message.
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in RejectCode::ALL {
            let s = c.as_str();
            assert!(s.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'));
            assert!(seen.insert(s), "duplicate {s}");
        }
    }
}
