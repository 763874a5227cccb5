//! Apple Push Notification service channel: HTTP/2 `POST {base}/3/device/{token}`
//! with token-based auth (an ES256 JWT from the team's p8 key, shared by
//! every connection and re-minted before its hour is up), `apns-push-type:
//! alert`, priority 10, `apns-expiration` = CAP expiry, `apns-collapse-id` =
//! the alert chain's collapse id (so an Update or Cancel replaces the earlier
//! notification), `apns-id` = a stable per-recipient UUID. The payload is
//! rendered once per language per batch (`push::render`); every recipient of
//! a batch is sent at once over the `push::h2pool` connections (the
//! dispatcher bounds batches and concurrency), driven by one
//! `FuturesUnordered` and bounded by one deadline per batch (the requests
//! start together, so that is each request's timeout without a timer each).
//! Status + `reason` map to outcomes: 410 and token errors drop the token, 429/5xx retry honouring
//! `Retry-After` (the dispatcher waits, never this channel), an expired or
//! invalid provider token is re-minted and the request resent once.
//!
//! Why not the `a2` crate (0.10): it cannot target any endpoint but Apple's
//! (no custom base URL; its connector is private and https-only with web
//! roots, so local test servers are out of reach), it ignores `Retry-After`,
//! and it pulls a second rustls. Its payload types are not used either: the
//! payload here is a few keys built with `serde_json` and trimmed to 4 KB by
//! `push::render`. This module never logs a device token (only `token_tag`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt as _};
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request};
use prometheus_client::metrics::histogram::Histogram;
use sha2::Digest as _;

use super::push::h2pool::{H2Pool, H2Response, PoolOptions};
use super::push::jwt::{Es256Signer, ProviderToken};
use super::push::render::{self, PerLanguage, Text};
use super::push::{retry_after, token_tag, transport_outcome, PushError};
use super::{AlertContent, Channel, Outcome, Reach, Recipient, SubscriberKind};
use crate::channel::content::uuid_text;
use crate::config::ApnsSettings;
use crate::metrics::{ChannelLabel, Metrics};

const CHANNEL: &str = "apns";
/// Request header names APNs defines (shared with the push bench).
pub const APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
pub const APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
pub const APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
pub const APNS_COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");
pub const APNS_ID: HeaderName = HeaderName::from_static("apns-id");
pub const APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");

/// What one APNs answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Final for this attempt.
    Done(Outcome),
    /// `ExpiredProviderToken`, `InvalidProviderToken` or `MissingProviderToken`:
    /// mint a new JWT and resend.
    ProviderToken,
}

/// Map an APNs status and `reason` (from the JSON error body) to a verdict.
pub fn classify(status: u16, reason: Option<&str>, after: Option<Duration>) -> Verdict {
    let done = Verdict::Done;
    let rejected = |reason, drop| done(Outcome::Rejected { reason, drop });
    let retry = |reason| done(Outcome::Retry { after, reason });
    match (status, reason.unwrap_or("")) {
        (200, _) => done(Outcome::Delivered),
        (410, _) => rejected("unregistered", true),
        (400, "BadDeviceToken") => rejected("bad_device_token", true),
        (400, "DeviceTokenNotForTopic") => rejected("device_token_not_for_topic", true),
        (400, "IdleTimeout") => retry("connection"),
        (400, _) => rejected("bad_request", false),
        (403, "ExpiredProviderToken" | "InvalidProviderToken" | "MissingProviderToken") => {
            Verdict::ProviderToken
        }
        (403, _) => rejected("forbidden", false),
        (413, _) => rejected("payload_too_large", false),
        (429, _) => retry("throttled"),
        (503, _) => retry("unavailable"),
        (500..=599, _) => retry("server_error"),
        _ => rejected("http_status", false),
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    reason: Option<String>,
}

/// Headers shared by every request of one batch.
struct BatchHeaders {
    expiration: HeaderValue,
    collapse_id: HeaderValue,
    /// SHA-256 already fed the alert id: `apns-id` per recipient without
    /// re-hashing the id or building intermediate strings.
    uuid_seed: sha2::Sha256,
}

impl BatchHeaders {
    /// `apns-id` for recipient `id`: exactly `AlertContent::delivery_uuid`
    /// (lowercase 8-4-4-4-12 hex of the first 16 bytes of
    /// SHA-256(alert id ‖ id as big-endian u32)), built in place.
    fn apns_id(&self, id: u32) -> HeaderValue {
        let mut h = self.uuid_seed.clone();
        h.update(id.to_be_bytes());
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        // Hex digits and dashes: always a valid header value.
        HeaderValue::from_bytes(&uuid_text(&b)).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The APNs channel.
pub struct ApnsChannel {
    pool: H2Pool,
    token: ProviderToken,
    topic: HeaderValue,
    critical: bool,
    /// `{base path}/3/device/`
    path_prefix: String,
    latency: Histogram,
}

impl ApnsChannel {
    /// A channel for `settings`, signing with the p8 key `p8_pem` and trusting
    /// `extra_ca_pem` besides the platform roots. Connects on first delivery.
    pub fn new(
        settings: &ApnsSettings,
        p8_pem: &str,
        extra_ca_pem: Option<&[u8]>,
        metrics: Metrics,
    ) -> Result<Self, PushError> {
        if settings.topic.is_empty() {
            return Err(PushError::Settings(
                "apns: topic (the app's bundle id) is required".into(),
            ));
        }
        let topic = HeaderValue::from_str(&settings.topic)
            .map_err(|_| PushError::Settings("apns: topic is not a valid header value".into()))?;
        let signer = Es256Signer::from_p8_pem(p8_pem, &settings.key_id, &settings.team_id)?;
        let label = ChannelLabel { channel: CHANNEL };
        let token =
            ProviderToken::new(signer, metrics.auth_refreshes.get_or_create(&label).clone())?;
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
        Ok(Self {
            path_prefix: format!("{}/3/device/", pool.prefix()),
            pool,
            token,
            topic,
            critical: settings.critical,
            latency: metrics.push_request_seconds.get_or_create(&label).clone(),
        })
    }

    /// The connection pool (open connections, for tests and health).
    pub fn pool(&self) -> &H2Pool {
        &self.pool
    }

    fn request(
        &self,
        path: PathAndQuery,
        batch: &BatchHeaders,
        apns_id: &HeaderValue,
        auth: HeaderValue,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.pool.uri(path);
        let h = req.headers_mut();
        h.reserve(9);
        h.insert(AUTHORIZATION, auth);
        h.insert(APNS_PUSH_TYPE, HeaderValue::from_static("alert"));
        h.insert(APNS_PRIORITY, HeaderValue::from_static("10"));
        h.insert(APNS_EXPIRATION, batch.expiration.clone());
        h.insert(APNS_COLLAPSE_ID, batch.collapse_id.clone());
        h.insert(APNS_ID, apns_id.clone());
        h.insert(APNS_TOPIC, self.topic.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req
    }

    async fn attempt(&self, req: Request<Full<Bytes>>) -> Result<Verdict, PushError> {
        let started = Instant::now();
        let H2Response {
            status,
            headers,
            body,
        } = self.pool.send_untimed(req).await?;
        self.latency.observe(started.elapsed().as_secs_f64());
        let status = status.as_u16();
        let reason = if status == 200 || body.is_empty() {
            None
        } else {
            serde_json::from_slice::<ErrorBody>(&body)
                .ok()
                .and_then(|b| b.reason)
        };
        Ok(classify(status, reason.as_deref(), retry_after(&headers)))
    }

    async fn send_one(
        &self,
        batch: &BatchHeaders,
        r: &Recipient<'_>,
        body: Bytes,
        auth: &HeaderValue,
    ) -> Outcome {
        let bad_token = Outcome::Rejected {
            reason: "bad_device_token",
            drop: true,
        };
        if !token_is_path_safe(r.address) {
            return bad_token;
        }
        let mut path = String::with_capacity(self.path_prefix.len() + r.address.len());
        path.push_str(&self.path_prefix);
        path.push_str(r.address);
        let Ok(path) = PathAndQuery::from_maybe_shared(Bytes::from(path)) else {
            return bad_token;
        };
        let apns_id = batch.apns_id(r.id);
        let mut auth = auth.clone();
        for resend in [false, true] {
            let req = self.request(path.clone(), batch, &apns_id, auth.clone(), body.clone());
            let verdict = match self.attempt(req).await {
                Ok(v) => v,
                Err(e) => return transport_outcome(CHANNEL, &e),
            };
            match verdict {
                Verdict::Done(o) => {
                    if let Outcome::Rejected { reason, drop } = o {
                        tracing::debug!(token = %token_tag(r.address), reason, drop, "apns rejected");
                    }
                    return o;
                }
                Verdict::ProviderToken if !resend => match self.token.refresh_rejected(&auth) {
                    Ok(fresh) => auth = fresh,
                    Err(e) => {
                        tracing::warn!(error = %e, "apns provider token could not be re-minted");
                        break;
                    }
                },
                Verdict::ProviderToken => {
                    tracing::warn!("apns rejected a freshly minted provider token");
                }
            }
        }
        Outcome::Retry {
            after: None,
            reason: "provider_token",
        }
    }
}

/// Device tokens are hex; anything that could change the request path is refused.
fn token_is_path_safe(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 200
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[async_trait]
impl Channel for ApnsChannel {
    fn name(&self) -> &'static str {
        CHANNEL
    }

    fn reach(&self) -> Reach {
        Reach::Subscribers(SubscriberKind::Apns)
    }

    async fn deliver(
        &self,
        alert: &AlertContent,
        recipients: &[Recipient<'_>],
        out: &mut Vec<Outcome>,
    ) {
        let auth = match self.token.header() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "apns provider token unavailable");
                out.extend(recipients.iter().map(|_| Outcome::Retry {
                    after: None,
                    reason: "provider_token",
                }));
                return;
            }
        };
        let collapse_id = alert.collapse_id();
        let batch = BatchHeaders {
            expiration: HeaderValue::from(alert.expires.map_or(0, |e| e.timestamp().max(0))),
            // 32 hex digits: always a valid header value.
            collapse_id: HeaderValue::from_str(&collapse_id)
                .unwrap_or(HeaderValue::from_static("")),
            uuid_seed: sha2::Sha256::new_with_prefix(alert.alert_id.as_bytes()),
        };
        // Every request of the batch starts now, so one deadline for the
        // batch is each request's timeout, without a timer per request.
        let deadline = tokio::time::sleep(self.pool.request_timeout());
        let mut payloads: PerLanguage<'_, Bytes> = PerLanguage::default();
        let (batch, auth) = (&batch, &auth);
        // Unordered (no reordering heap, no intermediate Vec of futures):
        // each answer is written to its recipient's slot as it arrives.
        let mut running: FuturesUnordered<_> = recipients
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let body = payloads
                    .get(alert, r.language, |info| {
                        render::apns_payload(
                            alert,
                            &Text::of(alert, info),
                            &collapse_id,
                            self.critical,
                        )
                    })
                    .clone();
                async move { (i, self.send_one(batch, r, body, auth).await) }
            })
            .collect();
        let base = out.len();
        out.resize(
            base + recipients.len(),
            Outcome::Retry {
                after: None,
                reason: "timeout",
            },
        );
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                next = running.next() => match next {
                    Some((i, o)) => out[base + i] = o,
                    None => break,
                },
                // Requests still running are dropped (cancelled) and stay
                // `Retry { reason: "timeout" }`.
                _ = &mut deadline => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_classify() {
        let d = |o| Verdict::Done(o);
        let after = Some(Duration::from_secs(3));
        assert_eq!(classify(200, None, None), d(Outcome::Delivered));
        for (status, reason, want) in [
            (410, Some("Unregistered"), "unregistered"),
            (410, Some("ExpiredToken"), "unregistered"),
            (400, Some("BadDeviceToken"), "bad_device_token"),
            (
                400,
                Some("DeviceTokenNotForTopic"),
                "device_token_not_for_topic",
            ),
        ] {
            assert_eq!(
                classify(status, reason, None),
                d(Outcome::Rejected {
                    reason: want,
                    drop: true
                }),
                "{status} {reason:?}"
            );
        }
        for (status, reason) in [
            (429, "TooManyRequests"),
            (503, "ServiceUnavailable"),
            (500, "InternalServerError"),
        ] {
            assert!(
                matches!(classify(status, Some(reason), after), Verdict::Done(Outcome::Retry { after: a, .. }) if a == after),
                "{status}"
            );
        }
        assert!(matches!(
            classify(429, Some("TooManyProviderTokenUpdates"), None),
            Verdict::Done(Outcome::Retry { after: None, .. })
        ));
        for r in [
            "ExpiredProviderToken",
            "InvalidProviderToken",
            "MissingProviderToken",
        ] {
            assert_eq!(classify(403, Some(r), None), Verdict::ProviderToken);
        }
        for (status, reason) in [
            (400, Some("BadTopic")),
            (403, Some("BadCertificate")),
            (413, None),
            (404, Some("BadPath")),
        ] {
            assert!(
                matches!(
                    classify(status, reason, None),
                    Verdict::Done(Outcome::Rejected { drop: false, .. })
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn tokens_that_would_change_the_path_are_refused() {
        assert!(token_is_path_safe("a1b2c3d4e5f6"));
        for t in ["", "../x", "a/b", "a?b", "a b", "a%2f", "ü"] {
            assert!(!token_is_path_safe(t), "{t}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let p8 = crate::channel::push::jwt::tests::p8_pem();
        let ok = ApnsSettings {
            team_id: "T".into(),
            key_id: "K".into(),
            topic: "org.example.alerts".into(),
            ..ApnsSettings::default()
        };
        assert!(ApnsChannel::new(&ok, &p8, None, Metrics::new()).is_ok());
        let no_topic = ApnsSettings {
            topic: String::new(),
            ..ok.clone()
        };
        assert!(matches!(
            ApnsChannel::new(&no_topic, &p8, None, Metrics::new()),
            Err(PushError::Settings(_))
        ));
        let http = ApnsSettings {
            base_url: "http://localhost".into(),
            ..ok.clone()
        };
        assert!(matches!(
            ApnsChannel::new(&http, &p8, None, Metrics::new()),
            Err(PushError::BadUrl { .. })
        ));
        assert!(matches!(
            ApnsChannel::new(&ok, "junk", None, Metrics::new()),
            Err(PushError::BadKey(_))
        ));
    }
}

#[cfg(test)]
mod server_tests {
    //! The channel against the local APNs-protocol server (`testkit`).
    use super::*;
    use crate::alert::cap::MsgType;
    use crate::channel::push::render::tests::{content, info};
    use crate::testkit::apns_server::{ApnsServer, ApnsServerOptions, DEFAULT_TOPIC};
    use crate::testkit::keys::ApnsTestKey;
    use std::sync::atomic::Ordering;

    fn setup() -> (ApnsServer, ApnsChannel, Metrics) {
        let key = ApnsTestKey::generate().unwrap();
        let server = ApnsServer::start(ApnsServerOptions::from_key(&key)).expect("server");
        let settings = ApnsSettings {
            base_url: server.base_url(),
            team_id: key.team_id.clone(),
            key_id: key.key_id.clone(),
            topic: DEFAULT_TOPIC.into(),
            connections: 2,
            timeout_ms: 5000,
            ..ApnsSettings::default()
        };
        let metrics = Metrics::new();
        let ch = ApnsChannel::new(
            &settings,
            &key.p8_pem,
            Some(server.ca_pem()),
            metrics.clone(),
        )
        .expect("channel");
        (server, ch, metrics)
    }

    fn recipients(tokens: &[String]) -> Vec<Recipient<'_>> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| Recipient {
                id: i as u32,
                address: t,
                language: if i % 2 == 0 { "en" } else { "zh-CN" },
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivers_a_batch_in_each_language_and_drops_dead_tokens() {
        let (server, ch, metrics) = setup();
        let st = server.state();
        let alert = content(
            vec![info("en", "Quake", "Shaking"), info("zh", "地震", "摇晃")],
            MsgType::Alert,
        );
        let tokens: Vec<String> = (0..300).map(|i| format!("{i:064x}")).collect();
        st.mark_unregistered(&tokens[1]);
        st.mark_bad_token(&tokens[2]);
        let recips = recipients(&tokens);
        let mut out = Vec::new();
        ch.deliver(&alert, &recips, &mut out).await;
        assert_eq!(out.len(), 300);
        assert_eq!(
            out[1],
            Outcome::Rejected {
                reason: "unregistered",
                drop: true
            }
        );
        assert_eq!(
            out[2],
            Outcome::Rejected {
                reason: "bad_device_token",
                drop: true
            }
        );
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, o)| i == 1 || i == 2 || *o == Outcome::Delivered));
        assert_eq!(st.delivered(), 298);

        let rec = st.received();
        let zh = rec
            .iter()
            .find(|r| r.token == tokens[3])
            .expect("token 3 delivered");
        assert_eq!(zh.payload["aps"]["alert"]["title"], "地震");
        assert_eq!(
            zh.collapse_id.as_deref(),
            Some(alert.collapse_id().as_str())
        );
        assert_eq!(zh.apns_id.as_deref(), Some(alert.delivery_uuid(3).as_str()));
        assert_eq!(zh.expiration, alert.expires.map(|e| e.timestamp() as u64));
        assert_eq!(
            (zh.priority, zh.push_type.as_str(), zh.topic.as_str()),
            (10, "alert", DEFAULT_TOPIC)
        );
        let en = rec
            .iter()
            .find(|r| r.token == tokens[4])
            .expect("token 4 delivered");
        assert_eq!(en.payload["aps"]["alert"]["title"], "Quake");
        assert!(metrics
            .encode()
            .contains("tocsin_push_connections{channel=\"apns\"} 2"));
        assert_eq!(ch.pool().open_connections(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults_become_retries_and_an_expired_token_is_resent() {
        let (server, ch, _) = setup();
        let st = server.state();
        let alert = content(vec![info("en", "Quake", "Shaking")], MsgType::Alert);
        let tokens: Vec<String> = (0..40).map(|i| format!("{i:064x}")).collect();
        let recips = recipients(&tokens);
        let mut out = Vec::new();

        st.expire_next.store(1, Ordering::SeqCst);
        ch.deliver(&alert, &recips[..1], &mut out).await;
        assert_eq!(out, [Outcome::Delivered]);

        out.clear();
        st.retry_after_secs.store(7, Ordering::SeqCst);
        st.throttle_next.store(1, Ordering::SeqCst);
        ch.deliver(&alert, &recips[..1], &mut out).await;
        assert_eq!(
            out,
            [Outcome::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "throttled"
            }]
        );

        out.clear();
        st.fail_next.store(1, Ordering::SeqCst);
        ch.deliver(&alert, &recips[..1], &mut out).await;
        assert!(matches!(
            out[..],
            [Outcome::Retry {
                reason: "unavailable",
                ..
            }]
        ));

        // A connection dropped mid-batch: its requests come back as retries,
        // and resending them (as the dispatcher does) delivers every one.
        out.clear();
        st.delay_ms.store(50, Ordering::SeqCst);
        st.close_after_next(10);
        ch.deliver(&alert, &recips, &mut out).await;
        st.delay_ms.store(0, Ordering::SeqCst);
        let retry: Vec<Recipient<'_>> = recips
            .iter()
            .zip(&out)
            .filter(|(_, o)| {
                matches!(
                    o,
                    Outcome::Retry {
                        reason: "connection",
                        ..
                    }
                )
            })
            .map(|(r, _)| *r)
            .collect();
        assert!(!retry.is_empty(), "{out:?}");
        assert!(out
            .iter()
            .all(|o| matches!(o, Outcome::Delivered | Outcome::Retry { .. })));
        let mut again = Vec::new();
        ch.deliver(&alert, &retry, &mut again).await;
        assert!(again.iter().all(|o| *o == Outcome::Delivered), "{again:?}");
        for t in &tokens {
            assert!(
                st.count_for(t) >= 1,
                "token {} never delivered",
                token_tag(t)
            );
        }
    }

    /// Rough throughput into the local server: `cargo test --release --lib
    /// apns::server_tests::throughput -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement, not a check"]
    async fn throughput() {
        let key = ApnsTestKey::generate().unwrap();
        let mut opts = ApnsServerOptions::from_key(&key);
        opts.record = false;
        let server = ApnsServer::start(opts).expect("server");
        let settings = ApnsSettings {
            base_url: server.base_url(),
            team_id: key.team_id.clone(),
            key_id: key.key_id.clone(),
            topic: DEFAULT_TOPIC.into(),
            connections: 4,
            ..ApnsSettings::default()
        };
        let ch = std::sync::Arc::new(
            ApnsChannel::new(
                &settings,
                &key.p8_pem,
                Some(server.ca_pem()),
                Metrics::new(),
            )
            .expect("channel"),
        );
        let alert = std::sync::Arc::new(content(
            vec![info("en", "Quake", "Shaking")],
            MsgType::Alert,
        ));
        let tokens: std::sync::Arc<Vec<String>> =
            std::sync::Arc::new((0..512).map(|i| format!("{i:064x}")).collect());
        let (batches, in_flight) = (400usize, 8usize);
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for b in 0..batches {
            if set.len() >= in_flight {
                set.join_next().await;
            }
            let (ch, alert, tokens) = (ch.clone(), alert.clone(), tokens.clone());
            set.spawn(async move {
                let recips = recipients(&tokens);
                let mut out = Vec::with_capacity(recips.len());
                ch.deliver(&alert, &recips, &mut out).await;
                assert!(out.iter().all(|o| *o == Outcome::Delivered), "batch {b}");
            });
        }
        while set.join_next().await.is_some() {}
        let n = batches * 512;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(server.state().delivered(), n as u64);
        let ours = n as f64 / secs;
        println!("channel: {n} deliveries in {secs:.2} s: {ours:.0}/s");

        // The same requests from a bare hyper client (4 connections, same
        // headers and body, 8 × 512 in flight), for the ratio.
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(
                crate::testkit::h2client::connect_h2(server.addr(), server.ca_pem())
                    .await
                    .expect("bare connection"),
            );
        }
        let body = render::apns_payload(
            &alert,
            &Text::of(&alert, alert.alert.infos.first()),
            "c",
            false,
        );
        let jwt = key.jwt(crate::channel::push::unix_now() as u64);
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for b in 0..batches {
            if set.len() >= in_flight {
                set.join_next().await;
            }
            let (conns, body, jwt, tokens) =
                (conns.clone(), body.clone(), jwt.clone(), tokens.clone());
            set.spawn(async move {
                let sends = tokens.iter().enumerate().map(|(i, t)| {
                    let mut c = conns[(b * 512 + i) % conns.len()].clone();
                    let req = Request::post(format!("https://127.0.0.1/3/device/{t}"))
                        .header("authorization", format!("bearer {jwt}"))
                        .header("apns-topic", DEFAULT_TOPIC)
                        .header("apns-push-type", "alert")
                        .header("apns-priority", "10")
                        .body(Full::new(body.clone()))
                        .expect("request");
                    async move { c.send_request(req).await.map(|r| r.status().as_u16()) }
                });
                let res = futures::future::join_all(sends).await;
                assert!(res.iter().all(|r| matches!(r, Ok(200))), "bare batch {b}");
            });
        }
        while set.join_next().await.is_some() {}
        let bare = n as f64 / started.elapsed().as_secs_f64();
        println!("bare hyper: {bare:.0}/s; channel/bare = {:.2}", ours / bare);
    }
}
