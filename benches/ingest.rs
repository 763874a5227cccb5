//! Ingest bench (DESIGN §4, §8, §10): what one alert costs on the way in.
//! `verify_parse` times `Verifier::verify` on one signed sample envelope —
//! COSE decode, Ed25519 `verify_strict`, CAP parse and every policy check,
//! pure CPU — and its parts alone (COSE decode, decode + signature, CAP
//! parse). `submit_group_commit` drives
//! `Pipeline::submit` of an in-process daemon (dev mode, temporary state
//! directory on disk, feed channel on, no partners) with 64 submissions in
//! flight, each a distinct pre-signed alert, so every one is verified, group
//! committed durably to redb and started; `quic_roundtrip` does the same
//! through the real QUIC client, 64 concurrent streams on one connection,
//! client and server sharing the machine's cores. `journal` times the store
//! alone: a group of 64 new alerts per durable transaction, and the single
//! durable state change the dispatcher commits when an alert's fan-out ends.
//! Goal: ≥ 10,000 alerts/s over QUIC on a 2-core machine.
//! Run: `cargo bench --bench ingest`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ed25519_dalek::SigningKey;
use tocsin::alert::cap::{self, CapLimits, MsgType};
use tocsin::alert::envelope::{sign1, Envelope};
use tocsin::authority::{Registry, Verifier};
use tocsin::client::IngestClient;
use tocsin::config::Settings;
use tocsin::daemon::{Daemon, Extras};
use tocsin::ingest::Receipt;
use tocsin::journal::{AlertState, CommitOutcome, Journal, NewAlert};
use tocsin::target::GeocodeTable;
use tokio::task::JoinSet;

const KID: &str = "gz-1";
/// Submissions in flight at once (QUIC: concurrent streams on one connection).
const IN_FLIGHT: usize = 64;
const MAX_ENVELOPE_BYTES: usize = 65536;

/// The authority's key (the integration tests' `key(1)`).
fn key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

/// Settings as the integration tests build them, with a replay window and
/// an authority rate so large that neither refuses anything during the run.
fn settings(dir: &Path) -> Settings {
    use base64::Engine as _;
    let pk = base64::engine::general_purpose::STANDARD.encode(key().verifying_key().as_bytes());
    let toml = format!(
        r#"
[node]
state_dir = "{dir}"
dev_mode = true
[ingest]
listen = "127.0.0.1:0"
max_envelope_bytes = {MAX_ENVELOPE_BYTES}
[admin]
listen = "127.0.0.1:0"
[policy]
replay_window_secs = 2592000

[[standards]]
event_code = "CAE"
require = ["headline", "description", "instruction", "contact", "expires", "area"]
max_expires_hours = 72

[[authorities]]
id = "gz"
name = "Guangzhou police"
senders = ["police.gz@example.gov.cn"]
events = ["CAE"]
rate_per_minute = 4000000000
jurisdiction = {{ circles = [{{ lat = 23.1291, lon = 113.2644, radius_km = 400.0 }}] }}
[[authorities.keys]]
kid = "{KID}"
public_key = "{pk}"
"#,
        dir = dir.display(),
    );
    Settings::from_toml(&toml).expect("bench settings parse")
}

use tocsin::demo::sample::{cap_time, fresh_alert};

/// Pre-signed, distinct alerts: the sample (zh + en, its 100 km circle, no
/// geocode — as the integration tests send it) with times fixed at bench
/// start and a unique identifier each.
struct Alerts {
    /// The document split around its identifier.
    head: String,
    tail: String,
    key: SigningKey,
    next: AtomicU64,
}

impl Alerts {
    fn new(now: DateTime<Utc>) -> Self {
        const MARK: &str = "@@IDENT@@";
        let x = fresh_alert(MARK, now);
        let (head, tail) = x.split_once(MARK).expect("identifier marked");
        Self {
            head: head.into(),
            tail: tail.into(),
            key: key(),
            next: AtomicU64::new(0),
        }
    }

    fn xml(&self, n: u64) -> String {
        format!("{}BENCH-{n:010}{}", self.head, self.tail)
    }

    /// `count` envelopes never handed out before, signed on every core
    /// (outside the timed part).
    fn take(&self, count: u64) -> Vec<Vec<u8>> {
        let first = self.next.fetch_add(count, Ordering::Relaxed);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let per = count.div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let parts: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = (first + t * per).min(first + count);
                    let hi = (lo + per).min(first + count);
                    s.spawn(move || {
                        (lo..hi)
                            .map(|n| sign1(self.xml(n).as_bytes(), KID, &self.key).expect("sign"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("signing thread"))
                .collect()
        })
    }
}

/// Submit every envelope with `IN_FLIGHT` tasks running at once (each its
/// own task, as the QUIC server spawns one per stream); returns the time
/// from the first spawn to the last receipt. Panics unless every receipt
/// says accepted, so the bench only counts real work.
async fn submit_all<F, Fut>(envs: Vec<Vec<u8>>, submit: F) -> Duration
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: Future<Output = Receipt> + Send + 'static,
{
    let mut envs = envs.into_iter();
    let mut set = JoinSet::new();
    let t0 = Instant::now();
    for e in envs.by_ref().take(IN_FLIGHT) {
        set.spawn(submit(e));
    }
    while let Some(r) = set.join_next().await {
        match r.expect("submit task") {
            Receipt::Accepted { .. } => {}
            other => panic!("expected an accepted receipt, got {other:?}"),
        }
        if let Some(e) = envs.next() {
            set.spawn(submit(e));
        }
    }
    t0.elapsed()
}

/// Wait (untimed) until no journaled alert is still `Active`: each accepted
/// alert's fan-out ends with one more durable commit (its state), which may
/// lag behind the receipts. Prints the backlog so a run shows the lag.
fn settle(journal: &Journal, after: &str) {
    let active = || {
        journal
            .alerts(usize::MAX)
            .expect("alerts")
            .iter()
            .filter(|a| a.state == AlertState::Active)
            .count()
    };
    let (t0, backlog) = (Instant::now(), active());
    while active() > 0 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "after {after}: {backlog} accepted alerts were still waiting for their completion \
         commit; {} left after {:.2?}",
        active(),
        t0.elapsed()
    );
}

fn verify_parse(c: &mut Criterion, alerts: &Alerts, dir: &Path) {
    // As `Daemon::start` builds it.
    let s = settings(dir);
    let geocodes = Arc::new(GeocodeTable::embedded());
    let registry = Registry::from_settings(&s.authorities, &geocodes, Path::new("."))
        .expect("authority registry");
    let verifier = Verifier::new(
        Arc::new(registry),
        geocodes,
        &s.standards,
        s.policy.clone(),
        s.ingest.max_envelope_bytes,
    )
    .expect("verifier");
    let env = alerts.take(1).pop().expect("one envelope");
    let xml = Envelope::decode(&env).expect("decodes").payload().to_vec();
    let vk = key().verifying_key();
    let limits = CapLimits {
        max_bytes: MAX_ENVELOPE_BYTES,
        ..CapLimits::default()
    };
    let v = verifier.verify(&env, Utc::now()).expect("sample verifies");
    println!(
        "verify_parse: envelope {} bytes, CAP {} bytes, {} info blocks, alert {}",
        env.len(),
        xml.len(),
        v.alert.infos.len(),
        v.alert_id
    );

    let mut g = c.benchmark_group("verify_parse");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    g.bench_function("verifier_verify", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&env), Utc::now())
                .expect("verifies")
        })
    });
    g.bench_function("cose_decode_ed25519_verify_strict", |b| {
        b.iter(|| {
            let e = Envelope::decode(black_box(&env)).expect("decodes");
            assert!(e.verify(&e.signers()[0], &vk));
            e
        })
    });
    g.bench_function("cose_decode", |b| {
        b.iter(|| Envelope::decode(black_box(&env)).expect("decodes"))
    });
    g.bench_function("cap_parse", |b| {
        b.iter(|| cap::parse(black_box(&xml), &limits).expect("parses"))
    });
    g.finish();
}

fn end_to_end(c: &mut Criterion, alerts: &Alerts, dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let daemon = rt
        .block_on(Daemon::start(settings(dir), Extras::default()))
        .expect("daemon starts");
    let pipeline = daemon.pipeline.clone();
    let journal = pipeline.journal().clone();
    println!(
        "daemon: journal in {}, QUIC ingest on {}",
        dir.display(),
        daemon.ingest_addr
    );

    let mut g = c.benchmark_group("ingest");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(1));

    g.bench_function("submit_group_commit", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let envs = alerts.take(iters);
            let p = pipeline.clone();
            async move {
                submit_all(envs, move |e| {
                    let p = p.clone();
                    async move { p.submit(&e).await }
                })
                .await
            }
        })
    });

    settle(&journal, "submit_group_commit");

    let client = rt.block_on(async {
        let roots = tocsin::tls::load_certs(&dir.join("dev/cert.pem")).expect("dev cert");
        let tls = tocsin::tls::client_config(roots, None).expect("client tls");
        IngestClient::connect(daemon.ingest_addr, "localhost", tls)
            .await
            .expect("QUIC connect")
    });
    let client = Arc::new(client);
    g.bench_function("quic_roundtrip", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let envs = alerts.take(iters);
            let cl = client.clone();
            async move {
                submit_all(envs, move |e| {
                    let cl = cl.clone();
                    async move { cl.submit(&e).await.expect("QUIC stream") }
                })
                .await
            }
        })
    });
    g.finish();
    settle(&journal, "quic_roundtrip");

    // Where the time went: alerts per group commit and fsync latency.
    let text = daemon.metrics.encode();
    let metric = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let alerts_in = journal.alert_count().expect("alert count") as f64;
    let commits = metric("tocsin_journal_commit_seconds_count");
    let commit_secs = metric("tocsin_journal_commit_seconds_sum");
    println!(
        "journal: {alerts_in} alerts accepted in {commits} group commits \
         ({:.1} alerts per commit, mean commit {:.2} ms)",
        alerts_in / commits,
        commit_secs / commits * 1e3
    );
    if let Ok(client) = Arc::try_unwrap(client) {
        rt.block_on(client.close());
    }
    rt.block_on(daemon.shutdown());
}

/// What the pipeline hands the group committer for envelope `env`, number `n`.
fn new_alert(n: u64, env: &Arc<[u8]>, now: DateTime<Utc>) -> NewAlert {
    NewAlert {
        alert_id: format!("police.gz@example.gov.cn,JOURNAL-{n:010},{}", cap_time(now)),
        receipt: format!("bench-receipt-{n:010}"),
        authority: "gz".into(),
        digest: format!("{n:064x}"),
        envelope: env.clone(),
        accepted_at: now,
        expires: Some(now + chrono::Duration::hours(24)),
        msg_type: MsgType::Alert,
        status: "Actual".into(),
        references: Vec::new(),
        targeted: BTreeMap::from([("feed".to_string(), 0)]),
        expansion: None,
    }
}

/// Commit `alerts` in groups of `group`; returns their sequence numbers.
fn commit_groups(j: &Journal, alerts: &[NewAlert], group: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(alerts.len());
    for chunk in alerts.chunks(group) {
        for o in j.commit_alerts(chunk).expect("durable commit") {
            match o {
                CommitOutcome::Accepted(rec) => seqs.push(rec.seq),
                other => panic!("expected accepted, got {other:?}"),
            }
        }
    }
    seqs
}

fn journal(c: &mut Criterion, alerts: &Alerts, dir: &Path) {
    let j = Journal::open(&dir.join("journal-only")).expect("journal");
    let env: Arc<[u8]> = alerts.take(1).pop().expect("one envelope").into();
    let now = Utc::now();
    let mut next = 0u64;
    let mut batch = |count: u64| {
        let first = next;
        next += count;
        (first..next)
            .map(|n| new_alert(n, &env, now))
            .collect::<Vec<_>>()
    };

    let mut g = c.benchmark_group("journal");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    g.bench_function("commit_alerts_group_of_64", |b| {
        b.iter_custom(|iters| {
            let new = batch(iters);
            let t0 = Instant::now();
            commit_groups(&j, &new, IN_FLIGHT);
            t0.elapsed()
        })
    });
    g.bench_function("set_state_single_commit", |b| {
        b.iter_custom(|iters| {
            let seqs = commit_groups(&j, &batch(iters), 256);
            let t0 = Instant::now();
            for s in seqs {
                j.set_state(s, AlertState::Completed)
                    .expect("durable commit");
            }
            t0.elapsed()
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    // Under the target directory (on the project's disk, never a tmpfs /tmp)
    // so durable commits really reach the device.
    let dir = tempfile::Builder::new()
        .prefix("ingest-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let alerts = Alerts::new(Utc::now());
    verify_parse(c, &alerts, dir.path());
    journal(c, &alerts, dir.path());
    end_to_end(c, &alerts, dir.path());
}

criterion_group!(benches, bench);
criterion_main!(benches);
