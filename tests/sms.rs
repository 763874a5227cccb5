//! SMS over SMPP 3.4 against two SMS centres the channel did not write for itself: the
//! smpp34 SMSC from PyPI (`tests/peers/smsc.py`, installed by `scripts/test`) for the
//! PDUs on the wire (data coding, UDH parts, text round trip in Chinese and English,
//! delivery receipts, invalid numbers, throttling) and end to end through the daemon;
//! and the in-process scripted SMSC (`testkit::smsc`, on the rusmpp codec) for faults:
//! `ESME_RTHROTTLED`, `ESME_RMSGQFUL`, stalls, dropped connections, rejected binds,
//! late receipts and `unbind` at shutdown.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use support::peers::{free_port, peer_python, wait_listening, Peer};
use support::*;
use tocsin::channel::sms::render::{self, SmsMessage};
use tocsin::channel::sms::smpp::SmppTransport;
use tocsin::channel::sms::text::{decode_gsm7, decode_ucs2, UDH_LEN};
use tocsin::channel::sms::{SmsChannel, SmsTransport};
use tocsin::channel::{AlertContent, Channel, Outcome, Recipient, SubscriberKind};
use tocsin::config::SmscSettings;
use tocsin::demo::sample::fresh_alert;
use tocsin::ingest::Receipt;
use tocsin::metrics::Metrics;
use tocsin::subscribers::AudienceLoader;
use tocsin::testkit::smsc::SmscServer;

const LINK_BASE: &str = "https://tocsin.example";

fn smsc_settings(name: &str, port: u16, binds: usize) -> SmscSettings {
    SmscSettings {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        system_id: "tocsin".into(),
        binds,
        window: 8,
        rate_per_sec: 10_000.0,
        response_timeout_ms: 2_000,
        reconnect_min_ms: 50,
        reconnect_max_ms: 400,
        ..SmscSettings::default()
    }
}

fn start_python_smsc(dir: &Path) -> (Peer, u16, std::path::PathBuf) {
    let port = free_port();
    let out = dir.join("smsc.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smsc.py");
    let child = Command::new(peer_python())
        .arg(script)
        .arg(port.to_string())
        .arg(&out)
        .spawn()
        .expect("start the smpp34 SMSC");
    let peer = Peer(child);
    assert!(
        wait_listening(port, Duration::from_secs(15)),
        "smpp34 SMSC did not listen on {port}"
    );
    (peer, port, out)
}

fn received(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The text carried by the submits to `destination`, checking each part's UDH and coding.
fn reassemble(submits: &[serde_json::Value], destination: &str, want: &SmsMessage) -> String {
    let parts: Vec<_> = submits
        .iter()
        .filter(|s| s["destination"] == destination)
        .collect();
    assert_eq!(parts.len(), want.parts.len(), "parts to {destination}");
    let total = parts.len();
    let mut text = String::new();
    for (i, s) in parts.iter().enumerate() {
        let data = hex::decode(s["short_message"].as_str().unwrap()).unwrap();
        let coding = s["data_coding"].as_u64().unwrap() as u8;
        assert_eq!(coding, want.parts[i].coding.data_coding());
        let body = if total > 1 {
            assert_eq!(s["esm_class"].as_u64().unwrap() & 0x40, 0x40, "UDHI set");
            let udh = &data[..UDH_LEN];
            assert_eq!(&udh[..3], &[0x05, 0x00, 0x03], "concatenation IE");
            assert_eq!(udh[4] as usize, total);
            assert_eq!(udh[5] as usize, i + 1);
            &data[UDH_LEN..]
        } else {
            assert_eq!(s["esm_class"].as_u64().unwrap() & 0x40, 0);
            &data[..]
        };
        text.push_str(&match coding {
            0 => decode_gsm7(body),
            8 => decode_ucs2(body),
            other => panic!("data_coding {other}"),
        });
    }
    text
}

fn message(content: &AlertContent, lang: &str, max_parts: usize) -> SmsMessage {
    render::render(
        content,
        content.info_for(lang),
        LINK_BASE,
        render::reference(content),
        max_parts,
    )
    .unwrap()
}

fn sample(seq: u64, ident: &str) -> AlertContent {
    AlertContent::from_xml(seq, &fresh_alert(ident, Utc::now())).unwrap()
}

fn metric(m: &Metrics, needle: &str) -> f64 {
    m.encode()
        .lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp34_smsc_receives_chinese_and_english_with_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let (_peer, port, out) = start_python_smsc(dir.path());
    let metrics = Metrics::new();
    let transport = SmppTransport::start(
        &[(smsc_settings("py", port, 2), "secret".into())],
        "TOCSIN",
        &[None],
        metrics.clone(),
    )
    .unwrap();
    let transport = Arc::new(transport);
    let channel = SmsChannel::new(transport.clone(), LINK_BASE, 3);
    let content = sample(7, "SMS-PY-1");
    let recipients = [
        ("+8613800000001", "zh-CN"),
        ("15550000002", "en-US"),
        ("9990000003", "en-US"),
        ("8880000004", "zh-CN"),
        ("7770000005", "en-US"),
        ("not-a-number", "en-US"),
    ];
    let rs: Vec<Recipient<'_>> = recipients
        .iter()
        .enumerate()
        .map(|(i, (address, language))| Recipient {
            id: i as u32,
            address,
            language,
        })
        .collect();
    let mut outcomes = Vec::new();
    channel.deliver(&content, &rs, &mut outcomes).await;
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert_eq!(outcomes[1], Outcome::Delivered);
    assert_eq!(
        outcomes[2],
        Outcome::Rejected {
            reason: "invalid_number",
            drop: true
        }
    );
    assert!(
        matches!(
            outcomes[3],
            Outcome::Retry {
                reason: "throttled",
                after: Some(_)
            }
        ),
        "a throttled first part is left to the dispatcher's retry: {:?}",
        outcomes[3]
    );
    assert!(
        matches!(
            outcomes[4],
            Outcome::Retry {
                reason: "queue_full",
                ..
            }
        ),
        "{:?}",
        outcomes[4]
    );
    assert_eq!(
        outcomes[5],
        Outcome::Rejected {
            reason: "invalid_number",
            drop: true
        }
    );

    let submits = received(&out);
    let zh = message(&content, "zh-CN", 3);
    let en = message(&content, "en-US", 3);
    assert!(
        zh.parts.len() > 1 && en.parts.len() > 1,
        "both need concatenation"
    );
    assert!(zh.text.contains("李小明") && en.text.contains("Missing child"));
    assert_eq!(reassemble(&submits, "8613800000001", &zh), zh.text);
    assert_eq!(reassemble(&submits, "15550000002", &en), en.text);
    let first = submits
        .iter()
        .find(|s| s["destination"] == "8613800000001")
        .unwrap();
    assert_eq!(first["dest_addr_ton"], 1, "international number");
    assert_eq!(first["source"], "TOCSIN");
    assert_eq!(first["registered_delivery"], 1);

    // smpp34 sends a receipt per accepted part over the transceiver binds.
    let parts = (zh.parts.len() + en.parts.len()) as f64;
    let counted = wait_for(10, || {
        metric(
            &metrics,
            "tocsin_sms_receipts_total{gateway=\"py\",status=\"delivered\"}",
        ) >= parts
    })
    .await;
    assert!(counted, "receipts: {}", metrics.encode());
    assert_eq!(
        metric(
            &metrics,
            "tocsin_sms_parts_total{channel=\"sms\",gateway=\"py\"}"
        ),
        parts
    );
    assert_eq!(transport.binds_up(), 2);
    channel.close().await;
    assert_eq!(transport.binds_up(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_smsc_faults_are_retried_or_reported() {
    let smsc = SmscServer::start(true).await.unwrap();
    let st = smsc.state();
    let metrics = Metrics::new();
    let mut s = smsc_settings("scripted", smsc.addr().port(), 2);
    s.response_timeout_ms = 300;
    s.enquire_link_secs = 1;
    let transport = Arc::new(
        SmppTransport::start(&[(s, "pw".into())], "110", &[None], metrics.clone()).unwrap(),
    );
    let content = sample(3, "SMS-FAULT-1");
    let one = message(&content, "en-US", 1);
    assert_eq!(one.parts.len(), 1);
    assert!(wait_for(5, || st.bound() == 2).await, "two binds");

    // Throttled on the first part: left to the dispatcher's retry, nothing sent.
    st.throttle_next(1);
    let o = transport.send("15550001", &one).await;
    assert!(
        matches!(
            o,
            Outcome::Retry {
                reason: "throttled",
                after: Some(_)
            }
        ),
        "{o:?}"
    );
    assert_eq!((st.received(), st.accepted()), (1, 0));
    assert_eq!(transport.send("15550001", &one).await, Outcome::Delivered);

    // Throttled twice on a later part: that part is tried again inline, so the
    // parts already accepted are not sent again.
    let three = message(&content, "zh-CN", 3);
    assert!(three.parts.len() >= 2);
    st.throttle_after(1, 2);
    assert_eq!(transport.send("15550009", &three).await, Outcome::Delivered);
    let to_9 = st
        .submits()
        .iter()
        .filter(|s| s.destination == "15550009")
        .count();
    assert_eq!(to_9, three.parts.len(), "each part accepted exactly once");

    // A full queue outlasting the inline tries: the dispatcher retries later.
    st.queue_full_next(10);
    let o = transport.send("15550002", &one).await;
    assert!(
        matches!(
            o,
            Outcome::Retry {
                reason: "queue_full",
                after: Some(_)
            }
        ),
        "{o:?}"
    );
    st.queue_full_next(0);

    // A stalled SMSC: each part times out, the message is retried later.
    st.stall(true);
    let o = transport.send("15550003", &one).await;
    assert!(
        matches!(
            o,
            Outcome::Retry {
                reason: "smsc_timeout",
                ..
            }
        ),
        "{o:?}"
    );
    st.stall(false);

    // The connection drops under a submit: retried later, over a fresh bind.
    st.drop_after(1);
    let o = transport.send("15550004", &one).await;
    assert!(
        matches!(
            o,
            Outcome::Retry {
                reason: "smsc_connection",
                ..
            }
        ),
        "{o:?}"
    );
    assert_eq!(transport.send("15550004", &one).await, Outcome::Delivered);
    assert!(
        wait_for(5, || st.bound() == 2 && transport.binds_up() == 2).await,
        "rebound"
    );

    // Every bind lost and refused: nothing to send on, then recovery.
    st.reject_binds(true);
    st.drop_all();
    assert!(wait_for(5, || transport.binds_up() == 0).await);
    let o = transport.send("15550005", &one).await;
    assert!(
        matches!(
            o,
            Outcome::Retry {
                reason: "smsc_unavailable",
                ..
            }
        ),
        "{o:?}"
    );
    st.reject_binds(false);
    assert!(
        wait_for(5, || transport.binds_up() == 2).await,
        "binds back"
    );
    assert_eq!(transport.send("15550005", &one).await, Outcome::Delivered);
    assert_eq!(
        metric(
            &metrics,
            "tocsin_gateway_sessions{channel=\"sms\",gateway=\"scripted\"}"
        ),
        2.0
    );

    // Late receipts are still counted.
    st.receipts(true, Duration::from_millis(400));
    assert_eq!(transport.send("15550006", &one).await, Outcome::Delivered);
    let late = wait_for(5, || {
        metric(
            &metrics,
            "tocsin_sms_receipts_total{gateway=\"scripted\",status=\"delivered\"}",
        ) >= 1.0
    })
    .await;
    assert!(late, "late receipt counted");

    // Idle sessions are kept alive with enquire_link.
    let before = st.enquire_links();
    assert!(
        wait_for(5, || st.enquire_links() >= before + 2).await,
        "enquire_link keep-alives"
    );

    // Shutdown unbinds every session.
    transport.close().await;
    assert!(
        wait_for(5, || st.unbinds() == 2).await,
        "unbinds: {}",
        st.unbinds()
    );
    let delivered: Vec<_> = st.submits().iter().map(|s| s.destination.clone()).collect();
    let mut want = vec!["15550001"];
    want.extend(std::iter::repeat_n("15550009", three.parts.len()));
    want.extend(["15550004", "15550005", "15550006"]);
    assert_eq!(delivered, want, "accepted once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gsm7_can_be_sent_packed() {
    let smsc = SmscServer::start(true).await.unwrap();
    let mut s = smsc_settings("packed", smsc.addr().port(), 1);
    s.gsm7_packed = true;
    let transport =
        SmppTransport::start(&[(s, String::new())], "TOCSIN", &[None], Metrics::new()).unwrap();
    let content = sample(4, "SMS-PACKED");
    let en = message(&content, "en-US", 3);
    assert_eq!(transport.send("15550100", &en).await, Outcome::Delivered);
    let got = smsc.state().submits();
    assert_eq!(got.len(), en.parts.len());
    for (sub, part) in got.iter().zip(&en.parts) {
        assert_eq!(
            sub.short_message,
            part.user_data(),
            "packed septets after the UDH"
        );
        assert_eq!(sub.data_coding, 0);
    }
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_texts_each_subscriber_once_through_smpp34() {
    let dir = tempfile::tempdir().unwrap();
    let (_peer, port, out) = start_python_smsc(dir.path());
    let p = dir.path();
    let mut s = settings(p, &[]);
    let sms = &mut s.channels.sms;
    sms.enabled = true;
    sms.smsc = vec![smsc_settings("py", port, 2)];
    sms.max_parts = 3;
    let numbers: Vec<String> = (0..20).map(|i| format!("+86138000{i:05}")).collect();
    let mut l = AudienceLoader::with_capacity(numbers.len() + 2);
    for (i, n) in numbers.iter().enumerate() {
        let lang = if i % 2 == 0 { "zh-CN" } else { "en-US" };
        l.add(
            i as u32,
            SubscriberKind::Sms,
            n,
            23.10 + i as f64 * 0.002,
            113.26,
            lang,
        );
    }
    l.add(20, SubscriberKind::Sms, "99900000", 23.12, 113.26, "en-US");
    // Throttled twice by the SMSC: delivered by the dispatcher's retries.
    l.add(21, SubscriberKind::Sms, "88800000", 23.13, 113.26, "en-US");
    let audience = Arc::new(l.build());
    let daemon = start_with(s, audience.clone()).await;
    let r = submit(p, daemon.ingest_addr, &alert_xml("sms-e2e-1")).await;
    assert!(matches!(r, Receipt::Accepted { targeted: 22, .. }), "{r:?}");
    let done = wait_for(30, || {
        daemon.dispatcher().progress(1).is_some_and(|p| p.is_done())
    })
    .await;
    assert!(
        done,
        "{:?}",
        daemon.dispatcher().progress(1).map(|p| p.view())
    );
    let submits = received(&out);
    for n in numbers.iter().map(String::as_str).chain(["88800000"]) {
        let digits = n.trim_start_matches('+');
        let parts: Vec<_> = submits
            .iter()
            .filter(|s| s["destination"] == digits)
            .collect();
        let total = parts.len();
        assert!(total >= 1, "{n} got nothing");
        // Exactly one message: each part number once.
        let mut seqs: Vec<u8> = parts
            .iter()
            .map(|s| {
                let d = hex::decode(s["short_message"].as_str().unwrap()).unwrap();
                if total > 1 {
                    d[5]
                } else {
                    1
                }
            })
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=total as u8).collect::<Vec<_>>(), "{n}");
    }
    let metrics = daemon.metrics.encode();
    assert!(
        metrics.contains("tocsin_deliveries_total{channel=\"sms\",outcome=\"delivered\"} 21"),
        "{metrics}"
    );
    assert!(
        audience.is_removed(20),
        "invalid number dropped from the audience"
    );
    daemon.shutdown().await;
}

/// rusmppc 0.4.0 handles five queued requests per poll and then waits on the socket;
/// without `Driven` re-polling it, a burst over a window of 64 sat unsent until the
/// next `enquire_link`. With the keep-alive five minutes away, any stall shows as a
/// timeout here (a liveness check, not a speed target: the bench measures speed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_over_a_wide_window_never_stall() {
    use futures::stream::{self, StreamExt};
    let smsc = SmscServer::start(false).await.unwrap();
    let mut s = smsc_settings("burst", smsc.addr().port(), 2);
    (s.window, s.enquire_link_secs, s.response_timeout_ms) = (64, 300, 120_000);
    let transport = Arc::new(
        SmppTransport::start(&[(s, String::new())], "TOCSIN", &[None], Metrics::new()).unwrap(),
    );
    assert!(wait_for(5, || transport.binds_up() == 2).await);
    let content = sample(5, "SMS-BURST");
    let two = message(&content, "zh-CN", 2);
    assert_eq!(two.parts.len(), 2);
    let numbers: Vec<String> = (0..2_000).map(|i| format!("+86139{i:08}")).collect();
    for round in 0..5 {
        let burst = stream::iter(&numbers)
            .map(|n| {
                let (t, m) = (transport.clone(), &two);
                async move { t.send(n, m).await }
            })
            .buffer_unordered(256)
            .filter(|o| std::future::ready(*o == Outcome::Delivered))
            .count();
        let delivered = tokio::time::timeout(Duration::from_secs(60), burst)
            .await
            .unwrap_or_else(|_| panic!("round {round} stalled"));
        assert_eq!(delivered, numbers.len());
    }
    assert_eq!(smsc.state().accepted(), 5 * 2 * 2_000);
    transport.close().await;
}
