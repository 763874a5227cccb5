//! Push payloads, rendered once per (alert, info block) per batch — never per
//! recipient. The text comes from the CAP info block in the recipient's
//! language (`AlertContent::info_for`): title = headline, else event; body =
//! description, plus the instruction when it fits; image = the first
//! `image/*` resource with a URI. Both providers cap a notification at
//! 4096 bytes: the body is trimmed at a character boundary with "…", the
//! title is left whole. APNs bodies are the same for every recipient of a
//! language, so they are one shared `Bytes`; an FCM body differs only by the
//! token, so it is a prefix and suffix around the JSON-escaped token. Pure
//! functions: no I/O, no clock except the `now` passed in.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::alert::cap::{Info, MsgType};
use crate::channel::AlertContent;

/// Provider limit on a notification payload (APNs; FCM's message payload).
pub const MAX_PAYLOAD: usize = 4096;
const ELLIPSIS: &str = "…";

/// The user-visible parts of one info block, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub instruction: &'a str,
    pub image: Option<&'a str>,
}

impl<'a> Text<'a> {
    /// From an info block; `None` (an alert without info, e.g. a bare Cancel)
    /// gives a title from the message type and the note as body.
    pub fn of(alert: &'a AlertContent, info: Option<&'a Info>) -> Self {
        let Some(info) = info else {
            return Self {
                title: match alert.msg_type() {
                    MsgType::Cancel => "Alert cancelled",
                    MsgType::Update => "Alert updated",
                    _ => "Alert",
                },
                description: alert.alert.note.as_deref().unwrap_or(""),
                instruction: "",
                image: None,
            };
        };
        let nonempty = |s: &'a Option<String>| s.as_deref().filter(|s| !s.trim().is_empty());
        if alert.msg_type() == MsgType::Cancel {
            // "Child found": the notification that replaces the alert (same collapse
            // id) thanks people; the authority's own words follow.
            return Self {
                title: found_title(&info.language),
                description: nonempty(&info.headline)
                    .or(nonempty(&info.description))
                    .unwrap_or(&info.event),
                instruction: "",
                image: None,
            };
        }
        Self {
            title: nonempty(&info.headline).unwrap_or(&info.event),
            description: nonempty(&info.description).unwrap_or(""),
            instruction: nonempty(&info.instruction).unwrap_or(""),
            image: info
                .resources
                .iter()
                .filter(|r| {
                    r.mime_type
                        .trim()
                        .get(..6)
                        .is_some_and(|p| p.eq_ignore_ascii_case("image/"))
                })
                .find_map(|r| r.uri.as_deref().filter(|u| !u.is_empty())),
        }
    }
}

/// The title of a Cancel's push notification, in the info block's language.
pub fn found_title(language: &str) -> &'static str {
    let primary = language.split('-').next().unwrap_or("");
    if primary.eq_ignore_ascii_case("zh") {
        "已找到，感谢关注"
    } else {
        "Found — thank you"
    }
}

/// The CAP `msgType` as sent in payloads.
pub fn msg_type_str(t: MsgType) -> &'static str {
    match t {
        MsgType::Alert => "Alert",
        MsgType::Update => "Update",
        MsgType::Cancel => "Cancel",
        MsgType::Ack => "Ack",
        MsgType::Error => "Error",
    }
}

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Render with the longest body that keeps the output within `limit`:
/// description + instruction, else the description (or instruction) alone,
/// trimmed with "…" when it must be. The title is never trimmed unless even
/// an empty body and no image overflow — then a payload the provider would
/// refuse outright is worse than a cut headline, so it is cut too.
fn fit(
    text: &Text<'_>,
    limit: usize,
    render: impl Fn(&str, &str, Option<&str>) -> Vec<u8>,
) -> Vec<u8> {
    let (d, i) = (text.description, text.instruction);
    if !d.is_empty() && !i.is_empty() {
        let full = format!("{d}\n\n{i}");
        let out = render(text.title, &full, text.image);
        if out.len() <= limit {
            return out;
        }
    }
    let body = if d.is_empty() { i } else { d };
    let mut out = render(text.title, body, text.image);
    let mut keep = body.len();
    while out.len() > limit && keep > 0 {
        // JSON escaping only lengthens text, so cutting `excess` raw bytes
        // removes at least `excess` output bytes; loop for the rare rest.
        let excess = out.len() - limit;
        keep = floor_boundary(body, keep.saturating_sub(excess + ELLIPSIS.len()));
        let cut = format!("{}{ELLIPSIS}", body[..keep].trim_end());
        out = render(text.title, &cut, text.image);
    }
    if out.len() <= limit {
        return out;
    }
    out = render(text.title, "", None);
    let mut keep = text.title.len();
    while out.len() > limit && keep > 0 {
        let excess = out.len() - limit;
        keep = floor_boundary(text.title, keep.saturating_sub(excess + ELLIPSIS.len()));
        let cut = format!("{}{ELLIPSIS}", &text.title[..keep]);
        out = render(&cut, "", None);
    }
    out
}

fn to_vec(v: &Value) -> Vec<u8> {
    // Serialising a `Value` into memory cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// The APNs payload for one language (≤ 4096 bytes).
pub fn apns_payload(
    alert: &AlertContent,
    text: &Text<'_>,
    collapse_id: &str,
    critical: bool,
) -> Bytes {
    let msg_type = msg_type_str(alert.msg_type());
    let render = |title: &str, body: &str, image: Option<&str>| {
        let mut aps = json!({
            "alert": {"title": title, "body": body},
            "thread-id": collapse_id,
        });
        if critical {
            aps["interruption-level"] = json!("critical");
            aps["sound"] = json!({"critical": 1, "name": "default", "volume": 1.0});
        } else {
            aps["interruption-level"] = json!("time-sensitive");
            aps["sound"] = json!("default");
        }
        let mut v = json!({"aps": aps, "alert_id": alert.alert_id, "msg_type": msg_type});
        if let Some(url) = image {
            // Lets the app's notification service extension attach the image.
            v["aps"]["mutable-content"] = json!(1);
            v["image"] = json!(url);
        }
        to_vec(&v)
    };
    Bytes::from(fit(text, MAX_PAYLOAD, render))
}

/// An FCM v1 `messages:send` body with the token left out: the token is
/// the only per-recipient part.
#[derive(Debug, Clone)]
pub struct FcmTemplate {
    /// `,"android":…}}` — everything after the token's closing quote.
    suffix: Bytes,
}

const FCM_PREFIX: &[u8] = br#"{"message":{"token":""#;

impl FcmTemplate {
    /// The request body for one device token.
    pub fn body_for(&self, token: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(FCM_PREFIX.len() + token.len() + 8 + self.suffix.len());
        b.put_slice(FCM_PREFIX);
        escape_json_into(&mut b, token);
        b.put_slice(&self.suffix);
        b.freeze()
    }
}

/// The FCM template for one language; `ttl` counts from `now` to the CAP expiry.
pub fn fcm_template(
    alert: &AlertContent,
    text: &Text<'_>,
    collapse_id: &str,
    now: DateTime<Utc>,
) -> FcmTemplate {
    let msg_type = msg_type_str(alert.msg_type());
    let ttl = alert
        .expires
        .map(|e| format!("{}s", (e - now).num_seconds().max(0)));
    let render = |title: &str, body: &str, image: Option<&str>| {
        let mut android = json!({
            "priority": "HIGH",
            "collapse_key": collapse_id,
            "notification": {"tag": collapse_id},
        });
        if let Some(ttl) = &ttl {
            android["ttl"] = json!(ttl);
        }
        let mut notification = json!({"title": title, "body": body});
        if let Some(url) = image {
            notification["image"] = json!(url);
        }
        to_vec(&json!({
            "android": android,
            "notification": notification,
            "data": {"alert_id": alert.alert_id, "msg_type": msg_type},
        }))
    };
    // `{"android":…}` becomes `","android":…}}`: the token's closing quote,
    // the other fields, and the closing braces of `message` and the body.
    let obj = fit(text, MAX_PAYLOAD, render);
    let mut suffix = BytesMut::with_capacity(obj.len() + 3);
    suffix.put_slice(b"\",");
    suffix.put_slice(obj.get(1..).unwrap_or_default());
    suffix.put_slice(b"}");
    FcmTemplate {
        suffix: suffix.freeze(),
    }
}

/// Append `s` as the inside of a JSON string (RFC 8259 escaping).
pub fn escape_json_into(out: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.put_slice(b"\\u00");
            out.put_u8(HEX[usize::from(c >> 4)]);
            out.put_u8(HEX[usize::from(c & 0xf)]);
        } else {
            out.put_slice(esc);
        }
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
}

/// Rendered payloads of one batch, one per distinct info block, looked up
/// by the recipient's language tag (a short linear scan: batches carry a
/// handful of languages). `info_for` runs once per distinct tag.
pub struct PerLanguage<'r, T> {
    by_tag: Vec<(&'r str, usize)>,
    /// (index of the info block, or `usize::MAX` for none; payload)
    rendered: Vec<(usize, T)>,
}

impl<'r, T> Default for PerLanguage<'r, T> {
    fn default() -> Self {
        Self {
            by_tag: Vec::new(),
            rendered: Vec::new(),
        }
    }
}

impl<'r, T> PerLanguage<'r, T> {
    /// The payload for `language`, rendering it with `render` on first use
    /// of its info block.
    pub fn get<'a>(
        &mut self,
        alert: &'a AlertContent,
        language: &'r str,
        render: impl FnOnce(Option<&'a Info>) -> T,
    ) -> &T {
        let slot = match self.by_tag.iter().find(|(t, _)| *t == language) {
            Some(&(_, slot)) => slot,
            None => {
                let info = alert.info_for(language);
                let idx = info
                    .and_then(|i| alert.alert.infos.iter().position(|x| std::ptr::eq(x, i)))
                    .unwrap_or(usize::MAX);
                let slot = match self.rendered.iter().position(|(k, _)| *k == idx) {
                    Some(s) => s,
                    None => {
                        self.rendered.push((idx, render(info)));
                        self.rendered.len() - 1
                    }
                };
                self.by_tag.push((language, slot));
                slot
            }
        };
        &self.rendered[slot].1
    }

    /// Distinct payloads rendered so far.
    pub fn rendered(&self) -> usize {
        self.rendered.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::alert::cap::{Alert, Resource, Scope, Status};
    use std::sync::Arc;
    use std::time::Instant;

    pub(crate) fn info(lang: &str, headline: &str, description: &str) -> Info {
        Info {
            language: lang.into(),
            categories: vec!["Geo".into()],
            event: "Earthquake".into(),
            response_types: vec![],
            urgency: "Immediate".into(),
            severity: "Extreme".into(),
            certainty: "Observed".into(),
            audience: None,
            event_codes: vec![],
            effective: None,
            onset: None,
            expires: None,
            sender_name: None,
            headline: Some(headline.into()),
            description: Some(description.into()),
            instruction: None,
            web: None,
            contact: None,
            parameters: vec![],
            resources: vec![],
            areas: vec![],
        }
    }

    pub(crate) fn content(infos: Vec<Info>, msg_type: MsgType) -> AlertContent {
        let sent =
            chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05+00:00").expect("valid date");
        let alert = Alert {
            identifier: "EQ-1".into(),
            sender: "civil@example.org".into(),
            sent,
            sent_raw: "2026-01-02T03:04:05+00:00".into(),
            status: Status::Actual,
            msg_type,
            source: None,
            scope: Scope::Public,
            restriction: None,
            addresses: None,
            codes: vec![],
            note: None,
            references: vec![],
            incidents: None,
            infos,
        };
        AlertContent {
            seq: 1,
            alert_id: alert.alert_id(),
            receipt: "r".into(),
            envelope: Arc::from(&b""[..]),
            alert,
            accepted_at: Instant::now(),
            expires: Some(Utc::now() + chrono::Duration::seconds(3600)),
        }
    }

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("valid JSON")
    }

    #[test]
    fn apns_payload_has_every_field() {
        let mut i = info("en", "Quake", "Shaking expected");
        i.instruction = Some("Drop, cover, hold on".into());
        i.resources.push(Resource {
            resource_desc: "map".into(),
            mime_type: "application/pdf".into(),
            size: None,
            uri: Some("https://x/map.pdf".into()),
            deref_uri: None,
            digest: None,
        });
        i.resources.push(Resource {
            resource_desc: "photo".into(),
            mime_type: "Image/JPEG".into(),
            size: None,
            uri: Some("https://x/p.jpg".into()),
            deref_uri: None,
            digest: None,
        });
        let a = content(vec![i], MsgType::Update);
        let t = Text::of(&a, a.alert.infos.first());
        let v = parse(&apns_payload(&a, &t, "c0ffee", false));
        assert_eq!(v["aps"]["alert"]["title"], "Quake");
        assert_eq!(
            v["aps"]["alert"]["body"],
            "Shaking expected\n\nDrop, cover, hold on"
        );
        assert_eq!(v["aps"]["interruption-level"], "time-sensitive");
        assert_eq!(v["aps"]["sound"], "default");
        assert_eq!(v["aps"]["thread-id"], "c0ffee");
        assert_eq!(v["aps"]["mutable-content"], 1);
        assert_eq!(v["alert_id"], a.alert_id.as_str());
        assert_eq!(v["image"], "https://x/p.jpg");
        assert_eq!(v["msg_type"], "Update");

        let v = parse(&apns_payload(&a, &t, "c0ffee", true));
        assert_eq!(v["aps"]["interruption-level"], "critical");
        assert_eq!(v["aps"]["sound"]["critical"], 1);
        assert_eq!(v["aps"]["sound"]["name"], "default");
    }

    #[test]
    fn title_falls_back_to_event_and_no_info_still_renders() {
        let mut i = info("en", "", "d");
        i.headline = None;
        let a = content(vec![i], MsgType::Alert);
        assert_eq!(Text::of(&a, a.alert.infos.first()).title, "Earthquake");
        let a = content(vec![], MsgType::Cancel);
        let v = parse(&apns_payload(&a, &Text::of(&a, None), "c", false));
        assert_eq!(v["aps"]["alert"]["title"], "Alert cancelled");
        assert_eq!(v["msg_type"], "Cancel");
    }

    #[test]
    fn long_cjk_body_is_trimmed_to_4096_and_title_kept() {
        let title = "強い地震が発生しました 震度6強";
        let desc = "沿岸部では津波に警戒してください。".repeat(200);
        let mut i = info("ja", title, &desc);
        i.instruction = Some("直ちに高台へ避難してください。".into());
        let a = content(vec![i], MsgType::Alert);
        let t = Text::of(&a, a.alert.infos.first());
        let p = apns_payload(&a, &t, "c", false);
        assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
        assert!(p.len() > MAX_PAYLOAD - 8, "trimmed too much: {}", p.len());
        let v = parse(&p);
        assert_eq!(v["aps"]["alert"]["title"], title);
        let body = v["aps"]["alert"]["body"].as_str().expect("body");
        assert!(body.ends_with('…'));
        assert!(desc.starts_with(body.trim_end_matches('…')));

        let f = fcm_template(&a, &t, "c", Utc::now());
        assert!(f.suffix.len() <= MAX_PAYLOAD + 3);
        let v = parse(&f.body_for("tok"));
        assert_eq!(v["message"]["notification"]["title"], title);
        assert!(v["message"]["notification"]["body"]
            .as_str()
            .is_some_and(|b| b.ends_with('…')));
    }

    #[test]
    fn instruction_is_dropped_before_the_description_is_cut() {
        let desc = "d".repeat(3000);
        let mut i = info("en", "T", &desc);
        i.instruction = Some("i".repeat(2000));
        let a = content(vec![i], MsgType::Alert);
        let v = parse(&apns_payload(
            &a,
            &Text::of(&a, a.alert.infos.first()),
            "c",
            false,
        ));
        assert_eq!(v["aps"]["alert"]["body"], desc.as_str());
    }

    #[test]
    fn escaping_heavy_body_still_fits() {
        let mut i = info("en", "T", &"\"\\\u{1}".repeat(2000));
        i.instruction = None;
        let a = content(vec![i], MsgType::Alert);
        let p = apns_payload(&a, &Text::of(&a, a.alert.infos.first()), "c", false);
        assert!(p.len() <= MAX_PAYLOAD);
        parse(&p);
    }

    #[test]
    fn absurd_headline_is_cut_as_a_last_resort() {
        let a = content(vec![info("en", &"標".repeat(3000), "body")], MsgType::Alert);
        let p = apns_payload(&a, &Text::of(&a, a.alert.infos.first()), "c", false);
        assert!(p.len() <= MAX_PAYLOAD);
        let v = parse(&p);
        assert!(v["aps"]["alert"]["title"]
            .as_str()
            .is_some_and(|t| t.ends_with('…')));
    }

    #[test]
    fn fcm_body_has_every_field_and_escapes_the_token() {
        let a = content(vec![info("en", "Quake", "Shaking")], MsgType::Alert);
        let now = Utc::now();
        let f = fcm_template(&a, &Text::of(&a, a.alert.infos.first()), "c0ffee", now);
        let token = "ab\"c\\d\ne\u{1}f:APA91_-x";
        let v = parse(&f.body_for(token));
        let m = &v["message"];
        assert_eq!(m["token"], token);
        assert_eq!(m["android"]["priority"], "HIGH");
        assert_eq!(m["android"]["collapse_key"], "c0ffee");
        assert_eq!(m["android"]["notification"]["tag"], "c0ffee");
        let ttl = m["android"]["ttl"].as_str().expect("ttl");
        let secs: i64 = ttl.trim_end_matches('s').parse().expect("seconds");
        assert!((3590..=3600).contains(&secs), "{ttl}");
        assert_eq!(m["notification"]["title"], "Quake");
        assert_eq!(m["notification"]["body"], "Shaking");
        assert!(m["notification"].get("image").is_none());
        assert_eq!(m["data"]["alert_id"], a.alert_id.as_str());
        assert_eq!(m["data"]["msg_type"], "Alert");
        // No expiry: no ttl (FCM's default applies).
        let mut b = content(vec![info("en", "Q", "S")], MsgType::Alert);
        b.expires = None;
        let f = fcm_template(&b, &Text::of(&b, b.alert.infos.first()), "c", now);
        assert!(parse(&f.body_for("t"))["message"]["android"]
            .get("ttl")
            .is_none());
    }

    #[test]
    fn escape_matches_serde() {
        for s in ["plain", "q\"b\\s", "ctl\u{0}\u{1f}\t\r\n", "漢字é", ""] {
            let mut b = BytesMut::new();
            escape_json_into(&mut b, s);
            let quoted = format!("\"{}\"", std::str::from_utf8(&b).expect("utf8"));
            assert_eq!(serde_json::from_str::<String>(&quoted).expect("json"), s);
        }
    }

    #[test]
    fn renders_once_per_info_block() {
        let a = content(
            vec![info("en-US", "Quake", "x"), info("zh-CN", "地震", "y")],
            MsgType::Alert,
        );
        let mut cache: PerLanguage<'_, String> = PerLanguage::default();
        let mut calls = 0;
        for lang in ["en-US", "zh-CN", "en", "zh", "fr", "en-US", "zh-CN"] {
            let t = cache
                .get(&a, lang, |i| {
                    calls += 1;
                    Text::of(&a, i).title.to_owned()
                })
                .clone();
            let want = if lang.starts_with("zh") {
                "地震"
            } else {
                "Quake"
            };
            assert_eq!(t, want, "{lang}");
        }
        assert_eq!(calls, 2);
        assert_eq!(cache.rendered(), 2);
    }
}
