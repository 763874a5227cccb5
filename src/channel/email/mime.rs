//! MIME assembly for the e-mail channel. A [`Template`] holds what every recipient of
//! one language shares — `From`, `Subject` (RFC 2047 encoded), `Date`, `MIME-Version`
//! and the encoded multipart/alternative body (text + HTML, UTF-8, quoted-printable or
//! base64, so the message is 7-bit clean) — built once per batch. [`Template::message`]
//! adds the per-recipient headers (`To`, `Message-ID`, `In-Reply-To`/`References`,
//! `List-Unsubscribe`, `List-Unsubscribe-Post`) in front of the shared bytes. Message ids
//! are derived from the alert id and the subscriber id, so a repeat after a crash carries
//! the same id and an Update or Cancel threads under the root alert's message. Pure: no
//! I/O, the date is passed in.

use std::sync::Arc;
use std::time::SystemTime;

use lettre::message::header::{self, HeaderName, HeaderValue, Headers};
use lettre::message::{Mailbox, Mailboxes, MultiPart};
use sha2::Digest as _;

use super::render::EmailText;

const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

/// The shared part of one language's message.
#[derive(Debug)]
pub struct Template {
    /// `From`, `Subject`, `Date`, `MIME-Version` lines, CRLF-terminated.
    head: String,
    /// The multipart/alternative entity: its `Content-Type` header, a blank line, the
    /// encoded parts.
    body: Arc<[u8]>,
}

impl Template {
    /// Encode `text` once for every recipient of its language.
    pub fn new(from: &Mailbox, date: SystemTime, text: &EmailText) -> Self {
        let mut h = Headers::with_capacity(4);
        h.set(header::From::from(Mailboxes::from(from.clone())));
        h.set(header::Subject::from(text.subject.clone()));
        h.set(header::Date::new(date));
        h.set(header::MIME_VERSION_1_0);
        let body = MultiPart::alternative_plain_html(text.text.clone(), text.html.clone());
        Self {
            head: h.to_string(),
            body: Arc::from(body.formatted()),
        }
    }

    /// The whole message (RFC 5322, CRLF line ends) for one recipient.
    pub fn message(&self, r: &Addressing<'_>) -> Vec<u8> {
        let mut h = Headers::with_capacity(6);
        h.set(header::To::from(Mailboxes::from(r.to.clone())));
        h.set(header::MessageId::from(r.message_id.clone()));
        if let Some(root) = &r.thread {
            h.set(header::InReplyTo::from(root.clone()));
            h.set(header::References::from(root.clone()));
        }
        if let Some(url) = &r.unsubscribe {
            h.insert_raw(HeaderValue::new(LIST_UNSUBSCRIBE, format!("<{url}>")));
            if url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            {
                // RFC 8058 one-click unsubscription is defined for HTTPS targets only.
                h.insert_raw(HeaderValue::new(
                    LIST_UNSUBSCRIBE_POST,
                    "List-Unsubscribe=One-Click".into(),
                ));
            }
        }
        let per = h.to_string();
        let mut out = Vec::with_capacity(self.head.len() + per.len() + self.body.len());
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(per.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// What differs between two recipients of one language.
#[derive(Debug)]
pub struct Addressing<'a> {
    pub to: &'a Mailbox,
    /// `<hex@domain>`.
    pub message_id: String,
    /// The root alert's `Message-ID` for this recipient (Update, Cancel).
    pub thread: Option<String>,
    /// `List-Unsubscribe` target with `{id}` already replaced.
    pub unsubscribe: Option<String>,
}

/// `<32 hex digits of SHA-256(alert id ‖ recipient id as big-endian u32)@domain>`: the
/// same hash as `AlertContent::delivery_uuid`, one id scheme per alert and recipient.
pub fn message_id(alert_id: &str, recipient: u32, domain: &str) -> String {
    id_from(
        &sha2::Sha256::new_with_prefix(alert_id.as_bytes()),
        recipient,
        domain,
    )
}

fn id_from(seed: &sha2::Sha256, recipient: u32, domain: &str) -> String {
    let mut h = seed.clone();
    h.update(recipient.to_be_bytes());
    let d = h.finalize();
    format!("<{}@{domain}>", hex::encode(&d[..16]))
}

/// Message ids of one batch: SHA-256 already fed the alert id (and the root alert's),
/// so each recipient costs one short hash.
#[derive(Clone)]
pub struct MessageIds {
    own: sha2::Sha256,
    root: Option<sha2::Sha256>,
    domain: String,
}

impl MessageIds {
    /// Ids for `alert_id`, threading under `root_id` when it differs (Update, Cancel).
    pub fn new(alert_id: &str, root_id: &str, domain: &str) -> Self {
        let seed = |id: &str| sha2::Sha256::new_with_prefix(id.as_bytes());
        Self {
            own: seed(alert_id),
            root: (root_id != alert_id).then(|| seed(root_id)),
            domain: domain.to_string(),
        }
    }

    /// This alert's `Message-ID` for `recipient`.
    pub fn own(&self, recipient: u32) -> String {
        id_from(&self.own, recipient, &self.domain)
    }

    /// The root alert's `Message-ID` for `recipient`, for an Update or Cancel.
    pub fn root(&self, recipient: u32) -> Option<String> {
        self.root
            .as_ref()
            .map(|r| id_from(r, recipient, &self.domain))
    }
}

/// `template` with every `{id}` replaced by the subscriber id.
pub fn unsubscribe_url(template: &str, recipient: u32) -> String {
    template.replace("{id}", &recipient.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::cap::MsgType;
    use crate::channel::email::render::render;
    use crate::channel::push::render::tests::{content, info};

    fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        let head = msg.split("\r\n\r\n").next()?;
        let prefix = format!("{name}: ");
        head.split("\r\n")
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    fn from() -> Mailbox {
        "Missing-child alerts <alerts@example.org>".parse().unwrap()
    }

    #[test]
    fn message_ids_are_stable_and_distinct() {
        let a = message_id("s,i,t", 7, "alerts.example");
        assert_eq!(a, message_id("s,i,t", 7, "alerts.example"));
        assert!(a.starts_with('<') && a.ends_with("@alerts.example>"));
        let hex = &a[1..a.find('@').unwrap()];
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, message_id("s,i,t", 8, "alerts.example"));
        assert_ne!(a, message_id("s,i,u", 7, "alerts.example"));
        // Same hash as the APNs `apns-id` (one id scheme per alert and recipient).
        let c = content(vec![], MsgType::Alert);
        let uuid = c.delivery_uuid(7).replace('-', "");
        assert_eq!(
            message_id(&c.alert_id, 7, "d"),
            format!("<{uuid}@d>"),
            "derived like delivery_uuid"
        );
        let ids = MessageIds::new("s,i,u", "s,i,t", "alerts.example");
        assert_eq!(ids.own(7), message_id("s,i,u", 7, "alerts.example"));
        assert_eq!(ids.root(7), Some(a));
        assert_eq!(MessageIds::new("x", "x", "d").root(1), None);
    }

    #[test]
    fn message_has_shared_and_per_recipient_headers_and_is_seven_bit() {
        let mut i = info("zh-CN", "紧急寻人：6岁男童李小明走失", "李小明，男，6岁。");
        i.web = Some("https://police.example/a/1".into());
        let a = content(vec![i], MsgType::Update);
        let t = Template::new(
            &from(),
            SystemTime::UNIX_EPOCH,
            &render(&a, a.info_for("zh"), "x"),
        );
        let to: Mailbox = "li@example.cn".parse().unwrap();
        let m = t.message(&Addressing {
            to: &to,
            message_id: "<abc@d>".into(),
            thread: Some("<root@d>".into()),
            unsubscribe: Some(unsubscribe_url("https://u.example/unsub/{id}?k={id}", 42)),
        });
        assert!(m.is_ascii(), "7-bit clean: no 8BITMIME needed");
        let s = String::from_utf8(m).unwrap();
        // A display name with '-' is quoted (RFC 5322 `quoted-string`).
        assert_eq!(
            header(&s, "From"),
            Some("\"Missing-child alerts\" <alerts@example.org>")
        );
        assert_eq!(header(&s, "To"), Some("li@example.cn"));
        assert_eq!(header(&s, "Message-ID"), Some("<abc@d>"));
        assert_eq!(header(&s, "In-Reply-To"), Some("<root@d>"));
        assert_eq!(header(&s, "References"), Some("<root@d>"));
        assert_eq!(header(&s, "MIME-Version"), Some("1.0"));
        assert_eq!(header(&s, "Date"), Some("Thu, 01 Jan 1970 00:00:00 +0000"));
        assert_eq!(
            header(&s, "List-Unsubscribe"),
            Some("<https://u.example/unsub/42?k=42>")
        );
        assert_eq!(
            header(&s, "List-Unsubscribe-Post"),
            Some("List-Unsubscribe=One-Click")
        );
        let subject = header(&s, "Subject").unwrap();
        // ASCII words stay readable, the Chinese ones are RFC 2047 encoded words.
        assert!(subject.starts_with("UPDATE: =?utf-8?b?"), "{subject}");
        assert!(s.contains("Content-Type: multipart/alternative;"));
        assert!(s.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(s.contains("Content-Type: text/html; charset=utf-8"));
        assert!(!s.contains("Content-Disposition: attachment"));
    }

    #[test]
    fn a_first_alert_has_no_thread_headers_and_http_unsubscribe_has_no_one_click() {
        let a = content(vec![info("en", "Quake", "Shaking")], MsgType::Alert);
        let t = Template::new(
            &from(),
            SystemTime::now(),
            &render(&a, a.info_for("en"), "x"),
        );
        let to: Mailbox = "a@example.org".parse().unwrap();
        let s = String::from_utf8(t.message(&Addressing {
            to: &to,
            message_id: message_id(&a.alert_id, 1, "d"),
            thread: None,
            unsubscribe: Some("http://u.example/1".into()),
        }))
        .unwrap();
        assert_eq!(header(&s, "Subject"), Some("Quake"));
        assert_eq!(header(&s, "In-Reply-To"), None);
        assert_eq!(header(&s, "References"), None);
        assert_eq!(header(&s, "List-Unsubscribe"), Some("<http://u.example/1>"));
        assert_eq!(header(&s, "List-Unsubscribe-Post"), None);
        let none = String::from_utf8(t.message(&Addressing {
            to: &to,
            message_id: "<x@d>".into(),
            thread: None,
            unsubscribe: None,
        }))
        .unwrap();
        assert_eq!(header(&none, "List-Unsubscribe"), None);
    }
}
