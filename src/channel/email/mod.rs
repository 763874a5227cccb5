//! E-mail channel: sends alerts over SMTP to one relay with `lettre`'s SMTP client
//! (STARTTLS required, implicit TLS, or plain to a loopback relay; an extra CA;
//! optional AUTH) over a session pool of its own ([`pool`], which says why not
//! lettre's). [`render`] owns the wording (subject, text and HTML, photo linked never
//! attached), [`mime`] the message assembly and ids, and [`reply`] what a relay's
//! refusal means; this module renders once per language per batch, checks addresses,
//! and sends each recipient its own transaction (concurrently, at most `connections`
//! at once) on a pooled session. Recipients that the relay refuses as mailboxes come
//! back `Rejected { drop: true }`; the dispatcher removes them and counts
//! `tocsin_recipients_dropped_total`. It never logs an address: only `token_tag`, a
//! short hash.

pub mod mime;
pub mod pool;
pub mod render;
pub mod reply;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::response::Code;
use lettre::transport::smtp::Error as SmtpError;
use lettre::Address;
use prometheus_client::metrics::histogram::Histogram;

use self::mime::{Addressing, MessageIds, Template};
use self::pool::{Endpoint, Failure, Security, SmtpPool};
use self::reply::reply_outcome;
use crate::channel::push::render::PerLanguage;
use crate::channel::push::token_tag;
use crate::channel::{
    settle_each, AlertContent, Channel, Outcome, Reach, Recipient, SubscriberKind,
};
use crate::config::{EmailSettings, SmtpSecurity};
use crate::metrics::{GatewayLabel, Metrics};

const CHANNEL: &str = "email";

/// Why the e-mail channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// A setting is missing, out of range or inconsistent.
    #[error("{0}")]
    Settings(String),
    /// `from` is not a mailbox (`Name <user@domain>` or `user@domain`).
    #[error("from {from:?} is not a mailbox: {reason}")]
    From { from: String, reason: String },
    /// The TLS parameters (extra CA) are unusable.
    #[error("tls: {0}")]
    Tls(String),
}

/// Check `channels.email` (also run by `Settings::validate` when it is enabled).
pub fn check_settings(s: &EmailSettings) -> Result<(), EmailError> {
    let bad = |m: &str| Err(EmailError::Settings(m.to_string()));
    if s.host.trim().is_empty() || s.port == 0 {
        return bad("host and port are required");
    }
    if s.connections == 0 || s.concurrency == 0 || s.timeout_ms == 0 {
        return bad("connections, concurrency and timeout_ms must be > 0");
    }
    if s.rate_per_sec.is_nan() || s.rate_per_sec <= 0.0 {
        return bad("rate_per_sec must be > 0");
    }
    if s.password.is_some() && s.password_file.is_some() {
        return bad("set at most one of password, password_file");
    }
    if s.username.is_none() && (s.password.is_some() || s.password_file.is_some()) {
        return bad("a password needs a username");
    }
    if s.security == SmtpSecurity::None && !is_loopback(&s.host) {
        return bad(
            "security = \"none\" is for a relay on this host (localhost, 127.0.0.1, ::1) only",
        );
    }
    if s.message_id_domain.is_empty()
        || !s
            .message_id_domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    {
        return bad("message_id_domain must be a domain name (letters, digits, '.', '-')");
    }
    if !s
        .unsubscribe_url
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"'))
    {
        return bad("unsubscribe_url must be a URL without spaces, quotes or angle brackets");
    }
    parse_from(&s.from).map(|_| ())
}

fn parse_from(from: &str) -> Result<Mailbox, EmailError> {
    from.parse::<Mailbox>().map_err(|e| EmailError::From {
        from: from.to_string(),
        reason: e.to_string(),
    })
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A reply code as a number (`550`).
fn code_number(c: Code) -> u16 {
    u16::from(c.severity as u8) * 100 + u16::from(c.category as u8) * 10 + u16::from(c.detail as u8)
}

/// What kind of failure `e` is, for logs (its text may quote the address: never logged).
fn failure_kind(e: &SmtpError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_tls() {
        "tls"
    } else if e.is_client() {
        "client"
    } else if e.is_response() {
        "bad_reply"
    } else if e.is_transport_shutdown() {
        "shutdown"
    } else {
        "connection"
    }
}

/// The kind of the I/O error under `e`, if one caused it (reset, refused,
/// unexpected end of file, …): tells a peer's reset from a local fault
/// without logging the error's text, which may name an address.
fn io_kind(e: &SmtpError) -> Option<std::io::ErrorKind> {
    std::iter::successors(std::error::Error::source(e), |s| s.source())
        .find_map(|s| s.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
}

/// The outcome of a failed SMTP transaction.
fn error_outcome(e: &SmtpError) -> Outcome {
    if let Some(c) = e.status() {
        // The reply text after the code (it may name the address: never logged).
        let text = std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        return reply_outcome(code_number(c), &text);
    }
    // Connection, TLS, timeout, a garbled reply, a client-side refusal (e.g. a
    // non-ASCII address the relay cannot take): retried on a fresh connection; the
    // dispatcher gives up after its attempts.
    tracing::debug!(
        channel = CHANNEL,
        kind = failure_kind(e),
        io = ?io_kind(e),
        "smtp transaction failed"
    );
    Outcome::Retry {
        after: None,
        reason: "smtp_connection",
    }
}

/// The `email` channel.
pub struct EmailChannel {
    pool: SmtpPool,
    from: Mailbox,
    public_url: String,
    unsubscribe_url: String,
    message_id_domain: String,
    latency: Histogram,
}

impl EmailChannel {
    /// A channel for `settings`; `public_url` is the base of the alert link when an info
    /// block has no `<web>`, `password` the AUTH password (with `settings.username`),
    /// `ca_pem` extra trusted CA certificates besides the platform's. Connects on first
    /// delivery.
    pub fn new(
        settings: &EmailSettings,
        public_url: &str,
        password: Option<String>,
        ca_pem: Option<&[u8]>,
        metrics: Metrics,
    ) -> Result<Self, EmailError> {
        check_settings(settings)?;
        let from = parse_from(&settings.from)?;
        let host = settings.host.trim();
        let security = match settings.security {
            SmtpSecurity::None => Security::None,
            SmtpSecurity::Starttls => Security::StartTls(tls_parameters(host, ca_pem)?),
            SmtpSecurity::Tls => Security::Implicit(tls_parameters(host, ca_pem)?),
        };
        let credentials = match (&settings.username, password) {
            (Some(user), Some(pw)) => Some(Credentials::new(user.clone(), pw)),
            (None, None) => None,
            _ => {
                return Err(EmailError::Settings(
                    "username and password go together".into(),
                ))
            }
        };
        let endpoint = Endpoint {
            host: host.to_string(),
            port: settings.port,
            security,
            credentials,
            timeout: Duration::from_millis(settings.timeout_ms),
        };
        let label = GatewayLabel {
            channel: CHANNEL,
            gateway: host.to_string(),
        };
        Ok(Self {
            pool: SmtpPool::new(endpoint, settings.connections as usize),
            from,
            public_url: public_url.to_string(),
            unsubscribe_url: settings.unsubscribe_url.clone(),
            message_id_domain: settings.message_id_domain.clone(),
            latency: metrics
                .gateway_request_seconds
                .get_or_create(&label)
                .clone(),
        })
    }

    /// One SMTP transaction (MAIL, RCPT, DATA) on a pooled session.
    async fn send(&self, envelope: &Envelope, message: &[u8], address: &str) -> Outcome {
        let started = Instant::now();
        let result = self.pool.send(envelope, message).await;
        self.latency.observe(started.elapsed().as_secs_f64());
        let connection = Outcome::Retry {
            after: None,
            reason: "smtp_connection",
        };
        match result {
            Ok(()) => Outcome::Delivered,
            Err(Failure::Smtp(e)) => {
                let o = error_outcome(&e);
                let code = e.status().map_or(0, code_number);
                tracing::debug!(recipient = %token_tag(address), code, outcome = ?o, "smtp refused");
                o
            }
            Err(Failure::Timeout) => {
                tracing::debug!(recipient = %token_tag(address), "smtp transaction timed out");
                connection
            }
            Err(Failure::Closed) => connection,
        }
    }
}

fn tls_parameters(host: &str, ca_pem: Option<&[u8]>) -> Result<TlsParameters, EmailError> {
    let mut b = TlsParameters::builder(host.to_string());
    if let Some(pem) = ca_pem {
        use rustls::pki_types::pem::PemObject as _;
        let n = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
            .take_while(Result::is_ok)
            .count();
        if n == 0 {
            return Err(EmailError::Tls("ca holds no PEM certificate".into()));
        }
        let cert = Certificate::from_pem(pem).map_err(|e| EmailError::Tls(e.to_string()))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls().map_err(|e| EmailError::Tls(e.to_string()))
}

#[async_trait]
impl Channel for EmailChannel {
    fn name(&self) -> &'static str {
        CHANNEL
    }

    fn reach(&self) -> Reach {
        Reach::Subscribers(SubscriberKind::Email)
    }

    async fn deliver(
        &self,
        alert: &AlertContent,
        recipients: &[Recipient<'_>],
        out: &mut Vec<Outcome>,
    ) {
        let ids = MessageIds::new(
            &alert.alert_id,
            &alert.root_alert_id(),
            &self.message_id_domain,
        );
        let date = SystemTime::now();
        let mut templates: PerLanguage<'_, Arc<Template>> = PerLanguage::default();
        let ids = &ids;
        settle_each(recipients.len(), out, |i| {
            let r = &recipients[i];
            let addressed = r.address.trim().parse::<Address>().ok().and_then(|to| {
                let envelope = Envelope::new(Some(self.from.email.clone()), vec![to.clone()]);
                envelope.ok().map(|e| (Mailbox::new(None, to), e))
            });
            let (to, envelope) = addressed.ok_or(Outcome::Rejected {
                reason: "invalid_address",
                drop: true,
            })?;
            let template = templates
                .get(alert, r.language, |info| {
                    let text = render::render(alert, info, &self.public_url);
                    Arc::new(Template::new(&self.from, date, &text))
                })
                .clone();
            Ok(async move {
                let message = template.message(&Addressing {
                    to: &to,
                    message_id: ids.own(r.id),
                    thread: ids.root(r.id),
                    unsubscribe: (!self.unsubscribe_url.is_empty())
                        .then(|| mime::unsubscribe_url(&self.unsubscribe_url, r.id)),
                });
                self.send(&envelope, &message, r.address).await
            })
        })
        .await;
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EmailSettings {
        EmailSettings {
            enabled: true,
            ..EmailSettings::default()
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(check_settings(&settings()).is_ok());
        type Edit = fn(&mut EmailSettings);
        let cases: Vec<(&str, Edit)> = vec![
            ("host", |s| s.host = " ".into()),
            ("connections", |s| s.connections = 0),
            ("rate", |s| s.rate_per_sec = f64::NAN),
            ("from", |s| s.from = "not a mailbox".into()),
            ("domain", |s| s.message_id_domain = "a b".into()),
            ("unsubscribe", |s| {
                s.unsubscribe_url = "https://x/<id>".into()
            }),
            ("two passwords", |s| {
                s.username = Some("u".into());
                s.password = Some("p".into());
                s.password_file = Some("/p".into());
            }),
            ("password without user", |s| s.password = Some("p".into())),
            ("plain to a remote relay", |s| {
                s.security = SmtpSecurity::None;
                s.host = "smtp.example.org".into();
            }),
        ];
        for (what, edit) in cases {
            let mut s = settings();
            edit(&mut s);
            assert!(check_settings(&s).is_err(), "{what}");
        }
        let mut s = settings();
        s.security = SmtpSecurity::None;
        for host in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            s.host = host.into();
            assert!(check_settings(&s).is_ok(), "{host}");
        }
        s.unsubscribe_url = String::new();
        assert!(check_settings(&s).is_ok(), "no List-Unsubscribe is allowed");
    }

    #[test]
    fn the_channel_checks_credentials_and_the_ca() {
        let s = settings();
        let new = |s: &EmailSettings, pw: Option<&str>, ca: Option<&[u8]>| {
            EmailChannel::new(s, "http://x", pw.map(String::from), ca, Metrics::new())
        };
        let ch = new(&s, None, None).unwrap();
        assert_eq!(ch.name(), "email");
        assert_eq!(ch.reach(), Reach::Subscribers(SubscriberKind::Email));
        assert!(matches!(
            new(&s, Some("pw"), None),
            Err(EmailError::Settings(_))
        ));
        let with_user = EmailSettings {
            username: Some("u".into()),
            ..settings()
        };
        assert!(matches!(
            new(&with_user, None, None),
            Err(EmailError::Settings(_))
        ));
        assert!(new(&with_user, Some("pw"), None).is_ok());
        assert!(matches!(
            new(&s, None, Some(b"junk")),
            Err(EmailError::Tls(_))
        ));
        let ca = crate::testkit::tls::TestTls::localhost().unwrap();
        assert!(new(&s, None, Some(ca.ca_pem())).is_ok());
    }

    #[test]
    fn invalid_addresses_are_dropped_without_a_connection() {
        use crate::alert::cap::MsgType;
        use crate::channel::push::render::tests::{content, info};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Port 9 on loopback: nothing listens, yet nothing is attempted either.
            let s = EmailSettings {
                port: 9,
                security: SmtpSecurity::None,
                ..settings()
            };
            let ch = EmailChannel::new(&s, "http://x", None, None, Metrics::new()).unwrap();
            let a = content(vec![info("en", "T", "d")], MsgType::Alert);
            let rs: Vec<Recipient<'_>> = ["not-an-address", "a@b@c", "", "x y@example.org"]
                .iter()
                .enumerate()
                .map(|(i, addr)| Recipient {
                    id: i as u32,
                    address: addr,
                    language: "en",
                })
                .collect();
            let mut out = Vec::new();
            ch.deliver(&a, &rs, &mut out).await;
            assert_eq!(
                out,
                vec![
                    Outcome::Rejected {
                        reason: "invalid_address",
                        drop: true
                    };
                    4
                ]
            );
        });
    }
}
