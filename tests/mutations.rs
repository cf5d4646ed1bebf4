//! Damaged input, many ways at random: parsing never panics, and a damaged cache never yields
//! a wrong value (every value read is either the original or an error).

mod common;

use std::fs;
use std::path::Path;

use slipstream::cache::CacheReader;
use slipstream::rng::{Stream, key};

const FIXTURES: [&str; 8] = [
    "full-plain",
    "full-zstd-chunk",
    "full-zstd-batch",
    "full-zstd-sample",
    "flat-arrow",
    "text-arrow-zstd",
    "flat-nopyarrow-batch",
    "tuple-plain",
];

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn mutate(bytes: &mut Vec<u8>, rng: &mut Stream) {
    if bytes.is_empty() {
        return;
    }
    let at = rng.below(bytes.len() as u64) as usize;
    match rng.below(5) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes.truncate(at),
        2 => {
            let end = (at + 4).min(bytes.len());
            let word = rng.next_u64().to_le_bytes();
            bytes[at..end].copy_from_slice(&word[..end - at]);
        }
        3 => bytes
            .splice(at..at, (0..rng.below(16)).map(|_| rng.next_u64() as u8))
            .for_each(drop),
        _ => {
            let end = (at + 1 + rng.below(64) as usize).min(bytes.len());
            bytes.drain(at..end);
        }
    }
}

#[test]
fn damaged_litdata_datasets_never_panic() {
    let mut rng = Stream::new(key(&[2024]));
    let (mut failed, mut built) = (0, 0);
    for name in FIXTURES {
        for round in 0..60 {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("ds");
            copy_dir(&common::fixture(name), &dir);
            let mut files: Vec<_> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| !p.ends_with("expected.json"))
                .collect();
            files.sort();
            let victim = &files[rng.below(files.len() as u64) as usize];
            let mut bytes = fs::read(victim).unwrap();
            for _ in 0..=rng.below(3) {
                mutate(&mut bytes, &mut rng);
            }
            fs::write(victim, &bytes).unwrap();
            match common::open(&dir, &tmp.path().join("cache")) {
                Ok(reader) => {
                    built += 1;
                    for s in 0..reader.len() {
                        for f in 0..reader.fields().len() {
                            let _ = reader.value(f, s);
                        }
                    }
                }
                Err(e) => {
                    failed += 1;
                    assert!(!e.to_string().is_empty(), "{name} round {round}");
                }
            }
        }
    }
    // Most damage is caught; some (a flipped byte inside an image) is not detectable in
    // LitData's format, which has no checksums.
    assert!(failed > built / 2, "failed {failed}, built {built}");
}

fn snapshot(reader: &CacheReader) -> Vec<Vec<String>> {
    (0..reader.len())
        .map(|s| {
            (0..reader.fields().len())
                .map(|f| format!("{:?}", reader.value(f, s).unwrap()))
                .collect()
        })
        .collect()
}

#[test]
fn a_damaged_cache_never_gives_a_wrong_value() {
    let tmp = tempfile::tempdir().unwrap();
    let original = common::open(&common::fixture("full-plain"), tmp.path()).unwrap();
    let want = snapshot(&original);
    let bytes = fs::read(original.path()).unwrap();
    let mut rng = Stream::new(key(&[99]));
    let (mut refused, mut caught, mut intact) = (0, 0, 0);
    for round in 0..400 {
        let mut damaged = bytes.clone();
        // Mostly single flipped bits (bit rot), sometimes worse.
        if round % 4 == 0 {
            mutate(&mut damaged, &mut rng);
        } else {
            let at = rng.below(damaged.len() as u64) as usize;
            damaged[at] ^= 1 << rng.below(8);
        }
        let path = tmp.path().join(format!("damaged-{round}.slipcache"));
        fs::write(&path, &damaged).unwrap();
        let Ok(reader) = CacheReader::open(&path) else {
            refused += 1;
            continue;
        };
        let mut any_error = false;
        for (s, wanted) in want.iter().enumerate() {
            for (f, wanted) in wanted.iter().enumerate() {
                match reader.value(f, s as u64) {
                    Ok(v) => {
                        let v = format!("{v:?}");
                        assert_eq!(&v, wanted, "round {round}: sample {s} field {f} is wrong");
                    }
                    Err(_) => any_error = true,
                }
            }
        }
        if any_error {
            caught += 1
        } else {
            intact += 1
        }
        fs::remove_file(&path).unwrap();
    }
    assert!(
        refused > 0 && caught > 0,
        "refused {refused}, caught {caught}, intact {intact}"
    );
}
