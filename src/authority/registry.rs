//! The authorities and their keys, compiled from config: key ids map to
//! Ed25519 public keys with validity windows and revocation; jurisdictions are
//! compiled `Region`s. Immutable once built: a reload (SIGHUP) compiles a
//! new registry and swaps it in whole (`authority::shared`), carrying the rate
//! buckets of authorities that stay over with `inherit_rates`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::VerifyingKey;

use crate::alert::cap::{Area, Circle, Point, Status, ValuePair};
use crate::config::{AreaSettings, AuthoritySettings};
use crate::dispatch::rate::TokenBucket;
use crate::target::area::Region;
use crate::target::geocode::GeocodeTable;

/// Errors compiling the registry from config.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("authority {authority:?} key {kid:?}: {reason}")]
    Key {
        authority: String,
        kid: String,
        reason: String,
    },
    #[error("key id {0:?} is used twice")]
    DuplicateKid(String),
    #[error("sender {sender:?} is listed by authorities {first:?} and {second:?}; a sender belongs to one authority")]
    DuplicateSender {
        sender: String,
        first: String,
        second: String,
    },
    #[error("{owner}: area: {reason}")]
    Area { owner: String, reason: String },
    #[error("authority {0:?}: unknown status {1:?}")]
    Status(String, String),
}

/// An area from config: the whole globe, or a compiled region.
#[derive(Debug, Clone)]
pub enum Coverage {
    Everywhere,
    Region(Region),
}

impl Coverage {
    /// Compile an `AreaSettings` (geocodes, polygons, circles).
    pub fn from_settings(
        s: &AreaSettings,
        geocodes: &GeocodeTable,
        owner: &str,
    ) -> Result<Self, RegistryError> {
        if s.everywhere {
            return Ok(Self::Everywhere);
        }
        let mut area = Area {
            area_desc: owner.to_string(),
            polygons: Vec::new(),
            circles: Vec::new(),
            geocodes: Vec::new(),
            altitude: None,
            ceiling: None,
        };
        for g in &s.geocodes {
            let (name, value) = g.split_once(':').ok_or_else(|| RegistryError::Area {
                owner: owner.into(),
                reason: format!("geocode {g:?} must be NAME:VALUE"),
            })?;
            area.geocodes.push(ValuePair {
                value_name: name.into(),
                value: value.into(),
            });
        }
        for ring in &s.polygons {
            area.polygons.push(
                ring.iter()
                    .map(|[lat, lon]| Point {
                        lat: *lat,
                        lon: *lon,
                    })
                    .collect(),
            );
        }
        for c in &s.circles {
            area.circles.push(Circle {
                center: Point {
                    lat: c.lat,
                    lon: c.lon,
                },
                radius_km: c.radius_km,
            });
        }
        Region::from_areas(std::slice::from_ref(&area), geocodes)
            .map(Self::Region)
            .map_err(|e| RegistryError::Area {
                owner: owner.into(),
                reason: e.to_string(),
            })
    }

    /// True when `region` lies inside this coverage.
    pub fn contains_region(&self, region: &Region) -> bool {
        match self {
            Self::Everywhere => true,
            Self::Region(r) => region.is_within(r),
        }
    }

    /// True when `region` touches this coverage.
    pub fn intersects(&self, region: &Region) -> bool {
        match self {
            Self::Everywhere => true,
            Self::Region(r) => r.intersects(region),
        }
    }
}

/// One public key of an authority.
#[derive(Debug)]
pub struct AuthorityKey {
    pub kid: String,
    pub key: VerifyingKey,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub revoked: bool,
    /// Index into `Registry::authorities`.
    pub authority: usize,
}

/// An issuing authority, compiled.
#[derive(Debug)]
pub struct Authority {
    pub id: String,
    pub name: String,
    pub senders: HashSet<String>,
    /// Shared so the widening code can hold it past a reload.
    pub jurisdiction: Arc<Coverage>,
    pub events: HashSet<String>,
    pub statuses: HashSet<Status>,
    /// Submissions per minute (the bucket's rate and burst).
    pub rate_per_minute: u32,
    /// Shared so a reload can hand it to the new registry unchanged.
    pub rate: Arc<TokenBucket>,
    pub cosigners: HashSet<String>,
    pub max_area_km2: Option<f64>,
    /// Own widening steps per event code (empty: that event does not widen).
    pub widen: HashMap<String, Vec<crate::target::expand::Step>>,
}

/// All authorities and a kid → key map.
#[derive(Debug, Default)]
pub struct Registry {
    authorities: Vec<Authority>,
    keys: HashMap<String, AuthorityKey>,
    /// Every listed CAP sender → the authority listing it.
    sender_owner: HashMap<String, usize>,
}

/// Decode a base64 raw Ed25519 public key.
pub fn decode_public_key(b64: &str) -> Result<VerifyingKey, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("public_key is not base64: {e}"))?;
    let arr: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| "public_key must be 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("not an Ed25519 key: {e}"))
}

fn load_key(k: &crate::config::KeySettings, base: &Path) -> Result<VerifyingKey, String> {
    if let Some(b64) = &k.public_key {
        return decode_public_key(b64);
    }
    let path = k.public_key_file.as_ref().ok_or("no key given")?;
    let path = if path.is_relative() {
        base.join(path)
    } else {
        path.clone()
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    VerifyingKey::from_public_key_pem(&text)
        .or_else(|_| decode_public_key(&text))
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Registry {
    /// Compile authorities from config; relative key files resolve against `base`.
    pub fn from_settings(
        settings: &[AuthoritySettings],
        geocodes: &GeocodeTable,
        base: &Path,
    ) -> Result<Self, RegistryError> {
        let mut reg = Registry::default();
        for (idx, a) in settings.iter().enumerate() {
            let mut statuses = HashSet::new();
            for s in &a.statuses {
                statuses.insert(
                    Status::from_cap(s)
                        .ok_or_else(|| RegistryError::Status(a.id.clone(), s.clone()))?,
                );
            }
            for k in &a.keys {
                let key = load_key(k, base).map_err(|reason| RegistryError::Key {
                    authority: a.id.clone(),
                    kid: k.kid.clone(),
                    reason,
                })?;
                let entry = AuthorityKey {
                    kid: k.kid.clone(),
                    key,
                    not_before: k.not_before,
                    not_after: k.not_after,
                    revoked: k.revoked,
                    authority: idx,
                };
                if reg.keys.insert(k.kid.clone(), entry).is_some() {
                    return Err(RegistryError::DuplicateKid(k.kid.clone()));
                }
            }
            for sender in &a.senders {
                if let Some(&other) = reg.sender_owner.get(sender) {
                    if other != idx {
                        return Err(RegistryError::DuplicateSender {
                            sender: sender.clone(),
                            first: settings[other].id.clone(),
                            second: a.id.clone(),
                        });
                    }
                }
                reg.sender_owner.insert(sender.clone(), idx);
            }
            let per_sec = f64::from(a.rate_per_minute.max(1)) / 60.0;
            reg.authorities.push(Authority {
                id: a.id.clone(),
                name: a.name.clone(),
                senders: a.senders.iter().cloned().collect(),
                jurisdiction: Arc::new(Coverage::from_settings(
                    &a.jurisdiction,
                    geocodes,
                    &format!("authority {}", a.id),
                )?),
                events: a.events.iter().cloned().collect(),
                statuses,
                rate_per_minute: a.rate_per_minute,
                rate: Arc::new(TokenBucket::new(per_sec, a.rate_per_minute.max(1))),
                cosigners: a.cosigners.iter().cloned().collect(),
                max_area_km2: a.max_area_km2,
                widen: a
                    .widen
                    .iter()
                    .map(|w| (w.event_code.clone(), crate::config::widen_steps(&w.steps)))
                    .collect(),
            });
        }
        Ok(reg)
    }

    /// The key with this id.
    pub fn key(&self, kid: &str) -> Option<&AuthorityKey> {
        self.keys.get(kid)
    }

    /// The authority with this id.
    pub fn by_id(&self, id: &str) -> Option<&Authority> {
        self.authorities.iter().find(|a| a.id == id)
    }

    /// Whether the authority at `idx` may issue under CAP `sender`: one of
    /// its listed senders; with none listed, any sender no other authority
    /// lists (so nobody can write in another authority's name).
    pub fn may_use_sender(&self, idx: usize, sender: &str) -> bool {
        if self.authorities[idx].senders.is_empty() {
            self.sender_owner.get(sender).is_none_or(|&o| o == idx)
        } else {
            self.authorities[idx].senders.contains(sender)
        }
    }

    /// The authority at `idx` (as a key names it).
    pub fn authority(&self, idx: usize) -> &Authority {
        &self.authorities[idx]
    }

    /// Number of authorities.
    pub fn len(&self) -> usize {
        self.authorities.len()
    }

    /// True when no authority is configured.
    pub fn is_empty(&self) -> bool {
        self.authorities.is_empty()
    }

    /// Every authority, in config order.
    pub fn authorities(&self) -> &[Authority] {
        &self.authorities
    }

    /// Every key (any order).
    pub fn keys(&self) -> impl Iterator<Item = &AuthorityKey> {
        self.keys.values()
    }

    /// Take over `old`'s rate bucket for every authority that is in both
    /// with the same `rate_per_minute`, so a reload neither refills nor
    /// empties a budget. Returns how many buckets were kept; an authority
    /// whose rate changed starts with a full bucket at its new rate.
    pub fn inherit_rates(&mut self, old: &Registry) -> usize {
        let mut kept = 0;
        for a in &mut self.authorities {
            if let Some(o) = old.by_id(&a.id) {
                if o.rate_per_minute == a.rate_per_minute {
                    a.rate = o.rate.clone();
                    kept += 1;
                }
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorities(toml_text: &str) -> Vec<AuthoritySettings> {
        #[derive(serde::Deserialize)]
        struct File {
            authorities: Vec<AuthoritySettings>,
        }
        toml::from_str::<File>(toml_text).unwrap().authorities
    }

    fn two(gz_senders: &str, bj_senders: &str) -> String {
        use base64::Engine;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let key = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
        format!(
            r#"
[[authorities]]
id = "gz"
name = "Guangzhou"
senders = {gz_senders}
events = ["CAE"]
jurisdiction = {{ everywhere = true }}
keys = [{{ kid = "gz-1", public_key = "{key}" }}]
[[authorities]]
id = "bj"
name = "Beijing"
senders = {bj_senders}
events = ["CAE"]
jurisdiction = {{ everywhere = true }}
keys = [{{ kid = "bj-1", public_key = "{key}" }}]
"#
        )
    }

    #[test]
    fn a_sender_belongs_to_one_authority() {
        let geo = GeocodeTable::embedded();
        let base = Path::new(".");
        let r = Registry::from_settings(
            &authorities(&two(r#"["police.gz@example.gov.cn"]"#, "[]")),
            &geo,
            base,
        )
        .unwrap();
        // gz: only its own; bj (none listed): anything but gz's.
        assert!(r.may_use_sender(0, "police.gz@example.gov.cn"));
        assert!(!r.may_use_sender(0, "police.bj@example.gov.cn"));
        assert!(!r.may_use_sender(1, "police.gz@example.gov.cn"));
        assert!(r.may_use_sender(1, "police.bj@example.gov.cn"));

        let e = Registry::from_settings(
            &authorities(&two(
                r#"["police.gz@example.gov.cn"]"#,
                r#"["police.bj@example.gov.cn", "police.gz@example.gov.cn"]"#,
            )),
            &geo,
            base,
        )
        .unwrap_err();
        assert!(
            matches!(&e, RegistryError::DuplicateSender { sender, first, second }
                if sender == "police.gz@example.gov.cn" && first == "gz" && second == "bj"),
            "{e}"
        );
    }
}
