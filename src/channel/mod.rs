//! The `Channel` trait every delivery path implements (DESIGN §7): a batch of
//! recipients in, one `Outcome` per recipient out. The dispatcher owns
//! ordering, rate limits, retries and cursors; a channel only speaks its
//! protocol. Implementations: `feed` (partner HTTP POST of the signed
//! envelope), `apns` and `fcm` (push), `sms` (SMPP or HTTP gateway), `email`
//! (SMTP) and `sink` (in-process counter for the demo and benches). `label`
//! is no channel but the renderer of parcel labels (ZPL and PNG) that a
//! print-job channel builds on.

pub mod apns;
pub mod content;
pub mod email;
pub mod fcm;
pub mod feed;
pub mod label;
pub mod push;
pub mod sink;
pub mod sms;

use std::time::Duration;

use async_trait::async_trait;

pub use content::AlertContent;

/// Which audience a channel reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reach {
    /// Subscribers of this kind, from the H3 audience index.
    Subscribers(SubscriberKind),
    /// Configured partners in this role whose coverage touches the area.
    Partners(PartnerRole),
}

/// What a partner does with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartnerRole {
    /// Takes the signed envelope (feed).
    Feed,
    /// Prints parcel labels.
    Label,
}

/// Subscriber channel kinds (the `channel` column of an import).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubscriberKind {
    Apns = 0,
    Fcm = 1,
    Sms = 2,
    Email = 3,
}

impl SubscriberKind {
    /// All kinds, in index order.
    pub const ALL: [SubscriberKind; 4] = [Self::Apns, Self::Fcm, Self::Sms, Self::Email];

    /// Stable lower-case name (CSV column, metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apns => "apns",
            Self::Fcm => "fcm",
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }

    /// Parse a name as written in a subscriber CSV.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// From the stored byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.get(usize::from(b)).copied()
    }
}

/// One recipient handed to a channel. Borrowed from the audience snapshot:
/// building a batch allocates nothing per recipient.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// Subscriber id, or partner index for `Reach::Partners`.
    pub id: u32,
    /// Token, number, address or partner endpoint. Personal data: never log it.
    pub address: &'a str,
    /// Preferred language tag (may be empty).
    pub language: &'a str,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider or partner accepted it.
    Delivered,
    /// Transient: try again, after `after` when the peer said so.
    Retry {
        after: Option<Duration>,
        reason: &'static str,
    },
    /// Permanent failure; `drop` removes the recipient from the audience
    /// (unregistered token, invalid number).
    Rejected { reason: &'static str, drop: bool },
}

/// Settle every recipient of a batch: `start(i)` either settles recipient `i` at once
/// (an unusable address) or returns the future that sends to it. The futures run
/// concurrently and each outcome lands in its recipient's slot of `out`, so `out`
/// keeps recipient order (the `Channel::deliver` contract).
pub async fn settle_each<Fut>(
    count: usize,
    out: &mut Vec<Outcome>,
    mut start: impl FnMut(usize) -> Result<Fut, Outcome>,
) where
    Fut: std::future::Future<Output = Outcome>,
{
    use futures::stream::{FuturesUnordered, StreamExt};
    let base = out.len();
    out.resize(
        base + count,
        Outcome::Retry {
            after: None,
            reason: "not_sent",
        },
    );
    let mut running = FuturesUnordered::new();
    for i in 0..count {
        match start(i) {
            Ok(send) => running.push(async move { (i, send.await) }),
            Err(settled) => out[base + i] = settled,
        }
    }
    while let Some((i, outcome)) = running.next().await {
        out[base + i] = outcome;
    }
}

/// A delivery path. Implementations must be cheap to call concurrently.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// Stable lower-case name (metrics label, progress key).
    fn name(&self) -> &'static str;

    /// Which audience the dispatcher plans for this channel.
    fn reach(&self) -> Reach;

    /// Deliver `alert` to every recipient; push exactly one outcome per
    /// recipient, in order, onto `out` (which arrives empty).
    async fn deliver(
        &self,
        alert: &AlertContent,
        recipients: &[Recipient<'_>],
        out: &mut Vec<Outcome>,
    );

    /// Close provider sessions politely; called once when the daemon shuts down,
    /// after the last batch.
    async fn close(&self) {}
}
