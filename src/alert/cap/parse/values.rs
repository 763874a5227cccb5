//! CAP 1.2 value syntax: enumerations, `dateTime`, identifiers,
//! `<references>`, `<polygon>`, `<circle>` and decimal numbers. Each function
//! takes the text of one element and returns a typed value or a `CapError`
//! whose message quotes at most 64 characters of the input. The names the
//! writer needs (`as_str`) live here too, beside their parsers, so the two
//! directions cannot drift apart.

use chrono::{DateTime, FixedOffset};

use super::super::model::{Circle, MsgType, Point, Reference, Scope, Status};
use super::CapError;

/// `s` cut to at most `max` characters, with `…` when something was cut.
pub(crate) fn snippet(s: &str, max: usize) -> String {
    let mut out = String::new();
    push_snippet(&mut out, s, max);
    out
}

/// [`snippet`], appended to `out` (which can keep its buffer between calls).
pub(super) fn push_snippet(out: &mut String, s: &str, max: usize) {
    match s.char_indices().nth(max) {
        None => out.push_str(s),
        Some((i, _)) => {
            out.push_str(&s[..i]);
            out.push('…');
        }
    }
}

/// `s` without leading and trailing XML whitespace (space, tab, CR, LF).
pub(super) fn trim_xml(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CapError {
    CapError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn not_one_of(field: &'static str, value: &str) -> CapError {
    invalid(field, format!("unknown value {:?}", snippet(value, 64)))
}

impl Status {
    /// The CAP spelling of this value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Actual => "Actual",
            Status::Exercise => "Exercise",
            Status::System => "System",
            Status::Test => "Test",
            Status::Draft => "Draft",
        }
    }

    /// The value CAP spells `s`, if any.
    pub fn from_cap(s: &str) -> Option<Self> {
        Some(match s {
            "Actual" => Status::Actual,
            "Exercise" => Status::Exercise,
            "System" => Status::System,
            "Test" => Status::Test,
            "Draft" => Status::Draft,
            _ => return None,
        })
    }
}

impl MsgType {
    /// The CAP spelling of this value.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Alert => "Alert",
            MsgType::Update => "Update",
            MsgType::Cancel => "Cancel",
            MsgType::Ack => "Ack",
            MsgType::Error => "Error",
        }
    }

    /// The value CAP spells `s`, if any.
    pub fn from_cap(s: &str) -> Option<Self> {
        Some(match s {
            "Alert" => MsgType::Alert,
            "Update" => MsgType::Update,
            "Cancel" => MsgType::Cancel,
            "Ack" => MsgType::Ack,
            "Error" => MsgType::Error,
            _ => return None,
        })
    }
}

impl Scope {
    /// The CAP spelling of this value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Public => "Public",
            Scope::Restricted => "Restricted",
            Scope::Private => "Private",
        }
    }

    /// The value CAP spells `s`, if any.
    pub fn from_cap(s: &str) -> Option<Self> {
        Some(match s {
            "Public" => Scope::Public,
            "Restricted" => Scope::Restricted,
            "Private" => Scope::Private,
            _ => return None,
        })
    }
}

/// `<category>` values (CAP 1.2 §3.2.2).
pub const CATEGORIES: &[&str] = &[
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
];
/// `<responseType>` values.
pub const RESPONSE_TYPES: &[&str] = &[
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None",
];
/// `<urgency>` values.
pub const URGENCIES: &[&str] = &["Immediate", "Expected", "Future", "Past", "Unknown"];
/// `<severity>` values.
pub const SEVERITIES: &[&str] = &["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
/// `<certainty>` values.
pub const CERTAINTIES: &[&str] = &["Observed", "Likely", "Possible", "Unlikely", "Unknown"];

/// Parses an enumerated element into one of its CAP spellings.
pub(super) fn one_of<T>(
    field: &'static str,
    raw: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, CapError> {
    let s = trim_xml(raw);
    parse(s).ok_or_else(|| not_one_of(field, s))
}

/// Parses a string enumeration (`category`, `urgency`, …) from `allowed`.
pub(super) fn string_one_of(
    field: &'static str,
    raw: &str,
    allowed: &[&str],
) -> Result<String, CapError> {
    let s = trim_xml(raw);
    match allowed.iter().find(|a| **a == s) {
        Some(a) => Ok((*a).to_owned()),
        None => Err(not_one_of(field, s)),
    }
}

/// Parses a CAP `dateTime`: exactly `YYYY-MM-DDThh:mm:ss±hh:mm`. CAP forbids
/// `Z` and fractional seconds; UTC is written `-00:00` (or `+00:00`).
pub(super) fn date(field: &'static str, raw: &str) -> Result<DateTime<FixedOffset>, CapError> {
    let s = trim_xml(raw);
    let b = s.as_bytes();
    let shape_ok = b.len() == 25
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 | 22 => c == b':',
            19 => c == b'+' || c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(invalid(
            field,
            format!(
                "{:?} is not a CAP dateTime (YYYY-MM-DDThh:mm:ss±hh:mm)",
                snippet(s, 40)
            ),
        ));
    }
    // The shape is RFC 3339's, without fractions; its parser is several
    // times faster than a format string's.
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| invalid(field, format!("{:?}: {e}", snippet(s, 40))))
}

/// Checks an `<identifier>` or `<sender>`: non-empty, and no whitespace,
/// comma, `<` or `&` (CAP 1.2 §3.2.1).
pub(super) fn id_token(field: &'static str, raw: &str) -> Result<String, CapError> {
    let s = trim_xml(raw);
    if s.is_empty() {
        return Err(invalid(field, "empty"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
    {
        return Err(invalid(
            field,
            format!("contains forbidden character {c:?}"),
        ));
    }
    Ok(s.to_owned())
}

/// Parses `<references>`: whitespace-separated `sender,identifier,sent`.
pub(super) fn references(raw: &str, max: usize) -> Result<Vec<Reference>, CapError> {
    const F: &str = "references";
    let mut out = Vec::new();
    for triple in raw.split_ascii_whitespace() {
        if out.len() >= max {
            return Err(CapError::LimitExceeded(F));
        }
        let mut parts = triple.split(',');
        let (Some(sender), Some(identifier), Some(sent), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                F,
                format!("{:?} is not sender,identifier,sent", snippet(triple, 64)),
            ));
        };
        let sender = id_token(F, sender)?;
        let identifier = id_token(F, identifier)?;
        date(F, sent)?;
        out.push(Reference {
            sender,
            identifier,
            sent: sent.to_owned(),
        });
    }
    if out.is_empty() {
        return Err(invalid(F, "empty"));
    }
    Ok(out)
}

/// Parses a plain decimal number (`-12.5`, `3`, `.5`); no exponent, `inf`
/// or `NaN`, which `f64::from_str` would otherwise accept.
pub(super) fn decimal(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Parses `lat,lon` in WGS 84 degrees; `Err` holds a short reason.
fn point(token: &str) -> Result<Point, String> {
    let bad = || format!("bad point {:?}", snippet(token, 40));
    let (lat, lon) = token.split_once(',').ok_or_else(bad)?;
    let lat = decimal(lat).ok_or_else(bad)?;
    let lon = decimal(lon).ok_or_else(bad)?;
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!("latitude {lat} outside [-90, 90]"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} outside [-180, 180]"));
    }
    Ok(Point { lat, lon })
}

/// Parses `<polygon>`: at least four `lat,lon` points, the last equal to the
/// first, at most `max_vertices` in all.
pub(super) fn polygon(raw: &str, max_vertices: usize) -> Result<Vec<Point>, CapError> {
    let mut points = Vec::new();
    for token in raw.split_ascii_whitespace() {
        if points.len() >= max_vertices {
            return Err(CapError::PolygonTooManyVertices { max: max_vertices });
        }
        points.push(point(token).map_err(CapError::PolygonInvalid)?);
    }
    if points.len() < 4 {
        return Err(CapError::PolygonInvalid(format!(
            "{} points, at least 4 needed",
            points.len()
        )));
    }
    if points.first() != points.last() {
        return Err(CapError::PolygonNotClosed);
    }
    Ok(points)
}

/// Largest circle radius accepted, in kilometres.
pub const MAX_RADIUS_KM: f64 = 2000.0;

/// Parses `<circle>`: `lat,lon radius` with 0 < radius ≤ 2000 km.
pub(super) fn circle(raw: &str) -> Result<Circle, CapError> {
    let mut tokens = raw.split_ascii_whitespace();
    let (Some(centre), Some(radius), None) = (tokens.next(), tokens.next(), tokens.next()) else {
        return Err(CapError::CircleInvalid(format!(
            "{:?} is not \"lat,lon radius\"",
            snippet(trim_xml(raw), 40)
        )));
    };
    let center = point(centre).map_err(CapError::CircleInvalid)?;
    let radius_km = decimal(radius)
        .ok_or_else(|| CapError::CircleInvalid(format!("bad radius {:?}", snippet(radius, 40))))?;
    if !(radius_km > 0.0 && radius_km <= MAX_RADIUS_KM) {
        return Err(CapError::CircleInvalid(format!(
            "radius {radius_km} km outside (0, {MAX_RADIUS_KM}]"
        )));
    }
    Ok(Circle { center, radius_km })
}

/// Parses `<altitude>`/`<ceiling>` (feet above mean sea level).
pub(super) fn float(field: &'static str, raw: &str) -> Result<f64, CapError> {
    let s = trim_xml(raw);
    decimal(s).ok_or_else(|| invalid(field, format!("{:?} is not a number", snippet(s, 40))))
}

/// Parses `<size>` (bytes).
pub(super) fn size(raw: &str) -> Result<u64, CapError> {
    let s = trim_xml(raw);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "size",
            format!("{:?} is not a byte count", snippet(s, 40)),
        ));
    }
    s.parse()
        .map_err(|_| invalid("size", format!("{:?} is too large", snippet(s, 40))))
}

/// Checks `<language>`: an RFC 3066 tag such as `zh-CN` (letters, digits,
/// hyphens; at most 35 characters).
pub(super) fn language(raw: &str) -> Result<String, CapError> {
    let s = trim_xml(raw);
    let ok = !s.is_empty()
        && s.len() <= 35
        && s.split('-').all(|part| {
            (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(invalid(
            "language",
            format!("{:?} is not a language tag", snippet(s, 40)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_cuts_on_characters() {
        assert_eq!(snippet("abc", 5), "abc");
        assert_eq!(snippet("寻找失踪儿童", 2), "寻找…");
    }

    #[test]
    fn dates_follow_the_cap_profile() {
        let d = date("sent", "2026-11-29T09:00:00+08:00").unwrap();
        assert_eq!(d.offset().local_minus_utc(), 8 * 3600);
        assert!(date("sent", "2026-11-29T01:00:00-00:00").unwrap() == d);
        assert!(date("sent", " 2026-11-29T01:00:00+00:00\n").is_ok());
        for bad in [
            "2026-11-29T01:00:00Z",
            "2026-11-29T01:00:00.5+00:00",
            "2026-11-29 01:00:00+00:00",
            "2026-13-29T01:00:00+00:00",
            "+2026-11-29T01:00:00+00:00",
            "",
        ] {
            assert!(
                matches!(date("sent", bad), Err(CapError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn decimals_refuse_exponents_and_specials() {
        assert_eq!(decimal("-12.5"), Some(-12.5));
        assert_eq!(decimal(".5"), Some(0.5));
        assert_eq!(decimal("7."), Some(7.0));
        for bad in ["", ".", "1e5", "inf", "NaN", "+-1", "1.2.3", "0x10"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn identifiers_refuse_separators() {
        assert!(id_token("identifier", "abc-1@x").is_ok());
        for bad in ["a b", "a,b", "a<b", "a&b", ""] {
            assert!(id_token("identifier", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_parse_triples() {
        let r = references(
            "a@x,ID1,2026-11-29T09:00:00+08:00\n b@y,ID2,2026-11-29T10:00:00-00:00",
            64,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].sent, "2026-11-29T10:00:00-00:00");
        assert!(references("a@x,ID1", 64).is_err());
        assert!(references("a@x,ID1,2026-11-29T09:00:00+08:00,x", 64).is_err());
        assert!(references("a@x,ID1,yesterday", 64).is_err());
        assert!(matches!(
            references(
                "a,b,2026-11-29T09:00:00+08:00 a,c,2026-11-29T09:00:00+08:00",
                1
            ),
            Err(CapError::LimitExceeded("references"))
        ));
    }

    #[test]
    fn polygons_and_circles() {
        let p = polygon("1,1 1,2 2,2 1,1", 1000).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(
            polygon("1,1 1,2 2,2 1,3", 1000),
            Err(CapError::PolygonNotClosed)
        );
        assert!(matches!(
            polygon("1,1 1,2 1,1", 1000),
            Err(CapError::PolygonInvalid(_))
        ));
        assert!(matches!(
            polygon("1,1 1,181 2,2 1,1", 1000),
            Err(CapError::PolygonInvalid(_))
        ));
        let c = circle("23.1291,113.2644 100").unwrap();
        assert_eq!(c.radius_km, 100.0);
        for bad in [
            "23.1,113.2",
            "23.1,113.2 0",
            "23.1,113.2 2000.5",
            "23.1,113.2 -1",
            "91,0 1",
            "1,1 1 1",
        ] {
            assert!(
                matches!(circle(bad), Err(CapError::CircleInvalid(_))),
                "{bad}"
            );
        }
    }
}
