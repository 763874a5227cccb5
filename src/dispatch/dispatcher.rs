//! The dispatcher: runs one job per alert × channel. A job walks its targets
//! in index order, cuts batches, waits for the channel's token bucket and
//! concurrency permits, hands batches to the channel, retries transient
//! failures with backoff (never past expiry), and publishes a low-water
//! cursor after each completed batch. Cancel (or an Update) stops a job's
//! pending work at once. Per recipient it only copies two integers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cursors::cursor_name;
use super::cursors::CursorBoard;
use super::plan::{self, Partner, Plan, Scope, Targets};
use super::progress::{AlertProgress, JobProgress};
use super::rate::TokenBucket;
use super::retry::RetryPolicy;
use crate::alert::cap::{MsgType, Status};
use crate::authority::policy::FollowUp;
use crate::channel::{AlertContent, Channel, Outcome, Recipient};
use crate::config::DispatchSettings;
use crate::journal::{AlertState, CursorRecord, GroupCommitter, Journal};
use crate::metrics::{ChannelLabel, Metrics, OutcomeLabel, ReasonLabel};
use crate::subscribers::Audience;
use crate::target::area::Region;
use crate::target::expand::Expansion;

/// Concurrency and rate of one channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelLimits {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Token-bucket rate (deliveries/s) and burst.
    pub rate_per_sec: f64,
    pub burst: u32,
}

struct Slot {
    channel: Arc<dyn Channel>,
    limiter: TokenBucket,
    permits: Arc<Semaphore>,
    max_permits: usize,
}

struct Inner {
    slots: Vec<Slot>,
    /// Reads (and removing rejected recipients).
    journal: Arc<Journal>,
    /// The journal's writer: cursors and final states.
    writer: GroupCommitter,
    metrics: Metrics,
    settings: DispatchSettings,
    board: Arc<CursorBoard>,
    partners: Arc<Vec<Partner>>,
    audience: RwLock<Arc<Audience>>,
    progress: Mutex<BTreeMap<u64, Arc<AlertProgress>>>,
    cancels: Mutex<HashMap<u64, CancellationToken>>,
    tasks: TaskTracker,
    /// The runtime jobs run on (the one the dispatcher was built on), so an
    /// alert started from the ingest runtime fans out here, not there.
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
}

/// Handle to the dispatcher; clone freely.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct BatchResult {
    no: u64,
    end_key: (u64, u32),
    delivered: u64,
    failed: u64,
    dropped: u64,
    /// Removed recipients skipped while cutting the batch (already counted).
    skipped: u64,
}

impl Dispatcher {
    /// Build a dispatcher over `channels` (each with its limits).
    pub fn new(
        channels: Vec<(Arc<dyn Channel>, ChannelLimits)>,
        partners: Arc<Vec<Partner>>,
        audience: Arc<Audience>,
        journal: Arc<Journal>,
        writer: GroupCommitter,
        metrics: Metrics,
        settings: DispatchSettings,
    ) -> Self {
        let slots = channels
            .into_iter()
            .map(|(channel, l)| {
                metrics
                    .channel_up
                    .get_or_create(&ChannelLabel {
                        channel: channel.name(),
                    })
                    .set(1);
                let max_permits = l.concurrency.max(1);
                Slot {
                    channel,
                    limiter: TokenBucket::new(l.rate_per_sec, l.burst),
                    permits: Arc::new(Semaphore::new(max_permits)),
                    max_permits,
                }
            })
            .collect();
        let stop = CancellationToken::new();
        let board = Arc::new(CursorBoard::default());
        board.spawn_committer(
            writer.clone(),
            Duration::from_millis(settings.cursor_commit_ms.max(1)),
            stop.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                slots,
                journal,
                writer,
                metrics,
                settings,
                board,
                partners,
                audience: RwLock::new(audience),
                progress: Mutex::new(BTreeMap::new()),
                cancels: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                runtime: tokio::runtime::Handle::current(),
                stop,
            }),
        }
    }

    /// The current audience snapshot.
    pub fn audience(&self) -> Arc<Audience> {
        self.inner.audience.read().clone()
    }

    /// Swap in a new audience snapshot (running jobs keep theirs).
    pub fn set_audience(&self, a: Arc<Audience>) {
        *self.inner.audience.write() = a;
    }

    /// Configured partners.
    pub fn partners(&self) -> &Arc<Vec<Partner>> {
        &self.inner.partners
    }

    /// Plan an alert over every channel on the current snapshot.
    pub fn plan(
        &self,
        scope: &Scope<'_>,
        status: Status,
        msg_type: MsgType,
        follow_up: FollowUp,
    ) -> Plan {
        let channels: Vec<_> = self.inner.slots.iter().map(|s| s.channel.clone()).collect();
        let p = plan::plan(
            scope,
            status,
            msg_type,
            follow_up,
            &self.audience(),
            &self.inner.partners,
            &channels,
        );
        self.inner.metrics.target_seconds.observe(p.seconds);
        p
    }

    /// Progress of one alert.
    pub fn progress(&self, seq: u64) -> Option<Arc<AlertProgress>> {
        self.inner.progress.lock().get(&seq).cloned()
    }

    /// Progress of every alert started since boot.
    pub fn all_progress(&self) -> Vec<Arc<AlertProgress>> {
        self.inner.progress.lock().values().cloned().collect()
    }

    /// Stop every pending delivery of alert `seq` now.
    pub fn cancel(&self, seq: u64) {
        if let Some(t) = self.inner.cancels.lock().get(&seq) {
            t.cancel();
        }
    }

    /// Stop all jobs, wait for them, and commit cursors.
    pub async fn shutdown(&self) {
        for t in self.inner.cancels.lock().values() {
            t.cancel();
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.stop.cancel();
        self.inner.board.flush(&self.inner.writer).await;
        for slot in &self.inner.slots {
            slot.channel.close().await;
        }
    }

    /// Start (or resume, from `cursors`) the fan-out of one alert: its stage 0
    /// now (`plan`), and the later stages of a `widening` alert each when it
    /// falls due, until the alert is cancelled, superseded or expires.
    pub fn start(
        &self,
        content: Arc<AlertContent>,
        plan: Plan,
        cursors: &BTreeMap<String, CursorRecord>,
        widening: Option<Widening>,
    ) -> Arc<AlertProgress> {
        let inner = &self.inner;
        let cancel = inner.stop.child_token();
        inner.cancels.lock().insert(content.seq, cancel.clone());
        let ap = Arc::new(AlertProgress {
            seq: content.seq,
            alert_id: content.alert_id.clone(),
            receipt: content.receipt.clone(),
            started: content.accepted_at,
            first_delivery: OnceLock::new(),
            finished_after: OnceLock::new(),
            jobs: parking_lot::Mutex::new(Vec::new()),
            stages_pending: std::sync::atomic::AtomicBool::new(
                widening.as_ref().is_some_and(|w| w.expansion.stages() > 1),
            ),
        });
        let mut handles = self.start_stage(&content, &ap, &cancel, 0, plan, cursors);
        // Visible once stage 0's jobs are in.
        inner.progress.lock().insert(content.seq, ap.clone());
        let this = self.clone();
        let cursors = cursors.clone();
        let ap_out = ap.clone();
        inner.tasks.spawn_on(async move {
            let mut expired = false;
            if let Some(w) = widening {
                for stage in 1..w.expansion.stages() {
                    if !this.wait_for_stage(&w, stage, &cancel).await {
                        break;
                    }
                    if content.expired(Utc::now()) {
                        expired = true;
                        break;
                    }
                    let plan = match w.plan(&this, stage, &content) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::error!(seq = content.seq, stage, error = %e, "widening step could not be planned; no further steps");
                            break;
                        }
                    };
                    tracing::info!(
                        seq = content.seq,
                        stage,
                        radius_km = w.expansion.radius(stage),
                        targeted = plan.total(),
                        "widening step"
                    );
                    let stage = u32::try_from(stage).unwrap_or(u32::MAX);
                    handles.extend(this.start_stage(&content, &ap, &cancel, stage, plan, &cursors));
                }
            }
            ap.stages_pending.store(false, Ordering::Release);
            for h in handles {
                expired |= h.await.unwrap_or(false);
            }
            let inner2 = &this.inner;
            let _ = ap.finished_after.set(ap.started.elapsed());
            inner2.cancels.lock().remove(&content.seq);
            let state = if cancel.is_cancelled() {
                None // superseded, cancelled or shutting down: the journal already says so
            } else if expired {
                Some(AlertState::Expired)
            } else {
                Some(AlertState::Completed)
            };
            if let Some(state) = state {
                let seq = content.seq;
                // The final cursors ride in the same transaction as the state
                // (tests/crash_loop.rs found a "completed" alert whose done
                // cursor had not reached the disk before a kill).
                let cursors = inner2.board.pending_for(seq);
                if let Err(e) = inner2.writer.finish(seq, state, cursors).await {
                    // It stays live in the journal: a restart resumes it,
                    // finds its cursors done and sets the state again.
                    tracing::warn!(seq, error = %e, "could not record the alert's final state");
                }
            }
        }, &inner.runtime);
        ap_out
    }

    /// Sleep until `stage` of `w` is due; false when the alert was stopped first.
    async fn wait_for_stage(&self, w: &Widening, stage: usize, cancel: &CancellationToken) -> bool {
        let due = w.expansion.due_at(stage, w.speed);
        let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = cancel.cancelled() => false,
        }
    }

    /// Spawn the jobs of one stage; their handles say whether the alert expired first.
    fn start_stage(
        &self,
        content: &Arc<AlertContent>,
        ap: &Arc<AlertProgress>,
        cancel: &CancellationToken,
        stage: u32,
        plan: Plan,
        cursors: &BTreeMap<String, CursorRecord>,
    ) -> Vec<tokio::task::JoinHandle<bool>> {
        let inner = &self.inner;
        let audience = self.audience();
        let since = if stage == 0 {
            content.accepted_at
        } else {
            std::time::Instant::now()
        };
        let mut handles = Vec::new();
        for jp in plan.jobs {
            let Some(slot_idx) = inner
                .slots
                .iter()
                .position(|s| s.channel.name() == jp.channel)
            else {
                continue;
            };
            let cursor = cursors
                .get(&cursor_name(jp.channel, stage))
                .cloned()
                .unwrap_or_default();
            let count = jp.targets.count();
            let progress = Arc::new(JobProgress::new(jp.channel, stage, count));
            progress
                .delivered
                .store(cursor.delivered, Ordering::Relaxed);
            progress.failed.store(cursor.failed, Ordering::Relaxed);
            progress.dropped.store(cursor.dropped, Ordering::Relaxed);
            inner
                .metrics
                .targeted
                .get_or_create(&ChannelLabel {
                    channel: jp.channel,
                })
                .inc_by(count);
            ap.jobs.lock().push(progress.clone());
            let job = Job {
                inner: inner.clone(),
                slot_idx,
                stage,
                since,
                content: content.clone(),
                audience: audience.clone(),
                targets: jp.targets,
                jp: progress,
                ap: ap.clone(),
                cancel: cancel.clone(),
            };
            handles.push(inner.tasks.spawn_on(job.run(cursor), &inner.runtime));
        }
        handles
    }
}

/// The later stages of a widening alert: its schedule, its own area, the
/// jurisdiction cap, and the clock speed (1 in production; tests and
/// `demo --speed` run it faster).
#[derive(Debug, Clone)]
pub struct Widening {
    pub expansion: Expansion,
    pub base: Option<Region>,
    pub clip: Option<Region>,
    pub speed: f64,
}

impl Widening {
    /// The scope of `stage` and its plan: the ring `covered(stage)` less
    /// `covered(stage - 1)`, capped. Everyone in it is new to the alert, so
    /// every channel carries it (even an Update's).
    fn plan(
        &self,
        d: &Dispatcher,
        stage: usize,
        content: &AlertContent,
    ) -> Result<Plan, crate::target::AreaError> {
        let region = self.expansion.covered(stage, self.base.as_ref())?;
        let served = self.expansion.covered(stage - 1, self.base.as_ref())?;
        let scope = Scope {
            region: region.as_ref(),
            served: served.as_ref(),
            reached_before: None,
            clip: self.clip.as_ref(),
        };
        Ok(d.plan(&scope, content.alert.status, MsgType::Alert, FollowUp::ALL))
    }
}

struct Job {
    inner: Arc<Inner>,
    slot_idx: usize,
    /// Stage of a widening alert (0: as accepted).
    stage: u32,
    /// When this stage started (delivery latency is measured from here).
    since: std::time::Instant,
    content: Arc<AlertContent>,
    audience: Arc<Audience>,
    targets: Targets,
    jp: Arc<JobProgress>,
    ap: Arc<AlertProgress>,
    cancel: CancellationToken,
}

/// Walks targets after a cursor key, in key order.
struct TargetWalk {
    range: usize,
    pos: u32,
}

impl Job {
    /// Run to completion; returns true when the alert expired first.
    async fn run(self, cursor: CursorRecord) -> bool {
        let channel = self.slot().channel.name();
        let label = ChannelLabel { channel };
        if cursor.done {
            self.jp.done.store(true, Ordering::Release);
            return false;
        }
        let depth = self.inner.metrics.queue_depth.get_or_create(&label).clone();
        let remaining = self
            .jp
            .targeted
            .load(Ordering::Relaxed)
            .saturating_sub(self.jp.finished());
        depth.inc_by(remaining as i64);
        let settings = &self.inner.settings;
        let batch_size = settings.batch_size;
        let mut state = cursor;
        let mut walk = self.walk_from(state.key);
        let mut set: JoinSet<BatchResult> = JoinSet::new();
        let mut done_map: BTreeMap<u64, BatchResult> = BTreeMap::new();
        let (mut next_no, mut low) = (0u64, 0u64);
        let mut exhausted = false;
        let mut expired = false;
        let mut cancelled = false;
        loop {
            while !exhausted && !cancelled && set.len() < settings.max_in_flight_batches {
                if self.content.expired(Utc::now()) {
                    expired = true;
                    exhausted = true;
                    break;
                }
                // Each batch cut is a point where an idle-class thread
                // offers the CPU back (departure 31).
                crate::runtime::cooperate();
                let mut ids = Vec::with_capacity(batch_size);
                let mut end_key = (0, 0);
                let skipped = self.fill(&mut walk, &mut ids, batch_size, &mut end_key);
                if skipped > 0 {
                    self.jp.failed.fetch_add(skipped, Ordering::Relaxed);
                    self.jp.dropped.fetch_add(skipped, Ordering::Relaxed);
                    depth.dec_by(skipped as i64);
                }
                if ids.is_empty() {
                    exhausted = true;
                    if skipped > 0 {
                        // A batch of only removed recipients still moves the cursor.
                        done_map.insert(
                            next_no,
                            BatchResult {
                                no: next_no,
                                end_key,
                                delivered: 0,
                                failed: 0,
                                dropped: 0,
                                skipped,
                            },
                        );
                        next_no += 1;
                    }
                    break;
                }
                let n = ids.len();
                let slot = self.slot();
                let wait = slot.limiter.take_or_wait(n as u32);
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.cancel.cancelled() => { cancelled = true; break; }
                    }
                }
                let want = u32::try_from(n.min(slot.max_permits)).unwrap_or(u32::MAX);
                let permit = tokio::select! {
                    p = slot.permits.clone().acquire_many_owned(want) => p,
                    _ = self.cancel.cancelled() => { cancelled = true; break; }
                };
                let Ok(permit) = permit else { break };
                let no = next_no;
                next_no += 1;
                let batch = self.batch_task(no, ids, end_key, skipped);
                set.spawn(async move {
                    let r = batch.await;
                    drop(permit);
                    r
                });
            }
            // Fold finished batches into the low-water cursor.
            let mut advanced = false;
            while let Some(r) = done_map.remove(&low) {
                state.key = Some(r.end_key);
                state.delivered += r.delivered;
                state.failed += r.failed + r.skipped;
                state.dropped += r.dropped + r.skipped;
                low += 1;
                advanced = true;
            }
            if advanced {
                self.inner.board.publish(
                    self.content.seq,
                    channel,
                    self.stage,
                    state.clone(),
                    false,
                );
            }
            if set.is_empty() {
                if exhausted || cancelled {
                    break;
                }
                continue;
            }
            tokio::select! {
                r = set.join_next() => {
                    if let Some(Ok(r)) = r {
                        depth.dec_by((r.delivered + r.failed) as i64);
                        done_map.insert(r.no, r);
                    }
                }
                _ = self.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    set.abort_all();
                }
            }
        }
        if !cancelled {
            // The final cursor rides the next periodic flush (no fsync per job).
            state.done = true;
            self.inner
                .board
                .publish(self.content.seq, channel, self.stage, state.clone(), false);
        }
        let left = self
            .jp
            .targeted
            .load(Ordering::Relaxed)
            .saturating_sub(self.jp.finished());
        depth.dec_by(left.min(remaining) as i64);
        self.jp.done.store(true, Ordering::Release);
        expired
    }

    fn slot(&self) -> &Slot {
        &self.inner.slots[self.slot_idx]
    }

    fn walk_from(&self, key: Option<(u64, u32)>) -> TargetWalk {
        let mut w = TargetWalk { range: 0, pos: 0 };
        let Some(key) = key else {
            if let Targets::Index { selection, .. } = &self.targets {
                w.pos = selection.ranges.first().map_or(0, |r| r.start);
            }
            return w;
        };
        match &self.targets {
            Targets::Index { kind, selection } => {
                let idx = self.audience.channel(*kind);
                let after = idx.position_after(key) as u32;
                // first range that still has positions at or after `after`
                let r = selection.ranges.partition_point(|r| r.end <= after);
                w.range = r;
                w.pos = selection.ranges.get(r).map_or(0, |rg| rg.start.max(after));
            }
            Targets::Partners(list) => {
                w.range = list.partition_point(|&p| u64::from(p) <= key.0);
            }
        }
        w
    }

    /// Fill `ids` with up to `max` recipients; returns how many removed
    /// recipients were skipped. `end_key` is the key of the last one taken.
    fn fill(
        &self,
        w: &mut TargetWalk,
        ids: &mut Vec<u32>,
        max: usize,
        end_key: &mut (u64, u32),
    ) -> u64 {
        let mut skipped = 0;
        match &self.targets {
            Targets::Index { kind, selection } => {
                let idx = self.audience.channel(*kind);
                let (cells, sids) = (idx.cells(), idx.ids());
                while ids.len() < max {
                    let Some(r) = selection.ranges.get(w.range) else {
                        break;
                    };
                    if w.pos >= r.end {
                        w.range += 1;
                        if let Some(n) = selection.ranges.get(w.range) {
                            w.pos = n.start;
                        }
                        continue;
                    }
                    let p = w.pos as usize;
                    let id = sids[p];
                    *end_key = (cells[p], id);
                    if self.audience.is_removed(id) {
                        skipped += 1;
                    } else {
                        ids.push(id);
                    }
                    w.pos += 1;
                }
            }
            Targets::Partners(list) => {
                while ids.len() < max {
                    let Some(&p) = list.get(w.range) else { break };
                    ids.push(p);
                    *end_key = (u64::from(p), 0);
                    w.range += 1;
                }
            }
        }
        skipped
    }

    fn batch_task(
        &self,
        no: u64,
        ids: Vec<u32>,
        end_key: (u64, u32),
        skipped: u64,
    ) -> impl std::future::Future<Output = BatchResult> + Send + 'static {
        let inner = self.inner.clone();
        let slot_idx = self.slot_idx;
        let content = self.content.clone();
        let audience = self.audience.clone();
        let partners_reach = matches!(self.targets, Targets::Partners(_));
        let jp = self.jp.clone();
        let ap = self.ap.clone();
        let since = self.since;
        async move {
            let slot = &inner.slots[slot_idx];
            let channel = slot.channel.name();
            let m = &inner.metrics;
            let partners = inner.partners.clone();
            let recips: Vec<Recipient<'_>> = ids
                .iter()
                .map(|&id| {
                    if partners_reach {
                        Recipient {
                            id,
                            address: partners
                                .get(id as usize)
                                .map_or("", |p| p.endpoint.as_str()),
                            language: partners
                                .get(id as usize)
                                .and_then(|p| p.label.as_ref())
                                .map_or("", |l| l.language.as_str()),
                        }
                    } else {
                        Recipient {
                            id,
                            address: audience.address(id),
                            language: audience.language(id),
                        }
                    }
                })
                .collect();
            let policy = RetryPolicy {
                base: Duration::from_millis(inner.settings.retry_base_ms),
                max: Duration::from_millis(inner.settings.retry_max_ms),
                max_attempts: inner.settings.max_attempts,
            };
            let inflight = m.inflight.get_or_create(&ChannelLabel { channel }).clone();
            let latency = m
                .delivery_seconds
                .get_or_create(&ChannelLabel { channel })
                .clone();
            let mut res = BatchResult {
                no,
                end_key,
                delivered: 0,
                failed: 0,
                dropped: 0,
                skipped,
            };
            let mut pending: Vec<Recipient<'_>> = recips;
            let mut out = Vec::with_capacity(pending.len());
            let mut retry: Vec<Recipient<'_>> = Vec::new();
            let mut drop_ids = Vec::new();
            let mut attempt = 0u32;
            let count = |outcome: &'static str, n: u64| {
                m.deliveries
                    .get_or_create(&OutcomeLabel { channel, outcome })
                    .inc_by(n);
            };
            loop {
                out.clear();
                inflight.inc_by(pending.len() as i64);
                slot.channel.deliver(&content, &pending, &mut out).await;
                inflight.dec_by(pending.len() as i64);
                let mut retry_after: Option<Duration> = None;
                let mut delivered_now = 0u64;
                for (i, r) in pending.iter().enumerate() {
                    match out.get(i).copied().unwrap_or(Outcome::Retry {
                        after: None,
                        reason: "no_outcome",
                    }) {
                        Outcome::Delivered => delivered_now += 1,
                        Outcome::Rejected { reason: _, drop } => {
                            res.failed += 1;
                            jp.failed.fetch_add(1, Ordering::Relaxed);
                            if drop && !partners_reach {
                                res.dropped += 1;
                                jp.dropped.fetch_add(1, Ordering::Relaxed);
                                drop_ids.push(r.id);
                            }
                            count("rejected", 1);
                        }
                        Outcome::Retry { after, reason } => {
                            retry.push(*r);
                            if let Some(a) = after {
                                retry_after = Some(retry_after.map_or(a, |b| b.max(a)));
                            }
                            m.retries
                                .get_or_create(&ReasonLabel { channel, reason })
                                .inc();
                        }
                    }
                }
                if delivered_now > 0 {
                    res.delivered += delivered_now;
                    jp.delivered.fetch_add(delivered_now, Ordering::Relaxed);
                    ap.mark_delivery();
                    count("delivered", delivered_now);
                    let secs = since.elapsed().as_secs_f64();
                    for _ in 0..delivered_now {
                        latency.observe(secs);
                    }
                }
                if retry.is_empty() {
                    break;
                }
                attempt += 1;
                jp.retried.fetch_add(retry.len() as u64, Ordering::Relaxed);
                match policy.next_wait(attempt, retry_after, Utc::now(), content.expires) {
                    Some(w) => {
                        tokio::time::sleep(w).await;
                        std::mem::swap(&mut pending, &mut retry);
                        retry.clear();
                    }
                    None => {
                        let n = retry.len() as u64;
                        res.failed += n;
                        jp.failed.fetch_add(n, Ordering::Relaxed);
                        count("failed", n);
                        break;
                    }
                }
            }
            if !drop_ids.is_empty() {
                m.recipients_dropped
                    .get_or_create(&ChannelLabel { channel })
                    .inc_by(drop_ids.len() as u64);
                for &id in &drop_ids {
                    audience.mark_removed(id);
                }
                let j = inner.journal.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for id in drop_ids {
                        if let Err(e) = j.remove_subscriber(id) {
                            tracing::warn!(error = %e, "could not remove a rejected recipient");
                        }
                    }
                })
                .await;
            }
            res
        }
    }
}
