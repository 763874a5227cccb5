//! The properties the fuzz targets check, one function per target, shared by
//! the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, instrumented, long runs)
//! and the CI smoke test (`tests/fuzz_smoke.rs`: the committed seeds and
//! seeded mutations of them, uninstrumented). Each must hold for any bytes:
//! no panic, and the stated properties.
#![allow(dead_code)]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use ed25519_dalek::SigningKey;
use tocsin::alert::cap::{parse, to_xml, Area, CapLimits, Circle, Point, ValuePair};
use tocsin::alert::envelope::Envelope;
use tocsin::target::{GeocodeTable, Region};

/// `envelope`: arbitrary bytes into the COSE envelope decoder, then, for what
/// decodes, the signer list, the payload and one strict verification against
/// a fixed key (truncated CBOR, huge length prefixes, wrong tags, odd headers).
pub fn envelope(data: &[u8]) {
    let Ok(env) = Envelope::decode(data) else {
        return;
    };
    let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
    let _ = env.payload().len();
    for s in env.signers() {
        assert!(!s.kid.is_empty() && s.kid.len() <= tocsin::alert::envelope::MAX_KID_BYTES);
        let _ = env.verify(s, &key);
    }
}

/// `cap`: arbitrary bytes into the hardened CAP 1.2 parser with the default
/// `CapLimits`, and every parsed alert back out through the writer and in
/// again (the writer's output must parse to the same alert).
pub fn cap(data: &[u8]) {
    let limits = CapLimits::default();
    let Ok(alert) = parse(data, &limits) else {
        return;
    };
    let _ = alert.alert_id();
    // A document we accepted, written by us, must read back the same.
    let xml = to_xml(&alert);
    let back = parse(xml.as_bytes(), &limits);
    assert_eq!(back.as_ref().ok(), Some(&alert), "round trip: {back:?}");
}

/// `area`: structured CAP areas (polygons, circles, geocodes, with raw `f64`s
/// — NaN, infinities, out-of-range — as well as in-range coordinates) built
/// from the bytes as libFuzzer's typed targets do, compiled by
/// `Region::from_areas` against the embedded geocode table; for every region
/// that compiles, `contains`, `is_within`, `intersects` and
/// `approx_area_km2` on it. The CAP parser already refuses out-of-range
/// numbers; this checks the geometry does not rely on that.
pub fn area(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let (geocodes, _) = table();
    let Ok(region) = Region::from_areas(&build(&input.areas), geocodes) else {
        return;
    };
    for p in input.probes.iter().take(64) {
        let _ = region.contains(p.point());
    }
    let area = region.approx_area_km2();
    assert!(!area.is_nan(), "area of a valid region is a number");
    let jurisdiction = Region::circle(
        Point {
            lat: 23.1291,
            lon: 113.2644,
        },
        400.0,
    )
    .expect("a fixed valid circle");
    let _ = region.is_within(&jurisdiction);
    let _ = region.is_within(&region);
    let _ = region.intersects(&jurisdiction);
    if let Ok(other) = Region::from_areas(&build(&input.other), geocodes) {
        let _ = region.intersects(&other);
        let _ = other.is_within(&region);
    }
}

/// A coordinate: raw bits (mostly invalid) or a grid point (always valid).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Coord {
    Raw(f64, f64),
    Grid(u16, u16),
    /// Near Guangzhou, so shapes overlap the probes and the jurisdiction.
    Local(i8, i8),
}

impl Coord {
    fn point(self) -> Point {
        match self {
            Coord::Raw(lat, lon) => Point { lat, lon },
            Coord::Grid(a, b) => Point {
                lat: -90.0 + 180.0 * f64::from(a) / f64::from(u16::MAX),
                lon: -180.0 + 360.0 * f64::from(b) / f64::from(u16::MAX),
            },
            Coord::Local(a, b) => Point {
                lat: 23.1 + f64::from(a) / 40.0,
                lon: 113.3 + f64::from(b) / 40.0,
            },
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Radius {
    Raw(f64),
    Km(u16),
}

impl Radius {
    fn km(self) -> f64 {
        match self {
            Radius::Raw(r) => r,
            Radius::Km(k) => f64::from(k) / 16.0,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Geocode {
    /// The n-th entry of the table (by sorted key), possibly with spaces.
    Known(u8, bool),
    Any(String, String),
}

#[derive(Arbitrary, Debug)]
struct AreaIn {
    polygons: Vec<Vec<Coord>>,
    circles: Vec<(Coord, Radius)>,
    geocodes: Vec<Geocode>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    areas: Vec<AreaIn>,
    probes: Vec<Coord>,
    other: Vec<AreaIn>,
}

fn table() -> &'static (GeocodeTable, Vec<(String, String)>) {
    static T: OnceLock<(GeocodeTable, Vec<(String, String)>)> = OnceLock::new();
    T.get_or_init(|| {
        let t = GeocodeTable::embedded();
        let mut keys: Vec<_> = t
            .entries()
            .map(|e| (e.value_name.clone(), e.value.clone()))
            .collect();
        keys.sort();
        (t, keys)
    })
}

/// Bounds close to the CAP limits, so a run measures correctness, not size.
const MAX_SHAPES: usize = 16;
const MAX_VERTICES: usize = 1000;

fn build(areas: &[AreaIn]) -> Vec<Area> {
    let (_, keys) = table();
    areas
        .iter()
        .take(MAX_SHAPES)
        .map(|a| Area {
            area_desc: String::new(),
            polygons: a
                .polygons
                .iter()
                .take(MAX_SHAPES)
                .map(|p| p.iter().take(MAX_VERTICES).map(|c| c.point()).collect())
                .collect(),
            circles: a
                .circles
                .iter()
                .take(MAX_SHAPES)
                .map(|(c, r)| Circle {
                    center: c.point(),
                    radius_km: r.km(),
                })
                .collect(),
            geocodes: a
                .geocodes
                .iter()
                .take(64)
                .map(|g| match g {
                    Geocode::Known(i, pad) => {
                        let (n, v) = &keys[usize::from(*i) % keys.len().max(1)];
                        let sp = if *pad { " " } else { "" };
                        ValuePair {
                            value_name: format!("{sp}{n}"),
                            value: format!("{v}{sp}"),
                        }
                    }
                    Geocode::Any(n, v) => ValuePair {
                        value_name: n.clone(),
                        value: v.clone(),
                    },
                })
                .collect(),
            altitude: None,
            ceiling: None,
        })
        .collect()
}
