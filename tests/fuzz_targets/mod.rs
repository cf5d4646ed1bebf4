//! The fuzz targets: what slipstream does with bytes from a dataset, a cache or an image file,
//! fed any bytes. A target may fail with an error (that is the point); it must not panic,
//! abort, hang or allocate without bound. `tests/fuzz.rs` runs each on mutated seeds for a fixed
//! number of inputs in `make test`; `fuzz/` runs the same targets under libFuzzer (`make fuzz`).
//! Seeds are the committed LitData fixtures, caches built from them, generated photographs and
//! one small file in each other format (`tests/fixtures/sources/`, by the formats' own writers).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use slipstream::cache::{self, BuildOptions, CacheReader, OpenOptions};
use slipstream::decode::cpu::CpuDecoder;
use slipstream::decode::{DecodePlan, ImagePolicy, Rect, image_size, probe};
use slipstream::rng::Stream;
use slipstream::source::chunk::{decode_chunk, split_item};
use slipstream::source::items::Recycler;
use slipstream::source::litdata::Chunk;
use slipstream::source::{Fingerprint, Format, LitDataset, open_local};

/// Every committed fixture: each LitData layout and serializer.
pub const FIXTURES: &[&str] = &[
    "full-plain",
    "full-zstd-batch",
    "full-zstd-chunk",
    "full-zstd-sample",
    "flat-arrow",
    "flat-nopyarrow-batch",
    "text-arrow-zstd",
    "tuple-plain",
];

pub fn fixture(name: &str) -> PathBuf {
    // The main crate's directory, whether built as its test or as the fuzz crate in fuzz/.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = if here.ends_with("fuzz") {
        here.parent().expect("fuzz/ is inside the repository")
    } else {
        here
    };
    root.join("tests/fixtures/litdata").join(name)
}

/// A fuzz target: any bytes in, nothing out.
pub type Target = fn(&[u8]);

/// The targets by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("chunk", chunk),
    ("index", index),
    ("cache_file", cache_file),
    ("image", image),
    ("tar", tar),
    ("parquet", parquet),
    ("beton", beton),
];

/// What the targets share: the fixtures opened, a scratch directory.
struct World {
    datasets: Vec<LitDataset>,
    scratch: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World {
        datasets: FIXTURES
            .iter()
            .map(|name| LitDataset::open(fixture(name)).expect("fixture opens"))
            .collect(),
        // Memory-backed where there is one: the cache target writes a file per input.
        scratch: tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("scratch directory"),
    })
}

/// Images are decoded up to this size here (the policy itself is under test, not memory).
const MAX_PIXELS: u64 = 1 << 22;
/// Chunks decompress up to this size here.
const MAX_INFLATED: u64 = 1 << 20;

/// A chunk file of the fixture `data[0]` names (its schema), `data[1..]` its bytes: decoded,
/// every item split into leaves and every leaf decoded, as a cache build does.
pub fn chunk(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let dataset = &world().datasets[which as usize % FIXTURES.len()];
    let schema = &dataset.schema;
    // A smaller bound than a real chunk's 64 MiB keeps each input cheap; the bound is the
    // same code either way.
    let chunk = Chunk {
        max_inflated: MAX_INFLATED,
        ..dataset.chunks[0].clone()
    };
    let Ok(decoded) = decode_chunk(bytes.to_vec(), &chunk, schema, &Recycler::default()) else {
        return;
    };
    for i in 0..decoded.items.len() {
        let Ok(leaves) = split_item(decoded.item(i), schema.fields.len()) else {
            continue;
        };
        for (field, leaf) in schema.fields.iter().zip(leaves) {
            if field.serializer.decode(leaf).is_ok() {
                let _ = probe(leaf);
            }
        }
    }
}

/// A WebDataset shard, read as a cache build reads it.
pub fn tar(data: &[u8]) {
    source_file(data, "tar", Format::WebDataset);
}

/// A Parquet shard, read as a cache build reads it.
pub fn parquet(data: &[u8]) {
    source_file(data, "parquet", Format::Parquet);
}

/// An FFCV `.beton` file, read as a cache build reads it.
pub fn beton(data: &[u8]) {
    source_file(data, "beton", Format::Beton);
}

/// `data` as a one-file dataset in `format`: opened, every part read, every item split into
/// leaves and each leaf decoded and its image probed, as a cache build does.
fn source_file(data: &[u8], ext: &str, format: Format) {
    let path = world()
        .scratch
        .path()
        .join(format!("fuzz-{:?}.{ext}", std::thread::current().id()));
    std::fs::write(&path, data).expect("scratch file");
    let Ok(source) = open_local(&path, format, Fingerprint::Mtime) else {
        return;
    };
    let Ok(parts) = source.parts() else {
        return;
    };
    let fields = &source.schema().fields;
    let recycler = Recycler::default();
    for i in 0..parts.len() {
        let Ok(decoded) = source.read_part(i, &recycler) else {
            continue;
        };
        for item in 0..decoded.items.len() {
            let Ok(leaves) = split_item(decoded.item(item), fields.len()) else {
                continue;
            };
            for (field, leaf) in fields.iter().zip(leaves) {
                if field.serializer.decode(leaf).is_ok() {
                    let _ = probe(leaf);
                }
            }
        }
    }
}

/// An `index.json`, parsed with every chunk it names present (1000 bytes each).
pub fn index(data: &[u8]) {
    let root = world().scratch.path();
    let _ = LitDataset::from_remote(root, data.to_vec(), &|_| Ok((1000, "etag".into())));
}

/// A cache file: opened, and every value of every sample read and verified.
pub fn cache_file(data: &[u8]) {
    let path = world()
        .scratch
        .path()
        .join(format!("fuzz-{:?}.slipcache", std::thread::current().id()));
    std::fs::write(&path, data).expect("scratch file");
    let Ok(reader) = CacheReader::open(&path) else {
        return;
    };
    let _ = reader.verify_tables();
    for sample in 0..reader.len().min(64) {
        let _ = reader.values(sample);
        let _ = reader.verify_sample(sample);
    }
}

/// An encoded image: its header probed, then decoded whole, and in a region at a reduced
/// scale (both picked from the bytes), as the pipelines decode.
pub fn image(data: &[u8]) {
    let Ok((width, height)) = image_size(data) else {
        return;
    };
    let policy = ImagePolicy {
        max_pixels: MAX_PIXELS,
        load_truncated: data.len().is_multiple_of(2),
    };
    let mut decoder = CpuDecoder::new();
    let mut out = Vec::new();
    let _ = decoder.decode(data, DecodePlan::full(policy), &mut out);
    let h = data.len() as u32;
    let region = Rect {
        x: h % width.max(1),
        y: (h / 7) % height.max(1),
        w: 1 + h % 97,
        h: 1 + h % 89,
    };
    let plan = DecodePlan {
        eighths: 1 << (h % 4),
        region: Some(region),
        policy,
    };
    let _ = decoder.decode(data, plan, &mut out);
}

/// The inputs that made a target fail once, kept as `tests/fixtures/fuzz/<target>-<what>`.
pub fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = fixture("").parent().expect("fixtures/").join("fuzz");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.expect("fixtures/fuzz/").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{target}-")))
        })
        .collect();
    found.sort();
    found
        .iter()
        .map(|p| std::fs::read(p).expect("regression input"))
        .collect()
}

/// The seeds of each target.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "chunk" => (0..FIXTURES.len())
            .flat_map(|i| {
                world().datasets[i].chunks.iter().map(move |c| {
                    let mut seed = vec![i as u8];
                    seed.extend(std::fs::read(&c.path).expect("fixture chunk"));
                    seed
                })
            })
            .collect(),
        "index" => FIXTURES
            .iter()
            .map(|name| std::fs::read(fixture(name).join("index.json")).expect("fixture index"))
            .collect(),
        "cache_file" => FIXTURES
            .iter()
            .map(|name| {
                let dir = world().scratch.path().join("caches");
                let options = OpenOptions {
                    cache_dir: Some(dir),
                    build: BuildOptions {
                        threads: 1,
                        progress: false,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let reader = cache::open(&fixture(name), &options).expect("fixture cache");
                std::fs::read(reader.path()).expect("cache file")
            })
            .collect(),
        "image" => (jpeg_seeds().into_iter())
            .chain(png_seeds())
            .chain(webp_seeds())
            .collect(),
        "tar" | "parquet" | "beton" => source_seeds(target),
        other => panic!("no fuzz target {other}"),
    }
}

/// The committed files of `tests/fixtures/sources/` whose extension is `ext`.
fn source_seeds(ext: &str) -> Vec<Vec<u8>> {
    let dir = fixture("").parent().expect("fixtures/").join("sources");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/sources/")
        .map(|e| e.expect("tests/fixtures/sources/").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .{ext} seeds in {}", dir.display());
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("seed"))
        .collect()
}

/// Small JPEGs of the kinds datasets hold: 4:2:0, 4:4:4, progressive, grayscale.
fn jpeg_seeds() -> Vec<Vec<u8>> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let (w, h) = (45u16, 37u16);
    let rgb: Vec<u8> = (0..w as usize * h as usize * 3)
        .map(|i| (slipstream::rng::mix64(i as u64) >> 56) as u8)
        .collect();
    let kinds = [
        (SamplingFactor::F_2_2, false, ColorType::Rgb),
        (SamplingFactor::F_1_1, false, ColorType::Rgb),
        (SamplingFactor::F_2_2, true, ColorType::Rgb),
        (SamplingFactor::F_1_1, false, ColorType::Luma),
    ];
    kinds
        .into_iter()
        .map(|(sampling, progressive, color)| {
            let mut out = Vec::new();
            let mut encoder = Encoder::new(&mut out, 80);
            encoder.set_sampling_factor(sampling);
            encoder.set_progressive(progressive);
            let pixels = match color {
                ColorType::Luma => rgb.iter().step_by(3).copied().collect(),
                _ => rgb.clone(),
            };
            encoder.encode(&pixels, w, h, color).expect("jpeg");
            out
        })
        .collect()
}

/// Lossless WebP made here, lossy ones (with and without alpha) by libwebp.
fn webp_seeds() -> Vec<Vec<u8>> {
    let pixels: Vec<u8> = (0..11 * 6 * 4).map(|i| (i * 29 % 256) as u8).collect();
    let mut lossless = Vec::new();
    image_webp::WebPEncoder::new(&mut lossless)
        .encode(&pixels, 11, 6, image_webp::ColorType::Rgba8)
        .expect("webp");
    let mut seeds = source_seeds("webp");
    seeds.push(lossless);
    seeds
}

fn png_seeds() -> Vec<Vec<u8>> {
    [png::ColorType::Rgb, png::ColorType::GrayscaleAlpha]
        .into_iter()
        .map(|color| {
            let channels = if color == png::ColorType::Rgb { 3 } else { 2 };
            let mut bytes = Vec::new();
            let mut encoder = png::Encoder::new(&mut bytes, 9, 7);
            encoder.set_color(color);
            let mut writer = encoder.write_header().expect("png header");
            let pixels: Vec<u8> = (0..9 * 7 * channels).map(|i| (i * 37) as u8).collect();
            writer.write_image_data(&pixels).expect("png data");
            drop(writer);
            bytes
        })
        .collect()
}

/// `seed` changed by a few random edits of the kinds that break parsers: bit flips,
/// interesting bytes and 32-bit integers, truncation, duplicated or removed runs, appended
/// bytes.
pub fn mutate(seed: &[u8], rng: &mut Stream) -> Vec<u8> {
    let mut out = seed.to_vec();
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let len = out.len() as u64;
        let at = if len == 0 { 0 } else { rng.below(len) as usize };
        match rng.below(8) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 if !out.is_empty() => {
                out[at] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xd8, 0xd9, 0xfe][rng.below(8) as usize]
            }
            2 if out.len() >= at + 4 => {
                let value: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, len as u32, (len + 1) as u32]
                    [rng.below(6) as usize];
                out[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            3 => out.truncate(at),
            4 if !out.is_empty() => {
                let end = (at + 1 + rng.below(64) as usize).min(out.len());
                let run = out[at..end].to_vec();
                let to = rng.below(len + 1) as usize;
                out.splice(to..to, run);
            }
            5 if !out.is_empty() => {
                let end = (at + 1 + rng.below(64) as usize).min(out.len());
                out.drain(at..end);
            }
            6 => out.extend((0..rng.below(32)).map(|_| rng.below(256) as u8)),
            _ if out.len() >= at + 2 => {
                let value = [0u16, 0xffff, 0x8000][rng.below(3) as usize];
                out[at..at + 2].copy_from_slice(&value.to_be_bytes());
            }
            _ => {}
        }
    }
    out
}
