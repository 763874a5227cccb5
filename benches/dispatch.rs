//! Dispatch bench (DESIGN §6, §10): 1,000,000 planned deliveries of one
//! alert into a no-op channel. A deterministic synthetic audience of 1 M FCM
//! subscribers (Pearl River Delta spread) is built once; a 2,000 km circle
//! around Guangzhou selects all of them; each iteration starts a fresh alert
//! (new journal sequence number, so cursors never collide) through the real
//! `Dispatcher` — batching, token bucket, permits, progress counters,
//! metrics, cursor board committing to a redb journal in a temporary
//! directory — into a `SinkChannel` that accepts everything, and waits until
//! the job reports done. Goal: ≥ 2 M deliveries/s on a 2-core machine.
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
use tocsin::journal::Journal;
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
    let progress = d.start(c, plan, &BTreeMap::new());
    // The bench future runs on criterion's thread, outside the two runtime
    // workers, so a 1 ms sleep (not a spin) keeps it off the CPUs the
    // dispatcher needs; the error is ≤ 1 ms on a ~0.5 s iteration.
    while !progress.is_done() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t0.elapsed()
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
    let limits = ChannelLimits {
        concurrency: 1 << 24,
        rate_per_sec: 1e12,
        burst: u32::MAX,
    };
    let settings = DispatchSettings {
        batch_size: 1024,
        max_in_flight_batches: 8,
        ..DispatchSettings::default()
    };
    let dispatcher = {
        // `Dispatcher::new` spawns the cursor committer: needs the runtime.
        let _guard = rt.enter();
        Dispatcher::new(
            vec![(sink.clone() as Arc<dyn Channel>, limits)],
            Arc::new(Vec::new()),
            audience,
            journal,
            Metrics::new(),
            settings,
        )
    };

    let centre = Point {
        lat: 23.1,
        lon: 113.3,
    };
    let region = Region::circle(centre, 2000.0).expect("valid circle");
    let plan = dispatcher.plan(Some(&region), Status::Actual, MsgType::Alert);
    assert_eq!(plan.total(), u64::from(N), "the circle covers everyone");
    println!(
        "plan: {} deliveries, planned in {:.2} ms",
        plan.total(),
        plan.seconds * 1e3
    );

    let alert = cap::parse(SAMPLE.as_bytes(), &CapLimits::default()).expect("sample parses");
    let envelope: Arc<[u8]> = Arc::from(SAMPLE.as_bytes());
    let mut seq = 0u64;

    // One checked run first: every planned delivery reaches the sink once.
    seq += 1;
    let before = sink.total();
    rt.block_on(fan_out(
        &dispatcher,
        content(seq, &alert, &envelope),
        plan.clone(),
    ));
    assert_eq!(
        sink.total() - before,
        u64::from(N),
        "one delivery per recipient"
    );
    assert_eq!(sink.once_and_repeated(), (u64::from(N), 0));

    let mut group = c.benchmark_group("dispatch");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(u64::from(N)));
    group.bench_function("1M_deliveries_noop_channel", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let first = seq + 1;
            seq += iters;
            let (d, plan, alert, envelope) = (&dispatcher, &plan, &alert, &envelope);
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
    group.finish();

    let delivered = sink.total();
    assert_eq!(delivered % u64::from(N), 0, "only whole alerts delivered");
    println!("sink: {delivered} deliveries over {seq} alerts");
    rt.block_on(dispatcher.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
