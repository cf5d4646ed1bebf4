//! The `slipstream` command line: `build`, `inspect`, `verify`, `bench`, `demo`.
//!
//! The same entry point serves the Rust binary and `python -m slipstream` (through the
//! extension module), so both behave identically.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use rayon::prelude::*;

use crate::cache::{self, BuildOptions, CacheReader, OpenOptions, RemoteCacheOptions};
use crate::demo::{self, DemoOptions};
use crate::error::{Error, Result};
use crate::info::Info;
use crate::loader::{FieldBatch, Loader, LoaderOptions};
use crate::sampler::{Sampler, SamplerConfig};
use crate::source::{Fingerprint, Format};

mod inspect;
pub use inspect::describe;
use inspect::human_bytes;

#[derive(Parser)]
#[command(
    name = "slipstream",
    version,
    about = "Fast loading of LitData datasets for PyTorch: build, inspect and check slipstream caches"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the cache of a dataset (skipped when an up-to-date cache exists).
    Build(BuildArgs),
    /// Push a dataset's cache to a shared store (building it first if needed), or pull it
    /// from there into the local cache directory.
    Sync {
        #[arg(value_enum)]
        direction: SyncDirection,
        /// A LitData dataset directory, or s3://bucket/prefix/.
        source: String,
        /// The shared store.
        #[arg(long, value_name = "s3://BUCKET/PREFIX/")]
        remote_cache: String,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// No progress bar or summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print a cache's fields, sample count, sizes and image-size histogram.
    Inspect {
        /// A .slipcache file, or a dataset directory (its cache is built if needed).
        target: PathBuf,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Print the cache header as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Check every checksum in a cache.
    Verify {
        /// A .slipcache file, or a dataset directory.
        target: PathBuf,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Measure raw batch loading (compressed bytes + labels) against a plain memcpy.
    Bench {
        /// A dataset directory or .slipcache file.
        source: PathBuf,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        #[arg(long, default_value_t = 3)]
        epochs: u64,
        /// Gather threads [default: one per core].
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// What this build holds and what it finds here (CPU, libjpeg-turbo, CUDA driver, GPUs,
    /// nvJPEG, kernels, cache directory): paste it into bug reports.
    Info {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate a small dataset of photographs, build its cache and load it.
    Demo {
        /// Where to write the dataset [default: under the cache directory].
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 64)]
        samples: usize,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct BuildArgs {
    /// A dataset (a directory, shard or file of a --format), or s3://bucket/prefix/.
    source: String,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Where caches live [default: $SLIPSTREAM_CACHE_DIR, else ~/.cache/slipstream].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Build even if an up-to-date cache exists.
    #[arg(long)]
    rebuild: bool,
    /// Decoding threads [default: one per core].
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Share caches through this S3 prefix: download the dataset's cache from it instead of
    /// building, or upload it after building.
    #[arg(long, value_name = "s3://BUCKET/PREFIX/")]
    remote_cache: Option<String>,
    /// How a local dataset's chunks are known unchanged since the cache was built: "mtime"
    /// (size and modification time) or "content" (a hash of their bytes, for chunks
    /// rewritten in place).
    #[arg(long, default_value = "mtime")]
    fingerprint: Fingerprint,
    /// The dataset's format: "auto" (index.json: LitData; .tar: WebDataset; .parquet:
    /// Parquet; .beton: FFCV; class folders: ImageFolder), or one of "litdata",
    /// "imagefolder", "webdataset", "parquet", "beton".
    #[arg(long, default_value = "auto")]
    format: Format,
    /// How image fields are stored: "original" (the source's bytes), "jpeg" (re-encoded at
    /// --quality, scaled to fit --max-side) or "yuv420" (decode-free planes); the last two
    /// are caches of their own, built from the original cache, which stays beside them.
    #[arg(long, default_value = "original")]
    encoding: String,
    /// With --encoding jpeg or yuv420: scale images down so no side exceeds this.
    #[arg(long)]
    max_side: Option<u32>,
    /// With --encoding jpeg: the JPEG quality, 1 to 100 [default: 90].
    #[arg(long)]
    quality: Option<u8>,
    /// No progress bar or summary.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SyncDirection {
    Push,
    Pull,
}

/// How to reach a dataset on S3 (credentials come from the usual AWS chain).
#[derive(clap::Args, Debug, Default)]
struct RemoteArgs {
    /// An S3-compatible endpoint, such as http://127.0.0.1:9000 [default: $AWS_ENDPOINT_URL].
    #[arg(long)]
    endpoint_url: Option<String>,
    /// The bucket's region [default: the AWS configuration's].
    #[arg(long)]
    region: Option<String>,
    /// Unsigned requests, for public buckets.
    #[arg(long)]
    anonymous: bool,
    /// Any storage option as KEY=VALUE (as `storage_options=` takes them), repeatable.
    #[arg(long = "storage-option", short = 'o', value_name = "KEY=VALUE")]
    storage_options: Vec<String>,
}

impl RemoteArgs {
    fn pairs(&self) -> Result<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        if let Some(e) = &self.endpoint_url {
            pairs.push(("endpoint_url".into(), e.clone()));
        }
        if let Some(r) = &self.region {
            pairs.push(("region_name".into(), r.clone()));
        }
        if self.anonymous {
            pairs.push(("anon".into(), "true".into()));
        }
        for option in &self.storage_options {
            let (k, v) = option.split_once('=').ok_or_else(|| {
                crate::Error::invalid(format!("--storage-option takes KEY=VALUE, not {option:?}"))
            })?;
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(pairs)
    }
}

/// Run the command line; returns the process exit code.
pub fn run<I: IntoIterator<Item = String>>(args: I) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn open(target: &std::path::Path, cache_dir: Option<PathBuf>) -> Result<CacheReader> {
    cache::open(
        target,
        &OpenOptions {
            cache_dir,
            ..Default::default()
        },
    )
}

fn execute(command: Command) -> Result<i32> {
    match command {
        Command::Build(args) => build(args),
        Command::Sync {
            direction,
            source,
            remote_cache,
            remote,
            cache_dir,
            quiet,
        } => {
            let storage = remote.pairs()?;
            let options = OpenOptions {
                cache_dir,
                build: BuildOptions {
                    progress: !quiet,
                    ..Default::default()
                },
                remote_cache: Some(RemoteCacheOptions {
                    url: remote_cache,
                    storage: storage.clone(),
                }),
                remote_only: matches!(direction, SyncDirection::Pull),
                ..Default::default()
            };
            match direction {
                SyncDirection::Push => println!("{}", cache::push(&source, &storage, &options)?),
                SyncDirection::Pull => {
                    let reader = cache::open_source(&source, &storage, &options)?;
                    println!("{}", reader.path().display());
                }
            }
            Ok(0)
        }
        Command::Inspect {
            target,
            cache_dir,
            json,
        } => {
            let reader = open(&target, cache_dir)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(reader.header()).expect("header serializes")
                );
            } else {
                print!("{}", describe(&reader)?);
            }
            Ok(0)
        }
        Command::Verify { target, cache_dir } => verify(&open(&target, cache_dir)?),
        Command::Bench {
            source,
            cache_dir,
            batch_size,
            epochs,
            threads,
            json,
        } => bench(&source, cache_dir, batch_size, epochs, threads, json),
        Command::Info { json } => {
            let info = Info::gather();
            if json {
                println!("{}", info.to_json());
            } else {
                println!("{info}");
            }
            Ok(0)
        }
        Command::Demo {
            dir,
            samples,
            batch_size,
            cache_dir,
        } => {
            demo::run(&DemoOptions {
                dir,
                samples,
                cache_dir,
                batch_size,
            })?;
            Ok(0)
        }
    }
}

/// `slipstream build`: open (building if needed) the cache and print its path.
fn build(args: BuildArgs) -> Result<i32> {
    let storage = args.remote.pairs()?;
    let reader = cache::open_source(
        &args.source,
        &storage,
        &OpenOptions {
            cache_dir: args.cache_dir,
            rebuild: args.rebuild,
            build: BuildOptions {
                threads: args.threads,
                progress: !args.quiet,
                ..Default::default()
            },
            // `build` ends with the cache complete.
            stream: false,
            remote_cache: args.remote_cache.map(|url| RemoteCacheOptions {
                url,
                storage: storage.clone(),
            }),
            remote_only: false,
            fingerprint: args.fingerprint,
            format: args.format,
            encoding: cache::Encoding::new(&args.encoding, args.max_side, args.quality)?,
        },
    )?;
    println!("{}", reader.path().display());
    Ok(0)
}

fn verify(reader: &CacheReader) -> Result<i32> {
    let t = Instant::now();
    reader.advise_sequential();
    let n = reader.len();
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(n), indicatif::ProgressDrawTarget::stderr());
    let failures: Vec<Error> = (0..n)
        .into_par_iter()
        .filter_map(|s| {
            if s % 1024 == 0 {
                bar.inc(1024.min(n - s));
            }
            reader.verify_sample(s).err()
        })
        .collect();
    bar.finish_and_clear();
    for e in failures.iter().take(20) {
        eprintln!("error: {e}");
    }
    if !failures.is_empty() {
        eprintln!("{} of {n} samples failed verification", failures.len());
        return Ok(1);
    }
    let bytes: u64 = reader.fields().iter().map(|f| f.total_bytes).sum();
    println!(
        "ok: {} ({n} samples, {}) verified in {:.2} s",
        reader.path().display(),
        human_bytes(bytes as f64),
        t.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn bench(
    source: &std::path::Path,
    cache_dir: Option<PathBuf>,
    batch_size: usize,
    epochs: u64,
    threads: usize,
    json: Option<PathBuf>,
) -> Result<i32> {
    let reader = Arc::new(open(source, cache_dir)?);
    let sampler = Sampler::new(SamplerConfig::shuffled(reader.len(), batch_size, 0))?;
    let loader = Arc::new(Loader::new(
        reader.clone(),
        sampler,
        LoaderOptions {
            num_threads: threads,
            ..Default::default()
        },
    )?);
    let run_epoch = |epoch: u64| -> Result<(u64, u64)> {
        let (mut samples, mut bytes) = (0u64, 0u64);
        for batch in loader.iter(epoch, 0) {
            let batch = batch?;
            samples += batch.indices.numel() as u64;
            for (_, f) in &batch.fields {
                bytes += match f {
                    FieldBatch::Tensor(t) => t.nbytes() as u64,
                    FieldBatch::Device(t) => t.nbytes() as u64,
                    FieldBatch::Ragged(r) => r.data.numel() as u64,
                    FieldBatch::Strings(s) => s.iter().map(|s| s.len() as u64).sum(),
                };
            }
        }
        Ok((samples, bytes))
    };
    run_epoch(u64::MAX)?; // warm the page cache
    let t = Instant::now();
    let (mut samples, mut bytes) = (0, 0);
    for e in 0..epochs {
        let (s, b) = run_epoch(e)?;
        samples += s;
        bytes += b;
    }
    let loader_secs = t.elapsed().as_secs_f64();

    // Baseline: one thread copying the same number of bytes, batch-sized, between two
    // contiguous buffers.
    let per_batch = (bytes / (samples.div_ceil(batch_size as u64)).max(1)) as usize;
    let src = vec![1u8; per_batch.max(1)];
    let mut dst = vec![0u8; per_batch.max(1)];
    let t = Instant::now();
    let mut copied = 0u64;
    while copied < bytes {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        copied += per_batch.max(1) as u64;
    }
    let memcpy_secs = t.elapsed().as_secs_f64();

    let loader_gbps = bytes as f64 / loader_secs / 1e9;
    let memcpy_gbps = copied as f64 / memcpy_secs / 1e9;
    println!(
        "loader  {:.0} samples/s, {:.2} GB/s ({} threads, batch {batch_size}, {epochs} epochs)",
        samples as f64 / loader_secs,
        loader_gbps,
        if threads == 0 {
            rayon::current_num_threads()
        } else {
            threads
        }
    );
    println!("memcpy  {memcpy_gbps:.2} GB/s (one thread, same bytes)");
    println!("ratio   {:.2}x memcpy", loader_gbps / memcpy_gbps);
    if let Some(path) = json {
        let result = serde_json::json!({
            "benchmark": "slipstream bench",
            "source": source.display().to_string(),
            "batch_size": batch_size,
            "epochs": epochs,
            "threads": if threads == 0 { rayon::current_num_threads() } else { threads },
            "samples_per_s": samples as f64 / loader_secs,
            "loader_gb_per_s": loader_gbps,
            "memcpy_gb_per_s": memcpy_gbps,
            "ratio_vs_memcpy": loader_gbps / memcpy_gbps,
            "machine": machine_info(),
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&result).expect("json"))
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok(0)
}

/// CPU model and core count, for benchmark results.
pub fn machine_info() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "os": std::env::consts::OS,
        "slipstream": env!("CARGO_PKG_VERSION"),
    })
}
