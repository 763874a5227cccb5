//! Firebase Cloud Messaging channel, HTTP v1 API: one
//! `POST {base}/v1/projects/{project}/messages:send` per device token over
//! the `push::h2pool` HTTP/2 connections, `authorization: Bearer` with an
//! OAuth access token from a `TokenSource` (the service account's JWT-bearer
//! grant in production). The message — `android.priority: HIGH`, `ttl` until
//! the CAP expiry, `collapse_key` = the alert chain's collapse id,
//! notification + data — is rendered once per language per batch; only the
//! token is spliced in per recipient (`push::render::FcmTemplate`). Answers:
//! 200 delivered; `UNREGISTERED`, or `INVALID_ARGUMENT` about the token,
//! drops it; 429/5xx retry honouring `Retry-After` (the dispatcher waits);
//! 401 invalidates the access token, fetches a new one and resends once.
//!
//! Why not the `fcm` crate (0.9): it speaks only the legacy HTTP API, which
//! Google shut down in 2024. Never logs a device token (only `token_tag`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request};
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;

use super::push::h2pool::{H2Pool, H2Response, PoolOptions};
use super::push::oauth::{ServiceAccount, ServiceAccountTokenSource, TokenSource};
use super::push::render::{self, FcmTemplate, PerLanguage, Text};
use super::push::{retry_after, token_tag, transport_outcome, PushError};
use super::{AlertContent, Channel, Outcome, Reach, Recipient, SubscriberKind};
use crate::config::FcmSettings;
use crate::metrics::{ChannelLabel, Metrics};

const CHANNEL: &str = "fcm";

/// What one FCM answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Final for this attempt.
    Done(Outcome),
    /// 401: the access token was refused; get a new one and resend.
    Unauthenticated,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorInner,
}

#[derive(Deserialize, Default)]
struct ErrorInner {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

impl ErrorInner {
    /// `errorCode` of the `google.firebase.fcm.v1.FcmError` detail.
    fn fcm_error_code(&self) -> Option<&str> {
        self.details
            .iter()
            .filter(|d| d["@type"].as_str().is_some_and(|t| t.ends_with("FcmError")))
            .find_map(|d| d["errorCode"].as_str())
    }

    /// True when a `BadRequest` field violation or the message blames the token.
    fn blames_token(&self) -> bool {
        let field = self.details.iter().any(|d| {
            d["fieldViolations"]
                .as_array()
                .is_some_and(|v| v.iter().any(|f| f["field"] == "message.token"))
        });
        field
            || self
                .message
                .to_ascii_lowercase()
                .contains("registration token")
    }
}

/// Map an FCM status and error body to a verdict.
pub fn classify(status: u16, body: &[u8], after: Option<Duration>) -> Verdict {
    let done = Verdict::Done;
    let rejected = |reason, drop| done(Outcome::Rejected { reason, drop });
    let retry = |reason| done(Outcome::Retry { after, reason });
    if status == 200 {
        return done(Outcome::Delivered);
    }
    let err = serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_default()
        .error;
    let code = err.fcm_error_code().unwrap_or(&err.status);
    match (status, code) {
        (_, "UNREGISTERED") => rejected("unregistered", true),
        (400, "INVALID_ARGUMENT") if err.blames_token() => rejected("invalid_token", true),
        (400, _) => rejected("invalid_argument", false),
        (401, _) => Verdict::Unauthenticated,
        (403, "SENDER_ID_MISMATCH") => rejected("sender_id_mismatch", false),
        (403, _) => rejected("forbidden", false),
        (404, _) => rejected("not_found", false),
        (429, _) => retry("throttled"),
        (503, _) => retry("unavailable"),
        (500..=599, _) => retry("server_error"),
        _ => rejected("http_status", false),
    }
}

/// The FCM channel.
pub struct FcmChannel {
    pool: H2Pool,
    tokens: Arc<dyn TokenSource>,
    path: PathAndQuery,
    latency: Histogram,
}

impl FcmChannel {
    /// A channel for `settings` authenticating with the service-account JSON
    /// key `service_account_json` (its `project_id` is used when the settings
    /// name none); `extra_ca_pem` is trusted besides the platform roots, for
    /// both the FCM endpoint and the token endpoint.
    pub fn new(
        settings: &FcmSettings,
        service_account_json: &str,
        extra_ca_pem: Option<&[u8]>,
        metrics: Metrics,
    ) -> Result<Self, PushError> {
        let account = ServiceAccount::parse(service_account_json)?;
        let project = if settings.project_id.is_empty() {
            account.project_id.clone().unwrap_or_default()
        } else {
            settings.project_id.clone()
        };
        let tokens = ServiceAccountTokenSource::new(
            &account,
            settings.token_url.as_deref(),
            extra_ca_pem,
            Duration::from_millis(settings.timeout_ms.max(1)),
            metrics
                .auth_refreshes
                .get_or_create(&ChannelLabel { channel: CHANNEL })
                .clone(),
        )?;
        Self::build(settings, &project, Arc::new(tokens), extra_ca_pem, metrics)
    }

    /// A channel taking its access tokens from `tokens` (tests, other auth).
    pub fn with_token_source(
        settings: &FcmSettings,
        tokens: Arc<dyn TokenSource>,
        extra_ca_pem: Option<&[u8]>,
        metrics: Metrics,
    ) -> Result<Self, PushError> {
        Self::build(
            settings,
            &settings.project_id,
            tokens,
            extra_ca_pem,
            metrics,
        )
    }

    fn build(
        settings: &FcmSettings,
        project: &str,
        tokens: Arc<dyn TokenSource>,
        extra_ca_pem: Option<&[u8]>,
        metrics: Metrics,
    ) -> Result<Self, PushError> {
        let project_ok = !project.is_empty()
            && project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !project_ok {
            return Err(PushError::Settings(
                "fcm: project_id is required (settings or service account) and must be a plain id"
                    .into(),
            ));
        }
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let pool = H2Pool::new(
            CHANNEL,
            &settings.base_url,
            PoolOptions {
                connections: settings.connections,
                request_timeout: timeout,
                connect_timeout: timeout.min(Duration::from_secs(10)),
            },
            extra_ca_pem,
            &metrics,
        )?;
        let path = format!("{}/v1/projects/{project}/messages:send", pool.prefix());
        let path = PathAndQuery::from_maybe_shared(Bytes::from(path)).map_err(|e| {
            PushError::Settings(format!("fcm: project_id does not fit in a path: {e}"))
        })?;
        Ok(Self {
            pool,
            tokens,
            path,
            latency: metrics
                .push_request_seconds
                .get_or_create(&ChannelLabel { channel: CHANNEL })
                .clone(),
        })
    }

    /// The connection pool (open connections, for tests and health).
    pub fn pool(&self) -> &H2Pool {
        &self.pool
    }

    async fn auth_header(&self) -> Result<HeaderValue, PushError> {
        let t = self.tokens.token().await?;
        HeaderValue::from_maybe_shared(Bytes::from(format!("Bearer {t}")))
            .map_err(|_| PushError::Token("access token is not a valid header value".into()))
    }

    async fn attempt(&self, auth: HeaderValue, body: Bytes) -> Result<Verdict, PushError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.pool.uri(self.path.clone());
        let h = req.headers_mut();
        h.insert(AUTHORIZATION, auth);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let started = Instant::now();
        let H2Response {
            status,
            headers,
            body,
        } = self.pool.send(req).await?;
        self.latency.observe(started.elapsed().as_secs_f64());
        Ok(classify(status.as_u16(), &body, retry_after(&headers)))
    }

    async fn send_one(&self, r: &Recipient<'_>, body: Bytes, auth: &HeaderValue) -> Outcome {
        if r.address.is_empty() {
            return Outcome::Rejected {
                reason: "invalid_token",
                drop: true,
            };
        }
        let mut auth = auth.clone();
        for resend in [false, true] {
            let verdict = match self.attempt(auth.clone(), body.clone()).await {
                Ok(v) => v,
                Err(e) => return transport_outcome("fcm", &e),
            };
            match verdict {
                Verdict::Done(o) => {
                    if let Outcome::Rejected { reason, drop } = o {
                        tracing::debug!(token = %token_tag(r.address), reason, drop, "fcm rejected");
                    }
                    return o;
                }
                Verdict::Unauthenticated if !resend => {
                    let rejected = auth.to_str().unwrap_or_default();
                    let rejected = rejected
                        .strip_prefix("Bearer ")
                        .unwrap_or(rejected)
                        .to_owned();
                    self.tokens.invalidate(&rejected);
                    match self.auth_header().await {
                        Ok(fresh) => auth = fresh,
                        Err(e) => {
                            tracing::warn!(error = %e, "fcm access token unavailable");
                            break;
                        }
                    }
                }
                Verdict::Unauthenticated => {
                    tracing::warn!("fcm refused a freshly fetched access token");
                }
            }
        }
        Outcome::Retry {
            after: None,
            reason: "auth",
        }
    }
}

#[async_trait]
impl Channel for FcmChannel {
    fn name(&self) -> &'static str {
        CHANNEL
    }

    fn reach(&self) -> Reach {
        Reach::Subscribers(SubscriberKind::Fcm)
    }

    async fn deliver(
        &self,
        alert: &AlertContent,
        recipients: &[Recipient<'_>],
        out: &mut Vec<Outcome>,
    ) {
        let auth = match self.auth_header().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "fcm access token unavailable");
                out.extend(recipients.iter().map(|_| Outcome::Retry {
                    after: None,
                    reason: "auth",
                }));
                return;
            }
        };
        let collapse_id = alert.collapse_id();
        let now = chrono::Utc::now();
        let mut templates: PerLanguage<'_, FcmTemplate> = PerLanguage::default();
        let sends: Vec<_> = recipients
            .iter()
            .map(|r| {
                let body = templates
                    .get(alert, r.language, |info| {
                        render::fcm_template(alert, &Text::of(alert, info), &collapse_id, now)
                    })
                    .body_for(r.address);
                self.send_one(r, body, &auth)
            })
            .collect();
        out.extend(futures::future::join_all(sends).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::push::oauth::StaticToken;

    fn body(code: u16, status: &str, message: &str, details: serde_json::Value) -> Vec<u8> {
        serde_json::json!({"error": {"code": code, "message": message, "status": status, "details": details}})
            .to_string()
            .into_bytes()
    }

    fn fcm_error(code: &str) -> serde_json::Value {
        serde_json::json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}])
    }

    #[test]
    fn responses_classify() {
        let d = Verdict::Done;
        assert_eq!(
            classify(200, b"{\"name\":\"x\"}", None),
            d(Outcome::Delivered)
        );
        let unreg = body(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            fcm_error("UNREGISTERED"),
        );
        assert_eq!(
            classify(404, &unreg, None),
            d(Outcome::Rejected {
                reason: "unregistered",
                drop: true
            })
        );
        let bad_token = body(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            fcm_error("INVALID_ARGUMENT"),
        );
        assert_eq!(
            classify(400, &bad_token, None),
            d(Outcome::Rejected {
                reason: "invalid_token",
                drop: true
            })
        );
        let field = body(
            400,
            "INVALID_ARGUMENT",
            "Invalid value",
            serde_json::json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": "bad"}]}]),
        );
        assert!(matches!(
            classify(400, &field, None),
            Verdict::Done(Outcome::Rejected { drop: true, .. })
        ));
        // An invalid payload is our fault: never drop the subscriber for it.
        let bad_ttl = body(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.android.ttl'",
            fcm_error("INVALID_ARGUMENT"),
        );
        assert_eq!(
            classify(400, &bad_ttl, None),
            d(Outcome::Rejected {
                reason: "invalid_argument",
                drop: false
            })
        );
        // A 404 without UNREGISTERED (wrong project) must not drop anyone.
        let no_project = body(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            serde_json::json!([]),
        );
        assert!(matches!(
            classify(404, &no_project, None),
            Verdict::Done(Outcome::Rejected { drop: false, .. })
        ));
        assert_eq!(classify(401, b"", None), Verdict::Unauthenticated);
        let after = Some(Duration::from_secs(9));
        for s in [429, 500, 503] {
            assert!(
                matches!(classify(s, b"junk", after), Verdict::Done(Outcome::Retry { after: a, .. }) if a == after),
                "{s}"
            );
        }
        assert!(matches!(
            classify(
                403,
                &body(
                    403,
                    "PERMISSION_DENIED",
                    "",
                    fcm_error("SENDER_ID_MISMATCH")
                ),
                None
            ),
            Verdict::Done(Outcome::Rejected { drop: false, .. })
        ));
    }

    #[test]
    fn settings_are_checked() {
        let sa = include_str!("../testkit/test-service-account.json");
        let s = FcmSettings::default();
        // The project comes from the service account when the settings have none.
        let ch = FcmChannel::new(&s, sa, None, Metrics::new()).expect("channel");
        assert_eq!(ch.path.as_str(), "/v1/projects/tocsin-test/messages:send");
        let tokens: Arc<dyn TokenSource> = Arc::new(StaticToken(Arc::from("t")));
        assert!(matches!(
            FcmChannel::with_token_source(&s, tokens.clone(), None, Metrics::new()),
            Err(PushError::Settings(_))
        ));
        let bad = FcmSettings {
            project_id: "a/b".into(),
            ..FcmSettings::default()
        };
        assert!(FcmChannel::with_token_source(&bad, tokens, None, Metrics::new()).is_err());
        assert!(matches!(
            FcmChannel::new(&s, "{}", None, Metrics::new()),
            Err(PushError::BadServiceAccount(_))
        ));
    }
}

#[cfg(test)]
mod server_tests {
    //! The channel against a minimal FCM v1 endpoint over HTTP/2 + TLS (the
    //! full protocol server lives in `testkit`; this one only answers what
    //! these tests need).
    use super::*;
    use crate::alert::cap::MsgType;
    use crate::channel::push::render::tests::{content, info};
    use crate::testkit::tls::TestTls;
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper::{Response, StatusCode};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use parking_lot::Mutex;
    use std::convert::Infallible;

    /// Hands out `old` until invalidated, then `new`.
    struct Rotating(Mutex<&'static str>);

    #[async_trait]
    impl TokenSource for Rotating {
        async fn token(&self) -> Result<Arc<str>, PushError> {
            Ok(Arc::from(*self.0.lock()))
        }
        fn invalidate(&self, _rejected: &str) {
            *self.0.lock() = "new";
        }
    }

    #[derive(Default)]
    struct Seen {
        bodies: Vec<serde_json::Value>,
        unauthorized: usize,
    }

    async fn handle(seen: Arc<Mutex<Seen>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let answer = |status: StatusCode, body: serde_json::Value| {
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            *r.status_mut() = status;
            r
        };
        if req.uri().path() != "/v1/projects/p1/messages:send" {
            return answer(StatusCode::NOT_FOUND, serde_json::json!({}));
        }
        if req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()) != Some(b"Bearer new") {
            seen.lock().unauthorized += 1;
            return answer(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}),
            );
        }
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let dead = v["message"]["token"] == "dead";
        seen.lock().bodies.push(v);
        if dead {
            return answer(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
                    "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}),
            );
        }
        answer(
            StatusCode::OK,
            serde_json::json!({"name": "projects/p1/messages/1"}),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_v1_messages_and_recovers_from_a_refused_access_token() {
        let tls = TestTls::localhost().unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config(&[b"h2"]).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen2.clone());
                tokio::spawn(async move {
                    let Ok(io) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(handle(seen, req).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        let settings = FcmSettings {
            base_url: format!("https://{addr}"),
            project_id: "p1".into(),
            connections: 2,
            timeout_ms: 5000,
            ..FcmSettings::default()
        };
        let tokens = Arc::new(Rotating(Mutex::new("old")));
        let ch =
            FcmChannel::with_token_source(&settings, tokens, Some(tls.ca_pem()), Metrics::new())
                .expect("channel");
        let alert = content(
            vec![info("en", "Quake", "Shaking"), info("zh", "地震", "摇晃")],
            MsgType::Update,
        );
        let addrs = ["t-en", "t-zh", "dead"];
        let recips: Vec<Recipient<'_>> = addrs
            .iter()
            .zip(["en-GB", "zh", "en"])
            .enumerate()
            .map(|(i, (a, l))| Recipient {
                id: i as u32,
                address: a,
                language: l,
            })
            .collect();
        let mut out = Vec::new();
        ch.deliver(&alert, &recips, &mut out).await;
        assert_eq!(
            out,
            [
                Outcome::Delivered,
                Outcome::Delivered,
                Outcome::Rejected {
                    reason: "unregistered",
                    drop: true
                }
            ]
        );
        let seen = seen.lock();
        assert_eq!(
            seen.unauthorized, 3,
            "every first attempt used the refused token"
        );
        let zh = seen
            .bodies
            .iter()
            .find(|b| b["message"]["token"] == "t-zh")
            .expect("zh message");
        assert_eq!(zh["message"]["notification"]["title"], "地震");
        assert_eq!(
            zh["message"]["android"]["collapse_key"],
            alert.collapse_id().as_str()
        );
        assert_eq!(zh["message"]["data"]["msg_type"], "Update");
    }
}
