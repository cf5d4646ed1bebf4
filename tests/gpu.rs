//! The GPU pipeline, checked on a machine with a GPU (`scripts/gpu-check.sh` runs this binary
//! there). Without one, `opening_a_missing_gpu_is_an_error` checks the error and the others
//! return early, saying so.
//!
//! What is compared, and how closely:
//! - the kernels against their CPU twin (`transform::resample`) on identical decoded pixels
//!   (decoder "cpu"): uint8 within ±1, floats within one uint8 step after normalization; with
//!   photometric steps and erasing, at most 0.1% of values past that and none past 3 steps;
//! - nvJPEG's decode against the CPU pipeline (libjpeg-turbo + fast_image_resize): mean
//!   absolute difference ≤ 1.5 on the uint8 scale per image;
//! - the hardware engine's region decode against its whole-image decode: mean ≤ 0.05 per view;
//! - held batches, memory over many epochs, broken images under both `on_error` policies.
#![cfg(feature = "cuda")]

mod common;

use std::path::Path;
use std::sync::Arc;

// The kernels against their CPU twin.
#[path = "gpu/twin.rs"]
mod twin;

use slipstream::cache::CacheReader;
use slipstream::dtype::DType;
use slipstream::loader::{Batch, FieldBatch, Loader, LoaderOptions};
use slipstream::sampler::{Sampler, SamplerConfig};
use slipstream::transform::gpu_api::GpuStages;
use slipstream::transform::spec::Filter;
use slipstream::transform::{Device, Geometry, GpuDecoder, MemoryFormat, OnError, PipelineSpec};

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

fn gpu_present() -> bool {
    match slipstream::cuda::Gpu::open(0) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("no GPU, skipping: {e}");
            false
        }
    }
}

fn dataset(n: usize) -> (tempfile::TempDir, Arc<CacheReader>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = slipstream::demo::make_dataset(&tmp.path().join("ds"), n, 1 << 20).unwrap();
    let reader = common::open(&dir, &tmp.path().join("cache")).unwrap();
    (tmp, Arc::new(reader))
}

/// [`dataset`] with its images kept as YUV 4:2:0 planes (`encoding="yuv420"`).
fn yuv420_dataset(n: usize) -> (tempfile::TempDir, Arc<CacheReader>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = slipstream::demo::make_dataset(&tmp.path().join("ds"), n, 1 << 20).unwrap();
    let options = slipstream::cache::OpenOptions {
        encoding: slipstream::cache::Encoding::new("yuv420", None, None).unwrap(),
        ..common::quiet(&tmp.path().join("cache"))
    };
    let reader = slipstream::cache::open(&dir, &options).unwrap();
    (tmp, Arc::new(reader))
}

fn spec(
    name: &str,
    geometry: Geometry,
    views: u32,
    dtype: DType,
    format: MemoryFormat,
) -> PipelineSpec {
    PipelineSpec {
        name: name.into(),
        field: "image".into(),
        views,
        geometry,
        flip: 0.5,
        photometric: Vec::new(),
        erasing: None,
        filter: Filter::Bilinear,
        antialias: true,
        normalize: (dtype != DType::Uint8).then_some((MEAN, STD)),
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
const CENTER: Geometry = Geometry::CenterCrop {
    height: 224,
    width: 224,
    resize: Some(256),
};

/// Several outputs of one field: every dtype, both layouts, several views, both geometries,
/// both filters, antialiased or not.
fn outputs() -> Vec<PipelineSpec> {
    let small = Geometry::RandomResizedCrop {
        height: 48,
        width: 48,
        scale: (0.08, 1.0),
        ratio: (0.75, 4.0 / 3.0),
    };
    let sharp = |name, filter| PipelineSpec {
        filter,
        antialias: false,
        ..spec(name, small, 1, DType::Uint8, MemoryFormat::Contiguous)
    };
    vec![
        sharp("sharp_bilinear", Filter::Bilinear),
        sharp("sharp_bicubic", Filter::Bicubic),
        spec("u8", RRC, 1, DType::Uint8, MemoryFormat::Contiguous),
        PipelineSpec {
            filter: Filter::Bicubic,
            ..spec("f16", RRC, 2, DType::Float16, MemoryFormat::ChannelsLast)
        },
        PipelineSpec {
            filter: Filter::Bicubic,
            ..spec("bf16", CENTER, 1, DType::Bfloat16, MemoryFormat::Contiguous)
        },
        spec(
            "f32",
            Geometry::RandomResizedCrop {
                height: 96,
                width: 96,
                scale: (0.05, 0.4),
                ratio: (0.75, 4.0 / 3.0),
            },
            3,
            DType::Float32,
            MemoryFormat::ChannelsLast,
        ),
    ]
}

fn loader(
    reader: &Arc<CacheReader>,
    device: Device,
    pipelines: Vec<PipelineSpec>,
    on_error: OnError,
) -> Arc<Loader> {
    let sampler = Sampler::new(SamplerConfig::shuffled(reader.len(), 16, 3)).unwrap();
    Arc::new(
        Loader::new(
            reader.clone(),
            sampler,
            LoaderOptions {
                pipelines,
                on_error,
                device,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

fn cuda(decoder: GpuDecoder) -> Device {
    Device::Cuda {
        ordinal: 0,
        decoder,
        roi_decode: true,
    }
}

/// Pipeline outputs of a batch as host bytes, by name.
fn outputs_on_host(batch: &Batch) -> Vec<(String, Vec<u8>)> {
    batch
        .fields
        .iter()
        .filter_map(|(name, f)| match f {
            FieldBatch::Device(t) => Some((name.clone(), t.to_host().unwrap())),
            FieldBatch::Tensor(t) if name != "label" => Some((name.clone(), t.bytes().to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn opening_a_missing_gpu_is_an_error() {
    if let Err(e) = slipstream::cuda::Gpu::open(0) {
        assert!(matches!(e, slipstream::Error::Cuda(_)), "{e:?}");
        assert!(e.to_string().contains("CUDA"), "{e}");
    }
    let e = slipstream::cuda::Gpu::open(4096)
        .err()
        .expect("no machine has 4097 GPUs");
    assert!(matches!(e, slipstream::Error::Cuda(_)), "{e:?}");
}

fn mean_abs(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y) as f64)
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn nvjpeg_pipeline_is_close_to_the_cpu_pipeline() {
    if !gpu_present() {
        return;
    }
    let (_tmp, reader) = dataset(64);
    let specs = vec![
        spec("rrc", RRC, 1, DType::Uint8, MemoryFormat::Contiguous),
        spec(
            "center",
            CENTER,
            1,
            DType::Uint8,
            MemoryFormat::ChannelsLast,
        ),
    ];
    for decoder in [GpuDecoder::Auto, GpuDecoder::Cuda] {
        let gpu = loader(&reader, cuda(decoder), specs.clone(), OnError::Raise);
        let cpu = loader(&reader, Device::Cpu, specs.clone(), OnError::Raise);
        let mut worst = 0f64;
        for (g, c) in gpu.iter(1, 0).zip(cpu.iter(1, 0)) {
            let (g, c) = (g.unwrap(), c.unwrap());
            assert_eq!(g.indices.i64_values(), c.indices.i64_values());
            for ((name, gb), (_, cb)) in outputs_on_host(&g).iter().zip(outputs_on_host(&c)) {
                let per_image = 3 * 224 * 224;
                for (k, (gi, ci)) in gb
                    .chunks_exact(per_image)
                    .zip(cb.chunks_exact(per_image))
                    .enumerate()
                {
                    let m = mean_abs(gi, ci);
                    worst = worst.max(m);
                    assert!(
                        m <= 1.5,
                        "{decoder:?} {name} image {k}: mean |gpu - cpu| = {m:.3}"
                    );
                }
            }
        }
        let stats = gpu.stats();
        eprintln!(
            "{decoder:?}: worst per-image mean |gpu - cpu| {worst:.3}; decoded by hardware {} cuda {} cpu {}; {}",
            stats.decoded_hardware,
            stats.decoded_cuda,
            stats.decoded_cpu,
            gpu.gpu().unwrap().describe()
        );
        assert_eq!(stats.decoded_cpu, 0, "baseline JPEGs all go to nvJPEG");
        if decoder == GpuDecoder::Cuda {
            assert_eq!(stats.decoded_hardware, 0);
        }
    }
}

/// With `fields_on_device`, the index and the label arrive on the GPU with the values the
/// host gather gives, batch after batch (the staging buffers rotate).
#[test]
fn numeric_fields_are_copied_to_the_gpu() {
    if !gpu_present() {
        return;
    }
    let (_tmp, reader) = dataset(64);
    let specs = vec![spec("rrc", RRC, 1, DType::Uint8, MemoryFormat::Contiguous)];
    let sampler = Sampler::new(SamplerConfig::shuffled(reader.len(), 16, 3)).unwrap();
    let options = LoaderOptions {
        pipelines: specs.clone(),
        device: cuda(GpuDecoder::Auto),
        fields_on_device: true,
        ..Default::default()
    };
    let gpu = Arc::new(Loader::new(reader.clone(), sampler, options).unwrap());
    let cpu = loader(&reader, Device::Cpu, specs, OnError::Raise);
    for epoch in 0..3 {
        for (g, c) in gpu.iter(epoch, 0).zip(cpu.iter(epoch, 0)) {
            let (g, c) = (g.unwrap(), c.unwrap());
            let index = g.device_indices.as_ref().expect("indices on the GPU");
            assert_eq!(index.to_host().unwrap(), c.indices.bytes());
            let label = |b: &Batch| {
                b.fields
                    .iter()
                    .find(|(n, _)| n == "label")
                    .unwrap()
                    .1
                    .clone()
            };
            match (label(&g), label(&c)) {
                (FieldBatch::Device(d), FieldBatch::Tensor(h)) => {
                    assert_eq!((d.shape(), d.dtype()), (&h.shape[..], h.dtype));
                    assert_eq!(d.to_host().unwrap(), h.bytes());
                }
                other => panic!("label: {other:?}"),
            }
        }
    }
}

/// The hardware engine decoding only the crops' regions gives the kernels the same pixels as
/// decoding whole images: one view and several small views per image, uint8.
#[test]
fn region_decode_gives_the_pixels_of_a_whole_decode() {
    if !gpu_present() {
        return;
    }
    let (_tmp, reader) = dataset(64);
    let small = Geometry::RandomResizedCrop {
        height: 96,
        width: 96,
        scale: (0.05, 0.4),
        ratio: (0.75, 4.0 / 3.0),
    };
    let specs = vec![
        spec("rrc", RRC, 1, DType::Uint8, MemoryFormat::Contiguous),
        spec("local", small, 3, DType::Uint8, MemoryFormat::ChannelsLast),
    ];
    let device = |roi_decode| Device::Cuda {
        ordinal: 0,
        decoder: GpuDecoder::Auto,
        roi_decode,
    };
    let regions = loader(&reader, device(true), specs.clone(), OnError::Raise);
    let whole = loader(&reader, device(false), specs, OnError::Raise);
    let (mut worst_mean, mut worst_max) = (0f64, 0u8);
    for (r, w) in regions.iter(2, 0).zip(whole.iter(2, 0)) {
        let (r, w) = (r.unwrap(), w.unwrap());
        for ((name, rb), (_, wb)) in outputs_on_host(&r).iter().zip(outputs_on_host(&w)) {
            let per_view = if name == "rrc" {
                3 * 224 * 224
            } else {
                3 * 96 * 96
            };
            for (k, (ri, wi)) in rb
                .chunks_exact(per_view)
                .zip(wb.chunks_exact(per_view))
                .enumerate()
            {
                let m = mean_abs(ri, wi);
                let max = ri
                    .iter()
                    .zip(wi)
                    .map(|(a, b)| a.abs_diff(*b))
                    .max()
                    .unwrap();
                (worst_mean, worst_max) = (worst_mean.max(m), worst_max.max(max));
                assert!(m <= 0.05, "{name} view {k}: mean |region - whole| = {m:.3}");
            }
        }
    }
    let describe = regions.gpu().unwrap().describe();
    let stats = regions.stats();
    eprintln!(
        "region vs whole decode: worst per-view mean {worst_mean:.4}, max {worst_max}; \
         decoded by hardware {}; {describe}",
        stats.decoded_hardware
    );
    if describe.contains("hardware engine") {
        assert!(stats.decoded_hardware > 0, "{stats:?}");
        assert!(
            describe.contains("crop regions"),
            "the hardware engine declined regions: {describe}"
        );
    }
}

#[test]
fn held_batches_stay_intact_and_repeat_exactly() {
    if !gpu_present() {
        return;
    }
    let (_tmp, reader) = dataset(48);
    let l = loader(&reader, cuda(GpuDecoder::Auto), outputs(), OnError::Raise);
    // More batches than ring slots, all held.
    let held: Vec<Batch> = (0..3)
        .flat_map(|e| l.iter(e, 0).map(Result::unwrap))
        .collect();
    for (n, batch) in held.iter().enumerate() {
        let again = l
            .gather(
                batch.epoch,
                0,
                &batch
                    .indices
                    .i64_values()
                    .iter()
                    .map(|&i| i as u64)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        assert_eq!(outputs_on_host(batch), outputs_on_host(&again), "batch {n}");
    }
}

#[test]
fn device_memory_stays_bounded_over_epochs() {
    if !gpu_present() {
        return;
    }
    let (_tmp, reader) = dataset(32);
    let l = loader(&reader, cuda(GpuDecoder::Auto), outputs(), OnError::Raise);
    let mut after = Vec::new();
    for epoch in 0..30 {
        for batch in l.iter(epoch, 0) {
            drop(batch.unwrap());
        }
        after.push(l.gpu().unwrap().memory_bytes());
    }
    eprintln!(
        "device memory after epochs 1, 2, 30: {} {} {}",
        after[0], after[1], after[29]
    );
    assert!(after[29] <= after[1], "device memory grows: {after:?}");
}

fn broken_dataset(dir: &Path) -> std::path::PathBuf {
    let mut writer = slipstream::source::writer::LitDataWriter::new(
        dir,
        &[("image", "jpeg", "pil"), ("label", "int", "int")],
        1 << 20,
    )
    .unwrap();
    for i in 0..24u64 {
        let (mut jpeg, _) = slipstream::demo::scene::jpeg(i);
        if i % 5 == 2 {
            // Keep the header, break the entropy-coded data; every other one still ends with
            // an end-of-image marker, which nvJPEG's planner looks for.
            let n = jpeg.len();
            jpeg.truncate(n / 3);
            if i % 2 == 1 {
                jpeg.extend_from_slice(&[0xff, 0xd9]);
            }
        }
        writer.add(&[&jpeg, &(i as i64).to_le_bytes()]).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn broken_images_follow_on_error() {
    if !gpu_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = broken_dataset(&tmp.path().join("ds"));
    let reader = Arc::new(common::open(&dir, &tmp.path().join("cache")).unwrap());
    let specs = vec![spec(
        "rrc",
        RRC,
        1,
        DType::Float16,
        MemoryFormat::Contiguous,
    )];
    let raise = loader(
        &reader,
        cuda(GpuDecoder::Auto),
        specs.clone(),
        OnError::Raise,
    );
    let e = raise
        .gather(0, 0, &[0, 1, 2, 3])
        .expect_err("sample 2 is broken");
    assert!(e.to_string().contains("sample 2"), "{e}");
    let skip = loader(
        &reader,
        cuda(GpuDecoder::Auto),
        specs.clone(),
        OnError::Skip,
    );
    let batch = skip.gather(0, 0, &(0..24).collect::<Vec<_>>()).unwrap();
    let delivered = batch.indices.i64_values();
    assert!(delivered.iter().all(|i| i % 5 != 2), "{delivered:?}");
    assert_eq!(skip.stats().replaced, 5);
    // The same replacements as the CPU pipeline's.
    let cpu = loader(&reader, Device::Cpu, specs, OnError::Skip);
    let on_cpu = cpu.gather(0, 0, &(0..24).collect::<Vec<_>>()).unwrap();
    assert_eq!(on_cpu.indices.i64_values(), delivered);
}
