//! The CPU twin of the CUDA kernels' resampling: [`resample_view`] is the per-pixel math of
//! `kernels/resample.cu` written again in Rust, with the same f32 operations in the same
//! order (nvcc runs with `--fmad=false`), so CPU tests pin the kernels' math against the CPU
//! pipeline and torchvision, and a GPU run only has to agree with this twin on identical
//! decoded input. `program.rs` adds the photometric steps and erasing of `program_*`.

use super::geometry::Region;
use super::spec::{Filter, MemoryFormat};

/// One view of a batch as the kernel sees it. Mirrors `struct ViewParams` in
/// `kernels/resample.cu` field for field (72 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ViewParams {
    /// Device address of the window's first pixel (unused by the CPU twin).
    pub src: u64,
    pub src_pitch: u32,
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
    /// 1: bicubic (PIL's and torchvision's antialiased cubic, a = -0.5); 0: bilinear.
    pub bicubic: u32,
    pub unused: u32,
    /// Element offset of the view in the output tensor.
    pub dst_offset: u64,
}

const _: () = assert!(std::mem::size_of::<ViewParams>() == 72);

impl ViewParams {
    /// The kernel's view of `region`, reading from `src` (already at the window's first pixel)
    /// with rows `pitch` bytes apart, resized with `filter`.
    pub fn new(
        region: &Region,
        src: u64,
        pitch: u32,
        (flip, filter): (bool, Filter),
        dst_offset: u64,
    ) -> ViewParams {
        ViewParams {
            src,
            src_pitch: pitch,
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

/// PIL's filters (and torchvision's antialiased ones): the triangle of bilinear (support 1)
/// and the cubic of bicubic with a = -0.5 (support 2).
fn filter(x: f32, bicubic: bool) -> f32 {
    let x = x.abs();
    if !bicubic {
        return if x < 1.0 { 1.0 - x } else { 0.0 };
    }
    const A: f32 = -0.5;
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
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
}

impl Taps {
    fn new(box_start: f32, box_len: f32, out_len: u32, in_len: u32, i: u32, bicubic: bool) -> Taps {
        let scale = box_len / out_len as f32;
        let filterscale = if scale > 1.0 { scale } else { 1.0 };
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

/// `resample_pixel` of the kernel: pixel (x, y) of the paste rectangle, rounded to uint8.
fn resample_pixel(v: &ViewParams, src: &[u8], x: u32, y: u32) -> [f32; 3] {
    let bicubic = v.bicubic != 0;
    let tx = Taps::new(v.box_x, v.box_w, v.paste_w, v.src_width, x, bicubic);
    let ty = Taps::new(v.box_y, v.box_h, v.paste_h, v.src_height, y, bicubic);
    let mut acc = [0f32; 3];
    for ky in 0..ty.count {
        let at = (ty.first + ky) as usize * v.src_pitch as usize + tx.first as usize * 3;
        let row = &src[at..at + 3 * tx.count as usize];
        let mut sum = [0f32; 3];
        for kx in 0..tx.count {
            let wx = tx.weight(kx);
            for c in 0..3 {
                sum[c] += wx * row[3 * kx as usize + c] as f32;
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

/// Render one view exactly as the kernel does. `src` starts at the window's first pixel;
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
    for y in 0..out_h {
        for x in 0..out_w {
            let inside = x >= v.paste_x
                && x < v.paste_x + v.paste_w
                && y >= v.paste_y
                && y < v.paste_y + v.paste_h;
            let rgb = if inside {
                resample_pixel(v, src, x - v.paste_x, y - v.paste_y)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::cpu::CpuDecoder;
    use crate::decode::{DecodePlan, Image, ImagePolicy};
    use crate::demo::scene;
    use crate::dtype::DType;
    use crate::transform::cpu::{Job, Lut, Workspace, process_image};
    use crate::transform::geometry::view_geometry;
    use crate::transform::geometry::{Target, source_region};
    use crate::transform::params::{Draw, flip_for};
    use crate::transform::program::{EraseValue, ViewProgram, program_view, reference_view};
    use crate::transform::spec::Erasing;
    use crate::transform::spec::{Geometry, Photometric, PipelineSpec};

    fn spec(geometry: Geometry, dtype: DType, format: MemoryFormat) -> PipelineSpec {
        PipelineSpec {
            name: "image".into(),
            field: "image".into(),
            views: 1,
            geometry,
            flip: 0.5,
            photometric: Vec::new(),
            erasing: None,
            filter: Filter::Bilinear,
            normalize: (dtype != DType::Uint8)
                .then_some(([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])),
            dtype,
            memory_format: format,
            reduced_decode: false,
        }
    }

    const RRC: Geometry = Geometry::RandomResizedCrop {
        height: 224,
        width: 224,
        scale: (0.08, 1.0),
        ratio: (0.75, 4.0 / 3.0),
    };

    /// The CPU pipeline's view and the twin's, both as uint8-scale values.
    fn both(jpeg: &[u8], spec: &PipelineSpec, sample: u64) -> (Vec<u8>, Vec<u8>) {
        let mut ws = Workspace::default();
        let draw = Draw {
            seed: 5,
            epoch: 1,
            sample,
        };
        let mut pipeline = vec![0u8; spec.view_bytes()];
        let lut = Lut::new(spec);
        let mut jobs = [Job {
            spec,
            lut: &lut,
            first_view: 0,
            out: &mut pipeline,
        }];
        process_image(
            &mut ws,
            Image::Encoded(jpeg),
            draw,
            ImagePolicy::DEFAULT,
            &mut jobs,
        )
        .unwrap();
        let mut rgb = Vec::new();
        let decoded = CpuDecoder::new()
            .decode(jpeg, DecodePlan::FULL, &mut rgb)
            .unwrap();
        let (h, w) = (decoded.height, decoded.width);
        let geometry = view_geometry(&spec.geometry, draw, 0, h, w);
        let target = Target {
            size: spec.geometry.output_size(),
            flip: flip_for(draw.view(0), spec.flip),
            full: (h, w),
        };
        let twin = reference_view::<u8>(&rgb, &decoded, geometry, &target, spec, draw.view(0));
        (pipeline, twin)
    }

    fn differences(a: &[u8], b: &[u8]) -> (f64, u8) {
        let d: Vec<u8> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).collect();
        let mean = d.iter().map(|&x| x as f64).sum::<f64>() / d.len() as f64;
        (mean, d.into_iter().max().unwrap())
    }

    /// The twin (f32 weights, no intermediate rounding) and the CPU pipeline
    /// (`fast_image_resize`, fixed-point weights, rounding between passes) compute the same
    /// antialiased filters; on photographs they differ by rounding only.
    #[test]
    fn twin_agrees_with_the_cpu_pipeline_on_photographs() {
        let center = Geometry::CenterCrop {
            height: 224,
            width: 224,
            resize: Some(256),
        };
        let padded = Geometry::CenterCrop {
            height: 448,
            width: 600,
            resize: None,
        };
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            let mut worst = (0.0f64, 0u8);
            for seed in 0..12u64 {
                let (jpeg, _) = scene::jpeg(seed);
                for geometry in [RRC, center, padded] {
                    for format in [MemoryFormat::Contiguous, MemoryFormat::ChannelsLast] {
                        let s = PipelineSpec {
                            filter,
                            ..spec(geometry, DType::Uint8, format)
                        };
                        let (pipeline, twin) = both(&jpeg, &s, seed * 7 + 1);
                        let (mean, max) = differences(&pipeline, &twin);
                        assert!(
                            mean <= 0.3 && max <= 2,
                            "seed {seed} {filter:?} {geometry:?}: {mean} {max}"
                        );
                        worst = (worst.0.max(mean), worst.1.max(max));
                    }
                }
            }
            eprintln!(
                "twin vs CPU pipeline, {filter:?}, worst: mean {:.3} max {}",
                worst.0, worst.1
            );
        }
    }

    /// With photometric steps and erasing, the twin of `program_*` and the CPU pipeline apply
    /// the same steps to pixels that differ by the resize's rounding, which the steps may
    /// carry on (a contrast or brightness above 1 widens it); the erased rectangle is exact.
    #[test]
    fn program_twin_agrees_with_the_cpu_pipeline_on_photographs() {
        let stages: Vec<Photometric> = serde_json::from_str(
            r#"[{"kind": "apply", "p": 0.8, "stages": [{"kind": "color_jitter",
                 "brightness": [0.6, 1.4], "contrast": [0.6, 1.4], "saturation": [0.6, 1.4],
                 "hue": [-0.1, 0.1]}]},
                {"kind": "grayscale", "p": 0.2},
                {"kind": "apply", "p": 0.5, "stages": [{"kind": "gaussian_blur",
                 "kernel": [23, 23], "sigma": [0.1, 2.0]}]},
                {"kind": "solarize", "threshold": 128.0, "p": 0.2}]"#,
        )
        .unwrap();
        let erasing = Erasing {
            p: 0.5,
            scale: (0.02, 0.33),
            ratio: (0.3, 3.3),
            value: [0.0, 10.0, 300.0],
            random: false,
            output_units: true,
            before_flip: true,
        };
        let (mut worst, mut far, mut total) = (0.0f64, 0usize, 0usize);
        for seed in 0..16u64 {
            let (jpeg, _) = scene::jpeg(seed);
            let mut s = spec(RRC, DType::Uint8, MemoryFormat::Contiguous);
            s.photometric = stages.clone();
            s.erasing = Some(erasing);
            let (pipeline, twin) = both(&jpeg, &s, seed * 3 + 2);
            let (mean, _) = differences(&pipeline, &twin);
            far += pipeline
                .iter()
                .zip(&twin)
                .filter(|(a, b)| a.abs_diff(**b) > 3)
                .count();
            total += twin.len();
            assert!(mean <= 0.5, "seed {seed}: mean {mean}");
            worst = worst.max(mean);
        }
        assert!(
            far * 1000 <= total,
            "{far} of {total} values more than 3 apart"
        );
        eprintln!("program twin vs CPU pipeline: worst mean {worst:.3}, {far} of {total} > 3");
    }

    /// Without steps or erasing, `program_*`'s twin renders exactly what `resample_*`'s does.
    #[test]
    fn an_empty_program_renders_as_the_plain_kernel() {
        let (jpeg, _) = scene::jpeg(3);
        let mut rgb = Vec::new();
        let decoded = CpuDecoder::new()
            .decode(&jpeg, DecodePlan::FULL, &mut rgb)
            .unwrap();
        let s = spec(RRC, DType::Float32, MemoryFormat::ChannelsLast);
        let k = Convert::new(s.normalize);
        for sample in 0..8 {
            let draw = Draw {
                seed: 1,
                epoch: 0,
                sample,
            };
            let geometry = view_geometry(&s.geometry, draw, 0, decoded.height, decoded.width);
            let target = Target {
                size: (224, 224),
                flip: sample % 2 == 1,
                full: (decoded.height, decoded.width),
            };
            let region = source_region(geometry, &target, &decoded);
            let v = ViewParams::new(&region, 0, decoded.width * 3, (target.flip, s.filter), 0);
            let start = (region.window[1] * decoded.width + region.window[0]) as usize * 3;
            let mut plain = vec![0f32; 3 * 224 * 224];
            let mut program = plain.clone();
            let format = s.memory_format;
            resample_view(&v, &rgb[start..], (224, 224), format, &k, &mut plain);
            let (prog, e) = (ViewProgram::default(), EraseValue::default());
            let src = &rgb[start..];
            program_view(
                &v,
                &prog,
                &[],
                &[],
                src,
                (224, 224),
                format,
                &k,
                &e,
                &mut program,
            );
            assert_eq!(plain, program);
        }
    }

    #[test]
    fn conversions_equal_the_cpu_tables() {
        for dtype in [DType::Float32, DType::Float16, DType::Bfloat16] {
            let s = spec(RRC, dtype, MemoryFormat::Contiguous);
            let k = Convert::new(s.normalize);
            match Lut::new(&s) {
                Lut::F32(t) => {
                    for c in 0..3 {
                        for u in 0..256 {
                            assert_eq!(
                                f32::from_pixel(&k, u as f32, c).to_bits(),
                                t[c][u].to_bits()
                            );
                        }
                    }
                }
                Lut::Half(t) => {
                    for c in 0..3 {
                        for u in 0..256 {
                            let bits = if dtype == DType::Float16 {
                                half::f16::from_pixel(&k, u as f32, c).to_bits()
                            } else {
                                half::bf16::from_pixel(&k, u as f32, c).to_bits()
                            };
                            assert_eq!(bits, t[c][u], "{dtype:?} c{c} u{u}");
                        }
                    }
                }
                Lut::U8 => unreachable!("float dtype"),
            }
        }
    }

    /// Identity geometry: a box the size of the output over a window of the same size copies
    /// pixels exactly; flipped, it mirrors them.
    #[test]
    fn identity_resize_copies_and_flip_mirrors() {
        let (w, h) = (7u32, 5u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let region = Region {
            window: [0, 0, w, h],
            bbox: [0.0, 0.0, w as f64, h as f64],
            paste: [0, 0, w, h],
        };
        let k = Convert::new(None);
        for flip in [false, true] {
            let p = ViewParams::new(&region, 0, w * 3, (flip, Filter::Bilinear), 0);
            let mut out = vec![0u8; rgb.len()];
            resample_view(&p, &rgb, (h, w), MemoryFormat::ChannelsLast, &k, &mut out);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let xs = if flip { w as usize - 1 - x } else { x };
                    let at = |x: usize| (y * w as usize + x) * 3;
                    assert_eq!(out[at(x)..at(x) + 3], rgb[at(xs)..at(xs) + 3]);
                }
            }
            let mut planar = vec![0u8; rgb.len()];
            resample_view(&p, &rgb, (h, w), MemoryFormat::Contiguous, &k, &mut planar);
            for (i, px) in out.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    assert_eq!(planar[c * (w * h) as usize + i], px[c]);
                }
            }
        }
    }

    /// Downscaling a constant image gives the constant (weights sum to one), and pixels
    /// outside the paste rectangle are zero.
    #[test]
    fn weights_are_normalized_and_padding_is_zero() {
        let (w, h) = (97u32, 61u32);
        let rgb = vec![200u8; (w * h * 3) as usize];
        let region = Region {
            window: [0, 0, w, h],
            bbox: [0.5, 1.25, 90.0, 57.5],
            paste: [2, 1, 9, 6],
        };
        let p = ViewParams::new(&region, 0, w * 3, (false, Filter::Bilinear), 0);
        let mut out = vec![0u8; 3 * 8 * 12];
        resample_view(
            &p,
            &rgb,
            (8, 12),
            MemoryFormat::ChannelsLast,
            &Convert::new(None),
            &mut out,
        );
        for y in 0..8 {
            for x in 0..12 {
                let inside = (2..11).contains(&x) && (1..7).contains(&y);
                let v = out[(y * 12 + x) * 3];
                assert_eq!(v, if inside { 200 } else { 0 }, "({x}, {y})");
            }
        }
    }
}
