//! Push bench (DESIGN §10, issue 3 "Bench"): an end-to-end load run into the
//! local APNs-protocol server (`testkit::apns_server`, HTTP/2 over TLS, JWT
//! checked, `record = false` and `count_tokens = false` so it keeps no
//! per-request data), in one process
//! on one multi-thread tokio runtime, server and client sharing the cores:
//!
//! 1. BARE — N requests from a bare hyper HTTP/2 client
//!    (`testkit::h2client::connect_h2`): C connections, K requests in flight
//!    on each, a valid provider JWT, the headers the channel sends (a fresh
//!    path and `apns-id` per request) and the payload the channel renders.
//!    Measures requests/s and the p99 request round trip.
//! 2. DAEMON — the same N deliveries through the real daemon path: a full
//!    in-process `Daemon` (dev mode, QUIC ingest, journal, dispatcher) with
//!    an audience of N APNs subscribers inside the alert's circle and the
//!    APNs channel enabled through settings and pointed at the same server.
//!    The sample alert (zh + en) is signed with the dev authority key and
//!    submitted over QUIC. Measures deliveries/s from accept to the last
//!    delivery, the p99 request round trip (`tocsin_push_request_seconds`)
//!    and the p99 accept → delivery latency (`tocsin_delivery_seconds`).
//!
//! Both phases assert the server's `delivered` counter grew by exactly N.
//! Goal: ≥ 50 k deliveries/s over TLS on 2 cores and ≥ 80 % of bare.
//!
//! Run: `nice cargo bench --bench push`. Environment overrides:
//! `TOCSIN_PUSH_N` (default 1,000,000), `TOCSIN_PUSH_CONNS` (4),
//! `TOCSIN_PUSH_INFLIGHT` (bare requests in flight per connection, 250),
//! `TOCSIN_PUSH_ROUNDS` (bare+daemon rounds, 1), `TOCSIN_PUSH_BATCH`,
//! `TOCSIN_PUSH_BATCHES` (dispatch batch size / batches in flight; default
//! the shipped dispatch settings), `TOCSIN_PUSH_CONCURRENCY` (the APNs
//! channel's `concurrency`; default the shipped setting).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};

use tocsin::alert::cap::{self, CapLimits};
use tocsin::alert::envelope::{key_id_for, sign1};
use tocsin::channel::push::render::{self, Text};
use tocsin::channel::{AlertContent, SubscriberKind};
use tocsin::config::{ApnsSettings, Settings};
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;
use tocsin::subscribers::{Audience, AudienceLoader};
use tocsin::testkit::apns_server::{ApnsServer, ApnsServerOptions, DEFAULT_TOPIC};
use tocsin::testkit::keys::ApnsTestKey;

/// The sample alert's circle: 23.1291,113.2644, 100 km.
const CENTRE: (f64, f64) = (23.1291, 113.2644);

const SETTINGS: &str = r#"
[node]
state_dir = "."
dev_mode = true
[ingest]
listen = "127.0.0.1:0"
max_envelope_bytes = 1048576
[admin]
listen = "127.0.0.1:0"
[channels.feed]
enabled = false

[[standards]]
event_code = "CAE"
require = ["headline", "description", "instruction", "contact", "expires", "area"]
max_expires_hours = 72
"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The device token of subscriber `i`: 64 hex digits, like the demo's.
fn token(i: u32) -> String {
    let x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{x:016x}{i:048x}")
}

/// `n` APNs subscribers within ~45 km of the circle's centre; every fifth
/// prefers English, the rest Chinese.
fn audience(n: u32) -> Audience {
    let mut l = AudienceLoader::with_capacity(n as usize);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    for id in 0..n {
        let (r, a) = (0.4 * next().sqrt(), std::f64::consts::TAU * next());
        let (lat, lon) = (CENTRE.0 + r * a.sin(), CENTRE.1 + r * a.cos());
        let lang = if id % 5 == 0 { "en-US" } else { "zh-CN" };
        l.add(id, SubscriberKind::Apns, &token(id), lat, lon, lang);
    }
    assert_eq!(l.skipped(), 0, "every synthetic subscriber is valid");
    l.build()
}

/// The sample alert with fresh times, identifier `ident` and only its circle.
fn alert_xml(ident: &str) -> String {
    tocsin::demo::sample::fresh_alert(ident, chrono::Utc::now())
}

/// p-quantile of sorted microsecond samples.
fn quantile_us(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[i])
}

/// p-quantile (seconds) of a Prometheus histogram in `text`, interpolated
/// linearly inside its bucket.
fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    use tocsin::testkit::prom;
    prom::quantile(&prom::buckets(text, name, "channel=\"apns\""), q).map(|q| q.value)
}

/// What the bare client sends: everything the channel sends, pre-built.
struct BareRequest {
    base: String,
    auth: HeaderValue,
    expiration: HeaderValue,
    collapse_id: HeaderValue,
    topic: HeaderValue,
    body: Bytes,
}

use tocsin::channel::apns::{
    APNS_COLLAPSE_ID, APNS_EXPIRATION, APNS_ID, APNS_PRIORITY, APNS_PUSH_TYPE, APNS_TOPIC,
};

impl BareRequest {
    fn build(&self, i: u32) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = format!("{}/3/device/{}", self.base, token(i))
            .parse()
            .expect("uri");
        let h = req.headers_mut();
        h.reserve(9);
        h.insert(AUTHORIZATION, self.auth.clone());
        h.insert(APNS_PUSH_TYPE, HeaderValue::from_static("alert"));
        h.insert(APNS_PRIORITY, HeaderValue::from_static("10"));
        h.insert(APNS_EXPIRATION, self.expiration.clone());
        h.insert(APNS_COLLAPSE_ID, self.collapse_id.clone());
        let seed = (u128::from(i) * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835).to_be_bytes();
        let uuid = tocsin::channel::content::uuid_text(&seed);
        h.insert(APNS_ID, HeaderValue::from_bytes(&uuid).expect("uuid"));
        h.insert(APNS_TOPIC, self.topic.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req
    }
}

struct Figures {
    /// CPU time of the whole process (client, daemon and server) per request.
    cpu_us: f64,
    per_sec: f64,
    secs: f64,
    p99_ms: f64,
    p50_ms: f64,
}

/// Phase 1: a bare hyper HTTP/2 client, `conns` × `inflight`.
async fn bare(
    server: &ApnsServer,
    spec: Arc<BareRequest>,
    n: usize,
    conns: usize,
    inflight: usize,
) -> Figures {
    let st = server.state();
    let before = st.delivered();
    let mut senders = Vec::new();
    for _ in 0..conns {
        senders.push(
            tocsin::testkit::h2client::connect_h2(server.addr(), server.ca_pem())
                .await
                .expect("bare connection"),
        );
    }
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_secs();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sr in senders {
        let (next, spec) = (next.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            let mut rtts: Vec<u32> = Vec::with_capacity(n / conns + 1);
            let mut running = FuturesUnordered::new();
            let mut exhausted = false;
            loop {
                while !exhausted && running.len() < inflight {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        exhausted = true;
                        break;
                    }
                    let req = spec.build(i as u32);
                    let mut sr = sr.clone();
                    running.push(async move {
                        let t = Instant::now();
                        let resp = sr.send_request(req).await.expect("bare request");
                        let status = resp.status().as_u16();
                        let _ = resp.into_body().collect().await.expect("bare body");
                        (status, t.elapsed())
                    });
                }
                match running.next().await {
                    Some((status, rtt)) => {
                        assert_eq!(status, 200, "bare request refused");
                        rtts.push(rtt.as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    None => break,
                }
            }
            rtts
        }));
    }
    let mut rtts = Vec::with_capacity(n);
    for t in tasks {
        rtts.extend(t.await.expect("bare task"));
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        st.delivered() - before,
        n as u64,
        "server delivered count (bare)"
    );
    let cpu_us = (cpu_secs() - cpu0) * 1e6 / n as f64;
    rtts.sort_unstable();
    Figures {
        cpu_us,
        per_sec: n as f64 / secs,
        secs,
        p99_ms: quantile_us(&rtts, 0.99) / 1e3,
        p50_ms: quantile_us(&rtts, 0.50) / 1e3,
    }
}

struct DaemonFigures {
    run: Figures,
    first_ms: f64,
    delivery_p99_s: Option<f64>,
}

/// Phase 2: the same deliveries through a full in-process daemon.
async fn daemon_path(
    server: &ApnsServer,
    key: &ApnsTestKey,
    audience: Arc<Audience>,
    n: usize,
    conns: usize,
    round: usize,
) -> DaemonFigures {
    let st = server.state();
    let before = st.delivered();
    let dir = tempfile::Builder::new()
        .prefix("push-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let mut settings = Settings::from_toml(SETTINGS).expect("bench settings");
    settings.node.state_dir = dir.path().to_path_buf();
    if let Some(b) = std::env::var("TOCSIN_PUSH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings.dispatch.batch_size = b;
    }
    if let Some(b) = std::env::var("TOCSIN_PUSH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings.dispatch.max_in_flight_batches = b;
    }
    let key_file = dir.path().join("apns.p8");
    std::fs::write(&key_file, &key.p8_pem).expect("write p8");
    let ca_file = dir.path().join("apns-ca.pem");
    std::fs::write(&ca_file, server.ca_pem()).expect("write ca");
    let defaults = ApnsSettings::default();
    settings.channels.apns = ApnsSettings {
        enabled: true,
        base_url: server.base_url(),
        team_id: key.team_id.clone(),
        key_id: key.key_id.clone(),
        key_file: Some(key_file),
        topic: DEFAULT_TOPIC.into(),
        connections: conns,
        concurrency: env_usize("TOCSIN_PUSH_CONCURRENCY", defaults.concurrency),
        // No quota: the bench measures the daemon, not a provider's cap.
        rate_per_sec: 1e12,
        burst: u32::MAX,
        timeout_ms: 60_000,
        critical: false,
        ca: Some(ca_file),
    };
    if round == 0 {
        println!(
            "daemon settings: dispatch batch_size {} × max_in_flight_batches {}, apns connections {} concurrency {}",
            settings.dispatch.batch_size,
            settings.dispatch.max_in_flight_batches,
            settings.channels.apns.connections,
            settings.channels.apns.concurrency
        );
    }
    let daemon = Daemon::start(
        settings,
        Extras {
            channels: Vec::new(),
            audience: Some(audience),
        },
    )
    .await
    .expect("daemon start");
    let dev = daemon.dev.as_ref().expect("dev mode");
    let signing = tocsin::dev::read_signing_key(&dev.authority_key).expect("dev authority key");
    let ident = format!(
        "push-bench-{round}-{}",
        chrono::Utc::now().timestamp_millis()
    );
    let xml = alert_xml(&ident);
    let env = sign1(
        xml.as_bytes(),
        &key_id_for(&signing.verifying_key()),
        &signing,
    )
    .expect("sign");
    let roots = tocsin::tls::load_certs(&dev.cert).expect("dev cert");
    let tls = tocsin::tls::client_config(roots, None).expect("client tls");
    let client = tocsin::client::IngestClient::connect(daemon.ingest_addr, "localhost", tls)
        .await
        .expect("QUIC connect");
    let cpu0 = cpu_secs();
    let receipt = client.submit(&env).await.expect("submit");
    assert!(
        matches!(receipt, Receipt::Accepted { .. }),
        "alert not accepted: {}",
        String::from_utf8_lossy(&receipt.to_line())
    );
    let progress = loop {
        if let Some(p) = daemon.dispatcher().all_progress().into_iter().next() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let targeted: u64 = progress
        .jobs()
        .iter()
        .map(|j| j.targeted.load(Ordering::Relaxed))
        .sum();
    assert_eq!(targeted, n as u64, "every subscriber is targeted");
    while !progress.is_done() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // `finished_after` is set just after the last job ends; allow it a moment.
    let mut total = progress.finished_after.get().copied();
    for _ in 0..100 {
        if total.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        total = progress.finished_after.get().copied();
    }
    let secs = total
        .unwrap_or_else(|| progress.started.elapsed())
        .as_secs_f64();
    let cpu_us = (cpu_secs() - cpu0) * 1e6 / n as f64;
    let delivered: u64 = progress
        .jobs()
        .iter()
        .map(|j| j.delivered.load(Ordering::Relaxed))
        .sum();
    assert_eq!(delivered, n as u64, "daemon-side delivered count");
    assert_eq!(
        st.delivered() - before,
        n as u64,
        "server delivered count (daemon)"
    );
    let metrics = daemon.metrics.encode();
    let first_ms = progress
        .first_delivery
        .get()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    client.close().await;
    daemon.shutdown().await;
    let q = |name, p| histogram_quantile(&metrics, name, p).map_or(f64::NAN, |s| s * 1e3);
    DaemonFigures {
        run: Figures {
            cpu_us,
            per_sec: n as f64 / secs,
            secs,
            p99_ms: q("tocsin_push_request_seconds", 0.99),
            p50_ms: q("tocsin_push_request_seconds", 0.50),
        },
        first_ms,
        // Interpolation inside a power-of-two bucket can overshoot the run.
        delivery_p99_s: histogram_quantile(&metrics, "tocsin_delivery_seconds", 0.99)
            .map(|s| s.min(secs)),
    }
}

/// CPU time (user + system) this process has used so far, from /proc.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn machine_note() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!("nproc {cores} · load average {load} · {cpu}")
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let n = env_usize("TOCSIN_PUSH_N", 1_000_000);
    let conns = env_usize("TOCSIN_PUSH_CONNS", 4).max(1);
    let inflight = env_usize("TOCSIN_PUSH_INFLIGHT", 250).max(1);
    let rounds = env_usize("TOCSIN_PUSH_ROUNDS", 1).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "push bench: N = {n}, {conns} connections; {}",
        machine_note()
    );

    let t = Instant::now();
    let audience = Arc::new(audience(n as u32));
    println!(
        "audience: {} APNs subscribers built in {:.2?}",
        audience.channel(SubscriberKind::Apns).len(),
        t.elapsed()
    );

    rt.block_on(async move {
        let key = ApnsTestKey::generate().expect("P-256 key");
        let mut opts = ApnsServerOptions::from_key(&key);
        // No per-request data at all: no record, no per-token counts.
        opts.record = false;
        opts.count_tokens = false;
        let server = ApnsServer::start(opts).expect("APNs server");

        // The bare client's request: the payload the channel renders for the
        // same alert (zh, the language of 4 in 5 subscribers), same headers.
        let xml = alert_xml("push-bench-bare");
        let alert = cap::parse(xml.as_bytes(), &CapLimits::default()).expect("sample parses");
        let content = AlertContent {
            seq: 0,
            alert_id: "bare".into(),
            receipt: "bare".into(),
            envelope: Arc::from(xml.as_bytes()),
            expires: alert
                .infos
                .iter()
                .filter_map(|i| i.expires)
                .max()
                .map(|e| e.with_timezone(&chrono::Utc)),
            alert,
            accepted_at: Instant::now(),
        };
        let collapse_id = content.collapse_id();
        let body = render::apns_payload(
            &content,
            &Text::of(&content, content.info_for("zh-CN")),
            &collapse_id,
            false,
        );
        let jwt = key.jwt(chrono::Utc::now().timestamp() as u64);
        let spec = Arc::new(BareRequest {
            base: server.base_url(),
            auth: HeaderValue::from_str(&format!("bearer {jwt}")).expect("auth header"),
            expiration: HeaderValue::from(
                content.expires.map_or(0, |e| e.timestamp().max(0)),
            ),
            collapse_id: HeaderValue::from_str(&collapse_id).expect("collapse id"),
            topic: HeaderValue::from_static(DEFAULT_TOPIC),
            body: body.clone(),
        });
        println!("payload: {} bytes (zh); bare: {conns} connections × {inflight} in flight", body.len());

        let mut rows = Vec::new();
        // `TOCSIN_PUSH_ONLY=daemon` skips the bare phase (for profiling only).
        let only_daemon = std::env::var("TOCSIN_PUSH_ONLY").is_ok_and(|v| v == "daemon");
        for round in 0..rounds {
            let b = if only_daemon {
                Figures { cpu_us: f64::NAN, per_sec: f64::NAN, secs: 0.0, p99_ms: f64::NAN, p50_ms: f64::NAN }
            } else {
                bare(&server, spec.clone(), n, conns, inflight).await
            };
            println!(
                "round {round}: bare   {:>9.0} req/s ({:.2} s)",
                b.per_sec, b.secs
            );
            let d = daemon_path(&server, &key, audience.clone(), n, conns, round).await;
            println!(
                "round {round}: daemon {:>9.0} deliveries/s ({:.2} s)",
                d.run.per_sec, d.run.secs
            );
            rows.push((b, d));
        }

        println!();
        println!("push bench — local APNs-protocol server over TLS (HTTP/2), N = {n} per run");
        println!("machine: {}", machine_note());
        println!(
            "{:<6} {:>12} {:>14} {:>7} {:>10} {:>10} {:>11} {:>11} {:>11} {:>11} {:>9} {:>13}",
            "round",
            "bare req/s",
            "daemon dlv/s",
            "ratio",
            "bare CPU",
            "dmn CPU",
            "bare p50",
            "bare p99",
            "daemon p50",
            "daemon p99",
            "1st dlv",
            "accept→dlv p99"
        );
        for (i, (b, d)) in rows.iter().enumerate() {
            println!(
                "{:<6} {:>12.0} {:>14.0} {:>6.1}% {:>8.1}µs {:>8.1}µs {:>9.2}ms {:>9.2}ms {:>9.2}ms {:>9.2}ms {:>7.1}ms {:>12.2}s",
                i,
                b.per_sec,
                d.run.per_sec,
                100.0 * d.run.per_sec / b.per_sec,
                b.cpu_us,
                d.run.cpu_us,
                b.p50_ms,
                b.p99_ms,
                d.run.p50_ms,
                d.run.p99_ms,
                d.first_ms,
                d.delivery_p99_s.unwrap_or(f64::NAN),
            );
        }
        println!("(bare p50/p99: exact request round trips; daemon p50/p99: request round trips from the");
        println!(" tocsin_push_request_seconds histogram, interpolated in its power-of-two buckets;");
        println!(" daemon dlv/s: N / (accept → last delivery); accept→dlv p99 from tocsin_delivery_seconds;");
        println!(" CPU: user+system time of this whole process — client or daemon AND server — per request)");
        let (b, d) = rows.last().expect("one round");
        let ok_abs = d.run.per_sec >= 50_000.0;
        let ok_rel = d.run.per_sec >= 0.8 * b.per_sec;
        println!(
            "goal (DESIGN §10): ≥ 50,000 deliveries/s: {} · ≥ 80 % of bare: {}",
            if ok_abs { "met" } else { "NOT met" },
            if ok_rel { "met" } else { "NOT met" }
        );
        println!("server delivered counter == N for every run: checked");
    });
}
