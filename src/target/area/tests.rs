//! Tests of region compilation, membership and the policy predicates.

use super::*;
use crate::alert::cap::{Circle, ValuePair};

fn p(lat: f64, lon: f64) -> Point {
    Point { lat, lon }
}
fn square(lat: f64, lon: f64, half: f64) -> Vec<Point> {
    vec![
        p(lat - half, lon - half),
        p(lat - half, lon + half),
        p(lat + half, lon + half),
        p(lat + half, lon - half),
        p(lat - half, lon - half),
    ]
}
fn area() -> Area {
    Area {
        area_desc: "test".into(),
        polygons: vec![],
        circles: vec![],
        geocodes: vec![],
        altitude: None,
        ceiling: None,
    }
}

#[test]
fn errors_have_stable_codes() {
    let table = GeocodeTable::embedded();
    assert_eq!(
        Region::from_areas(&[], &table).unwrap_err().code(),
        "area_empty"
    );
    assert_eq!(
        Region::from_areas(&[area()], &table).unwrap_err().code(),
        "area_empty"
    );
    let mut a = area();
    a.geocodes.push(ValuePair {
        value_name: "CN-GB2260".into(),
        value: "990000".into(),
    });
    let e = Region::from_areas(&[a], &table).unwrap_err();
    assert_eq!(e.code(), "geocode_unknown");
    assert_eq!(e, AreaError::UnknownGeocode("CN-GB2260=990000".into()));
    let mut a = area();
    a.polygons
        .push(vec![p(0.0, 0.0), p(1.0, 1.0), p(2.0, 2.0), p(0.0, 0.0)]);
    assert_eq!(
        Region::from_areas(&[a], &table).unwrap_err().code(),
        "polygon_invalid"
    );
    let mut a = area();
    a.polygons.push(vec![
        p(10.0, 179.5),
        p(10.0, -179.5),
        p(11.0, -179.5),
        p(11.0, 179.5),
        p(10.0, 179.5),
    ]);
    assert_eq!(
        Region::from_areas(&[a], &table).unwrap_err().code(),
        "polygon_invalid"
    );
    let mut a = area();
    a.circles.push(Circle {
        center: p(23.0, 113.0),
        radius_km: -1.0,
    });
    assert_eq!(
        Region::from_areas(&[a], &table).unwrap_err().code(),
        "circle_invalid"
    );
    assert_eq!(
        Region::circle(p(95.0, 0.0), 1.0).unwrap_err().code(),
        "circle_invalid"
    );
}

#[test]
fn areas_are_unions_of_their_shapes() {
    let table = GeocodeTable::embedded();
    let mut a = area();
    a.circles.push(Circle {
        center: p(23.1291, 113.2644),
        radius_km: 10.0,
    });
    a.geocodes.push(ValuePair {
        value_name: "CN-GB2260".into(),
        value: "110000".into(),
    });
    let mut b = area();
    b.polygons.push(square(40.0, -100.0, 1.0));
    let r = Region::from_areas(&[a, b], &table).unwrap();
    assert!(r.contains(p(23.15, 113.25))); // circle
    assert!(r.contains(p(39.9042, 116.4074))); // Beijing
    assert!(r.contains(p(40.5, -100.5))); // polygon
    assert!(!r.contains(p(31.23, 121.47))); // Shanghai
}

#[test]
fn circle_contains_by_great_circle_distance() {
    let r = Region::circle(p(80.0, 179.0), 100.0).unwrap();
    let (la, lo) = destination(80.0, 179.0, 90.0, 99.9);
    assert!(lo < 0.0, "crosses the antimeridian");
    assert!(r.contains(p(la, lo)));
    let (la, lo) = destination(80.0, 179.0, 90.0, 100.1);
    assert!(!r.contains(p(la, lo)));
}

#[test]
fn area_of_a_circle_and_a_degree_square() {
    let c = Region::circle(p(0.0, 0.0), 100.0).unwrap();
    let flat = std::f64::consts::PI * 100.0 * 100.0;
    assert!((c.approx_area_km2() - flat).abs() / flat < 1e-3);
    let sq = Region::from_polygons(&[square(0.0, 0.0, 0.5)]).unwrap();
    assert!(
        (sq.approx_area_km2() - 111.19 * 111.19).abs() < 100.0,
        "{}",
        sq.approx_area_km2()
    );
}

#[test]
fn intersects_circles_and_polygons() {
    let a = Region::circle(p(23.0, 113.0), 50.0).unwrap();
    let (la, lo) = destination(23.0, 113.0, 30.0, 99.0);
    assert!(a.intersects(&Region::circle(p(la, lo), 50.0).unwrap()));
    let (la, lo) = destination(23.0, 113.0, 30.0, 102.0);
    assert!(!a.intersects(&Region::circle(p(la, lo), 50.0).unwrap()));
    // Circle inside polygon, polygon inside circle, edge crossing, apart.
    let big = Region::from_polygons(&[square(23.0, 113.0, 2.0)]).unwrap();
    let small = Region::from_polygons(&[square(23.0, 113.0, 0.05)]).unwrap();
    assert!(a.intersects(&big) && big.intersects(&a));
    assert!(a.intersects(&small) && small.intersects(&a));
    let edge = Region::from_polygons(&[square(23.0, 113.55, 0.2)]).unwrap();
    assert!(a.intersects(&edge));
    let far = Region::from_polygons(&[square(23.0, 114.2, 0.2)]).unwrap();
    assert!(!a.intersects(&far) && !far.intersects(&a));
    // Polygon/polygon: crossing edges with no vertex inside the other.
    let bar1 = Region::from_polygons(&[vec![p(0.0, -2.0), p(0.0, 2.0), p(0.2, 2.0), p(0.2, -2.0)]])
        .unwrap();
    let bar2 = Region::from_polygons(&[vec![p(-2.0, 0.0), p(-2.0, 0.2), p(2.0, 0.2), p(2.0, 0.0)]])
        .unwrap();
    assert!(bar1.intersects(&bar2));
    assert!(!bar1.intersects(&Region::from_polygons(&[square(5.0, 5.0, 1.0)]).unwrap()));
}

#[test]
fn is_within_checks_the_whole_shape() {
    let table = GeocodeTable::embedded();
    let mut gd = area();
    gd.geocodes.push(ValuePair {
        value_name: "CN-GB2260".into(),
        value: "440000".into(),
    });
    let guangdong = Region::from_areas(&[gd], &table).unwrap();
    assert!(Region::circle(p(23.1291, 113.2644), 50.0)
        .unwrap()
        .is_within(&guangdong));
    assert!(!Region::circle(p(23.1291, 113.2644), 800.0)
        .unwrap()
        .is_within(&guangdong));
    assert!(!Region::circle(p(39.9, 116.4), 5.0)
        .unwrap()
        .is_within(&guangdong));
    let sq = Region::from_polygons(&[square(23.0, 113.0, 0.3)]).unwrap();
    assert!(sq.is_within(&guangdong));
    // A concave authority: all four vertices inside but an edge leaves it.
    let u = Region::from_polygons(&[vec![
        p(0.0, 0.0),
        p(0.0, 3.0),
        p(3.0, 3.0),
        p(3.0, 2.0),
        p(1.0, 2.0),
        p(1.0, 1.0),
        p(3.0, 1.0),
        p(3.0, 0.0),
    ]])
    .unwrap();
    let across =
        Region::from_polygons(&[vec![p(2.0, 0.5), p(2.0, 2.5), p(2.5, 2.5), p(2.5, 0.5)]]).unwrap();
    assert!(!across.is_within(&u));
}
