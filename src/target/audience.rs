//! The audience index of one channel: subscriber ids in two parallel columns
//! sorted by (H3 resolution-9 cell, id), and the selection of the index
//! positions whose cell lies in a [`Region`]. A plan is a list of position
//! ranges, so it is cheap to shard and to resume with a cursor
//! ([`ChannelAudience::position_after`]).
//!
//! Selection semantics (exact): a subscriber is selected iff the centre of
//! its resolution-9 cell satisfies [`Region::contains`]. The scan never tests
//! subscribers one by one where it can avoid it: all res-9 descendants of an
//! H3 cell form one contiguous run of the sorted index, so the search starts
//! from the 122 base cells and, for each non-empty run, decides from a
//! conservative spherical cap around the cell (centre + 1.5 × its
//! circumradius, which holds every descendant's centre) whether the whole run
//! is in, out, or needs a closer look (the 7 children, or the few distinct
//! cells of a short run). This file must never allocate per subscriber, nor
//! hold personal data beyond the numeric id.

use std::ops::Range;

use h3o::{CellIndex, LatLng, Resolution};
use thiserror::Error;

use super::area::{CellCap, Region};
use super::geodesy::haversine_rad;
use super::polygon::Class;
use crate::alert::cap::Point;

/// The resolution of every cell in the index (≈ 0.1 km², edge ≈ 174 m).
pub const INDEX_RESOLUTION: Resolution = Resolution::Nine;

/// Conservative factor from a cell's circumradius to the radius of the cap
/// holding all its descendants' centres (ideal hexagons need ≈ 1.05; tested
/// over every base cell and random cells of every resolution in `tests`).
const DESCENDANT_FACTOR: f64 = 1.5;

/// Runs at most this long are tested cell by cell without classifying first.
const SCAN_RUN: usize = 8;
/// Mixed cells whose run is at most this long are tested cell by cell instead of split.
const SPLIT_RUN: usize = 48;

const RES_SHIFT: u32 = 52;
const RES_MASK: u64 = 0xF << RES_SHIFT;
/// Every direction digit set to 6 (the largest valid digit).
const ALL_SIXES: u64 = 0o666_666_666_666_666;

/// Why a subscriber could not be added.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AudienceError {
    #[error("({lat}, {lon}) is not a WGS 84 coordinate")]
    InvalidCoordinates { lat: f64, lon: f64 },
    #[error("{0:#x} is not an H3 cell at resolution 9 or finer")]
    InvalidCell(u64),
    #[error("an audience holds at most 2^32 - 1 subscribers")]
    Full,
    #[error("columns differ in length or are not sorted by (cell, id)")]
    Unsorted,
}

/// Bit offset of direction digit `res` (1..=15) in an H3 index.
#[inline]
const fn digit_shift(res: u8) -> u32 {
    3 * (15 - res as u32)
}

/// Inclusive bounds of the resolution-9 descendants of `cell` (resolution ≤ 9)
/// as raw u64: every res-9 descendant `d` satisfies `lo <= d <= hi`, and no
/// res-9 cell outside the subtree lies in between.
#[inline]
fn descendant_bounds(cell: u64, res: u8) -> (u64, u64) {
    let x = (cell & !RES_MASK) | (9 << RES_SHIFT);
    let mask = if res >= 9 {
        0
    } else {
        ((1u64 << (3 * (9 - u32::from(res)))) - 1) << digit_shift(9)
    };
    let lo = x & !mask;
    (lo, lo | (ALL_SIXES & mask))
}

/// Collects subscribers, then sorts them into a [`ChannelAudience`].
#[derive(Debug, Default)]
pub struct AudienceBuilder {
    /// (cell << 32 | id): sorting these sorts by (cell, id).
    keys: Vec<u128>,
}

impl AudienceBuilder {
    /// A builder with room for `n` subscribers.
    pub fn with_capacity(n: usize) -> AudienceBuilder {
        AudienceBuilder {
            keys: Vec::with_capacity(n),
        }
    }

    /// Adds subscriber `id` at a WGS 84 position (degrees).
    pub fn push(&mut self, id: u32, lat: f64, lon: f64) -> Result<(), AudienceError> {
        let bad = || AudienceError::InvalidCoordinates { lat, lon };
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(bad());
        }
        let ll = LatLng::new(lat, lon).map_err(|_| bad())?;
        self.push_valid(id, u64::from(ll.to_cell(INDEX_RESOLUTION)))
    }

    /// Adds subscriber `id` in an H3 cell (resolution 9, or finer: its res-9 parent is used).
    pub fn push_cell(&mut self, id: u32, cell: u64) -> Result<(), AudienceError> {
        let c = CellIndex::try_from(cell).map_err(|_| AudienceError::InvalidCell(cell))?;
        let c = c
            .parent(INDEX_RESOLUTION)
            .ok_or(AudienceError::InvalidCell(cell))?;
        self.push_valid(id, u64::from(c))
    }

    fn push_valid(&mut self, id: u32, cell: u64) -> Result<(), AudienceError> {
        if self.keys.len() >= u32::MAX as usize {
            return Err(AudienceError::Full);
        }
        self.keys.push((u128::from(cell) << 32) | u128::from(id));
        Ok(())
    }

    /// Number of subscribers pushed so far.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Sorts by (cell, id) and splits into columns.
    pub fn build(mut self) -> ChannelAudience {
        self.keys.sort_unstable();
        let mut cells = Vec::with_capacity(self.keys.len());
        let mut ids = Vec::with_capacity(self.keys.len());
        for k in self.keys {
            cells.push((k >> 32) as u64);
            ids.push(k as u32);
        }
        ChannelAudience { cells, ids }
    }
}

/// One channel's subscribers, sorted by (res-9 cell, id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelAudience {
    cells: Vec<u64>,
    ids: Vec<u32>,
}

/// Index positions selected for a region: sorted, disjoint, and never
/// adjacent (touching ranges are merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub ranges: Vec<Range<u32>>,
}

impl Selection {
    /// Number of selected positions.
    pub fn count(&self) -> usize {
        self.ranges.iter().map(|r| (r.end - r.start) as usize).sum()
    }

    /// True when nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Appends `r`, which must start at or after the last range's end.
    #[inline]
    fn push(&mut self, r: Range<u32>) {
        if r.start >= r.end {
            return;
        }
        match self.ranges.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => self.ranges.push(r),
        }
    }

    /// The positions in both `self` and `other` (e.g. a circle capped by a
    /// jurisdiction).
    pub fn intersection(&self, other: &Selection) -> Selection {
        let mut out = Selection::default();
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.ranges.get(i), other.ranges.get(j)) {
            out.push(a.start.max(b.start)..a.end.min(b.end));
            if a.end <= b.end {
                i += 1;
            } else {
                j += 1;
            }
        }
        out
    }

    /// The positions in `self` but not in `other` (e.g. a widened circle
    /// minus the circle already served).
    pub fn difference(&self, other: &Selection) -> Selection {
        let mut out = Selection::default();
        let mut j = 0;
        for r in &self.ranges {
            let mut start = r.start;
            while j < other.ranges.len() && other.ranges[j].end <= start {
                j += 1;
            }
            let mut k = j;
            while start < r.end {
                match other.ranges.get(k) {
                    Some(o) if o.start < r.end => {
                        out.push(start..o.start.max(start));
                        start = start.max(o.end);
                        k += 1;
                    }
                    _ => {
                        out.push(start..r.end);
                        start = r.end;
                    }
                }
            }
        }
        out
    }
}

impl ChannelAudience {
    /// Builds from columns already sorted by (cell, id), e.g. loaded from the store.
    pub fn from_sorted(cells: Vec<u64>, ids: Vec<u32>) -> Result<ChannelAudience, AudienceError> {
        if cells.len() != ids.len() || cells.len() > u32::MAX as usize {
            return Err(AudienceError::Unsorted);
        }
        let sorted = cells
            .windows(2)
            .zip(ids.windows(2))
            .all(|(c, i)| (c[0], i[0]) <= (c[1], i[1]));
        if !sorted {
            return Err(AudienceError::Unsorted);
        }
        for &c in &cells {
            match CellIndex::try_from(c) {
                Ok(ci) if ci.resolution() == INDEX_RESOLUTION => {}
                _ => return Err(AudienceError::InvalidCell(c)),
            }
        }
        Ok(ChannelAudience { cells, ids })
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True when the audience is empty.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The res-9 cell column.
    pub fn cells(&self) -> &[u64] {
        &self.cells
    }

    /// The subscriber id column.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The sort key at `pos`. Panics if `pos >= len()`.
    pub fn key_at(&self, pos: usize) -> (u64, u32) {
        (self.cells[pos], self.ids[pos])
    }

    /// The first position whose key is greater than `key` (where a cursor
    /// that last delivered `key` resumes, even after the index was rebuilt).
    pub fn position_after(&self, key: (u64, u32)) -> usize {
        let lo = self.cells.partition_point(|&c| c < key.0);
        let hi = lo + self.cells[lo..].partition_point(|&c| c <= key.0);
        lo + self.ids[lo..hi].partition_point(|&i| i <= key.1)
    }

    /// The positions of every subscriber whose res-9 cell centre is in `region`.
    pub fn select(&self, region: &Region) -> Selection {
        let mut out = Selection::default();
        if self.cells.is_empty() {
            return out;
        }
        let mut start = 0;
        while start < self.cells.len() {
            // Base cell of the first remaining subscriber: its run ends at its last descendant.
            // Keep mode and base cell, resolution 0, every digit unused (7).
            let base_cell =
                (self.cells[start] & !(RES_MASK | ((1u64 << 45) - 1))) | ((1u64 << 45) - 1);
            let (_, hi) = descendant_bounds(base_cell, 0);
            let end = start + self.cells[start..].partition_point(|&c| c <= hi);
            self.visit(region, base_cell, 0, start, end, &mut out);
            start = end;
        }
        out
    }

    /// Selects within the run `start..end` of `cell` (raw index at resolution `res`).
    fn visit(
        &self,
        region: &Region,
        cell: u64,
        res: u8,
        start: usize,
        end: usize,
        out: &mut Selection,
    ) {
        let run = end - start;
        if res >= 9 || run <= SCAN_RUN {
            self.scan(region, start, end, out);
            return;
        }
        let Some(cap) = cell_cap(cell) else {
            self.scan(region, start, end, out);
            return;
        };
        match region.classify(&cap) {
            Class::Inside => out.push(start as u32..end as u32),
            Class::Outside => {}
            Class::Mixed if run <= SPLIT_RUN => self.scan(region, start, end, out),
            Class::Mixed => {
                let child_res = res + 1;
                let shift = digit_shift(child_res);
                let base = (cell & !RES_MASK) | (u64::from(child_res) << RES_SHIFT);
                let mut i = start;
                while i < end {
                    let digit = (self.cells[i] >> shift) & 7;
                    let child = (base & !(7 << shift)) | (digit << shift);
                    let (_, hi) = descendant_bounds(child, child_res);
                    let j = i + self.cells[i..end].partition_point(|&c| c <= hi);
                    self.visit(region, child, child_res, i, j, out);
                    i = j;
                }
            }
        }
    }

    /// Tests each distinct res-9 cell of `start..end` by its centre.
    fn scan(&self, region: &Region, start: usize, end: usize, out: &mut Selection) {
        let mut i = start;
        while i < end {
            let c = self.cells[i];
            let mut j = i + 1;
            while j < end && self.cells[j] == c {
                j += 1;
            }
            if let Ok(ci) = CellIndex::try_from(c) {
                let ll = LatLng::from(ci);
                if region.contains(Point {
                    lat: ll.lat(),
                    lon: ll.lng(),
                }) {
                    out.push(i as u32..j as u32);
                }
            }
            i = j;
        }
    }
}

/// A spherical cap holding the centres of every descendant of `cell`.
pub(crate) fn cell_cap(cell: u64) -> Option<CellCap> {
    let ci = CellIndex::try_from(cell).ok()?;
    let centre = LatLng::from(ci);
    let (lat_rad, lon_rad) = (centre.lat_radians(), centre.lng_radians());
    let circum = ci
        .boundary()
        .iter()
        .map(|v| haversine_rad(lat_rad, lon_rad, v.lat_radians(), v.lng_radians()))
        .fold(0.0, f64::max);
    Some(CellCap {
        lat: centre.lat(),
        lon: centre.lng(),
        lat_rad,
        lon_rad,
        radius_km: DESCENDANT_FACTOR * circum * super::geodesy::EARTH_RADIUS_KM,
    })
}

#[cfg(test)]
mod tests;
