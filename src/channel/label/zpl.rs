//! The ZPL II writer: one label format (`^XA` … `^XZ`) in which every
//! element is a graphic field (`^FO x,y ^GFA`) in plain hexadecimal. Text is
//! rasterized by us, so Chinese prints on any printer without a resident CJK
//! font, and the printed dots are exactly the PNG's. `^CI28` (UTF-8) is set
//! for any field a printer-side tool adds later; we emit no text fields.

use std::fmt::Write as _;

use super::layout::{Rect, HEIGHT, WIDTH};
use super::raster::Bitmap;

/// One element placed on the label.
pub struct Placed<'a> {
    pub at: Rect,
    pub bitmap: &'a Bitmap,
}

/// The first and one-past-last rows of `bm` holding a black dot.
fn ink_rows(bm: &Bitmap) -> Option<(u32, u32)> {
    let rb = bm.row_bytes();
    let rows = bm.bytes().chunks(rb.max(1));
    let first = rows.clone().position(|r| r.iter().any(|&b| b != 0))?;
    let last = rows.rev().position(|r| r.iter().any(|&b| b != 0))?;
    Some((first as u32, bm.height() - last as u32))
}

/// The ZPL of a label made of `elements`. Blank rows at the top and bottom
/// of an element are not sent (its `^FO` moves down instead); a blank
/// element is left out.
pub fn write(elements: &[Placed<'_>]) -> Vec<u8> {
    let total: usize = elements
        .iter()
        .map(|e| e.bitmap.bytes().len() * 2 + 48)
        .sum();
    let mut out = String::with_capacity(total + 64);
    let _ = write!(out, "^XA\n^PW{WIDTH}\n^LL{HEIGHT}\n^LH0,0\n^CI28\n");
    for e in elements {
        let Some((top, bottom)) = ink_rows(e.bitmap) else {
            continue;
        };
        let rb = e.bitmap.row_bytes();
        let data = &e.bitmap.bytes()[top as usize * rb..bottom as usize * rb];
        let _ = write!(
            out,
            "^FO{},{}^GFA,{},{},{},",
            e.at.x,
            e.at.y + top,
            data.len(),
            data.len(),
            rb
        );
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in data {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out.push_str("^FS\n");
    }
    out.push_str("^XZ\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphic_fields_declare_their_exact_size() {
        let mut bm = Bitmap::new(10, 5);
        bm.set(0, 1, true);
        bm.set(9, 2, true);
        let blank = Bitmap::new(8, 8);
        let zpl = write(&[
            Placed {
                at: Rect::new(30, 40, 10, 5),
                bitmap: &bm,
            },
            Placed {
                at: Rect::new(30, 100, 8, 8),
                bitmap: &blank,
            },
        ]);
        let zpl = String::from_utf8(zpl).unwrap();
        assert_eq!(
            zpl,
            "^XA\n^PW812\n^LL1218\n^LH0,0\n^CI28\n^FO30,41^GFA,4,4,2,80000040^FS\n^XZ\n"
        );
    }
}
