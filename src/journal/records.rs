//! Records the journal stores, with their encodings. Alerts and cursors are
//! JSON (small, debuggable with any redb viewer); subscribers use a compact
//! binary form because there are tens of millions of them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::target::expand::Expansion;

/// Lifecycle of an accepted alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Fanning out (or waiting to).
    Active,
    /// Every job finished.
    Completed,
    /// An Update replaced it; pending work was dropped.
    Superseded,
    /// A Cancel ended it; pending work was dropped.
    Cancelled,
    /// Its `expires` passed before fan-out finished.
    Expired,
}

impl AlertState {
    /// True while the alert still has work.
    pub fn is_live(self) -> bool {
        self == Self::Active
    }
}

/// One accepted alert (the envelope is stored beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertRecord {
    pub seq: u64,
    pub receipt: String,
    pub alert_id: String,
    pub authority: String,
    /// Hex SHA-256 of the envelope.
    pub digest: String,
    pub state: AlertState,
    pub accepted_at: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub msg_type: String,
    pub status: String,
    /// Sequence numbers of the alerts this one updates or cancels.
    pub references: Vec<u64>,
    /// Set when a later alert superseded or cancelled this one.
    pub replaced_by: Option<u64>,
    /// Recipients planned per channel, at acceptance (stage 0).
    pub targeted: BTreeMap<String, u64>,
    /// Widening schedule: its later stages start from here after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expansion: Option<Expansion>,
}

/// Progress of one job (alert × channel), committed in batches.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CursorRecord {
    /// Everything at or before this (cell, id) key is done.
    pub key: Option<(u64, u32)>,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub done: bool,
}

/// A subscriber as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberRecord {
    pub external_id: String,
    pub kind: u8,
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    pub language: String,
}

impl SubscriberRecord {
    /// Compact binary encoding: kind, lat, lon, then three length-prefixed strings.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(self.kind);
        out.extend_from_slice(&self.lat.to_le_bytes());
        out.extend_from_slice(&self.lon.to_le_bytes());
        for s in [&self.external_id, &self.address, &self.language] {
            let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
        }
    }

    /// Decode what `encode` wrote; None on corruption.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let kind = *b.first()?;
        let lat = f64::from_le_bytes(b.get(1..9)?.try_into().ok()?);
        let lon = f64::from_le_bytes(b.get(9..17)?.try_into().ok()?);
        let mut pos = 17;
        let mut take = || -> Option<String> {
            let len = usize::from(u16::from_le_bytes(b.get(pos..pos + 2)?.try_into().ok()?));
            let s = std::str::from_utf8(b.get(pos + 2..pos + 2 + len)?)
                .ok()?
                .to_string();
            pos += 2 + len;
            Some(s)
        };
        let external_id = take()?;
        let address = take()?;
        let language = take()?;
        Some(Self {
            external_id,
            kind,
            address,
            lat,
            lon,
            language,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_roundtrip() {
        let r = SubscriberRecord {
            external_id: "u1".into(),
            kind: 2,
            address: "+8613800000000".into(),
            lat: 23.1,
            lon: 113.2,
            language: "zh-CN".into(),
        };
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(SubscriberRecord::decode(&buf), Some(r));
        assert_eq!(SubscriberRecord::decode(&buf[..5]), None);
    }
}
