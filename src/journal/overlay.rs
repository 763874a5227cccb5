//! What the journal has logged but redb does not hold yet. While a checkpoint
//! holds redb's write lock for its fsync, the writer goes on: it applies each
//! group's rules to this overlay on top of a read snapshot of redb, logs the
//! group, and answers. Readers look here first. When the checkpoint is done
//! the writer replays the pending groups into redb and clears the overlay.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::records::{AlertRecord, CursorRecord};
use super::rules::{Rows, RowsMut};
use super::store::JournalError;

/// Rows written since the checkpoint began.
#[derive(Default)]
pub(super) struct Overlay {
    ids: HashMap<String, u64>,
    alerts: BTreeMap<u64, AlertRecord>,
    envelopes: HashMap<u64, Arc<[u8]>>,
    cursors: BTreeMap<(u64, String), CursorRecord>,
    next_seq: Option<u64>,
}

impl Overlay {
    /// Take in a group's rows (`later` wins).
    pub fn merge(&mut self, later: Overlay) {
        self.ids.extend(later.ids);
        self.alerts.extend(later.alerts);
        self.envelopes.extend(later.envelopes);
        self.cursors.extend(later.cursors);
        if later.next_seq.is_some() {
            self.next_seq = later.next_seq;
        }
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    pub fn seq_of(&self, alert_id: &str) -> Option<u64> {
        self.ids.get(alert_id).copied()
    }

    pub fn alert(&self, seq: u64) -> Option<&AlertRecord> {
        self.alerts.get(&seq)
    }

    pub fn envelope(&self, seq: u64) -> Option<&Arc<[u8]>> {
        self.envelopes.get(&seq)
    }

    /// Every alert record here (new and changed), by sequence number.
    pub fn alerts(&self) -> impl DoubleEndedIterator<Item = &AlertRecord> {
        self.alerts.values()
    }

    /// Alerts new here (not in redb).
    pub fn new_alerts(&self) -> usize {
        self.envelopes.len()
    }

    /// The cursors of one alert written here.
    pub fn cursors(&self, seq: u64) -> impl Iterator<Item = (&str, &CursorRecord)> {
        self.cursors
            .range((seq, String::new())..(seq + 1, String::new()))
            .map(|((_, name), c)| (name.as_str(), c))
    }
}

/// The rules' view while a checkpoint runs: this group's rows, then the
/// groups' before it, then redb's snapshot. Writes go to `group` only, so a
/// group whose log write fails leaves the overlay as it was.
pub(super) struct View<'a, B: Rows> {
    pub base: &'a B,
    pub before: &'a Overlay,
    pub group: &'a mut Overlay,
}

impl<B: Rows> Rows for View<'_, B> {
    fn seq_of(&self, alert_id: &str) -> Result<Option<u64>, JournalError> {
        match self
            .group
            .seq_of(alert_id)
            .or_else(|| self.before.seq_of(alert_id))
        {
            Some(s) => Ok(Some(s)),
            None => self.base.seq_of(alert_id),
        }
    }

    fn alert(&self, seq: u64) -> Result<Option<AlertRecord>, JournalError> {
        match self.group.alert(seq).or_else(|| self.before.alert(seq)) {
            Some(r) => Ok(Some(r.clone())),
            None => self.base.alert(seq),
        }
    }

    fn cursor(&self, seq: u64, name: &str) -> Result<Option<CursorRecord>, JournalError> {
        let key = (seq, name.to_string());
        match self
            .group
            .cursors
            .get(&key)
            .or_else(|| self.before.cursors.get(&key))
        {
            Some(c) => Ok(Some(c.clone())),
            None => self.base.cursor(seq, name),
        }
    }

    fn next_seq(&self) -> Result<u64, JournalError> {
        match self.group.next_seq.or(self.before.next_seq) {
            Some(n) => Ok(n),
            None => self.base.next_seq(),
        }
    }
}

impl<B: Rows> RowsMut for View<'_, B> {
    fn put_alert(&mut self, rec: &AlertRecord) -> Result<(), JournalError> {
        self.group.alerts.insert(rec.seq, rec.clone());
        Ok(())
    }

    fn put_new(&mut self, rec: &AlertRecord, envelope: &Arc<[u8]>) -> Result<(), JournalError> {
        self.group.ids.insert(rec.alert_id.clone(), rec.seq);
        self.group.envelopes.insert(rec.seq, envelope.clone());
        self.put_alert(rec)
    }

    fn put_cursor(&mut self, seq: u64, name: &str, c: &CursorRecord) -> Result<(), JournalError> {
        self.group
            .cursors
            .insert((seq, name.to_string()), c.clone());
        Ok(())
    }

    fn set_next_seq(&mut self, next: u64) -> Result<(), JournalError> {
        self.group.next_seq = Some(next);
        Ok(())
    }
}
