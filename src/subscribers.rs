//! Subscribers in memory: the per-channel H3-sorted indexes plus columnar
//! address and language storage, built from the journal at start (or from a
//! synthetic generator in the demo and benches). A built `Audience` is an
//! immutable snapshot shared by `Arc`; only the removal bitmap changes (a
//! token the provider rejected), with atomics, so dispatch never locks.
//! Also: the CSV import (`id,channel,address,lat,lon,language`).

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::channel::SubscriberKind;
use crate::journal::{Journal, JournalError, SubscriberRecord};
use crate::target::audience::{AudienceBuilder, ChannelAudience};

/// Longest address accepted (tokens, numbers, e-mail addresses).
pub const MAX_ADDRESS_BYTES: usize = 512;

/// An immutable audience snapshot.
pub struct Audience {
    channels: Vec<ChannelAudience>,
    /// `offsets[id]..offsets[id + 1]` is subscriber `id`'s address in `arena`.
    offsets: Vec<u64>,
    arena: String,
    lang: Vec<u16>,
    languages: Vec<String>,
    removed: Vec<AtomicU64>,
}

/// Builds an `Audience` from records.
pub struct AudienceLoader {
    builders: Vec<AudienceBuilder>,
    offsets: Vec<u64>,
    arena: String,
    lang: Vec<u16>,
    languages: Vec<String>,
    skipped: u64,
}

impl Default for AudienceLoader {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl AudienceLoader {
    /// Reserve room for about `n` subscribers.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            builders: SubscriberKind::ALL
                .iter()
                .map(|_| AudienceBuilder::with_capacity(n / 4))
                .collect(),
            offsets: Vec::with_capacity(n + 1),
            arena: String::with_capacity(n * 24),
            lang: Vec::with_capacity(n),
            languages: Vec::new(),
            skipped: 0,
        }
    }

    /// Add subscriber `id` (ids must be added in increasing order; gaps are fine).
    pub fn add(
        &mut self,
        id: u32,
        kind: SubscriberKind,
        address: &str,
        lat: f64,
        lon: f64,
        language: &str,
    ) {
        let idx = id as usize;
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        while self.offsets.len() <= idx {
            // gap: empty address
            self.offsets.push(self.arena.len() as u64);
            self.lang.push(0);
        }
        if self.offsets.len() != idx + 1 {
            self.skipped += 1; // out of order: ignore
            return;
        }
        if self.builders[kind as usize].push(id, lat, lon).is_err() {
            self.skipped += 1;
            self.offsets.push(self.arena.len() as u64);
            self.lang.push(0);
            return;
        }
        self.arena.push_str(address);
        self.offsets.push(self.arena.len() as u64);
        let li = match self.languages.iter().position(|l| l == language) {
            Some(i) => i,
            None => {
                self.languages.push(language.to_string());
                self.languages.len() - 1
            }
        };
        self.lang.push(u16::try_from(li).unwrap_or(0));
    }

    /// Records skipped (bad coordinates or out-of-order ids).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Sort the indexes and freeze the snapshot.
    pub fn build(mut self) -> Audience {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let n = self.lang.len();
        if self.languages.is_empty() {
            self.languages.push(String::new());
        }
        Audience {
            channels: self.builders.into_iter().map(|b| b.build()).collect(),
            offsets: self.offsets,
            arena: self.arena,
            lang: self.lang,
            languages: self.languages,
            removed: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Audience {
    /// An audience with nobody in it.
    pub fn empty() -> Self {
        AudienceLoader::default().build()
    }

    /// Load every subscriber stored in the journal.
    pub fn load(journal: &Journal) -> Result<Self, JournalError> {
        let n = journal.subscriber_count()? as usize;
        let mut l = AudienceLoader::with_capacity(n);
        journal.for_each_subscriber(|id, r| {
            if let Some(kind) = SubscriberKind::from_u8(r.kind) {
                l.add(id, kind, &r.address, r.lat, r.lon, &r.language);
            }
        })?;
        if l.skipped() > 0 {
            tracing::warn!(
                skipped = l.skipped(),
                "subscribers with bad coordinates skipped"
            );
        }
        Ok(l.build())
    }

    /// The index of one channel kind.
    pub fn channel(&self, kind: SubscriberKind) -> &ChannelAudience {
        &self.channels[kind as usize]
    }

    /// Subscribers of all kinds.
    pub fn len(&self) -> usize {
        self.lang.len()
    }

    /// True when nobody is subscribed.
    pub fn is_empty(&self) -> bool {
        self.lang.is_empty()
    }

    /// Address of subscriber `id` (empty when unknown).
    pub fn address(&self, id: u32) -> &str {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self.arena.get(a as usize..b as usize).unwrap_or(""),
            _ => "",
        }
    }

    /// Language tag of subscriber `id`.
    pub fn language(&self, id: u32) -> &str {
        self.lang
            .get(id as usize)
            .and_then(|&l| self.languages.get(usize::from(l)))
            .map_or("", String::as_str)
    }

    /// True once the subscriber was removed (rejected by its provider).
    pub fn is_removed(&self, id: u32) -> bool {
        let i = id as usize;
        self.removed
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    /// Mark a subscriber removed in this snapshot.
    pub fn mark_removed(&self, id: u32) {
        let i = id as usize;
        if let Some(w) = self.removed.get(i / 64) {
            w.fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }
}

/// Errors importing a subscriber CSV.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {reason}")]
    Row { line: u64, reason: String },
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Parse a subscriber CSV (`id,channel,address,lat,lon,language`, header
/// optional) and store it in one transaction: a bad row anywhere changes
/// nothing. `progress` is called every 50,000 rows.
pub fn import_csv(
    input: impl Read,
    journal: &Journal,
    mut progress: impl FnMut(u64),
) -> Result<u64, ImportError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut import = journal.begin_import()?;
    let mut total = 0u64;
    for (i, row) in rdr.records().enumerate() {
        let line = i as u64 + 1;
        let row = row?;
        if i == 0 && row.get(0) == Some("id") {
            continue;
        }
        let err = |reason: &str| ImportError::Row {
            line,
            reason: reason.into(),
        };
        if row.len() != 6 {
            return Err(err(
                "expected 6 columns: id,channel,address,lat,lon,language",
            ));
        }
        let kind = SubscriberKind::parse(&row[1])
            .ok_or_else(|| err("channel must be apns, fcm, sms or email"))?;
        let address = &row[2];
        if address.is_empty() || address.len() > MAX_ADDRESS_BYTES {
            return Err(err("address empty or too long"));
        }
        let lat: f64 = row[3].parse().map_err(|_| err("lat is not a number"))?;
        let lon: f64 = row[4].parse().map_err(|_| err("lon is not a number"))?;
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(err("lat/lon out of range"));
        }
        let language = &row[5];
        if language.len() > 35 || row[0].len() > 128 {
            return Err(err("id or language too long"));
        }
        import.add(&SubscriberRecord {
            external_id: row[0].to_string(),
            kind: kind as u8,
            address: address.to_string(),
            lat,
            lon,
            language: language.to_string(),
        })?;
        total += 1;
        if total % 50_000 == 0 {
            progress(total);
        }
    }
    import.commit()?;
    progress(total);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "id,channel,address,lat,lon,language\n\
        u1,apns,tok-1,23.13,113.26,zh-CN\n\
        u2,sms,+8613800000001,22.54,114.06,zh-CN\n\
        u3,email,a@example.org,39.90,116.40,en-US\n";

    #[test]
    fn import_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(import_csv(CSV.as_bytes(), &j, |_| {}).unwrap(), 3);
        let a = Audience::load(&j).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.channel(SubscriberKind::Apns).len(), 1);
        assert_eq!(a.address(1), "+8613800000001");
        assert_eq!(a.language(2), "en-US");
    }

    #[test]
    fn a_bad_row_imports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let bad = format!("{CSV}u4,pager,x,1,1,en\n");
        let e = import_csv(bad.as_bytes(), &j, |_| {}).unwrap_err();
        assert!(e.to_string().contains("line 5"), "{e}");
        assert_eq!(j.subscriber_count().unwrap(), 0);
        let far = format!("{CSV}u5,sms,x,91,1,en\n");
        assert!(import_csv(far.as_bytes(), &j, |_| {}).is_err());
        assert_eq!(j.subscriber_count().unwrap(), 0);
    }
}
