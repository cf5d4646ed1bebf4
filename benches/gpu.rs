//! The GPU path on one card, against the ceiling set by its JPEG decoder: nvJPEG's bare batched
//! decode of the same images (bytes already in pinned memory, nothing else done), with the
//! hardware engine (whole images, and only each image's crop region) and with the CUDA
//! backend, then slipstream's whole GPU loader (gather from the cache into pinned memory,
//! decode, RandomResizedCrop(224) + flip + normalize to float16) with each decoder, and with
//! the hardware engine decoding whole images. Prints images/s and the loader's share of the bare decode rate, and where
//! the loader's time went; writes JSON to benches/results/ (or `$SLIPSTREAM_BENCH_OUT`; the
//! photographs are generated once under target/bench-data/, or `$SLIPSTREAM_BENCH_DATA`).
//! Without a GPU it says so and exits.
//!
//!     cargo bench --features cuda --bench gpu
//!
//! `scripts/gpu-check.sh` runs the binary `make gpu-bundle` builds from this.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use slipstream::cache::CacheReader;
use slipstream::cuda::Gpu;
use slipstream::decode::nvjpeg::{self, Destination, Roi, Route, roi_for};
use slipstream::decode::{Rect, image_size};
use slipstream::dtype::DType;
use slipstream::loader::{Loader, LoaderOptions};
use slipstream::sampler::{Sampler, SamplerConfig};
use slipstream::transform::geometry::{read_region, view_geometry};
use slipstream::transform::gpu_api::GpuStages;
use slipstream::transform::params::Draw;
use slipstream::transform::{Device, GpuDecoder, PipelineSpec};

const IMAGES: usize = 2048;
const BATCH: usize = 256;
const SECONDS: f64 = 3.0;

fn dataset(root: &Path) -> Arc<CacheReader> {
    let source = root.join(format!("photos-{IMAGES}"));
    if !source.join("index.json").exists() {
        slipstream::demo::make_dataset(&source, IMAGES, 64 << 20).expect("generate photographs");
    }
    common::open_cache(&source, root)
}

/// Images/s of nvJPEG alone on `route`, decoding `batches` round robin until `SECONDS` pass
/// (only each image's crop region when `regions` has them, as the loader's hardware route
/// does), the host time of choosing the decoders of one batch (ms), and the share of the
/// images' pixels decoded.
fn bare_decode(
    gpu: &Arc<Gpu>,
    route: Route,
    batches: &[Vec<Vec<u8>>],
    regions: Option<&[Vec<Option<Rect>>]>,
) -> (f64, f64, f64) {
    gpu.bind().unwrap();
    let (mut planner, mut decoder) = nvjpeg::open(route == Route::Hardware).unwrap();
    let mut planning = Duration::ZERO;
    let (mut pixels, mut decoded_pixels) = (0u64, 0u64);
    let stream = gpu.stream();
    // Each batch's bytes in pinned memory and its images' places on the device, prepared once.
    let prepared: Vec<_> = batches
        .iter()
        .enumerate()
        .map(|(b, images)| {
            let total: usize = images.iter().map(Vec::len).sum();
            let mut pinned = gpu.pinned(total).unwrap();
            let mut at = 0;
            for image in images {
                pinned.as_mut_slice()[at..at + image.len()].copy_from_slice(image);
                at += image.len();
            }
            let mut spans = Vec::new();
            let mut at = 0;
            for image in images {
                spans.push(at..at + image.len());
                at += image.len();
            }
            let data: Vec<&[u8]> = spans
                .iter()
                .map(|r| &pinned.as_slice()[r.clone()])
                .collect();
            let started = Instant::now();
            let plan = planner.plan(&data);
            planning += started.elapsed();
            let taken: Vec<usize> = (0..images.len())
                .filter(|&i| match route {
                    Route::Hardware => plan[i].0 == Route::Hardware,
                    _ => plan[i].0 != Route::Cpu,
                })
                .collect();
            let sizes: Vec<(u32, u32)> = taken.iter().map(|&i| plan[i].1.unwrap()).collect();
            let bytes: usize = sizes
                .iter()
                .map(|&(w, h)| w as usize * 3 * h as usize)
                .sum();
            let rois: Option<Vec<Roi>> = regions.map(|r| {
                taken
                    .iter()
                    .zip(&sizes)
                    .map(|(&i, &(w, h))| roi_for(r[b][i], w, h))
                    .collect()
            });
            for (k, &(w, h)) in sizes.iter().enumerate() {
                pixels += w as u64 * h as u64;
                decoded_pixels += rois
                    .as_ref()
                    .map_or(w as u64 * h as u64, |r| r[k][2] as u64 * r[k][3] as u64);
            }
            (pinned, spans, taken, sizes, rois, gpu.alloc(bytes).unwrap())
        })
        .collect();
    let mut run = |k: usize| -> usize {
        let (pinned, spans, taken, sizes, rois, device) = &prepared[k % prepared.len()];
        let data: Vec<&[u8]> = taken
            .iter()
            .map(|&i| &pinned.as_slice()[spans[i].clone()])
            .collect();
        let mut at = device.ptr();
        let out: Vec<Destination> = sizes
            .iter()
            .enumerate()
            .map(|(n, &(w, h))| {
                let pitch = w as u64 * 3;
                // A region lands where it would in the whole image, as in the loader.
                let [x, y, _, _] = rois.as_ref().map_or([0; 4], |r| r[n]);
                let image = Destination {
                    ptr: at + y as u64 * pitch + x as u64 * 3,
                    pitch: pitch as usize,
                };
                at += pitch * h as u64;
                image
            })
            .collect();
        // SAFETY: every destination (and region) lies inside `device`, sized for these images
        // at pitch width · 3; the pinned bytes and the device memory outlive the synchronize
        // below.
        unsafe { decoder.decode(route, &data, rois.as_deref(), &out, stream) }.unwrap();
        gpu.stream().synchronize().unwrap();
        data.len()
    };
    for k in 0..3 {
        run(k);
    }
    let (mut images, started) = (0, Instant::now());
    let mut k = 0;
    while started.elapsed() < Duration::from_secs_f64(SECONDS) {
        images += run(k);
        k += 1;
    }
    let plan_ms = 1e3 * planning.as_secs_f64() / batches.len() as f64;
    let share = decoded_pixels as f64 / pixels.max(1) as f64;
    (
        images as f64 / started.elapsed().as_secs_f64(),
        plan_ms,
        share,
    )
}

/// Images/s of the whole loader with `decoder`, and its stats' time per batch.
fn loader(
    reader: &Arc<CacheReader>,
    decoder: GpuDecoder,
    roi_decode: bool,
) -> (f64, serde_json::Value) {
    let spec = PipelineSpec::imagenet_training(224, DType::Float16, false);
    let sampler = Sampler::new(SamplerConfig::shuffled(reader.len(), BATCH, 0)).unwrap();
    let l = Arc::new(
        Loader::new(
            reader.clone(),
            sampler,
            LoaderOptions {
                pipelines: vec![spec],
                device: Device::Cuda {
                    ordinal: 0,
                    decoder,
                    roi_decode,
                },
                num_threads: 2,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let gpu = l.gpu().expect("a GPU loader").gpu().clone();
    for batch in l.iter(0, 0) {
        batch.unwrap();
    }
    let (mut images, mut epoch, started) = (0, 1, Instant::now());
    while started.elapsed() < Duration::from_secs_f64(SECONDS) {
        for batch in l.iter(epoch, 0) {
            images += batch.unwrap().indices.numel();
        }
        epoch += 1;
    }
    gpu.stream().synchronize().unwrap();
    let rate = images as f64 / started.elapsed().as_secs_f64();
    let t = l.gpu().unwrap().timings();
    let per = |s: f64, n: u64| 1e3 * s / n.max(1) as f64;
    let ms = serde_json::json!({
        "host_prepare": per(t.host_prepare_s, t.batches),
        "host_wait": per(t.host_wait_s, t.batches),
        "host_submit": per(t.host_submit_s, t.batches),
        "gpu_decode": per(t.gpu_decode_s, t.gpu_batches),
        "gpu_transform": per(t.gpu_transform_s, t.gpu_batches),
    });
    (rate, ms)
}

fn main() {
    let gpu = match Gpu::open(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("no GPU, nothing to measure: {e}");
            return;
        }
    };
    // Where the data and results go can be set, since the binary may run far from its sources.
    let dir = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default))
    };
    let reader = dataset(&dir("SLIPSTREAM_BENCH_DATA", "target/bench-data"));
    let field = reader.field_index("image").expect("an image field");
    let images: Vec<Vec<u8>> = (0..reader.len())
        .map(|s| reader.value_bytes(field, s).unwrap().to_vec())
        .collect();
    let batches: Vec<Vec<Vec<u8>>> = images.chunks(BATCH).map(<[_]>::to_vec).collect();
    // The region each image's RandomResizedCrop reads in the loader's first epoch (seed 0).
    let spec = PipelineSpec::imagenet_training(224, DType::Float16, false);
    let regions: Vec<Vec<Option<Rect>>> = batches
        .iter()
        .enumerate()
        .map(|(b, batch)| {
            batch
                .iter()
                .enumerate()
                .map(|(k, jpeg)| {
                    let (width, height) = image_size(jpeg).unwrap();
                    let draw = Draw {
                        seed: 0,
                        epoch: 0,
                        sample: (b * BATCH + k) as u64,
                    };
                    read_region(&[view_geometry(&spec.geometry, draw, 0, height, width)])
                })
                .collect()
        })
        .collect();
    let mean_kb = images.iter().map(Vec::len).sum::<usize>() as f64 / images.len() as f64 / 1e3;

    gpu.bind().unwrap();
    let hardware = nvjpeg::open(true).map(|(_, d)| d.hardware_engines().0 > 0);
    let mut rows: Vec<(String, f64)> = Vec::new();
    let mut ms = serde_json::Map::new();
    let routes = [
        ("nvjpeg_hardware_bare", Route::Hardware, None),
        (
            "nvjpeg_hardware_bare_regions",
            Route::Hardware,
            Some(&regions[..]),
        ),
        ("nvjpeg_cuda_bare", Route::Cuda, None),
    ];
    let mut shares = serde_json::Map::new();
    for (name, route, regions) in routes {
        if route == Route::Hardware && !matches!(hardware, Ok(true)) {
            continue;
        }
        let (rate, plan_ms, share) = bare_decode(&gpu, route, &batches, regions);
        rows.push((name.into(), rate));
        ms.insert(name.into(), serde_json::json!({ "plan": plan_ms }));
        shares.insert(name.into(), share.into());
    }
    for (name, decoder, roi_decode) in [
        ("loader_auto", GpuDecoder::Auto, true),
        ("loader_auto_whole_images", GpuDecoder::Auto, false),
        ("loader_cuda", GpuDecoder::Cuda, true),
    ] {
        let (rate, breakdown) = loader(&reader, decoder, roi_decode);
        rows.push((name.into(), rate));
        ms.insert(name.into(), breakdown);
    }
    let rate = |name: &str| rows.iter().find(|(n, _)| n == name).map(|r| r.1);
    println!(
        "{}: {IMAGES} JPEGs ({mean_kb:.0} KB mean), batch {BATCH}",
        gpu.name()
    );
    for (name, r) in &rows {
        println!("  {name:<24} {r:>9.0} images/s");
    }
    let mut ratios = serde_json::Map::new();
    for (loader, bare) in [
        ("loader_auto", "nvjpeg_hardware_bare_regions"),
        ("loader_auto", "nvjpeg_hardware_bare"),
        ("loader_auto", "loader_auto_whole_images"),
        ("nvjpeg_hardware_bare_regions", "nvjpeg_hardware_bare"),
        ("loader_cuda", "nvjpeg_cuda_bare"),
    ] {
        if let (Some(l), Some(b)) = (rate(loader), rate(bare)) {
            println!("  {loader} / {bare}: {:.2}x", l / b);
            ratios.insert(format!("{loader}_vs_{bare}"), (l / b).into());
        }
    }
    for (name, breakdown) in &ms {
        println!("  {name} ms per batch: {breakdown}");
    }
    for (name, share) in &shares {
        println!("  {name}: {share:.3} of the pixels decoded");
    }
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let result = serde_json::json!({
        "benchmark": "cargo bench --features cuda --bench gpu",
        "gpu": gpu.name(),
        "images": IMAGES,
        "mean_jpeg_kb": mean_kb,
        "batch": BATCH,
        "images_per_s": rows.iter().map(|(n, r)| (n.clone(), (*r).into())).collect::<serde_json::Map<_, _>>(),
        "ratios": ratios,
        "decoded_pixel_share": shares,
        "loader_ms_per_batch": ms,
        "machine": slipstream::cli::machine_info(),
        "unix_time": unix_time,
    });
    let out_dir = dir("SLIPSTREAM_BENCH_OUT", "benches/results");
    std::fs::create_dir_all(&out_dir).unwrap();
    let path = out_dir.join(format!("gpu-{unix_time}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&result).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
