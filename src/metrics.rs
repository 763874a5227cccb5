//! Every Prometheus metric of the daemon, defined in one place (DESIGN §9),
//! on the official `prometheus-client` crate. Stages get a cheap clone of
//! `Metrics` and bump counters; `/metrics` encodes the registry. No label
//! ever carries personal data: only channel names, outcomes and codes.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `result` label: accepted, duplicate or a rejection code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// `channel` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: &'static str,
}

/// `channel` and `outcome` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub channel: &'static str,
    pub outcome: &'static str,
}

/// `channel` and `reason` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub channel: &'static str,
    pub reason: &'static str,
}

/// `channel` and `gateway` labels (an SMSC, SMS gateway or SMTP relay by its configured name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabel {
    pub channel: &'static str,
    pub gateway: String,
}

/// `gateway` and delivery-receipt `status` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiptLabel {
    pub gateway: String,
    pub status: &'static str,
}

/// `stage` label: one step of a submission's way to its receipt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The steps of a submission between its envelope being read and its
/// receipt being ready (`tocsin_ingest_stage_seconds{stage}`), each
/// observed once by every submission that gets through it (a failed journal
/// write included); for an accepted alert they add up to its
/// `tocsin_ingest_seconds`. They tell an operator which step holds a slow
/// receipt: the CPU work (`verify`, `plan`), the journal's one writer
/// (`journal_queue`, `journal_write`), or the core the submission waits for
/// to run again (`journal_resume`).
#[derive(Clone, Debug)]
pub struct IngestStages {
    /// Envelope decode, signature, CAP parse and policy.
    pub verify: Histogram,
    /// Widening (with its journal read), targeting and the journal record.
    pub plan: Histogram,
    /// Handed to the journal's writer until its group's write began: the
    /// group ahead, if any, and the writer's wake-up.
    pub journal_queue: Histogram,
    /// The group's write (`Journal::write`): the journal's rules over the
    /// overlay and a redb snapshot, the log append and its `fdatasync`, and,
    /// when the log is full, waiting for a checkpoint.
    pub journal_write: Histogram,
    /// The group written until the submission runs again: the writer
    /// answers the group, then a core must run the submission.
    pub journal_resume: Histogram,
    /// Committed until the receipt is ready (fan-out started).
    pub start: Histogram,
}

/// The `stage` label's values, in the order a submission meets them (and
/// the order of [`IngestStages`]' fields, which `IngestStages::new` relies on;
/// `names_match_design` checks it).
pub const INGEST_STAGES: [&str; 6] = [
    "verify",
    "plan",
    "journal_queue",
    "journal_write",
    "journal_resume",
    "start",
];

impl IngestStages {
    fn new(family: &HistFamily<StageLabel>) -> Self {
        let [verify, plan, journal_queue, journal_write, journal_resume, start] =
            INGEST_STAGES.map(|stage| family.get_or_create(&StageLabel { stage }).clone());
        Self {
            verify,
            plan,
            journal_queue,
            journal_write,
            journal_resume,
            start,
        }
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~17 min, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 21))
}

/// Bounds of the receipt-path histograms (seconds): fine around DESIGN
/// §10's receipt goal, with 5 ms itself a bound, so that
/// `histogram_quantile(0.99, …)` and the share of receipts within the goal
/// (`le="0.005"`) can be read off them; doubling's 4 and 8 ms could not.
const RECEIPT_BOUNDS: [f64; 19] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.004, 0.005, 0.007_5, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn receipt_histogram() -> Histogram {
    Histogram::new(RECEIPT_BOUNDS)
}

/// The daemon's metrics; clone freely (all handles are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub alerts: Family<ResultLabel, Counter>,
    pub ingest_seconds: Histogram,
    /// Where `ingest_seconds` goes, step by step.
    pub ingest_stages: IngestStages,
    pub targeted: Family<ChannelLabel, Counter>,
    pub target_seconds: Histogram,
    pub deliveries: Family<OutcomeLabel, Counter>,
    pub delivery_seconds: HistFamily<ChannelLabel>,
    pub queue_depth: Family<ChannelLabel, Gauge>,
    pub inflight: Family<ChannelLabel, Gauge>,
    pub retries: Family<ReasonLabel, Counter>,
    pub channel_up: Family<ChannelLabel, Gauge>,
    pub journal_commit_seconds: Histogram,
    /// redb checkpoints (off the receipt path, beside the log).
    pub journal_checkpoint_seconds: Histogram,
    /// Envelope bytes held by ingest streams being read (the read budget).
    pub ingest_buffered_bytes: Gauge,
    /// Provider round trip of one push request (request sent → response).
    pub push_request_seconds: HistFamily<ChannelLabel>,
    /// Open HTTP/2 connections per provider.
    pub push_connections: Family<ChannelLabel, Gauge>,
    /// Recipients removed from the audience because the provider rejected them.
    pub recipients_dropped: Family<ChannelLabel, Counter>,
    /// Provider auth tokens minted (JWT or OAuth).
    pub auth_refreshes: Family<ChannelLabel, Counter>,
    /// Round trip of one gateway request: SMPP `submit_sm`, HTTP `sendsms`, SMTP transaction.
    pub gateway_request_seconds: HistFamily<GatewayLabel>,
    /// Sessions up per gateway (SMPP binds).
    pub gateway_sessions: Family<GatewayLabel, Gauge>,
    /// SMS parts (PDUs) accepted by a gateway.
    pub sms_parts: Family<GatewayLabel, Counter>,
    /// Delivery receipts received, by final status.
    pub sms_receipts: Family<ReceiptLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let alerts = Family::<ResultLabel, Counter>::default();
        r.register(
            "tocsin_alerts",
            "Submissions by result (accepted, duplicate, or rejection code)",
            alerts.clone(),
        );
        let ingest_seconds = receipt_histogram();
        r.register(
            "tocsin_ingest_seconds",
            "Envelope read to receipt ready: verify, plan, durable commit, fan-out start",
            ingest_seconds.clone(),
        );
        let stages: HistFamily<StageLabel> = Family::new_with_constructor(receipt_histogram);
        r.register(
            "tocsin_ingest_stage_seconds",
            "One step of tocsin_ingest_seconds: verify, plan, journal_queue, journal_write, journal_resume, start",
            stages.clone(),
        );
        let ingest_stages = IngestStages::new(&stages);
        let targeted = Family::<ChannelLabel, Counter>::default();
        r.register(
            "tocsin_targeted_recipients",
            "Recipients selected by targeting",
            targeted.clone(),
        );
        let target_seconds = latency_histogram();
        r.register(
            "tocsin_target_seconds",
            "Time to turn an alert area into a plan",
            target_seconds.clone(),
        );
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        r.register(
            "tocsin_deliveries",
            "Deliveries by channel and final outcome",
            deliveries.clone(),
        );
        let delivery_seconds: HistFamily<ChannelLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "tocsin_delivery_seconds",
            "Alert accepted to delivery confirmed",
            delivery_seconds.clone(),
        );
        let queue_depth = Family::<ChannelLabel, Gauge>::default();
        r.register(
            "tocsin_queue_depth",
            "Planned deliveries not yet attempted",
            queue_depth.clone(),
        );
        let inflight = Family::<ChannelLabel, Gauge>::default();
        r.register(
            "tocsin_inflight",
            "Deliveries handed to a channel and not yet answered",
            inflight.clone(),
        );
        let retries = Family::<ReasonLabel, Counter>::default();
        r.register(
            "tocsin_retries",
            "Deliveries scheduled for another attempt",
            retries.clone(),
        );
        let channel_up = Family::<ChannelLabel, Gauge>::default();
        r.register(
            "tocsin_channel_up",
            "1 when the channel is configured and healthy",
            channel_up.clone(),
        );
        let journal_commit_seconds = receipt_histogram();
        r.register(
            "tocsin_journal_commit_seconds",
            "Durable journal commit latency (one group: log append and fdatasync)",
            journal_commit_seconds.clone(),
        );
        let journal_checkpoint_seconds = latency_histogram();
        r.register(
            "tocsin_journal_checkpoint_seconds",
            "Checkpoint duration: the overlay written to redb durably (beside the log, off the receipt path)",
            journal_checkpoint_seconds.clone(),
        );
        let ingest_buffered_bytes = Gauge::default();
        r.register(
            "tocsin_ingest_buffered_bytes",
            "Envelope bytes held by ingest streams being read (bounded by ingest.max_buffered_bytes)",
            ingest_buffered_bytes.clone(),
        );
        let push_request_seconds: HistFamily<ChannelLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "tocsin_push_request_seconds",
            "Push provider round trip (request sent to response)",
            push_request_seconds.clone(),
        );
        let push_connections = Family::<ChannelLabel, Gauge>::default();
        r.register(
            "tocsin_push_connections",
            "Open HTTP/2 connections per push provider",
            push_connections.clone(),
        );
        let recipients_dropped = Family::<ChannelLabel, Counter>::default();
        r.register(
            "tocsin_recipients_dropped",
            "Recipients removed because the provider rejected them permanently",
            recipients_dropped.clone(),
        );
        let auth_refreshes = Family::<ChannelLabel, Counter>::default();
        r.register(
            "tocsin_auth_refreshes",
            "Provider auth tokens minted (APNs JWT, FCM OAuth)",
            auth_refreshes.clone(),
        );
        let gateway_request_seconds: HistFamily<GatewayLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "tocsin_gateway_request_seconds",
            "Gateway round trip: SMPP submit_sm, HTTP sendsms or SMTP transaction",
            gateway_request_seconds.clone(),
        );
        let gateway_sessions = Family::<GatewayLabel, Gauge>::default();
        r.register(
            "tocsin_gateway_sessions",
            "Sessions up per gateway (SMPP binds)",
            gateway_sessions.clone(),
        );
        let sms_parts = Family::<GatewayLabel, Counter>::default();
        r.register(
            "tocsin_sms_parts",
            "SMS parts (submit_sm PDUs or sendsms requests) accepted by a gateway",
            sms_parts.clone(),
        );
        let sms_receipts = Family::<ReceiptLabel, Counter>::default();
        r.register(
            "tocsin_sms_receipts",
            "SMS delivery receipts received, by final status",
            sms_receipts.clone(),
        );
        Self {
            registry: Arc::new(r),
            alerts,
            ingest_seconds,
            ingest_stages,
            targeted,
            target_seconds,
            deliveries,
            delivery_seconds,
            queue_depth,
            inflight,
            retries,
            channel_up,
            journal_commit_seconds,
            journal_checkpoint_seconds,
            ingest_buffered_bytes,
            push_request_seconds,
            push_connections,
            recipients_dropped,
            auth_refreshes,
            gateway_request_seconds,
            gateway_sessions,
            sms_parts,
            sms_receipts,
        }
    }

    /// Count one submission result.
    pub fn alert_result(&self, result: &'static str) {
        self.alerts.get_or_create(&ResultLabel { result }).inc();
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_design() {
        let m = Metrics::new();
        m.alert_result("accepted");
        m.deliveries
            .get_or_create(&OutcomeLabel {
                channel: "feed",
                outcome: "delivered",
            })
            .inc();
        let text = m.encode();
        assert!(text.contains("tocsin_alerts_total{result=\"accepted\"} 1"));
        assert!(text.contains("tocsin_deliveries_total{channel=\"feed\",outcome=\"delivered\"} 1"));
        assert!(text.contains("tocsin_ingest_seconds_bucket"));
        // Each step's handle carries its own label: step i observed i times.
        let s = &m.ingest_stages;
        let fields = [
            &s.verify,
            &s.plan,
            &s.journal_queue,
            &s.journal_write,
            &s.journal_resume,
            &s.start,
        ];
        for (i, h) in fields.iter().enumerate() {
            for _ in 0..i {
                h.observe(0.001);
            }
        }
        let text = m.encode();
        for (i, stage) in INGEST_STAGES.iter().enumerate() {
            let line = format!("tocsin_ingest_stage_seconds_count{{stage=\"{stage}\"}} {i}");
            assert!(text.contains(&line), "{line}");
        }
    }
}
