//! The live registry and its reload (SIGHUP): the verifier reads the current
//! `Arc<Registry>` on every submission (a read lock held for one pointer
//! clone, never across a check); a reload compiles the new authorities
//! completely, off to the side, and swaps the pointer only when that
//! succeeded, so a bad config leaves the running registry untouched. A
//! submission that started before the swap finishes against the registry it
//! began with. Never logs key material: the report holds counts and ids.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::authority::registry::{Registry, RegistryError};
use crate::config::AuthoritySettings;
use crate::target::geocode::GeocodeTable;

/// The registry the verifier uses now; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SharedRegistry {
    current: Arc<RwLock<Arc<Registry>>>,
    /// Serialises reloads, so two SIGHUPs in a row cannot lose a bucket.
    reloading: Arc<Mutex<()>>,
}

/// What a reload changed (counts and authority ids, never keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub authorities: usize,
    pub keys: usize,
    pub revoked: usize,
    /// Authority ids that are new.
    pub added: Vec<String>,
    /// Authority ids that are gone (their keys no longer verify).
    pub removed: Vec<String>,
    /// Authorities whose rate bucket carried over.
    pub rates_kept: usize,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} authorities, {} keys ({} revoked); added [{}], removed [{}]; {} rate buckets kept",
            self.authorities,
            self.keys,
            self.revoked,
            self.added.join(", "),
            self.removed.join(", "),
            self.rates_kept
        )
    }
}

impl SharedRegistry {
    /// Share `registry` as the current one.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            current: Arc::new(RwLock::new(registry)),
            reloading: Arc::new(Mutex::new(())),
        }
    }

    /// The current registry (a snapshot: a later reload does not change it).
    pub fn load(&self) -> Arc<Registry> {
        self.current.read().clone()
    }

    /// Swap in `new`, carrying over the rate buckets of authorities that stay.
    pub fn replace(&self, mut new: Registry) -> ReloadReport {
        let _one_at_a_time = self.reloading.lock();
        let old = self.load();
        let rates_kept = new.inherit_rates(&old);
        let ids = |r: &Registry| -> Vec<String> {
            r.authorities().iter().map(|a| a.id.clone()).collect()
        };
        let (old_ids, new_ids) = (ids(&old), ids(&new));
        let report = ReloadReport {
            authorities: new.len(),
            keys: new.keys().count(),
            revoked: new.keys().filter(|k| k.revoked).count(),
            added: new_ids
                .iter()
                .filter(|i| !old_ids.contains(i))
                .cloned()
                .collect(),
            removed: old_ids
                .iter()
                .filter(|i| !new_ids.contains(i))
                .cloned()
                .collect(),
            rates_kept,
        };
        *self.current.write() = Arc::new(new);
        report
    }

    /// Compile `authorities` and swap them in; on any error nothing changes.
    pub fn reload(
        &self,
        authorities: &[AuthoritySettings],
        geocodes: &GeocodeTable,
        base: &Path,
    ) -> Result<ReloadReport, RegistryError> {
        let new = Registry::from_settings(authorities, geocodes, base)?;
        Ok(self.replace(new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn authorities(rate: u32, kids: &[&str]) -> Vec<AuthoritySettings> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let keys: String = kids
            .iter()
            .enumerate()
            .map(|(i, kid)| {
                let k = ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 1; 32]);
                format!(
                    "[[authorities.keys]]\nkid = \"{kid}\"\npublic_key = \"{}\"\n",
                    b64.encode(k.verifying_key().as_bytes())
                )
            })
            .collect();
        let toml = format!(
            "[[authorities]]\nid = \"a\"\nname = \"A\"\nevents = [\"CAE\"]\nrate_per_minute = {rate}\n\
             jurisdiction = {{ everywhere = true }}\n{keys}"
        );
        Settings::from_toml(&toml).unwrap().authorities
    }

    #[test]
    fn a_snapshot_outlives_a_reload_and_buckets_carry_over() {
        let g = GeocodeTable::embedded();
        let base = Path::new(".");
        let first = Registry::from_settings(&authorities(2, &["k1"]), &g, base).unwrap();
        let shared = SharedRegistry::new(Arc::new(first));
        let before = shared.load();
        assert!(before.by_id("a").unwrap().rate.try_take(2));
        let r = shared
            .reload(&authorities(2, &["k1", "k2"]), &g, base)
            .unwrap();
        assert_eq!((r.authorities, r.keys, r.rates_kept), (1, 2, 1));
        // The old snapshot is unchanged; the new one shares the drained bucket.
        assert!(before.key("k2").is_none());
        let now = shared.load();
        assert!(now.key("k2").is_some());
        assert!(!now.by_id("a").unwrap().rate.try_take(1));
        // A different rate: a fresh bucket.
        let r = shared.reload(&authorities(3, &["k1"]), &g, base).unwrap();
        assert_eq!(r.rates_kept, 0);
        assert!(shared.load().by_id("a").unwrap().rate.try_take(3));
    }

    #[test]
    fn a_bad_key_changes_nothing() {
        let g = GeocodeTable::embedded();
        let base = Path::new(".");
        let first = Registry::from_settings(&authorities(2, &["k1"]), &g, base).unwrap();
        let shared = SharedRegistry::new(Arc::new(first));
        let mut bad = authorities(2, &["k1", "k2"]);
        bad[0].keys[1].public_key = Some("AAAA".into());
        let e = shared.reload(&bad, &g, base).unwrap_err().to_string();
        assert!(e.contains("k2") && e.contains("32 bytes"), "{e}");
        assert!(shared.load().key("k2").is_none());
        assert!(shared.load().key("k1").is_some());
    }
}
