//! Test credentials for the provider servers: an APNs token-auth key shaped
//! like Apple's `.p8` download (PKCS#8 PEM, ECDSA P-256) with its team and
//! key ids, and a throwaway Google service account (RSA, PKCS#8) for the
//! OAuth2 JWT-bearer grant. The public halves are what the servers verify
//! with. Nothing here is a real credential; never load these in production.

use super::jwt::{self, pem_body};

/// An APNs signing key as a provider would hold it, plus its public key.
#[derive(Clone, Debug)]
pub struct ApnsTestKey {
    /// Apple team id (`iss` of the provider JWT).
    pub team_id: String,
    /// Key id (`kid` of the provider JWT header).
    pub key_id: String,
    /// The private key, PKCS#8 PEM, as in Apple's `AuthKey_<kid>.p8`.
    pub p8_pem: String,
    /// Uncompressed SEC1 public point, for `ECDSA_P256_SHA256_FIXED`.
    pub public_key: Vec<u8>,
}

impl ApnsTestKey {
    /// A fresh P-256 key with team id `TEAM123456` and key id `KEY1234567`.
    pub fn generate() -> std::io::Result<ApnsTestKey> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(std::io::Error::other)?;
        Ok(ApnsTestKey {
            team_id: "TEAM123456".to_string(),
            key_id: "KEY1234567".to_string(),
            p8_pem: kp.serialize_pem(),
            public_key: kp.public_key_raw().to_vec(),
        })
    }

    /// A provider token (ES256 JWT, `kid` = key id, `iss` = team id) issued
    /// at `iat` (Unix seconds), as a client would send in `authorization`.
    pub fn jwt(&self, iat: u64) -> String {
        let header = serde_json::json!({"alg": "ES256", "kid": self.key_id});
        let claims = serde_json::json!({"iss": self.team_id, "iat": iat});
        let der = pem_body(&self.p8_pem, "PRIVATE KEY").expect("own p8 PEM");
        let rng = ring::rand::SystemRandom::new();
        let kp = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &rng,
        )
        .expect("own P-256 key");
        jwt::sign_with(&header, &claims, |msg| {
            kp.sign(&rng, msg).expect("ECDSA signing").as_ref().to_vec()
        })
    }
}

/// A JWT-bearer assertion signed with the test service account, as a client
/// posts to the token endpoint: `iss` = client email, `aud` = `token_url`,
/// the FCM scope, issued at `iat` and valid for an hour.
pub fn test_assertion(token_url: &str, iat: u64) -> String {
    #[derive(serde::Deserialize)]
    struct Sa {
        client_email: String,
        private_key: String,
        private_key_id: String,
    }
    let sa: Sa = serde_json::from_str(test_service_account()).expect("test service account JSON");
    let der = pem_body(&sa.private_key, "PRIVATE KEY").expect("test service account key PEM");
    let kp = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("test service account RSA key");
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": sa.private_key_id});
    let claims = serde_json::json!({
        "iss": sa.client_email,
        "scope": FCM_SCOPE,
        "aud": token_url,
        "iat": iat,
        "exp": iat + 3600,
    });
    jwt::sign_with(&header, &claims, |msg| {
        let rng = ring::rand::SystemRandom::new();
        let mut sig = vec![0u8; kp.public().modulus_len()];
        kp.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .expect("RSA signing");
        sig
    })
}

/// The OAuth scope FCM HTTP v1 sends require.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The throwaway service-account JSON the local FCM server trusts.
pub fn test_service_account() -> &'static str {
    include_str!("test-service-account.json")
}

/// What the token endpoint needs from a service account: who it is and the
/// RSA public key its assertions are checked with.
#[derive(Clone, Debug)]
pub struct ServiceAccountPublic {
    /// `client_email`, the `iss` of the assertion.
    pub client_email: String,
    /// `project_id` of the account.
    pub project_id: String,
    /// DER `RSAPublicKey`, for `RSA_PKCS1_2048_8192_SHA256`.
    pub public_key: Vec<u8>,
}

/// Errors reading a service-account JSON.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("service account JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("service account: {0}")]
    Key(String),
}

#[derive(serde::Deserialize)]
struct ServiceAccountJson {
    client_email: String,
    #[serde(default)]
    project_id: String,
    private_key: String,
}

impl ServiceAccountPublic {
    /// Parse a service-account JSON and derive the public key from its
    /// `private_key` (PKCS#8 PEM).
    pub fn from_json(json: &str) -> Result<ServiceAccountPublic, ServiceAccountError> {
        let sa: ServiceAccountJson = serde_json::from_str(json)?;
        let der = pem_body(&sa.private_key, "PRIVATE KEY")
            .ok_or_else(|| ServiceAccountError::Key("private_key is not a PKCS#8 PEM".into()))?;
        let kp = ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| ServiceAccountError::Key(format!("private_key: {e}")))?;
        Ok(ServiceAccountPublic {
            client_email: sa.client_email,
            project_id: sa.project_id,
            public_key: kp.public().as_ref().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair as _, UnparsedPublicKey};

    #[test]
    fn apns_key_signs_and_verifies() {
        let k = ApnsTestKey::generate().unwrap();
        assert!(k.p8_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let der = pem_body(&k.p8_pem, "PRIVATE KEY").unwrap();
        let rng = ring::rand::SystemRandom::new();
        let kp = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &rng,
        )
        .unwrap();
        assert_eq!(kp.public_key().as_ref(), k.public_key.as_slice());
        let sig = kp.sign(&rng, b"msg").unwrap();
        UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &k.public_key)
            .verify(b"msg", sig.as_ref())
            .unwrap();
    }

    #[test]
    fn service_account_public_key() {
        let sa = ServiceAccountPublic::from_json(test_service_account()).unwrap();
        assert!(sa.client_email.contains('@'));
        assert_eq!(sa.project_id, "tocsin-test");
        assert!(sa.public_key.len() > 256);
    }
}
