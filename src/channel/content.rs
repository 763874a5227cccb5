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
    /// Parse a CAP document into the content channels see, as journal entry `seq`
    /// (tests, benches and the demo; the daemon builds it from a verified envelope).
    pub fn from_xml(seq: u64, xml: &str) -> Result<Self, crate::alert::cap::CapError> {
        let alert = crate::alert::cap::parse(xml.as_bytes(), &Default::default())?;
        let expires = alert
            .infos
            .iter()
            .filter_map(|i| i.expires)
            .max()
            .map(|e| e.with_timezone(&Utc));
        Ok(Self {
            seq,
            alert_id: alert.alert_id(),
            receipt: format!("test-{seq}"),
            envelope: Arc::from(xml.as_bytes()),
            alert,
            accepted_at: Instant::now(),
            expires,
        })
    }

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

    /// The id of the first alert in this alert's chain: its first reference
    /// for an Update or Cancel, else its own id.
    pub fn root_alert_id(&self) -> String {
        match self.alert.msg_type {
            MsgType::Update | MsgType::Cancel => self
                .alert
                .references
                .first()
                .map_or_else(|| self.alert_id.clone(), |r| r.alert_id()),
            _ => self.alert_id.clone(),
        }
    }

    /// Collapse id shared by an alert and its Updates and Cancel (APNs
    /// `apns-collapse-id`, FCM `collapse_key`): 32 hex digits of SHA-256 of the
    /// root alert id, within APNs' 64-byte limit whatever the id's length.
    pub fn collapse_id(&self) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(self.root_alert_id().as_bytes());
        hex::encode(&d[..16])
    }

    /// A stable UUID for delivering this alert to one recipient (APNs
    /// `apns-id`), so a repeat after a crash carries the same id.
    pub fn delivery_uuid(&self, recipient: u32) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.alert_id.as_bytes());
        h.update(recipient.to_be_bytes());
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        String::from_utf8_lossy(&uuid_text(&b)).into_owned()
    }

    /// The link people follow for details: the info block's `<web>`, else this alert's
    /// public page under `public_url` (the admin API's `/v1/alerts/{seq}`).
    pub fn public_link(&self, info: Option<&Info>, public_url: &str) -> String {
        match info
            .and_then(|i| i.web.as_deref())
            .filter(|w| !w.trim().is_empty())
        {
            Some(web) => web.trim().to_string(),
            None => format!(
                "{}/v1/alerts/{}",
                public_url.trim_end_matches('/'),
                self.seq
            ),
        }
    }

    /// True once the alert's expiry has passed.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// 16 bytes as lowercase 8-4-4-4-12 hex (the textual UUID form), on the stack.
pub fn uuid_text(bytes: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 36];
    let mut j = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf[j] = b'-';
            j += 1;
        }
        buf[j] = HEX[usize::from(b >> 4)];
        buf[j + 1] = HEX[usize::from(b & 0xf)];
        j += 2;
    }
    buf
}
