//! Decode-free images: the YUV 4:2:0 planes a JPEG stores (JFIF's full-range BT.601 YCbCr),
//! kept raw in a cache so that reading them needs no Huffman decoding and no IDCT.
//!
//! A value is three planes back to back, as libjpeg-turbo lays them out (`align` 1): Y
//! (`2⌈width/2⌉ × 2⌈height/2⌉`: an odd width or height padded by one, which is never read),
//! then Cb and Cr (`⌈width/2⌉ × ⌈height/2⌉` each). Each chroma sample sits at the centre of the
//! 2×2 luma block it covers, as in JPEG. [`Yuv420::rgb_at`] is the one definition of the
//! conversion to RGB: chroma interpolated bilinearly at the luma position (libjpeg's "fancy"
//! upsampling: weights 3/4 and 1/4), then JFIF's matrix, in f32. The CPU pipeline converts a
//! crop's window with [`Yuv420::to_rgb`], which does the same operations in the same order, and
//! the CUDA kernel's source fetch is their twin.

use super::plan::{DecodePlan, Decoded, Rect};
use crate::dtype::clamp_to_u8;

/// One image's planes, borrowed from a cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yuv420<'a> {
    pub width: u32,
    pub height: u32,
    planes: &'a [u8],
}

/// The size of each chroma plane of a `width × height` image.
pub fn chroma_size(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(2), height.div_ceil(2))
}

/// Bytes of the three planes of a `width × height` image.
pub fn planes_len(width: u32, height: u32) -> usize {
    let (cw, ch) = chroma_size(width, height);
    6 * cw as usize * ch as usize
}

/// The two chroma samples that luma row (or column) `i` lies between, and the weight of the
/// second: sample `j` is centred on luma coordinate `2j + 0.5`, so `i` maps to `i/2 - 1/4`.
/// Samples past the edge repeat the last one.
pub fn chroma_taps(i: u32, len: u32) -> (u32, u32, f32) {
    let c = i as f32 * 0.5 - 0.25;
    let first = c.floor();
    let weight = c - first;
    let last = len as i64 - 1;
    let clamp = |j: i64| j.clamp(0, last) as u32;
    (clamp(first as i64), clamp(first as i64 + 1), weight)
}

/// JFIF's YCbCr to RGB, rounded to the nearest level and clamped.
#[inline(always)]
pub fn ycc_to_rgb(y: f32, cb: f32, cr: f32) -> [u8; 3] {
    let (cb, cr) = (cb - 128.0, cr - 128.0);
    let r = y + 1.402 * cr;
    let g = y - 0.344_136 * cb - 0.714_136 * cr;
    let b = y + 1.772 * cb;
    // Clamped before truncating, so truncating is flooring.
    [r, g, b].map(|v| clamp_to_u8(v + 0.5))
}

impl<'a> Yuv420<'a> {
    /// The planes of a `width × height` image; an error unless `planes` has exactly their size.
    pub fn new(width: u32, height: u32, planes: &'a [u8]) -> Result<Yuv420<'a>, String> {
        let expected = planes_len(width, height);
        if width == 0 || height == 0 || planes.len() != expected {
            return Err(format!(
                "YUV 4:2:0 value of {} bytes for a {width}x{height} image (expected {expected})",
                planes.len()
            ));
        }
        Ok(Yuv420 {
            width,
            height,
            planes,
        })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.planes
    }

    /// The luma plane and its row length.
    fn luma(&self) -> (&'a [u8], usize) {
        let (cw, ch) = chroma_size(self.width, self.height);
        (
            &self.planes[..4 * cw as usize * ch as usize],
            2 * cw as usize,
        )
    }

    /// Cb (`which` 0) or Cr (1).
    fn chroma(&self, which: usize) -> &'a [u8] {
        let (cw, ch) = chroma_size(self.width, self.height);
        let plane = cw as usize * ch as usize;
        let start = 4 * plane + which * plane;
        &self.planes[start..start + plane]
    }

    /// Pixel `(x, y)` in RGB: the definition the region conversion and the kernel follow.
    pub fn rgb_at(&self, x: u32, y: u32) -> [u8; 3] {
        let (cw, ch) = chroma_size(self.width, self.height);
        let (r0, r1, fy) = chroma_taps(y, ch);
        let (c0, c1, fx) = chroma_taps(x, cw);
        let at = |plane: &[u8], r: u32, c: u32| plane[(r * cw + c) as usize] as f32;
        let sample = |plane: &[u8]| {
            let left = (1.0 - fy) * at(plane, r0, c0) + fy * at(plane, r1, c0);
            let right = (1.0 - fy) * at(plane, r0, c1) + fy * at(plane, r1, c1);
            (1.0 - fx) * left + fx * right
        };
        let (luma, stride) = self.luma();
        let luma = luma[y as usize * stride + x as usize] as f32;
        ycc_to_rgb(luma, sample(self.chroma(0)), sample(self.chroma(1)))
    }

    /// The region `plan` asks for (the whole image if none) as packed RGB in `out`, at full
    /// resolution: there is no DCT to scale.
    pub fn to_rgb(&self, plan: DecodePlan, out: &mut Vec<u8>) -> Result<Decoded, String> {
        plan.policy.check_size(self.width, self.height)?;
        let full = Rect {
            x: 0,
            y: 0,
            w: self.width,
            h: self.height,
        };
        let r = plan.region.map_or(full, |r| clip(r, full));
        let len = r.w as usize * r.h as usize * 3;
        out.clear();
        out.try_reserve(len)
            .map_err(|_| format!("not enough memory for {len} bytes of RGB"))?;
        out.resize(len, 0);
        let (cw, ch) = chroma_size(self.width, self.height);
        // The chroma columns the region's pixels pair up on; the rows below hold them with one
        // more on each side (repeated at the image's edges) for the interpolation.
        let (first, last) = (r.x / 2, (r.x + r.w - 1) / 2);
        // Those inside the image (one past an edge repeats the edge column, pushed apart from
        // this range so that its loop vectorizes; clamping each column measured 20% slower).
        let inside = first.saturating_sub(1) as usize..=(last + 1).min(cw - 1) as usize;
        let pairs = (last - first + 1) as usize;
        let mut vertical = Vec::with_capacity(pairs + 2);
        let mut upsampled = [vec![0f32; 2 * pairs], vec![0f32; 2 * pairs]];
        let ((luma, stride), planes) = (self.luma(), [self.chroma(0), self.chroma(1)]);
        let skip = (r.x % 2) as usize;
        for (k, y) in (r.y..r.y + r.h).enumerate() {
            let (r0, r1, fy) = chroma_taps(y, ch);
            for (plane, row) in planes.iter().zip(&mut upsampled) {
                let row_at = |r: u32| &plane[(r * cw) as usize..((r + 1) * cw) as usize];
                let (top, bottom) = (row_at(r0), row_at(r1));
                let at = |c: usize| (1.0 - fy) * top[c] as f32 + fy * bottom[c] as f32;
                vertical.clear();
                if first == 0 {
                    vertical.push(at(0));
                }
                vertical.extend(inside.clone().map(at));
                if last + 1 > cw - 1 {
                    vertical.push(at(cw as usize - 1));
                }
                upsample_pairs(&vertical, row);
            }
            let start = y as usize * stride + r.x as usize;
            let out_row = &mut out[k * r.w as usize * 3..(k + 1) * r.w as usize * 3];
            let [cb, cr] = &upsampled;
            convert_row(
                &luma[start..start + r.w as usize],
                &cb[skip..skip + r.w as usize],
                &cr[skip..skip + r.w as usize],
                out_row,
            );
        }
        Ok(Decoded {
            eighths: 8,
            x0: r.x,
            y0: r.y,
            width: r.w,
            height: r.h,
        })
    }
}

/// Chroma interpolated across a row at luma resolution: `around[k + 1]` is chroma column
/// `first + k` (already interpolated down the rows), `around` holding one more on each side;
/// `row[2k]` and `row[2k + 1]` become luma columns `2(first + k)` and `2(first + k) + 1`,
/// with [`chroma_taps`]'s weights (3/4 on the nearer sample) and [`Yuv420::rgb_at`]'s f32
/// operations, so that the values are identical. Written per pair so the compiler vectorizes it.
fn upsample_pairs(around: &[f32], row: &mut [f32]) {
    let windows = around.windows(3);
    for (pair, w) in row.chunks_exact_mut(2).zip(windows) {
        pair[0] = (1.0 - 0.75) * w[0] + 0.75 * w[1];
        pair[1] = (1.0 - 0.25) * w[1] + 0.25 * w[2];
    }
}

/// One row of pixels to packed RGB, in blocks: each channel into a small array first (which
/// vectorizes), then interleaved.
fn convert_row(luma: &[u8], cb: &[f32], cr: &[f32], out: &mut [u8]) {
    const BLOCK: usize = 64;
    let mut channels = [[0u8; BLOCK]; 3];
    let blocks = luma
        .chunks(BLOCK)
        .zip(cb.chunks(BLOCK))
        .zip(cr.chunks(BLOCK));
    for (((luma, cb), cr), out) in blocks.zip(out.chunks_mut(3 * BLOCK)) {
        let [r, g, b] = &mut channels;
        let rgb = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
        for (((&l, &cb), &cr), ((r, g), b)) in luma.iter().zip(cb).zip(cr).zip(rgb) {
            [*r, *g, *b] = ycc_to_rgb(l as f32, cb, cr);
        }
        for (px, ((&r, &g), &b)) in out.chunks_exact_mut(3).zip(r.iter().zip(&*g).zip(&*b)) {
            px.copy_from_slice(&[r, g, b]);
        }
    }
}

/// `r` cut to `full`, never empty.
fn clip(r: Rect, full: Rect) -> Rect {
    let x = r.x.min(full.w - 1);
    let y = r.y.min(full.h - 1);
    Rect {
        x,
        y,
        w: r.w.clamp(1, full.w - x),
        h: r.h.clamp(1, full.h - y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Planes of a `w × h` image with every sample different.
    fn planes(w: u32, h: u32) -> Vec<u8> {
        (0..planes_len(w, h))
            .map(|i| (i * 37 % 251) as u8)
            .collect()
    }

    #[test]
    fn chroma_sits_between_its_two_luma_samples() {
        assert_eq!(chroma_taps(0, 4), (0, 0, 0.75));
        assert_eq!(chroma_taps(1, 4), (0, 1, 0.25));
        assert_eq!(chroma_taps(2, 4), (0, 1, 0.75));
        assert_eq!(chroma_taps(7, 4), (3, 3, 0.25));
        // An odd width's last column has a chroma sample of its own.
        assert_eq!(chroma_taps(4, 3), (1, 2, 0.75));
    }

    #[test]
    fn jfif_matrix() {
        assert_eq!(ycc_to_rgb(128.0, 128.0, 128.0), [128, 128, 128]);
        assert_eq!(ycc_to_rgb(76.245, 84.972, 255.5), [255, 0, 0]);
        assert_eq!(ycc_to_rgb(0.0, 0.0, 0.0), [0, 135, 0]);
        // Not a number or out of range still gives levels (the fast conversion's premise).
        assert_eq!(ycc_to_rgb(f32::NAN, 128.0, 128.0), [0, 0, 0]);
        assert_eq!(ycc_to_rgb(f32::INFINITY, 128.0, 128.0), [255, 255, 255]);
        assert_eq!(ycc_to_rgb(-1e30, 128.0, 128.0), [0, 0, 0]);
    }

    #[test]
    fn regions_equal_the_definition_pixel_for_pixel() {
        // Past 64 columns a row is converted in more than one block; 195 / 3 starts on an odd one.
        for (w, h) in [(7, 5), (8, 6), (1, 1), (33, 2), (151, 4), (195, 3)] {
            let bytes = planes(w, h);
            let image = Yuv420::new(w, h, &bytes).unwrap();
            let mut out = Vec::new();
            let whole = image.to_rgb(DecodePlan::FULL, &mut out).unwrap();
            assert_eq!((whole.width, whole.height), (w, h));
            for y in 0..h {
                for x in 0..w {
                    let at = ((y * w + x) * 3) as usize;
                    assert_eq!(out[at..at + 3], image.rgb_at(x, y), "{w}x{h} at ({x}, {y})");
                }
            }
            let region = Rect {
                x: w / 3,
                y: h / 2,
                w: w - w / 3,
                h: h - h / 2,
            };
            let plan = DecodePlan {
                region: Some(region),
                ..DecodePlan::FULL
            };
            let part = image.to_rgb(plan, &mut out).unwrap();
            assert_eq!(
                (part.x0, part.y0, part.width, part.height),
                (region.x, region.y, region.w, region.h)
            );
            for y in 0..region.h {
                for x in 0..region.w {
                    let at = ((y * region.w + x) * 3) as usize;
                    assert_eq!(out[at..at + 3], image.rgb_at(region.x + x, region.y + y));
                }
            }
        }
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert!(Yuv420::new(4, 4, &[0; 24]).is_ok());
        assert!(Yuv420::new(3, 3, &[0; 24]).is_ok());
        let e = Yuv420::new(4, 4, &[0; 23]).unwrap_err();
        assert!(e.contains("23 bytes for a 4x4 image (expected 24)"), "{e}");
        assert!(Yuv420::new(0, 4, &[]).is_err());
    }
}
