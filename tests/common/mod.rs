//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use slipstream::cache::{self, BuildOptions, CacheReader, OpenOptions};
use slipstream::source::writer::LitDataWriter;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litdata")
        .join(name)
}

pub fn quiet(cache_dir: &Path) -> OpenOptions {
    OpenOptions {
        cache_dir: Some(cache_dir.to_path_buf()),
        build: BuildOptions {
            threads: 2,
            progress: false,
            ..Default::default()
        },
        rebuild: false,
        ..Default::default()
    }
}

pub fn open(source: &Path, cache_dir: &Path) -> slipstream::Result<CacheReader> {
    cache::open(source, &quiet(cache_dir))
}

/// A small JPEG whose pixels depend on `seed`.
pub fn jpeg(seed: u64, width: u16, height: u16) -> Vec<u8> {
    let pixels: Vec<u8> = (0..width as u64 * height as u64 * 3)
        .map(|i| (slipstream::rng::mix64(seed * 1_000_003 + i) >> 56) as u8)
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// The image bytes of sample `i` of `image_dataset`.
pub fn image_of(i: u64) -> Vec<u8> {
    jpeg(i, 8 + (i % 5) as u16 * 4, 8 + (i % 3) as u16 * 4)
}

/// A LitData dataset of `n` samples {"image": jpeg, "label": i % 10} in chunks of ~`chunk_bytes`.
pub fn image_dataset(dir: &Path, n: u64, chunk_bytes: usize) -> PathBuf {
    let mut w = LitDataWriter::new(
        dir,
        &[("image", "jpeg", "pil"), ("label", "int", "int")],
        chunk_bytes,
    )
    .unwrap();
    for i in 0..n {
        w.add(&[&image_of(i), &((i % 10) as i64).to_le_bytes()])
            .unwrap();
    }
    w.finish().unwrap()
}

/// Threads of this process right now.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}
