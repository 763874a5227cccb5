//! Ties a widening schedule to an alert: builds the [`Expansion`] of a newly
//! verified alert (a new chain, or the chain an Update or Cancel continues),
//! and turns a journaled one back into a [`Widening`] (area, jurisdiction
//! cap, clock) and the scope of its stage 0. The geometry lives in
//! `target::expand`, the timing of later stages in the dispatcher.

use chrono::{DateTime, Utc};

use crate::alert::cap::{Alert, Point};
use crate::authority::{Coverage, Verifier};
use crate::dispatch::{Scope, Widening};
use crate::journal::{Journal, JournalError};
use crate::target::area::Region;
use crate::target::expand::Expansion;

/// The last-seen point: the centre of the alert's first `<circle>`.
fn center(alert: &Alert) -> Option<Point> {
    alert
        .infos
        .iter()
        .flat_map(|i| i.areas.iter())
        .flat_map(|a| a.circles.iter())
        .map(|c| c.center)
        .next()
}

/// The schedule of the latest alert `alert` references that widens, if any.
pub fn prior_expansion(
    journal: &Journal,
    alert: &Alert,
) -> Result<Option<Expansion>, JournalError> {
    let mut out = None;
    for r in &alert.references {
        let Some(seq) = journal.seq_of(&r.alert_id())? else {
            continue;
        };
        if let Some(e) = journal.alert(seq)?.and_then(|rec| rec.expansion) {
            out = Some(e);
        }
    }
    Ok(out)
}

/// The schedule of an alert from `authority` accepted `now`: its event's
/// steps round its circle's centre, continuing `prior`'s chain; or, for an
/// Update or Cancel of a widening chain without steps of its own, just the
/// memory of what the chain reached (so it reaches them again). None when
/// nothing widens. Capped by the jurisdiction unless `cosigned`.
pub fn expansion_for(
    verifier: &Verifier,
    authority: &str,
    alert: &Alert,
    cosigned: bool,
    prior: Option<&Expansion>,
    now: DateTime<Utc>,
    speed: f64,
) -> Option<Expansion> {
    let capped = !cosigned
        && matches!(
            verifier.jurisdiction(authority).as_deref(),
            Some(Coverage::Region(_)) | None
        );
    let prior_center = prior.map(|p| Point {
        lat: p.lat,
        lon: p.lon,
    });
    let c = center(alert).or(prior_center);
    match (verifier.widen_steps(authority, alert), prior) {
        (Some(steps), _) => c.map(|c| Expansion::new(c, &steps, now, speed, capped, prior)),
        (None, Some(p)) => Some(Expansion::new(
            c.unwrap_or(Point {
                lat: p.lat,
                lon: p.lon,
            }),
            &[],
            now,
            speed,
            capped,
            Some(p),
        )),
        (None, None) => None,
    }
}

/// A journaled schedule, ready to run: `base` is the alert's own area.
/// When the schedule is capped but the authority is no longer configured,
/// its jurisdiction is unknown: the alert keeps its own area and does not
/// widen (logged).
pub fn widening(
    verifier: &Verifier,
    authority: &str,
    expansion: Expansion,
    base: Option<Region>,
    speed: f64,
) -> Option<Widening> {
    let clip = match (
        expansion.capped,
        verifier.jurisdiction(authority).as_deref(),
    ) {
        (false, _) | (true, Some(Coverage::Everywhere)) => None,
        (true, Some(Coverage::Region(r))) => Some(r.clone()),
        (true, None) => {
            tracing::error!(
                authority,
                "widening alert of an authority no longer configured: its own area only"
            );
            return None;
        }
    };
    Some(Widening {
        expansion,
        base,
        clip,
        speed,
    })
}

/// Stage 0 of a widening alert: its area, its first circle and what the
/// chain reached before, capped; the area alone without widening.
pub struct Stage0 {
    region: Option<Region>,
    reached_before: Option<Region>,
}

impl Stage0 {
    /// Compile stage 0 of `w` (or of a plain `base` area).
    pub fn new(w: Option<&Widening>, base: Option<&Region>) -> Self {
        let Some(w) = w else {
            return Self {
                region: base.cloned(),
                reached_before: None,
            };
        };
        // Circles of a journaled schedule were valid when it was built.
        let region = w
            .expansion
            .covered(0, w.base.as_ref())
            .unwrap_or_else(|_| w.base.clone());
        let reached_before = w.expansion.reached_before().unwrap_or(None);
        Self {
            region,
            reached_before,
        }
    }

    /// The plan scope of stage 0.
    pub fn scope<'a>(&'a self, w: Option<&'a Widening>) -> Scope<'a> {
        Scope {
            region: self.region.as_ref(),
            served: None,
            reached_before: self.reached_before.as_ref(),
            clip: w.and_then(|w| w.clip.as_ref()),
        }
    }
}
