//! Channel faults on a schedule: while alerts keep arriving, the local APNs
//! server cycles through 503s, throttling (429 + `Retry-After`), slow
//! answers, answers slower than the client's timeout, connection resets and
//! half-open connections (`testkit::faults`). Asserted: every alert reaches
//! every subscriber before it expires, with nothing failed or dropped;
//! backoff shows in `tocsin_retries_total{channel="apns",reason}`; memory
//! stays bounded (this process's `VmRSS`: daemon, APNs server and test;
//! bound below).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tocsin::channel::SubscriberKind;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;
use tocsin::subscribers::{Audience, AudienceLoader};
use tocsin::testkit::apns_server::{ApnsServer, ApnsServerOptions, DEFAULT_TOPIC};
use tocsin::testkit::faults::{self, Fault, Phase};
use tocsin::testkit::keys::ApnsTestKey;

const SUBSCRIBERS: u32 = 300;
const ALERTS: usize = 30;
/// The daemon's APNs request timeout in this test.
const TIMEOUT_MS: u64 = 800;
/// RSS bound: growth from the end of the first fault cycle to the end of
/// the run. Every queue in the daemon is bounded (batches in flight,
/// semaphores, the pool's streams); what may legitimately grow is the
/// server's per-token counters (fixed here: 300 tokens), the progress
/// records of finished alerts (a few hundred bytes each) and allocator
/// slack. 40 MB is an order of magnitude above that and far below what a
/// leak per request or per retry (tens of thousands here) would add.
const RSS_GROWTH_MB: u64 = 40;
/// Absolute bound for the whole process (idle daemon ≈ 13 MB per README).
const RSS_MAX_MB: u64 = 200;

fn token(i: u32) -> String {
    format!("{:064x}", 0xfa00_0000u64 + u64::from(i))
}

fn audience() -> Arc<Audience> {
    let mut l = AudienceLoader::with_capacity(SUBSCRIBERS as usize);
    for i in 0..SUBSCRIBERS {
        let lat = 23.05 + f64::from(i % 100) * 0.002;
        l.add(i, SubscriberKind::Apns, &token(i), lat, 113.26, "en-US");
    }
    Arc::new(l.build())
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// `tocsin_retries_total{channel="apns",reason=…}` by reason.
fn retries(metrics: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in metrics.lines() {
        if let Some(rest) = l.strip_prefix("tocsin_retries_total{") {
            if !rest.contains("channel=\"apns\"") {
                continue;
            }
            let reason = rest
                .split("reason=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?")
                .to_string();
            let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
            *out.entry(reason).or_default() += v;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_channel_faults_deliver_everything_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let key_ = ApnsTestKey::generate().unwrap();
    let mut opts = ApnsServerOptions::from_key(&key_);
    opts.count_tokens = true;
    let apns = ApnsServer::start(opts).unwrap();
    let mut s = settings(p, &[]);
    std::fs::write(p.join("apns.p8"), &key_.p8_pem).unwrap();
    std::fs::write(p.join("apns-ca.pem"), apns.ca_pem()).unwrap();
    s.authorities[0].rate_per_minute = 1_000_000;
    s.dispatch.batch_size = 20;
    s.dispatch.max_in_flight_batches = 4;
    // Retries are bounded by the alert's expiry, not by a count.
    s.dispatch.max_attempts = 1000;
    s.dispatch.retry_base_ms = 50;
    s.dispatch.retry_max_ms = 1000;
    let a = &mut s.channels.apns;
    a.enabled = true;
    a.base_url = apns.base_url();
    a.team_id = key_.team_id.clone();
    a.key_id = key_.key_id.clone();
    a.key_file = Some(p.join("apns.p8"));
    a.topic = DEFAULT_TOPIC.into();
    a.ca = Some(p.join("apns-ca.pem"));
    a.connections = 4;
    a.timeout_ms = TIMEOUT_MS;
    a.rate_per_sec = 100_000.0;
    let daemon = Daemon::start(
        s,
        Extras {
            channels: vec![],
            audience: Some(audience()),
        },
    )
    .await
    .unwrap();

    let phases = vec![
        Phase::new(Fault::Healthy, 800),
        Phase::new(Fault::Unavailable, 1500),
        Phase::new(Fault::Healthy, 300),
        Phase::new(
            Fault::Throttle {
                retry_after_secs: 1,
            },
            1500,
        ),
        Phase::new(Fault::Slow(Duration::from_millis(300)), 1500),
        Phase::new(Fault::Timeout(Duration::from_millis(TIMEOUT_MS * 2)), 1500),
        Phase::new(Fault::Reset, 1500),
        Phase::new(Fault::HalfOpen, 1000),
        Phase::new(Fault::Healthy, 500),
    ];
    let cycle: Duration = phases.iter().map(|p| p.lasting).sum();
    let run = faults::play(apns.state(), phases, 2);

    // Alerts keep arriving through both cycles; each expires 90 s after it is sent.
    let t0 = Instant::now();
    let gap = (cycle * 2) / ALERTS as u32;
    let mut seqs = Vec::new();
    let mut rss_first_cycle = 0u64;
    let mut rss_max = 0u64;
    let c = client(p, daemon.ingest_addr).await;
    for i in 0..ALERTS {
        let now = chrono::Utc::now();
        let xml = set_all(
            &alert_xml(&format!("fault-{i}")),
            "expires",
            &cap_time(now + chrono::Duration::seconds(90)),
        );
        let r = c.submit(&sign(&xml, "gz-1", &key(1))).await.unwrap();
        let Receipt::Accepted { targeted, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(targeted, u64::from(SUBSCRIBERS));
        seqs.push(i as u64 + 1);
        let rss = rss_kb();
        rss_max = rss_max.max(rss);
        if t0.elapsed() <= cycle {
            rss_first_cycle = rss_first_cycle.max(rss);
        }
        tokio::time::sleep(gap).await;
    }
    c.close().await;
    let phases_played = run.phases_played.load(std::sync::atomic::Ordering::Relaxed);
    run.stop().await;

    // Everything delivered, before expiry (an expired job stops and counts failed).
    let ok = wait_for(80, || {
        rss_max = rss_max.max(rss_kb());
        seqs.iter()
            .all(|&s| daemon.dispatcher().progress(s).is_some_and(|p| p.is_done()))
    })
    .await;
    assert!(ok, "not every alert finished within 80 s of the faults");
    let mut delivered = 0;
    let mut last_finish = Duration::ZERO;
    for &seq in &seqs {
        let pr = daemon.dispatcher().progress(seq).unwrap();
        for v in pr.view() {
            assert_eq!(v.failed, 0, "alert {seq}: {v:?}");
            assert_eq!(v.dropped, 0, "alert {seq}: {v:?}");
            assert_eq!(v.delivered, v.targeted, "alert {seq}: {v:?}");
            delivered += v.delivered;
        }
        if let Some(f) = pr.finished_after.get() {
            last_finish = last_finish.max(*f);
        }
    }
    let st = apns.state();
    for i in 0..SUBSCRIBERS {
        assert!(
            st.count_for(&token(i)) as usize >= ALERTS,
            "subscriber {i} missed an alert"
        );
    }
    let answered_twice: u64 = (0..SUBSCRIBERS)
        .map(|i| u64::from(st.count_for(&token(i))) - ALERTS as u64)
        .sum();

    // Backoff is visible in the metrics.
    let text = scrape(daemon.admin_addr).await;
    let r = retries(&text);
    let total: f64 = r.values().sum();
    assert!(total > 0.0, "no apns retries in the metrics:\n{r:?}");
    for reason in ["throttled", "unavailable"] {
        assert!(
            r.keys().any(|k| k.contains(reason)),
            "no `{reason}` retries in {r:?}"
        );
    }

    // Memory stays bounded.
    rss_max = rss_max.max(rss_kb());
    let growth_mb = rss_max.saturating_sub(rss_first_cycle) / 1024;
    println!(
        "faults: {phases_played} phases over {:.1} s, {ALERTS} alerts × {SUBSCRIBERS} = {delivered} delivered, \
         0 failed, slowest alert finished {:.1} s after acceptance; {} requests, {answered_twice} answered \
         deliveries repeated (timed-out answers the server still counted); retries {r:?}; RSS first cycle \
         {} MB, max {} MB (growth {growth_mb} MB, bound {RSS_GROWTH_MB} MB)",
        t0.elapsed().as_secs_f64(),
        last_finish.as_secs_f64(),
        st.requests.load(std::sync::atomic::Ordering::Relaxed),
        rss_first_cycle / 1024,
        rss_max / 1024,
    );
    assert!(
        growth_mb <= RSS_GROWTH_MB,
        "RSS grew {growth_mb} MB after the first fault cycle"
    );
    assert!(rss_max / 1024 <= RSS_MAX_MB, "RSS {} MB", rss_max / 1024);
    daemon.shutdown().await;
}
