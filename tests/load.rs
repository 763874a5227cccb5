//! Load: 100 concurrent authority connections (QUIC) submit alerts at a
//! paced 1,000 alerts/s in total while one large fan-out runs into the local
//! APNs server. Reports receipt latency p50 / p99 / max, alerts/s, the
//! CPU each thread spent per alert, the daemon's side of the receipt time
//! (its `tocsin_ingest_seconds` and `tocsin_journal_commit_seconds`
//! histograms over the window, and the p99 of each step of the receipt,
//! `tocsin_ingest_stage_seconds`), QUIC's loss recovery on the authorities'
//! connections, the host's steal and idle time, and the
//! host's own floor read before the run (how late a sleeping thread wakes
//! on the idle machine, `testkit::host`): together they tell a slow host
//! from slow code.
//!
//! All connections are up, and every envelope signed, before the first timed
//! submission, and submissions are spread evenly over each 100 ms. The
//! authorities run on a runtime of their own (they are other machines); so
//! does the APNs server, at a lower priority (it stands for Apple's servers,
//! which do not share the daemon's cores).
//!
//! The goal (DESIGN §10) is receipt p99 ≤ 5 ms at 1,000 alerts/s. Here the
//! load generator (100 QUIC clients), the daemon, its fan-out and the APNs
//! server with its TLS share two cores, every receipt
//! waits for an fsync, and CI runs other builds beside them. So the
//! assertion only catches receipts starved behind the fan-out: p99 ≤ 2 s and
//! ≥ 200 alerts/s. The real figures are printed (README, Reliability).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tocsin::channel::SubscriberKind;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;
use tocsin::runtime::Dedicated;
use tocsin::subscribers::{Audience, AudienceLoader};
use tocsin::testkit::apns_server::{ApnsServer, ApnsServerOptions, DEFAULT_TOPIC};
use tocsin::testkit::host::{CpuTimes, WakeLateness};
use tocsin::testkit::keys::ApnsTestKey;

const CONNECTIONS: usize = 100;
/// Total submissions per second, spread over the connections.
const TARGET_RATE: f64 = 1000.0;
const P99_BOUND: Duration = Duration::from_secs(2);
const MIN_RATE: f64 = 200.0;
/// How much lower than the test the APNs server runs (a nice increment).
const PEER_NICE: i32 = 10;
/// How long the host's wake-up lateness is read before the run.
const FLOOR_PROBE: Duration = Duration::from_secs(5);
/// Wake-ups a receipt waits for in series at the least: the ingest thread
/// on the alert's packets, the journal thread on the alert and on its
/// `fsync`, the client on the receipt.
const SERIAL_WAKEUPS: usize = 4;

fn audience(n: u32) -> Arc<Audience> {
    let mut l = AudienceLoader::with_capacity(n as usize);
    for i in 0..n {
        let lat = 22.9 + f64::from(i % 1000) * 0.0004;
        let lon = 113.1 + f64::from(i / 1000 % 1000) * 0.0004;
        l.add(
            i,
            SubscriberKind::Apns,
            &format!("{:064x}", 0xb000_0000u64 + u64::from(i)),
            lat,
            lon,
            "zh-CN",
        );
    }
    Arc::new(l.build())
}

/// An alert whose 1 km circle east of Shenzhen holds no subscriber: the
/// load is ingest (verify, plan, journal, receipt), not more fan-out.
fn small_alert(ident: &str) -> String {
    alert_xml(ident).replace(
        "<circle>23.1291,113.2644 100</circle>",
        "<circle>22.30,114.90 1</circle>",
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn load(secs: u64, fanout: u32) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let k = ApnsTestKey::generate().unwrap();
    // The APNs server stands in for Apple's, across the network: it runs
    // on threads of its own at a lower priority, taking the CPU the daemon
    // leaves, as the machine it stands for would.
    let peer_rt = Dedicated::new("apns-peer", Some(1), PEER_NICE, true).unwrap();
    let apns = {
        let _in_peer = peer_rt.enter();
        ApnsServer::start(ApnsServerOptions::from_key(&k)).unwrap()
    };
    let mut s = settings(p, &[]);
    std::fs::write(p.join("apns.p8"), &k.p8_pem).unwrap();
    std::fs::write(p.join("apns-ca.pem"), apns.ca_pem()).unwrap();
    s.authorities[0].rate_per_minute = 10_000_000;
    s.dispatch.batch_size = 256;
    s.dispatch.max_in_flight_batches = 8;
    let a = &mut s.channels.apns;
    a.enabled = true;
    a.base_url = apns.base_url();
    a.team_id = k.team_id.clone();
    a.key_id = k.key_id.clone();
    a.key_file = Some(p.join("apns.p8"));
    a.topic = DEFAULT_TOPIC.into();
    a.ca = Some(p.join("apns-ca.pem"));
    a.rate_per_sec = 1_000_000.0;
    // Each authority signs on its own machine: every envelope is signed
    // before the daemon starts, not on its cores during the run (a client
    // thread busy signing also leaves its connections unanswered, and the
    // daemon's side of them backs off).
    let per_conn = (secs as f64 * TARGET_RATE / CONNECTIONS as f64).ceil() as usize + 1;
    let signing_key = key(1);
    let t_sign = Instant::now();
    let signed: Vec<Vec<Vec<u8>>> = (0..CONNECTIONS)
        .map(|conn| {
            (0..per_conn)
                .map(|i| {
                    sign(
                        &small_alert(&format!("load-{conn}-{i}")),
                        "gz-1",
                        &signing_key,
                    )
                })
                .collect()
        })
        .collect();
    println!(
        "{} envelopes signed in {:.1} s",
        CONNECTIONS * per_conn,
        t_sign.elapsed().as_secs_f64()
    );
    let t_build = Instant::now();
    let aud = audience(fanout);
    println!(
        "audience of {fanout} built in {:.1} s",
        t_build.elapsed().as_secs_f64()
    );
    // The host's floor, read while nothing else runs: how late a sleeping
    // thread wakes here, and what the wake-ups a receipt waits for in
    // series cost at the p99 if each is that late.
    let floor = tokio::task::spawn_blocking(|| {
        WakeLateness::measure(FLOOR_PROBE, Duration::from_millis(1))
    })
    .await
    .unwrap();
    let daemon = Daemon::start(
        s,
        Extras {
            channels: vec![],
            audience: Some(aud),
        },
    )
    .await
    .unwrap();

    // The large fan-out.
    let big = submit(p, daemon.ingest_addr, &alert_xml("load-fanout")).await;
    let Receipt::Accepted { targeted, .. } = big else {
        panic!("{big:?}")
    };
    assert_eq!(targeted, u64::from(fanout));

    // 100 connections, each paced to TARGET_RATE / CONNECTIONS.
    let interval = Duration::from_secs_f64(CONNECTIONS as f64 / TARGET_RATE);
    let t0 = Instant::now();
    let cpu0 = cpu_by_thread();
    let host0 = CpuTimes::read();
    let metrics0 = daemon.metrics.encode();
    // The authorities run on a runtime of their own, as they would in their
    // own processes: their timings are not queued behind the test's fan-out
    // machinery (the APNs server's accounting, the waits).
    let authorities = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("authorities")
        .on_thread_start(tocsin::runtime::short_slice)
        .enable_all()
        .build()
        .unwrap();
    // Every connection is up (handshakes done) before the first timed
    // submission, and the connections start evenly spread over one interval.
    let ready = Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let mut tasks = Vec::new();
    for (conn, envelopes) in signed.into_iter().enumerate() {
        let dir = p.to_path_buf();
        let addr = daemon.ingest_addr;
        let ready = ready.clone();
        tasks.push(authorities.spawn(async move {
            let c = client(&dir, addr).await;
            ready.wait().await;
            let end = Instant::now() + Duration::from_secs(secs);
            let start =
                tokio::time::Instant::now() + interval.mul_f64(conn as f64 / CONNECTIONS as f64);
            let mut tick = tokio::time::interval_at(start, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut lat = Vec::new();
            for env in &envelopes {
                tick.tick().await;
                if Instant::now() >= end {
                    break;
                }
                let t = Instant::now();
                let r = c.submit(env).await.unwrap();
                lat.push(t.elapsed());
                assert!(matches!(r, Receipt::Accepted { .. }), "{r:?}");
            }
            let stats = c.stats();
            c.close().await;
            (lat, stats)
        }));
    }
    let mut lat = Vec::new();
    let mut quic = Vec::new();
    for t in tasks {
        let (l, stats) = t.await.unwrap();
        lat.extend(l);
        quic.push(stats);
    }
    let quic = quic_losses(&quic);
    let cpu = cpu_per_alert(&cpu0, &cpu_by_thread(), lat.len());
    let host = match (host0, CpuTimes::read()) {
        (Some(before), Some(after)) => after.share_since(&before),
        _ => "unknown (no /proc/stat)".into(),
    };
    let daemon_side = daemon_side(&metrics0, &daemon.metrics.encode());
    authorities.shutdown_background();
    let fanout_during = apns.state().delivered();
    lat.sort();
    let rate = lat.len() as f64 / secs as f64;
    let (p50, p99, max) = (
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        *lat.last().unwrap(),
    );

    // The fan-out finishes too.
    let st = apns.state();
    assert!(
        wait_for(300, || st.delivered() >= u64::from(fanout)).await,
        "the fan-out delivered only {} of {fanout}",
        st.delivered()
    );
    let fanout_total = t0.elapsed();
    println!(
        "load: {CONNECTIONS} connections, {} alerts accepted in {secs} s = {rate:.0} alerts/s \
         (paced at {TARGET_RATE:.0}/s); receipt p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         fan-out of {fanout}: {fanout_during} delivered during the load, all {fanout} after {:.1} s",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        fanout_total.as_secs_f64(),
    );
    println!("load: CPU per accepted alert, by thread: {cpu}");
    println!("load: daemon side: {daemon_side}");
    println!("load: host, all CPUs over the window: {host}");
    println!("load: QUIC, the authorities' side: {quic}");
    println!(
        "load: host floor, idle before the run: 1 ms sleeps for {} s: {floor}; \
         {SERIAL_WAKEUPS} such wake-ups in series: p99 {:.2} ms",
        FLOOR_PROBE.as_secs(),
        floor.serial_quantile(SERIAL_WAKEUPS, 0.99).as_secs_f64() * 1e3
    );
    assert!(
        p99 <= P99_BOUND,
        "receipt p99 {p99:?} above {P99_BOUND:?} (goal 5 ms)"
    );
    assert!(rate >= MIN_RATE, "{rate:.0} alerts/s");
    daemon.shutdown().await;
}

/// CPU time each thread name has had so far, in ns
/// (`/proc/self/task/*/{comm,schedstat}`; empty where there is no procfs).
fn cpu_by_thread() -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        *by_name.entry(comm.trim().to_owned()).or_default() += ns;
    }
    by_name
}

/// The CPU each thread name spent between two [`cpu_by_thread`] readings,
/// per alert, largest first ("name 123 µs, …, all 456 µs"; names under
/// 1 µs are left out of the list, not of "all"). Threads that
/// ended between the readings are missing: a lower bound, robust to how
/// busy the host is in a way latency is not.
fn cpu_per_alert(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    alerts: usize,
) -> String {
    let per = |ns: u64| ns as f64 / 1e3 / alerts.max(1) as f64;
    let mut used: Vec<(&str, u64)> = after
        .iter()
        .map(|(name, &ns)| {
            (
                name.as_str(),
                ns.saturating_sub(*before.get(name).unwrap_or(&0)),
            )
        })
        .collect();
    let all: u64 = used.iter().map(|&(_, ns)| ns).sum();
    used.sort_by_key(|&(_, ns)| std::cmp::Reverse(ns));
    let mut out: Vec<String> = used
        .iter()
        .filter(|&&(_, ns)| per(ns) >= 1.0)
        .map(|&(name, ns)| format!("{name} {:.0} µs", per(ns)))
        .collect();
    out.push(format!("all {:.0} µs", per(all)));
    out.join(", ")
}

/// What the daemon's receipt-path histograms saw between two `/metrics`
/// texts: the share of submissions answered within 5 ms (envelope read →
/// receipt ready, `tocsin_ingest_seconds`), the buckets holding the p99 of
/// that and of the journal's group commits, and the bucket holding the p99
/// of each step (`tocsin_ingest_stage_seconds`). The daemon's side alone:
/// QUIC's work on both sides of the connection is not in it.
fn daemon_side(before: &str, after: &str) -> String {
    let buckets = tocsin::testkit::prom::buckets;
    let window_of = |name: &str, label: &str| -> Vec<(f64, u64)> {
        let b = buckets(before, name, label);
        buckets(after, name, label)
            .into_iter()
            .map(|(le, n)| {
                let was = b.iter().find(|&&(l, _)| l == le).map_or(0, |&(_, c)| c);
                (le, n.saturating_sub(was))
            })
            .collect()
    };
    let ms = |s: f64| format!("{:.2}", s * 1e3);
    // The bucket holding the p99, in ms.
    let p99 = |w: &[(f64, u64)]| -> String {
        tocsin::testkit::prom::quantile(w, 0.99).map_or("no data".into(), |q| {
            format!("({}, {}]", ms(q.lo), ms(q.hi))
        })
    };
    let window = |name: &str| window_of(name, "");
    let ingest = window("tocsin_ingest_seconds");
    let commit = window("tocsin_journal_commit_seconds");
    let stages: Vec<String> = tocsin::metrics::INGEST_STAGES
        .iter()
        .map(|stage| {
            let w = window_of("tocsin_ingest_stage_seconds", &format!("stage=\"{stage}\""));
            format!("{stage} {}", p99(&w))
        })
        .collect();
    let total = ingest.last().map_or(0, |&(_, n)| n);
    let within = match ingest.iter().find(|&&(le, _)| le == 0.005) {
        Some(&(_, n)) if total > 0 => format!("{:.2} %", 100.0 * n as f64 / total as f64),
        _ => "n/a".into(),
    };
    format!(
        "receipts {within} within 5 ms, p99 in {} ms (tocsin_ingest_seconds); journal commits \
         p99 in {} ms (tocsin_journal_commit_seconds); p99 of each stage in ms \
         (tocsin_ingest_stage_seconds): {}",
        p99(&ingest),
        p99(&commit),
        stages.join(", "),
    )
}

/// What QUIC's loss recovery did on the authorities' connections over the
/// run (handshakes included): packets sent and declared lost, congestion
/// events, and the smoothed and minimum RTT at the end (largest of any
/// connection). A loss declared on loopback is a packet late past QUIC's
/// time threshold, not dropped; each one costs a retransmission and can
/// shrink the congestion window, so a slow receipt tail with losses here is
/// QUIC's, not the daemon's.
fn quic_losses(stats: &[quinn::ConnectionStats]) -> String {
    let sum = |f: fn(&quinn::ConnectionStats) -> u64| stats.iter().map(f).sum::<u64>();
    let max_ms = |f: fn(&quinn::ConnectionStats) -> Duration| {
        stats.iter().map(f).max().unwrap_or_default().as_secs_f64() * 1e3
    };
    format!(
        "{} packets sent, {} declared lost, {} congestion events; RTT at the end up to {:.2} ms \
         (min RTT up to {:.2} ms)",
        sum(|s| s.path.sent_packets),
        sum(|s| s.path.lost_packets),
        sum(|s| s.path.congestion_events),
        max_ms(|s| s.path.rtt),
        max_ms(|s| s.path.min_rtt),
    )
}

/// CI: 10 s, 100 k push recipients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_authorities_under_fanout_short() {
    load(10, 100_000).await;
}

/// Ingest alone, for comparison: 60 s, no fan-out
/// (`cargo test --release --test load -- --ignored ingest_only`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn hundred_authorities_ingest_only() {
    load(60, 0).await;
}

/// The long run: 60 s, 1 M push recipients
/// (`cargo test --release --test load -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn hundred_authorities_under_fanout_long() {
    load(60, 1_000_000).await;
}
