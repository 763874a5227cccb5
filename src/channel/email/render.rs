//! The e-mail wording of an alert: a subject, a text/plain body and an HTML body for
//! one CAP info block — headline, description, instruction, contact/hotline, the
//! alert's public link and the photo *linked* (`<img src>` of the first `image/*`
//! resource), never attached. Rendered once per language per batch and shared by every
//! recipient of that language. Pure: no I/O, no clock. Everything taken from the alert
//! is HTML-escaped, and only `http(s)` URLs ever become an `href` or a `src`.

use std::fmt::Write as _;

use crate::alert::cap::{Info, MsgType};
use crate::channel::push::render::Text;
use crate::channel::AlertContent;

/// One alert's e-mail in one language, before MIME encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailText {
    /// One line, prefixed `UPDATE: ` / `CANCELLED: ` for an Update or Cancel.
    pub subject: String,
    /// The text/plain alternative.
    pub text: String,
    /// The text/html alternative (a whole document).
    pub html: String,
}

/// The subject prefix of a message type.
fn prefix(t: MsgType) -> &'static str {
    match t {
        MsgType::Update => "UPDATE: ",
        MsgType::Cancel => "CANCELLED: ",
        _ => "",
    }
}

/// `s` on one line: runs of whitespace (newlines included) become one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `u` when it is an absolute `http(s)` URL without whitespace or control characters.
pub fn web_url(u: &str) -> Option<&str> {
    let u = u.trim();
    let lower = u.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
    let clean = !u.chars().any(|c| c.is_whitespace() || c.is_control());
    (scheme_ok && clean && u.len() > 8).then_some(u)
}

/// Append `s` HTML-escaped (text and attribute values alike).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `s` HTML-escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    escape_into(&mut out, s);
    out
}

/// A paragraph of `s`, escaped, line breaks kept as `<br>`.
fn paragraph(out: &mut String, s: &str, strong: bool) {
    if s.trim().is_empty() {
        return;
    }
    out.push_str(if strong { "<p><strong>" } else { "<p>" });
    for (i, line) in s.trim().lines().enumerate() {
        if i > 0 {
            out.push_str("<br>\n");
        }
        escape_into(out, line.trim_end());
    }
    out.push_str(if strong { "</strong></p>\n" } else { "</p>\n" });
}

/// Render the e-mail for one info block (`None`: an alert without info, e.g. a bare
/// Cancel, which reads from its message type and note). `public_url` is the base of
/// the link when the block has no `<web>`.
pub fn render(alert: &AlertContent, info: Option<&Info>, public_url: &str) -> EmailText {
    let t = Text::of(alert, info);
    let subject = format!("{}{}", prefix(alert.msg_type()), one_line(t.title));
    let contact = info
        .and_then(|i| i.contact.as_deref())
        .map(str::trim)
        .unwrap_or("");
    let link = alert.public_link(info, public_url);
    let image = t.image.and_then(web_url);
    let language = info.map_or("", |i| i.language.as_str());

    let mut text = String::with_capacity(1024);
    text.push_str(&subject);
    text.push('\n');
    for part in [t.description, t.instruction, contact] {
        let part = part.trim();
        if !part.is_empty() {
            text.push('\n');
            text.push_str(part);
            text.push('\n');
        }
    }
    if let Some(img) = image {
        let _ = write!(text, "\n{img}\n");
    }
    let _ = write!(text, "\n{link}\n");

    let mut html = String::with_capacity(2048);
    html.push_str("<!DOCTYPE html>\n<html");
    if !language.is_empty() {
        html.push_str(" lang=\"");
        escape_into(&mut html, language);
        html.push('"');
    }
    html.push_str(
        ">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width\">\n<title>",
    );
    escape_into(&mut html, &subject);
    html.push_str(
        "</title>\n</head>\n<body style=\"font-family:sans-serif;max-width:40em\">\n\
         <h1 style=\"color:#b00020\">",
    );
    escape_into(&mut html, &subject);
    html.push_str("</h1>\n");
    if let Some(img) = image {
        html.push_str("<p><img src=\"");
        escape_into(&mut html, img);
        html.push_str("\" alt=\"");
        escape_into(&mut html, &one_line(t.title));
        html.push_str("\" style=\"max-width:100%;height:auto\"></p>\n");
    }
    paragraph(&mut html, t.description, false);
    paragraph(&mut html, t.instruction, true);
    paragraph(&mut html, contact, false);
    html.push_str("<p>");
    match web_url(&link) {
        Some(url) => {
            html.push_str("<a href=\"");
            escape_into(&mut html, url);
            html.push_str("\">");
            escape_into(&mut html, url);
            html.push_str("</a>");
        }
        None => escape_into(&mut html, &link),
    }
    html.push_str("</p>\n</body>\n</html>\n");
    EmailText {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::cap::Resource;
    use crate::channel::push::render::tests::{content, info};

    fn photo(uri: &str, mime: &str) -> Resource {
        Resource {
            resource_desc: "photo".into(),
            mime_type: mime.into(),
            size: None,
            uri: Some(uri.into()),
            deref_uri: None,
            digest: None,
        }
    }

    #[test]
    fn english_alert_has_every_part_and_links_the_photo() {
        let mut i = info(
            "en-US",
            "Missing child: boy, 6",
            "Red jacket & jeans.\nLast seen near <Exit B>.",
        );
        i.instruction = Some("Call 110 \"now\"".into());
        i.contact = Some("110 / +86 20 110".into());
        i.web = Some("https://police.example/a?x=1&y=2".into());
        i.resources
            .push(photo("https://x/map.pdf", "application/pdf"));
        i.resources
            .push(photo("https://x/p.jpg?s=1&t=2", "image/jpeg"));
        let a = content(vec![i], MsgType::Alert);
        let e = render(&a, a.info_for("en"), "http://unused");
        assert_eq!(e.subject, "Missing child: boy, 6");
        assert!(e
            .text
            .starts_with("Missing child: boy, 6\n\nRed jacket & jeans.\n"));
        assert!(e.text.contains("Call 110 \"now\""));
        assert!(e.text.contains("110 / +86 20 110"));
        assert!(e.text.contains("https://x/p.jpg?s=1&t=2"));
        assert!(e.text.ends_with("\nhttps://police.example/a?x=1&y=2\n"));

        let h = &e.html;
        assert!(h.contains("<html lang=\"en-US\">"));
        assert!(h.contains("<h1 style=\"color:#b00020\">Missing child: boy, 6</h1>"));
        assert!(h.contains("<p>Red jacket &amp; jeans.<br>\nLast seen near &lt;Exit B&gt;.</p>"));
        assert!(h.contains("<p><strong>Call 110 &quot;now&quot;</strong></p>"));
        assert!(
            h.contains("<img src=\"https://x/p.jpg?s=1&amp;t=2\" alt=\"Missing child: boy, 6\"")
        );
        assert!(!h.contains("map.pdf"), "only image resources are shown");
        assert!(h.contains(
            "<a href=\"https://police.example/a?x=1&amp;y=2\">https://police.example/a?x=1&amp;y=2</a>"
        ));
        assert!(
            !h.contains("<Exit"),
            "nothing from the alert is left unescaped"
        );
    }

    #[test]
    fn chinese_update_is_prefixed_and_falls_back_to_the_public_page() {
        let mut i = info("zh-CN", "紧急寻人：6岁男童\n李小明", "身穿红色羽绒服。");
        i.contact = Some("请拨打110".into());
        let a = content(vec![i], MsgType::Update);
        let e = render(&a, a.info_for("zh"), "https://tocsin.example/");
        assert_eq!(e.subject, "UPDATE: 紧急寻人：6岁男童 李小明");
        let link = format!("https://tocsin.example/v1/alerts/{}", a.seq);
        assert!(e.text.contains("身穿红色羽绒服。"));
        assert!(e.text.ends_with(&format!("\n{link}\n")));
        assert!(e.html.contains("<html lang=\"zh-CN\">"));
        assert!(e.html.contains("<p>请拨打110</p>"));
        assert!(e.html.contains(&format!("<a href=\"{link}\">")));
        assert!(!e.html.contains("<img"), "no photo, no image tag");
    }

    #[test]
    fn unsafe_urls_never_become_links() {
        let mut i = info("en", "T", "d");
        i.web = Some("javascript:alert(1)".into());
        i.resources
            .push(photo("data:image/png;base64,AAAA", "image/png"));
        let a = content(vec![i], MsgType::Alert);
        let e = render(&a, a.info_for("en"), "http://x");
        assert!(!e.html.contains("href=\"javascript"));
        assert!(!e.html.contains("<img"));
        assert!(e.html.contains("<p>javascript:alert(1)</p>"));
        assert_eq!(
            web_url(" https://a.example/p "),
            Some("https://a.example/p")
        );
        assert_eq!(web_url("HTTP://A.example"), Some("HTTP://A.example"));
        assert_eq!(web_url("https://a b"), None);
        assert_eq!(web_url("https://"), None);
        assert_eq!(web_url("ftp://a"), None);
    }

    #[test]
    fn bare_cancel_still_renders() {
        let a = content(vec![], MsgType::Cancel);
        let e = render(&a, None, "http://x");
        assert_eq!(e.subject, "CANCELLED: Alert cancelled");
        assert!(e.html.starts_with("<!DOCTYPE html>\n<html>\n"));
        assert!(e.text.ends_with(&format!("http://x/v1/alerts/{}\n", a.seq)));
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(escape("a&b<c>d\"e'f漢"), "a&amp;b&lt;c&gt;d&quot;e&#39;f漢");
    }
}
