//! What a channel needs to know about one alert: the envelope as received,
//! the parsed CAP, ids and deadlines. Built once per alert and shared by
//! every batch (`Arc`), so channels render per language, never per recipient.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::alert::cap::{Alert, Info, MsgType};

/// One accepted alert as the channels see it.
#[derive(Debug)]
pub struct AlertContent {
    /// Journal sequence number.
    pub seq: u64,
    /// `sender,identifier,sent`.
    pub alert_id: String,
    /// The receipt id given to the authority.
    pub receipt: String,
    /// The signed envelope exactly as received.
    pub envelope: Arc<[u8]>,
    pub alert: Alert,
    /// When the daemon accepted the alert (for delivery latency).
    pub accepted_at: Instant,
    /// The latest `expires` of its info blocks, if any.
    pub expires: Option<DateTime<Utc>>,
}

impl AlertContent {
    /// The message type (Alert, Update, Cancel).
    pub fn msg_type(&self) -> MsgType {
        self.alert.msg_type
    }

    /// The info block for `language` (exact tag, then primary subtag), else the first.
    pub fn info_for(&self, language: &str) -> Option<&Info> {
        let infos = &self.alert.infos;
        let primary = |t: &str| t.split('-').next().unwrap_or("").to_ascii_lowercase();
        infos
            .iter()
            .find(|i| i.language.eq_ignore_ascii_case(language))
            .or_else(|| {
                let want = primary(language);
                infos.iter().find(|i| primary(&i.language) == want)
            })
            .or_else(|| infos.first())
    }

    /// True once the alert's expiry has passed.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}
