//! Widening radius (DESIGN §5), as China's missing-child platform does: for
//! events configured so, the area grows with the time since the first alert
//! of a chain: a circle round the last-seen point of, say, 100 km at 0 h,
//! 200 km at 1 h, 300 km at 2 h and 500 km at 3 h. An [`Expansion`] is the
//! schedule of one alert, stored in the journal with it, so its steps survive
//! restarts. Stage 0 is what the alert covers when accepted; each later stage
//! reaches only the ring its step newly covers. Plain data and geometry: no
//! clock of its own (callers pass `now` and the clock speed), no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::area::{AreaError, Region};
use crate::alert::cap::Point;

/// At most this many steps per schedule.
pub const MAX_STEPS: usize = 16;
/// No step may reach further than this.
pub const MAX_RADIUS_KM: f64 = 5000.0;
/// Circles reached by earlier alerts of a chain that an Update remembers.
pub const MAX_REACHED: usize = 32;

/// One step of a schedule: from `after_secs` after the first alert on, the
/// circle has `radius_km`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub after_secs: u64,
    pub radius_km: f64,
}

/// Why a configured schedule is refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StepsError {
    #[error("a widening schedule needs 1 to {MAX_STEPS} steps, not {0}")]
    Count(usize),
    #[error("step {0}: radius must be above 0 and at most {MAX_RADIUS_KM} km")]
    Radius(usize),
    #[error("step {0}: steps must come later and reach further than the one before")]
    Order(usize),
}

/// Checks a configured schedule: 1–16 steps, each later and wider than the last.
pub fn validate_steps(steps: &[Step]) -> Result<(), StepsError> {
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(StepsError::Count(steps.len()));
    }
    for (i, s) in steps.iter().enumerate() {
        if !(s.radius_km > 0.0 && s.radius_km <= MAX_RADIUS_KM) {
            return Err(StepsError::Radius(i));
        }
        if i > 0 {
            let p = steps[i - 1];
            if s.after_secs <= p.after_secs || s.radius_km <= p.radius_km {
                return Err(StepsError::Order(i));
            }
        }
    }
    Ok(())
}

/// A circle as stored in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CircleRecord {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

impl CircleRecord {
    fn region(&self) -> Result<Region, AreaError> {
        Region::circle(
            Point {
                lat: self.lat,
                lon: self.lon,
            },
            self.radius_km,
        )
    }
}

/// The widening schedule of one alert, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expansion {
    /// The centre (the last-seen point).
    pub lat: f64,
    pub lon: f64,
    /// Time 0 of the schedule: acceptance of the first alert of the chain.
    pub origin: DateTime<Utc>,
    /// Steps from `origin`; the first is always at 0 (radius 0 = the alert's own area only).
    pub steps: Vec<Step>,
    /// The step stage 0 covers (an Update joins a schedule already under way).
    pub first: usize,
    /// Capped by the issuing authority's jurisdiction (not co-signed).
    pub capped: bool,
    /// Circles earlier alerts of the chain reached; only an Update has them.
    #[serde(default)]
    pub reached_before: Vec<CircleRecord>,
}

/// Seconds of simulated time between `origin` and `now` at clock `speed`.
fn simulated_secs(origin: DateTime<Utc>, now: DateTime<Utc>, speed: f64) -> f64 {
    let real = (now - origin).num_milliseconds().max(0) as f64 / 1000.0;
    real * speed.max(f64::MIN_POSITIVE)
}

impl Expansion {
    /// The schedule of an alert centred on `center` and accepted at `now`:
    /// a new chain starting now, or, for an Update (`prior`), the chain it
    /// continues, remembering what the prior alert has reached by now.
    /// `configured` must have passed [`validate_steps`].
    pub fn new(
        center: Point,
        configured: &[Step],
        now: DateTime<Utc>,
        speed: f64,
        capped: bool,
        prior: Option<&Expansion>,
    ) -> Expansion {
        let mut steps = Vec::with_capacity(configured.len() + 1);
        if configured.first().is_none_or(|s| s.after_secs > 0) {
            steps.push(Step {
                after_secs: 0,
                radius_km: 0.0,
            });
        }
        steps.extend_from_slice(configured);
        let (origin, reached_before) = match prior {
            Some(p) => {
                let mut r = p.reached_before.clone();
                let radius = p.radius_at(now, speed);
                if radius > 0.0 && r.len() < MAX_REACHED {
                    r.push(CircleRecord {
                        lat: p.lat,
                        lon: p.lon,
                        radius_km: radius,
                    });
                }
                (p.origin, r)
            }
            None => (now, Vec::new()),
        };
        let mut e = Expansion {
            lat: center.lat,
            lon: center.lon,
            origin,
            steps,
            first: 0,
            capped,
            reached_before,
        };
        e.first = e.steps_due(now, speed).saturating_sub(1);
        e
    }

    /// Number of stages (stage 0 included).
    pub fn stages(&self) -> usize {
        self.steps.len().saturating_sub(self.first)
    }

    /// Steps (not stages) whose time has come at `now`.
    fn steps_due(&self, now: DateTime<Utc>, speed: f64) -> usize {
        let t = simulated_secs(self.origin, now, speed);
        self.steps
            .iter()
            .take_while(|s| s.after_secs as f64 <= t)
            .count()
    }

    /// Stages whose time has come at `now` (at least stage 0).
    pub fn stages_due(&self, now: DateTime<Utc>, speed: f64) -> usize {
        self.steps_due(now, speed)
            .saturating_sub(self.first)
            .clamp(1, self.stages().max(1))
    }

    /// When `stage` is due, in real time at clock `speed`.
    pub fn due_at(&self, stage: usize, speed: f64) -> DateTime<Utc> {
        let after = self
            .steps
            .get(self.first + stage)
            .map_or(0, |s| s.after_secs);
        let real_ms = (after as f64 * 1000.0 / speed.max(f64::MIN_POSITIVE)).min(1e15);
        self.origin + chrono::Duration::milliseconds(real_ms as i64)
    }

    /// The radius of the latest step due at `now`.
    pub fn radius_at(&self, now: DateTime<Utc>, speed: f64) -> f64 {
        let n = self.steps_due(now, speed).max(self.first + 1);
        self.steps.get(n - 1).map_or(0.0, |s| s.radius_km)
    }

    /// The radius of `stage`'s circle.
    pub fn radius(&self, stage: usize) -> f64 {
        self.steps
            .get(self.first + stage)
            .map_or(0.0, |s| s.radius_km)
    }

    fn circle(&self, stage: usize) -> Result<Option<Region>, AreaError> {
        let r = self.radius(stage);
        if r <= 0.0 {
            return Ok(None);
        }
        let c = CircleRecord {
            lat: self.lat,
            lon: self.lon,
            radius_km: r,
        };
        c.region().map(Some)
    }

    /// Everything reached once `stage` has gone out: `base` (the alert's own
    /// area), the stage's circle, and what earlier alerts of the chain
    /// reached. Stage `s` delivers to `covered(s)` less `covered(s - 1)`.
    /// None when all three are absent.
    pub fn covered(
        &self,
        stage: usize,
        base: Option<&Region>,
    ) -> Result<Option<Region>, AreaError> {
        Ok(union(
            union(base.cloned(), self.circle(stage)?),
            self.reached_before()?,
        ))
    }

    /// What the earlier alerts of the chain reached (an Update's stage 0
    /// reaches it again only on channels that carry follow-ups).
    pub fn reached_before(&self) -> Result<Option<Region>, AreaError> {
        let mut out = None;
        for c in &self.reached_before {
            out = union(out, Some(c.region()?));
        }
        Ok(out)
    }
}

fn union(a: Option<Region>, b: Option<Region>) -> Option<Region> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.union(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<Step> {
        [(0, 100.0), (3600, 200.0), (7200, 300.0), (10800, 500.0)]
            .iter()
            .map(|&(after_secs, radius_km)| Step {
                after_secs,
                radius_km,
            })
            .collect()
    }

    const GZ: Point = Point {
        lat: 23.13,
        lon: 113.26,
    };

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn validation() {
        assert_eq!(validate_steps(&steps()), Ok(()));
        assert_eq!(validate_steps(&[]), Err(StepsError::Count(0)));
        let mut s = steps();
        s[2].radius_km = 150.0;
        assert_eq!(validate_steps(&s), Err(StepsError::Order(2)));
        let mut s = steps();
        s[1].after_secs = 0;
        assert_eq!(validate_steps(&s), Err(StepsError::Order(1)));
        let mut s = steps();
        s[0].radius_km = f64::NAN;
        assert_eq!(validate_steps(&s), Err(StepsError::Radius(0)));
    }

    #[test]
    fn schedule_times_and_stages() {
        let now = t("2026-11-29T08:00:00Z");
        let e = Expansion::new(GZ, &steps(), now, 1.0, true, None);
        assert_eq!((e.first, e.stages()), (0, 4));
        assert_eq!(e.due_at(2, 1.0), t("2026-11-29T10:00:00Z"));
        assert_eq!(e.due_at(2, 3600.0), t("2026-11-29T08:00:02Z"));
        assert_eq!(e.stages_due(now, 1.0), 1);
        assert_eq!(e.stages_due(t("2026-11-29T09:59:59Z"), 1.0), 2);
        assert_eq!(e.stages_due(t("2026-11-30T00:00:00Z"), 1.0), 4);
        assert_eq!(e.radius_at(t("2026-11-29T10:30:00Z"), 1.0), 300.0);
        assert_eq!(e.radius(3), 500.0);
    }

    #[test]
    fn a_late_first_step_starts_with_the_area_alone() {
        let s = [Step {
            after_secs: 600,
            radius_km: 50.0,
        }];
        let now = t("2026-11-29T08:00:00Z");
        let e = Expansion::new(GZ, &s, now, 1.0, false, None);
        assert_eq!(e.stages(), 2);
        assert!(e.covered(0, None).unwrap().is_none());
        assert!(e.covered(1, None).unwrap().is_some());
    }

    #[test]
    fn an_update_joins_the_chain_and_remembers_its_reach() {
        let t0 = t("2026-11-29T08:00:00Z");
        let a = Expansion::new(GZ, &steps(), t0, 1.0, true, None);
        let moved = Point {
            lat: 24.0,
            lon: 114.0,
        };
        let u = Expansion::new(
            moved,
            &steps(),
            t("2026-11-29T09:30:00Z"),
            1.0,
            true,
            Some(&a),
        );
        assert_eq!(u.origin, t0);
        assert_eq!((u.first, u.stages()), (1, 3));
        assert_eq!(u.radius(0), 200.0);
        assert_eq!(
            u.reached_before,
            vec![CircleRecord {
                lat: GZ.lat,
                lon: GZ.lon,
                radius_km: 200.0
            }]
        );
        assert_eq!(u.due_at(1, 1.0), t("2026-11-29T10:00:00Z"));
        // Stage 0 reaches the original's reach again, and stage 1 leaves it out.
        let served = u.covered(0, None).unwrap().unwrap();
        let near_old = Point {
            lat: 22.0,
            lon: 113.26,
        }; // ~126 km south of the old centre, ~230 km from the new one
        assert!(served.contains(near_old));
        assert!(u.reached_before().unwrap().unwrap().contains(near_old));
        let far_new = Point {
            lat: 24.0,
            lon: 116.2,
        }; // ~227 km east of the new centre
        assert!(!served.contains(far_new));
        assert!(u.covered(1, None).unwrap().unwrap().contains(far_new));
    }
}
