//! The QR code of the alert's public link, drawn as square modules of whole
//! dots with the four-module quiet zone the standard asks for, centred in
//! its box. Refuses a link whose code would need modules under 3 dots
//! (0.37 mm at 203 dpi), which phone cameras no longer read off a parcel.

use qrcode::{Color, EcLevel, QrCode};

use super::raster::Bitmap;
use super::LabelError;

/// Smallest module printed, in dots.
pub const MIN_MODULE: u32 = 3;
/// Longest link encoded, in bytes (also bounds the encoder's work).
pub const MAX_LINK_BYTES: usize = 512;

/// A `side` × `side` bitmap holding the QR code (error correction M) of `link`.
pub fn qr_bitmap(link: &str, side: u32) -> Result<Bitmap, LabelError> {
    if link.is_empty() || link.len() > MAX_LINK_BYTES {
        return Err(LabelError::LinkTooLong(link.len()));
    }
    let code = QrCode::with_error_correction_level(link.as_bytes(), EcLevel::M)
        .map_err(|_| LabelError::LinkTooLong(link.len()))?;
    let n = code.width() as u32;
    let module = side / (n + 8);
    if module < MIN_MODULE {
        return Err(LabelError::LinkTooLong(link.len()));
    }
    let off = i64::from((side - n * module) / 2);
    let mut bm = Bitmap::new(side, side);
    for (i, c) in code.to_colors().into_iter().enumerate() {
        if c == Color::Dark {
            let (x, y) = ((i as u32 % n) * module, (i as u32 / n) * module);
            bm.fill(off + i64::from(x), off + i64::from(y), module, module, true);
        }
    }
    Ok(bm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_whole_dots_with_a_quiet_zone() {
        let bm = qr_bitmap(
            "https://police.example.gov.cn/alerts/GZPSB-CA-2026-1129-0001",
            236,
        )
        .unwrap();
        assert_eq!((bm.width(), bm.height()), (236, 236));
        // Quiet zone: the outer 4 modules (at least 12 dots) are white.
        for i in 0..236 {
            for d in 0..12 {
                assert!(
                    !bm.get(i, d) && !bm.get(d, i) && !bm.get(i, 235 - d) && !bm.get(235 - d, i)
                );
            }
        }
        assert!(!bm.is_blank());
    }

    #[test]
    fn a_link_too_long_for_the_box_is_refused() {
        let long = format!("https://example.org/{}", "a".repeat(400));
        assert!(matches!(
            qr_bitmap(&long, 236),
            Err(LabelError::LinkTooLong(_))
        ));
        assert!(matches!(
            qr_bitmap(&"a".repeat(MAX_LINK_BYTES + 1), 2000),
            Err(LabelError::LinkTooLong(_))
        ));
    }
}
