//! Compact-JWS plumbing shared by the test servers and test clients (RFC 7515
//! compact serialisation, RFC 7519 claims): split a token, decode its
//! base64url parts, and sign ES256 / RS256 tokens with the test keys. The
//! servers check algorithms, key ids and claims themselves; this file only
//! handles bytes. It is not a general JWT library (no JWE, no `crit`, no
//! key sets).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};

/// base64url, padding optional on input, never written on output.
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The three parts of a compact JWS.
pub(crate) struct Jws<'a> {
    /// `header.claims`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) header: &'a str,
    pub(crate) claims: &'a str,
    pub(crate) signature: &'a str,
}

/// Split `token` into its parts; `None` unless there are exactly three.
pub(crate) fn split(token: &str) -> Option<Jws<'_>> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    if claims.contains('.') || signature.is_empty() {
        return None;
    }
    Some(Jws {
        signing_input,
        header,
        claims,
        signature,
    })
}

/// Decode a base64url JSON part into `T`.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = B64URL.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Decode a base64url part to bytes.
pub(crate) fn decode(part: &str) -> Option<Vec<u8>> {
    B64URL.decode(part).ok()
}

/// The DER inside the first PEM block labelled `label`.
pub(crate) fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Sign `header` and `claims` (JSON values) into a compact JWS with `sign`.
pub(crate) fn sign_with(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let mut out = B64URL.encode(header.to_string());
    out.push('.');
    out.push_str(&B64URL.encode(claims.to_string()));
    let sig = sign(out.as_bytes());
    out.push('.');
    out.push_str(&B64URL.encode(sig));
    out
}
