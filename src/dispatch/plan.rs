//! Planning: an accepted alert's region becomes, per channel, a list of
//! index ranges (subscribers) or partner indexes. Only `plan` builds a
//! `Plan`; it allocates per range, never per recipient.

use std::sync::Arc;
use std::time::Instant;

use crate::alert::cap::{MsgType, Status};
use crate::authority::policy::FollowUp;
use crate::authority::Coverage;
use crate::channel::{Channel, PartnerRole, Reach, SubscriberKind};
use crate::subscribers::Audience;
use crate::target::area::Region;
use crate::target::audience::Selection;

/// A partner that receives alerts (feeds; later label printers).
#[derive(Debug, Clone)]
pub struct Partner {
    pub name: String,
    pub endpoint: String,
    pub secret: Vec<u8>,
    pub coverage: Coverage,
    /// Receives Test and Exercise alerts too.
    pub tests: bool,
    /// Takes the partner feed.
    pub feed: bool,
    /// Prints parcel labels.
    pub label: Option<crate::config::LabelPartnerSettings>,
}

impl Partner {
    /// Whether the partner plays `role`.
    pub fn plays(&self, role: PartnerRole) -> bool {
        match role {
            PartnerRole::Feed => self.feed,
            PartnerRole::Label => self.label.is_some(),
        }
    }
}

/// What one job walks through.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Index ranges of one subscriber kind.
    Index {
        kind: SubscriberKind,
        selection: Selection,
    },
    /// Partner indexes, ascending.
    Partners(Vec<u32>),
}

impl Targets {
    /// Planned deliveries.
    pub fn count(&self) -> u64 {
        match self {
            Self::Index { selection, .. } => selection.count() as u64,
            Self::Partners(p) => p.len() as u64,
        }
    }
}

/// One channel's share of an alert.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub channel: &'static str,
    pub targets: Targets,
}

/// Every job of one alert.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub jobs: Vec<JobPlan>,
    /// Seconds spent planning.
    pub seconds: f64,
}

impl Plan {
    /// Planned deliveries per channel.
    pub fn targeted(&self) -> std::collections::BTreeMap<String, u64> {
        self.jobs
            .iter()
            .map(|j| (j.channel.to_string(), j.targets.count()))
            .collect()
    }

    /// Planned deliveries over all channels.
    pub fn total(&self) -> u64 {
        self.jobs.iter().map(|j| j.targets.count()).sum()
    }
}

/// What one plan covers: the area, less what earlier stages of a widening
/// alert served, capped by the authority's jurisdiction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// The area to reach; None for a Cancel without area (partners only).
    pub region: Option<&'a Region>,
    /// Covered by earlier stages of this alert: nobody there gets this plan.
    pub served: Option<&'a Region>,
    /// Reached by the alert an Update continues: text channels that do not
    /// carry follow-ups leave it out (and reach only newcomers).
    pub reached_before: Option<&'a Region>,
    /// Jurisdiction cap of a widening alert that is not co-signed.
    pub clip: Option<&'a Region>,
}

impl<'a> Scope<'a> {
    /// Just an area.
    pub fn area(region: Option<&'a Region>) -> Self {
        Self {
            region,
            ..Self::default()
        }
    }
}

/// Plan an alert over `channels`. Test/Exercise alerts go only to partners
/// that opted into tests (subscribers have no test opt-in yet). An Update or a
/// Cancel reaches push subscribers and partners in its area, and SMS and e-mail
/// subscribers only when `follow_up` (the event's standard) allows, or, for an
/// Update that widened past what its chain reached before, in the new part; a
/// Cancel without area goes to every partner.
pub fn plan(
    scope: &Scope<'_>,
    status: Status,
    msg_type: MsgType,
    follow_up: FollowUp,
    audience: &Audience,
    partners: &[Partner],
    channels: &[Arc<dyn Channel>],
) -> Plan {
    let t0 = Instant::now();
    let public = status == Status::Actual;
    let mut jobs = Vec::with_capacity(channels.len());
    for ch in channels {
        let targets = match ch.reach() {
            Reach::Subscribers(kind) => {
                let text_allowed = match kind {
                    SubscriberKind::Apns | SubscriberKind::Fcm => true,
                    SubscriberKind::Sms => follow_up.sms,
                    SubscriberKind::Email => follow_up.email,
                };
                let follow = matches!(msg_type, MsgType::Update | MsgType::Cancel);
                let newcomers_only = follow && !text_allowed;
                let newcomers = msg_type == MsgType::Update && scope.reached_before.is_some();
                if !public || (newcomers_only && !newcomers) {
                    continue;
                }
                let Some(r) = scope.region else { continue };
                let idx = audience.channel(kind);
                let mut selection = idx.select(r);
                if let Some(c) = scope.clip {
                    selection = selection.intersection(&idx.select(c));
                }
                if let Some(s) = scope.served {
                    selection = selection.difference(&idx.select(s));
                }
                if let (true, Some(b)) = (newcomers_only, scope.reached_before) {
                    selection = selection.difference(&idx.select(b));
                }
                Targets::Index { kind, selection }
            }
            Reach::Partners(role) => Targets::Partners(
                partners
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.plays(role))
                    .filter(|(_, p)| public || p.tests)
                    .filter(|(_, p)| scope.region.is_none_or(|r| p.coverage.intersects(r)))
                    .filter(|(_, p)| scope.clip.is_none_or(|c| p.coverage.intersects(c)))
                    .filter(|(_, p)| scope.served.is_none_or(|s| !p.coverage.intersects(s)))
                    .map(|(i, _)| i as u32)
                    .collect(),
            ),
        };
        jobs.push(JobPlan {
            channel: ch.name(),
            targets,
        });
    }
    Plan {
        jobs,
        seconds: t0.elapsed().as_secs_f64(),
    }
}
