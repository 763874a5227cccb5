//! The gate every submission passes (DESIGN §4): envelope structure, key
//! status and signatures, then CAP parsing, sender, status, event codes,
//! area, jurisdiction and co-signing, issuing standard, replay window, the
//! authority's rate and the global ingest rate. Pure: bytes and a clock in, a
//! `VerifiedAlert` or a `Rejection` out (the registry is read once per
//! submission from `SharedRegistry`, so a reload never splits one check); nothing here touches the journal, so a rejection changes
//! nothing. Duplicate and reference checks need the journal and live in
//! `ingest::pipeline`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sha2::Digest;

use crate::alert::cap::{self, Alert, CapLimits, Info, MsgType};
use crate::alert::envelope::Envelope;
use crate::authority::registry::{Coverage, Registry};
use crate::authority::shared::SharedRegistry;
use crate::config::{PolicySettings, StandardSettings};
use crate::dispatch::rate::TokenBucket;
use crate::reject::{RejectCode, Rejection};
use crate::target::area::Region;
use crate::target::expand::Step;
use crate::target::geocode::GeocodeTable;

/// An alert that passed every check; only `Verifier::verify` builds one
/// (`non_exhaustive` keeps other crates from constructing it).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedAlert {
    /// The envelope exactly as received.
    pub envelope: Arc<[u8]>,
    /// SHA-256 of the envelope (duplicate detection).
    pub digest: [u8; 32],
    pub alert: Alert,
    /// `sender,identifier,sent`.
    pub alert_id: String,
    /// Id of the signing authority.
    pub authority: String,
    /// Union of every info block's areas (None only for a Cancel without area).
    pub region: Option<Region>,
    /// A co-signer lifted the jurisdiction and size limits.
    pub cosigned: bool,
}

/// Compiled issuing standard of one event code.
#[derive(Debug, Clone)]
struct Standard {
    require: Vec<String>,
    max_expires: Option<Duration>,
    on_update: FollowUp,
    on_cancel: FollowUp,
    widen: Vec<Step>,
}

/// Which text channels an Update or Cancel goes out on, besides push and partners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowUp {
    pub sms: bool,
    pub email: bool,
}

impl FollowUp {
    /// Every channel (an Alert).
    pub const ALL: FollowUp = FollowUp {
        sms: true,
        email: true,
    };
}

/// Verifies submissions against the registry and policy.
pub struct Verifier {
    registry: SharedRegistry,
    /// `ingest.max_alerts_per_sec` over all authorities (None: no global limit).
    global_rate: Option<TokenBucket>,
    geocodes: Arc<GeocodeTable>,
    standards: HashMap<String, Standard>,
    limits: CapLimits,
    policy: PolicySettings,
    max_envelope_bytes: usize,
}

fn reject(code: RejectCode, msg: impl Into<String>) -> Rejection {
    Rejection::new(code, msg)
}

/// Field names a standard may require.
pub const STANDARD_FIELDS: [&str; 8] = [
    "headline",
    "description",
    "instruction",
    "contact",
    "web",
    "expires",
    "area",
    "resource",
];

fn has_field(info: &Info, field: &str) -> bool {
    let nonempty = |s: &Option<String>| s.as_deref().is_some_and(|t| !t.trim().is_empty());
    match field {
        "headline" => nonempty(&info.headline),
        "description" => nonempty(&info.description),
        "instruction" => nonempty(&info.instruction),
        "contact" => nonempty(&info.contact),
        "web" => nonempty(&info.web),
        "expires" => info.expires.is_some(),
        "area" => info.areas.iter().any(|a| !a.is_empty()),
        "resource" => !info.resources.is_empty(),
        _ => false,
    }
}

impl Verifier {
    /// The text channels `alert` goes out on: all for an Alert; for an Update or Cancel,
    /// what the standards of its event codes allow (any info block's code may allow it).
    pub fn follow_up(&self, alert: &Alert) -> FollowUp {
        let pick = |s: &Standard| match alert.msg_type {
            MsgType::Update => s.on_update,
            MsgType::Cancel => s.on_cancel,
            _ => FollowUp::ALL,
        };
        if !matches!(alert.msg_type, MsgType::Update | MsgType::Cancel) {
            return FollowUp::ALL;
        }
        alert
            .infos
            .iter()
            .flat_map(|i| i.event_codes.iter())
            .filter_map(|c| self.standards.get(c.value.as_str()))
            .map(pick)
            .fold(FollowUp::default(), |a, b| FollowUp {
                sms: a.sms || b.sms,
                email: a.email || b.email,
            })
    }

    /// The widening steps of `alert` from `authority`: for the first event
    /// code with steps, the authority's own (which may be none), else the
    /// standard's. None: it does not widen (a Cancel never does).
    pub fn widen_steps(&self, authority: &str, alert: &Alert) -> Option<Vec<Step>> {
        if alert.msg_type == MsgType::Cancel {
            return None;
        }
        let registry = self.registry.load();
        let own = registry.by_id(authority).map(|a| &a.widen);
        alert
            .infos
            .iter()
            .flat_map(|i| i.event_codes.iter())
            .find_map(|c| {
                let code = c.value.as_str();
                match own.and_then(|w| w.get(code)) {
                    Some(steps) => Some(steps.as_slice()),
                    None => self.standards.get(code).map(|s| s.widen.as_slice()),
                }
            })
            .filter(|s| !s.is_empty())
            .map(<[Step]>::to_vec)
    }

    /// The jurisdiction of `authority`, None when it is no longer configured.
    pub fn jurisdiction(&self, authority: &str) -> Option<Arc<Coverage>> {
        self.registry
            .load()
            .by_id(authority)
            .map(|a| a.jurisdiction.clone())
    }

    /// The live registry (a reload swaps what it holds).
    pub fn registry(&self) -> &SharedRegistry {
        &self.registry
    }

    /// Limit accepted-or-not authenticated submissions over all authorities
    /// to `per_sec` (burst: one second's worth, at least 1).
    pub fn with_global_rate(mut self, per_sec: f64) -> Self {
        let burst = per_sec.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
        self.global_rate = Some(TokenBucket::new(per_sec, burst));
        self
    }

    /// Build a verifier; fails when a standard names an unknown field.
    pub fn new(
        registry: Arc<Registry>,
        geocodes: Arc<GeocodeTable>,
        standards: &[StandardSettings],
        policy: PolicySettings,
        max_envelope_bytes: usize,
    ) -> Result<Self, String> {
        let mut map = HashMap::new();
        for s in standards {
            for f in &s.require {
                if !STANDARD_FIELDS.contains(&f.as_str()) {
                    return Err(format!(
                        "standard {:?}: unknown field {f:?} (known: {})",
                        s.event_code,
                        STANDARD_FIELDS.join(", ")
                    ));
                }
            }
            map.insert(
                s.event_code.clone(),
                Standard {
                    require: s.require.clone(),
                    max_expires: s.max_expires_hours.map(Duration::hours),
                    on_update: FollowUp {
                        sms: s.sms_on_update,
                        email: s.email_on_update,
                    },
                    on_cancel: FollowUp {
                        sms: s.sms_on_cancel,
                        email: s.email_on_cancel,
                    },
                    widen: crate::config::widen_steps(&s.widen),
                },
            );
        }
        let limits = CapLimits {
            max_bytes: max_envelope_bytes,
            ..CapLimits::default()
        };
        Ok(Self {
            registry: SharedRegistry::new(registry),
            global_rate: None,
            geocodes,
            standards: map,
            limits,
            policy,
            max_envelope_bytes,
        })
    }

    /// The geocode table areas resolve against.
    pub fn geocodes(&self) -> &Arc<GeocodeTable> {
        &self.geocodes
    }

    /// Run every stateless check on one submission.
    pub fn verify(&self, bytes: &[u8], now: DateTime<Utc>) -> Result<VerifiedAlert, Rejection> {
        if bytes.len() > self.max_envelope_bytes {
            return Err(reject(
                RejectCode::EnvelopeTooLarge,
                format!("envelope exceeds {} bytes", self.max_envelope_bytes),
            ));
        }
        let env = Envelope::decode(bytes)
            .map_err(|e| reject(RejectCode::EnvelopeMalformed, e.to_string()))?;

        // One registry for the whole check, even if a reload swaps it meanwhile.
        let registry = self.registry.load();
        // Keys and signatures: every signature must verify.
        let mut signers = Vec::with_capacity(env.signers().len());
        for s in env.signers() {
            let key = registry.key(&s.kid).ok_or_else(|| {
                reject(
                    RejectCode::KeyUnknown,
                    format!("no authority has kid {:?}", s.kid),
                )
            })?;
            if key.revoked {
                return Err(reject(
                    RejectCode::KeyRevoked,
                    format!("kid {:?} is revoked", s.kid),
                ));
            }
            if key.not_after.is_some_and(|t| now > t) {
                return Err(reject(
                    RejectCode::KeyExpired,
                    format!("kid {:?} expired", s.kid),
                ));
            }
            if key.not_before.is_some_and(|t| now < t) {
                return Err(reject(
                    RejectCode::KeyNotYetValid,
                    format!("kid {:?} is not valid yet", s.kid),
                ));
            }
            if !env.verify(s, &key.key) {
                return Err(reject(
                    RejectCode::SignatureInvalid,
                    format!("signature by kid {:?} does not verify", s.kid),
                ));
            }
            signers.push(key.authority);
        }
        // `Envelope::decode` refuses an envelope without signers.
        let Some((&first, others)) = signers.split_first() else {
            return Err(reject(RejectCode::EnvelopeMalformed, "no signature"));
        };
        let primary = registry.authority(first);
        let cosigned = others
            .iter()
            .any(|&i| primary.cosigners.contains(&registry.authority(i).id));

        // Rate: after authentication, so nobody can drain another's budget.
        // The authority's own first, so one authority over its budget cannot
        // use up the global budget of the others.
        if !primary.rate.try_take(1) {
            return Err(reject(
                RejectCode::RateLimited,
                format!("authority {} exceeded its rate", primary.id),
            ));
        }
        if let Some(global) = &self.global_rate {
            if !global.try_take(1) {
                return Err(reject(
                    RejectCode::RateLimited,
                    "global ingest limit (ingest.max_alerts_per_sec) reached; retry shortly",
                ));
            }
        }

        let alert = cap::parse(env.payload(), &self.limits).map_err(|e| {
            let code = RejectCode::from_wire(e.code()).unwrap_or(RejectCode::CapInvalid);
            reject(code, e.to_string())
        })?;

        if !registry.may_use_sender(first, &alert.sender) {
            return Err(reject(
                RejectCode::SenderMismatch,
                format!("authority {} may not use this sender", primary.id),
            ));
        }
        if !primary.statuses.contains(&alert.status) {
            return Err(reject(
                RejectCode::StatusNotAllowed,
                format!(
                    "authority {} may not issue status {:?}",
                    primary.id, alert.status
                ),
            ));
        }

        // Replay window on `sent`.
        let sent = alert.sent.with_timezone(&Utc);
        if sent < now - Duration::seconds(self.policy.replay_window_secs) {
            return Err(reject(
                RejectCode::SentOutOfWindow,
                format!(
                    "sent is older than the replay window of {} s",
                    self.policy.replay_window_secs
                ),
            ));
        }
        if sent > now + Duration::seconds(self.policy.future_skew_secs) {
            return Err(reject(
                RejectCode::SentOutOfWindow,
                "sent is in the future beyond the allowed clock skew",
            ));
        }

        // Area, jurisdiction, co-signing.
        let areas: Vec<_> = alert
            .infos
            .iter()
            .flat_map(|i| i.areas.iter().cloned())
            .collect();
        let region = if areas.iter().all(|a| a.is_empty()) {
            if alert.msg_type == MsgType::Cancel {
                None
            } else {
                return Err(reject(
                    RejectCode::AreaEmpty,
                    "no polygon, circle or geocode",
                ));
            }
        } else {
            let nonempty: Vec<_> = areas.into_iter().filter(|a| !a.is_empty()).collect();
            let r = Region::from_areas(&nonempty, &self.geocodes).map_err(|e| {
                let code = RejectCode::from_wire(e.code()).unwrap_or(RejectCode::AreaEmpty);
                reject(code, e.to_string())
            })?;
            if !cosigned && !primary.jurisdiction.contains_region(&r) {
                return Err(reject(
                    RejectCode::OutsideJurisdiction,
                    format!("area is outside the jurisdiction of {}", primary.id),
                ));
            }
            if let Some(max) = primary.max_area_km2 {
                if !cosigned && r.approx_area_km2() > max {
                    return Err(reject(
                        RejectCode::CosignRequired,
                        format!("areas over {max} km² need a co-signature"),
                    ));
                }
            }
            Some(r)
        };

        // Events and issuing standards, per info block.
        for info in &alert.infos {
            let codes: Vec<&str> = info.event_codes.iter().map(|v| v.value.as_str()).collect();
            if !codes.iter().any(|c| primary.events.contains(*c)) {
                return Err(reject(
                    RejectCode::EventNotAllowed,
                    format!(
                        "authority {} may not issue event {:?}",
                        primary.id,
                        codes.first().copied().unwrap_or("(no eventCode)")
                    ),
                ));
            }
            // Issuing standards govern what goes out; a Cancel only ends it.
            if alert.msg_type == MsgType::Cancel {
                continue;
            }
            for c in &codes {
                if let Some(std) = self.standards.get(*c) {
                    for f in &std.require {
                        if !has_field(info, f) {
                            return Err(reject(
                                RejectCode::StandardNotMet,
                                format!("event {c} requires {f} in every info block"),
                            ));
                        }
                    }
                    if let (Some(max), Some(exp)) = (std.max_expires, info.expires) {
                        if exp.with_timezone(&Utc) > sent + max {
                            return Err(reject(
                                RejectCode::StandardNotMet,
                                format!(
                                    "event {c}: expires must be within {} h of sent",
                                    max.num_hours()
                                ),
                            ));
                        }
                    }
                }
            }
        }

        let digest: [u8; 32] = sha2::Sha256::digest(bytes).into();
        Ok(VerifiedAlert {
            envelope: Arc::from(bytes),
            digest,
            alert_id: alert.alert_id(),
            authority: primary.id.clone(),
            alert,
            region,
            cosigned,
        })
    }
}
