//! Crash consistency: a `slipstream build` killed (SIGKILL) anywhere in its work leaves either
//! no cache or a complete one, and the next open gives every sample's exact bytes. Where each
//! kill lands depends on the machine; what is asserted after it does not.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use slipstream::cache::{self, CacheReader};

const TRIALS: u32 = 24;

/// Every sample of `reader` as the reference has it, checksums verified.
fn assert_same_samples(reader: &CacheReader, reference: &CacheReader) {
    assert_eq!(reader.len(), reference.len());
    reader.verify_tables().unwrap();
    reader.verify_samples().unwrap();
    for sample in 0..reference.len() {
        let (got, want) = (reader.values(sample), reference.values(sample));
        assert_eq!(got.unwrap(), want.unwrap(), "sample {sample}");
    }
}

fn build(source: &Path, cache_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipstream"));
    command
        .args(["build", "--quiet", "--threads", "2", "--cache-dir"])
        .arg(cache_dir)
        .arg(source)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

#[test]
fn a_build_killed_anywhere_leaves_no_cache_or_a_whole_one() {
    let tmp = tempfile::tempdir().unwrap();
    let source = common::image_dataset(&tmp.path().join("ds"), 50_000, 256 << 10);
    let reference = common::open(&source, &tmp.path().join("reference")).unwrap();

    // How long one build takes here, to spread the kills over it (and a little past it).
    let started = Instant::now();
    let status = build(&source, &tmp.path().join("timing")).status().unwrap();
    assert!(status.success());
    let whole = started.elapsed();

    let mut complete_before_reopen = 0;
    for trial in 0..TRIALS {
        let cache_dir = tmp.path().join(format!("trial-{trial}"));
        let mut child = build(&source, &cache_dir).spawn().unwrap();
        std::thread::sleep(whole.mul_f64(trial as f64 / (TRIALS - 4) as f64));
        let _ = child.kill(); // SIGKILL; the build may already be over
        child.wait().unwrap();
        // A cache file under its final name is always complete.
        let path = cache::cache_path(&source.canonicalize().unwrap(), &cache_dir);
        if path.exists() {
            complete_before_reopen += 1;
            assert_same_samples(&CacheReader::open(&path).unwrap(), &reference);
        }
        // The next open (rebuilding what the kill left unfinished) has every sample's bytes,
        // and removes the killed build's temporary file.
        let reader = common::open(&source, &cache_dir).unwrap();
        assert_same_samples(&reader, &reference);
        let leftovers: Vec<_> = std::fs::read_dir(&cache_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "trial {trial}: {leftovers:?}");
    }
    eprintln!(
        "{TRIALS} kills over a {:.0} ms build: {complete_before_reopen} left a finished cache",
        whole.as_secs_f64() * 1e3
    );
}
