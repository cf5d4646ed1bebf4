//! The kernels against their CPU twin (`transform::resample`, `transform::program`) on
//! identical decoded pixels: the GPU decodes with decoder "cpu", the twin with the same
//! libjpeg-turbo, so only the kernels' arithmetic can differ. On a yuv420 cache both read the
//! same planes.

use slipstream::decode::cpu::CpuDecoder;
use slipstream::decode::{DecodePlan, Decoded, Image};
use slipstream::transform::geometry::{Target, ViewGeometry, view_geometry};
use slipstream::transform::output::image_of;
use slipstream::transform::params::{Draw, ViewKey, flip_for};
use slipstream::transform::program::reference_view;
use slipstream::transform::resample::{OutputElement, SourceImage};
use slipstream::transform::spec::{Erasing, Photometric};

use super::*;

fn as_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::Uint8 => bytes.iter().map(|&b| b as f32).collect(),
        DType::Float32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        DType::Float16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
            .collect(),
        DType::Bfloat16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32())
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn twin<T: OutputElement + Into<f64>>(
    src: (&[u8], &SourceImage),
    decoded: &Decoded,
    geometry: ViewGeometry,
    target: &Target,
    s: &PipelineSpec,
    key: ViewKey,
) -> Vec<f32> {
    reference_view::<T>(src, decoded, geometry, target, s, key)
        .into_iter()
        .map(|v| v.into() as f32)
        .collect()
}

/// How one output compared with the twin: the worst difference as a share of the tolerance
/// (one uint8 step, normalized), how many values exceeded it, of how many.
#[derive(Default, Debug)]
struct Agreement {
    worst: f32,
    over: usize,
    total: usize,
}

/// Every view of every batch of `specs` from the GPU (decoder "cpu", so both sides see the
/// same pixels) against the twin, output by output; panics past `max_steps` steps.
fn against_twin(specs: Vec<PipelineSpec>, max_steps: f32) -> Vec<Agreement> {
    let (_tmp, reader) = dataset(40);
    twin_of_batches(&reader, specs, max_steps)
}

fn twin_of_batches(
    reader: &Arc<CacheReader>,
    specs: Vec<PipelineSpec>,
    max_steps: f32,
) -> Vec<Agreement> {
    let reader = reader.clone();
    let l = loader(
        &reader,
        cuda(GpuDecoder::Cpu),
        specs.clone(),
        OnError::Raise,
    );
    let image_field = reader.field_index("image").unwrap();
    let mut agreements: Vec<Agreement> = specs.iter().map(|_| Agreement::default()).collect();
    for batch in l.iter(0, 0) {
        let batch = batch.unwrap();
        let host = outputs_on_host(&batch);
        for (k, &sample) in batch.indices.i64_values().iter().enumerate() {
            let mut rgb = Vec::new();
            let (decoded, pixels, source) = match image_of(&reader, image_field, sample as u64) {
                Ok(Image::Encoded(bytes)) => {
                    let decoded = CpuDecoder::new()
                        .decode(bytes, DecodePlan::FULL, &mut rgb)
                        .unwrap();
                    let source = SourceImage::rgb(0, decoded.width, decoded.height);
                    (decoded, rgb.as_slice(), source)
                }
                Ok(Image::Yuv420(planes)) => {
                    let (w, h) = (planes.width, planes.height);
                    let source = SourceImage::planes(0, w, h);
                    (Decoded::whole(w, h), planes.bytes(), source)
                }
                Err(e) => panic!("{e}"),
            };
            let src = (pixels, &source);
            let (h, w) = (decoded.height, decoded.width);
            let draw = Draw {
                seed: 3,
                epoch: 0,
                sample: sample as u64,
            };
            let mut first_view = 0;
            for ((s, (name, bytes)), a) in specs.iter().zip(&host).zip(&mut agreements) {
                assert_eq!(&s.name, name);
                let gpu = as_f32(bytes, s.dtype);
                let per_view =
                    3 * s.geometry.output_size().0 as usize * s.geometry.output_size().1 as usize;
                for v in 0..s.views as u64 {
                    let view = first_view + v;
                    let geometry = view_geometry(&s.geometry, draw, view, h, w);
                    let target = Target {
                        size: s.geometry.output_size(),
                        flip: flip_for(draw.view(view), s.flip),
                        full: (h, w),
                    };
                    let key = draw.view(view);
                    let expected: Vec<f32> = match s.dtype {
                        DType::Uint8 => twin::<u8>(src, &decoded, geometry, &target, s, key),
                        DType::Float32 => twin::<f32>(src, &decoded, geometry, &target, s, key),
                        DType::Float16 => {
                            twin::<half::f16>(src, &decoded, geometry, &target, s, key)
                        }
                        DType::Bfloat16 => {
                            twin::<half::bf16>(src, &decoded, geometry, &target, s, key)
                        }
                        _ => unreachable!(),
                    };
                    let at = (k * s.views as usize + v as usize) * per_view;
                    let got = &gpu[at..at + per_view];
                    // One uint8 step, normalized; plus bfloat16's rounding near |x| = 2.7.
                    let tolerance = match s.dtype {
                        DType::Uint8 => 1.0,
                        _ => 1.0 / 255.0 / 0.224 + 0.016,
                    };
                    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                        let d = (g - e).abs() / tolerance;
                        a.worst = a.worst.max(d);
                        a.over += (d > 1.0) as usize;
                        assert!(
                            d <= max_steps,
                            "{name} sample {sample} view {v} element {i}: gpu {g} twin {e}"
                        );
                    }
                    a.total += got.len();
                }
                first_view += s.views as u64;
            }
        }
    }
    agreements
}

#[test]
fn kernel_matches_its_cpu_twin_on_identical_pixels() {
    if !gpu_present() {
        return;
    }
    let worst = (against_twin(outputs(), 1.0).iter()).fold(0f32, |w, a| w.max(a.worst));
    eprintln!("kernel vs twin: worst difference {worst:.3} of the tolerance");
}

/// A yuv420 cache's planes go to the GPU as they are; the kernel converts each tap it reads
/// with the arithmetic of `Yuv420::rgb_at`, as the twin does.
#[test]
fn kernel_converts_planes_as_its_twin_does() {
    if !gpu_present() {
        return;
    }
    let (_tmp, reader) = yuv420_dataset(40);
    let agreements = twin_of_batches(&reader, outputs(), 1.0);
    let worst = agreements.iter().fold(0f32, |w, a| w.max(a.worst));
    eprintln!("kernel vs twin on planes: worst difference {worst:.3} of the tolerance");
}

/// Each photometric operation on its own (always applied), SimCLR's chain of them, and
/// erasing (before and after the flip, in pixel and in output units, and with noise; the
/// noise's double-precision log and cos may differ in the last bit), across the dtypes and
/// layouts: the program kernel against its twin. They make the same float32 operations, so
/// they agree but for the resize's own ±1, which a contrast or brightness above 1 may widen by
/// a step.
#[test]
fn program_kernel_matches_its_cpu_twin_on_identical_pixels() {
    let stages = |json: &str| -> Vec<Photometric> { serde_json::from_str(json).unwrap() };
    let jitter = |name: &str| {
        format!(
            r#"[{{"kind": "color_jitter", "{name}": {}}}]"#,
            if name == "hue" {
                "[-0.5, 0.5]"
            } else {
                "[0.2, 1.8]"
            }
        )
    };
    let simclr = r#"[{"kind": "apply", "p": 0.8, "stages": [{"kind": "color_jitter",
         "brightness": [0.6, 1.4], "contrast": [0.6, 1.4], "saturation": [0.6, 1.4],
         "hue": [-0.1, 0.1]}]},
        {"kind": "grayscale", "p": 0.2},
        {"kind": "apply", "p": 0.5, "stages": [{"kind": "gaussian_blur",
         "kernel": [23, 23], "sigma": [0.1, 2.0]}]},
        {"kind": "solarize", "threshold": 128.0, "p": 0.2}]"#;
    let cases = [
        ("brightness", stages(&jitter("brightness"))),
        ("contrast", stages(&jitter("contrast"))),
        ("saturation", stages(&jitter("saturation"))),
        ("hue", stages(&jitter("hue"))),
        ("grayscale", stages(r#"[{"kind": "grayscale", "p": 1.0}]"#)),
        (
            "blur",
            stages(r#"[{"kind": "gaussian_blur", "kernel": [23, 9], "sigma": [0.1, 2.0]}]"#),
        ),
        (
            "solarize",
            stages(r#"[{"kind": "solarize", "threshold": 128.0, "p": 1.0}]"#),
        ),
        ("simclr", stages(simclr)),
        ("erasing", Vec::new()),
        ("erasing_noise", Vec::new()),
    ];
    let dtypes = [
        DType::Uint8,
        DType::Float16,
        DType::Bfloat16,
        DType::Float32,
    ];
    let specs: Vec<PipelineSpec> = (cases.iter().enumerate())
        .map(|(i, (name, photometric))| {
            let format = [MemoryFormat::Contiguous, MemoryFormat::ChannelsLast][i % 2];
            let mut s = spec(name, RRC, 1 + (i % 3 == 0) as u32, dtypes[i % 4], format);
            s.photometric = photometric.clone();
            let noise = *name == "erasing_noise";
            s.erasing = (name.starts_with("erasing") || *name == "simclr").then_some(Erasing {
                p: if *name == "simclr" { 0.5 } else { 1.0 },
                scale: (0.02, 0.33),
                ratio: (0.3, 3.3),
                value: [0.5, 100.0, -1.0],
                random: noise,
                output_units: i % 2 == 0 || noise,
                before_flip: i % 3 == 0,
            });
            s
        })
        .collect();
    if !gpu_present() {
        return;
    }
    for (s, a) in specs.iter().zip(against_twin(specs.clone(), 3.0)) {
        eprintln!(
            "program kernel vs twin, {} ({:?}): worst {:.3} of the tolerance, {} of {} over it",
            s.name, s.dtype, a.worst, a.over, a.total
        );
        assert!(a.over * 1000 <= a.total, "{}: {a:?}", s.name);
    }
}
