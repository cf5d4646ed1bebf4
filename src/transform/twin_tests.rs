//! The kernels' CPU twin (`resample.rs`, `program.rs`) against the CPU pipeline on
//! photographs and on constructed images: they compute the same filters, and differ by the
//! CPU pipeline's fixed-point rounding only.

use super::geometry::Region;
use super::resample::{Convert, OutputElement, SourceImage, ViewParams, resample_view};
use super::spec::{Filter, MemoryFormat};
use crate::decode::cpu::CpuDecoder;
use crate::decode::yuv420::Yuv420;
use crate::decode::{DecodePlan, Decoded, Image, ImagePolicy};
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
        antialias: true,
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

/// The CPU pipeline's view and the twin's, both as uint8-scale values. The twin reads a
/// JPEG decoded whole, and planes as they are.
fn both(image: Image, spec: &PipelineSpec, sample: u64) -> (Vec<u8>, Vec<u8>) {
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
    process_image(&mut ws, image, draw, ImagePolicy::DEFAULT, &mut jobs).unwrap();
    let mut rgb = Vec::new();
    let (decoded, pixels, source) = match image {
        Image::Encoded(jpeg) => {
            let decoded = CpuDecoder::new()
                .decode(jpeg, DecodePlan::FULL, &mut rgb)
                .unwrap();
            let source = SourceImage::rgb(0, decoded.width, decoded.height);
            (decoded, rgb.as_slice(), source)
        }
        Image::Yuv420(planes) => {
            let (w, h) = (planes.width, planes.height);
            let source = SourceImage::planes(0, w, h);
            (Decoded::whole(w, h), planes.bytes(), source)
        }
    };
    let (h, w) = (decoded.height, decoded.width);
    let geometry = view_geometry(&spec.geometry, draw, 0, h, w);
    let target = Target {
        size: spec.geometry.output_size(),
        flip: flip_for(draw.view(0), spec.flip),
        full: (h, w),
    };
    let src = (pixels, &source);
    let twin = reference_view::<u8>(src, &decoded, geometry, &target, spec, draw.view(0));
    (pipeline, twin)
}

fn differences(a: &[u8], b: &[u8]) -> (f64, u8) {
    let d: Vec<u8> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).collect();
    let mean = d.iter().map(|&x| x as f64).sum::<f64>() / d.len() as f64;
    (mean, d.into_iter().max().unwrap())
}

/// The twin (f32 weights, no intermediate rounding) and the CPU pipeline
/// (`fast_image_resize`, fixed-point weights, rounding between passes) compute the same
/// filters, antialiased or not; on photographs they differ by rounding only. So on their
/// decode-free planes, which the CPU pipeline converts before resizing and the twin as each
/// tap reads them, with the same arithmetic.
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
    // Without antialiasing, shrunk several times over, where the filter's support matters.
    let small = [
        Geometry::RandomResizedCrop {
            height: 64,
            width: 64,
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
        },
        Geometry::CenterCrop {
            height: 112,
            width: 112,
            resize: Some(128),
        },
    ];
    let formats = [MemoryFormat::Contiguous, MemoryFormat::ChannelsLast];
    let cases = [
        (
            Filter::Bilinear,
            true,
            &[RRC, center, padded][..],
            &formats[..],
        ),
        (Filter::Bicubic, true, &[RRC, center, padded], &formats),
        (Filter::Bilinear, false, &small, &formats[..1]),
        (Filter::Bicubic, false, &small, &formats[..1]),
    ];
    for (filter, antialias, geometries, formats) in cases {
        let mut worst = (0.0f64, 0u8);
        for seed in 0..12u64 {
            let (jpeg, _) = scene::jpeg(seed);
            let mut planes = Vec::new();
            let (w, h) = CpuDecoder::new()
                .jpeg_planes(&jpeg, ImagePolicy::DEFAULT, &mut planes)
                .unwrap()
                .expect("the scenes are 4:2:0 JPEGs");
            let yuv = Yuv420::new(w, h, &planes).unwrap();
            for image in [Image::Encoded(&jpeg), Image::Yuv420(yuv)] {
                for &geometry in geometries {
                    for &format in formats {
                        let s = PipelineSpec {
                            filter,
                            antialias,
                            ..spec(geometry, DType::Uint8, format)
                        };
                        let (pipeline, twin) = both(image, &s, seed * 7 + 1);
                        let (mean, max) = differences(&pipeline, &twin);
                        let planes = matches!(image, Image::Yuv420(_));
                        assert!(
                            mean <= 0.3 && max <= 2,
                            "seed {seed} {filter:?} antialias {antialias} {geometry:?} planes \
                             {planes}: {mean} {max}"
                        );
                        worst = (worst.0.max(mean), worst.1.max(max));
                    }
                }
            }
        }
        eprintln!(
            "twin vs CPU pipeline, {filter:?}, antialias {antialias}, worst: mean {:.3} max {}",
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
        let (pipeline, twin) = both(Image::Encoded(&jpeg), &s, seed * 3 + 2);
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
        let image = SourceImage::rgb(0, decoded.width, decoded.height);
        let v = ViewParams::new(&region, &image, (target.flip, s.filter, s.antialias), 0);
        let mut plain = vec![0f32; 3 * 224 * 224];
        let mut program = plain.clone();
        let format = s.memory_format;
        resample_view(&v, &rgb, (224, 224), format, &k, &mut plain);
        let (prog, e) = (ViewProgram::default(), EraseValue::default());
        let src = &rgb;
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
        let p = ViewParams::new(
            &region,
            &SourceImage::rgb(0, w, h),
            (flip, Filter::Bilinear, true),
            0,
        );
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
    let image = SourceImage::rgb(0, w, h);
    let p = ViewParams::new(&region, &image, (false, Filter::Bilinear, true), 0);
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
