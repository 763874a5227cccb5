//! The geocode table: CAP `<geocode>` pairs (`valueName`, `value`) resolved
//! to named polygons, loaded from TOML (`config/geocodes.toml` is embedded as
//! the default). Polygons use CAP's own syntax, `"lat,lon lat,lon …"`, so a
//! shape can be pasted from an alert. Every entry is validated at load time,
//! so resolution at ingest never fails on a bad table. This file must never
//! invent a shape for a code it does not know: unknown codes resolve to `None`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use super::polygon::validate_ring;
use crate::alert::cap::{Point, ValuePair};

/// The shipped table's text.
const EMBEDDED: &str = include_str!("../../config/geocodes.toml");

/// `valueName` of China's administrative division codes (GB/T 2260).
pub const CN_GB2260: &str = "CN-GB2260";
/// `valueName` of US SAME location codes (`PSSCCC`).
pub const SAME: &str = "SAME";
/// `valueName` of 5-digit US FIPS county codes (`SSCCC`), resolved through SAME.
pub const FIPS6: &str = "FIPS6";

/// Why a geocode table could not be loaded.
#[derive(Debug, Error)]
pub enum GeocodeError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("geocode table is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("geocode {key}: {reason}")]
    Entry { key: String, reason: String },
}

/// One geocode: its name and the polygons that approximate it.
#[derive(Debug, Clone, PartialEq)]
pub struct GeocodeEntry {
    pub value_name: String,
    pub value: String,
    pub name: String,
    /// Closed rings.
    pub polygons: Vec<Vec<Point>>,
}

/// All known geocodes, keyed by (`valueName`, `value`).
#[derive(Debug, Clone, Default)]
pub struct GeocodeTable {
    entries: HashMap<(String, String), GeocodeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    geocode: Vec<EntryFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFormat {
    value_name: String,
    value: String,
    name: String,
    polygons: Vec<String>,
}

/// Parses CAP polygon syntax: whitespace-separated `lat,lon` pairs.
fn parse_ring(text: &str) -> Result<Vec<Point>, String> {
    text.split_whitespace()
        .map(|pair| {
            let (lat, lon) = pair
                .split_once(',')
                .ok_or_else(|| format!("`{pair}` is not `lat,lon`"))?;
            let lat: f64 = lat
                .parse()
                .map_err(|_| format!("`{lat}` is not a number"))?;
            let lon: f64 = lon
                .parse()
                .map_err(|_| format!("`{lon}` is not a number"))?;
            Ok(Point { lat, lon })
        })
        .collect()
}

impl GeocodeTable {
    /// Parses and validates a table.
    pub fn from_toml_str(text: &str) -> Result<GeocodeTable, GeocodeError> {
        let file: FileFormat = toml::from_str(text)?;
        let mut entries = HashMap::with_capacity(file.geocode.len());
        for e in file.geocode {
            let key = format!("{}={}", e.value_name, e.value);
            let fail = |reason: String| GeocodeError::Entry {
                key: key.clone(),
                reason,
            };
            if e.polygons.is_empty() {
                return Err(fail("no polygon".into()));
            }
            let mut polygons = Vec::with_capacity(e.polygons.len());
            for text in &e.polygons {
                let ring = parse_ring(text).map_err(&fail)?;
                validate_ring(&ring).map_err(&fail)?;
                polygons.push(ring);
            }
            let entry = GeocodeEntry {
                value_name: e.value_name,
                value: e.value,
                name: e.name,
                polygons,
            };
            let k = (entry.value_name.clone(), entry.value.clone());
            if entries.insert(k, entry).is_some() {
                return Err(fail("listed twice".into()));
            }
        }
        Ok(GeocodeTable { entries })
    }

    /// Reads and parses a table file.
    pub fn load(path: impl AsRef<Path>) -> Result<GeocodeTable, GeocodeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| GeocodeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The table shipped in `config/geocodes.toml`, compiled into the binary.
    pub fn embedded() -> GeocodeTable {
        Self::from_toml_str(EMBEDDED)
            .expect("config/geocodes.toml is compiled in and parsed by the unit tests")
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks a CAP geocode up. `FIPS6` `SSCCC` is read as SAME `0SSCCC`; a
    /// SAME code for part of a county (`P` ≠ 0) resolves to the whole county
    /// (a superset, so nobody in the named part is missed). Values are trimmed.
    pub fn resolve(&self, code: &ValuePair) -> Option<&GeocodeEntry> {
        let name = code.value_name.trim();
        let value = code.value.trim();
        let get = |n: &str, v: &str| self.entries.get(&(n.to_string(), v.to_string()));
        if let Some(e) = get(name, value) {
            return Some(e);
        }
        let is_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if name.eq_ignore_ascii_case(FIPS6) && is_digits(value, 5) {
            return get(SAME, &format!("0{value}"));
        }
        if name.eq_ignore_ascii_case(SAME) && is_digits(value, 6) && !value.starts_with('0') {
            return get(SAME, &format!("0{}", &value[1..]));
        }
        None
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &GeocodeEntry> {
        self.entries.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(n: &str, v: &str) -> ValuePair {
        ValuePair {
            value_name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn embedded_table_has_all_provinces_and_counties() {
        let t = GeocodeTable::embedded();
        let cn = t.entries().filter(|e| e.value_name == CN_GB2260).count();
        assert_eq!(cn, 34);
        assert!(t.entries().filter(|e| e.value_name == SAME).count() >= 6);
        assert_eq!(t.resolve(&vp(CN_GB2260, "110000")).unwrap().name, "Beijing");
        assert_eq!(t.resolve(&vp(CN_GB2260, "820000")).unwrap().name, "Macau");
        assert_eq!(
            t.resolve(&vp(SAME, "006037")).unwrap().name,
            "Los Angeles County, CA"
        );
        assert!(t.resolve(&vp(CN_GB2260, "999999")).is_none());
        assert!(t.resolve(&vp("UGC", "CAZ041")).is_none());
    }

    #[test]
    fn aliases_resolve_to_the_county() {
        let t = GeocodeTable::embedded();
        let la = t.resolve(&vp(SAME, "006037")).unwrap();
        assert_eq!(t.resolve(&vp(FIPS6, "06037")), Some(la));
        assert_eq!(t.resolve(&vp(SAME, "306037")), Some(la));
        assert_eq!(t.resolve(&vp(SAME, " 006037 ")), Some(la));
        assert!(t.resolve(&vp(FIPS6, "6037")).is_none());
    }

    #[test]
    fn each_entry_contains_its_capital() {
        use crate::target::Region;
        let t = GeocodeTable::embedded();
        let places = [
            ("CN-GB2260", "110000", 39.9042, 116.4074),
            ("CN-GB2260", "310000", 31.2304, 121.4737),
            ("CN-GB2260", "440000", 23.1291, 113.2644),
            ("CN-GB2260", "650000", 43.8256, 87.6168),
            ("CN-GB2260", "540000", 29.6520, 91.1721),
            ("CN-GB2260", "150000", 40.8414, 111.7519),
            ("CN-GB2260", "810000", 22.3193, 114.1694),
            ("CN-GB2260", "820000", 22.1987, 113.5439),
            ("CN-GB2260", "710000", 25.0330, 121.5654),
            ("CN-GB2260", "230000", 45.8038, 126.5350),
            ("SAME", "006075", 37.7749, -122.4194),
            ("SAME", "036061", 40.7831, -73.9712),
            ("SAME", "017031", 41.8781, -87.6298),
            ("SAME", "048201", 29.7604, -95.3698),
            ("SAME", "053033", 47.6062, -122.3321),
            ("SAME", "006037", 34.0522, -118.2437),
        ];
        for (n, v, lat, lon) in places {
            let e = t.resolve(&vp(n, v)).unwrap();
            let r = Region::from_polygons(&e.polygons).unwrap();
            assert!(
                r.contains(Point { lat, lon }),
                "{} should contain its capital",
                e.name
            );
        }
    }

    #[test]
    fn guangdong_covers_the_leizhou_peninsula() {
        // The shipped ring once crossed itself there, so even-odd left
        // Zhanjiang (7 million people) outside its own province.
        use crate::target::Region;
        let t = GeocodeTable::embedded();
        let e = t.resolve(&vp("CN-GB2260", "440000")).unwrap();
        let r = Region::from_polygons(&e.polygons).unwrap();
        for (lat, lon) in [(21.27, 110.36), (20.9, 110.1), (21.45, 110.3)] {
            assert!(r.contains(Point { lat, lon }), "({lat}, {lon})");
        }
    }

    #[test]
    fn bad_tables_are_refused() {
        let dup = r#"
            [[geocode]]
            value_name = "X"
            value = "1"
            name = "a"
            polygons = ["0,0 0,1 1,1 0,0"]
            [[geocode]]
            value_name = "X"
            value = "1"
            name = "b"
            polygons = ["0,0 0,1 1,1 0,0"]
        "#;
        assert!(matches!(
            GeocodeTable::from_toml_str(dup),
            Err(GeocodeError::Entry { .. })
        ));
        let bad = r#"
            [[geocode]]
            value_name = "X"
            value = "1"
            name = "a"
            polygons = ["0,0 0,x 1,1 0,0"]
        "#;
        assert!(GeocodeTable::from_toml_str(bad).is_err());
        let flat = bad.replace("0,x", "0.5,0.5");
        assert!(GeocodeTable::from_toml_str(&flat).is_err());
        assert!(GeocodeTable::from_toml_str("[[geocode]]\nvalue = 1").is_err());
        assert!(GeocodeTable::load("/nonexistent/geocodes.toml").is_err());
    }
}
