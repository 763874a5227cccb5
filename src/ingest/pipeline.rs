//! From envelope bytes to a receipt: verify (policy), plan (targeting),
//! journal durably (group commit), then start the fan-out and answer. A
//! rejection at any step leaves the journal untouched. Also resumes live
//! alerts (and the pending steps of widening ones) from the journal at start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::histogram::Histogram;

use crate::alert::cap::{self, Alert, CapLimits};
use crate::alert::envelope::Envelope;
use crate::authority::Verifier;
use crate::channel::AlertContent;
use crate::dispatch::Dispatcher;
use crate::ingest::protocol::Receipt;
use crate::ingest::widening::{self, Stage0};
use crate::journal::{
    AlertRecord, CommitOutcome, GroupCommitter, GroupTimes, Journal, JournalError, NewAlert,
};
use crate::metrics::{IngestStages, Metrics};
use crate::reject::{RejectCode, Rejection};
use crate::target::area::Region;

/// The ingest pipeline; cheap to share behind an `Arc`.
pub struct Pipeline {
    verifier: Verifier,
    committer: GroupCommitter,
    dispatcher: Dispatcher,
    journal: Arc<Journal>,
    metrics: Metrics,
    /// Clock speed of widening steps (`dispatch.clock_speed`).
    clock_speed: f64,
}

fn latest_expiry(alert: &Alert) -> Option<DateTime<Utc>> {
    alert
        .infos
        .iter()
        .filter_map(|i| i.expires.map(|e| e.with_timezone(&Utc)))
        .max()
}

impl Pipeline {
    /// Assemble the pipeline.
    pub fn new(
        verifier: Verifier,
        committer: GroupCommitter,
        dispatcher: Dispatcher,
        journal: Arc<Journal>,
        metrics: Metrics,
        clock_speed: f64,
    ) -> Self {
        Self {
            verifier,
            committer,
            dispatcher,
            journal,
            metrics,
            clock_speed,
        }
    }

    /// The dispatcher (for progress views).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Handle one submission end to end and return its receipt.
    pub async fn submit(&self, bytes: &[u8]) -> Receipt {
        let t0 = Instant::now();
        let mut steps = Steps {
            stages: &self.metrics.ingest_stages,
            began: t0,
            last: t0,
        };
        let receipt = match self.submit_inner(bytes, &mut steps).await {
            Ok(r) => r,
            Err(rej) => {
                tracing::info!(code = rej.code.as_str(), "submission rejected");
                self.metrics.alert_result(rej.code.as_str());
                Receipt::rejected(&rej)
            }
        };
        let t_end = Instant::now();
        if let Receipt::Accepted { .. } = receipt {
            steps.stages.start.observe(secs(steps.last, t_end));
        }
        self.metrics.ingest_seconds.observe(secs(t0, t_end));
        receipt
    }

    async fn submit_inner(
        &self,
        bytes: &[u8],
        steps: &mut Steps<'_>,
    ) -> Result<Receipt, Rejection> {
        let verified = self.verifier.verify(bytes, Utc::now());
        steps.lap(|s| &s.verify);
        let v = verified?;
        let accepted_at = Utc::now();
        let prior = widening::prior_expansion(&self.journal, &v.alert).map_err(|e| {
            steps.lap(|s| &s.plan);
            journal_rejection(&e, "the journal could not be read")
        })?;
        let expansion = widening::expansion_for(
            &self.verifier,
            &v.authority,
            &v.alert,
            v.cosigned,
            prior.as_ref(),
            accepted_at,
            self.clock_speed,
        );
        let widen = expansion.clone().and_then(|e| {
            widening::widening(
                &self.verifier,
                &v.authority,
                e,
                v.region.clone(),
                self.clock_speed,
            )
        });
        let stage0 = Stage0::new(widen.as_ref(), v.region.as_ref());
        let plan = self.dispatcher.plan(
            &stage0.scope(widen.as_ref()),
            v.alert.status,
            v.alert.msg_type,
            self.verifier.follow_up(&v.alert),
        );
        let targeted = plan.targeted();
        let new = NewAlert {
            alert_id: v.alert_id.clone(),
            receipt: ulid::Ulid::new().to_string(),
            authority: v.authority.clone(),
            digest: hex::encode(v.digest),
            envelope: v.envelope.clone(),
            accepted_at,
            expires: latest_expiry(&v.alert),
            msg_type: v.alert.msg_type,
            status: format!("{:?}", v.alert.status),
            references: v.alert.references.iter().map(|r| r.alert_id()).collect(),
            targeted,
            expansion,
        };
        steps.lap(|s| &s.plan);
        let (outcome, group) = self.committer.commit_timed(new).await;
        if let Some(group) = group {
            steps.journal(group);
        }
        let outcome =
            outcome.map_err(|e| journal_rejection(&e, "the journal could not store the alert"))?;
        match outcome {
            CommitOutcome::Accepted(rec) => {
                self.metrics.alert_result("accepted");
                for &r in &rec.references {
                    self.dispatcher.cancel(r);
                }
                let total = plan.total();
                tracing::info!(seq = rec.seq, msg_type = %rec.msg_type, targeted = total, "alert accepted");
                let content = Arc::new(AlertContent {
                    seq: rec.seq,
                    alert_id: rec.alert_id.clone(),
                    receipt: rec.receipt.clone(),
                    envelope: v.envelope,
                    expires: rec.expires,
                    alert: v.alert,
                    accepted_at: steps.began,
                });
                self.dispatcher
                    .start(content, plan, &BTreeMap::new(), widen);
                Ok(Receipt::Accepted {
                    id: rec.alert_id,
                    receipt: rec.receipt,
                    targeted: total,
                })
            }
            CommitOutcome::Duplicate(rec) => {
                self.metrics.alert_result("duplicate");
                Ok(Receipt::Duplicate {
                    targeted: rec.targeted.values().sum(),
                    id: rec.alert_id,
                    receipt: rec.receipt,
                })
            }
            CommitOutcome::Rejected(r) => Err(r),
        }
    }

    /// Resume every live alert in the journal from its cursors.
    pub fn resume(&self) -> Result<usize, JournalError> {
        let mut n = 0;
        let mut live: Vec<AlertRecord> = self
            .journal
            .alerts(usize::MAX)?
            .into_iter()
            .filter(|a| a.state.is_live())
            .collect();
        live.sort_by_key(|a| a.seq);
        for rec in live {
            let Some(env) = self.journal.envelope(rec.seq)? else {
                continue;
            };
            let (alert, region) = match reparse(&env, self.verifier.geocodes()) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(seq = rec.seq, error = %e, "journaled alert no longer parses; skipped");
                    continue;
                }
            };
            let widen = rec.expansion.clone().and_then(|e| {
                widening::widening(
                    &self.verifier,
                    &rec.authority,
                    e,
                    region.clone(),
                    self.clock_speed,
                )
            });
            let stage0 = Stage0::new(widen.as_ref(), region.as_ref());
            let plan = self.dispatcher.plan(
                &stage0.scope(widen.as_ref()),
                alert.status,
                alert.msg_type,
                self.verifier.follow_up(&alert),
            );
            let cursors = self.journal.cursors(rec.seq)?;
            let content = Arc::new(AlertContent {
                seq: rec.seq,
                alert_id: rec.alert_id.clone(),
                receipt: rec.receipt.clone(),
                envelope: Arc::from(env.as_slice()),
                expires: rec.expires,
                alert,
                accepted_at: Instant::now(),
            });
            tracing::info!(seq = rec.seq, "resuming alert from journal");
            self.dispatcher.start(content, plan, &cursors, widen);
            n += 1;
        }
        Ok(n)
    }
}

/// Seconds from `a` to `b`, for a histogram.
fn secs(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

/// The steps of one submission timed as one chain of instants, each step
/// starting where the one before ended, so that an accepted alert's steps
/// add up to its `tocsin_ingest_seconds`.
struct Steps<'a> {
    stages: &'a IngestStages,
    /// When the submission began (its envelope read).
    began: Instant,
    /// When the step being timed began.
    last: Instant,
}

impl Steps<'_> {
    /// End the step `which` now; the next one begins.
    fn lap(&mut self, which: impl Fn(&IngestStages) -> &Histogram) {
        let now = Instant::now();
        which(self.stages).observe(secs(self.last, now));
        self.last = now;
    }

    /// End the journal's three steps: waiting for the writer (until its
    /// group began), the group's write, and the submission running again.
    fn journal(&mut self, group: GroupTimes) {
        let now = Instant::now();
        let s = self.stages;
        s.journal_queue.observe(secs(self.last, group.began));
        s.journal_write.observe(secs(group.began, group.ended));
        s.journal_resume.observe(secs(group.ended, now));
        self.last = now;
    }
}

/// The rejection for a journal failure: `store_unavailable` when the storage
/// said no (disk full, read-only, I/O error: resend later), else
/// `internal_error`. Either way nothing was accepted.
fn journal_rejection(e: &JournalError, what: &str) -> Rejection {
    tracing::error!(error = %e, "{what}");
    if e.is_unavailable() {
        Rejection::new(
            RejectCode::StoreUnavailable,
            format!("{what}: its storage is unavailable (disk full or read-only); resend later"),
        )
    } else {
        Rejection::new(RejectCode::Internal, what.to_string())
    }
}

/// Parse a journaled envelope again (no policy: it was verified on entry).
pub fn reparse(
    env: &[u8],
    geocodes: &crate::target::geocode::GeocodeTable,
) -> Result<(Alert, Option<Region>), String> {
    let e = Envelope::decode(env).map_err(|e| e.to_string())?;
    let limits = CapLimits {
        max_bytes: env.len().max(1),
        ..CapLimits::default()
    };
    let alert = cap::parse(e.payload(), &limits).map_err(|e| e.to_string())?;
    let areas: Vec<_> = alert
        .infos
        .iter()
        .flat_map(|i| i.areas.iter().filter(|a| !a.is_empty()).cloned())
        .collect();
    let region = if areas.is_empty() {
        None
    } else {
        Some(Region::from_areas(&areas, geocodes).map_err(|e| e.to_string())?)
    };
    Ok((alert, region))
}
