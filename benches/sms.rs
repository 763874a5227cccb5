//! SMS bench (issue 4): the text path and the SMPP path.
//! - `sms_text`: render the sample missing-child alert's SMS (template, fit to two
//!   parts, GSM-7 or UCS-2 coding, concatenation UDH) in Chinese and English, and
//!   segment a long mixed text — per message, as the channel does once per language per
//!   batch.
//! - `smpp`: submits per second through the real `SmppTransport` (rusmppc, 4 binds ×
//!   window 64) to the in-process scripted SMSC on loopback, 10,000 two-part Chinese
//!   messages per iteration (20,000 `submit_sm` round trips), 512 sent concurrently.
//!
//! Run: `cargo bench --bench sms`. Never leaves the machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures::stream::{self, StreamExt};
use tocsin::channel::sms::render;
use tocsin::channel::sms::smpp::SmppTransport;
use tocsin::channel::sms::text;
use tocsin::channel::sms::SmsTransport;
use tocsin::channel::{AlertContent, Outcome};
use tocsin::config::SmscSettings;
use tocsin::demo::sample::fresh_alert;
use tocsin::metrics::Metrics;
use tocsin::testkit::smsc::SmscServer;

const MESSAGES: usize = 10_000;
const CONCURRENT: usize = 512;

fn content() -> AlertContent {
    AlertContent::from_xml(1, &fresh_alert("bench-sms", Utc::now())).expect("sample parses")
}

fn text_path(c: &mut Criterion) {
    let alert = content();
    let mut g = c.benchmark_group("sms_text");
    g.throughput(Throughput::Elements(1));
    for lang in ["zh-CN", "en-US"] {
        let info = alert.info_for(lang);
        g.bench_function(format!("render_{lang}"), |b| {
            b.iter(|| {
                let m = render::render(&alert, info, "https://tocsin.example", 7, 2)
                    .expect("fits two parts");
                std::hint::black_box(m.parts.len())
            })
        });
    }
    let long = "Missing child, last seen near the park at 14:00 — 失踪儿童 {blue coat} ".repeat(12);
    g.bench_function("encode_long_mixed", |b| {
        b.iter(|| {
            let parts = text::encode(std::hint::black_box(&long), 3, 20).expect("fits");
            std::hint::black_box(parts.len())
        })
    });
    g.finish();
}

fn smpp_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let alert = content();
    let message =
        render::render(&alert, alert.info_for("zh-CN"), "https://x", 1, 2).expect("fits two parts");
    assert_eq!(message.parts.len(), 2);
    let (smsc, transport) = rt.block_on(async {
        let smsc = SmscServer::start(false).await.expect("smsc");
        let settings = SmscSettings {
            name: "bench".into(),
            host: "127.0.0.1".into(),
            port: smsc.addr().port(),
            system_id: "bench".into(),
            binds: 4,
            window: 64,
            rate_per_sec: 10_000_000.0,
            delivery_receipts: false,
            ..SmscSettings::default()
        };
        let t = SmppTransport::start(
            &[(settings, String::new())],
            "TOCSIN",
            &[None],
            Metrics::new(),
        )
        .expect("transport");
        let started = Instant::now();
        while t.binds_up() < 4 {
            assert!(started.elapsed() < Duration::from_secs(10), "binds");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (smsc, Arc::new(t))
    });
    let numbers: Vec<String> = (0..MESSAGES).map(|i| format!("+86139{i:08}")).collect();
    let mut g = c.benchmark_group("smpp");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.throughput(Throughput::Elements(
        (MESSAGES * message.parts.len()) as u64,
    ));
    g.bench_function("submit_sm_4x64", |b| {
        b.to_async(&rt).iter(|| {
            let (t, m, numbers) = (transport.clone(), &message, &numbers);
            async move {
                let delivered = stream::iter(numbers.iter())
                    .map(|n| {
                        let t = t.clone();
                        async move { t.send(n, m).await }
                    })
                    .buffer_unordered(CONCURRENT)
                    .filter(|o| std::future::ready(*o == Outcome::Delivered))
                    .count()
                    .await;
                assert_eq!(delivered, MESSAGES);
            }
        })
    });
    g.finish();
    let accepted = smsc.state().accepted();
    rt.block_on(transport.close());
    assert!(accepted as usize >= MESSAGES * 2);
}

criterion_group!(benches, text_path, smpp_path);
criterion_main!(benches);
