//! The fuzz targets (tests/fuzz_targets/) on mutated seeds: a fixed number of inputs per target
//! from a fixed random seed, so a run is the same everywhere and fails the same way. `make fuzz`
//! runs the same targets under libFuzzer, for as long as it is given.

mod fuzz_targets;

use slipstream::rng::{Stream, key};

fn smoke(target: &str, run: fn(&[u8]), inputs: u64) {
    // Inputs that once failed (tests/fixtures/fuzz/<target>-<what it pinned>), then the seeds.
    for input in fuzz_targets::regressions(target) {
        run(&input);
    }
    let seeds = fuzz_targets::seeds(target);
    for seed in &seeds {
        run(seed);
    }
    let mut rng = Stream::new(key(&[0xf022, target.len() as u64]));
    for _ in 0..inputs {
        let seed = &seeds[rng.below(seeds.len() as u64) as usize];
        let input = fuzz_targets::mutate(seed, &mut rng);
        run(&input);
    }
}

#[test]
fn chunk_parser_survives_mutated_chunks() {
    // Inputs per target: about 40 s of work for all seven on a 2-core machine.
    smoke("chunk", fuzz_targets::chunk, 2_000_000);
}

#[test]
fn index_parser_survives_mutated_index_files() {
    smoke("index", fuzz_targets::index, 700_000);
}

#[test]
fn cache_reader_survives_mutated_caches() {
    smoke("cache_file", fuzz_targets::cache_file, 100_000);
}

#[test]
fn image_decoder_survives_mutated_images() {
    smoke("image", fuzz_targets::image, 180_000);
}

#[test]
fn tar_reader_survives_mutated_shards() {
    smoke("tar", fuzz_targets::tar, 50_000);
}

#[test]
fn parquet_reader_survives_mutated_shards() {
    smoke("parquet", fuzz_targets::parquet, 40_000);
}

#[test]
fn beton_reader_survives_mutated_files() {
    smoke("beton", fuzz_targets::beton, 100_000);
}
