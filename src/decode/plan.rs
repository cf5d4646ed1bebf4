//! What a decoder is asked for and what it delivered, the same for the CPU and the GPU
//! decoders: regions in pixels, a decode plan (scale and region), and the decoded window.

/// A region of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// The smallest rectangle holding both.
    pub fn union(self, other: Rect) -> Rect {
        let (x0, y0) = (self.x.min(other.x), self.y.min(other.y));
        let x1 = (self.x + self.w).max(other.x + other.w);
        let y1 = (self.y + self.h).max(other.y + other.h);
        Rect {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        }
    }
}

/// How to decode: at `eighths`/8 of full resolution (1..=8; JPEG only), and only `region`
/// (in full-resolution pixels; `None` for the whole image).
///
/// Always with libjpeg's accurate IDCT and smooth chroma upsampling, as Pillow and
/// torchvision decode: the fast variants save ~5% of the instructions of a decode (Huffman
/// decoding is ~70% of them) and are not worth the pixel differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodePlan {
    pub eighths: u32,
    pub region: Option<Rect>,
}

impl DecodePlan {
    pub const FULL: DecodePlan = DecodePlan {
        eighths: 8,
        region: None,
    };
}

/// What a decode produced: RGB pixels covering `[x0, x0 + width) × [y0, y0 + height)` of the
/// image scaled by `eighths`/8 (which may be larger than asked for: MCU alignment, or a format
/// that cannot decode partially).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub eighths: u32,
    pub x0: u32,
    pub y0: u32,
    pub width: u32,
    pub height: u32,
}

impl Decoded {
    /// Scale from full-resolution to decoded pixel coordinates.
    pub fn scale(&self) -> f64 {
        self.eighths as f64 / 8.0
    }
}
