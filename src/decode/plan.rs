//! What a decoder is asked for and what it delivered, the same for the CPU and the GPU
//! decoders: regions in pixels, a decode plan (scale, region, and which images to accept),
//! and the decoded window.

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

/// Which images a decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImagePolicy {
    /// Larger images (width × height, from the header, before anything is allocated) are
    /// refused; 0 accepts any size.
    pub max_pixels: u64,
    /// Accept JPEGs cut short (their missing rows grey), as Pillow's `LOAD_TRUNCATED_IMAGES`
    /// does; otherwise they are errors like any other corrupt image.
    pub load_truncated: bool,
}

impl ImagePolicy {
    /// Twice Pillow's `Image.MAX_IMAGE_PIXELS`: where Pillow turns its decompression-bomb
    /// warning into an error. 179 megapixels, 537 MB as RGB; ImageNet's largest photograph has
    /// 6.3 megapixels.
    pub const DEFAULT_MAX_PIXELS: u64 = 2 * (1024 * 1024 * 1024 / 4 / 3);

    pub const DEFAULT: ImagePolicy = ImagePolicy {
        max_pixels: ImagePolicy::DEFAULT_MAX_PIXELS,
        load_truncated: false,
    };

    /// An error unless an image of `width` × `height` may be decoded.
    pub fn check_size(&self, width: u32, height: u32) -> Result<(), String> {
        let pixels = width as u64 * height as u64;
        if self.max_pixels > 0 && pixels > self.max_pixels {
            return Err(format!(
                "the image claims {width}x{height} = {pixels} pixels, more than \
                 max_image_pixels={} (a decompression bomb?); raise max_image_pixels to load it",
                self.max_pixels
            ));
        }
        Ok(())
    }
}

impl Default for ImagePolicy {
    fn default() -> Self {
        ImagePolicy::DEFAULT
    }
}

/// How to decode: at `eighths`/8 of full resolution (1..=8; JPEG only), only `region` (in
/// full-resolution pixels; `None` for the whole image), and only images `policy` accepts.
///
/// Always with libjpeg's accurate IDCT and smooth chroma upsampling, as Pillow and
/// torchvision decode: the fast variants save ~5% of the instructions of a decode (Huffman
/// decoding is ~70% of them) and are not worth the pixel differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodePlan {
    pub eighths: u32,
    pub region: Option<Rect>,
    pub policy: ImagePolicy,
}

impl DecodePlan {
    pub const FULL: DecodePlan = DecodePlan {
        eighths: 8,
        region: None,
        policy: ImagePolicy::DEFAULT,
    };

    /// The whole image at full resolution, if `policy` accepts it.
    pub fn full(policy: ImagePolicy) -> DecodePlan {
        DecodePlan {
            policy,
            ..DecodePlan::FULL
        }
    }
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
    /// A whole image at full resolution.
    pub fn whole(width: u32, height: u32) -> Decoded {
        Decoded {
            eighths: 8,
            x0: 0,
            y0: 0,
            width,
            height,
        }
    }

    /// Scale from full-resolution to decoded pixel coordinates.
    pub fn scale(&self) -> f64 {
        self.eighths as f64 / 8.0
    }
}

/// `v` holding `len` bytes (their values unspecified), or an error when the memory cannot be
/// had: a decoder's buffers are sized by untrusted headers.
pub(super) fn resize_fallibly(v: &mut Vec<u8>, len: usize) -> Result<(), String> {
    v.clear();
    v.try_reserve(len)
        .map_err(|_| format!("not enough memory to decode the image ({len} bytes)"))?;
    v.resize(len, 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_limit_is_checked_from_the_size() {
        let policy = ImagePolicy::DEFAULT;
        assert!(policy.check_size(20_000, 8_000).is_ok());
        let e = policy.check_size(65_500, 65_500).unwrap_err();
        assert!(e.contains("65500x65500 = 4290250000 pixels") && e.contains("max_image_pixels"));
        let any = ImagePolicy {
            max_pixels: 0,
            ..policy
        };
        assert!(any.check_size(65_535, 65_535).is_ok());
    }
}
