//! The shipped sample alert and the small text edits that make a fresh,
//! unique copy of it (new identifier, `sent`, `expires`): used by the demo,
//! `tocsin send --now`, the integration tests and the benches. Plain string
//! surgery on elements the sample is known to have; never used on input
//! from outside.

use chrono::{DateTime, Utc};

/// The sample alert shipped with the project (zh-CN + en-US, a circle and a
/// province geocode).
pub const SAMPLE_ALERT: &str = include_str!("../../config/samples/missing-child.xml");

/// Replace the text of every `<name>…</name>` element with `value`.
pub fn set_elements(xml: &str, name: &str, value: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push_str(&rest[..i + open.len()]);
        out.push_str(value);
        rest = &after[j..];
    }
    out.push_str(rest);
    out
}

/// Remove every `<name>…</name>` element.
pub fn remove_elements(xml: &str, name: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let Some(j) = rest[i..].find(&close) else {
            break;
        };
        out.push_str(&rest[..i]);
        rest = &rest[i + j + close.len()..];
    }
    out.push_str(rest);
    out
}

/// A time in CAP's form (`-00:00` for UTC; CAP forbids `Z`).
pub fn cap_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S-00:00").to_string()
}

/// The sample with identifier `ident`, `sent`/`effective` = `now`, `expires`
/// = `now + 24 h`, and only its circle (the province geocode removed).
pub fn fresh_alert(ident: &str, now: DateTime<Utc>) -> String {
    let x = remove_elements(SAMPLE_ALERT, "geocode");
    let x = set_elements(&x, "identifier", ident);
    let x = set_elements(&x, "sent", &cap_time(now));
    let x = set_elements(&x, "effective", &cap_time(now));
    set_elements(&x, "expires", &cap_time(now + chrono::Duration::hours(24)))
}

/// The text of the first `<name>…</name>` element, if any.
pub fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

/// An Update or Cancel of `original` (a copy of it with a new identifier, `sent` =
/// `now`, the `msgType`, and a `<references>` to the original).
pub fn follow_up(original: &str, ident: &str, msg_type: &str, now: DateTime<Utc>) -> String {
    let reference = format!(
        "{},{},{}",
        element(original, "sender").unwrap_or(""),
        element(original, "identifier").unwrap_or(""),
        element(original, "sent").unwrap_or("")
    );
    let x = remove_elements(original, "references");
    let x = set_elements(&x, "identifier", ident);
    let x = set_elements(&x, "sent", &cap_time(now));
    let x = set_elements(&x, "msgType", msg_type);
    x.replacen(
        "<scope>Public</scope>",
        &format!("<scope>Public</scope>\n  <references>{reference}</references>"),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_alert_parses_with_new_fields() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let x = fresh_alert("abc", now);
        let a = crate::alert::cap::parse(x.as_bytes(), &Default::default()).unwrap();
        assert_eq!(a.identifier, "abc");
        assert_eq!(a.sent_raw, "2026-11-29T10:00:00-00:00");
        assert!(a
            .infos
            .iter()
            .all(|i| i.areas.iter().all(|a| a.geocodes.is_empty())));
    }
}
