//! Where things go on a 4×6 in label at 203 dpi (812 × 1218 dots): pure
//! geometry, one fixed box per element, so every label of a kind looks the
//! same and a box can be checked to sit inside the margin and overlap no other
//! one. Text is fitted into its box by `text.rs`; nothing here measures text.

/// Label width in dots (4 in at 203 dpi).
pub const WIDTH: u32 = 812;
/// Label height in dots (6 in at 203 dpi).
pub const HEIGHT: u32 = 1218;
/// White margin around everything printed (about 3 mm).
pub const MARGIN: u32 = 24;

/// A box on the label, in dots from the top left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// A box at (`x`, `y`) of `w` × `h` dots.
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// First column right of the box.
    pub const fn right(&self) -> u32 {
        self.x + self.w
    }

    /// First row below the box.
    pub const fn bottom(&self) -> u32 {
        self.y + self.h
    }

    /// True when the two boxes share at least one dot.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }

    /// True when the box lies within the label, `margin` dots from each edge.
    pub fn inside_label(&self, margin: u32) -> bool {
        self.w > 0
            && self.h > 0
            && self.x >= margin
            && self.y >= margin
            && self.right() <= WIDTH - margin
            && self.bottom() <= HEIGHT - margin
    }
}

const INNER_W: u32 = WIDTH - 2 * MARGIN;
const GAP: u32 = 12;

/// The boxes of a missing-child notice, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeLayout {
    /// Black banner, white "MISSING CHILD / 寻找失踪儿童".
    pub banner: Rect,
    pub headline: Rect,
    /// Left column; the photo is scaled to fit it, keeping its aspect.
    pub photo: Rect,
    /// Right of the photo: name, age, last seen, then the description.
    pub facts: Rect,
    /// Full width under the photo: the rest of the description.
    pub more: Rect,
    pub instruction: Rect,
    /// Left of the QR code: "call" and the contact, large.
    pub hotline: Rect,
    pub qr: Rect,
    /// Full width under the QR code and hotline: the link as text.
    pub link: Rect,
}

impl NoticeLayout {
    /// The fixed layout of every missing-child notice.
    pub const fn get() -> Self {
        let m = MARGIN;
        let banner = Rect::new(m, m, INNER_W, 130);
        let headline = Rect::new(m, banner.bottom() + GAP, INNER_W, 104);
        let photo = Rect::new(m, headline.bottom() + GAP, 288, 360);
        let facts = Rect::new(
            photo.right() + 16,
            photo.y,
            WIDTH - m - (photo.right() + 16),
            photo.h,
        );
        let more = Rect::new(m, photo.bottom() + GAP, INNER_W, 136);
        let instruction = Rect::new(m, more.bottom() + GAP, INNER_W, 100);
        let qr_side = 236;
        let qr = Rect::new(
            WIDTH - m - qr_side,
            instruction.bottom() + GAP,
            qr_side,
            qr_side,
        );
        let hotline = Rect::new(m, qr.y, qr.x - 16 - m, qr_side);
        let link = Rect::new(m, qr.bottom() + 6, INNER_W, HEIGHT - m - (qr.bottom() + 6));
        Self {
            banner,
            headline,
            photo,
            facts,
            more,
            instruction,
            hotline,
            qr,
            link,
        }
    }

    /// Every box with its name, in drawing order.
    pub fn boxes(&self) -> [(&'static str, Rect); 9] {
        [
            ("banner", self.banner),
            ("headline", self.headline),
            ("photo", self.photo),
            ("facts", self.facts),
            ("more", self.more),
            ("instruction", self.instruction),
            ("hotline", self.hotline),
            ("qr", self.qr),
            ("link", self.link),
        ]
    }
}

/// The boxes of a withdrawal ("found, stop printing") label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithdrawalLayout {
    /// Black banner, white "FOUND — STOP PRINTING / 已找到 — 停止打印".
    pub banner: Rect,
    /// What to do with labels already printed.
    pub notice: Rect,
    /// The withdrawn notice's headline.
    pub headline: Rect,
    /// The withdrawn alert's id and this Cancel's id.
    pub reference: Rect,
}

impl WithdrawalLayout {
    /// The fixed layout of every withdrawal label.
    pub const fn get() -> Self {
        let m = MARGIN;
        let banner = Rect::new(m, m, INNER_W, 200);
        let notice = Rect::new(m, banner.bottom() + 2 * GAP, INNER_W, 300);
        let headline = Rect::new(m, notice.bottom() + 2 * GAP, INNER_W, 330);
        let reference = Rect::new(
            m,
            headline.bottom() + 2 * GAP,
            INNER_W,
            HEIGHT - m - (headline.bottom() + 2 * GAP),
        );
        Self {
            banner,
            notice,
            headline,
            reference,
        }
    }

    /// Every box with its name, in drawing order.
    pub fn boxes(&self) -> [(&'static str, Rect); 4] {
        [
            ("banner", self.banner),
            ("notice", self.notice),
            ("headline", self.headline),
            ("reference", self.reference),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(boxes: &[(&str, Rect)]) {
        for (i, (a, ra)) in boxes.iter().enumerate() {
            assert!(ra.inside_label(MARGIN), "{a} {ra:?} leaves the label");
            for (b, rb) in &boxes[i + 1..] {
                assert!(!ra.overlaps(rb), "{a} {ra:?} overlaps {b} {rb:?}");
            }
        }
    }

    #[test]
    fn notice_boxes_are_inside_the_margin_and_disjoint() {
        let l = NoticeLayout::get();
        check(&l.boxes());
        // The photo keeps a portrait box; the QR box is square.
        assert!(l.photo.h > l.photo.w);
        assert_eq!(l.qr.w, l.qr.h);
        // Large enough to read: the link line fits at least one 20-dot line.
        assert!(l.link.h >= 24, "{:?}", l.link);
    }

    #[test]
    fn withdrawal_boxes_are_inside_the_margin_and_disjoint() {
        check(&WithdrawalLayout::get().boxes());
    }

    #[test]
    fn overlap_is_detected() {
        let a = Rect::new(10, 10, 10, 10);
        assert!(a.overlaps(&Rect::new(19, 19, 5, 5)));
        assert!(!a.overlaps(&Rect::new(20, 10, 5, 5)));
        assert!(!a.overlaps(&Rect::new(10, 20, 5, 5)));
        assert!(!Rect::new(0, 0, 10, 10).inside_label(MARGIN));
    }
}
