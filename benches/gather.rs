//! The gather path: copying a shuffled batch of ~110 KB samples out of a cache (in the page
//! cache) into a batch buffer, against one thread copying the same number of bytes between
//! two contiguous buffers. Prints the ratios and writes JSON to benches/results/.
//!
//!     cargo bench --bench gather

mod common;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput};
use slipstream::buffer::BufferPool;
use slipstream::gather::gather_values;
use slipstream::rng::{Stream, key};
use slipstream::source::writer::LitDataWriter;

const SAMPLES: u64 = 2000;
const BATCH: usize = 256;
const GROUP: &str = "gather_256_samples_of_110KB";

fn dataset(root: &Path) -> PathBuf {
    let dir = root.join("gather-source");
    if dir.join("index.json").exists() {
        return dir;
    }
    let mut w = LitDataWriter::new(
        &dir,
        &[("image", "bytes", "bytes"), ("label", "int", "int")],
        64 << 20,
    )
    .expect("create the bench dataset");
    let mut rng = Stream::new(key(&[42]));
    for i in 0..SAMPLES {
        // ~110 KB like an ImageNet JPEG, sizes spread ±50%.
        let len = 55_000 + rng.below(110_000) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        w.add(&[&bytes, &(i as i64).to_le_bytes()]).unwrap();
    }
    w.finish().unwrap()
}

fn batches(n: usize) -> Vec<Vec<u64>> {
    let mut order: Vec<u64> = (0..SAMPLES).collect();
    Stream::new(key(&[7])).shuffle(&mut order);
    order.chunks(BATCH).take(n).map(<[u64]>::to_vec).collect()
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let source = dataset(&root);
    let reader = common::open_cache(&source, &root);
    let plan = batches(SAMPLES as usize / BATCH);
    let batch_bytes =
        |b: &[u64]| -> u64 { b.iter().map(|&s| reader.record(0, s).size as u64).sum() };
    let mean_batch = plan.iter().map(|b| batch_bytes(b)).sum::<u64>() / plan.len() as u64;
    // Warm the page cache.
    for b in &plan {
        for &s in b {
            std::hint::black_box(reader.value_bytes(0, s).unwrap());
        }
    }

    let pool = BufferPool::new(4);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Bytes(mean_batch));
    let src = vec![1u8; mean_batch as usize];
    let mut dst = vec![0u8; mean_batch as usize];
    group.bench_function("memcpy_1_thread", |b| {
        b.iter(|| {
            dst.copy_from_slice(&src);
            std::hint::black_box(&mut dst);
        })
    });
    let mut next = 0usize;
    group.bench_function("gather_all_cores", |b| {
        b.iter(|| {
            next = (next + 1) % plan.len();
            gather_values(&reader, 0, &plan[next], &pool).unwrap()
        })
    });
    group.bench_function("gather_1_thread", |b| {
        b.iter(|| {
            next = (next + 1) % plan.len();
            one_thread.install(|| gather_values(&reader, 0, &plan[next], &pool).unwrap())
        })
    });
    group.finish();
    c.final_summary();

    let (Some(memcpy), Some(all), Some(one)) = (
        mean_ns("memcpy_1_thread"),
        mean_ns("gather_all_cores"),
        mean_ns("gather_1_thread"),
    ) else {
        return; // a filtered run (`cargo bench -- NAME`) measured only some of them
    };
    let gbps = |ns: f64| mean_batch as f64 / ns;
    println!(
        "gather all cores {:.2} GB/s = {:.2}x one-thread memcpy ({:.2} GB/s); gather 1 thread {:.2}x",
        gbps(all),
        memcpy / all,
        gbps(memcpy),
        memcpy / one
    );
    let result = serde_json::json!({
        "benchmark": "cargo bench --bench gather",
        "batch": BATCH,
        "mean_batch_bytes": mean_batch,
        "memcpy_1_thread_gb_per_s": gbps(memcpy),
        "gather_all_cores_gb_per_s": gbps(all),
        "gather_1_thread_gb_per_s": gbps(one),
        "ratio_all_cores_vs_memcpy": memcpy / all,
        "ratio_1_thread_vs_memcpy": memcpy / one,
        "threads": rayon::current_num_threads(),
        "machine": slipstream::cli::machine_info(),
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs(),
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join(format!("gather-{}.json", result["unix_time"]));
    std::fs::write(&path, serde_json::to_vec_pretty(&result).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
