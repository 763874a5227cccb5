//! SMS over an HTTP gateway speaking Kannel's `sendsms` interface. It owns one gateway:
//! its HTTP client, its request rate (a token bucket) and its requests in flight (a
//! semaphore). It takes the [`Part`]s that [`text`](super::text) already coded and split,
//! sends each as one `GET sendsms` request that Kannel passes on unchanged (GSM-7 parts as
//! `coding=0&charset=UTF-8` text, UCS-2 parts as `coding=2&charset=UTF-16BE` octets, the
//! concatenation header as `udh`), and maps Kannel's answer to an [`Outcome`]. It never
//! re-splits or re-codes a text, and never logs a number or the password: both travel in
//! the query string, so request errors are logged without their URL.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Semaphore;

use super::text::{Coding, Part};
use super::{valid_number, SmsMessage, SmsTransport};
use crate::channel::push::retry_after;
use crate::channel::Outcome;
use crate::config::HttpSmsSettings;
use crate::dispatch::rate::TokenBucket;
use crate::metrics::{GatewayLabel, Metrics};

/// Kannel's `dlr-mask` when a `dlr-url` is configured: final reports only (delivered 1,
/// failed 2, SMSC reject 16), no intermediate "buffered" or "SMSC accepted" reports.
pub const DLR_MASK: u8 = 1 | 2 | 16;

/// Octets of a gateway answer read to classify it; Kannel's answers are one short line.
const MAX_ANSWER: usize = 1024;

/// Kannel's answer (HTTP 400) when every receiver was refused by its white- or black-lists,
/// i.e. the gateway will not route this number.
const DENIED_RECEIVER: &str = "denied by white- and/or black-lists";

/// How often at most a persisting gateway fault is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Errors building an [`HttpTransport`].
#[derive(Debug, thiserror::Error)]
pub enum HttpSmsError {
    /// `url` is not an absolute `http(s)://host[:port]/path` URL.
    #[error("sms http gateway: bad sendsms URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A setting is out of range.
    #[error("sms http gateway: {0}")]
    Settings(String),
    /// The extra CA certificate is not usable PEM.
    #[error("sms http gateway: CA certificate: {0}")]
    Ca(String),
    /// The HTTP client could not be built.
    #[error("sms http gateway: HTTP client: {0}")]
    Client(String),
}

/// The fixed parameters of every `sendsms` request to one gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// `username` of Kannel's `sendsms-user`.
    pub username: String,
    /// Its `password`; omitted from the request when `None`.
    pub password: Option<String>,
    /// `from`: the sender address shown on handsets.
    pub from: String,
    /// `smsc`: Kannel routing id, when set.
    pub smsc: Option<String>,
    /// `dlr-url` for delivery reports (sent with [`DLR_MASK`]), when set.
    pub dlr_url: Option<String>,
}

/// Appends `bytes` percent-encoded for a query value: every octet but the RFC 3986
/// unreserved characters becomes `%XX`, so binary UDH and UTF-16 octets survive intact.
pub fn percent_encode(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
}

/// Kannel's `coding` and `charset` for a part, and the octets sent as `text`: GSM-7 parts
/// go as their text in UTF-8 (Kannel maps UTF-8 to the GSM alphabet itself and counts
/// extension characters as two septets, as we do); UCS-2 parts go as their UTF-16BE octets
/// with that very charset, which Kannel keeps without conversion.
pub fn part_text(part: &Part) -> (&'static str, &'static str, Vec<u8>) {
    match part.coding {
        Coding::Gsm7 => ("0", "UTF-8", part.text().into_bytes()),
        Coding::Ucs2 => ("2", "UTF-16BE", part.payload.clone()),
    }
}

/// The query string of the `sendsms` request that submits `part` to `number`.
pub fn sendsms_query(account: &Account, number: &str, part: &Part) -> String {
    let (coding, charset, text) = part_text(part);
    let mut q = String::with_capacity(128 + 3 * text.len());
    let mut param = |name: &str, value: &[u8]| {
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(name);
        q.push('=');
        percent_encode(value, &mut q);
    };
    param("username", account.username.as_bytes());
    if let Some(p) = &account.password {
        param("password", p.as_bytes());
    }
    param("from", account.from.as_bytes());
    param("to", number.as_bytes());
    if let Some(smsc) = &account.smsc {
        param("smsc", smsc.as_bytes());
    }
    param("coding", coding.as_bytes());
    param("charset", charset.as_bytes());
    if let Some(udh) = &part.udh {
        param("udh", udh);
    }
    param("text", &text);
    if let Some(url) = &account.dlr_url {
        param("dlr-mask", DLR_MASK.to_string().as_bytes());
        param("dlr-url", url.as_bytes());
    }
    q
}

/// What a gateway's answer to one part means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Accepted or queued (`0: Accepted for delivery`, `3: Queued for later delivery`).
    Accepted,
    /// Credentials refused (401/403): retried, since dropping people for our own
    /// configuration error would be wrong; an operator must fix it.
    AuthFailed(Outcome),
    /// Any other answer, already mapped to the message's outcome.
    Failed(Outcome),
}

/// Maps a gateway's HTTP status and answer text to a [`Reply`].
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Reply {
    if body.contains(DENIED_RECEIVER) {
        return Reply::Failed(Outcome::Rejected {
            reason: "invalid_number",
            drop: true,
        });
    }
    match status {
        200..=299 => Reply::Accepted,
        401 | 403 => Reply::AuthFailed(Outcome::Retry {
            after: retry_after,
            reason: "gateway_auth",
        }),
        408 | 429 => Reply::Failed(Outcome::Retry {
            after: retry_after,
            reason: "throttled",
        }),
        500..=599 => Reply::Failed(Outcome::Retry {
            after: retry_after,
            reason: "gateway_unavailable",
        }),
        _ => Reply::Failed(Outcome::Rejected {
            reason: "gateway_rejected",
            drop: false,
        }),
    }
}

/// Lets a persisting fault be logged once, then again at most every [`LOG_EVERY`].
#[derive(Default)]
struct LogGate(Mutex<Option<Instant>>);

impl LogGate {
    fn due(&self) -> bool {
        let mut last = self.0.lock();
        let now = Instant::now();
        match *last {
            Some(t) if now.saturating_duration_since(t) < LOG_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    fn clear(&self) {
        *self.0.lock() = None;
    }
}

/// One Kannel-compatible `sendsms` gateway.
pub struct HttpTransport {
    client: reqwest::Client,
    url: reqwest::Url,
    account: Account,
    gateway: String,
    in_flight: Semaphore,
    rate: TokenBucket,
    latency: Histogram,
    parts: Counter,
    auth_log: LogGate,
    fault_log: LogGate,
}

impl HttpTransport {
    /// A transport for the gateway in `settings`, sending as `source_addr`. `password` is
    /// the resolved secret (from `password` or `password_file`); `ca_pem` an extra trusted
    /// CA for an HTTPS gateway. The metrics label is the URL's `host:port`.
    pub fn new(
        settings: &HttpSmsSettings,
        source_addr: &str,
        password: Option<String>,
        ca_pem: Option<&[u8]>,
        metrics: Metrics,
    ) -> Result<HttpTransport, HttpSmsError> {
        let bad_url = |reason: &str| HttpSmsError::BadUrl {
            url: settings.url.clone(),
            reason: reason.to_string(),
        };
        let url = reqwest::Url::parse(&settings.url).map_err(|e| bad_url(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad_url("scheme must be http or https"));
        }
        let host = url.host_str().ok_or_else(|| bad_url("no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad_url("no port"))?;
        let gateway = format!("{host}:{port}");
        if !(settings.rate_per_sec.is_finite() && settings.rate_per_sec > 0.0) {
            return Err(HttpSmsError::Settings(format!(
                "rate_per_sec must be positive, not {}",
                settings.rate_per_sec
            )));
        }
        if settings.timeout_ms == 0 {
            return Err(HttpSmsError::Settings("timeout_ms must be positive".into()));
        }
        let concurrency = settings.concurrency.max(1);
        let timeout = Duration::from_millis(settings.timeout_ms);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(concurrency.min(256))
            // The query carries the password: never follow it to another place.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| HttpSmsError::Ca(e.to_string()))?;
            if certs.is_empty() {
                return Err(HttpSmsError::Ca("no certificate in PEM".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| HttpSmsError::Client(e.to_string()))?;
        let label = GatewayLabel {
            channel: "sms",
            gateway: gateway.clone(),
        };
        // A burst of a tenth of a second's worth keeps every one-second window at the cap.
        let burst = (settings.rate_per_sec / 10.0).clamp(1.0, f64::from(u32::MAX)) as u32;
        Ok(HttpTransport {
            client,
            url,
            account: Account {
                username: settings.username.clone(),
                password,
                from: source_addr.to_string(),
                smsc: settings.smsc_id.clone().filter(|s| !s.is_empty()),
                dlr_url: settings.dlr_url.clone().filter(|s| !s.is_empty()),
            },
            gateway,
            in_flight: Semaphore::new(concurrency),
            rate: TokenBucket::new(settings.rate_per_sec, burst),
            latency: metrics
                .gateway_request_seconds
                .get_or_create(&label)
                .clone(),
            parts: metrics.sms_parts.get_or_create(&label).clone(),
            auth_log: LogGate::default(),
            fault_log: LogGate::default(),
        })
    }

    /// The gateway's metrics label (`host:port`).
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// The request URL for one part: the configured URL, its own query kept.
    fn request_url(&self, number: &str, part: &Part) -> reqwest::Url {
        let ours = sendsms_query(&self.account, number, part);
        let mut url = self.url.clone();
        let query = match self.url.query() {
            Some(q) if !q.is_empty() => format!("{q}&{ours}"),
            _ => ours,
        };
        url.set_query(Some(&query));
        url
    }

    /// Submits one part, within the gateway's concurrency and rate.
    async fn send_part(&self, number: &str, part: &Part) -> Reply {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Reply::Failed(Outcome::Retry {
                after: None,
                reason: "gateway_closed",
            });
        };
        let wait = self.rate.take_or_wait(1);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let started = Instant::now();
        match self.client.get(self.request_url(number, part)).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let after = retry_after(resp.headers());
                let body = read_answer(resp).await;
                self.latency.observe(started.elapsed().as_secs_f64());
                let reply = classify(status, &body, after);
                if reply == Reply::Accepted {
                    self.parts.inc();
                } else if let Reply::Failed(Outcome::Retry { reason, .. }) = reply {
                    if self.fault_log.due() {
                        tracing::warn!(gateway = %self.gateway, status, reason, "sms gateway refused a part; retrying later");
                    }
                }
                reply
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    "gateway_timeout"
                } else {
                    "gateway_unavailable"
                };
                if self.fault_log.due() {
                    // Without its URL: the query holds the number and the password.
                    let error = e.without_url();
                    tracing::warn!(gateway = %self.gateway, reason, error = %error, "sms gateway request failed");
                }
                Reply::Failed(Outcome::Retry {
                    after: None,
                    reason,
                })
            }
        }
    }
}

/// The start of a gateway's answer, as text (lossy); a broken body reads as empty.
async fn read_answer(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_ANSWER {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(MAX_ANSWER);
    String::from_utf8_lossy(&buf).into_owned()
}

#[async_trait]
impl SmsTransport for HttpTransport {
    /// Sends the parts in order, one request each, and stops at the first part that is not
    /// accepted; a retry sends every part again under the same concatenation reference.
    async fn send(&self, number: &str, message: &SmsMessage) -> Outcome {
        if !valid_number(number) {
            // A space would make Kannel send to several numbers.
            return Outcome::Rejected {
                reason: "invalid_number",
                drop: true,
            };
        }
        for part in &message.parts {
            match self.send_part(number, part).await {
                Reply::Accepted => {}
                Reply::AuthFailed(outcome) => {
                    if self.auth_log.due() {
                        tracing::error!(
                            gateway = %self.gateway,
                            username = %self.account.username,
                            "sms gateway refused our credentials (sendsms username/password or \
                             allowed IPs); SMS are held for retry until the configuration is fixed"
                        );
                    }
                    return outcome;
                }
                Reply::Failed(outcome) => return outcome,
            }
        }
        self.auth_log.clear();
        self.fault_log.clear();
        Outcome::Delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::sms::text::encode;

    fn account() -> Account {
        Account {
            username: "tocsin".into(),
            password: Some("p&ss word".into()),
            from: "TOCSIN".into(),
            smsc: None,
            dlr_url: None,
        }
    }

    fn params(q: &str) -> Vec<(&str, &str)> {
        q.split('&')
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .collect()
    }

    /// Percent-decoding, for checking what Kannel will read.
    fn decode(v: &str) -> Vec<u8> {
        let b = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        let mut s = String::new();
        percent_encode(b"aZ09-._~ +&=%/\x00\xff\n", &mut s);
        assert_eq!(s, "aZ09-._~%20%2B%26%3D%25%2F%00%FF%0A");
        assert_eq!(decode(&s), b"aZ09-._~ +&=%/\x00\xff\n");
    }

    #[test]
    fn single_gsm7_part_is_utf8_text_without_udh() {
        let parts = encode("Missing child: Li, 6\nCall 110 €5", 9, 1).unwrap();
        let q = sendsms_query(&account(), "+8613800138000", &parts[0]);
        assert_eq!(
            params(&q),
            vec![
                ("username", "tocsin"),
                ("password", "p%26ss%20word"),
                ("from", "TOCSIN"),
                ("to", "%2B8613800138000"),
                ("coding", "0"),
                ("charset", "UTF-8"),
                (
                    "text",
                    "Missing%20child%3A%20Li%2C%206%0ACall%20110%20%E2%82%AC5"
                ),
            ]
        );
        assert_eq!(
            String::from_utf8(decode(params(&q)[6].1)).unwrap(),
            "Missing child: Li, 6\nCall 110 €5"
        );
    }

    #[test]
    fn concatenated_gsm7_parts_carry_their_udh_and_text() {
        let text = "Evacuate now. ".repeat(20);
        let parts = encode(&text, 0x2A, 2).unwrap();
        assert_eq!(parts.len(), 2);
        let mut joined = String::new();
        for (i, part) in parts.iter().enumerate() {
            let q = sendsms_query(&account(), "15551234567", part);
            let p = params(&q);
            let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            assert_eq!(get("coding"), Some("0"));
            assert_eq!(
                get("udh"),
                Some(if i == 0 {
                    "%05%00%03%2A%02%01"
                } else {
                    "%05%00%03%2A%02%02"
                })
            );
            let t = String::from_utf8(decode(get("text").unwrap())).unwrap();
            assert!(t.chars().count() <= 153);
            joined.push_str(&t);
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn ucs2_parts_send_their_utf16be_octets() {
        let text = "寻找失踪儿童🚨".repeat(12);
        let parts = encode(&text, 7, 3).unwrap();
        assert!(parts.len() > 1);
        let mut octets = Vec::new();
        for part in &parts {
            let q = sendsms_query(&account(), "+8613800138000", part);
            let p = params(&q);
            let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            assert_eq!(get("coding"), Some("2"));
            assert_eq!(get("charset"), Some("UTF-16BE"));
            assert_eq!(decode(get("udh").unwrap()), part.udh.unwrap().to_vec());
            let t = decode(get("text").unwrap());
            assert_eq!(t, part.payload);
            assert!(t.len() <= 134);
            octets.extend(t);
        }
        let units: Vec<u16> = octets
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), text);
        let single = encode("中文", 1, 1).unwrap();
        let q = sendsms_query(&account(), "+8613800138000", &single[0]);
        assert!(q.ends_with("coding=2&charset=UTF-16BE&text=N-e%87"), "{q}");
    }

    #[test]
    fn optional_parameters() {
        let a = Account {
            password: None,
            smsc: Some("smsc-a".into()),
            dlr_url: Some("https://tocsin.example/dlr?id=%i&s=%d".into()),
            ..account()
        };
        let parts = encode("hi", 1, 1).unwrap();
        let q = sendsms_query(&a, "15551234567", &parts[0]);
        let p = params(&q);
        assert!(!p.iter().any(|(k, _)| *k == "password"));
        assert!(p.contains(&("smsc", "smsc-a")));
        assert!(p.contains(&("dlr-mask", "19")));
        assert_eq!(
            decode(p.iter().find(|(k, _)| *k == "dlr-url").unwrap().1),
            b"https://tocsin.example/dlr?id=%i&s=%d"
        );
    }

    #[test]
    fn kannel_answers_map_to_outcomes() {
        assert_eq!(
            classify(202, "0: Accepted for delivery", None),
            Reply::Accepted
        );
        assert_eq!(
            classify(202, "3: Queued for later delivery", None),
            Reply::Accepted
        );
        assert_eq!(
            classify(
                400,
                "Number(s) has/have been denied by white- and/or black-lists.",
                None
            ),
            Reply::Failed(Outcome::Rejected {
                reason: "invalid_number",
                drop: true
            })
        );
        assert_eq!(
            classify(403, "Authorization failed for sendsms", None),
            Reply::AuthFailed(Outcome::Retry {
                after: None,
                reason: "gateway_auth"
            })
        );
        let later = Some(Duration::from_secs(30));
        assert_eq!(
            classify(503, "", later),
            Reply::Failed(Outcome::Retry {
                after: later,
                reason: "gateway_unavailable"
            })
        );
        assert_eq!(
            classify(429, "", later),
            Reply::Failed(Outcome::Retry {
                after: later,
                reason: "throttled"
            })
        );
        assert_eq!(
            classify(400, "Coding field misformed, rejected", None),
            Reply::Failed(Outcome::Rejected {
                reason: "gateway_rejected",
                drop: false
            })
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let m = Metrics::new();
        let mut s = HttpSmsSettings::default();
        let t = HttpTransport::new(&s, "TOCSIN", None, None, m.clone()).unwrap();
        assert_eq!(t.gateway(), "127.0.0.1:13013");
        let url = t.request_url("+15551234567", &encode("a", 1, 1).unwrap()[0]);
        assert_eq!(url.path(), "/cgi-bin/sendsms");
        s.url = "http://gw.example/send?api=2".into();
        let t = HttpTransport::new(&s, "TOCSIN", None, None, m.clone()).unwrap();
        assert_eq!(t.gateway(), "gw.example:80");
        let url = t.request_url("+15551234567", &encode("a", 1, 1).unwrap()[0]);
        assert!(url.query().unwrap().starts_with("api=2&username="));
        s.url = "ftp://gw.example/".into();
        assert!(matches!(
            HttpTransport::new(&s, "T", None, None, m.clone()),
            Err(HttpSmsError::BadUrl { .. })
        ));
        s.url = "http://gw.example/".into();
        s.rate_per_sec = 0.0;
        assert!(matches!(
            HttpTransport::new(&s, "T", None, None, m.clone()),
            Err(HttpSmsError::Settings(_))
        ));
        s.rate_per_sec = 10.0;
        assert!(matches!(
            HttpTransport::new(&s, "T", None, Some(b"not pem"), m),
            Err(HttpSmsError::Ca(_))
        ));
    }
}
