//! OAuth 2 access tokens for FCM. `TokenSource` is the seam: production uses
//! `ServiceAccountTokenSource` (Google's JWT-bearer grant, RFC 7523: an RS256
//! assertion signed with the service account's key, POSTed as a form to its
//! `token_uri` or a configured override), tests may plug in any source. The
//! token is cached until 5 minutes before it expires; refreshes are
//! single-flight (one request at a time, concurrent callers wait for it and
//! share its result). Never logs a token or the key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;

use super::jwt::{Rs256Signer, FCM_SCOPE};
use super::PushError;

/// Refresh this long before the provider says the token expires.
const EARLY_REFRESH: Duration = Duration::from_secs(5 * 60);
const GRANT_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

/// A source of bearer tokens for a provider API.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid access token (cached; fetched when needed).
    async fn token(&self) -> Result<Arc<str>, PushError>;
    /// The provider refused `rejected`: when it is still the cached token,
    /// fetch a new one next time (a burst of refusals of the same token
    /// causes one fetch; a refusal of an older token causes none).
    fn invalidate(&self, rejected: &str);
}

/// The fields of a Google service-account JSON key that the grant needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
    #[serde(default)]
    pub project_id: Option<String>,
}

impl ServiceAccount {
    /// Parse a service-account JSON key file's contents.
    pub fn parse(json: &str) -> Result<Self, PushError> {
        let sa: Self =
            serde_json::from_str(json).map_err(|e| PushError::BadServiceAccount(e.to_string()))?;
        if sa.client_email.is_empty() || sa.token_uri.is_empty() {
            return Err(PushError::BadServiceAccount(
                "client_email and token_uri must not be empty".into(),
            ));
        }
        Ok(sa)
    }
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish()
    }
}

struct Cached {
    token: Arc<str>,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Access tokens from Google's OAuth endpoint via the JWT-bearer grant.
pub struct ServiceAccountTokenSource {
    signer: Rs256Signer,
    client_email: String,
    /// Where the form is POSTed (the override, else the key's `token_uri`).
    token_url: String,
    /// The assertion's `aud`: always the key's `token_uri`.
    audience: String,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    refreshes: Counter,
}

impl ServiceAccountTokenSource {
    /// A source for `account`, posting to `token_url` when given (tests) else
    /// to its `token_uri`; `extra_ca_pem` is trusted besides the web roots.
    pub fn new(
        account: &ServiceAccount,
        token_url: Option<&str>,
        extra_ca_pem: Option<&[u8]>,
        timeout: Duration,
        refreshes: Counter,
    ) -> Result<Self, PushError> {
        let signer = Rs256Signer::from_pem(&account.private_key)?;
        let token_url = token_url.unwrap_or(&account.token_uri).to_owned();
        let parsed = reqwest::Url::parse(&token_url).map_err(|e| PushError::BadUrl {
            url: token_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(PushError::BadUrl {
                url: token_url,
                reason: "the scheme must be https (or http for a local test endpoint)".into(),
            });
        }
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| PushError::Tls(format!("extra CA: {e}")))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| PushError::Tls(e.to_string()))?;
        Ok(Self {
            signer,
            client_email: account.client_email.clone(),
            token_url,
            audience: account.token_uri.clone(),
            http,
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            refreshes,
        })
    }

    fn cached(&self) -> Option<Arc<str>> {
        let c = self.cache.lock();
        c.as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.token.clone())
    }

    async fn fetch(&self) -> Result<Cached, PushError> {
        let assertion = self.signer.grant_assertion(
            &self.client_email,
            &self.audience,
            FCM_SCOPE,
            super::unix_now(),
        )?;
        let form = format!("grant_type={GRANT_TYPE}&assertion={assertion}");
        let resp = self
            .http
            .post(&self.token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| PushError::Token(format!("token endpoint: {e}")))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| PushError::Token(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            // OAuth errors are `{"error": "...", "error_description": "..."}`: no secrets.
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(PushError::Token(format!(
                "token endpoint answered {status} {detail}"
            )));
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| PushError::Token(format!("token response: {e}")))?;
        if t.access_token.is_empty() {
            return Err(PushError::Token(
                "token response: empty access_token".into(),
            ));
        }
        let now = Instant::now();
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3600));
        // A token shorter-lived than the margin is used for half its life.
        let usable = lifetime.checked_sub(EARLY_REFRESH).unwrap_or(lifetime / 2);
        self.refreshes.inc();
        Ok(Cached {
            token: Arc::from(t.access_token),
            refresh_at: now + usable,
        })
    }
}

#[async_trait]
impl TokenSource for ServiceAccountTokenSource {
    async fn token(&self) -> Result<Arc<str>, PushError> {
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let _single_flight = self.refresh.lock().await;
        // Whoever held the lock before may have fetched it already.
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *self.cache.lock() = Some(fresh);
        Ok(token)
    }

    fn invalidate(&self, rejected: &str) {
        let mut c = self.cache.lock();
        if c.as_ref().is_some_and(|c| &*c.token == rejected) {
            *c = None;
        }
    }
}

/// A fixed token (tests, or a token injected by an operator's sidecar).
pub struct StaticToken(pub Arc<str>);

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Arc<str>, PushError> {
        Ok(self.0.clone())
    }

    fn invalidate(&self, _rejected: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const SA: &str = include_str!("../../testkit/test-service-account.json");

    #[test]
    fn service_account_parses_and_rejects_junk() {
        let sa = ServiceAccount::parse(SA).expect("test key parses");
        assert!(sa.client_email.contains('@'));
        assert_eq!(sa.project_id.as_deref(), Some("tocsin-test"));
        assert!(matches!(
            ServiceAccount::parse("{}"),
            Err(PushError::BadServiceAccount(_))
        ));
        assert!(matches!(
            ServiceAccount::parse("not json"),
            Err(PushError::BadServiceAccount(_))
        ));
        let mut v: serde_json::Value = serde_json::from_str(SA).expect("json");
        v["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        let bad = ServiceAccount::parse(&v.to_string()).expect("parses");
        assert!(matches!(
            ServiceAccountTokenSource::new(
                &bad,
                None,
                None,
                Duration::from_secs(1),
                Counter::default()
            ),
            Err(PushError::BadKey(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_token_error() {
        let sa = ServiceAccount::parse(SA).expect("parses");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let src = ServiceAccountTokenSource::new(
            &sa,
            Some(&format!("http://127.0.0.1:{port}/token")),
            None,
            Duration::from_secs(2),
            Counter::default(),
        )
        .expect("source");
        assert!(matches!(src.token().await, Err(PushError::Token(_))));
    }
}
