//! What the journal has logged but redb does not hold yet. The writer never
//! writes redb itself: it applies each group's rules to the overlay on top
//! of a read snapshot of redb, logs the group, and answers. Now and then the
//! checkpoint thread takes the overlay's rows (the writer freezes them and
//! starts a fresh layer) and writes them to redb in one durable transaction
//! (`checkpoint.rs`); then the frozen layer is dropped. Readers look in the
//! active layer, then the frozen one, then redb.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::records::{AlertRecord, CursorRecord};
use super::rules::{Rows, RowsMut};
use super::store::JournalError;

/// Rows written by some groups, later ones winning.
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

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.cursors.is_empty() && self.next_seq.is_none()
    }

    /// Write every row to `rows` (redb's transaction at a checkpoint).
    pub fn write_to(&self, rows: &mut impl RowsMut) -> Result<(), JournalError> {
        for (seq, rec) in &self.alerts {
            match self.envelopes.get(seq) {
                Some(env) => rows.put_new(rec, env)?,
                None => rows.put_alert(rec)?,
            }
        }
        for ((seq, name), c) in &self.cursors {
            rows.put_cursor(*seq, name, c)?;
        }
        if let Some(n) = self.next_seq {
            rows.set_next_seq(n)?;
        }
        Ok(())
    }

    fn cursor(&self, seq: u64, name: &str) -> Option<&CursorRecord> {
        self.cursors.get(&(seq, name.to_string()))
    }

    fn cursors_of(&self, seq: u64) -> impl Iterator<Item = (&str, &CursorRecord)> {
        self.cursors
            .range((seq, String::new())..(seq + 1, String::new()))
            .map(|((_, name), c)| (name.as_str(), c))
    }
}

/// The overlay readers see: the layer being written and, while a checkpoint
/// runs, the layer it is writing to redb.
#[derive(Default)]
pub(super) struct Layers {
    active: Overlay,
    frozen: Option<Arc<Overlay>>,
}

impl Layers {
    /// Take in a group's rows.
    pub fn merge(&mut self, group: Overlay) {
        self.active.merge(group);
    }

    /// Hand the active layer to a checkpoint: it stays visible (frozen)
    /// until [`Layers::checkpointed`]; writes go to a fresh layer. Called
    /// only with no checkpoint running (no frozen layer).
    pub fn freeze(&mut self) -> Arc<Overlay> {
        debug_assert!(self.frozen.is_none(), "a frozen layer is replaced");
        let f = Arc::new(std::mem::take(&mut self.active));
        self.frozen = Some(f.clone());
        f
    }

    /// The checkpoint could not start: the frozen rows become the active
    /// layer again, under whatever was written since.
    pub fn thaw(&mut self, rows: Arc<Overlay>) {
        self.frozen = None;
        match Arc::try_unwrap(rows) {
            Ok(mut older) => {
                older.merge(std::mem::take(&mut self.active));
                self.active = older;
            }
            // Still shared (cannot happen: the job is gone): keep it visible.
            Err(rows) => self.frozen = Some(rows),
        }
    }

    /// The frozen layer is in redb now.
    pub fn checkpointed(&mut self) {
        self.frozen = None;
    }

    /// Whether nothing is written here.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.active.is_empty() && self.frozen.as_ref().is_none_or(|f| f.is_empty())
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The layers, newest first.
    fn newest_first(&self) -> impl Iterator<Item = &Overlay> {
        std::iter::once(&self.active).chain(self.frozen.as_deref())
    }

    pub fn seq_of(&self, alert_id: &str) -> Option<u64> {
        self.newest_first()
            .find_map(|o| o.ids.get(alert_id).copied())
    }

    pub fn alert(&self, seq: u64) -> Option<&AlertRecord> {
        self.newest_first().find_map(|o| o.alerts.get(&seq))
    }

    pub fn envelope(&self, seq: u64) -> Option<&Arc<[u8]>> {
        self.newest_first().find_map(|o| o.envelopes.get(&seq))
    }

    pub fn cursor(&self, seq: u64, name: &str) -> Option<&CursorRecord> {
        self.newest_first().find_map(|o| o.cursor(seq, name))
    }

    pub fn next_seq(&self) -> Option<u64> {
        self.newest_first().find_map(|o| o.next_seq)
    }

    /// Every alert record here (new and changed), oldest layer first, so
    /// that collecting them keeps the newest version.
    pub fn alerts(&self) -> impl Iterator<Item = &AlertRecord> {
        let frozen = self.frozen.iter().flat_map(|f| f.alerts.values());
        frozen.chain(self.active.alerts.values())
    }

    /// Alerts new here with a sequence number from `from` on (those a redb
    /// snapshot whose next number is `from` does not hold).
    pub fn new_alerts_from(&self, from: u64) -> usize {
        self.newest_first()
            .flat_map(|o| o.envelopes.keys())
            .filter(|&&s| s >= from)
            .count()
    }

    /// The cursors of one alert written here, oldest layer first.
    pub fn cursors(&self, seq: u64) -> impl Iterator<Item = (&str, &CursorRecord)> {
        let frozen = self.frozen.iter().flat_map(move |f| f.cursors_of(seq));
        frozen.chain(self.active.cursors_of(seq))
    }
}

/// The rules' view for the writer: this group's rows, then the layers
/// before it, then redb's snapshot. Writes go to `group` only, so a group
/// whose log write fails leaves the overlay as it was.
pub(super) struct View<'a, B: Rows> {
    pub base: &'a B,
    pub before: &'a Layers,
    pub group: &'a mut Overlay,
}

impl<B: Rows> Rows for View<'_, B> {
    fn seq_of(&self, alert_id: &str) -> Result<Option<u64>, JournalError> {
        match self
            .group
            .ids
            .get(alert_id)
            .copied()
            .or_else(|| self.before.seq_of(alert_id))
        {
            Some(s) => Ok(Some(s)),
            None => self.base.seq_of(alert_id),
        }
    }

    fn alert(&self, seq: u64) -> Result<Option<AlertRecord>, JournalError> {
        match self
            .group
            .alerts
            .get(&seq)
            .or_else(|| self.before.alert(seq))
        {
            Some(r) => Ok(Some(r.clone())),
            None => self.base.alert(seq),
        }
    }

    fn cursor(&self, seq: u64, name: &str) -> Result<Option<CursorRecord>, JournalError> {
        match self
            .group
            .cursor(seq, name)
            .or_else(|| self.before.cursor(seq, name))
        {
            Some(c) => Ok(Some(c.clone())),
            None => self.base.cursor(seq, name),
        }
    }

    fn next_seq(&self) -> Result<u64, JournalError> {
        match self.group.next_seq.or_else(|| self.before.next_seq()) {
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
