//! The one raster model both outputs share: a 1-bit bitmap, rows of bytes,
//! most significant bit first, a set bit is a black dot (ZPL's `^GF` order).
//! Elements are drawn into their own bitmaps, then written to ZPL one by one
//! or composed onto the whole label for the PNG. No fonts, no I/O here.

/// A 1-bit image; a set bit is black.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    width: u32,
    height: u32,
    row_bytes: usize,
    bits: Vec<u8>,
}

impl Bitmap {
    /// An all-white bitmap.
    pub fn new(width: u32, height: u32) -> Self {
        let row_bytes = (width as usize).div_ceil(8);
        Self {
            width,
            height,
            row_bytes,
            bits: vec![0; row_bytes * height as usize],
        }
    }

    /// Width in dots.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in dots.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per row (`ceil(width / 8)`), as `^GF` declares it.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The packed rows, `row_bytes() * height()` bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bits
    }

    /// True when no dot is black.
    pub fn is_blank(&self) -> bool {
        self.bits.iter().all(|&b| b == 0)
    }

    /// Number of black dots.
    pub fn black_dots(&self) -> u64 {
        self.bits.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// Whether the dot at (`x`, `y`) is black; outside is white.
    pub fn get(&self, x: u32, y: u32) -> bool {
        if x >= self.width || y >= self.height {
            return false;
        }
        let i = y as usize * self.row_bytes + (x / 8) as usize;
        self.bits[i] & (0x80 >> (x % 8)) != 0
    }

    /// Paint the dot at (`x`, `y`); outside the bitmap is ignored (clipped).
    pub fn set(&mut self, x: i64, y: i64, black: bool) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let (x, y) = (x as u32, y as usize);
        let i = y * self.row_bytes + (x / 8) as usize;
        let m = 0x80 >> (x % 8);
        if black {
            self.bits[i] |= m;
        } else {
            self.bits[i] &= !m;
        }
    }

    /// Paint a rectangle, clipped to the bitmap.
    pub fn fill(&mut self, x: i64, y: i64, w: u32, h: u32, black: bool) {
        for yy in y..y + i64::from(h) {
            for xx in x..x + i64::from(w) {
                self.set(xx, yy, black);
            }
        }
    }

    /// A `t`-dot frame along the inside of the edges.
    pub fn frame(&mut self, t: u32) {
        let (w, h) = (self.width, self.height);
        self.fill(0, 0, w, t, true);
        self.fill(0, i64::from(h) - i64::from(t), w, t, true);
        self.fill(0, 0, t, h, true);
        self.fill(i64::from(w) - i64::from(t), 0, t, h, true);
    }

    /// Copy the black dots of `src` with its top left at (`x`, `y`) (clipped).
    pub fn draw(&mut self, src: &Bitmap, x: i64, y: i64) {
        for sy in 0..src.height {
            for sx in 0..src.width {
                if src.get(sx, sy) {
                    self.set(x + i64::from(sx), y + i64::from(sy), true);
                }
            }
        }
    }

    /// The bitmap as 8-bit gray, 0 black and 255 white (for the PNG).
    pub fn to_gray(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.width as usize * self.height as usize);
        for y in 0..self.height {
            for x in 0..self.width {
                out.push(if self.get(x, y) { 0 } else { 255 });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_packed_msb_first_and_clipped() {
        let mut b = Bitmap::new(10, 2);
        assert_eq!(b.row_bytes(), 2);
        b.set(0, 0, true);
        b.set(9, 1, true);
        b.set(10, 1, true); // outside: ignored
        b.set(-1, 0, true);
        assert_eq!(b.bytes(), &[0x80, 0, 0, 0x40]);
        assert!(b.get(9, 1) && !b.get(10, 1));
        assert_eq!(b.black_dots(), 2);
        let mut c = Bitmap::new(4, 4);
        c.draw(&b, 2, 2);
        assert!(c.get(2, 2));
        assert_eq!(c.black_dots(), 1);
    }
}
