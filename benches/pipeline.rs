//! The CPU image pipeline's stages, one thread, on photograph-like JPEGs (`slipstream demo`'s
//! landscapes, ~500x375): a plain full decode (the baseline every other path is compared
//! with), the fused pipeline (RandomResizedCrop(224) + flip + normalize to float16) exact and
//! reduced, the same pipeline on the JPEGs' own YUV 4:2:0 planes (a `"yuv420"` cache's
//! values), and the output conversion alone. Prints each stage per image and its ratio to the
//! full decode, and writes JSON to benches/results/.
//!
//!     cargo bench --bench pipeline

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use slipstream::decode::cpu::CpuDecoder;
use slipstream::decode::yuv420::Yuv420;
use slipstream::decode::{DecodePlan, Image, ImagePolicy};
use slipstream::demo::scene;
use slipstream::dtype::DType;
use slipstream::transform::cpu::{Job, Lut, Workspace, process_image, write_view};
use slipstream::transform::params::Draw;
use slipstream::transform::{MemoryFormat, PipelineSpec};

const GROUP: &str = "cpu_pipeline_per_image";

fn spec(reduced_decode: bool) -> PipelineSpec {
    PipelineSpec::imagenet_training(224, DType::Float16, reduced_decode)
}

fn mean_ns(name: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/criterion")
        .join(GROUP)
        .join(name)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn main() {
    let images: Vec<Vec<u8>> = (0..32).map(|s| scene::jpeg(s).0).collect();
    let mean_kb = images.iter().map(Vec::len).sum::<usize>() as f64 / images.len() as f64 / 1e3;
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    let mut decoder = CpuDecoder::new();
    let mut rgb = Vec::new();
    let mut next = 0usize;
    let mut pick = || {
        next = (next + 1) % images.len();
        next
    };
    group.bench_function("decode_full", |b| {
        b.iter(|| {
            decoder
                .decode(&images[pick()], DecodePlan::FULL, &mut rgb)
                .unwrap()
        })
    });
    let planes: Vec<(u32, u32, Vec<u8>)> = images
        .iter()
        .map(|jpeg| {
            let mut out = Vec::new();
            let (w, h) = decoder
                .jpeg_planes(jpeg, ImagePolicy::DEFAULT, &mut out)
                .unwrap()
                .expect("the demo's JPEGs are 4:2:0");
            (w, h, out)
        })
        .collect();
    let image = |yuv: bool, k: usize| match yuv {
        false => Image::Encoded(&images[k]),
        true => Image::Yuv420(Yuv420::new(planes[k].0, planes[k].1, &planes[k].2).unwrap()),
    };
    let mut ws = Workspace::default();
    let mut out = vec![0u8; spec(true).view_bytes()];
    let stages = [
        ("pipeline_exact", false, false),
        ("pipeline_reduced", true, false),
        ("pipeline_yuv420", true, true),
    ];
    for (name, reduced, yuv) in stages {
        let spec = spec(reduced);
        let lut = Lut::new(&spec);
        let mut sample = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                sample += 1;
                let draw = Draw {
                    seed: 0,
                    epoch: 0,
                    sample,
                };
                let mut jobs = [Job {
                    spec: &spec,
                    lut: &lut,
                    first_view: 0,
                    out: &mut out,
                }];
                process_image(
                    &mut ws,
                    image(yuv, sample as usize % images.len()),
                    draw,
                    ImagePolicy::DEFAULT,
                    &mut jobs,
                )
                .unwrap()
            })
        });
    }
    let rgb224: Vec<u8> = (0..224 * 224 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let lut = Lut::new(&spec(true));
    group.bench_function("write_view_f16", |b| {
        b.iter(|| {
            write_view(
                &rgb224,
                224,
                224,
                true,
                MemoryFormat::Contiguous,
                &lut,
                &mut out,
            )
        })
    });
    group.finish();
    c.final_summary();

    let names = [
        "decode_full",
        "pipeline_exact",
        "pipeline_reduced",
        "pipeline_yuv420",
        "write_view_f16",
    ];
    let Some(times) = names
        .iter()
        .map(|n| mean_ns(n))
        .collect::<Option<Vec<f64>>>()
    else {
        return; // a filtered run measured only some stages
    };
    let base = times[0];
    let mut per_stage = serde_json::Map::new();
    println!(
        "per image ({} JPEGs, {mean_kb:.0} KB mean), ratio to a full decode:",
        images.len()
    );
    for (name, t) in names.iter().zip(&times) {
        println!("  {name:<20} {:>7.3} ms  {:>5.2}x", t / 1e6, t / base);
        per_stage.insert(
            name.to_string(),
            serde_json::json!({"ms": t / 1e6, "vs_full_decode": t / base}),
        );
    }
    let result = serde_json::json!({
        "benchmark": "cargo bench --bench pipeline",
        "images": images.len(),
        "mean_jpeg_kb": mean_kb,
        "stages": per_stage,
        "machine": slipstream::cli::machine_info(),
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs(),
    });
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&out_dir).unwrap();
    let path = out_dir.join(format!("pipeline-{}.json", result["unix_time"]));
    std::fs::write(&path, serde_json::to_vec_pretty(&result).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
