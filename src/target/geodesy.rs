//! Spherical geometry helpers for targeting: great-circle distance, the point
//! at a bearing and distance, and the latitude/longitude extent of a spherical
//! cap. Plain functions on degrees and kilometres; the Earth is the sphere of
//! H3's radius (`h3o::EARTH_RADIUS_KM`), so our distances agree with h3o's.
//! This file must never allocate or know about CAP, cells or subscribers.

/// Mean Earth radius used for every distance in targeting (the same as h3o).
pub const EARTH_RADIUS_KM: f64 = h3o::EARTH_RADIUS_KM;

/// Great-circle (haversine) distance in kilometres between two points given in degrees.
#[inline]
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    haversine_rad(
        lat1.to_radians(),
        lon1.to_radians(),
        lat2.to_radians(),
        lon2.to_radians(),
    ) * EARTH_RADIUS_KM
}

/// Great-circle central angle in radians between two points given in radians.
#[inline]
pub fn haversine_rad(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let s_lat = ((lat2 - lat1) * 0.5).sin();
    let s_lon = ((lon2 - lon1) * 0.5).sin();
    let a = s_lat.mul_add(s_lat, lat1.cos() * lat2.cos() * s_lon * s_lon);
    let a = a.clamp(0.0, 1.0);
    2.0 * a.sqrt().atan2((1.0 - a).sqrt())
}

/// The point reached from (`lat`, `lon`) by travelling `dist_km` along the
/// great circle with initial `bearing_deg` (clockwise from north). Degrees in
/// and out; the longitude is normalised to [-180, 180].
pub fn destination(lat: f64, lon: f64, bearing_deg: f64, dist_km: f64) -> (f64, f64) {
    let d = dist_km / EARTH_RADIUS_KM;
    let (p1, l1, b) = (lat.to_radians(), lon.to_radians(), bearing_deg.to_radians());
    let sin_p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * b.cos()).clamp(-1.0, 1.0);
    let p2 = sin_p2.asin();
    let l2 = l1 + (b.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * sin_p2);
    (p2.to_degrees(), normalize_lon(l2.to_degrees()))
}

/// Wraps a longitude in degrees into [-180, 180].
pub fn normalize_lon(lon: f64) -> f64 {
    let mut l = (lon + 180.0).rem_euclid(360.0) - 180.0;
    if l == -180.0 && lon > 0.0 {
        l = 180.0;
    }
    l
}

/// Half-extents in degrees (Δlat, Δlon) of the spherical cap of radius
/// `radius_km` around a point at latitude `lat` (degrees): every point of the
/// cap lies within lat ± Δlat and lon ± Δlon. `None` when the cap reaches a
/// pole (its longitude extent is then the whole circle).
pub fn cap_extent_deg(lat: f64, radius_km: f64) -> Option<(f64, f64)> {
    let delta = radius_km / EARTH_RADIUS_KM;
    let phi = lat.to_radians();
    if phi.abs() + delta >= std::f64::consts::FRAC_PI_2 {
        return None;
    }
    // The widest longitude of a cap centred at phi with angular radius delta.
    let ratio = (delta.sin() / phi.cos()).min(1.0);
    let dlon = ratio.asin();
    Some((delta.to_degrees(), dlon.to_degrees()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_h3o() {
        let a = h3o::LatLng::new(48.864716, 2.349014).unwrap();
        let b = h3o::LatLng::new(31.224361, 121.469170).unwrap();
        let ours = haversine_km(a.lat(), a.lng(), b.lat(), b.lng());
        assert!((ours - a.distance_km(b)).abs() < 1e-6);
    }

    #[test]
    fn destination_round_trips_distance() {
        for &(lat, lon) in &[(23.1, 113.2), (70.0, 179.9), (-45.0, -179.5), (0.0, 0.0)] {
            for b in [0.0, 45.0, 90.0, 200.0, 315.0] {
                let (la, lo) = destination(lat, lon, b, 123.0);
                assert!((haversine_km(lat, lon, la, lo) - 123.0).abs() < 1e-6);
                assert!((-180.0..=180.0).contains(&lo));
            }
        }
    }

    #[test]
    fn cap_extent_bounds_the_cap() {
        for &(lat, r) in &[(23.0, 200.0), (60.0, 300.0), (-80.0, 100.0), (0.0, 1.0)] {
            let (dlat, dlon) = cap_extent_deg(lat, r).unwrap();
            for i in 0..360 {
                let (la, lo) = destination(lat, 10.0, f64::from(i), r);
                assert!((la - lat).abs() <= dlat + 1e-9);
                assert!((lo - 10.0).abs() <= dlon + 1e-9);
            }
        }
        assert!(cap_extent_deg(89.0, 200.0).is_none());
    }
}
