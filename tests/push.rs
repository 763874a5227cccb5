//! Push end to end: the daemon fans a signed alert out to the local APNs and
//! FCM protocol servers over HTTP/2 + TLS. Checks payload language per
//! subscriber, Update replacing the notification (same collapse id), tokens
//! the providers reject leaving the audience, throttling honoured through
//! `Retry-After`, dropped connections losing nothing, and recovery from an
//! expired provider token / revoked OAuth token.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tocsin::channel::SubscriberKind;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;
use tocsin::subscribers::{Audience, AudienceLoader};
use tocsin::testkit::apns_server::{ApnsServer, ApnsServerOptions, DEFAULT_TOPIC};
use tocsin::testkit::fcm_server::{FcmServer, FcmServerOptions};
use tocsin::testkit::keys::{test_service_account, ApnsTestKey};

const PER_PROVIDER: u32 = 24;

fn apns_token(i: u32) -> String {
    format!("{:064x}", 0xa000_0000u64 + u64::from(i))
}

fn fcm_token(i: u32) -> String {
    format!("fcm-token:{i:04}")
}

fn language(i: u32) -> &'static str {
    if i % 2 == 0 {
        "zh-CN"
    } else {
        "en-US"
    }
}

/// Ids 0..PER_PROVIDER are APNs, the next PER_PROVIDER FCM; all in Guangzhou.
fn audience() -> Arc<Audience> {
    let mut l = AudienceLoader::with_capacity(2 * PER_PROVIDER as usize);
    for i in 0..PER_PROVIDER {
        let lat = 23.10 + f64::from(i) * 0.002;
        l.add(
            i,
            SubscriberKind::Apns,
            &apns_token(i),
            lat,
            113.26,
            language(i),
        );
    }
    for i in 0..PER_PROVIDER {
        let lat = 23.10 + f64::from(i) * 0.002;
        l.add(
            PER_PROVIDER + i,
            SubscriberKind::Fcm,
            &fcm_token(i),
            lat,
            113.27,
            language(i),
        );
    }
    Arc::new(l.build())
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    daemon: Daemon,
    apns: ApnsServer,
    fcm: FcmServer,
    audience: Arc<Audience>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = ApnsTestKey::generate().unwrap();
    let apns = ApnsServer::start(ApnsServerOptions::from_key(&key)).unwrap();
    let fcm = FcmServer::start(FcmServerOptions::test()).unwrap();
    let p = dir.path();
    let mut s = settings(p, &[]);
    std::fs::write(p.join("apns.p8"), &key.p8_pem).unwrap();
    std::fs::write(p.join("apns-ca.pem"), apns.ca_pem()).unwrap();
    std::fs::write(p.join("fcm-ca.pem"), fcm.ca_pem()).unwrap();
    let mut sa: serde_json::Value = serde_json::from_str(test_service_account()).unwrap();
    sa["token_uri"] = fcm.token_url().into();
    std::fs::write(p.join("sa.json"), sa.to_string()).unwrap();
    let a = &mut s.channels.apns;
    a.enabled = true;
    a.base_url = apns.base_url();
    a.team_id = key.team_id.clone();
    a.key_id = key.key_id.clone();
    a.key_file = Some(p.join("apns.p8"));
    a.topic = DEFAULT_TOPIC.into();
    a.ca = Some(p.join("apns-ca.pem"));
    let f = &mut s.channels.fcm;
    f.enabled = true;
    f.base_url = fcm.base_url();
    f.project_id = "tocsin-test".into();
    f.service_account_file = Some(p.join("sa.json"));
    f.ca = Some(p.join("fcm-ca.pem"));
    let audience = audience();
    let extras = Extras {
        channels: vec![],
        audience: Some(audience.clone()),
    };
    let daemon = Daemon::start(s, extras).await.unwrap();
    Setup {
        dir: p.to_path_buf(),
        _dir: dir,
        daemon,
        apns,
        fcm,
        audience,
    }
}

impl Setup {
    async fn send(&self, xml: &str) -> Receipt {
        let c = client(&self.dir, self.daemon.ingest_addr).await;
        let r = c.submit(&sign(xml, "gz-1", &key(1))).await.unwrap();
        c.close().await;
        r
    }

    async fn wait_done(&self, seq: u64) {
        let ok = wait_for(30, || {
            self.daemon
                .dispatcher()
                .progress(seq)
                .is_some_and(|p| p.is_done())
        })
        .await;
        assert!(
            ok,
            "alert {seq} did not finish: {:?}",
            self.daemon.dispatcher().progress(seq).map(|p| p.view())
        );
    }

    fn job(&self, seq: u64, channel: &str) -> (u64, u64, u64) {
        let p = self.daemon.dispatcher().progress(seq).unwrap();
        let j = p.jobs().into_iter().find(|j| j.channel == channel).unwrap();
        (
            j.delivered.load(Ordering::Relaxed),
            j.failed.load(Ordering::Relaxed),
            j.dropped.load(Ordering::Relaxed),
        )
    }
}

fn headlines() -> (String, String) {
    let zh = between(SAMPLE, "<headline>", "</headline>").to_string();
    let rest = &SAMPLE[SAMPLE.find("<language>en-US</language>").unwrap()..];
    let en = between(rest, "<headline>", "</headline>").to_string();
    (zh, en)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn languages_reach_every_token_and_update_replaces() {
    let s = setup().await;
    let original = alert_xml("push-1");
    let r = s.send(&original).await;
    assert!(
        matches!(r, Receipt::Accepted { targeted, .. } if targeted == u64::from(2 * PER_PROVIDER)),
        "{r:?}"
    );
    s.wait_done(1).await;
    assert_eq!(s.job(1, "apns"), (u64::from(PER_PROVIDER), 0, 0));
    assert_eq!(s.job(1, "fcm"), (u64::from(PER_PROVIDER), 0, 0));

    let (zh, en) = headlines();
    let apns = s.apns.state().received();
    assert_eq!(apns.len(), PER_PROVIDER as usize);
    let collapse = apns[0].collapse_id.clone().unwrap();
    for i in 0..PER_PROVIDER {
        let got: Vec<_> = apns.iter().filter(|r| r.token == apns_token(i)).collect();
        assert_eq!(got.len(), 1, "apns token {i}");
        let want = if language(i) == "zh-CN" { &zh } else { &en };
        assert_eq!(
            got[0].payload["aps"]["alert"]["title"].as_str().unwrap(),
            want.as_str()
        );
        assert_eq!(got[0].collapse_id.as_deref(), Some(collapse.as_str()));
        assert_eq!(got[0].priority, 10);
        assert_eq!(got[0].push_type, "alert");
        assert!(
            got[0].expiration.unwrap() > 0,
            "apns-expiration from CAP expires"
        );
    }
    let fcm = s.fcm.state().received();
    assert_eq!(fcm.len(), PER_PROVIDER as usize);
    for i in 0..PER_PROVIDER {
        let got: Vec<_> = fcm.iter().filter(|r| r.token == fcm_token(i)).collect();
        assert_eq!(got.len(), 1, "fcm token {i}");
        let m = &got[0].message;
        let want = if language(i) == "zh-CN" { &zh } else { &en };
        assert_eq!(m["notification"]["title"].as_str().unwrap(), want.as_str());
        assert_eq!(m["android"]["priority"], "HIGH");
        assert_eq!(
            m["android"]["collapse_key"].as_str().unwrap(),
            collapse.as_str()
        );
        assert!(m["android"]["ttl"].as_str().unwrap().ends_with('s'));
    }

    // An Update reaches everyone again under the same collapse id.
    let update = follow_up(&original, "push-2", "Update")
        .replace("Missing child:", "UPDATE: missing child:");
    let r = s.send(&update).await;
    assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
    s.wait_done(2).await;
    let apns = s.apns.state().received();
    assert_eq!(apns.len(), 2 * PER_PROVIDER as usize);
    assert!(apns
        .iter()
        .all(|r| r.collapse_id.as_deref() == Some(collapse.as_str())));
    let updated = apns.iter().filter(|r| {
        r.payload["aps"]["alert"]["title"]
            .as_str()
            .unwrap_or("")
            .starts_with("UPDATE")
    });
    assert_eq!(
        updated.count(),
        (PER_PROVIDER / 2) as usize,
        "English subscribers see the new title"
    );
    let fcm = s.fcm.state().received();
    assert_eq!(fcm.len(), 2 * PER_PROVIDER as usize);
    assert!(fcm
        .iter()
        .all(|r| r.message["android"]["collapse_key"] == collapse.as_str()));
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_tokens_leave_the_audience() {
    let s = setup().await;
    let st = s.apns.state();
    st.mark_unregistered(&apns_token(1));
    st.mark_unregistered(&apns_token(2));
    st.mark_bad_token(&apns_token(3));
    s.fcm.state().mark_unregistered(&fcm_token(4));
    s.fcm.state().mark_invalid_token(&fcm_token(5));
    assert!(matches!(
        s.send(&alert_xml("rej-push-1")).await,
        Receipt::Accepted { .. }
    ));
    s.wait_done(1).await;
    assert_eq!(s.job(1, "apns"), (u64::from(PER_PROVIDER) - 3, 3, 3));
    assert_eq!(s.job(1, "fcm"), (u64::from(PER_PROVIDER) - 2, 2, 2));
    for id in [1, 2, 3, PER_PROVIDER + 4, PER_PROVIDER + 5] {
        assert!(
            s.audience.is_removed(id),
            "subscriber {id} still in the audience"
        );
    }
    assert!(!s.audience.is_removed(0));
    let m = s.daemon.metrics.encode();
    assert!(
        m.contains("tocsin_recipients_dropped_total{channel=\"apns\"} 3"),
        "{m}"
    );
    assert!(m.contains("tocsin_recipients_dropped_total{channel=\"fcm\"} 2"));

    // The next alert no longer asks the providers about them.
    let before = st.requests.load(Ordering::SeqCst);
    assert!(matches!(
        s.send(&alert_xml("rej-push-2")).await,
        Receipt::Accepted { .. }
    ));
    s.wait_done(2).await;
    assert_eq!(
        st.requests.load(Ordering::SeqCst) - before,
        u64::from(PER_PROVIDER) - 3
    );
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_after_retry_after() {
    let s = setup().await;
    s.apns.state().retry_after_secs.store(1, Ordering::SeqCst);
    s.apns.state().throttle_next.store(10, Ordering::SeqCst);
    s.fcm.state().retry_after_secs.store(1, Ordering::SeqCst);
    s.fcm.state().throttle_next.store(10, Ordering::SeqCst);
    let t0 = Instant::now();
    assert!(matches!(
        s.send(&alert_xml("thr-1")).await,
        Receipt::Accepted { .. }
    ));
    s.wait_done(1).await;
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(s.job(1, "apns"), (u64::from(PER_PROVIDER), 0, 0));
    assert_eq!(s.job(1, "fcm"), (u64::from(PER_PROVIDER), 0, 0));
    for i in 0..PER_PROVIDER {
        assert_eq!(s.apns.state().count_for(&apns_token(i)), 1);
        assert_eq!(s.fcm.state().count_for(&fcm_token(i)), 1);
    }
    let m = s.daemon.metrics.encode();
    assert!(
        m.contains("tocsin_retries_total{channel=\"apns\",reason=\"throttled\"} 10"),
        "{m}"
    );
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_lose_no_delivery() {
    let s = setup().await;
    s.apns.state().close_after_next(7);
    s.fcm.state().close_after_next(9);
    assert!(matches!(
        s.send(&alert_xml("drop-1")).await,
        Receipt::Accepted { .. }
    ));
    s.wait_done(1).await;
    assert_eq!(s.job(1, "apns"), (u64::from(PER_PROVIDER), 0, 0));
    assert_eq!(s.job(1, "fcm"), (u64::from(PER_PROVIDER), 0, 0));
    for i in 0..PER_PROVIDER {
        assert!(
            s.apns.state().count_for(&apns_token(i)) >= 1,
            "apns token {i} lost"
        );
        assert!(
            s.fcm.state().count_for(&fcm_token(i)) >= 1,
            "fcm token {i} lost"
        );
    }
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_provider_tokens_are_refreshed() {
    let s = setup().await;
    s.apns.state().expire_next.store(1, Ordering::SeqCst);
    assert!(matches!(
        s.send(&alert_xml("exp-1")).await,
        Receipt::Accepted { .. }
    ));
    s.wait_done(1).await;
    assert_eq!(s.job(1, "apns"), (u64::from(PER_PROVIDER), 0, 0));
    let tokens_before = s.fcm.state().token_requests();
    s.fcm.revoke_tokens();
    assert!(matches!(
        s.send(&alert_xml("exp-2")).await,
        Receipt::Accepted { .. }
    ));
    s.wait_done(2).await;
    assert_eq!(s.job(2, "fcm"), (u64::from(PER_PROVIDER), 0, 0));
    assert!(
        s.fcm.state().token_requests() > tokens_before,
        "a new OAuth token was fetched"
    );
    let m = s.daemon.metrics.encode();
    assert!(
        m.contains("tocsin_auth_refreshes_total{channel=\"apns\"}"),
        "{m}"
    );
    s.daemon.shutdown().await;
}
