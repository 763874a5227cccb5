//! Deterministic synthetic subscriber positions for benches, demos and load
//! tests: gaussian clusters around real cities plus a uniform background,
//! drawn from a seeded ChaCha generator so every run sees the same audience.
//! This file must never be used for real subscribers, and never reads the
//! clock or the OS random source.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use h3o::LatLng;

use super::audience::{AudienceBuilder, ChannelAudience, INDEX_RESOLUTION};

/// Where the synthetic subscribers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// The Pearl River Delta (Guangzhou, Shenzhen, Dongguan, Foshan) plus a
    /// uniform background over Guangdong: the demo's audience.
    PearlRiverDelta,
    /// Twenty Chinese cities plus a uniform background over eastern China: the bench's audience.
    EasternChina,
}

/// (lat, lon, weight, sigma in degrees)
type Cluster = (f64, f64, f64, f64);

const PRD: &[Cluster] = &[
    (23.1291, 113.2644, 0.30, 0.15), // Guangzhou
    (22.5431, 114.0579, 0.25, 0.12), // Shenzhen
    (23.0207, 113.7518, 0.15, 0.12), // Dongguan
    (23.0215, 113.1214, 0.15, 0.10), // Foshan
];
const PRD_BACKGROUND: (f64, f64, f64, f64, f64) = (21.5, 25.0, 110.5, 116.5, 0.15);

const CHINA: &[Cluster] = &[
    (31.2304, 121.4737, 0.08, 0.25), // Shanghai
    (39.9042, 116.4074, 0.08, 0.25), // Beijing
    (23.1291, 113.2644, 0.06, 0.20), // Guangzhou
    (22.5431, 114.0579, 0.06, 0.15), // Shenzhen
    (29.5630, 106.5516, 0.05, 0.25), // Chongqing
    (39.3434, 117.3616, 0.04, 0.20), // Tianjin
    (30.5728, 104.0668, 0.05, 0.25), // Chengdu
    (30.5928, 114.3055, 0.04, 0.20), // Wuhan
    (34.3416, 108.9398, 0.04, 0.20), // Xi'an
    (30.2741, 120.1551, 0.04, 0.20), // Hangzhou
    (32.0603, 118.7969, 0.04, 0.20), // Nanjing
    (34.7466, 113.6254, 0.04, 0.20), // Zhengzhou
    (28.2282, 112.9388, 0.03, 0.15), // Changsha
    (23.0207, 113.7518, 0.03, 0.12), // Dongguan
    (23.0215, 113.1214, 0.03, 0.10), // Foshan
    (31.2990, 120.5853, 0.03, 0.15), // Suzhou
    (36.0671, 120.3826, 0.03, 0.15), // Qingdao
    (36.6512, 117.1201, 0.03, 0.15), // Jinan
    (31.8206, 117.2272, 0.03, 0.15), // Hefei
    (24.4798, 118.0894, 0.02, 0.10), // Xiamen
];
const CHINA_BACKGROUND: (f64, f64, f64, f64, f64) = (21.0, 41.0, 108.0, 122.0, 0.17);

/// `n` deterministic (lat, lon) points for `spread` and `seed`.
pub fn synthetic_points_in(spread: Spread, n: usize, seed: u64) -> Vec<(f64, f64)> {
    let (clusters, (lat0, lat1, lon0, lon1, bg)) = match spread {
        Spread::PearlRiverDelta => (PRD, PRD_BACKGROUND),
        Spread::EasternChina => (CHINA, CHINA_BACKGROUND),
    };
    let total: f64 = clusters.iter().map(|c| c.2).sum::<f64>() + bg;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut pick = rng.gen::<f64>() * total;
        let mut chosen = None;
        for c in clusters {
            if pick < c.2 {
                chosen = Some(c);
                break;
            }
            pick -= c.2;
        }
        let (lat, lon) = match chosen {
            Some(&(clat, clon, _, sigma)) => {
                let (g1, g2) = gaussian_pair(&mut rng);
                (
                    clat + sigma * g1,
                    clon + sigma * g2 / clat.to_radians().cos(),
                )
            }
            None => (rng.gen_range(lat0..lat1), rng.gen_range(lon0..lon1)),
        };
        if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
            out.push((lat, lon));
        }
    }
    out
}

/// The demo's audience: `n` points over the Pearl River Delta and Guangdong.
pub fn synthetic_points(n: usize, seed: u64) -> Vec<(f64, f64)> {
    synthetic_points_in(Spread::PearlRiverDelta, n, seed)
}

/// The resolution-9 cell of each point (0 for an invalid point), computed on
/// every available core (the H3 conversion costs ≈ 0.5 µs a point).
pub fn cells_of(points: &[(f64, f64)]) -> Vec<u64> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = points.len().div_ceil(threads).max(1);
    let parts: Vec<Vec<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = points
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&(lat, lon)| {
                            LatLng::new(lat, lon)
                                .map_or(0, |ll| u64::from(ll.to_cell(INDEX_RESOLUTION)))
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    parts.concat()
}

/// Indexes `cells` with subscriber id = position; invalid cells are skipped.
pub fn index_cells(cells: &[u64]) -> ChannelAudience {
    let mut b = AudienceBuilder::with_capacity(cells.len());
    for (i, &cell) in cells.iter().enumerate() {
        let Ok(id) = u32::try_from(i) else { break };
        let _ = b.push_cell(id, cell);
    }
    b.build()
}

/// Indexes `points` with subscriber id = position in `points`.
pub fn index_points(points: &[(f64, f64)]) -> ChannelAudience {
    index_cells(&cells_of(points))
}

/// Two independent standard normal samples (Box–Muller).
fn gaussian_pair(rng: &mut impl Rng) -> (f64, f64) {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen();
    let r = (-2.0 * u1.ln()).sqrt();
    let t = std::f64::consts::TAU * u2;
    (r * t.cos(), r * t.sin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_region() {
        let a = synthetic_points(10_000, 7);
        assert_eq!(a, synthetic_points(10_000, 7));
        assert_ne!(a, synthetic_points(10_000, 8));
        let near_gz = a
            .iter()
            .filter(|p| super::super::geodesy::haversine_km(p.0, p.1, 23.1291, 113.2644) < 50.0)
            .count();
        assert!(near_gz > 3_000, "{near_gz}");
        let c = synthetic_points_in(Spread::EasternChina, 10_000, 1);
        assert!(c
            .iter()
            .all(|p| p.0 > 15.0 && p.0 < 45.0 && p.1 > 100.0 && p.1 < 127.0));
        assert_eq!(index_points(&c).len(), 10_000);
    }
}
