//! The CPU twin of the CUDA kernels' resampling: [`resample_view`] is the per-pixel math of
//! `kernels/resample.cu` written again in Rust, with the same f32 operations in the same
//! order (nvcc runs with `--fmad=false`), so CPU tests pin the kernels' math against the CPU
//! pipeline and torchvision, and a GPU run only has to agree with this twin on identical
//! decoded input (or decode-free planes, converted as each tap reads them). `program.rs` adds the photometric steps and erasing of `program_*`.

use super::geometry::Region;
use super::spec::{Filter, MemoryFormat};
use crate::decode::yuv420::Yuv420;

/// An image as the kernels read it: packed RGB rows `pitch` bytes apart, or a decode-free
/// image's YUV 4:2:0 planes (as [`crate::decode::yuv420`] lays them out), each pixel converted
/// to RGB by [`Yuv420::rgb_at`]'s arithmetic as the filter reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceImage {
    /// Device address of its first byte (unused by the CPU twin).
    pub addr: u64,
    /// Bytes between RGB rows (planes have their own layout).
    pub pitch: u32,
    pub width: u32,
    pub height: u32,
    pub yuv420: bool,
}

impl SourceImage {
    /// Packed RGB rows of `width` pixels, one after another.
    pub fn rgb(addr: u64, width: u32, height: u32) -> SourceImage {
        SourceImage {
            addr,
            pitch: 3 * width,
            width,
            height,
            yuv420: false,
        }
    }

    pub fn planes(addr: u64, width: u32, height: u32) -> SourceImage {
        SourceImage {
            addr,
            pitch: 0,
            width,
            height,
            yuv420: true,
        }
    }
}

/// One view of a batch as the kernel sees it. Mirrors `struct ViewParams` in
/// `kernels/resample.cu` field for field (96 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ViewParams {
    /// Device address of the image (unused by the CPU twin).
    pub src: u64,
    pub src_pitch: u32,
    /// The window the filter reads: its size, and its first pixel in the image.
    pub src_width: u32,
    pub src_height: u32,
    pub box_x: f32,
    pub box_y: f32,
    pub box_w: f32,
    pub box_h: f32,
    pub paste_x: u32,
    pub paste_y: u32,
    pub paste_w: u32,
    pub paste_h: u32,
    pub flip: u32,
    /// 1: bicubic (PIL's and torchvision's cubic); 0: bilinear.
    pub bicubic: u32,
    /// 1: the filter widens when it downscales (and the cubic has a = -0.5); 0: plain
    /// interpolation (a = -0.75), torch's `antialias=False`.
    pub antialias: u32,
    /// 1: the image is YUV 4:2:0 planes ([`SourceImage::yuv420`]).
    pub yuv420: u32,
    pub window_x: u32,
    pub window_y: u32,
    pub image_width: u32,
    pub image_height: u32,
    pub unused: u32,
    /// Element offset of the view in the output tensor.
    pub dst_offset: u64,
}

const _: () = assert!(std::mem::size_of::<ViewParams>() == 96);

impl ViewParams {
    /// The kernel's view of `region` of `image`, resized with `filter`, antialiased or not.
    pub fn new(
        region: &Region,
        image: &SourceImage,
        (flip, filter, antialias): (bool, Filter, bool),
        dst_offset: u64,
    ) -> ViewParams {
        ViewParams {
            src: image.addr,
            src_pitch: image.pitch,
            src_width: region.window[2],
            src_height: region.window[3],
            box_x: region.bbox[0] as f32,
            box_y: region.bbox[1] as f32,
            box_w: region.bbox[2] as f32,
            box_h: region.bbox[3] as f32,
            paste_x: region.paste[0],
            paste_y: region.paste[1],
            paste_w: region.paste[2],
            paste_h: region.paste[3],
            flip: flip as u32,
            bicubic: (filter == Filter::Bicubic) as u32,
            antialias: antialias as u32,
            yuv420: image.yuv420 as u32,
            window_x: region.window[0],
            window_y: region.window[1],
            image_width: image.width,
            image_height: image.height,
            unused: 0,
            dst_offset,
        }
    }
}

/// Conversion of resampled uint8 values to the output: `Convert` in the kernel.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convert {
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Convert {
    pub fn new(normalize: Option<([f32; 3], [f32; 3])>) -> Convert {
        let (mean, std) = normalize.unwrap_or(([0.0; 3], [1.0; 3]));
        Convert {
            // torchvision's ToDtype(scale=True) multiplies by float32(1/255).
            scale: (1.0f64 / 255.0) as f32,
            mean,
            std,
        }
    }

    fn normalized(&self, u: f32, c: usize) -> f32 {
        (u * self.scale - self.mean[c]) / self.std[c]
    }
}

/// An element type of the kernel's output.
pub trait OutputElement: Copy + Default {
    /// A 0..255 pixel value, converted (`cast_out` in the kernel).
    fn from_pixel(k: &Convert, u: f32, c: usize) -> Self;
    /// A value already in output units (`erase_out`).
    fn from_value(x: f32) -> Self;
}

impl OutputElement for u8 {
    fn from_pixel(_: &Convert, u: f32, _: usize) -> u8 {
        u as u8
    }
    fn from_value(x: f32) -> u8 {
        x.clamp(0.0, 255.0) as u8
    }
}

impl OutputElement for f32 {
    fn from_pixel(k: &Convert, u: f32, c: usize) -> f32 {
        k.normalized(u, c)
    }
    fn from_value(x: f32) -> f32 {
        x
    }
}

impl OutputElement for half::f16 {
    fn from_pixel(k: &Convert, u: f32, c: usize) -> half::f16 {
        half::f16::from_f32(k.normalized(u, c))
    }
    fn from_value(x: f32) -> half::f16 {
        half::f16::from_f32(x)
    }
}

impl OutputElement for half::bf16 {
    fn from_pixel(k: &Convert, u: f32, c: usize) -> half::bf16 {
        half::bf16::from_f32(k.normalized(u, c))
    }
    fn from_value(x: f32) -> half::bf16 {
        half::bf16::from_f32(x)
    }
}

/// PIL's filters (and torch's): the triangle of bilinear (support 1) and the cubic of
/// bicubic (support 2) with parameter `a`.
pub fn filter(x: f32, bicubic: bool, a: f32) -> f32 {
    let x = x.abs();
    if !bicubic {
        return if x < 1.0 { 1.0 - x } else { 0.0 };
    }
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// The taps of one output position along one axis (`Taps` in the kernel).
struct Taps {
    first: i32,
    count: i32,
    center: f32,
    ss: f32,
    total: f32,
    bicubic: bool,
    a: f32,
}

impl Taps {
    /// With `antialias`, PIL's and torchvision's antialiased filters (support widened by the
    /// downscale factor, cubic a = -0.5); without, torch's `interpolate` on uint8 (support
    /// fixed, a = -0.75). Both weigh the taps inside the image and renormalize, as PIL does.
    fn new(
        (box_start, box_len): (f32, f32),
        (out_len, in_len): (u32, u32),
        i: u32,
        (bicubic, antialias): (bool, bool),
    ) -> Taps {
        let scale = box_len / out_len as f32;
        let filterscale = if antialias && scale > 1.0 { scale } else { 1.0 };
        let support = if bicubic { 2.0 } else { 1.0 } * filterscale;
        let center = box_start + (i as f32 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let lo = (center - support + 0.5).floor() as i32;
        let hi = (center + support + 0.5).floor() as i32;
        let first = lo.max(0);
        let end = hi.min(in_len as i32);
        let mut t = Taps {
            first,
            count: (end - first).max(0),
            center,
            ss,
            total: 0.0,
            bicubic,
            a: if antialias { -0.5 } else { -0.75 },
        };
        for j in 0..t.count {
            t.total += t.tap(j);
        }
        t
    }

    fn tap(&self, j: i32) -> f32 {
        filter(
            (((self.first + j) as f32 - self.center) + 0.5) * self.ss,
            self.bicubic,
            self.a,
        )
    }

    fn weight(&self, j: i32) -> f32 {
        if self.total != 0.0 {
            self.tap(j) / self.total
        } else {
            0.0
        }
    }
}

/// A view's image as the twin reads it.
enum Pixels<'a> {
    Rgb(&'a [u8]),
    Planes(Yuv420<'a>),
}

/// `resample_pixel` of the kernel: pixel (x, y) of the paste rectangle, rounded to uint8.
fn resample_pixel(v: &ViewParams, src: &Pixels, x: u32, y: u32) -> [f32; 3] {
    let kind = (v.bicubic != 0, v.antialias != 0);
    let bicubic = kind.0;
    let tx = Taps::new((v.box_x, v.box_w), (v.paste_w, v.src_width), x, kind);
    let ty = Taps::new((v.box_y, v.box_h), (v.paste_h, v.src_height), y, kind);
    let mut acc = [0f32; 3];
    for ky in 0..ty.count {
        let sy = v.window_y + (ty.first + ky) as u32;
        let sx = v.window_x + tx.first as u32;
        let mut sum = [0f32; 3];
        match src {
            Pixels::Rgb(rgb) => {
                let at = sy as usize * v.src_pitch as usize + sx as usize * 3;
                let row = &rgb[at..at + 3 * tx.count as usize];
                for kx in 0..tx.count {
                    let wx = tx.weight(kx);
                    for c in 0..3 {
                        sum[c] += wx * row[3 * kx as usize + c] as f32;
                    }
                }
            }
            Pixels::Planes(planes) => {
                for kx in 0..tx.count {
                    let wx = tx.weight(kx);
                    let px = planes.rgb_at(sx + kx as u32, sy);
                    for c in 0..3 {
                        sum[c] += wx * px[c] as f32;
                    }
                }
            }
        }
        if bicubic {
            // As PIL and torchvision's uint8 path: the horizontal pass rounded and clamped to
            // 8 bits before the vertical one (the cubic overshoots at edges).
            sum = sum.map(|v| (v + 0.5).floor().clamp(0.0, 255.0));
        }
        let wy = ty.weight(ky);
        for c in 0..3 {
            acc[c] += wy * sum[c];
        }
    }
    acc.map(|a| (a + 0.5).floor().clamp(0.0, 255.0))
}

/// Render one view exactly as the kernel does. `src` is the whole image (as `v.yuv420` says);
/// `out` is the view's elements (`3 · out_h · out_w`).
pub fn resample_view<T: OutputElement>(
    v: &ViewParams,
    src: &[u8],
    (out_h, out_w): (u32, u32),
    format: MemoryFormat,
    k: &Convert,
    out: &mut [T],
) {
    let plane = out_h as usize * out_w as usize;
    assert_eq!(out.len(), 3 * plane, "output view size");
    let src = match v.yuv420 {
        0 => Pixels::Rgb(src),
        _ => Pixels::Planes(
            Yuv420::new(v.image_width, v.image_height, src).expect("planes of the image's size"),
        ),
    };
    for y in 0..out_h {
        for x in 0..out_w {
            let inside = x >= v.paste_x
                && x < v.paste_x + v.paste_w
                && y >= v.paste_y
                && y < v.paste_y + v.paste_h;
            let rgb = if inside {
                resample_pixel(v, &src, x - v.paste_x, y - v.paste_y)
            } else {
                [0.0; 3]
            };
            let xo = if v.flip != 0 { out_w - 1 - x } else { x } as usize;
            let y = y as usize;
            for (c, &u) in rgb.iter().enumerate() {
                let at = match format {
                    MemoryFormat::ChannelsLast => (y * out_w as usize + xo) * 3 + c,
                    MemoryFormat::Contiguous => c * plane + y * out_w as usize + xo,
                };
                out[at] = T::from_pixel(k, u, c);
            }
        }
    }
}
