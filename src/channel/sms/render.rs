//! The SMS wording of an alert: one short template per info block (headline, key facts,
//! hotline, link), shortened to the configured number of parts and cut into [`Part`]s by
//! [`text`](super::text). Rendered once per language per batch and shared by every
//! recipient of that language; pure, no I/O.

use crate::alert::cap::{Info, MsgType};
use crate::channel::AlertContent;

use super::text::{self, Part, TextError};

/// One alert's SMS in one language, ready for any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    /// The whole text, as it will read on the handset.
    pub text: String,
    /// Its parts, each with a concatenation UDH when there are several.
    pub parts: Vec<Part>,
}

/// The template fields for one info block: headline (prefixed for an Update or Cancel),
/// description, instruction, then hotline and link, which [`text::fit_template`] never cuts.
pub fn fields(alert: &AlertContent, info: Option<&Info>, link: &str) -> [String; 5] {
    let prefix = match alert.msg_type() {
        MsgType::Update => "UPDATE: ",
        MsgType::Cancel => "CANCELLED: ",
        _ => "",
    };
    let headline = info
        .and_then(|i| i.headline.as_deref().or(Some(i.event.as_str())))
        .filter(|h| !h.trim().is_empty())
        .unwrap_or(match alert.msg_type() {
            MsgType::Cancel => "Alert cancelled",
            MsgType::Update => "Alert updated",
            _ => "Alert",
        });
    let one_line = |s: Option<&String>| {
        s.map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    [
        format!("{prefix}{}", headline.trim()),
        one_line(info.and_then(|i| i.description.as_ref())),
        one_line(info.and_then(|i| i.instruction.as_ref())),
        one_line(info.and_then(|i| i.contact.as_ref())),
        link.to_string(),
    ]
}

/// Render the SMS for one info block in at most `max_parts` parts. `reference` is the
/// concatenation reference shared by the parts (one per alert, so an Update never
/// merges with the Alert it replaces on a handset).
pub fn render(
    alert: &AlertContent,
    info: Option<&Info>,
    public_url: &str,
    reference: u8,
    max_parts: usize,
) -> Result<SmsMessage, TextError> {
    let link = alert.public_link(info, public_url);
    let f = fields(alert, info, &link);
    let refs: Vec<&str> = f.iter().map(String::as_str).collect();
    let text = text::fit_template(&refs, max_parts);
    let parts = text::encode(&text, reference, max_parts)?;
    Ok(SmsMessage { text, parts })
}

/// The concatenation reference of an alert: its journal sequence number, folded to a byte.
pub fn reference(alert: &AlertContent) -> u8 {
    alert.seq.to_le_bytes().iter().fold(0u8, |a, b| a ^ b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::push::render::tests::{content, info};
    use crate::channel::sms::text::Coding;

    #[test]
    fn english_alert_fits_gsm7_and_keeps_hotline_and_link() {
        let mut i = info(
            "en",
            "Missing child: Li Wei, 6",
            &"Last seen near the park. ".repeat(40),
        );
        i.contact = Some("Call 110".into());
        i.web = Some("https://alerts.example/a/1".into());
        let a = content(vec![i], MsgType::Alert);
        let m = render(&a, a.info_for("en"), "http://x", 7, 2).unwrap();
        assert!(m.parts.len() <= 2);
        assert!(m.parts.iter().all(|p| p.coding == Coding::Gsm7));
        assert!(m.text.starts_with("Missing child: Li Wei, 6\n"));
        assert!(
            m.text.ends_with("Call 110\nhttps://alerts.example/a/1"),
            "{}",
            m.text
        );
        let joined: String = m.parts.iter().map(Part::text).collect();
        assert_eq!(joined, m.text);
    }

    #[test]
    fn chinese_alert_is_ucs2_and_cancel_is_prefixed() {
        let mut i = info("zh-CN", "寻找失踪儿童", "李伟，6岁，最后出现在公园附近。");
        i.contact = Some("请拨打110".into());
        let a = content(vec![i], MsgType::Cancel);
        let m = render(&a, a.info_for("zh"), "https://tocsin.example/", 1, 2).unwrap();
        assert_eq!(m.parts[0].coding, Coding::Ucs2);
        assert!(m.text.starts_with("CANCELLED: 寻找失踪儿童"));
        assert!(m
            .text
            .ends_with(&format!("https://tocsin.example/v1/alerts/{}", a.seq)));
    }

    #[test]
    fn alert_without_info_still_renders() {
        let a = content(vec![], MsgType::Cancel);
        let m = render(&a, None, "http://x", 0, 1).unwrap();
        assert!(m.text.starts_with("CANCELLED: Alert cancelled"));
        assert_eq!(m.parts.len(), 1);
    }
}
