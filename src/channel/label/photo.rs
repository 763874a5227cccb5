//! The child's photo: decode a JPEG or PNG (within size limits), scale it to
//! fit its box keeping the aspect ratio, stretch the contrast, and
//! Floyd–Steinberg dither it to 1 bit for a thermal printer. Also pulls an
//! embedded photo out of a CAP `<resource>` (`derefUri`, base64). Never
//! fetches anything: a photo given only as a `<uri>` is the caller's to fetch.

use std::io::Cursor;

use base64::Engine as _;
use image::{imageops::FilterType, ImageFormat, ImageReader, Limits};

use super::raster::Bitmap;
use super::LabelError;
use crate::alert::cap::Info;

/// Largest photo accepted, encoded (and largest embedded one decoded).
pub const MAX_PHOTO_BYTES: usize = 2 * 1024 * 1024;
/// Largest photo side accepted, in pixels.
pub const MAX_PHOTO_SIDE: u32 = 8_000;
/// Largest decoded photo, in pixels (24 MP).
pub const MAX_PHOTO_PIXELS: u64 = 24_000_000;

/// The first embedded JPEG or PNG of `info` (`<derefUri>`, base64), decoded,
/// or `None` when there is none or it is malformed or over `MAX_PHOTO_BYTES`.
pub fn photo_bytes(info: &Info) -> Option<Vec<u8>> {
    info.resources.iter().find_map(|r| {
        let mime = r.mime_type.trim().to_ascii_lowercase();
        if !matches!(mime.as_str(), "image/jpeg" | "image/jpg" | "image/png") {
            return None;
        }
        let b64 = r.deref_uri.as_deref()?;
        // Base64 is 4 characters per 3 bytes; allow for line breaks.
        if b64.len() > MAX_PHOTO_BYTES / 3 * 4 + MAX_PHOTO_BYTES / 32 {
            return None;
        }
        let compact: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()?;
        (!bytes.is_empty() && bytes.len() <= MAX_PHOTO_BYTES).then_some(bytes)
    })
}

/// Decode `bytes` (JPEG or PNG) to 8-bit gray within the limits.
fn decode(bytes: &[u8]) -> Result<image::GrayImage, LabelError> {
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(LabelError::PhotoTooLarge(bytes.len()));
    }
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|_| LabelError::PhotoFormat)
    };
    let mut r = reader()?;
    if !matches!(r.format(), Some(ImageFormat::Jpeg | ImageFormat::Png)) {
        return Err(LabelError::PhotoFormat);
    }
    // Read the header first: refuse a huge photo before allocating for it.
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(LabelError::PhotoDecode)?;
    if w == 0
        || h == 0
        || w > MAX_PHOTO_SIDE
        || h > MAX_PHOTO_SIDE
        || u64::from(w) * u64::from(h) > MAX_PHOTO_PIXELS
    {
        return Err(LabelError::PhotoDimensions(w, h));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_PHOTO_SIDE);
    limits.max_image_height = Some(MAX_PHOTO_SIDE);
    limits.max_alloc = Some(MAX_PHOTO_PIXELS * 4 + (16 << 20));
    r.limits(limits);
    Ok(r.decode().map_err(LabelError::PhotoDecode)?.to_luma8())
}

/// `(w, h)` scaled to fit `max_w` × `max_h`, keeping the aspect ratio.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let s = (f64::from(max_w) / f64::from(w)).min(f64::from(max_h) / f64::from(h));
    let fw = ((f64::from(w) * s).round() as u32).clamp(1, max_w);
    let fh = ((f64::from(h) * s).round() as u32).clamp(1, max_h);
    (fw, fh)
}

/// Stretch gray levels so the 2nd and 98th percentiles become black and white
/// (thermal prints lose the middle of a flat photo).
fn stretch(gray: &mut [u8]) {
    let mut hist = [0usize; 256];
    for &g in gray.iter() {
        hist[usize::from(g)] += 1;
    }
    let n = gray.len();
    let pick = |frac: f64| {
        let goal = (n as f64 * frac) as usize;
        let mut acc = 0;
        for (v, &c) in hist.iter().enumerate() {
            acc += c;
            if acc > goal {
                return v as f64;
            }
        }
        255.0
    };
    let (lo, hi) = (pick(0.02), pick(0.98));
    if hi - lo < 16.0 {
        return;
    }
    for g in gray.iter_mut() {
        *g = ((f64::from(*g) - lo) * 255.0 / (hi - lo)).clamp(0.0, 255.0) as u8;
    }
}

/// Floyd–Steinberg error diffusion of `gray` (`w` × `h`, 0 black, 255
/// white) to one value per pixel: 1 black, 0 white.
pub fn dither(gray: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut err: Vec<f32> = gray.iter().map(|&g| f32::from(g)).collect();
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let old = err[i];
            let new = if old < 128.0 { 0.0 } else { 255.0 };
            out[i] = u8::from(new == 0.0);
            let e = old - new;
            if x + 1 < w {
                err[i + 1] += e * 7.0 / 16.0;
            }
            if y + 1 < h {
                if x > 0 {
                    err[i + w - 1] += e * 3.0 / 16.0;
                }
                err[i + w] += e * 5.0 / 16.0;
                if x + 1 < w {
                    err[i + w + 1] += e / 16.0;
                }
            }
        }
    }
    out
}

/// The photo decoded, fitted into `max_w` × `max_h` and dithered.
pub fn dithered(bytes: &[u8], max_w: u32, max_h: u32) -> Result<Bitmap, LabelError> {
    let img = decode(bytes)?;
    let (w, h) = fit(img.width(), img.height(), max_w, max_h);
    let small = image::imageops::resize(&img, w, h, FilterType::Triangle);
    let mut gray = small.into_raw();
    stretch(&mut gray);
    let bits = dither(&gray, w as usize, h as usize);
    let mut bm = Bitmap::new(w, h);
    for (i, &b) in bits.iter().enumerate() {
        if b == 1 {
            bm.set((i % w as usize) as i64, (i / w as usize) as i64, true);
        }
    }
    Ok(bm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dithering_gives_only_zero_or_one_at_the_gray_level() {
        let (w, h) = (64, 64);
        for level in [0u8, 64, 128, 200, 255] {
            let bits = dither(&vec![level; w * h], w, h);
            assert!(bits.iter().all(|&b| b <= 1));
            let black = bits.iter().filter(|&&b| b == 1).count() as f64 / (w * h) as f64;
            let want = 1.0 - f64::from(level) / 255.0;
            assert!(
                (black - want).abs() < 0.03,
                "level {level}: {black} vs {want}"
            );
        }
        // A gradient keeps its order: the dark end is blacker.
        let grad: Vec<u8> = (0..w * h).map(|i| ((i % w) * 4) as u8).collect();
        let bits = dither(&grad, w, h);
        let left: usize = (0..h)
            .map(|y| {
                bits[y * w..y * w + 8]
                    .iter()
                    .map(|&b| usize::from(b))
                    .sum::<usize>()
            })
            .sum();
        let right: usize = (0..h)
            .map(|y| {
                bits[y * w + w - 8..y * w + w]
                    .iter()
                    .map(|&b| usize::from(b))
                    .sum::<usize>()
            })
            .sum();
        assert!(left > right * 4, "{left} {right}");
    }

    #[test]
    fn fit_keeps_the_aspect_ratio() {
        assert_eq!(fit(1000, 500, 280, 350), (280, 140));
        assert_eq!(fit(300, 400, 280, 350), (263, 350));
        assert_eq!(fit(10, 10, 280, 350), (280, 280));
        assert_eq!(fit(1, 8000, 280, 350), (1, 350));
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x + y) % 256) as u8]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn photos_are_decoded_within_limits() {
        let bm = dithered(&png(400, 200), 280, 350).unwrap();
        assert_eq!((bm.width(), bm.height()), (280, 140));
        assert!(!bm.is_blank());
        assert!(matches!(
            dithered(b"GIF89a....", 10, 10),
            Err(LabelError::PhotoFormat)
        ));
        assert!(matches!(
            dithered(&[0u8; 100], 10, 10),
            Err(LabelError::PhotoFormat)
        ));
        assert!(matches!(
            dithered(&vec![0u8; MAX_PHOTO_BYTES + 1], 10, 10),
            Err(LabelError::PhotoTooLarge(_))
        ));
        assert!(matches!(
            dithered(&png(8001, 1), 10, 10),
            Err(LabelError::PhotoDimensions(8001, 1))
        ));
    }

    #[test]
    fn embedded_photos_are_taken_from_deref_uri() {
        let xml = crate::demo::sample::SAMPLE_ALERT;
        let a = crate::alert::cap::parse(xml.as_bytes(), &Default::default()).unwrap();
        let mut info = a.infos[0].clone();
        // The sample links its photo by URI only.
        assert_eq!(photo_bytes(&info), None);
        let bytes = png(20, 20);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        info.resources[0].mime_type = "image/png".into();
        info.resources[0].deref_uri = Some(format!("{}\n{}", &b64[..10], &b64[10..]));
        assert_eq!(photo_bytes(&info), Some(bytes));
        info.resources[0].deref_uri = Some("not base64!".into());
        assert_eq!(photo_bytes(&info), None);
        info.resources[0].deref_uri = Some("A".repeat(MAX_PHOTO_BYTES * 2));
        assert_eq!(photo_bytes(&info), None);
    }
}
