//! Dispatch bench (DESIGN §6, §10): 1,000,000 planned deliveries of one
//! alert into a no-op channel. A deterministic synthetic audience of 1 M FCM
//! subscribers (Pearl River Delta spread) is built once; a 2,000 km circle
//! around Guangzhou selects all of them; each iteration starts a fresh alert
//! (new journal sequence number, so cursors never collide) through the real
//! `Dispatcher` — batching, token bucket, permits, progress counters,
//! metrics, cursor board committing to a redb journal in a temporary
//! directory — into a `SinkChannel` that accepts everything, and waits until
//! the job reports done. Two settings: 1,024 per batch × 8 batches in
//! flight, and the shipped defaults (512 × 4). Goal: ≥ 2 M deliveries/s on a
//! 2-core machine.
//! Run: `cargo bench --bench dispatch`. Never touches the network.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tocsin::alert::cap::{self, CapLimits, MsgType, Point, Status};
use tocsin::channel::sink::SinkChannel;
use tocsin::channel::{AlertContent, Channel, Reach, SubscriberKind};
use tocsin::config::DispatchSettings;
use tocsin::dispatch::{ChannelLimits, Dispatcher, Plan};
use tocsin::journal::{GroupCommitter, Journal};
use tocsin::metrics::Metrics;
use tocsin::subscribers::{Audience, AudienceLoader};
use tocsin::target::synthetic::synthetic_points;
use tocsin::target::Region;

/// Subscribers in the audience, all selected: deliveries per iteration.
const N: u32 = 1_000_000;
const SEED: u64 = 20_240_601;
const SAMPLE: &str = include_str!("../config/samples/missing-child.xml");

/// 1 M FCM subscribers; every fifth prefers English.
fn audience() -> Audience {
    let points = synthetic_points(N as usize, SEED);
    let mut l = AudienceLoader::with_capacity(N as usize);
    let mut addr = String::with_capacity(32);
    for (i, (lat, lon)) in points.into_iter().enumerate() {
        let id = i as u32;
        addr.clear();
        use std::fmt::Write as _;
        let _ = write!(addr, "bench-fcm-token-{id:08}");
        let lang = if id % 5 == 0 { "en-US" } else { "zh-CN" };
        l.add(id, SubscriberKind::Fcm, &addr, lat, lon, lang);
    }
    assert_eq!(l.skipped(), 0, "synthetic points are all valid");
    l.build()
}

/// The alert every iteration fans out; only `seq` (and the ids) change.
fn content(seq: u64, alert: &cap::Alert, envelope: &Arc<[u8]>) -> Arc<AlertContent> {
    Arc::new(AlertContent {
        seq,
        alert_id: format!("bench,{seq},now"),
        receipt: format!("bench-receipt-{seq}"),
        envelope: envelope.clone(),
        alert: alert.clone(),
        accepted_at: Instant::now(),
        expires: None,
    })
}

/// Start one alert and wait until its job is done; returns the time taken.
async fn fan_out(d: &Dispatcher, c: Arc<AlertContent>, plan: Plan) -> Duration {
    let t0 = Instant::now();
    let progress = d.start(c, plan, &BTreeMap::new(), None);
    // The bench future runs on criterion's thread, outside the two runtime
    // workers, so a 1 ms sleep (not a spin) keeps it off the CPUs the
    // dispatcher needs. It adds at most ~1 ms to a 60–130 ms iteration, so
    // the figure errs low by 1–2 % at worst.
    while !progress.is_done() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t0.elapsed()
}

/// A dispatcher with `settings` whose only channel is a fresh no-op sink.
struct Rig {
    dispatcher: Dispatcher,
    sink: Arc<SinkChannel>,
    _dir: tempfile::TempDir,
}

fn rig(rt: &tokio::runtime::Runtime, audience: &Arc<Audience>, settings: DispatchSettings) -> Rig {
    // Under the target directory: cursor commits are durable, keep them off tmpfs.
    let dir = tempfile::Builder::new()
        .prefix("dispatch-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let journal = Arc::new(Journal::open(dir.path()).expect("journal"));
    let sink = Arc::new(SinkChannel::new(
        "fcm",
        Reach::Subscribers(SubscriberKind::Fcm),
        N as usize,
    ));
    // No quota: the bench measures the dispatcher, not a provider's cap.
    let limits = ChannelLimits {
        concurrency: 1 << 24,
        rate_per_sec: 1e12,
        burst: u32::MAX,
    };
    // `Dispatcher::new` spawns the cursor committer: needs the runtime.
    let _guard = rt.enter();
    let dispatcher = Dispatcher::new(
        vec![(sink.clone() as Arc<dyn Channel>, limits)],
        Arc::new(Vec::new()),
        audience.clone(),
        journal.clone(),
        GroupCommitter::start(journal, 64, Metrics::new()),
        Metrics::new(),
        settings,
    );
    Rig {
        dispatcher,
        sink,
        _dir: dir,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let t = Instant::now();
    let audience = Arc::new(audience());
    println!(
        "audience: {} FCM subscribers built in {:.2?}",
        audience.channel(SubscriberKind::Fcm).len(),
        t.elapsed()
    );
    let centre = Point {
        lat: 23.1,
        lon: 113.3,
    };
    let region = Region::circle(centre, 2000.0).expect("valid circle");
    let alert = cap::parse(SAMPLE.as_bytes(), &CapLimits::default()).expect("sample parses");
    let envelope: Arc<[u8]> = Arc::from(SAMPLE.as_bytes());

    let variants = [
        (
            "1M_noop_batch1024_inflight8",
            DispatchSettings {
                batch_size: 1024,
                max_in_flight_batches: 8,
                ..DispatchSettings::default()
            },
        ),
        ("1M_noop_shipped_defaults", DispatchSettings::default()),
    ];
    let mut group = c.benchmark_group("dispatch");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(u64::from(N)));
    for (name, settings) in variants {
        println!(
            "{name}: batch_size {}, max_in_flight_batches {}",
            settings.batch_size, settings.max_in_flight_batches
        );
        let Rig {
            dispatcher, sink, ..
        } = &rig(&rt, &audience, settings);
        let plan = dispatcher.plan(
            &tocsin::dispatch::Scope::area(Some(&region)),
            Status::Actual,
            MsgType::Alert,
            tocsin::authority::policy::FollowUp::ALL,
        );
        assert_eq!(plan.total(), u64::from(N), "the circle covers everyone");

        // One checked run first: every planned delivery reaches the sink once.
        let mut seq = 1u64;
        rt.block_on(fan_out(
            dispatcher,
            content(seq, &alert, &envelope),
            plan.clone(),
        ));
        assert_eq!(sink.total(), u64::from(N), "one delivery per recipient");
        assert_eq!(sink.once_and_repeated(), (u64::from(N), 0));

        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let first = seq + 1;
                seq += iters;
                let (d, plan, alert, envelope) = (dispatcher, &plan, &alert, &envelope);
                async move {
                    let mut total = Duration::ZERO;
                    for s in first..first + iters {
                        // Content and plan are built before the clock starts.
                        let (c, p) = (content(s, alert, envelope), plan.clone());
                        total += fan_out(d, c, p).await;
                    }
                    total
                }
            })
        });
        assert_eq!(
            sink.total(),
            seq * u64::from(N),
            "only whole alerts delivered"
        );
        rt.block_on(dispatcher.shutdown());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
