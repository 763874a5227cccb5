//! The whole label as a PNG for people (admin page, previews, the README):
//! the composed 1-bit canvas written as 8-bit gray, black 0 and white 255.

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use super::raster::Bitmap;
use super::LabelError;

/// Encode `canvas` as a gray PNG.
pub fn encode(canvas: &Bitmap) -> Result<Vec<u8>, LabelError> {
    let mut out = Vec::with_capacity(64 * 1024);
    PngEncoder::new(&mut out)
        .write_image(
            &canvas.to_gray(),
            canvas.width(),
            canvas.height(),
            ExtendedColorType::L8,
        )
        .map_err(LabelError::Png)?;
    Ok(out)
}
