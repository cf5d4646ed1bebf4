//! `slipstream demo`: make a small LitData dataset of generated photographs, cache it, load it.

pub mod scene;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::cache::{self, CacheReader, OpenOptions};
use crate::dtype::DType;
use crate::error::Result;
use crate::loader::{FieldBatch, Loader, LoaderOptions};
use crate::sampler::{Sampler, SamplerConfig};
use crate::source::writer::LitDataWriter;
use crate::tensor::HostTensor;
use crate::transform::gpu_api::GpuStages;
use crate::transform::{Device, GpuDecoder, IMAGENET_MEAN, IMAGENET_STD, PipelineSpec};

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
            cache_dir: Some(cache_dir.clone()),
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
    show_first_batch(&loader)?;
    time_raw_batches(&loader, options.batch_size)?;
    time_pipeline(&reader, options.batch_size, &cache_dir)
}

/// Print what the first raw batch holds.
fn show_first_batch(loader: &Arc<Loader>) -> Result<()> {
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
    Ok(())
}

/// Time whole epochs of raw batches (compressed bytes + labels), prefetch on.
fn time_raw_batches(loader: &Arc<Loader>, batch_size: usize) -> Result<()> {
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
        "raw       {epochs} epochs of raw batches (batch {batch_size}): {:.0} samples/s, {:.2} GB/s on {} threads",
        samples as f64 / secs,
        bytes as f64 / secs / 1e9,
        rayon::current_num_threads()
    );
    Ok(())
}

/// Time the training pipeline (decode + RandomResizedCrop(224) + flip + normalize) on the GPU
/// when there is one (and this build has the GPU path), else on the CPU, and write the first
/// augmented batch as a picture under `cache_dir`.
fn time_pipeline(reader: &Arc<CacheReader>, batch_size: usize, cache_dir: &Path) -> Result<()> {
    let spec = PipelineSpec::imagenet_training(224, DType::Float32, true);
    let pipeline_loader = |device| {
        let sampler = Sampler::new(SamplerConfig::shuffled(reader.len(), batch_size, 0))?;
        Loader::new(
            reader.clone(),
            sampler,
            LoaderOptions {
                pipelines: vec![spec.clone()],
                device,
                ..Default::default()
            },
        )
    };
    let gpu = Device::Cuda {
        ordinal: 0,
        decoder: GpuDecoder::Auto,
        roi_decode: true,
    };
    let (pipeline, path) = match pipeline_loader(gpu) {
        Ok(l) => {
            let path = l.gpu().map(|g| g.describe()).unwrap_or_default();
            (Arc::new(l), path)
        }
        Err(crate::Error::Cuda(why)) => {
            println!("device    CPU (no GPU path: {why})");
            let l = pipeline_loader(Device::Cpu)?;
            let path = format!("CPU, {} threads", rayon::current_num_threads());
            (Arc::new(l), path)
        }
        Err(e) => return Err(e),
    };
    let (mut images, mut epochs, mut picture) = (0u64, 0u64, None);
    let t = Instant::now();
    while epochs < 2 || (t.elapsed().as_secs_f64() < 2.0 && epochs < 100) {
        for batch in pipeline.iter(epochs, 0) {
            let batch = batch?;
            images += batch.indices.numel() as u64;
            if picture.is_none() {
                picture = match batch.fields.first() {
                    Some((_, FieldBatch::Tensor(t))) => Some((t.shape.clone(), t.bytes().to_vec())),
                    Some((_, FieldBatch::Device(t))) => Some((t.shape().to_vec(), t.to_host()?)),
                    _ => None,
                };
            }
        }
        epochs += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "pipeline  decode + RandomResizedCrop(224) + flip + normalize (batch {batch_size}): {:.0} images/s on {path}",
        images as f64 / secs,
    );
    if let Some((shape, bytes)) = picture {
        let path = cache_dir.join("demo-batch.png");
        write_grid(&shape, &bytes, &path)?;
        println!(
            "picture   first augmented batch, de-normalized: {}",
            path.display()
        );
    }
    Ok(())
}

/// Write a normalized float32 batch [B, 3, H, W] (its shape and bytes) as a PNG grid of its
/// images, de-normalized.
fn write_grid(shape: &[i64], bytes: &[u8], path: &Path) -> Result<()> {
    let (b, h, w) = (shape[0] as usize, shape[2] as usize, shape[3] as usize);
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|v| f32::from_le_bytes(v.try_into().unwrap()))
        .collect();
    let (columns, gap) = (8usize.min(b), 4usize);
    let rows = b.div_ceil(columns);
    let (gw, gh) = (columns * (w + gap) + gap, rows * (h + gap) + gap);
    let mut grid = vec![255u8; gw * gh * 3];
    for i in 0..b {
        let (ox, oy) = (
            gap + (i % columns) * (w + gap),
            gap + (i / columns) * (h + gap),
        );
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let v = values[((i * 3 + c) * h + y) * w + x];
                    let u = (v * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255.0;
                    grid[((oy + y) * gw + ox + x) * 3 + c] = u.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    let file = std::fs::File::create(path).map_err(|e| crate::Error::io(path, e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), gw as u32, gh as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&grid))
        .map_err(|e| crate::Error::io(path, std::io::Error::other(e)))?;
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
