//! A compiled polygon ring: validated once, then answers "is this point
//! inside?" and "is this latitude/longitude box entirely inside, entirely
//! outside, or crossed by the boundary?" in time independent of the vertex
//! count (edges are bucketed by latitude band for point tests and by a uniform
//! grid for box tests). Geometry is planar on (lat, lon) degrees, which is the
//! CAP convention and accurate enough at alert scales. Rings that cross the
//! antimeridian are rejected, never silently wrapped the long way round.
//! This file must never allocate after `compile`.

use crate::alert::cap::Point;

/// How a box (or a cell with all its descendants) relates to a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Inside,
    Outside,
    Mixed,
}

/// An axis-aligned box in degrees: `lat0..=lat1` × `lon0..=lon1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LatLonBox {
    pub lat0: f64,
    pub lat1: f64,
    pub lon0: f64,
    pub lon1: f64,
}

impl LatLonBox {
    fn overlaps(&self, o: &LatLonBox) -> bool {
        self.lat0 <= o.lat1 && o.lat0 <= self.lat1 && self.lon0 <= o.lon1 && o.lon0 <= self.lon1
    }
}

/// A validated ring with its acceleration structures.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    /// Vertices as (lat, lon), closed: `v[0] == v[n]`.
    verts: Vec<(f64, f64)>,
    bbox: LatLonBox,
    /// Latitude bands: edges (by start vertex index) whose latitude span meets the band.
    band_h: f64,
    bands: Vec<Vec<u32>>,
    /// Uniform grid over the bbox: edges whose bbox meets the grid cell.
    grid_n: usize,
    grid_dlat: f64,
    grid_dlon: f64,
    grid: Vec<Vec<u32>>,
}

/// True for a WGS 84 coordinate in degrees (NaN and infinities are not).
pub(crate) fn valid_coord(lat: f64, lon: f64) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

/// Checks a ring and returns it closed as (lat, lon), or why it was refused.
pub(crate) fn validate_ring(points: &[Point]) -> Result<Vec<(f64, f64)>, String> {
    let mut v: Vec<(f64, f64)> = Vec::with_capacity(points.len() + 1);
    for p in points {
        if !valid_coord(p.lat, p.lon) {
            return Err(format!(
                "vertex ({}, {}) is not a WGS 84 coordinate",
                p.lat, p.lon
            ));
        }
        v.push((p.lat, p.lon));
    }
    // A repeated point adds a zero-length edge and nothing else.
    v.dedup();
    // Close the ring if the writer did not (CAP requires it; we are lenient).
    if let (Some(&first), Some(&last)) = (v.first(), v.last()) {
        if first != last {
            v.push(first);
        }
    }
    if v.len() < 4 {
        return Err(format!(
            "a ring needs at least 3 distinct vertices, got {}",
            v.len().saturating_sub(1)
        ));
    }
    for w in v.windows(2) {
        if (w[1].1 - w[0].1).abs() > 180.0 {
            return Err("ring crosses the antimeridian (split it at ±180°)".to_string());
        }
    }
    // Shoelace area in square degrees: a degenerate (zero-area) ring selects nothing.
    let twice_area: f64 = v
        .windows(2)
        .map(|w| w[0].1 * w[1].0 - w[1].1 * w[0].0)
        .sum();
    if twice_area.abs() < 1e-12 {
        return Err("ring has zero area".to_string());
    }
    if let Some((i, j)) = self_intersection(&v) {
        return Err(format!(
            "ring is not simple: edges {i} and {j} cross or touch (a self-intersecting \
             polygon has no agreed inside, and its shoelace area understates what it covers)"
        ));
    }
    Ok(v)
}

/// The first pair of edges (by start vertex) of the closed ring `v` that
/// meet anywhere but at the vertex two neighbours share, or `None` when the
/// ring is simple. A sweep over longitude with an active list: every pair of
/// edges whose boxes overlap is tested, so it is O(n log n) for ordinary
/// shapes and O(n²) at worst (n ≤ `CapLimits::max_polygon_vertices`).
fn self_intersection(v: &[(f64, f64)]) -> Option<(usize, usize)> {
    let n = v.len().saturating_sub(1);
    let lon_span = |i: usize| (v[i].1.min(v[i + 1].1), v[i].1.max(v[i + 1].1));
    let lat_span = |i: usize| (v[i].0.min(v[i + 1].0), v[i].0.max(v[i + 1].0));
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| lon_span(a).0.total_cmp(&lon_span(b).0));
    let mut active: Vec<usize> = Vec::new();
    for &e in &order {
        let (lon0, _) = lon_span(e);
        active.retain(|&a| lon_span(a).1 >= lon0);
        let (la0, la1) = lat_span(e);
        for &a in &active {
            let (b0, b1) = lat_span(a);
            if b1 < la0 || la1 < b0 {
                continue;
            }
            let (i, j) = (a.min(e), a.max(e));
            let meet = if j == i + 1 {
                doubles_back(v[i], v[j], v[j + 1])
            } else if i == 0 && j == n - 1 {
                doubles_back(v[j], v[0], v[1])
            } else {
                segments_intersect(v[i], v[i + 1], v[j], v[j + 1])
            };
            if meet {
                return Some((i, j));
            }
        }
        active.push(e);
    }
    None
}

/// Neighbouring edges a–b and b–c overlap beyond `b` only when they are
/// collinear and c turns back towards a (a spike of zero width).
fn doubles_back(a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> bool {
    let cross = (a.1 - b.1) * (c.0 - b.0) - (a.0 - b.0) * (c.1 - b.1);
    let dot = (a.1 - b.1) * (c.1 - b.1) + (a.0 - b.0) * (c.0 - b.0);
    cross == 0.0 && dot > 0.0
}

impl Ring {
    /// Validates and compiles a ring.
    pub(crate) fn compile(points: &[Point]) -> Result<Ring, String> {
        let verts = validate_ring(points)?;
        let mut bbox = LatLonBox {
            lat0: f64::INFINITY,
            lat1: f64::NEG_INFINITY,
            lon0: f64::INFINITY,
            lon1: f64::NEG_INFINITY,
        };
        for &(la, lo) in &verts {
            bbox.lat0 = bbox.lat0.min(la);
            bbox.lat1 = bbox.lat1.max(la);
            bbox.lon0 = bbox.lon0.min(lo);
            bbox.lon1 = bbox.lon1.max(lo);
        }
        let n_edges = verts.len() - 1;
        let n_bands = (n_edges / 2).clamp(1, 1024);
        let band_h = ((bbox.lat1 - bbox.lat0) / n_bands as f64).max(f64::MIN_POSITIVE);
        let grid_n = ((n_edges as f64).sqrt().ceil() as usize).clamp(1, 64);
        let grid_dlat = ((bbox.lat1 - bbox.lat0) / grid_n as f64).max(f64::MIN_POSITIVE);
        let grid_dlon = ((bbox.lon1 - bbox.lon0) / grid_n as f64).max(f64::MIN_POSITIVE);
        let mut ring = Ring {
            verts,
            bbox,
            band_h,
            bands: vec![Vec::new(); n_bands],
            grid_n,
            grid_dlat,
            grid_dlon,
            grid: vec![Vec::new(); grid_n * grid_n],
        };
        for i in 0..n_edges {
            let (a, b) = (ring.verts[i], ring.verts[i + 1]);
            let (b0, b1) = (ring.band(a.0.min(b.0)), ring.band(a.0.max(b.0)));
            for band in &mut ring.bands[b0..=b1] {
                band.push(i as u32);
            }
            let (r0, r1) = (ring.grid_row(a.0.min(b.0)), ring.grid_row(a.0.max(b.0)));
            let (c0, c1) = (ring.grid_col(a.1.min(b.1)), ring.grid_col(a.1.max(b.1)));
            for r in r0..=r1 {
                for c in c0..=c1 {
                    ring.grid[r * grid_n + c].push(i as u32);
                }
            }
        }
        Ok(ring)
    }

    fn band(&self, lat: f64) -> usize {
        let i = ((lat - self.bbox.lat0) / self.band_h).floor();
        (i.max(0.0) as usize).min(self.bands.len() - 1)
    }
    fn grid_row(&self, lat: f64) -> usize {
        let i = ((lat - self.bbox.lat0) / self.grid_dlat).floor();
        (i.max(0.0) as usize).min(self.grid_n - 1)
    }
    fn grid_col(&self, lon: f64) -> usize {
        let i = ((lon - self.bbox.lon0) / self.grid_dlon).floor();
        (i.max(0.0) as usize).min(self.grid_n - 1)
    }

    /// The vertices as (lat, lon), closed.
    pub(crate) fn vertices(&self) -> &[(f64, f64)] {
        &self.verts
    }

    /// The ring's bounding box.
    pub(crate) fn bbox(&self) -> LatLonBox {
        self.bbox
    }

    /// Even-odd (PNPOLY) point-in-polygon on (lat, lon). Identical to testing
    /// every edge: only edges whose latitude span contains `lat` can count,
    /// and those are all in `lat`'s band.
    pub(crate) fn contains(&self, lat: f64, lon: f64) -> bool {
        let b = &self.bbox;
        if lat < b.lat0 || lat > b.lat1 || lon < b.lon0 || lon > b.lon1 {
            return false;
        }
        let mut inside = false;
        for &i in &self.bands[self.band(lat)] {
            let (yi, xi) = self.verts[i as usize];
            let (yj, xj) = self.verts[i as usize + 1];
            if (yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi {
                inside = !inside;
            }
        }
        inside
    }

    /// Classifies a box: `Inside`/`Outside` are certain for every point of the
    /// box; `Mixed` means an edge may cross it.
    pub(crate) fn classify_box(&self, q: &LatLonBox) -> Class {
        if !q.overlaps(&self.bbox) {
            return Class::Outside;
        }
        let (r0, r1) = (self.grid_row(q.lat0), self.grid_row(q.lat1));
        let (c0, c1) = (self.grid_col(q.lon0), self.grid_col(q.lon1));
        for r in r0..=r1 {
            for c in c0..=c1 {
                for &i in &self.grid[r * self.grid_n + c] {
                    let a = self.verts[i as usize];
                    let b = self.verts[i as usize + 1];
                    if segment_meets_box(a, b, q) {
                        return Class::Mixed;
                    }
                }
            }
        }
        // No edge meets the box, so the whole box is on one side.
        let mid = ((q.lat0 + q.lat1) * 0.5, (q.lon0 + q.lon1) * 0.5);
        if self.contains(mid.0, mid.1) {
            Class::Inside
        } else {
            Class::Outside
        }
    }
}

/// True when segment a–b (lat, lon) touches box `q` (closed). Exact up to
/// rounding; callers pad the box, so rounding errs toward `true`.
fn segment_meets_box(a: (f64, f64), b: (f64, f64), q: &LatLonBox) -> bool {
    let (ymin, ymax) = (a.0.min(b.0), a.0.max(b.0));
    let (xmin, xmax) = (a.1.min(b.1), a.1.max(b.1));
    if ymax < q.lat0 || ymin > q.lat1 || xmax < q.lon0 || xmin > q.lon1 {
        return false;
    }
    // The segment's line separates the box only if all four corners are strictly on one side.
    let side = |y: f64, x: f64| (b.1 - a.1) * (y - a.0) - (b.0 - a.0) * (x - a.1);
    let s = [
        side(q.lat0, q.lon0),
        side(q.lat0, q.lon1),
        side(q.lat1, q.lon0),
        side(q.lat1, q.lon1),
    ];
    !(s.iter().all(|&v| v > 0.0) || s.iter().all(|&v| v < 0.0))
}

/// Planar distance-free test: do segments p1–p2 and p3–p4 (lat, lon) intersect or touch?
pub(crate) fn segments_intersect(
    p1: (f64, f64),
    p2: (f64, f64),
    p3: (f64, f64),
    p4: (f64, f64),
) -> bool {
    let orient = |a: (f64, f64), b: (f64, f64), c: (f64, f64)| {
        (b.1 - a.1) * (c.0 - a.0) - (b.0 - a.0) * (c.1 - a.1)
    };
    let on_seg = |a: (f64, f64), b: (f64, f64), c: (f64, f64)| {
        c.0 >= a.0.min(b.0) && c.0 <= a.0.max(b.0) && c.1 >= a.1.min(b.1) && c.1 <= a.1.max(b.1)
    };
    let d1 = orient(p3, p4, p1);
    let d2 = orient(p3, p4, p2);
    let d3 = orient(p1, p2, p3);
    let d4 = orient(p1, p2, p4);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on_seg(p3, p4, p1))
        || (d2 == 0.0 && on_seg(p3, p4, p2))
        || (d3 == 0.0 && on_seg(p1, p2, p3))
        || (d4 == 0.0 && on_seg(p1, p2, p4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Point> {
        v.iter().map(|&(lat, lon)| Point { lat, lon }).collect()
    }

    fn brute(verts: &[(f64, f64)], lat: f64, lon: f64) -> bool {
        let mut inside = false;
        for w in verts.windows(2) {
            let ((yi, xi), (yj, xj)) = (w[0], w[1]);
            if (yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi {
                inside = !inside;
            }
        }
        inside
    }

    #[test]
    fn banded_pip_equals_plain_pnpoly() {
        // A star with many vertices.
        let n = 300;
        let ring: Vec<(f64, f64)> = (0..=n)
            .map(|i| {
                let t = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
                let r = if i % 2 == 0 { 1.0 } else { 0.4 };
                (23.0 + r * t.sin(), 113.0 + r * t.cos())
            })
            .collect();
        let compiled = Ring::compile(&pts(&ring)).unwrap();
        for i in 0..200 {
            for j in 0..200 {
                let (lat, lon) = (21.8 + i as f64 * 0.012, 111.8 + j as f64 * 0.012);
                assert_eq!(
                    compiled.contains(lat, lon),
                    brute(&ring, lat, lon),
                    "{lat},{lon}"
                );
            }
        }
    }

    #[test]
    fn box_classification_is_never_wrong() {
        let ring = pts(&[
            (0.0, 0.0),
            (0.0, 2.0),
            (1.0, 1.0),
            (2.0, 2.0),
            (2.0, 0.0),
            (0.0, 0.0),
        ]);
        let c = Ring::compile(&ring).unwrap();
        for i in 0..40 {
            for j in 0..40 {
                let q = LatLonBox {
                    lat0: -0.5 + i as f64 * 0.07,
                    lat1: -0.5 + i as f64 * 0.07 + 0.1,
                    lon0: -0.5 + j as f64 * 0.07,
                    lon1: -0.5 + j as f64 * 0.07 + 0.1,
                };
                let class = c.classify_box(&q);
                if class == Class::Mixed {
                    continue;
                }
                for a in 0..=5 {
                    for b in 0..=5 {
                        let lat = q.lat0 + (q.lat1 - q.lat0) * a as f64 / 5.0;
                        let lon = q.lon0 + (q.lon1 - q.lon0) * b as f64 / 5.0;
                        assert_eq!(c.contains(lat, lon), class == Class::Inside);
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_bad_rings() {
        assert!(Ring::compile(&pts(&[(0.0, 0.0), (1.0, 1.0), (0.0, 0.0)])).is_err());
        assert!(Ring::compile(&pts(&[(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (0.0, 0.0)])).is_err());
        assert!(Ring::compile(&pts(&[
            (0.0, 179.0),
            (1.0, -179.0),
            (1.0, 179.0),
            (0.0, 179.0)
        ]))
        .is_err());
        assert!(Ring::compile(&pts(&[(0.0, 0.0), (91.0, 1.0), (1.0, 0.0), (0.0, 0.0)])).is_err());
        assert!(
            Ring::compile(&pts(&[(0.0, f64::NAN), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)])).is_err()
        );
        // Unclosed rings are closed for the writer.
        assert!(Ring::compile(&pts(&[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)])).is_ok());
    }

    #[test]
    fn self_intersecting_rings_are_refused() {
        // A bow-tie whose lobes differ: its shoelace area (lobes cancel) is a
        // fraction of what even-odd targets, so it slipped under max_area_km2.
        let bowtie = [(0.0, 0.0), (0.0, 3.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)];
        let e = Ring::compile(&pts(&bowtie)).unwrap_err();
        assert!(e.contains("not simple"), "{e}");
        // A ring that touches itself at a vertex (pinched).
        let pinched = [
            (0.0, 0.0),
            (0.0, 2.0),
            (1.0, 1.0),
            (2.0, 2.0),
            (2.0, 0.0),
            (1.0, 1.0),
            (0.0, 0.0),
        ];
        assert!(Ring::compile(&pts(&pinched)).is_err());
        // A zero-width spike going back along its own edge.
        let spike = [
            (0.0, 0.0),
            (0.0, 2.0),
            (0.0, 3.0),
            (0.0, 2.5),
            (1.0, 1.0),
            (0.0, 0.0),
        ];
        assert!(Ring::compile(&pts(&spike)).is_err());
        // Simple rings, repeated points and the closing edge stay fine.
        let square = [
            (0.0, 0.0),
            (0.0, 1.0),
            (0.0, 1.0),
            (1.0, 1.0),
            (1.0, 0.0),
            (0.0, 0.0),
        ];
        assert!(Ring::compile(&pts(&square)).is_ok());
        let notch = [
            (0.0, 0.0),
            (0.0, 2.0),
            (1.0, 1.0),
            (2.0, 2.0),
            (2.0, 0.0),
            (0.0, 0.0),
        ];
        assert!(Ring::compile(&pts(&notch)).is_ok());
    }

    #[test]
    fn shipped_geocodes_are_simple() {
        let t = crate::target::GeocodeTable::embedded();
        assert!(!t.is_empty());
    }
}
