//! Tests of the audience index: the descendant-run and cap bounds the fast
//! path relies on, and `select` equal to a brute-force scan.

use super::*;
use crate::target::geodesy::{destination, haversine_km};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn centre(c: u64) -> Point {
    let ll = LatLng::from(CellIndex::try_from(c).unwrap());
    Point {
        lat: ll.lat(),
        lon: ll.lng(),
    }
}

/// The reference: test every subscriber's cell centre.
fn brute(aud: &ChannelAudience, region: &Region) -> Selection {
    let mut out = Selection::default();
    let mut memo: Option<(u64, bool)> = None;
    for (i, &c) in aud.cells().iter().enumerate() {
        let inside = match memo {
            Some((mc, v)) if mc == c => v,
            _ => region.contains(centre(c)),
        };
        memo = Some((c, inside));
        if inside {
            out.push(i as u32..i as u32 + 1);
        }
    }
    out
}

/// Subscribers around (lat, lon): dense clusters (many per cell), sparse
/// clusters and a uniform spread over ~2 × `reach_km`.
fn audience_near(lat: f64, lon: f64, reach_km: f64, n: usize, seed: u64) -> ChannelAudience {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut b = AudienceBuilder::with_capacity(n);
    let centres: Vec<(f64, f64, f64)> = (0..6)
        .map(|_| {
            let (la, lo) = destination(
                lat,
                lon,
                rng.gen_range(0.0..360.0),
                rng.gen_range(0.0..reach_km * 1.2),
            );
            (la, lo, [0.3, 3.0, 20.0][rng.gen_range(0..3)])
        })
        .collect();
    let mut id = 0u32;
    while (id as usize) < n {
        let (clat, clon, spread) = if rng.gen_bool(0.6) {
            centres[rng.gen_range(0..centres.len())]
        } else {
            (lat, lon, reach_km * 2.0)
        };
        let dist = if spread > reach_km {
            rng.gen_range(0.0..spread)
        } else {
            spread * rng.gen::<f64>().sqrt() * 2.0
        };
        let (la, lo) = destination(clat, clon, rng.gen_range(0.0..360.0), dist);
        if b.push(id, la, lo).is_ok() {
            id += 1;
        }
    }
    b.build()
}

#[test]
fn descendant_bounds_hold_every_descendant() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..200 {
        let ll = LatLng::new(rng.gen_range(-89.0..89.0), rng.gen_range(-180.0..180.0)).unwrap();
        let r = rng.gen_range(4..=9u8);
        let cell = ll.to_cell(Resolution::try_from(r).unwrap());
        let (lo, hi) = descendant_bounds(u64::from(cell), r);
        for d in cell.children(INDEX_RESOLUTION) {
            assert!((lo..=hi).contains(&u64::from(d)));
        }
        // Neighbours' descendants are outside the bounds.
        for n in cell.grid_disk::<Vec<_>>(1) {
            if n == cell {
                continue;
            }
            let c = n.center_child(INDEX_RESOLUTION).unwrap();
            assert!(!(lo..=hi).contains(&u64::from(c)));
        }
    }
}

/// cap(c) ⊇ cap(child) for every child, and res-8 caps hold their res-9
/// children's centres: by induction every cap holds all res-9 descendant centres.
fn check_cap_nesting(cell: CellIndex) {
    let cap = cell_cap(u64::from(cell)).unwrap();
    let res = cell.resolution();
    let Some(child_res) = res.succ() else { return };
    for ch in cell.children(child_res) {
        let ccap = cell_cap(u64::from(ch)).unwrap();
        let d = haversine_km(cap.lat, cap.lon, ccap.lat, ccap.lon);
        let need = if child_res == INDEX_RESOLUTION {
            d
        } else {
            d + ccap.radius_km
        };
        assert!(
            need <= cap.radius_km,
            "{cell} child {ch}: {need} > {}",
            cap.radius_km
        );
    }
}

#[test]
fn caps_nest_for_all_coarse_cells_and_pentagons() {
    for base in CellIndex::base_cells() {
        check_cap_nesting(base);
        for c1 in base.children(Resolution::One) {
            check_cap_nesting(c1);
            for c2 in c1.children(Resolution::Two) {
                check_cap_nesting(c2);
            }
        }
    }
    for r in 0..=8u8 {
        for p in Resolution::try_from(r).unwrap().pentagons() {
            check_cap_nesting(p);
        }
    }
}

#[test]
fn caps_nest_for_random_fine_cells() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for _ in 0..20_000 {
        let ll = LatLng::new(rng.gen_range(-90.0..90.0), rng.gen_range(-180.0..180.0)).unwrap();
        let r = rng.gen_range(3..=8u8);
        check_cap_nesting(ll.to_cell(Resolution::try_from(r).unwrap()));
    }
}

#[test]
fn builder_rejects_bad_input_and_sorts() {
    let mut b = AudienceBuilder::with_capacity(4);
    assert!(b.push(1, 91.0, 0.0).is_err());
    assert!(b.push(1, 0.0, f64::NAN).is_err());
    assert!(b.push(1, 0.0, 181.0).is_err());
    assert!(b.push_cell(1, 0).is_err());
    let coarse = LatLng::new(23.0, 113.0).unwrap().to_cell(Resolution::Five);
    assert!(b.push_cell(1, u64::from(coarse)).is_err());
    let fine = LatLng::new(23.0, 113.0)
        .unwrap()
        .to_cell(Resolution::Twelve);
    b.push_cell(9, u64::from(fine)).unwrap();
    b.push(5, 23.0, 113.0).unwrap();
    b.push(3, 23.0, 113.0).unwrap();
    b.push(4, -33.9, 151.2).unwrap();
    let a = b.build();
    assert_eq!(a.len(), 4);
    let nine = u64::from(LatLng::new(23.0, 113.0).unwrap().to_cell(INDEX_RESOLUTION));
    assert!(a.cells().windows(2).all(|w| w[0] <= w[1]));
    let same: Vec<u32> = (0..4)
        .filter(|&i| a.cells()[i] == nine)
        .map(|i| a.ids()[i])
        .collect();
    assert_eq!(same, vec![3, 5]);
    let parent = u64::from(fine.parent(INDEX_RESOLUTION).unwrap());
    assert!((0..4).any(|i| a.key_at(i) == (parent, 9)));
    assert!(ChannelAudience::from_sorted(a.cells().to_vec(), a.ids().to_vec()).is_ok());
    let mut rev = a.cells().to_vec();
    rev.reverse();
    assert!(ChannelAudience::from_sorted(rev, a.ids().to_vec()).is_err());
}

#[test]
fn cursor_resumes_after_key() {
    let a = audience_near(23.0, 113.0, 20.0, 5_000, 3);
    for pos in [0usize, 1, 17, 2_500, 4_999] {
        assert_eq!(a.position_after(a.key_at(pos)), pos + 1);
    }
    // A key that is no longer in the index (the subscriber left).
    let (c, id) = a.key_at(100);
    let p = a.position_after((c, id.wrapping_sub(1)));
    assert!(p <= 100 && a.key_at(p) >= (c, id.wrapping_sub(1)));
    assert_eq!(a.position_after((0, 0)), 0);
    assert_eq!(a.position_after((u64::MAX, u32::MAX)), a.len());
}

#[test]
fn selection_difference_is_the_new_ring() {
    let a = audience_near(23.1291, 113.2644, 100.0, 50_000, 4);
    let c = Point {
        lat: 23.1291,
        lon: 113.2644,
    };
    let small = a.select(&Region::circle(c, 50.0).unwrap());
    let big = a.select(&Region::circle(c, 100.0).unwrap());
    let ring = big.difference(&small);
    assert_eq!(ring.count(), big.count() - small.count());
    assert!(ring.difference(&small) == ring && small.difference(&big).is_empty());
    for r in &ring.ranges {
        for p in r.clone() {
            let d = {
                let q = centre(a.cells()[p as usize]);
                haversine_km(q.lat, q.lon, c.lat, c.lon)
            };
            assert!(d > 50.0 && d <= 100.0);
        }
    }
}

#[test]
fn selection_intersection_is_both() {
    let a = audience_near(23.1291, 113.2644, 100.0, 50_000, 4);
    let c1 = Point {
        lat: 23.1291,
        lon: 113.2644,
    };
    let c2 = Point {
        lat: 23.5,
        lon: 113.6,
    };
    let x = a.select(&Region::circle(c1, 60.0).unwrap());
    let y = a.select(&Region::circle(c2, 60.0).unwrap());
    let both = x.intersection(&y);
    assert_eq!(both, y.intersection(&x));
    assert_eq!(both.count() + x.difference(&y).count(), x.count());
    let brute = (0..a.len())
        .filter(|&p| {
            let q = centre(a.cells()[p]);
            haversine_km(q.lat, q.lon, c1.lat, c1.lon) <= 60.0
                && haversine_km(q.lat, q.lon, c2.lat, c2.lon) <= 60.0
        })
        .count();
    assert!(brute > 0);
    assert_eq!(both.count(), brute);
    assert!(x.intersection(&Selection::default()).is_empty());
}

#[test]
fn empty_audience_and_far_region() {
    let r = Region::circle(Point { lat: 0.0, lon: 0.0 }, 10.0).unwrap();
    assert!(ChannelAudience::default().select(&r).is_empty());
    let a = audience_near(23.0, 113.0, 20.0, 2_000, 5);
    assert!(a.select(&r).is_empty());
}

#[test]
fn large_clustered_audience_matches_brute_force() {
    let pts = crate::target::synthetic::synthetic_points(200_000, 11);
    let a = crate::target::synthetic::index_points(&pts);
    let gz = Point {
        lat: 23.1291,
        lon: 113.2644,
    };
    for r in [1.0, 5.0, 50.0, 120.0] {
        let region = Region::circle(gz, r).unwrap();
        let s = a.select(&region);
        assert_eq!(s, brute(&a, &region), "radius {r}");
        assert!(s.count() > 0);
    }
}

fn star(lat: f64, lon: f64, radii: &[f64], phase: f64) -> Vec<Point> {
    let n = radii.len();
    let mut v: Vec<Point> = radii
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            let (la, lo) = destination(lat, lon, phase + 360.0 * i as f64 / n as f64, r);
            Point { lat: la, lon: lo }
        })
        .collect();
    v.push(v[0]);
    v
}

fn lon_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![-180.0..180.0f64, 178.0..180.0f64, -180.0..-178.0f64]
}
fn lat_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![-80.0..80.0f64, 70.0..89.9f64, -89.9..-70.0f64]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn select_equals_brute_force_for_circles(
        lat in lat_strategy(), lon in lon_strategy(), radius in 1.0..300.0f64,
        n in 20_000..60_000usize, seed in any::<u64>(),
    ) {
        let a = audience_near(lat, lon, radius, n, seed);
        let region = Region::circle(Point { lat, lon }, radius).unwrap();
        let s = a.select(&region);
        prop_assert_eq!(&s, &brute(&a, &region));
        prop_assert!(s.ranges.windows(2).all(|w| w[0].end < w[1].start));
    }

    #[test]
    fn select_equals_brute_force_for_polygons(
        lat in -80.0..80.0f64, lon in -175.0..175.0f64,
        radii in prop::collection::vec(5.0..150.0f64, 3..80), phase in 0.0..360.0f64,
        n in 20_000..60_000usize, seed in any::<u64>(),
    ) {
        let ring = star(lat, lon, &radii, phase);
        let region = match Region::from_polygons(&[ring]) {
            Ok(r) => r,
            // Only rings that wrap the antimeridian may be refused.
            Err(e) => { prop_assert_eq!(e.code(), "polygon_invalid"); return Ok(()); }
        };
        let reach = radii.iter().cloned().fold(0.0, f64::max);
        let a = audience_near(lat, lon, reach, n, seed);
        prop_assert_eq!(a.select(&region), brute(&a, &region));
    }

    #[test]
    fn select_equals_brute_force_for_unions(
        lat in -60.0..60.0f64, lon in -170.0..170.0f64, r1 in 1.0..80.0f64, r2 in 1.0..80.0f64,
        radii in prop::collection::vec(5.0..80.0f64, 3..20), seed in any::<u64>(),
    ) {
        let (la2, lo2) = destination(lat, lon, 45.0, r1);
        let region = Region::circle(Point { lat, lon }, r1).unwrap()
            .union(Region::circle(Point { lat: la2, lon: lo2 }, r2).unwrap())
            .union(Region::from_polygons(&[star(la2, lo2, &radii, 0.0)]).unwrap());
        let a = audience_near(lat, lon, 120.0, 30_000, seed);
        prop_assert_eq!(a.select(&region), brute(&a, &region));
    }
}

#[test]
fn antimeridian_polygons_are_rejected_but_circles_work() {
    let ring = star(65.0, 179.9, &[50.0; 8], 0.0);
    let err = Region::from_polygons(&[ring]).unwrap_err();
    assert_eq!(err.code(), "polygon_invalid");
    let region = Region::circle(
        Point {
            lat: 65.0,
            lon: 179.9,
        },
        80.0,
    )
    .unwrap();
    let a = audience_near(65.0, 179.9, 80.0, 40_000, 6);
    let s = a.select(&region);
    assert_eq!(s, brute(&a, &region));
    // Subscribers on both sides of ±180 are selected.
    let sides = s
        .ranges
        .iter()
        .flat_map(|r| r.clone())
        .map(|p| centre(a.cells()[p as usize]).lon > 0.0)
        .fold([false, false], |mut acc, east| {
            acc[usize::from(east)] = true;
            acc
        });
    assert_eq!(sides, [true, true]);
}

#[test]
fn polar_circle_matches_brute_force() {
    let region = Region::circle(
        Point {
            lat: 89.5,
            lon: 10.0,
        },
        150.0,
    )
    .unwrap();
    let a = audience_near(89.5, 10.0, 150.0, 40_000, 7);
    assert_eq!(a.select(&region), brute(&a, &region));
    let region = Region::from_polygons(&[star(88.5, 10.0, &[100.0; 12], 0.0)]).unwrap();
    assert_eq!(a.select(&region), brute(&a, &region));
}
