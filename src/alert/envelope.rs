//! The signed envelope (DESIGN §3): COSE_Sign1 (one signer) or COSE_Sign
//! (co-signed), EdDSA over Ed25519, `kid` naming the authority key and the
//! CAP content type. The payload is the CAP XML exactly as the authority wrote
//! it. This module decodes and checks structure, and verifies signatures
//! against keys the caller looks up; it never decides whether a key is
//! trusted (that is `authority::registry`).

use coset::{
    iana, CborSerializable, CoseSign, CoseSign1, CoseSign1Builder, CoseSignBuilder,
    CoseSignatureBuilder, HeaderBuilder, RegisteredLabelWithPrivate, TaggedCborSerializable,
};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// The content type every envelope must declare.
pub const CAP_CONTENT_TYPE: &str = "application/common-alerting-protocol+xml";

/// Longest accepted key id, in bytes.
pub const MAX_KID_BYTES: usize = 64;

/// Most signatures a COSE_Sign may carry.
pub const MAX_SIGNERS: usize = 4;

/// Structural problems with an envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("not a COSE_Sign1 or COSE_Sign structure")]
    NotCose,
    #[error("envelope has no payload (detached payloads are not accepted)")]
    NoPayload,
    #[error("content type must be {CAP_CONTENT_TYPE}")]
    ContentType,
    #[error("algorithm must be EdDSA")]
    Algorithm,
    #[error("signature {0} has no kid or one longer than {MAX_KID_BYTES} bytes")]
    Kid(usize),
    #[error("envelope carries no signature or more than {MAX_SIGNERS}")]
    SignerCount,
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// One signature of an envelope: the key id it claims and the signature index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerRef {
    pub kid: String,
    index: usize,
}

enum Structure {
    One(CoseSign1),
    Many(CoseSign),
}

/// A structurally valid envelope whose signatures are not yet verified.
pub struct Envelope {
    structure: Structure,
    signers: Vec<SignerRef>,
}

fn is_eddsa(h: &coset::Header) -> bool {
    h.alg == Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA))
}

fn is_cap(h: &coset::Header) -> bool {
    matches!(&h.content_type, Some(coset::ContentType::Text(t)) if t == CAP_CONTENT_TYPE)
}

fn kid_of(h: &coset::Header, index: usize) -> Result<String, EnvelopeError> {
    if h.key_id.is_empty() || h.key_id.len() > MAX_KID_BYTES {
        return Err(EnvelopeError::Kid(index));
    }
    String::from_utf8(h.key_id.clone()).map_err(|_| EnvelopeError::Kid(index))
}

impl Envelope {
    /// Decode bytes (tagged or untagged) into an envelope and check its headers.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if let Ok(s1) =
            CoseSign1::from_tagged_slice(bytes).or_else(|_| CoseSign1::from_slice(bytes))
        {
            let p = &s1.protected.header;
            if !is_eddsa(p) {
                return Err(EnvelopeError::Algorithm);
            }
            if !is_cap(p) {
                return Err(EnvelopeError::ContentType);
            }
            if s1.payload.is_none() {
                return Err(EnvelopeError::NoPayload);
            }
            let kid = kid_of(p, 0)?;
            return Ok(Self {
                structure: Structure::One(s1),
                signers: vec![SignerRef { kid, index: 0 }],
            });
        }
        let s = CoseSign::from_tagged_slice(bytes)
            .or_else(|_| CoseSign::from_slice(bytes))
            .map_err(|_| EnvelopeError::NotCose)?;
        if !is_cap(&s.protected.header) {
            return Err(EnvelopeError::ContentType);
        }
        if s.payload.is_none() {
            return Err(EnvelopeError::NoPayload);
        }
        if s.signatures.is_empty() || s.signatures.len() > MAX_SIGNERS {
            return Err(EnvelopeError::SignerCount);
        }
        let mut signers = Vec::with_capacity(s.signatures.len());
        for (index, sig) in s.signatures.iter().enumerate() {
            if !is_eddsa(&sig.protected.header) {
                return Err(EnvelopeError::Algorithm);
            }
            signers.push(SignerRef {
                kid: kid_of(&sig.protected.header, index)?,
                index,
            });
        }
        Ok(Self {
            structure: Structure::Many(s),
            signers,
        })
    }

    /// The signatures this envelope claims, in order.
    pub fn signers(&self) -> &[SignerRef] {
        &self.signers
    }

    /// The signed payload (the CAP XML bytes).
    pub fn payload(&self) -> &[u8] {
        let p = match &self.structure {
            Structure::One(s) => &s.payload,
            Structure::Many(s) => &s.payload,
        };
        p.as_deref().unwrap_or_default()
    }

    /// Verify one signature strictly (no malleable or small-order keys).
    pub fn verify(&self, signer: &SignerRef, key: &VerifyingKey) -> bool {
        let check = |sig: &[u8], data: &[u8]| -> Result<(), ()> {
            let sig = Signature::from_slice(sig).map_err(|_| ())?;
            key.verify_strict(data, &sig).map_err(|_| ())
        };
        match &self.structure {
            Structure::One(s) => s.verify_signature(b"", check).is_ok(),
            Structure::Many(s) => {
                signer.index < s.signatures.len()
                    && s.verify_signature(signer.index, b"", check).is_ok()
            }
        }
    }
}

/// Sign `payload` as a COSE_Sign1 (tagged) with one key.
pub fn sign1(payload: &[u8], kid: &str, key: &SigningKey) -> Result<Vec<u8>, EnvelopeError> {
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::EdDSA)
        .key_id(kid.as_bytes().to_vec())
        .content_type(CAP_CONTENT_TYPE.to_string())
        .build();
    CoseSign1Builder::new()
        .protected(protected)
        .payload(payload.to_vec())
        .create_signature(b"", |data| key.sign(data).to_bytes().to_vec())
        .build()
        .to_tagged_vec()
        .map_err(|e| EnvelopeError::Encode(e.to_string()))
}

/// Sign `payload` as a COSE_Sign (tagged) with several keys (co-signing).
pub fn sign_many(payload: &[u8], keys: &[(&str, &SigningKey)]) -> Result<Vec<u8>, EnvelopeError> {
    let body = HeaderBuilder::new()
        .content_type(CAP_CONTENT_TYPE.to_string())
        .build();
    let mut b = CoseSignBuilder::new()
        .protected(body)
        .payload(payload.to_vec());
    for (kid, key) in keys {
        let h = HeaderBuilder::new()
            .algorithm(iana::Algorithm::EdDSA)
            .key_id(kid.as_bytes().to_vec())
            .build();
        let sig = CoseSignatureBuilder::new().protected(h).build();
        b = b.add_created_signature(sig, b"", |data| key.sign(data).to_bytes().to_vec());
    }
    b.build()
        .to_tagged_vec()
        .map_err(|e| EnvelopeError::Encode(e.to_string()))
}

/// The key id tocsin derives for a public key: 16 hex digits of its SHA-256.
pub fn key_id_for(key: &VerifyingKey) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    hex::encode(&d[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn sign1_roundtrip_and_tamper() {
        let k = SigningKey::generate(&mut OsRng);
        let env = sign1(b"<alert/>", "k1", &k).unwrap();
        let e = Envelope::decode(&env).unwrap();
        assert_eq!(e.payload(), b"<alert/>");
        assert_eq!(e.signers()[0].kid, "k1");
        assert!(e.verify(&e.signers()[0], &k.verifying_key()));
        let other = SigningKey::generate(&mut OsRng);
        assert!(!e.verify(&e.signers()[0], &other.verifying_key()));
        // flip one payload byte: signature must fail
        let mut bad = env.clone();
        let pos = bad.windows(8).position(|w| w == b"<alert/>").unwrap();
        bad[pos + 1] = b'A';
        let e = Envelope::decode(&bad).unwrap();
        assert!(!e.verify(&e.signers()[0], &k.verifying_key()));
    }

    #[test]
    fn cosigned_roundtrip() {
        let a = SigningKey::generate(&mut OsRng);
        let b = SigningKey::generate(&mut OsRng);
        let env = sign_many(b"<x/>", &[("a", &a), ("b", &b)]).unwrap();
        let e = Envelope::decode(&env).unwrap();
        let s = e.signers().to_vec();
        assert_eq!(s.len(), 2);
        assert!(e.verify(&s[0], &a.verifying_key()));
        assert!(e.verify(&s[1], &b.verifying_key()));
        assert!(!e.verify(&s[1], &a.verifying_key()));
    }

    #[test]
    fn garbage_is_not_cose() {
        assert!(matches!(
            Envelope::decode(b"hello"),
            Err(EnvelopeError::NotCose)
        ));
        assert!(Envelope::decode(&[]).is_err());
    }
}
