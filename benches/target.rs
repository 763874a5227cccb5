//! Targeting bench (DESIGN §10): `select` over a deterministic synthetic
//! audience of 10 M subscribers (20 Chinese city clusters + a uniform
//! background over eastern China), for 50/100/200 km circles and a
//! 1,000-vertex polygon around Guangzhou. Goals: 50 km ≤ 10 ms,
//! 200 km ≤ 50 ms, 1,000-vertex polygon ≤ 100 ms. Also times the index build
//! once. Run: `cargo bench --bench target`. Never touches the network or disk.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tocsin::alert::cap::Point;
use tocsin::target::geodesy::destination;
use tocsin::target::synthetic::{cells_of, index_cells, synthetic_points_in, Spread};
use tocsin::target::Region;

const N: usize = 10_000_000;
const GUANGZHOU: Point = Point {
    lat: 23.1291,
    lon: 113.2644,
};

/// A wiggly 1,000-vertex ring about 150 km across, centred on Guangzhou.
fn polygon_1000() -> Vec<Point> {
    let n = 1000;
    let mut ring: Vec<Point> = (0..n)
        .map(|i| {
            let t = i as f64 / n as f64 * std::f64::consts::TAU;
            let r = 68.0 + 6.0 * (7.0 * t).sin() + 2.5 * (31.0 * t).sin() + 0.8 * (173.0 * t).sin();
            let (lat, lon) = destination(GUANGZHOU.lat, GUANGZHOU.lon, t.to_degrees(), r);
            Point { lat, lon }
        })
        .collect();
    ring.push(ring[0]);
    ring
}

fn bench(c: &mut Criterion) {
    let t = Instant::now();
    let points = synthetic_points_in(Spread::EasternChina, N, 20_240_601);
    let generated = t.elapsed();
    let t = Instant::now();
    let cells = cells_of(&points);
    let converted = t.elapsed();
    drop(points);
    let t = Instant::now();
    let audience = index_cells(&cells);
    let built = t.elapsed();
    drop(cells);
    println!(
        "audience: {} subscribers; generated in {generated:.2?}, lat/lon -> res-9 cell in {converted:.2?} \
         (all cores), push_cell + build (sort) in {built:.2?}",
        audience.len()
    );

    let regions = [
        ("circle_50km", Region::circle(GUANGZHOU, 50.0)),
        ("circle_100km", Region::circle(GUANGZHOU, 100.0)),
        ("circle_200km", Region::circle(GUANGZHOU, 200.0)),
        ("polygon_1000v", Region::from_polygons(&[polygon_1000()])),
    ];
    let mut group = c.benchmark_group("select_10M");
    group
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, region) in regions {
        let Ok(region) = region else {
            eprintln!("{name}: invalid region, skipped");
            continue;
        };
        let s = audience.select(&region);
        println!(
            "{name}: {} subscribers selected in {} ranges",
            s.count(),
            s.ranges.len()
        );
        group.bench_function(name, |b| {
            b.iter(|| black_box(audience.select(black_box(&region))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
