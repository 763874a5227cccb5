//! Parcel labels: a missing-child notice (or its withdrawal) rendered as a
//! 4×6 in, 203 dpi thermal label, for logistics partners to print on parcels.
//! Pure rendering: alert in, ZPL II and PNG bytes out; delivery of print jobs
//! builds on this API and lives elsewhere. Never fetches a photo, never
//! touches the network or the disk.
//!
//! One raster model for both outputs: every element (banner, headline,
//! photo, facts, instruction, hotline, QR code, link) is drawn into its own
//! 1-bit bitmap inside a fixed box of `layout.rs`; the ZPL sends each as a
//! graphic field and the PNG is those same bitmaps composed onto the label.
//!
//! Withdrawal: a Cancel renders as a "FOUND — STOP PRINTING" label
//! (`render_withdrawal`; `render` does the same for a Cancel). There is no
//! printer-side cancel command: our labels are one-shot formats that store
//! nothing on the printer, so there is nothing there to delete, and ZPL's
//! `~JA` (cancel all) would also drop the partner's own queued shipping
//! labels. Stopping further jobs is the delivery side's business.

pub mod deliver;
pub mod layout;
pub mod photo;
pub mod png;
pub mod qr;
pub mod raster;
pub mod text;
pub mod zpl;

use crate::alert::cap::{Info, MsgType};
use crate::channel::AlertContent;

pub use photo::photo_bytes;

use layout::{NoticeLayout, Rect, WithdrawalLayout, HEIGHT, WIDTH};
use raster::Bitmap;
use text::{draw_lines, fit_box, Breaks, Style};

/// Longest language tag accepted (RFC 5646 allows 35 characters).
pub const MAX_LANGUAGE_LEN: usize = 35;

/// What a partner's label depends on besides the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOptions {
    /// Base URL of the public alert pages (the admin server's public URL),
    /// used for the QR code when the info block has no `<web>`.
    pub public_url: String,
    /// The partner's language tag; picks the info block (`info_for`).
    pub language: String,
}

/// A rendered label: the same dots as ZPL II for the printer and as a PNG
/// for people, both made eagerly from one raster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// `^XA` … `^XZ`, ASCII.
    pub zpl: Vec<u8>,
    /// 8-bit gray PNG of the whole label.
    pub png: Vec<u8>,
    /// Dots across (812).
    pub width: u32,
    /// Dots down (1218).
    pub height: u32,
}

/// Why a label could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("the alert has no info block")]
    NoInfo,
    #[error("language tag is not a tag of at most {MAX_LANGUAGE_LEN} letters, digits and '-'")]
    Language,
    #[error("photo is {0} bytes; the limit is {max}", max = photo::MAX_PHOTO_BYTES)]
    PhotoTooLarge(usize),
    #[error("photo is neither a JPEG nor a PNG")]
    PhotoFormat,
    #[error("photo is {0}×{1} pixels; the limit is {side} a side and {px} pixels", side = photo::MAX_PHOTO_SIDE, px = photo::MAX_PHOTO_PIXELS)]
    PhotoDimensions(u32, u32),
    #[error("photo could not be decoded: {0}")]
    PhotoDecode(#[source] image::ImageError),
    #[error("the link ({0} bytes) does not fit a readable QR code on the label")]
    LinkTooLong(usize),
    #[error("PNG encoding failed: {0}")]
    Png(#[source] image::ImageError),
}

impl LabelError {
    /// True when the photo was at fault: the label renders without it.
    pub fn is_photo(&self) -> bool {
        matches!(
            self,
            Self::PhotoTooLarge(_)
                | Self::PhotoFormat
                | Self::PhotoDimensions(..)
                | Self::PhotoDecode(_)
        )
    }
}

/// One drawn element and where it goes.
struct Element {
    at: Rect,
    bitmap: Bitmap,
}

impl Element {
    fn blank(at: Rect) -> Self {
        Self {
            at,
            bitmap: Bitmap::new(at.w, at.h),
        }
    }
}

/// Compose the elements onto the label and write both outputs.
fn finish(elements: &[Element]) -> Result<Label, LabelError> {
    let mut canvas = Bitmap::new(WIDTH, HEIGHT);
    for e in elements {
        canvas.draw(&e.bitmap, i64::from(e.at.x), i64::from(e.at.y));
    }
    let placed: Vec<zpl::Placed<'_>> = elements
        .iter()
        .map(|e| zpl::Placed {
            at: e.at,
            bitmap: &e.bitmap,
        })
        .collect();
    Ok(Label {
        zpl: zpl::write(&placed),
        png: png::encode(&canvas)?,
        width: WIDTH,
        height: HEIGHT,
    })
}

/// Label words in the info block's language (Chinese or English).
struct Words {
    age: &'static str,
    last_seen: &'static str,
    call: &'static str,
    no_photo: &'static str,
}

impl Words {
    fn for_language(tag: &str) -> &'static Words {
        static ZH: Words = Words {
            age: "年龄：",
            last_seen: "最后出现：",
            call: "发现线索请立即拨打",
            no_photo: "暂无照片",
        };
        static EN: Words = Words {
            age: "Age: ",
            last_seen: "Last seen: ",
            call: "If you see this child, call",
            no_photo: "NO PHOTO",
        };
        if tag.trim().to_ascii_lowercase().starts_with("zh") {
            &ZH
        } else {
            &EN
        }
    }
}

/// The value of the first `<parameter>` named one of `names` (any case).
fn parameter<'a>(info: &'a Info, names: &[&str]) -> Option<&'a str> {
    info.parameters
        .iter()
        .find(|p| names.iter().any(|n| p.value_name.eq_ignore_ascii_case(n)))
        .map(|p| p.value.trim())
        .filter(|v| !v.is_empty())
}

fn check_options(opts: &LabelOptions) -> Result<(), LabelError> {
    let l = &opts.language;
    if l.len() > MAX_LANGUAGE_LEN || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(LabelError::Language);
    }
    Ok(())
}

/// A black box with centred white lines, each on one line at the largest of
/// its sizes that holds it whole (else the smallest, cut with "…").
fn banner(at: Rect, lines: &[(&str, &[f32])]) -> Element {
    let mut e = Element::blank(at);
    e.bitmap.fill(0, 0, at.w, at.h, true);
    let w = (at.w - 2 * 16) as f32;
    let fitted: Vec<(Style, Vec<String>)> = lines
        .iter()
        .map(|(t, sizes)| {
            let smallest = sizes.last().copied().unwrap_or(24.0);
            let em = sizes
                .iter()
                .copied()
                .find(|&em| text::fonts().measure(t, Style::bold(em)) <= w)
                .unwrap_or(smallest);
            let s = Style::bold(em);
            (s, text::fit_lines(t, s, w, 1, Breaks::Words, false))
        })
        .collect();
    let used: u32 = fitted.iter().map(|(s, _)| s.line_height()).sum();
    let mut y = at.h.saturating_sub(used) / 2;
    for (s, l) in &fitted {
        y = draw_lines(&mut e.bitmap, l, *s, y, true, false);
    }
    e
}

/// `text` fitted into `at` at the largest of `sizes` that holds it.
fn text_box(
    at: Rect,
    text: &str,
    sizes: &[f32],
    bold: bool,
    center: bool,
    breaks: Breaks,
) -> Element {
    let mut e = Element::blank(at);
    let (style, lines) = fit_box(text, sizes, bold, at.w, at.h, breaks);
    draw_lines(&mut e.bitmap, &lines, style, 0, center, true);
    e
}

/// The photo box: a frame with the dithered photo centred, or "no photo".
fn photo_box(at: Rect, photo: Option<&[u8]>, words: &Words) -> Result<Element, LabelError> {
    let mut e = Element::blank(at);
    e.bitmap.frame(2);
    let inner = 6;
    match photo {
        Some(bytes) => {
            let p = photo::dithered(bytes, at.w - 2 * inner, at.h - 2 * inner)?;
            let x = (at.w - p.width()) / 2;
            let y = (at.h - p.height()) / 2;
            e.bitmap.draw(&p, i64::from(x), i64::from(y));
        }
        None => {
            let s = Style::bold(30.0);
            let top = (at.h - s.line_height()) / 2;
            draw_lines(
                &mut e.bitmap,
                &[words.no_photo.to_string()],
                s,
                top,
                true,
                true,
            );
        }
    }
    Ok(e)
}

/// Facts beside the photo (name, age, last seen from `<parameter>`s), then
/// the description, flowing on into the full-width box below the photo.
fn facts_boxes(l: &NoticeLayout, info: &Info, words: &Words) -> (Element, Element) {
    let mut facts = Element::blank(l.facts);
    let mut more = Element::blank(l.more);
    let w = l.facts.w;
    let mut y = 0;
    if let Some(name) = parameter(info, &["childName", "name", "missingPersonName"]) {
        let (s, lines) = fit_box(name, &[48.0, 40.0, 34.0, 28.0], true, w, 120, Breaks::Words);
        y = draw_lines(&mut facts.bitmap, &lines, s, y, false, true) + 4;
    }
    if let Some(age) = parameter(info, &["childAge", "age"]) {
        let (s, lines) = fit_box(
            &format!("{}{age}", words.age),
            &[32.0, 28.0],
            true,
            w,
            80,
            Breaks::Words,
        );
        y = draw_lines(&mut facts.bitmap, &lines, s, y, false, true) + 4;
    }
    if let Some(seen) = parameter(info, &["lastSeen", "lastSeenLocation", "lastSeenAt"]) {
        let (s, lines) = fit_box(
            &format!("{}{seen}", words.last_seen),
            &[28.0, 24.0],
            true,
            w,
            3 * 35,
            Breaks::Words,
        );
        y = draw_lines(&mut facts.bitmap, &lines, s, y, false, true) + 4;
    }
    if y > 0 {
        y += 8;
    }
    let (desc, truncated) = text::clean(info.description.as_deref().unwrap_or(""));
    if desc.is_empty() {
        return (facts, more);
    }
    // The largest size at which the description fits both boxes, else the
    // smallest, cut with "…" at the end of the second box.
    let sizes = [30.0, 28.0, 26.0, 24.0, 22.0];
    let mut chosen = None;
    for em in sizes {
        let s = Style::regular(em);
        let a = text::wrap(
            &desc,
            s,
            w as f32,
            (l.facts.h.saturating_sub(y) / s.line_height()) as usize,
            Breaks::Words,
        );
        let b = text::wrap(
            &a.rest,
            s,
            l.more.w as f32,
            (l.more.h / s.line_height()) as usize,
            Breaks::Words,
        );
        let fits = b.rest.is_empty() && !truncated;
        chosen = Some((s, a));
        if fits {
            break;
        }
    }
    if let Some((s, a)) = chosen {
        draw_lines(&mut facts.bitmap, &a.lines, s, y, false, true);
        let lines = text::fit_lines(
            &a.rest,
            s,
            l.more.w as f32,
            (l.more.h / s.line_height()) as usize,
            Breaks::Words,
            truncated,
        );
        draw_lines(&mut more.bitmap, &lines, s, 0, false, true);
    }
    (facts, more)
}

/// The hotline box: "call" and the contact, as large as it fits.
fn hotline_box(at: Rect, info: &Info, words: &Words) -> Element {
    let mut e = Element::blank(at);
    let Some(contact) = info.contact.as_deref().filter(|c| !c.trim().is_empty()) else {
        return e;
    };
    let head = Style::regular(28.0);
    let y = draw_lines(
        &mut e.bitmap,
        &[words.call.to_string()],
        head,
        0,
        false,
        true,
    ) + 4;
    let sizes = [80.0, 72.0, 64.0, 56.0, 48.0, 40.0, 32.0];
    let avail = at.h - y;
    // Alternatives ("110 / +86 20 110") one to a line, each number whole.
    let parts: Vec<String> = contact
        .split(['/', ';', '|', '、'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| text::clean(p).0)
        .collect();
    if parts.len() <= 3 {
        for em in sizes {
            let s = Style::bold(em);
            if parts.len() as u32 * s.line_height() <= avail
                && parts
                    .iter()
                    .all(|p| text::fonts().measure(p, s) <= at.w as f32)
            {
                draw_lines(&mut e.bitmap, &parts, s, y, false, true);
                return e;
            }
        }
    }
    let (s, lines) = fit_box(contact, &sizes, true, at.w, avail, Breaks::Words);
    draw_lines(&mut e.bitmap, &lines, s, y, false, true);
    e
}

/// Render the missing-child notice of `alert` in `opts.language`, with
/// `photo` (JPEG or PNG bytes; see [`photo_bytes`] for an embedded one).
/// A Cancel renders its withdrawal label instead. A bad photo is an error
/// (see [`LabelError::is_photo`]); call again with `None` to print without it.
pub fn render(
    alert: &AlertContent,
    photo: Option<&[u8]>,
    opts: &LabelOptions,
) -> Result<Label, LabelError> {
    check_options(opts)?;
    if alert.msg_type() == MsgType::Cancel {
        return render_withdrawal(alert, opts);
    }
    let info = alert.info_for(&opts.language).ok_or(LabelError::NoInfo)?;
    let words = Words::for_language(&info.language);
    let l = NoticeLayout::get();
    let link = alert.public_link(Some(info), &opts.public_url);
    let qr = Element {
        at: l.qr,
        bitmap: qr::qr_bitmap(&link, l.qr.w)?,
    };
    let headline = info.headline.as_deref().unwrap_or(&info.event);
    let (facts, more) = facts_boxes(&l, info, words);
    let elements = [
        banner(
            l.banner,
            &[
                ("MISSING CHILD", &[52.0, 44.0, 36.0]),
                ("寻找失踪儿童", &[44.0, 36.0]),
            ],
        ),
        text_box(
            l.headline,
            headline,
            &[44.0, 40.0, 36.0, 32.0, 28.0],
            true,
            false,
            Breaks::Words,
        ),
        photo_box(l.photo, photo, words)?,
        facts,
        more,
        text_box(
            l.instruction,
            info.instruction.as_deref().unwrap_or(""),
            &[30.0, 28.0, 26.0, 24.0, 22.0],
            true,
            false,
            Breaks::Words,
        ),
        hotline_box(l.hotline, info, words),
        qr,
        text_box(
            l.link,
            &link,
            &[22.0, 20.0, 18.0, 16.0],
            false,
            true,
            Breaks::Anywhere,
        ),
    ];
    finish(&elements)
}

/// Render the withdrawal label for `alert` (a Cancel): "FOUND — STOP
/// PRINTING / 已找到 — 停止打印", what to do, the withdrawn notice's headline
/// and the references. Renders for any message type (delivery may withdraw
/// an expired notice the same way); without an info block the headline box
/// stays empty.
pub fn render_withdrawal(alert: &AlertContent, opts: &LabelOptions) -> Result<Label, LabelError> {
    check_options(opts)?;
    let l = WithdrawalLayout::get();
    let info = alert.info_for(&opts.language);
    let notice = "This missing-child notice is withdrawn. Do not print it again; remove printed labels where you can.\n\
                  此寻人启事已撤销。请勿再打印，并尽量撤下已打印的标签。";
    let mut headline = Element::blank(l.headline);
    if let Some(h) = info.and_then(|i| i.headline.as_deref().or(Some(i.event.as_str()))) {
        let head = Style::regular(26.0);
        let y = draw_lines(
            &mut headline.bitmap,
            &["Withdrawn notice / 已撤销的启事".to_string()],
            head,
            0,
            false,
            true,
        ) + 8;
        let (s, lines) = fit_box(
            h,
            &[44.0, 40.0, 36.0, 32.0, 28.0],
            true,
            l.headline.w,
            l.headline.h - y,
            Breaks::Words,
        );
        draw_lines(&mut headline.bitmap, &lines, s, y, false, true);
    }
    let mut reference = String::from("Reference / 编号:\n");
    for r in alert.alert.references.iter().take(4) {
        reference.push_str(&r.alert_id());
        reference.push('\n');
    }
    reference.push_str(&format!("{:?}: {}", alert.msg_type(), alert.alert_id));
    let elements = [
        banner(
            l.banner,
            &[
                ("FOUND — STOP PRINTING", &[56.0, 52.0, 46.0, 40.0, 34.0]),
                ("已找到 — 停止打印", &[56.0, 52.0, 46.0, 40.0]),
            ],
        ),
        text_box(
            l.notice,
            notice,
            &[36.0, 32.0, 30.0, 28.0, 26.0, 24.0],
            true,
            false,
            Breaks::Words,
        ),
        headline,
        text_box(
            l.reference,
            &reference,
            &[22.0, 20.0, 18.0],
            false,
            false,
            Breaks::Anywhere,
        ),
    ];
    finish(&elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AlertContent {
        AlertContent::from_xml(7, crate::demo::sample::SAMPLE_ALERT).unwrap()
    }

    fn opts(lang: &str) -> LabelOptions {
        LabelOptions {
            public_url: "http://127.0.0.1:9464".into(),
            language: lang.into(),
        }
    }

    #[test]
    fn both_languages_render_the_same_size_label() {
        for lang in ["zh-CN", "en-US"] {
            let l = render(&sample(), None, &opts(lang)).unwrap();
            assert_eq!((l.width, l.height), (812, 1218));
            assert!(l.zpl.starts_with(b"^XA\n") && l.zpl.ends_with(b"^XZ\n"));
            assert!(l.png.starts_with(b"\x89PNG"));
        }
    }

    #[test]
    fn bad_options_and_photos_are_typed_errors() {
        let e = render(&sample(), None, &opts("zh-CN\n^XZ")).unwrap_err();
        assert!(matches!(e, LabelError::Language));
        let e = render(&sample(), Some(b"not an image"), &opts("en")).unwrap_err();
        assert!(e.is_photo(), "{e}");
    }

    #[test]
    fn a_cancel_renders_its_withdrawal() {
        let xml = crate::demo::sample::SAMPLE_ALERT
            .replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>\n  <references>police.gz@example.gov.cn,GZPSB-CA-2026-1129-0001,2026-11-29T09:00:00+08:00</references>")
            .replace("GZPSB-CA-2026-1129-0001</identifier>", "GZPSB-CA-2026-1129-0002</identifier>");
        let a = AlertContent::from_xml(8, &xml).unwrap();
        let w = render_withdrawal(&a, &opts("en-US")).unwrap();
        assert_eq!(render(&a, None, &opts("en-US")).unwrap(), w);
        assert_ne!(w, render(&sample(), None, &opts("en-US")).unwrap());
    }

    #[test]
    fn banner_lines_are_whole_or_cut_with_an_ellipsis() {
        // Both banner lines fit whole: no "…" drawn means the dots equal a
        // banner drawn line by line at the size chosen.
        let at = WithdrawalLayout::get().banner;
        let b = banner(at, &[("FOUND — STOP PRINTING", &[56.0, 46.0])]);
        let s = Style::bold(56.0);
        let w = (at.w - 32) as f32;
        let em = if text::fonts().measure("FOUND — STOP PRINTING", s) <= w {
            56.0
        } else {
            46.0
        };
        let mut want = Element::blank(at);
        want.bitmap.fill(0, 0, at.w, at.h, true);
        let st = Style::bold(em);
        let y = (at.h - st.line_height()) / 2;
        draw_lines(
            &mut want.bitmap,
            &["FOUND — STOP PRINTING".to_string()],
            st,
            y,
            true,
            false,
        );
        assert_eq!(b.bitmap, want.bitmap);
    }
}
