//! The photometric operations of a view, as torchvision v2's functional operations compute
//! them on a uint8 image: the same float32 operations in the same order, the result of each
//! truncated (or, for the blur, rounded) to 0..255 as torchvision's `.to(torch.uint8)` does.
//! The CPU pipeline applies them to the resized view; the per-pixel functions are the ones the
//! GPU kernel mirrors.

use super::params::{ColorOp, CropBox};
use crate::dtype::clamp_to_u8;
use crate::rng::{GOLDEN, mix64};

/// A pixel as three 0..255 integer values in float32.
pub type Rgb = [f32; 3];

/// What a [`ColorStep`] does (`kind`); the kernel has the same numbers.
pub mod step {
    pub const BRIGHTNESS: u32 = 0;
    pub const CONTRAST: u32 = 1;
    pub const SATURATION: u32 = 2;
    pub const HUE: u32 = 3;
    pub const GRAYSCALE: u32 = 4;
    pub const SOLARIZE: u32 = 5;
    pub const BLUR: u32 = 6;
}

/// One operation of a view as the per-pixel code reads it, here and in the kernel (`struct
/// ColorStep` in `kernels/resample.cu`, field for field): its kind and its parameters already
/// in float32, prepared once by [`steps`] for both.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ColorStep {
    pub kind: u32,
    /// Brightness and hue: the factor; contrast and saturation: the blend ratio; solarize:
    /// the smallest pixel value inverted.
    pub a: f32,
    /// Contrast and saturation: `1 - ratio`, computed in double as torchvision's scalar is.
    pub b: f32,
    /// Blur: taps along x and along y, and where its weights (x's, then y's) start in the
    /// weight list that goes with the steps.
    pub taps_x: u32,
    pub taps_y: u32,
    pub weights: u32,
}

const _: () = assert!(std::mem::size_of::<ColorStep>() == 24);

impl ColorStep {
    /// A blur or a contrast needs the whole view as the steps before it left it.
    pub fn needs_whole_view(&self) -> bool {
        matches!(self.kind, step::BLUR | step::CONTRAST)
    }
}

/// The steps of `ops`, appending each blur's weights to `weights`.
pub fn steps(ops: &[ColorOp], weights: &mut Vec<f32>) -> Vec<ColorStep> {
    let one = |kind, a: f64| ColorStep {
        kind,
        a: a as f32,
        ..Default::default()
    };
    let blend = |kind, ratio: f64| ColorStep {
        kind,
        a: ratio as f32,
        b: (1.0 - ratio) as f32,
        ..Default::default()
    };
    ops.iter()
        .map(|op| match *op {
            ColorOp::Brightness(f) => one(step::BRIGHTNESS, f),
            ColorOp::Contrast(f) => blend(step::CONTRAST, f),
            ColorOp::Saturation(f) => blend(step::SATURATION, f),
            ColorOp::Hue(f) => one(step::HUE, f),
            ColorOp::Grayscale => one(step::GRAYSCALE, 0.0),
            // Pixels are whole numbers: `u >= threshold` is `u >= ceil(threshold)`.
            ColorOp::Solarize(t) => one(step::SOLARIZE, t.ceil()),
            ColorOp::Blur { kernel, sigma } => {
                let at = weights.len() as u32;
                weights.extend(gaussian_weights(kernel.0, sigma));
                weights.extend(gaussian_weights(kernel.1, sigma));
                ColorStep {
                    kind: step::BLUR,
                    taps_x: kernel.0,
                    taps_y: kernel.1,
                    weights: at,
                    ..Default::default()
                }
            }
        })
        .collect()
}

/// `.clamp(0, 255).to(torch.uint8)` of a float32 value, kept in float32; also `floor` (or
/// `trunc`) of a value known to lie in [0, 255], without libm.
fn to_u8(x: f32) -> f32 {
    clamp_to_u8(x) as f32
}

/// `x % 1.0` (C's `fmod`) for |x| < 256: `x` less its integer part, which is exact.
fn fraction(x: f32) -> f32 {
    let whole = clamp_to_u8(x.abs()) as f32;
    x - if x < 0.0 { -whole } else { whole }
}

/// `_rgb_to_grayscale_image`: `r * 0.2989 + g * 0.587 + b * 0.114` in float32.
pub fn gray(p: Rgb) -> f32 {
    p[0] * 0.2989 + p[1] * 0.587 + p[2] * 0.114
}

/// `_blend(image, other, ratio)`: `image * ratio + other * (1 - ratio)`, clamped, truncated.
fn blend(p: Rgb, other: f32, s: &ColorStep) -> Rgb {
    p.map(|u| to_u8(u * s.a + other * s.b))
}

/// `adjust_hue`: to float in [0, 1], to HSV (Pillow's algorithm, as `_rgb_to_hsv`), hue
/// shifted modulo 1, back to RGB (`_hsv_to_rgb`), to uint8 by `x * 255.999` truncated.
#[inline(always)]
fn hue(p: Rgb, factor: f32) -> Rgb {
    let k = (1.0f64 / 255.0) as f32;
    let [r, g, b] = p.map(|u| u * k);
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let range = maxc - minc;
    let s = range / if eqc { 1.0 } else { maxc };
    let divisor = if eqc { 1.0 } else { range };
    let (rc, gc, bc) = (
        (maxc - r) / divisor,
        (maxc - g) / divisor,
        (maxc - b) / divisor,
    );
    let mask = |on: bool| if on { 1.0f32 } else { 0.0 };
    let (neq_r, eq_g) = (maxc != r, maxc == g);
    let hg = ((rc + 2.0) - bc) * mask(eq_g && neq_r);
    let hr = (bc - gc) * mask(!neq_r);
    let hb = ((gc + 4.0) - rc) * mask(neq_r && !eq_g);
    let h = ((hr + hg) + hb) * (1.0f64 / 6.0) as f32 + 1.0;
    let h = fraction(h);
    // torch.remainder: fmod, then moved into [0, 1).
    let h = fraction(h + factor);
    let h = if h < 0.0 { h + 1.0 } else { h };
    let v = maxc;
    let h6 = h * 6.0;
    let i = to_u8(h6);
    let f = h6 - i;
    let sxf = s * f;
    let one_minus_s = 1.0 - s;
    let q = ((1.0 - sxf) * v).clamp(0.0, 1.0);
    let t = ((sxf + one_minus_s) * v).clamp(0.0, 1.0);
    let pv = (one_minus_s * v).clamp(0.0, 1.0);
    // The sector, `i` modulo 6 (`i` is 6 when `h` rounded up to 1), chosen by comparisons
    // rather than a jump, so that pixels convert side by side.
    let sector = if i >= 6.0 { 0.0 } else { i };
    let pick = |choices: [f32; 6]| {
        let mut chosen = choices[0];
        for (k, &c) in choices.iter().enumerate().skip(1) {
            if sector == k as f32 {
                chosen = c;
            }
        }
        chosen
    };
    let rgb = [
        pick([v, q, pv, pv, t, v]),
        pick([t, v, v, q, pv, pv]),
        pick([pv, pv, t, v, v, q]),
    ];
    let up = (255.0f64 + 1.0 - 1e-3) as f32;
    rgb.map(|x| to_u8(x * up))
}

/// One pointwise step (not a blur) over every pixel of an RGB view; `mean` is the view's grey
/// mean where the step is a contrast. As torchvision: brightness scales; saturation blends
/// with the floored grey value, contrast with the mean; grayscale truncates the grey value;
/// solarize inverts from its threshold up. A loop per kind, so that each compiles to
/// straight-line code over the pixels.
fn pointwise(s: &ColorStep, rgb: &mut [u8], mean: f32) {
    match s.kind {
        step::BRIGHTNESS => each_pixel(rgb, |p| p.map(|u| to_u8(u * s.a))),
        step::CONTRAST => each_pixel(rgb, |p| blend(p, mean, s)),
        step::SATURATION => each_pixel(rgb, |p| blend(p, to_u8(gray(p)), s)),
        step::HUE => each_pixel(rgb, |p| hue(p, s.a)),
        step::GRAYSCALE => each_pixel(rgb, |p| [to_u8(gray(p)); 3]),
        step::SOLARIZE => each_pixel(rgb, |p| p.map(|u| if u >= s.a { 255.0 - u } else { u })),
        _ => unreachable!("step {} is not pointwise", s.kind),
    }
}

/// Each pixel of `rgb` through `f`, which takes and gives whole values in 0..=255: in blocks
/// of 64 pixels split into one array per channel, so that the compiler runs `f` on several
/// pixels at once (`f` has no branches that depend on the pixel).
#[inline(always)]
fn each_pixel(rgb: &mut [u8], f: impl Fn(Rgb) -> Rgb) {
    const BLOCK: usize = 64;
    // Lanes past a short last block keep the previous block's values: converted, not stored.
    let mut planes = [[0f32; BLOCK]; 3];
    for block in rgb.chunks_mut(3 * BLOCK) {
        for (i, px) in block.chunks_exact(3).enumerate() {
            for c in 0..3 {
                planes[c][i] = px[c] as f32;
            }
        }
        let [r, g, b] = &mut planes;
        for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
            [*r, *g, *b] = f([*r, *g, *b]);
        }
        for (i, px) in block.chunks_exact_mut(3).enumerate() {
            for c in 0..3 {
                px[c] = clamp_to_u8(planes[c][i]);
            }
        }
    }
}

/// The mean that `adjust_contrast` blends with: float32 mean of the floored grey values.
pub fn grey_mean(rgb: &[u8]) -> f32 {
    let sum: u64 = rgb
        .chunks_exact(3)
        .map(|p| clamp_to_u8(gray([p[0] as f32, p[1] as f32, p[2] as f32])) as u64)
        .sum();
    // Every integer sum is exact; torch divides in float32.
    sum as f32 / (rgb.len() / 3) as f32
}

/// torchvision's 1-D Gaussian kernel of `size` taps (a softmax of `-(x / sigma)^2` over
/// `x` evenly spaced in `±(size - 1) / (2√2)`, the usual normalized Gaussian).
pub fn gaussian_weights(size: u32, sigma: f64) -> Vec<f32> {
    let half = (size as f64 - 1.0) / 2.0;
    let w: Vec<f64> = (0..size)
        .map(|i| {
            let x = (i as f64 - half) / sigma;
            (-0.5 * x * x).exp()
        })
        .collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|x| (x / total) as f32).collect()
}

/// `x.round_ties_even()` for `0 <= x < 2^23` (a blurred value): adding 2^23 leaves no
/// fraction bits, so the addition rounds half to even, as `rintf` does in the kernel; this
/// form vectorizes without SSE4.1's rounding instruction.
fn round_half_even(x: f32) -> f32 {
    const SHIFT: f32 = 8_388_608.0;
    (x + SHIFT) - SHIFT
}

/// PyTorch's "reflect" padding: index `i` of a line of `n`, mirrored without repeating the
/// edge.
fn reflect(i: i64, n: i64) -> usize {
    let i = if i < 0 { -i } else { i };
    (if i >= n { 2 * (n - 1) - i } else { i }) as usize
}

/// `gaussian_blur` of an RGB view (`h` rows of `w` pixels) in place, separably: a horizontal
/// pass into `scratch` (float32), a vertical pass rounded half to even back to uint8. Every
/// value sums its taps in order from the first, as the kernel does; the loops run tap by tap
/// over whole rows so that they vectorize.
pub fn blur(
    rgb: &mut [u8],
    (h, w): (u32, u32),
    s: &ColorStep,
    weights: &[f32],
    scratch: &mut Vec<f32>,
) {
    let (h, w) = (h as usize, w as usize);
    let at = s.weights as usize;
    let kx = &weights[at..at + s.taps_x as usize];
    let ky = &weights[at + s.taps_x as usize..at + (s.taps_x + s.taps_y) as usize];
    let (rx, ry) = (s.taps_x as usize / 2, s.taps_y as usize / 2);
    let row_len = 3 * w;
    scratch.clear();
    scratch.resize(2 * rgb.len() + row_len, 0.0);
    let (pixels, rest) = scratch.split_at_mut(rgb.len());
    let (rows, line) = rest.split_at_mut(rgb.len());
    for (p, &v) in pixels.iter_mut().zip(rgb.iter()) {
        *p = v as f32;
    }
    // Rows: the columns whose taps all lie inside the row tap by tap over the whole run;
    // the few at each end through the reflection.
    let inner = rx..w.saturating_sub(rx).max(rx);
    for y in 0..h {
        let src = &pixels[y * row_len..(y + 1) * row_len];
        let out = &mut rows[y * row_len..(y + 1) * row_len];
        let (first, last) = (3 * inner.start, 3 * inner.end);
        for (k, &wt) in kx.iter().enumerate() {
            let shifted = &src[first + 3 * k - 3 * rx..last + 3 * k - 3 * rx];
            for (o, &v) in out[first..last].iter_mut().zip(shifted) {
                *o += wt * v;
            }
        }
        for x in (0..inner.start).chain(inner.end..w) {
            let mut acc = [0f32; 3];
            for (k, &wt) in kx.iter().enumerate() {
                let sx = reflect(x as i64 + k as i64 - rx as i64, w as i64);
                for c in 0..3 {
                    acc[c] += wt * src[sx * 3 + c];
                }
            }
            out[x * 3..x * 3 + 3].copy_from_slice(&acc);
        }
    }
    // Columns: a whole output row at a time, tap by tap over the (reflected) source rows.
    for y in 0..h {
        line.fill(0.0);
        for (k, &wt) in ky.iter().enumerate() {
            let sy = reflect(y as i64 + k as i64 - ry as i64, h as i64);
            let src = &rows[sy * row_len..(sy + 1) * row_len];
            for (o, &v) in line.iter_mut().zip(src) {
                *o += wt * v;
            }
        }
        for (d, &v) in rgb[y * row_len..(y + 1) * row_len]
            .iter_mut()
            .zip(line.iter())
        {
            *d = clamp_to_u8(round_half_even(v));
        }
    }
}

/// Apply `steps` in order to an RGB view (`h` rows of `w` pixels), in place: a pass over the
/// pixels per step (a contrast after computing its mean), the blur in two. The kernel applies
/// a run of pointwise steps to each pixel in one pass instead, with the same result: every
/// step leaves whole values, which the uint8 view holds exactly between passes here.
pub fn apply(
    steps: &[ColorStep],
    weights: &[f32],
    rgb: &mut [u8],
    size: (u32, u32),
    scratch: &mut Vec<f32>,
) {
    for s in steps {
        match s.kind {
            step::BLUR => blur(rgb, size, s, weights, scratch),
            step::CONTRAST => pointwise(s, rgb, grey_mean(rgb)),
            _ => pointwise(s, rgb, 0.0),
        }
    }
}

/// The erasing noise (`value="random"`) of channel `c` at (x, y) of a view of `(height,
/// width)`, x and y in the erased box's frame: element `(c * height + y) * width + x` of the
/// view's noise.
pub fn erase_noise_at(key: u64, c: usize, (x, y): (u32, u32), (h, w): (u32, u32)) -> f32 {
    erase_noise(key, (c as u64 * h as u64 + y as u64) * w as u64 + x as u64)
}

/// Element `i` of a view's erasing noise: standard normal, by Box-Muller on two 53-bit
/// uniforms from SplitMix64 over the view's key at counters 2i + 1 and 2i + 2, in double
/// (`erase_noise` in the kernel computes the same).
fn erase_noise(key: u64, i: u64) -> f32 {
    let at = |k: u64| mix64(key.wrapping_add(k.wrapping_mul(GOLDEN))) >> 11;
    let unit = 1.0 / (1u64 << 53) as f64;
    let u1 = (at(2 * i + 1) + 1) as f64 * unit; // (0, 1]: the logarithm stays finite
    let u2 = at(2 * i + 2) as f64 * unit;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Whether output pixel (x, y) of a view `width` wide lies in the erased box, mirrored when
/// the view is flipped after the erasing.
pub fn erased(b: &CropBox, x: u32, y: u32, width: u32, mirrored: bool) -> bool {
    let left = if mirrored {
        width - b.left - b.width
    } else {
        b.left
    };
    y >= b.top && y < b.top + b.height && x >= left && x < left + b.width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hue_shift_of_zero_keeps_pixels_and_half_turn_swaps_hues() {
        for p in [
            [0., 0., 0.],
            [255., 255., 255.],
            [200., 40., 90.],
            [3., 250., 128.],
        ] {
            let q = hue(p, 0.0);
            for c in 0..3 {
                assert!((q[c] - p[c]).abs() <= 1.0, "{p:?} -> {q:?}");
            }
        }
        // Pure red turned half way round the hue circle is cyan.
        assert_eq!(hue([255., 0., 0.], 0.5), [0., 255., 255.]);
        assert_eq!(hue([255., 0., 0.], -1.0 / 3.0), [0., 0., 255.]);
    }

    /// `op` on one pixel of whole values, through its step.
    fn on(op: ColorOp, p: Rgb, mean: f32) -> Rgb {
        let mut px = p.map(|v| v as u8);
        assert_eq!(px.map(|v| v as f32), p, "whole values in 0..=255");
        pointwise(&steps(&[op], &mut Vec::new())[0], &mut px, mean);
        px.map(|v| v as f32)
    }

    /// `ops` on a view, through their steps.
    fn run(ops: &[ColorOp], rgb: &mut [u8], size: (u32, u32)) {
        let mut weights = Vec::new();
        let steps = steps(ops, &mut weights);
        apply(&steps, &weights, rgb, size, &mut Vec::new());
    }

    #[test]
    fn pointwise_operations_follow_torchvision_on_simple_values() {
        use ColorOp::*;
        assert_eq!(on(Brightness(1.5), [100., 200., 3.], 0.), [150., 255., 4.]);
        assert_eq!(on(Grayscale, [255., 0., 0.], 0.), [76.; 3]);
        assert_eq!(on(Solarize(128.0), [10., 128., 200.], 0.), [10., 127., 55.]);
        // A threshold between two values inverts from the next one up, as `u >= t` does.
        assert_eq!(on(Solarize(127.5), [127., 128., 0.], 0.), [127., 127., 0.]);
        // Saturation 0 is the floored grey value; 1 keeps the pixel.
        assert_eq!(on(Saturation(0.0), [255., 0., 0.], 0.), [76.; 3]);
        assert_eq!(on(Saturation(1.0), [17., 99., 201.], 0.), [17., 99., 201.]);
        assert_eq!(
            on(Contrast(0.5), [200., 100., 0.], 100.0),
            [150., 100., 50.]
        );
    }

    #[test]
    fn blur_keeps_constants_and_weights_sum_to_one() {
        let w = gaussian_weights(23, 1.3);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(w[0], w[22]);
        let mut rgb = vec![77u8; 3 * 20 * 30];
        let blur = ColorOp::Blur {
            kernel: (9, 5),
            sigma: 2.0,
        };
        run(&[blur], &mut rgb, (20, 30));
        assert!(rgb.iter().all(|&v| v == 77));
    }

    /// The blur as the kernel computes it, a value at a time.
    fn blur_value_by_value(rgb: &[u8], (h, w): (usize, usize), kx: &[f32], ky: &[f32]) -> Vec<u8> {
        let (rx, ry) = ((kx.len() / 2) as i64, (ky.len() / 2) as i64);
        let mut rows = vec![0f32; rgb.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0f32;
                    for (k, &wt) in kx.iter().enumerate() {
                        let sx = reflect(x as i64 + k as i64 - rx, w as i64);
                        acc += wt * rgb[(y * w + sx) * 3 + c] as f32;
                    }
                    rows[(y * w + x) * 3 + c] = acc;
                }
            }
        }
        let mut out = vec![0u8; rgb.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0f32;
                    for (k, &wt) in ky.iter().enumerate() {
                        let sy = reflect(y as i64 + k as i64 - ry, h as i64);
                        acc += wt * rows[(sy * w + x) * 3 + c];
                    }
                    out[(y * w + x) * 3 + c] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }

    /// The row-at-a-time blur sums exactly as the value-at-a-time one (the kernel's order),
    /// also on views narrower than two kernels.
    #[test]
    fn erase_noise_is_standard_normal_and_keyed() {
        let n = 100_000u64;
        let z: Vec<f64> = (0..n).map(|i| erase_noise(42, i) as f64).collect();
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        // Within one standard deviation: 68.3%.
        let inside = z.iter().filter(|x| x.abs() < 1.0).count() as f64 / n as f64;
        assert!((inside - 0.6827).abs() < 0.005, "{inside}");
        assert_ne!(erase_noise(42, 7), erase_noise(43, 7));
        assert_eq!(erase_noise(42, 7), erase_noise(42, 7));
    }

    #[test]
    fn rounding_of_blurred_values_is_half_to_even() {
        for i in 0..=256 * 64 {
            let x = i as f32 / 64.0;
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
        }
        assert_eq!(round_half_even(254.99998), 255.0);
    }

    #[test]
    fn blur_runs_in_the_kernels_order() {
        for (h, w, taps) in [
            (37, 53, (23, 9)),
            (12, 9, (7, 23)),
            (5, 5, (3, 3)),
            (30, 24, (23, 23)),
        ] {
            let rgb: Vec<u8> = (0..h * w * 3).map(|i| (i * 131 % 253) as u8).collect();
            for sigma in [0.1, 0.9, 2.0] {
                let mut blurred = rgb.clone();
                let op = ColorOp::Blur {
                    kernel: taps,
                    sigma,
                };
                run(&[op], &mut blurred, (h as u32, w as u32));
                let kx = gaussian_weights(taps.0, sigma);
                let ky = gaussian_weights(taps.1, sigma);
                assert_eq!(blurred, blur_value_by_value(&rgb, (h, w), &kx, &ky));
            }
        }
    }

    #[test]
    fn contrast_sees_the_pixels_left_by_the_operations_before_it() {
        let mut a: Vec<u8> = (0..300).map(|i| (i * 7 % 256) as u8).collect();
        let mut b = a.clone();
        let ops = [ColorOp::Brightness(0.5), ColorOp::Contrast(1.7)];
        run(&ops, &mut a, (10, 10));
        run(&ops[..1], &mut b, (10, 10));
        run(&ops[1..], &mut b, (10, 10));
        assert_eq!(a, b);
    }
}
