//! `slipstream demo`: make a small LitData dataset of generated photographs, cache it, load it.

pub mod scene;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::cache::{self, OpenOptions};
use crate::dlpack::HostTensor;
use crate::error::Result;
use crate::loader::{FieldBatch, Loader, LoaderOptions};
use crate::sampler::{Sampler, SamplerConfig};
use crate::source::writer::LitDataWriter;

/// Write `samples` generated JPEG photographs with labels as a LitData dataset in `dir`
/// (fields `image`: jpeg, `label`: int), in chunks of about `chunk_bytes`.
pub fn make_dataset(dir: &Path, samples: usize, chunk_bytes: usize) -> Result<PathBuf> {
    let pictures: Vec<(Vec<u8>, usize)> = (0..samples as u64)
        .into_par_iter()
        .map(scene::jpeg)
        .collect();
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    let mut writer = LitDataWriter::new(
        &tmp,
        &[("image", "jpeg", "pil"), ("label", "int", "int")],
        chunk_bytes,
    )?;
    for (jpeg, label) in &pictures {
        writer.add(&[jpeg, &(*label as i64).to_le_bytes()])?;
    }
    writer.finish()?;
    // Publish the directory whole, so an interrupted demo never leaves half a dataset.
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(|e| crate::Error::io(dir, e))?;
    Ok(dir.to_path_buf())
}

pub struct DemoOptions {
    pub dir: Option<PathBuf>,
    pub samples: usize,
    pub cache_dir: Option<PathBuf>,
    pub batch_size: usize,
}

pub fn run(options: &DemoOptions) -> Result<()> {
    let cache_dir = options
        .cache_dir
        .clone()
        .unwrap_or_else(cache::default_cache_dir);
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| cache_dir.join(format!("demo-dataset-{}", options.samples)));
    if dir.join("index.json").exists() {
        println!("dataset   {} (generated earlier)", dir.display());
    } else {
        let t = Instant::now();
        make_dataset(&dir, options.samples, 1 << 20)?;
        println!(
            "dataset   generated {} photographs ({:.1} MB) in {:.2} s -> {}",
            options.samples,
            dir_size(&dir) as f64 / 1e6,
            t.elapsed().as_secs_f64(),
            dir.display()
        );
    }

    let t = Instant::now();
    let reader = Arc::new(cache::open(
        &dir,
        &OpenOptions {
            cache_dir: Some(cache_dir),
            ..Default::default()
        },
    )?);
    println!(
        "cache     {} ({} samples) ready in {:.2} s",
        reader.path().display(),
        reader.len(),
        t.elapsed().as_secs_f64()
    );

    let sampler = Sampler::new(SamplerConfig::shuffled(reader.len(), options.batch_size, 0))?;
    let loader = Arc::new(Loader::new(
        reader.clone(),
        sampler,
        LoaderOptions::default(),
    )?);

    let first = loader
        .iter(0, 0)
        .next()
        .transpose()?
        .expect("at least one batch");
    let [
        (_, FieldBatch::Ragged(images)),
        (_, FieldBatch::Tensor(labels)),
    ] = &first.fields[..]
    else {
        unreachable!("the demo dataset holds an image and a label field");
    };
    let (widths, heights) = (
        images
            .widths
            .as_ref()
            .map(HostTensor::i64_values)
            .unwrap_or_default(),
        images
            .heights
            .as_ref()
            .map(HostTensor::i64_values)
            .unwrap_or_default(),
    );
    let names: Vec<&str> = labels
        .i64_values()
        .iter()
        .take(5)
        .map(|&l| scene::CLASSES[l as usize])
        .collect();
    println!(
        "batch 0   {} samples, {:.2} MB of JPEG, first image {}x{}, labels {}, ...",
        images.len(),
        images.data.numel() as f64 / 1e6,
        widths.first().unwrap_or(&0),
        heights.first().unwrap_or(&0),
        names.join(", ")
    );

    // Time whole epochs of raw batches (compressed bytes + labels), prefetch on.
    let (mut samples, mut bytes, mut epochs) = (0u64, 0u64, 0u64);
    let t = Instant::now();
    while epochs < 3 || (t.elapsed().as_secs_f64() < 1.0 && epochs < 1000) {
        for batch in loader.iter(epochs, 0) {
            let batch = batch?;
            samples += batch.indices.numel() as u64;
            for (_, f) in &batch.fields {
                if let FieldBatch::Ragged(r) = f {
                    bytes += r.data.numel() as u64;
                }
            }
        }
        epochs += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "loader    {epochs} epochs of raw batches (batch {}): {:.0} samples/s, {:.2} GB/s on {} threads",
        options.batch_size,
        samples as f64 / secs,
        bytes as f64 / secs / 1e9,
        rayon::current_num_threads()
    );
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
