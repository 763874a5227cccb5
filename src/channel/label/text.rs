//! Text to dots: the shipped fonts (DejaVu Sans for Latin, Droid Sans
//! Fallback for Chinese and everything DejaVu lacks, both embedded so a fresh
//! machine renders labels offline), line breaking (CJK between any two
//! characters, Latin at spaces, links anywhere), cutting what does not fit at
//! a word with "…", and drawing lines into a bitmap. Nothing drawn here ever
//! leaves the bitmap it is drawn into: text never overflows its box.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, GlyphId, PxScale, ScaleFont};

use super::raster::Bitmap;

/// Characters of one text field considered at most; the rest is cut with "…"
/// (bounds the work of wrapping text from outside).
pub const MAX_FIELD_CHARS: usize = 2_000;

const ELLIPSIS: char = '…';

/// The embedded fonts.
pub struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
    cjk: FontRef<'static>,
}

static FONTS: OnceLock<Fonts> = OnceLock::new();

/// The embedded fonts, parsed once.
pub fn fonts() -> &'static Fonts {
    FONTS.get_or_init(|| {
        // Embedded assets, not outside input: the unit test
        // `embedded_fonts_parse_and_cover_the_sample` proves they parse.
        let load = |bytes: &'static [u8]| {
            FontRef::try_from_slice(bytes).expect("embedded font is a valid TrueType file")
        };
        Fonts {
            regular: load(include_bytes!("../../../assets/fonts/DejaVuSans.ttf")),
            bold: load(include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf")),
            cjk: load(include_bytes!(
                "../../../assets/fonts/DroidSansFallbackFull.ttf"
            )),
        }
    })
}

/// Size and weight of a run of text. `em` is the em size in dots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    pub em: f32,
    pub bold: bool,
}

impl Style {
    /// Regular weight at `em` dots.
    pub const fn regular(em: f32) -> Self {
        Self { em, bold: false }
    }

    /// Bold at `em` dots.
    pub const fn bold(em: f32) -> Self {
        Self { em, bold: true }
    }

    /// Distance between baselines, in dots.
    pub fn line_height(&self) -> u32 {
        (self.em * 1.25).ceil() as u32
    }

    /// Baseline below the top of a line, in dots.
    fn baseline(&self) -> f32 {
        (self.em * 0.95).round()
    }

    /// Extra dots a faked bold (CJK has no bold face) is drawn to the right.
    fn smear(&self) -> i64 {
        if self.bold {
            ((self.em / 22.0).round() as i64).max(1)
        } else {
            0
        }
    }
}

/// Where a line may break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaks {
    /// After spaces, and between any two CJK characters (not before closing
    /// punctuation nor after opening punctuation).
    Words,
    /// Between any two characters (links, identifiers).
    Anywhere,
}

/// True for characters set in the CJK font and breakable on either side.
pub fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFE30..=0xFE4F
        | 0xFF00..=0xFFEF | 0x20000..=0x2FFFF)
}

fn closing(c: char) -> bool {
    "，。、：；！？）」』》〉】”’,.;:!?)]}…%".contains(c)
}

fn opening(c: char) -> bool {
    "（「『《〈【“‘([{".contains(c)
}

/// May a line start at `chars[i]` (breaking between `i - 1` and `i`)?
fn can_break_before(chars: &[char], i: usize, breaks: Breaks) -> bool {
    if i == 0 || i >= chars.len() {
        return false;
    }
    let (p, c) = (chars[i - 1], chars[i]);
    if c == ' ' {
        return false;
    }
    match breaks {
        Breaks::Anywhere => true,
        Breaks::Words => p == ' ' || ((is_cjk(p) || is_cjk(c)) && !closing(c) && !opening(p)),
    }
}

impl Fonts {
    /// The face and glyph for `c`: DejaVu for what it covers outside CJK,
    /// else Droid Sans Fallback (with `true`: bold must be faked).
    fn glyph(&self, c: char, bold: bool) -> (&FontRef<'static>, GlyphId, bool) {
        let latin = if bold { &self.bold } else { &self.regular };
        if !is_cjk(c) {
            let id = latin.glyph_id(c);
            if id.0 != 0 {
                return (latin, id, false);
            }
        }
        let id = self.cjk.glyph_id(c);
        if id.0 != 0 {
            return (&self.cjk, id, bold);
        }
        (latin, latin.glyph_id('?'), false)
    }

    /// The scale giving `font` an em of `em` dots.
    fn scale(font: &FontRef<'static>, em: f32) -> PxScale {
        let upem = font.units_per_em().unwrap_or(1000.0);
        PxScale::from(em * font.height_unscaled() / upem)
    }

    fn advance(&self, prev: Option<char>, c: char, style: Style) -> f32 {
        let (font, id, _) = self.glyph(c, style.bold);
        let sf = font.as_scaled(Self::scale(font, style.em));
        let mut a = sf.h_advance(id);
        if let Some(p) = prev {
            let (pf, pid, _) = self.glyph(p, style.bold);
            if std::ptr::eq(pf, font) {
                a += sf.kern(pid, id);
            }
        }
        a
    }

    /// Width of `text` on one line, in dots.
    pub fn measure(&self, text: &str, style: Style) -> f32 {
        let mut prev = None;
        let mut w = 0.0;
        for c in text.chars() {
            w += self.advance(prev, c, style);
            prev = Some(c);
        }
        w + style.smear() as f32
    }

    /// Draw one line with its top left at (`x`, `top`); `black` false draws
    /// white (on the banner). Clipped to `bm`.
    pub fn draw_line(
        &self,
        bm: &mut Bitmap,
        text: &str,
        style: Style,
        x: f32,
        top: i64,
        black: bool,
    ) {
        let base = top as f32 + style.baseline();
        let mut pen = x;
        let mut prev = None;
        for c in text.chars() {
            let (font, id, fake_bold) = self.glyph(c, style.bold);
            let adv = self.advance(prev, c, style);
            let kern = adv - font.as_scaled(Self::scale(font, style.em)).h_advance(id);
            let g = id.with_scale_and_position(
                Self::scale(font, style.em),
                ab_glyph::point(pen + kern, base),
            );
            if let Some(og) = font.outline_glyph(g) {
                let b = og.px_bounds();
                let (bx, by) = (b.min.x as i64, b.min.y as i64);
                let smear = if fake_bold { style.smear() } else { 0 };
                og.draw(|gx, gy, cov| {
                    if cov >= 0.5 {
                        for s in 0..=smear {
                            bm.set(bx + i64::from(gx) + s, by + i64::from(gy), black);
                        }
                    }
                });
            }
            pen += adv;
            prev = Some(c);
        }
    }
}

/// Collapse runs of whitespace to one space (keeping line feeds as forced
/// breaks), drop control characters, and keep at most `MAX_FIELD_CHARS`.
/// Returns the cleaned text and whether it was shortened.
pub fn clean(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len().min(MAX_FIELD_CHARS * 4));
    let mut n = 0;
    let mut pending: Option<char> = None;
    for c in text.trim().chars() {
        if n >= MAX_FIELD_CHARS {
            return (out, true);
        }
        if c == '\n' {
            pending = Some('\n');
        } else if c.is_whitespace() {
            if pending.is_none() {
                pending = Some(' ');
            }
        } else if !c.is_control() {
            if let Some(p) = pending.take() {
                out.push(p);
                n += 1;
            }
            out.push(c);
            n += 1;
        }
    }
    (out, false)
}

/// Lines that fit a width, and what did not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Wrapped {
    pub lines: Vec<String>,
    /// The text left over (empty when everything fit).
    pub rest: String,
}

/// Break `text` into at most `max_lines` lines no wider than `max_w` dots.
/// A word wider than a line is broken between characters.
pub fn wrap(text: &str, style: Style, max_w: f32, max_lines: usize, breaks: Breaks) -> Wrapped {
    let f = fonts();
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let mut lines = Vec::new();
    let mut start = 0;
    let skip = |mut i: usize| {
        while i < n && (chars[i] == ' ' || chars[i] == '\n') {
            i += 1;
        }
        i
    };
    while lines.len() < max_lines {
        start = skip(start);
        if start >= n {
            break;
        }
        let mut w = style.smear() as f32;
        let mut last_break = None;
        let mut i = start;
        let (end, next) = loop {
            if i >= n {
                break (n, n);
            }
            let c = chars[i];
            if c == '\n' {
                break (i, i + 1);
            }
            if i > start && can_break_before(&chars, i, breaks) {
                last_break = Some(i);
            }
            let prev = (i > start).then(|| chars[i - 1]);
            let adv = f.advance(prev, c, style);
            if w + adv > max_w && i > start && c != ' ' {
                break match last_break {
                    Some(b) => (b, b),
                    None => (i, i),
                };
            }
            w += adv;
            i += 1;
        };
        let line: String = chars[start..end].iter().collect();
        lines.push(line.trim_end().to_string());
        start = next;
    }
    let start = skip(start);
    Wrapped {
        lines,
        rest: chars[start.min(n)..].iter().collect(),
    }
}

/// Shorten `line` at a word (a break opportunity) so that it plus "…" fits
/// `max_w`; a single word too long is cut between characters.
pub fn cut_with_ellipsis(line: &str, style: Style, max_w: f32, breaks: Breaks) -> String {
    let f = fonts();
    let chars: Vec<char> = line.chars().collect();
    let with = |k: usize| -> String {
        let s: String = chars[..k].iter().collect();
        let s = s.trim_end_matches(|c: char| c == ' ' || ",;:、，；：".contains(c));
        format!("{s}{ELLIPSIS}")
    };
    let fits = |s: &str| f.measure(s, style) <= max_w;
    // Whole line, then each earlier word boundary.
    let candidate = with(chars.len());
    if fits(&candidate) {
        return candidate;
    }
    for k in (1..chars.len()).rev() {
        if can_break_before(&chars, k, breaks) || (chars[k] == ' ' && k > 0) {
            let s = with(k);
            if fits(&s) && s.chars().count() > 1 {
                return s;
            }
        }
    }
    for k in (0..chars.len()).rev() {
        let s = with(k);
        if fits(&s) {
            return s;
        }
    }
    ELLIPSIS.to_string()
}

/// `text` in at most `max_lines` lines of `max_w` dots; when it does not all
/// fit (or `truncated` says it was already shortened) the last line is cut
/// at a word and ends in "…".
pub fn fit_lines(
    text: &str,
    style: Style,
    max_w: f32,
    max_lines: usize,
    breaks: Breaks,
    truncated: bool,
) -> Vec<String> {
    let mut w = wrap(text, style, max_w, max_lines, breaks);
    if !w.rest.is_empty() || truncated {
        if let Some(last) = w.lines.last_mut() {
            *last = cut_with_ellipsis(last, style, max_w, breaks);
        }
    }
    w.lines
}

/// The largest of `sizes` (largest first) at which `text` fits `w` × `h`
/// dots whole; else the smallest, cut with "…". Returns the style and lines.
pub fn fit_box(
    text: &str,
    sizes: &[f32],
    bold: bool,
    w: u32,
    h: u32,
    breaks: Breaks,
) -> (Style, Vec<String>) {
    let (text, truncated) = clean(text);
    let mut last = (Style { em: 20.0, bold }, Vec::new());
    for &em in sizes {
        let style = Style { em, bold };
        let max_lines = (h / style.line_height()) as usize;
        if max_lines == 0 {
            continue;
        }
        let wr = wrap(&text, style, w as f32, max_lines, breaks);
        if wr.rest.is_empty() && !truncated {
            return (style, wr.lines);
        }
        last = (
            style,
            fit_lines(&text, style, w as f32, max_lines, breaks, truncated),
        );
    }
    last
}

/// Draw `lines` from the top of `bm` at `x`, `line_height` apart, optionally
/// centred; returns the first row below the last line.
pub fn draw_lines(
    bm: &mut Bitmap,
    lines: &[String],
    style: Style,
    top: u32,
    center: bool,
    black: bool,
) -> u32 {
    let f = fonts();
    let mut y = top;
    for line in lines {
        let x = if center {
            ((bm.width() as f32 - f.measure(line, style)) / 2.0).max(0.0)
        } else {
            0.0
        };
        f.draw_line(bm, line, style, x, i64::from(y), black);
        y += style.line_height();
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_fonts_parse_and_cover_the_sample() {
        let f = fonts();
        for c in "MISSING CHILD Li Xiaoming, age 6 … — / +86".chars() {
            let (font, id, _) = f.glyph(c, false);
            assert!(id.0 != 0 || c == ' ', "{c:?}");
            assert!(std::ptr::eq(font, &f.regular), "{c:?} not from DejaVu");
        }
        for c in "寻找失踪儿童李小明，。已找到停止打印".chars() {
            let (font, id, _) = f.glyph(c, false);
            assert!(id.0 != 0, "{c:?}");
            assert!(std::ptr::eq(font, &f.cjk), "{c:?}");
        }
    }

    fn rendered(text: &str, style: Style) -> Bitmap {
        let mut bm = Bitmap::new(600, style.line_height());
        draw_lines(&mut bm, &[text.to_string()], style, 0, false, true);
        bm
    }

    #[test]
    fn chinese_and_english_render_non_empty_bitmaps() {
        for t in ["寻找失踪儿童", "MISSING CHILD", "李小明 Li Xiaoming"] {
            for s in [Style::regular(28.0), Style::bold(40.0)] {
                let bm = rendered(t, s);
                assert!(bm.black_dots() > 50, "{t} {s:?}: {}", bm.black_dots());
            }
        }
        // Bold is blacker than regular, CJK too (faked by smearing).
        for t in ["寻找失踪儿童", "MISSING"] {
            assert!(
                rendered(t, Style::bold(32.0)).black_dots()
                    > rendered(t, Style::regular(32.0)).black_dots()
            );
        }
    }

    #[test]
    fn latin_breaks_at_spaces_and_cjk_between_characters() {
        let s = Style::regular(24.0);
        let w = wrap(
            "alpha beta gamma delta epsilon",
            s,
            150.0,
            10,
            Breaks::Words,
        );
        assert!(w.rest.is_empty());
        assert!(w.lines.len() > 1);
        for l in &w.lines {
            assert!(fonts().measure(l, s) <= 150.0, "{l}");
            for word in l.split(' ') {
                assert!(
                    ["alpha", "beta", "gamma", "delta", "epsilon"].contains(&word),
                    "{l}"
                );
            }
        }
        let w = wrap("寻找失踪儿童寻找失踪儿童", s, 24.0 * 5.2, 10, Breaks::Words);
        assert_eq!(w.lines, ["寻找失踪儿", "童寻找失踪", "儿童"]);
        // Closing punctuation never starts a line.
        let w = wrap("寻找失踪儿，童", s, 24.0 * 5.2, 10, Breaks::Words);
        assert!(
            w.lines.iter().all(|l| !l.starts_with('，')),
            "{:?}",
            w.lines
        );
    }

    #[test]
    fn text_that_does_not_fit_is_cut_at_a_word_with_an_ellipsis() {
        let s = Style::regular(24.0);
        let text = "Last seen near the metro station wearing a red down jacket and blue jeans";
        let lines = fit_lines(text, s, 300.0, 2, Breaks::Words, false);
        assert_eq!(lines.len(), 2);
        let last = lines.last().unwrap();
        assert!(last.ends_with('…'), "{last}");
        let body = last.trim_end_matches('…');
        // Every word kept is whole.
        for word in body.split(' ') {
            assert!(text.split(' ').any(|t| t == word), "{word:?} in {last:?}");
        }
        for l in &lines {
            assert!(fonts().measure(l, s) <= 300.0, "{l}");
        }
        // CJK is cut between characters.
        let lines = fit_lines(
            &"寻找失踪儿童".repeat(10),
            s,
            120.0,
            1,
            Breaks::Words,
            false,
        );
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with('…') && fonts().measure(&lines[0], s) <= 120.0);
        // An overlong word is broken, never overflows.
        let lines = fit_lines(&"x".repeat(200), s, 100.0, 1, Breaks::Words, false);
        assert!(fonts().measure(&lines[0], s) <= 100.0);
    }

    #[test]
    fn fit_box_picks_the_largest_size_that_fits() {
        let (st, lines) = fit_box("110", &[72.0, 48.0], true, 500, 200, Breaks::Words);
        assert_eq!((st.em, lines.len()), (72.0, 1));
        let (st, lines) = fit_box(
            &"word ".repeat(400),
            &[72.0, 48.0],
            true,
            500,
            200,
            Breaks::Words,
        );
        assert_eq!(st.em, 48.0);
        assert!(lines.len() as u32 * st.line_height() <= 200);
        assert!(lines.last().unwrap().ends_with('…'));
    }

    #[test]
    fn clean_bounds_and_collapses() {
        let (t, cut) = clean("  a \t b\r\n c ");
        assert_eq!(t, "a b\nc");
        assert!(!cut);
        let (t, cut) = clean(&"字".repeat(MAX_FIELD_CHARS + 5));
        assert_eq!(t.chars().count(), MAX_FIELD_CHARS);
        assert!(cut);
    }
}
