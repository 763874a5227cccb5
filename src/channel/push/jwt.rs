//! The JWTs the push providers want, signed with ring: ES256 provider tokens
//! for APNs (`{"alg":"ES256","kid":KEY_ID}` / `{"iss":TEAM_ID,"iat":now}`,
//! from the team's p8 key) and RS256 assertions for Google's OAuth
//! JWT-bearer grant (FCM). `ProviderToken` caches the APNs token as a ready
//! `authorization` header shared by every connection, re-mints it after 50
//! minutes (Apple: valid for an hour, not refreshed more than every 20
//! minutes) and on demand after `ExpiredProviderToken`, at most once per
//! 20 s so a burst of rejections cannot cause a storm of new tokens. Keys
//! never leave this module; nothing here logs a token.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use hyper::header::HeaderValue;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use rustls::pki_types::PrivateKeyDer;

use super::PushError;

/// Re-mint the APNs token after this age (Apple rejects tokens older than 1 h).
pub const APNS_REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);
/// Forced refreshes (after `ExpiredProviderToken`) at most this often.
pub const APNS_MIN_FORCED_INTERVAL: Duration = Duration::from_secs(20);
/// OAuth scope for sending FCM messages.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The PKCS#8 DER of the first private key in `pem`.
fn pkcs8_der(pem: &str, what: &str) -> Result<Vec<u8>, PushError> {
    match rustls_pemfile::private_key(&mut pem.as_bytes()) {
        Ok(Some(PrivateKeyDer::Pkcs8(k))) => Ok(k.secret_pkcs8_der().to_vec()),
        Ok(Some(_)) => Err(PushError::BadKey(format!(
            "{what}: expected a PKCS#8 key (-----BEGIN PRIVATE KEY-----)"
        ))),
        Ok(None) => Err(PushError::BadKey(format!(
            "{what}: no private key in the PEM"
        ))),
        Err(e) => Err(PushError::BadKey(format!("{what}: {e}"))),
    }
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Signs APNs provider tokens (ES256) with a team's p8 key.
pub struct Es256Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// base64url of the JOSE header, fixed for the key.
    header_b64: String,
    team_id: String,
}

impl Es256Signer {
    /// From the p8 file's PEM text, its key id and the Apple team id.
    pub fn from_p8_pem(pem: &str, key_id: &str, team_id: &str) -> Result<Self, PushError> {
        if key_id.is_empty() || team_id.is_empty() {
            return Err(PushError::Settings(
                "apns: key_id and team_id are required".into(),
            ));
        }
        let der = pkcs8_der(pem, "apns p8 key")?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| PushError::BadKey(format!("apns p8 key: not a P-256 key ({e})")))?;
        let header = serde_json::json!({"alg": "ES256", "kid": key_id}).to_string();
        Ok(Self {
            key,
            rng,
            header_b64: b64(header.as_bytes()),
            team_id: team_id.to_owned(),
        })
    }

    /// A provider token issued at `iat` (Unix seconds).
    pub fn sign(&self, iat: i64) -> Result<String, PushError> {
        let claims = serde_json::json!({"iss": self.team_id, "iat": iat}).to_string();
        let mut jwt = format!("{}.{}", self.header_b64, b64(claims.as_bytes()));
        let sig = self
            .key
            .sign(&self.rng, jwt.as_bytes())
            .map_err(|e| PushError::BadKey(format!("ES256 signing failed: {e}")))?;
        jwt.push('.');
        jwt.push_str(&b64(sig.as_ref()));
        Ok(jwt)
    }

    /// The public key (uncompressed SEC1 point), to verify tokens in tests.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }
}

struct Minted {
    /// `bearer <jwt>`, ready to send.
    header: HeaderValue,
    at: Instant,
}

/// The current APNs provider token, shared by every connection of the pool.
pub struct ProviderToken {
    signer: Es256Signer,
    current: Mutex<Minted>,
    refreshes: Counter,
    refresh_after: Duration,
    min_forced_interval: Duration,
}

impl ProviderToken {
    /// Mint the first token now; `refreshes` counts every token minted.
    pub fn new(signer: Es256Signer, refreshes: Counter) -> Result<Self, PushError> {
        Self::with_intervals(
            signer,
            refreshes,
            APNS_REFRESH_AFTER,
            APNS_MIN_FORCED_INTERVAL,
        )
    }

    /// As `new`, with other refresh intervals (tests).
    pub fn with_intervals(
        signer: Es256Signer,
        refreshes: Counter,
        refresh_after: Duration,
        min_forced_interval: Duration,
    ) -> Result<Self, PushError> {
        let first = mint(&signer)?;
        refreshes.inc();
        Ok(Self {
            signer,
            current: Mutex::new(first),
            refreshes,
            refresh_after,
            min_forced_interval,
        })
    }

    /// The `authorization` header value to send now (re-minted when old).
    pub fn header(&self) -> Result<HeaderValue, PushError> {
        let mut cur = self.current.lock();
        if cur.at.elapsed() >= self.refresh_after {
            *cur = mint(&self.signer)?;
            self.refreshes.inc();
        }
        Ok(cur.header.clone())
    }

    /// APNs said `rejected` is expired or invalid: a new token, unless one
    /// was minted since `rejected` or in the last 20 s (then the current one).
    pub fn refresh_rejected(&self, rejected: &HeaderValue) -> Result<HeaderValue, PushError> {
        let mut cur = self.current.lock();
        if cur.header == *rejected && cur.at.elapsed() >= self.min_forced_interval {
            *cur = mint(&self.signer)?;
            self.refreshes.inc();
            tracing::info!("apns provider token re-minted after a rejection");
        }
        Ok(cur.header.clone())
    }
}

fn mint(signer: &Es256Signer) -> Result<Minted, PushError> {
    let jwt = signer.sign(super::unix_now())?;
    let header = HeaderValue::from_maybe_shared(Bytes::from(format!("bearer {jwt}")))
        .map_err(|e| PushError::BadKey(format!("token is not a header value: {e}")))?;
    Ok(Minted {
        header,
        at: Instant::now(),
    })
}

/// Signs Google OAuth JWT-bearer assertions (RS256) with a service account's key.
pub struct Rs256Signer {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl Rs256Signer {
    /// From the service account's `private_key` (PKCS#8 PEM).
    pub fn from_pem(pem: &str) -> Result<Self, PushError> {
        let der = pkcs8_der(pem, "service account private_key")?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            PushError::BadKey(format!("service account private_key: not an RSA key ({e})"))
        })?;
        Ok(Self {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The assertion for the JWT-bearer grant: `iss` = client email, `aud` =
    /// token endpoint, valid for one hour from `iat`.
    pub fn grant_assertion(
        &self,
        client_email: &str,
        token_uri: &str,
        scope: &str,
        iat: i64,
    ) -> Result<String, PushError> {
        let header = br#"{"alg":"RS256","typ":"JWT"}"#;
        let claims = serde_json::json!({
            "iss": client_email,
            "scope": scope,
            "aud": token_uri,
            "iat": iat,
            "exp": iat + 3600,
        })
        .to_string();
        let mut jwt = format!("{}.{}", b64(header), b64(claims.as_bytes()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, jwt.as_bytes(), &mut sig)
            .map_err(|e| PushError::BadKey(format!("RS256 signing failed: {e}")))?;
        jwt.push('.');
        jwt.push_str(&b64(&sig));
        Ok(jwt)
    }

    /// The public key (DER `RSAPublicKey`), to verify assertions in tests.
    pub fn public_key(&self) -> &[u8] {
        self.key.public().as_ref()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};

    /// A fresh P-256 PKCS#8 key as a p8-style PEM.
    pub(crate) fn p8_pem() -> String {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|d| d.as_ref().to_vec())
            .unwrap_or_default();
        let b = base64::engine::general_purpose::STANDARD.encode(doc);
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    fn split(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, &str) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let dec = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .expect("base64url without padding")
        };
        let h = serde_json::from_slice(&dec(parts[0])).expect("header json");
        let c = serde_json::from_slice(&dec(parts[1])).expect("claims json");
        let signed = &jwt[..parts[0].len() + 1 + parts[1].len()];
        (h, c, dec(parts[2]), signed)
    }

    #[test]
    fn es256_token_has_apple_shape_and_verifies() {
        let s = Es256Signer::from_p8_pem(&p8_pem(), "KEY123", "TEAM456").expect("signer");
        let jwt = s.sign(1_700_000_000).expect("sign");
        assert!(!jwt.contains('='));
        let (h, c, sig, signed) = split(&jwt);
        assert_eq!(h, serde_json::json!({"alg": "ES256", "kid": "KEY123"}));
        assert_eq!(
            c,
            serde_json::json!({"iss": "TEAM456", "iat": 1_700_000_000})
        );
        assert_eq!(sig.len(), 64);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, s.public_key())
            .verify(signed.as_bytes(), &sig)
            .expect("signature verifies");
        let mut tampered = signed.as_bytes().to_vec();
        tampered[3] ^= 1;
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, s.public_key())
                .verify(&tampered, &sig)
                .is_err()
        );
    }

    #[test]
    fn bad_keys_are_refused_clearly() {
        let e = Es256Signer::from_p8_pem("nothing here", "K", "T").err();
        assert!(matches!(e, Some(PushError::BadKey(m)) if m.contains("no private key")));
        let sa: serde_json::Value =
            serde_json::from_str(include_str!("../../testkit/test-service-account.json"))
                .expect("json");
        let rsa_pem = sa["private_key"].as_str().expect("pem");
        let e = Es256Signer::from_p8_pem(rsa_pem, "K", "T").err();
        assert!(matches!(e, Some(PushError::BadKey(m)) if m.contains("P-256")));
        assert!(matches!(
            Es256Signer::from_p8_pem(&p8_pem(), "", "T"),
            Err(PushError::Settings(_))
        ));
    }

    #[test]
    fn provider_token_is_cached_and_forced_refresh_is_throttled() {
        let signer = Es256Signer::from_p8_pem(&p8_pem(), "K", "T").expect("signer");
        let counter = Counter::default();
        let t = ProviderToken::new(signer, counter.clone()).expect("token");
        let a = t.header().expect("header");
        assert!(a.to_str().expect("ascii").starts_with("bearer "));
        assert_eq!(t.header().expect("header"), a);
        // Minted just now: a rejection does not mint again within 20 s.
        assert_eq!(t.refresh_rejected(&a).expect("refresh"), a);
        assert_eq!(counter.get(), 1);

        let signer = Es256Signer::from_p8_pem(&p8_pem(), "K", "T").expect("signer");
        let counter = Counter::default();
        let t =
            ProviderToken::with_intervals(signer, counter.clone(), Duration::ZERO, Duration::ZERO)
                .expect("token");
        let a = t.header().expect("header");
        let b = t.refresh_rejected(&a).expect("refresh");
        // A second rejection of the old token does not mint a third one.
        assert_eq!(t.refresh_rejected(&a).expect("refresh"), b);
        assert_eq!(counter.get(), 3);
    }

    #[test]
    fn rs256_assertion_has_google_claims_and_verifies() {
        let sa: serde_json::Value =
            serde_json::from_str(include_str!("../../testkit/test-service-account.json"))
                .expect("json");
        let s = Rs256Signer::from_pem(sa["private_key"].as_str().expect("pem")).expect("signer");
        let jwt = s
            .grant_assertion(
                "svc@p.iam.gserviceaccount.com",
                "https://t/token",
                FCM_SCOPE,
                1000,
            )
            .expect("sign");
        let (h, c, sig, signed) = split(&jwt);
        assert_eq!(h["alg"], "RS256");
        assert_eq!(c["iss"], "svc@p.iam.gserviceaccount.com");
        assert_eq!(c["aud"], "https://t/token");
        assert_eq!(c["scope"], FCM_SCOPE);
        assert_eq!(c["iat"], 1000);
        assert_eq!(c["exp"], 4600);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, s.public_key())
            .verify(signed.as_bytes(), &sig)
            .expect("signature verifies");
    }
}
