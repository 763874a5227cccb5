//! E-mail channel against a real SMTP server (aiosmtpd, `tests/peers/smtp_server.py`),
//! which stores every accepted message decoded by Python's `email` package. Checks the
//! content people read (subject, both bodies, photo linked not attached, Chinese
//! intact), the headers mail clients rely on (Message-ID stable across a resend,
//! threading of an Update, List-Unsubscribe), STARTTLS + AUTH with the test CA and
//! implicit TLS, the outcome of every kind of refusal, a connection cut mid-transaction,
//! and the whole daemon path from a signed alert to one mail per subscriber.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::peers::{free_port, peer_python, wait_listening, Peer};
use support::*;
use tocsin::alert::cap::{self, CapLimits};
use tocsin::channel::email::mime::message_id;
use tocsin::channel::email::EmailChannel;
use tocsin::channel::{AlertContent, Channel, Outcome, Recipient, SubscriberKind};
use tocsin::config::{EmailSettings, SmtpSecurity};
use tocsin::ingest::Receipt;
use tocsin::metrics::Metrics;
use tocsin::subscribers::{Audience, AudienceLoader};
use tocsin::testkit::tls::TestTls;

const DOMAIN: &str = "alerts.tocsin.example";
const FROM: &str = "alerts@tocsin.example";
const PHOTO: &str = "https://police.example.gov.cn/alerts/GZPSB-CA-2026-1129-0001/photo.jpg";
const LINK: &str = "https://police.example.gov.cn/alerts/GZPSB-CA-2026-1129-0001";

/// A running `smtp_server.py` and the directory it stores messages in.
struct SmtpServer {
    _peer: Peer,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    port: u16,
    tls: TestTls,
}

impl SmtpServer {
    /// `starttls`: require STARTTLS; `implicit`: TLS from the first byte; `auth`: USER:PASS.
    fn start(starttls: bool, implicit: bool, auth: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls = TestTls::localhost().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &tls.cert_pem).unwrap();
        std::fs::write(&key, &tls.key_pem).unwrap();
        let out = dir.path().join("mail");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_server.py");
        let mut cmd = Command::new(peer_python());
        cmd.arg(script)
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(&out)
            .args(["--flaky-failures", "2", "--slow-ms", "1500"])
            .stdout(Stdio::null());
        if starttls || implicit {
            cmd.arg("--cert").arg(&cert).arg("--key").arg(&key);
        }
        if implicit {
            cmd.arg("--implicit-tls");
        }
        if let Some(a) = auth {
            cmd.args(["--auth", a]);
        }
        let peer = Peer(cmd.spawn().expect("start smtp_server.py"));
        assert!(
            wait_listening(port, Duration::from_secs(15)),
            "smtp_server.py did not listen on {port}"
        );
        Self {
            _peer: peer,
            dir: out,
            _dir: dir,
            port,
            tls,
        }
    }

    /// Every stored message, in arrival order.
    fn mails(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(n)).unwrap();
                serde_json::from_str(&text).unwrap()
            })
            .collect()
    }

    fn mails_to(&self, address: &str) -> Vec<Value> {
        self.mails()
            .into_iter()
            .filter(|m| m["rcpt_tos"] == serde_json::json!([address]))
            .collect()
    }

    fn settings(&self, security: SmtpSecurity) -> EmailSettings {
        EmailSettings {
            enabled: true,
            host: "127.0.0.1".into(),
            port: self.port,
            security,
            from: format!("Missing-child alerts <{FROM}>"),
            unsubscribe_url: "https://alerts.example.org/unsubscribe/{id}".into(),
            message_id_domain: DOMAIN.into(),
            connections: 2,
            timeout_ms: 5000,
            ..EmailSettings::default()
        }
    }
}

/// The value of header `name` (lower-case) as Python decoded it.
fn header<'a>(mail: &'a Value, name: &str) -> &'a str {
    mail["headers"][name][0].as_str().unwrap_or("")
}

/// The decoded body of the leaf part of type `ct`, line ends normalised.
fn part(mail: &Value, ct: &str) -> String {
    let parts = mail["parts"].as_array().unwrap();
    let p = parts
        .iter()
        .find(|p| p["content_type"] == ct)
        .unwrap_or_else(|| panic!("no {ct} part: {mail}"));
    assert_eq!(p["charset"], "utf-8");
    p["body"].as_str().unwrap().replace("\r\n", "\n")
}

/// An accepted alert as channels see it, from CAP XML.
fn content(xml: &str, seq: u64) -> AlertContent {
    let alert = cap::parse(xml.as_bytes(), &CapLimits::default()).unwrap();
    AlertContent {
        seq,
        alert_id: alert.alert_id(),
        receipt: "r".into(),
        envelope: Arc::from(&b""[..]),
        expires: None,
        alert,
        accepted_at: Instant::now(),
    }
}

/// (zh headline, zh description, en headline, en description) of the sample.
fn sample_text() -> [String; 4] {
    let en_at = SAMPLE.find("<language>en-US</language>").unwrap();
    let (zh, en) = SAMPLE.split_at(en_at);
    let unxml = |s: &str| s.replace("&amp;", "&");
    [
        between(zh, "<headline>", "</headline>").to_string(),
        between(zh, "<description>", "</description>").to_string(),
        unxml(between(en, "<headline>", "</headline>")),
        unxml(between(en, "<description>", "</description>")),
    ]
}

fn recipient<'a>(id: u32, address: &'a str, language: &'a str) -> Recipient<'a> {
    Recipient {
        id,
        address,
        language,
    }
}

async fn deliver(ch: &EmailChannel, alert: &AlertContent, rs: &[Recipient<'_>]) -> Vec<Outcome> {
    let mut out = Vec::new();
    ch.deliver(alert, rs, &mut out).await;
    assert_eq!(out.len(), rs.len(), "one outcome per recipient");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_auth_content_headers_and_threading() {
    let server = SmtpServer::start(true, false, Some("tocsin:s3cret"));
    let mut s = server.settings(SmtpSecurity::Starttls);
    s.username = Some("tocsin".into());
    let metrics = Metrics::new();
    let ch = EmailChannel::new(
        &s,
        "https://tocsin.example",
        Some("s3cret".into()),
        Some(server.tls.ca_pem()),
        metrics.clone(),
    )
    .unwrap();
    let original = alert_xml("email-1");
    let alert = content(&original, 1);
    let people = [
        (1, "li@example.cn", "zh-CN"),
        (2, "ann@example.org", "en-US"),
        (3, "bo@example.org", "en"),
        (4, "wang@example.cn", "zh"),
    ];
    let rs: Vec<_> = people.iter().map(|&(i, a, l)| recipient(i, a, l)).collect();
    assert_eq!(deliver(&ch, &alert, &rs).await, vec![Outcome::Delivered; 4]);

    let [zh_head, zh_desc, en_head, en_desc] = sample_text();
    assert_eq!(server.mails().len(), 4);
    for &(id, address, lang) in &people {
        let got = server.mails_to(address);
        assert_eq!(got.len(), 1, "{address}");
        let m = &got[0];
        assert_eq!(m["tls"], true, "STARTTLS before MAIL");
        assert_eq!(m["authenticated"], true);
        assert_eq!(m["seven_bit"], true, "encoded, no 8-bit bytes on the wire");
        assert_eq!(m["mail_from"], FROM);
        assert_eq!(header(m, "to"), address);
        assert_eq!(header(m, "from"), format!("Missing-child alerts <{FROM}>"));
        assert!(!header(m, "date").is_empty());
        let (head, desc) = if lang.starts_with("zh") {
            (&zh_head, &zh_desc)
        } else {
            (&en_head, &en_desc)
        };
        assert_eq!(header(m, "subject"), head.as_str());
        let raw = m["raw_head"].as_str().unwrap();
        if lang.starts_with("zh") {
            assert!(raw.contains("Subject: =?utf-8?"), "RFC 2047 subject: {raw}");
        }
        let mid = header(m, "message-id");
        assert_eq!(mid, message_id(&alert.alert_id, id, DOMAIN));
        let hex = mid
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix(&format!("@{DOMAIN}>")))
            .unwrap();
        assert!(
            hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{mid}"
        );
        assert_eq!(
            header(m, "list-unsubscribe"),
            format!("<https://alerts.example.org/unsubscribe/{id}>")
        );
        assert_eq!(
            header(m, "list-unsubscribe-post"),
            "List-Unsubscribe=One-Click"
        );
        assert!(m["headers"].get("in-reply-to").is_none());

        assert_eq!(m["content_type"], "multipart/alternative");
        let parts = m["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 2, "text and HTML only: {parts:?}");
        assert!(
            parts.iter().all(|p| p["disposition"].is_null()),
            "no attachment"
        );
        let text = part(m, "text/plain");
        let html = part(m, "text/html");
        assert!(text.contains(desc.as_str()), "{text}");
        assert!(text.contains("110 / +86 20 110"));
        assert!(text.contains(LINK));
        assert!(html.contains(&format!("<a href=\"{LINK}\">")), "{html}");
        assert!(html.contains(&format!("<img src=\"{PHOTO}\"")), "{html}");
        if lang.starts_with("zh") {
            assert!(html.contains(desc.as_str()), "Chinese survives: {html}");
        } else {
            assert!(html.contains("white trainers &amp; a small yellow backpack"));
            assert!(!html.contains(" & "), "escaped: {html}");
        }
    }
    let first: Vec<String> = server
        .mails()
        .iter()
        .map(|m| header(m, "message-id").to_string())
        .collect();

    // A resend (after a crash) carries the same Message-IDs, so clients drop repeats.
    assert_eq!(
        deliver(&ch, &alert, &rs[..2]).await,
        vec![Outcome::Delivered; 2]
    );
    for &(_, address, _) in &people[..2] {
        let got = server.mails_to(address);
        assert_eq!(got.len(), 2);
        assert_eq!(header(&got[0], "message-id"), header(&got[1], "message-id"));
    }

    // An Update threads under the first alert's message for the same recipient.
    let update = content(&follow_up(&original, "email-2", "Update"), 2);
    assert_eq!(
        deliver(&ch, &update, &rs[..2]).await,
        vec![Outcome::Delivered; 2]
    );
    for &(id, address, lang) in &people[..2] {
        let got = server.mails_to(address);
        let m = got.last().unwrap();
        let root = message_id(&alert.alert_id, id, DOMAIN);
        assert!(first.contains(&root));
        assert_eq!(header(m, "in-reply-to"), root);
        assert_eq!(header(m, "references"), root);
        assert_eq!(
            header(m, "message-id"),
            message_id(&update.alert_id, id, DOMAIN)
        );
        let want = if lang.starts_with("zh") {
            &zh_head
        } else {
            &en_head
        };
        assert_eq!(header(m, "subject"), format!("UPDATE: {want}"));
    }
    let m = metrics.encode();
    assert!(
        m.contains(
            "tocsin_gateway_request_seconds_count{channel=\"email\",gateway=\"127.0.0.1\"} 8"
        ),
        "{m}"
    );
    ch.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_map_to_outcomes_and_a_cut_connection_is_retried() {
    let server = SmtpServer::start(false, false, None);
    let ch = EmailChannel::new(
        &server.settings(SmtpSecurity::None),
        "http://x",
        None,
        None,
        Metrics::new(),
    )
    .unwrap();
    let alert = content(&alert_xml("email-out"), 1);
    let rs = [
        recipient(1, "ok1@example.org", "en"),
        recipient(2, "tempfail1@example.org", "en"),
        recipient(3, "reject1@example.org", "en"),
        recipient(4, "policy1@example.org", "en"),
        recipient(5, "no-at-sign", "en"),
        recipient(6, "two@at@example.org", "en"),
    ];
    let invalid = Outcome::Rejected {
        reason: "invalid_address",
        drop: true,
    };
    assert_eq!(
        deliver(&ch, &alert, &rs).await,
        vec![
            Outcome::Delivered,
            Outcome::Retry {
                after: None,
                reason: "smtp_4xx"
            },
            Outcome::Rejected {
                reason: "smtp_5xx",
                drop: true
            },
            Outcome::Rejected {
                reason: "smtp_5xx",
                drop: false
            },
            invalid,
            invalid,
        ]
    );
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["rcpt_tos"], serde_json::json!(["ok1@example.org"]));
    assert_eq!(mails[0]["tls"], false);

    // A pooled connection cut after DATA, before the reply: retried, nothing stored;
    // the next attempt opens a new connection and succeeds.
    let retry = Outcome::Retry {
        after: None,
        reason: "smtp_connection",
    };
    let drop = [recipient(7, "drop1@example.org", "en")];
    assert_eq!(
        deliver(&ch, &alert, &[recipient(8, "ok2@example.org", "en")]).await,
        vec![Outcome::Delivered]
    );
    assert_eq!(deliver(&ch, &alert, &drop).await, vec![retry]);
    assert!(server.mails_to("drop1@example.org").is_empty());
    let again = [drop[0], recipient(9, "ok3@example.org", "en")];
    assert_eq!(
        deliver(&ch, &alert, &again).await,
        vec![Outcome::Delivered; 2]
    );
    assert_eq!(server.mails_to("drop1@example.org").len(), 1);

    // A relay slower than the timeout: retried, not waited for.
    let quick = EmailChannel::new(
        &EmailSettings {
            timeout_ms: 300,
            ..server.settings(SmtpSecurity::None)
        },
        "http://x",
        None,
        None,
        Metrics::new(),
    )
    .unwrap();
    let t0 = Instant::now();
    assert_eq!(
        deliver(&quick, &alert, &[recipient(10, "slow1@example.org", "en")]).await,
        vec![retry]
    );
    assert!(
        t0.elapsed() < Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
    ch.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_delivers_and_an_untrusted_relay_is_refused() {
    let server = SmtpServer::start(false, true, None);
    let s = server.settings(SmtpSecurity::Tls);
    let alert = content(&alert_xml("email-tls"), 1);
    let to = [recipient(1, "tls@example.org", "zh-CN")];
    let ch = EmailChannel::new(
        &s,
        "http://x",
        None,
        Some(server.tls.ca_pem()),
        Metrics::new(),
    )
    .unwrap();
    assert_eq!(deliver(&ch, &alert, &to).await, vec![Outcome::Delivered]);
    let m = server.mails_to("tls@example.org");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["tls"], true);
    // Without the test CA the certificate is not trusted: a transient connection fault.
    let untrusted = EmailChannel::new(&s, "http://x", None, None, Metrics::new()).unwrap();
    assert_eq!(
        deliver(&untrusted, &alert, &to).await,
        vec![Outcome::Retry {
            after: None,
            reason: "smtp_connection"
        }]
    );
    assert_eq!(server.mails_to("tls@example.org").len(), 1);
}

const REGULAR: u32 = 8;
const FLAKY: u32 = REGULAR;
const REJECT: u32 = REGULAR + 1;
const INVALID: u32 = REGULAR + 2;

fn address(i: u32) -> String {
    match i {
        FLAKY => "flaky1@example.org".into(),
        REJECT => "reject1@example.org".into(),
        INVALID => "not-an-address".into(),
        _ => format!("user{i}@example.org"),
    }
}

fn email_audience() -> Arc<Audience> {
    let mut l = AudienceLoader::with_capacity(INVALID as usize + 1);
    for i in 0..=INVALID {
        let lang = if i % 2 == 0 { "zh-CN" } else { "en-US" };
        l.add(
            i,
            SubscriberKind::Email,
            &address(i),
            23.10 + f64::from(i) * 0.002,
            113.26,
            lang,
        );
    }
    Arc::new(l.build())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_mails_every_subscriber_once() {
    // Why a transaction failed (its kind and I/O error kind), shown with
    // the test's output if it fails: it once saw one connection-level retry.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("tocsin::channel::email=debug")
        .try_init();
    let server = SmtpServer::start(true, false, Some("tocsin:pw-from-file"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("smtp-ca.pem"), server.tls.ca_pem()).unwrap();
    std::fs::write(p.join("smtp-password"), "pw-from-file\n").unwrap();
    let mut s = settings(p, &[]);
    s.channels.email = EmailSettings {
        ca: Some(p.join("smtp-ca.pem")),
        username: Some("tocsin".into()),
        password_file: Some(p.join("smtp-password")),
        concurrency: 8,
        rate_per_sec: 1000.0,
        burst: 100,
        ..server.settings(SmtpSecurity::Starttls)
    };
    s.validate().unwrap();
    let audience = email_audience();
    let daemon = start_with(s, audience.clone()).await;

    let r = submit(p, daemon.ingest_addr, &alert_xml("email-e2e")).await;
    assert!(
        matches!(r, Receipt::Accepted { targeted, .. } if targeted == u64::from(INVALID + 1)),
        "{r:?}"
    );
    let done = wait_for(20, || {
        daemon.dispatcher().progress(1).is_some_and(|p| p.is_done())
    })
    .await;
    let progress = daemon.dispatcher().progress(1).unwrap();
    assert!(done, "{:?}", progress.view());
    let job = progress
        .jobs()
        .into_iter()
        .find(|j| j.channel == "email")
        .unwrap();
    assert_eq!(
        (
            job.delivered.load(Ordering::Relaxed),
            job.failed.load(Ordering::Relaxed),
            job.dropped.load(Ordering::Relaxed),
        ),
        (u64::from(REGULAR) + 1, 2, 2),
        "delivered (the flaky one too), failed and dropped (reject, invalid)"
    );

    let [zh_head, _, en_head, _] = sample_text();
    for i in 0..=FLAKY {
        let got = server.mails_to(&address(i));
        assert_eq!(got.len(), 1, "{} got {} mails", address(i), got.len());
        let want = if i % 2 == 0 { &zh_head } else { &en_head };
        assert_eq!(header(&got[0], "subject"), want.as_str());
        assert_eq!(got[0]["authenticated"], true);
        assert_eq!(got[0]["tls"], true);
    }
    assert!(server.mails_to("reject1@example.org").is_empty());
    assert_eq!(server.mails().len(), FLAKY as usize + 1);
    assert!(audience.is_removed(REJECT) && audience.is_removed(INVALID));
    assert!(!audience.is_removed(FLAKY));

    let m = scrape(daemon.admin_addr).await;
    for line in [
        format!(
            "tocsin_deliveries_total{{channel=\"email\",outcome=\"delivered\"}} {}",
            REGULAR + 1
        ),
        // The flaky address was greylisted twice; the rejected one never retried.
        "tocsin_retries_total{channel=\"email\",reason=\"smtp_4xx\"} 2".into(),
        "tocsin_recipients_dropped_total{channel=\"email\"} 2".into(),
    ] {
        assert!(m.contains(&line), "/metrics lacks {line}:\n{m}");
    }
    assert!(
        !m.contains("tocsin_retries_total{channel=\"email\",reason=\"smtp_connection\"}"),
        "a connection-level retry (reset, refused, TLS or a closed session):\n{m}"
    );
    daemon.shutdown().await;
}
