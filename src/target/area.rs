//! CAP areas compiled into a [`Region`]: the union of validated polygon rings
//! and geodesic circles, with geocodes resolved through the [`GeocodeTable`].
//! A region answers point membership (the definition of who is targeted),
//! classifies a disc of the sphere as inside/outside/mixed for the audience
//! scan, and decides the policy questions "does this partner's coverage touch
//! the alert?" and "does the alert lie inside the authority's jurisdiction?".
//! It must never guess: bad coordinates, unknown geocodes and zero-area rings
//! are errors with stable codes, never silently dropped shapes.

use thiserror::Error;

use super::geocode::GeocodeTable;
use super::geodesy::{cap_extent_deg, destination, haversine_km, EARTH_RADIUS_KM};
use super::polygon::{segments_intersect, valid_coord, Class, LatLonBox, Ring};
use crate::alert::cap::{Area, Point};

/// Why a CAP area could not become a region.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AreaError {
    /// The areas name no polygon, circle or geocode at all.
    #[error("the alert names no polygon, circle or geocode")]
    Empty,
    /// A geocode (`valueName=value`) that the geocode table does not know.
    #[error("unknown geocode {0}")]
    UnknownGeocode(String),
    /// A polygon that cannot be targeted (bad coordinates, zero area, too few
    /// vertices, or crossing the antimeridian).
    #[error("invalid polygon: {0}")]
    InvalidPolygon(String),
    /// A circle with a bad centre or a negative or non-finite radius.
    #[error("invalid circle: {0}")]
    InvalidCircle(String),
}

impl AreaError {
    /// The stable code shared by receipts, metrics labels and the README.
    pub fn code(&self) -> &'static str {
        match self {
            AreaError::Empty => "area_empty",
            AreaError::UnknownGeocode(_) => "geocode_unknown",
            AreaError::InvalidPolygon(_) => "polygon_invalid",
            AreaError::InvalidCircle(_) => "circle_invalid",
        }
    }
}

/// A geodesic circle: every point within `radius_km` great-circle distance of the centre.
#[derive(Debug, Clone, Copy)]
struct Disc {
    lat: f64,
    lon: f64,
    lat_rad: f64,
    lon_rad: f64,
    radius_km: f64,
}

impl Disc {
    fn new(center: Point, radius_km: f64) -> Result<Disc, AreaError> {
        if !valid_point(center) {
            return Err(AreaError::InvalidCircle(format!(
                "centre ({}, {}) is not a WGS 84 coordinate",
                center.lat, center.lon
            )));
        }
        if !(radius_km.is_finite() && radius_km >= 0.0) {
            return Err(AreaError::InvalidCircle(format!("radius {radius_km} km")));
        }
        Ok(Disc {
            lat: center.lat,
            lon: center.lon,
            lat_rad: center.lat.to_radians(),
            lon_rad: center.lon.to_radians(),
            radius_km,
        })
    }

    fn distance_km(&self, lat: f64, lon: f64) -> f64 {
        haversine_km(self.lat, self.lon, lat, lon)
    }

    /// `n` points on the boundary.
    fn boundary(&self, n: usize) -> impl Iterator<Item = (f64, f64)> + '_ {
        (0..n).map(move |i| {
            destination(
                self.lat,
                self.lon,
                360.0 * i as f64 / n as f64,
                self.radius_km,
            )
        })
    }
}

#[derive(Debug, Clone)]
enum Shape {
    Disc(Disc),
    Ring(Box<Ring>),
}

/// A compiled targeting region: the union of polygons and geodesic circles.
#[derive(Debug, Clone)]
pub struct Region {
    shapes: Vec<Shape>,
}

/// A spherical cap given by its centre (radians and degrees) and radius: the
/// conservative extent of an H3 cell and all its descendants' centres.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CellCap {
    pub lat: f64,
    pub lon: f64,
    pub lat_rad: f64,
    pub lon_rad: f64,
    pub radius_km: f64,
}

fn valid_point(p: Point) -> bool {
    valid_coord(p.lat, p.lon)
}

/// Relative and absolute slack for "certainly inside/outside" decisions (km).
const SLACK_KM: f64 = 1e-6;

impl Region {
    /// Compiles the union of every polygon, circle and geocode of `areas`.
    pub fn from_areas(areas: &[Area], geocodes: &GeocodeTable) -> Result<Region, AreaError> {
        let mut shapes = Vec::new();
        for area in areas {
            for ring in &area.polygons {
                shapes.push(Shape::Ring(Box::new(
                    Ring::compile(ring).map_err(AreaError::InvalidPolygon)?,
                )));
            }
            for c in &area.circles {
                shapes.push(Shape::Disc(Disc::new(c.center, c.radius_km)?));
            }
            for g in &area.geocodes {
                let entry = geocodes.resolve(g).ok_or_else(|| {
                    AreaError::UnknownGeocode(format!("{}={}", g.value_name, g.value))
                })?;
                for ring in &entry.polygons {
                    let compiled = Ring::compile(ring).map_err(|e| {
                        AreaError::InvalidPolygon(format!(
                            "geocode {}={}: {e}",
                            g.value_name, g.value
                        ))
                    })?;
                    shapes.push(Shape::Ring(Box::new(compiled)));
                }
            }
        }
        if shapes.is_empty() {
            return Err(AreaError::Empty);
        }
        Ok(Region { shapes })
    }

    /// A single geodesic circle.
    pub fn circle(center: Point, radius_km: f64) -> Result<Region, AreaError> {
        Ok(Region {
            shapes: vec![Shape::Disc(Disc::new(center, radius_km)?)],
        })
    }

    /// The union of the given rings (each closed or implicitly closed).
    pub fn from_polygons(rings: &[Vec<Point>]) -> Result<Region, AreaError> {
        let shapes = rings
            .iter()
            .map(|r| {
                Ring::compile(r)
                    .map(|c| Shape::Ring(Box::new(c)))
                    .map_err(AreaError::InvalidPolygon)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if shapes.is_empty() {
            return Err(AreaError::Empty);
        }
        Ok(Region { shapes })
    }

    /// The union of two regions.
    pub fn union(mut self, other: Region) -> Region {
        self.shapes.extend(other.shapes);
        self
    }

    /// True when `p` is in the region: inside (even-odd, on lat/lon) any
    /// polygon, or within any circle's radius (great-circle distance).
    pub fn contains(&self, p: Point) -> bool {
        self.shapes.iter().any(|s| match s {
            Shape::Disc(d) => d.distance_km(p.lat, p.lon) <= d.radius_km,
            Shape::Ring(r) => r.contains(p.lat, p.lon),
        })
    }

    /// The sum of the parts' areas in km² (an upper bound of the union's area:
    /// overlaps count twice). Polygons use the spherical-excess approximation
    /// of Chamberlain & Duquette; circles are exact spherical caps.
    pub fn approx_area_km2(&self) -> f64 {
        self.shapes
            .iter()
            .map(|s| match s {
                Shape::Disc(d) => {
                    let a = (d.radius_km / EARTH_RADIUS_KM).min(std::f64::consts::PI);
                    std::f64::consts::TAU * EARTH_RADIUS_KM * EARTH_RADIUS_KM * (1.0 - a.cos())
                }
                Shape::Ring(r) => {
                    let v = r.vertices();
                    let sum: f64 = v
                        .windows(2)
                        .map(|w| {
                            let (p1, l1) = (w[0].0.to_radians(), w[0].1.to_radians());
                            let (p2, l2) = (w[1].0.to_radians(), w[1].1.to_radians());
                            (l2 - l1) * (2.0 + p1.sin() + p2.sin())
                        })
                        .sum();
                    (sum * EARTH_RADIUS_KM * EARTH_RADIUS_KM / 2.0).abs()
                }
            })
            .sum()
    }

    /// True when the two regions share at least one point. Conservative:
    /// circle–polygon tests sample the polygon's edges, so shapes that come
    /// within ~1 % of the radius (at most 1 km) of touching may count as touching.
    pub fn intersects(&self, other: &Region) -> bool {
        self.shapes
            .iter()
            .any(|a| other.shapes.iter().any(|b| shapes_intersect(a, b)))
    }

    /// True when the whole of `self` lies inside `other` (jurisdiction check):
    /// every polygon vertex and points every ≤ 5 km along each edge, and for
    /// circles the centre and 64 boundary points, are all contained.
    pub fn is_within(&self, other: &Region) -> bool {
        let inside = |lat: f64, lon: f64| other.contains(Point { lat, lon });
        self.shapes.iter().all(|s| match s {
            Shape::Disc(d) => inside(d.lat, d.lon) && d.boundary(64).all(|(la, lo)| inside(la, lo)),
            Shape::Ring(r) => r.vertices().windows(2).all(|w| {
                let (a, b) = (w[0], w[1]);
                let len = haversine_km(a.0, a.1, b.0, b.1);
                let steps = (len / 5.0).ceil().max(1.0) as usize;
                (0..steps).all(|k| {
                    let t = k as f64 / steps as f64;
                    inside(a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
                })
            }),
        })
    }

    /// Classifies every point of `cap` against the union: `Inside` and
    /// `Outside` are certain; `Mixed` means "look closer".
    pub(crate) fn classify(&self, cap: &CellCap) -> Class {
        let mut all_outside = true;
        // Computed on first use: only polygons need the cap's lat/lon boxes.
        let mut boxes: Option<Option<(LatLonBox, Option<LatLonBox>)>> = None;
        for s in &self.shapes {
            let c = match s {
                Shape::Disc(d) => {
                    let dist = super::geodesy::haversine_rad(
                        d.lat_rad,
                        d.lon_rad,
                        cap.lat_rad,
                        cap.lon_rad,
                    ) * EARTH_RADIUS_KM;
                    if dist + cap.radius_km < d.radius_km - SLACK_KM {
                        Class::Inside
                    } else if dist - cap.radius_km > d.radius_km + SLACK_KM {
                        Class::Outside
                    } else {
                        Class::Mixed
                    }
                }
                Shape::Ring(r) => match *boxes.get_or_insert_with(|| cap_boxes(cap)) {
                    None => Class::Mixed,
                    Some((first, second)) => {
                        let class = r.classify_box(&first);
                        match second {
                            Some(b) if r.classify_box(&b) != class => Class::Mixed,
                            _ => class,
                        }
                    }
                },
            };
            match c {
                Class::Inside => return Class::Inside,
                Class::Mixed => all_outside = false,
                Class::Outside => {}
            }
        }
        if all_outside {
            Class::Outside
        } else {
            Class::Mixed
        }
    }
}

/// The lat/lon boxes (one, or two when it wraps the antimeridian) that
/// contain the cap, padded against rounding; `None` when the cap reaches a pole.
fn cap_boxes(cap: &CellCap) -> Option<(LatLonBox, Option<LatLonBox>)> {
    let (dlat, dlon) = cap_extent_deg(cap.lat, cap.radius_km * (1.0 + 1e-9) + SLACK_KM)?;
    let (dlat, dlon) = (dlat + 1e-9, dlon + 1e-9);
    let (lat0, lat1) = (cap.lat - dlat, cap.lat + dlat);
    let (lon0, lon1) = (cap.lon - dlon, cap.lon + dlon);
    let mk = |lon0: f64, lon1: f64| LatLonBox {
        lat0,
        lat1,
        lon0,
        lon1,
    };
    Some(if lon0 < -180.0 {
        (mk(-180.0, lon1), Some(mk(lon0 + 360.0, 180.0)))
    } else if lon1 > 180.0 {
        (mk(lon0, 180.0), Some(mk(-180.0, lon1 - 360.0)))
    } else {
        (mk(lon0, lon1), None)
    })
}

fn shapes_intersect(a: &Shape, b: &Shape) -> bool {
    match (a, b) {
        (Shape::Disc(x), Shape::Disc(y)) => {
            x.distance_km(y.lat, y.lon) <= x.radius_km + y.radius_km
        }
        (Shape::Disc(d), Shape::Ring(r)) | (Shape::Ring(r), Shape::Disc(d)) => {
            disc_meets_ring(d, r)
        }
        (Shape::Ring(x), Shape::Ring(y)) => rings_intersect(x, y),
    }
}

/// Disc ∩ ring ≠ ∅ iff the centre is inside the ring, or the ring's boundary
/// comes within the radius of the centre. Edges are sampled at a step of
/// ≤ 2 % of the radius (≤ 2 km), accepting a distance ≤ radius + step/2.
fn disc_meets_ring(d: &Disc, r: &Ring) -> bool {
    if r.contains(d.lat, d.lon) {
        return true;
    }
    let step = (d.radius_km * 0.02).clamp(0.01, 2.0);
    let reach = d.radius_km + step / 2.0;
    r.vertices().windows(2).any(|w| {
        let (a, b) = (w[0], w[1]);
        let len = haversine_km(a.0, a.1, b.0, b.1);
        let steps = (len / step).ceil().max(1.0) as usize;
        (0..=steps).any(|k| {
            let t = k as f64 / steps as f64;
            d.distance_km(a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t) <= reach
        })
    })
}

/// Two rings meet iff a vertex of one is inside the other or two edges cross.
fn rings_intersect(x: &Ring, y: &Ring) -> bool {
    let (bx, by) = (x.bbox(), y.bbox());
    if bx.lat1 < by.lat0 || by.lat1 < bx.lat0 || bx.lon1 < by.lon0 || by.lon1 < bx.lon0 {
        return false;
    }
    if x.vertices().iter().any(|&(la, lo)| y.contains(la, lo))
        || y.vertices().iter().any(|&(la, lo)| x.contains(la, lo))
    {
        return true;
    }
    x.vertices().windows(2).any(|e| {
        y.vertices()
            .windows(2)
            .any(|f| segments_intersect(e[0], e[1], f[0], f[1]))
    })
}

#[cfg(test)]
mod tests;
