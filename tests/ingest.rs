//! End to end over real QUIC: an accepted alert reaches a local partner as
//! the unchanged signed envelope; a resend is idempotent; Update and Cancel
//! behave as DESIGN §4; and every rejection returns its stable code and
//! leaves the journal untouched. The receipt's steps are timed.

mod support;

use std::sync::atomic::Ordering;

use support::*;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;

async fn daemon_with_partner() -> (
    tempfile::TempDir,
    Daemon,
    std::sync::Arc<tocsin::demo::receiver::Received>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (addr, seen) = partner("s3cret").await;
    let s = settings(dir.path(), &[("carrier-1".into(), addr, "s3cret")]);
    let d = Daemon::start(s, Extras::default()).await.unwrap();
    (dir, d, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_alert_reaches_partner_unchanged_and_resend_is_idempotent() {
    let (dir, d, seen) = daemon_with_partner().await;
    let c = client(dir.path(), d.ingest_addr).await;
    let xml = alert_xml("accept-1");
    let env = sign(&xml, "gz-1", &key(1));
    let r1 = c.submit(&env).await.unwrap();
    let Receipt::Accepted {
        id,
        receipt,
        targeted,
    } = &r1
    else {
        panic!("not accepted: {r1:?}")
    };
    assert!(id.starts_with("police.gz@example.gov.cn,accept-1,"));
    assert_eq!(*targeted, 1, "one partner covers Guangzhou");
    assert!(wait_for(10, || seen.valid.load(Ordering::Relaxed) >= 1).await);
    assert_eq!(
        seen.bodies.lock()[0],
        env,
        "partner got the envelope byte for byte"
    );
    assert_eq!(seen.invalid.load(Ordering::Relaxed), 0);

    let r2 = c.submit(&env).await.unwrap();
    match r2 {
        Receipt::Duplicate { receipt: r, .. } => assert_eq!(&r, receipt),
        other => panic!("resend: {other:?}"),
    }
    assert_eq!(d.pipeline.journal().alert_count().unwrap(), 1);

    // Same id, different bytes: refused.
    let changed = xml.replace("Li Xiaoming", "Li Xiao-ming");
    let r3 = c.submit(&sign(&changed, "gz-1", &key(1))).await.unwrap();
    assert_eq!(code(&r3), "identifier_reused");

    // Metrics count what happened.
    let m = d.metrics.encode();
    assert!(
        m.contains("tocsin_alerts_total{result=\"accepted\"} 1"),
        "{m}"
    );
    assert!(m.contains("tocsin_deliveries_total{channel=\"feed\",outcome=\"delivered\"} 1"));
    // Each step of the way to a receipt is timed for every submission that
    // reached it: all three were verified, planned and journaled (the
    // journal found the duplicate and the reuse); one started a fan-out.
    let count = |stage: &str| {
        let series = format!("tocsin_ingest_stage_seconds_count{{stage=\"{stage}\"}}");
        tocsin::testkit::prom::sample(&m, &series).unwrap_or_else(|| panic!("no {series} in {m}"))
    };
    for stage in tocsin::metrics::INGEST_STAGES {
        let want = if stage == "start" { 1.0 } else { 3.0 };
        assert_eq!(count(stage), want, "{stage}");
    }
    c.close().await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_supersedes_and_cancel_ends() {
    let (dir, d, seen) = daemon_with_partner().await;
    let c = client(dir.path(), d.ingest_addr).await;
    let original = alert_xml("uc-1");
    let r = c.submit(&sign(&original, "gz-1", &key(1))).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    assert!(wait_for(10, || seen.valid.load(Ordering::Relaxed) >= 1).await);

    let update = follow_up(&original, "uc-2", "Update");
    let r = c.submit(&sign(&update, "gz-1", &key(1))).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "update: {r:?}");
    let ok = wait_for(10, || seen.valid.load(Ordering::Relaxed) >= 2).await;
    assert!(
        ok,
        "update not delivered: {:?} invalid={}",
        d.dispatcher().progress(2).map(|p| p.view()),
        seen.invalid.load(Ordering::Relaxed)
    );
    let cancel = follow_up(&update, "uc-3", "Cancel");
    // A Cancel may carry no area at all.
    let cancel = remove_all(&cancel, "area");
    let r = c.submit(&sign(&cancel, "gz-1", &key(1))).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "cancel: {r:?}");
    assert!(wait_for(10, || seen.valid.load(Ordering::Relaxed) >= 3).await);

    let j = d.pipeline.journal();
    let states: Vec<_> = (1..=3).map(|s| j.alert(s).unwrap().unwrap()).collect();
    assert_eq!(states[0].state, tocsin::journal::AlertState::Superseded);
    assert_eq!(states[0].replaced_by, Some(2));
    assert_eq!(states[1].state, tocsin::journal::AlertState::Cancelled);
    assert_eq!(states[1].replaced_by, Some(3));
    // The partner saw Alert, Update, Cancel in that order.
    let bodies = seen.bodies.lock().clone();
    assert!(String::from_utf8_lossy(&bodies[2]).contains("<msgType>Cancel</msgType>"));

    // A reference to an unknown alert is refused and changes nothing.
    let orphan = follow_up(&alert_xml("never-sent"), "uc-4", "Update");
    let r = c.submit(&sign(&orphan, "gz-1", &key(1))).await.unwrap();
    assert_eq!(code(&r), "reference_unknown");
    assert_eq!(j.alert_count().unwrap(), 3);
    c.close().await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_have_stable_codes_and_change_nothing() {
    let (dir, d, seen) = daemon_with_partner().await;
    let c = client(dir.path(), d.ingest_addr).await;
    let good = alert_xml("rej-0");
    let k1 = key(1);

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        // signature made by another key under gz-1's kid
        ("signature_invalid", sign(&good, "gz-1", &key(9))),
        ("key_unknown", sign(&good, "nobody", &k1)),
        ("key_revoked", sign(&good, "gz-revoked", &key(2))),
        ("key_expired", sign(&good, "gz-expired", &key(3))),
    ];
    // payload changed after signing
    let mut tampered = sign(&good, "gz-1", &k1);
    let pos = tampered.windows(9).position(|w| w == b"Xiaoming,").unwrap();
    tampered[pos] = b'Y';
    cases.push(("signature_invalid", tampered));
    // a circle around Beijing, outside Guangzhou's jurisdiction
    let far = good.replace("23.1291,113.2644 100", "39.9042,116.4074 50");
    cases.push(("outside_jurisdiction", sign(&far, "gz-1", &k1)));
    // event code the authority may not issue
    let ev = good.replace("<value>CAE</value>", "<value>TOR</value>");
    cases.push(("event_not_allowed", sign(&ev, "gz-1", &k1)));
    // CAE requires contact
    let nocontact = remove_all(&good, "contact");
    cases.push(("standard_not_met", sign(&nocontact, "gz-1", &k1)));
    // expires beyond 72 h
    let long = set_all(
        &good,
        "expires",
        &cap_time(chrono::Utc::now() + chrono::Duration::hours(100)),
    );
    cases.push(("standard_not_met", sign(&long, "gz-1", &k1)));
    // stale sent (replay)
    let stale = set_all(
        &good,
        "sent",
        &cap_time(chrono::Utc::now() - chrono::Duration::hours(5)),
    );
    cases.push(("sent_out_of_window", sign(&stale, "gz-1", &k1)));
    // oversize envelope (limit 64 KiB in the test settings)
    let big = good.replace(
        "</description>",
        &format!("{}</description>", "x".repeat(70_000)),
    );
    cases.push(("envelope_too_large", sign(&big, "gz-1", &k1)));
    cases.push(("envelope_malformed", b"not cose at all".to_vec()));
    cases.push((
        "xml_malformed",
        sign(
            "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>x</alert>",
            "gz-1",
            &k1,
        ),
    ));
    let dtd = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE alert [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>{}",
        good.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
    );
    cases.push(("xml_dtd_forbidden", sign(&dtd, "gz-1", &k1)));
    let many: String = (0..1001)
        .map(|i| format!("23.{:04},113.2 ", i % 9000))
        .collect();
    let poly = good.replace(
        "<circle>23.1291,113.2644 100</circle>",
        &format!("<polygon>{many}23.0000,113.2</polygon>"),
    );
    cases.push(("polygon_too_many_vertices", sign(&poly, "gz-1", &k1)));
    let open = good.replace(
        "<circle>23.1291,113.2644 100</circle>",
        "<polygon>23.0,113.0 23.2,113.0 23.2,113.4 23.0,113.4</polygon>",
    );
    cases.push(("polygon_not_closed", sign(&open, "gz-1", &k1)));
    let empty = good.replace("<circle>23.1291,113.2644 100</circle>", "");
    cases.push(("area_empty", sign(&empty, "gz-1", &k1)));

    for (want, env) in &cases {
        let r = c.submit(env).await.unwrap();
        assert_eq!(code(&r), *want, "case {want}: {r:?}");
    }
    assert_eq!(
        d.pipeline.journal().alert_count().unwrap(),
        0,
        "nothing journaled"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(seen.valid.load(Ordering::Relaxed), 0, "nothing delivered");
    // and the good one still goes through afterwards
    let r = c.submit(&sign(&good, "gz-1", &k1)).await.unwrap();
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    c.close().await;
    d.shutdown().await;
}
