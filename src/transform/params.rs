//! Random and fixed geometry of each view: torchvision's algorithms, driven by keyed streams.
//!
//! Every draw comes from a [`Stream`] keyed by (seed, epoch, sample, view), so the same view of
//! the same sample gets the same crop whatever the batch, thread count, rank or device.

use super::spec::{Erasing, Photometric};
use crate::rng::{Stream, key};

/// Domain tags of the per-view streams. A photometric stage's stream is also keyed by its
/// occurrence among the pipeline's stages of its kind (bits 32 and up), so that its draws do
/// not depend on the other stages around it.
const CROP: u64 = 0x0c20;
const FLIP: u64 = 0xf119;
const APPLY: u64 = 0xa991;
const JITTER: u64 = 0x717e;
const GRAYSCALE: u64 = 0x64a7;
const BLUR: u64 = 0xb10e;
const SOLARIZE: u64 = 0x5014;
const ERASE: u64 = 0xe4a5;
const ERASE_NOISE: u64 = 0xe4a6;

/// Which random draws: the loader's seed and epoch and the sample's index.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    pub seed: u64,
    pub epoch: u64,
    pub sample: u64,
}

impl Draw {
    pub fn view(self, view: u64) -> ViewKey {
        ViewKey {
            seed: self.seed,
            epoch: self.epoch,
            sample: self.sample,
            view,
        }
    }
}

/// Whose random choices: a view of a sample in an epoch of a loader with a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewKey {
    pub seed: u64,
    pub epoch: u64,
    pub sample: u64,
    pub view: u64,
}

/// The stream of one view's random choices for one purpose.
fn stream(purpose: u64, v: ViewKey) -> Stream {
    Stream::new(key(&[purpose, v.seed, v.epoch, v.sample, v.view]))
}

/// A uniform float in `[lo, hi)` with 53 random bits.
fn uniform(s: &mut Stream, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * ((s.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64))
}

/// Python's `round()`: halves go to the even neighbour.
fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// A crop box in full-resolution pixels: rows `top..top + height`, columns `left..left + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
}

/// `torchvision.transforms.v2.RandomResizedCrop.get_params`: ten tries at a box with area in
/// `scale` × image area and aspect ratio log-uniform in `ratio`, placed uniformly; else the
/// central crop closest to `ratio`.
pub fn random_resized_crop(
    s: &mut Stream,
    height: u32,
    width: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropBox {
    let area = height as f64 * width as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(s, scale.0, scale.1);
        let aspect = uniform(s, log_lo, log_hi).exp();
        let w = round_half_even((target_area * aspect).sqrt());
        let h = round_half_even((target_area / aspect).sqrt());
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let (w, h) = (w as u32, h as u32);
            let top = s.below((height - h + 1) as u64) as u32;
            let left = s.below((width - w + 1) as u64) as u32;
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (lo, hi) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (w, h) = if in_ratio < lo {
        (
            width,
            round_half_even(width as f64 / lo).clamp(1, height as i64) as u32,
        )
    } else if in_ratio > hi {
        (
            round_half_even(height as f64 * hi).clamp(1, width as i64) as u32,
            height,
        )
    } else {
        (width, height)
    };
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// The crop of one view of an image of `height` × `width`.
pub fn random_resized_crop_for(
    view: ViewKey,
    height: u32,
    width: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropBox {
    random_resized_crop(&mut stream(CROP, view), height, width, scale, ratio)
}

/// Whether one view is flipped, with probability `p`.
pub fn flip_for(view: ViewKey, p: f64) -> bool {
    p > 0.0 && uniform(&mut stream(FLIP, view), 0.0, 1.0) < p
}

/// One photometric operation of a view with its drawn parameter, in the order it is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorOp {
    Brightness(f64),
    Contrast(f64),
    Saturation(f64),
    Hue(f64),
    Grayscale,
    /// Kernel size (x, y) and the drawn sigma (the same on both axes, as torchvision draws it).
    Blur {
        kernel: (u32, u32),
        sigma: f64,
    },
    Solarize(f64),
}

/// How many stages of each kind came before, for the occurrence part of their stream keys.
#[derive(Default)]
struct Occurrences([u64; 5]);

impl Occurrences {
    fn stream(&mut self, tag: u64, slot: usize, v: ViewKey) -> Stream {
        let n = self.0[slot];
        self.0[slot] += 1;
        stream(tag | (n << 32), v)
    }
}

/// The photometric operations one view undergoes, drawn as torchvision's v2 transforms draw
/// them: `RandomApply`, `RandomGrayscale` and `RandomSolarize` apply when a uniform draw is
/// below `p`; `ColorJitter` draws a random order of its four operations, then each factor
/// uniformly in its range; `GaussianBlur` draws sigma uniformly.
pub fn photometric_for(stages: &[Photometric], view: ViewKey) -> Vec<ColorOp> {
    let mut ops = Vec::new();
    draw_stages(stages, view, &mut Occurrences::default(), true, &mut ops);
    ops
}

fn draw_stages(
    stages: &[Photometric],
    v: ViewKey,
    seen: &mut Occurrences,
    applied: bool,
    ops: &mut Vec<ColorOp>,
) {
    // A stage that is not applied still takes its occurrence, so those after it keep theirs.
    for stage in stages {
        match stage {
            Photometric::Apply { p, stages } => {
                let on = applied && chance(&mut seen.stream(APPLY, 0, v), *p);
                draw_stages(stages, v, seen, on, ops);
            }
            Photometric::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
            } => {
                let mut s = seen.stream(JITTER, 1, v);
                let mut order = [0usize, 1, 2, 3];
                s.shuffle(&mut order);
                let mut draw = |r: &Option<(f64, f64)>| r.map(|(lo, hi)| uniform(&mut s, lo, hi));
                let factors = [
                    draw(brightness).map(ColorOp::Brightness),
                    draw(contrast).map(ColorOp::Contrast),
                    draw(saturation).map(ColorOp::Saturation),
                    draw(hue).map(ColorOp::Hue),
                ];
                if applied {
                    ops.extend(order.iter().filter_map(|&i| factors[i]));
                }
            }
            Photometric::Grayscale { p } => {
                if chance(&mut seen.stream(GRAYSCALE, 2, v), *p) && applied {
                    ops.push(ColorOp::Grayscale);
                }
            }
            Photometric::GaussianBlur { kernel, sigma } => {
                let sigma = uniform(&mut seen.stream(BLUR, 3, v), sigma.0, sigma.1);
                if applied {
                    ops.push(ColorOp::Blur {
                        kernel: *kernel,
                        sigma,
                    });
                }
            }
            Photometric::Solarize { threshold, p } => {
                if chance(&mut seen.stream(SOLARIZE, 4, v), *p) && applied {
                    ops.push(ColorOp::Solarize(*threshold));
                }
            }
        }
    }
}

/// torchvision's `torch.rand(1) < p`.
fn chance(s: &mut Stream, p: f64) -> bool {
    p > 0.0 && uniform(s, 0.0, 1.0) < p
}

/// `RandomErasing.make_params`: after the `p` draw, ten tries at a box with area in
/// `scale` × the view's and aspect ratio (height / width) log-uniform in `ratio`, strictly
/// smaller than the view, placed uniformly; `None` when not applied or no try fits. In view
/// pixels of (height, width); the box is (top, left, height, width).
pub fn erasing_for(view: ViewKey, e: &Erasing, (height, width): (u32, u32)) -> Option<CropBox> {
    let mut s = stream(ERASE, view);
    if !chance(&mut s, e.p) {
        return None;
    }
    let area = height as f64 * width as f64;
    let (log_lo, log_hi) = (e.ratio.0.ln(), e.ratio.1.ln());
    for _ in 0..10 {
        let erase_area = area * uniform(&mut s, e.scale.0, e.scale.1);
        let aspect = uniform(&mut s, log_lo, log_hi).exp();
        let h = round_half_even((erase_area * aspect).sqrt());
        let w = round_half_even((erase_area / aspect).sqrt());
        if !(h < height as i64 && w < width as i64) {
            continue;
        }
        let (h, w) = (h as u32, w as u32);
        let top = s.below((height - h + 1) as u64) as u32;
        let left = s.below((width - w + 1) as u64) as u32;
        return Some(CropBox {
            top,
            left,
            height: h,
            width: w,
        });
    }
    None
}

/// The key of a view's erasing noise (`value="random"`), for [`photometric::erase_noise`].
///
/// [`photometric::erase_noise`]: super::photometric::erase_noise
pub fn erase_noise_key(v: ViewKey) -> u64 {
    key(&[ERASE_NOISE, v.seed, v.epoch, v.sample, v.view])
}

/// torchvision `Resize(size)` with an int size: the shorter side becomes `size`, the longer
/// keeps the aspect ratio (truncated). Returns (height, width).
pub fn resized_shorter_side(height: u32, width: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (size as u64 * long as u64 / short as u64) as u32;
    if width <= height {
        (new_long, size)
    } else {
        (size, new_long)
    }
}

/// One axis of torchvision's `center_crop`: crop `crop` pixels out of `image` pixels, padding
/// with zeros when the image is smaller. Returns (first image pixel, pixels taken, where they
/// go in the output).
pub fn center_crop_axis(image: u32, crop: u32) -> (u32, u32, u32) {
    if crop > image {
        (0, image, (crop - image) / 2)
    } else {
        let start = round_half_even((image - crop) as f64 / 2.0) as u32;
        (start, crop, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u64, epoch: u64, sample: u64, view: u64) -> ViewKey {
        ViewKey {
            seed,
            epoch,
            sample,
            view,
        }
    }

    #[test]
    fn crops_lie_inside_and_follow_scale() {
        let mut areas = Vec::new();
        for sample in 0..2000 {
            let c = random_resized_crop_for(
                key(1, 0, sample, 0),
                375,
                500,
                (0.08, 1.0),
                (0.75, 4.0 / 3.0),
            );
            assert!(c.top + c.height <= 375 && c.left + c.width <= 500, "{c:?}");
            areas.push((c.height * c.width) as f64 / (375.0 * 500.0));
        }
        let mean = areas.iter().sum::<f64>() / areas.len() as f64;
        // torchvision's own sampler gives a mean area fraction of 0.435 on 500x375 (20,000
        // draws): large boxes with extreme ratios do not fit and are drawn again.
        assert!((0.41..0.46).contains(&mean), "{mean}");
    }

    #[test]
    fn fallback_is_the_central_crop() {
        // A 1x100 strip can never hold a crop with ratio in [3/4, 4/3] of area >= 8%.
        let mut s = Stream::new(7);
        let c = random_resized_crop(&mut s, 100, 1, (0.5, 1.0), (0.75, 4.0 / 3.0));
        assert_eq!((c.width, c.height, c.left), (1, 1, 0));
        assert_eq!(c.top, 49);
        let c = random_resized_crop(&mut s, 10, 1000, (0.9, 1.0), (0.75, 4.0 / 3.0));
        assert_eq!((c.height, c.width, c.top, c.left), (10, 13, 0, 493));
    }

    #[test]
    fn views_and_epochs_differ_samples_repeat() {
        let crop = |v| random_resized_crop_for(v, 300, 400, (0.08, 1.0), (0.75, 1.33));
        assert_eq!(crop(key(3, 1, 42, 0)), crop(key(3, 1, 42, 0)));
        assert_ne!(crop(key(3, 1, 42, 0)), crop(key(3, 1, 42, 1)));
        assert_ne!(crop(key(3, 1, 42, 0)), crop(key(3, 2, 42, 0)));
        let flips = (0..1000)
            .filter(|&s| flip_for(key(0, 0, s, 0), 0.5))
            .count();
        assert!((430..570).contains(&flips), "{flips}");
        assert!(!(0..100).any(|s| flip_for(key(0, 0, s, 0), 0.0)));
    }

    #[test]
    fn resize_and_center_crop_like_torchvision() {
        assert_eq!(resized_shorter_side(375, 500, 256), (256, 341));
        assert_eq!(resized_shorter_side(500, 333, 256), (384, 256));
        assert_eq!(center_crop_axis(341, 224), (58, 224, 0));
        assert_eq!(center_crop_axis(256, 224), (16, 224, 0));
        // round((225 - 224) / 2) = round(0.5) = 0 in Python.
        assert_eq!(center_crop_axis(225, 224), (0, 224, 0));
        assert_eq!(center_crop_axis(200, 224), (0, 200, 12));
    }
}
