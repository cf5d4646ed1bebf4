//! The cache is built once, reused while the source is unchanged, rebuilt when it changes,
//! and built once when several processes ask for it at the same time.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Barrier};

use slipstream::cache::{self, CacheReader};

#[test]
fn bytes_and_labels_match_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::image_dataset(&tmp.path().join("ds"), 57, 3000);
    let reader = common::open(&dir, &tmp.path().join("cache")).unwrap();
    assert_eq!(reader.len(), 57);
    for i in 0..57 {
        assert_eq!(reader.value_bytes(0, i).unwrap(), common::image_of(i));
        assert_eq!(reader.int(1, i), (i % 10) as i64);
        let r = reader.record(0, i);
        assert_eq!(r.width as u64, 8 + (i % 5) * 4);
        assert_eq!(r.height as u64, 8 + (i % 3) * 4);
    }
}

#[test]
fn data_is_aligned_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::image_dataset(&tmp.path().join("ds"), 20, 3000);
    let reader = common::open(&dir, &tmp.path().join("cache")).unwrap();
    let h = reader.header();
    assert_eq!(h.data.offset % 4096, 0);
    for f in &h.fields {
        for t in [f.values, f.records, f.shapes, f.modes]
            .into_iter()
            .flatten()
        {
            assert_eq!(t.offset % 64, 0, "tables are 64-byte aligned");
        }
    }
    for i in 0..20 {
        assert_eq!(reader.record(0, i).offset % h.sample_alignment, 0);
    }
}

#[test]
fn reused_while_unchanged_rebuilt_when_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let dir = common::image_dataset(&tmp.path().join("ds"), 40, 3000);
    let first = common::open(&dir, &cache_dir).unwrap();
    let inode = fs::metadata(first.path()).unwrap().ino();
    let again = common::open(&dir, &cache_dir).unwrap();
    assert_eq!(
        fs::metadata(again.path()).unwrap().ino(),
        inode,
        "not rebuilt"
    );

    // Rewrite the source with different labels: the old cache must not be used.
    let mut w = slipstream::source::writer::LitDataWriter::new(
        &dir,
        &[("image", "jpeg", "pil"), ("label", "int", "int")],
        3000,
    )
    .unwrap();
    for i in 0..40u64 {
        w.add(&[&common::image_of(i), &(100 + i as i64).to_le_bytes()])
            .unwrap();
    }
    w.finish().unwrap();
    // Same sizes as before; the rewrite shows in the modification times, set here rather than
    // left to the clock, whose ticks may be coarser than the rewrite took.
    for entry in fs::read_dir(&dir).unwrap() {
        let file = fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        file.set_modified(later).unwrap();
    }
    let rebuilt = common::open(&dir, &cache_dir).unwrap();
    assert_ne!(
        fs::metadata(rebuilt.path()).unwrap().ino(),
        inode,
        "rebuilt"
    );
    assert_eq!(rebuilt.int(1, 3), 103);
    // The reader opened before the rebuild still sees its own, intact, file.
    assert_eq!(first.int(1, 3), 3);
    assert_eq!(first.value_bytes(0, 3).unwrap(), common::image_of(3));
}

#[test]
fn concurrent_openers_build_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let dir = common::image_dataset(&tmp.path().join("ds"), 300, 20_000);
    let barrier = Arc::new(Barrier::new(4));
    let inodes: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let barrier = barrier.clone();
                let (dir, cache_dir) = (&dir, &cache_dir);
                s.spawn(move || {
                    barrier.wait();
                    let reader = common::open(dir, cache_dir).unwrap();
                    assert_eq!(reader.value_bytes(0, 299).unwrap(), common::image_of(299));
                    fs::metadata(reader.path()).unwrap().ino()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        inodes.windows(2).all(|w| w[0] == w[1]),
        "one build: {inodes:?}"
    );
    let leftovers: Vec<_> = fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_killed_build_leaves_nothing_the_next_build_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let dir = common::image_dataset(&tmp.path().join("ds"), 10, 3000);
    let path = cache::cache_path(&dir.canonicalize().unwrap(), &cache_dir);
    fs::create_dir_all(&cache_dir).unwrap();
    let abandoned = cache_dir.join(format!(
        ".{}.tmp-999999",
        path.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&abandoned, b"half a cache").unwrap();
    let reader = common::open(&dir, &cache_dir).unwrap();
    assert_eq!(reader.path(), path);
    assert!(!abandoned.exists(), "the abandoned temporary file is gone");
}

#[test]
fn forced_rebuild_replaces_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let dir = common::image_dataset(&tmp.path().join("ds"), 10, 3000);
    let first = common::open(&dir, &cache_dir).unwrap();
    let inode = fs::metadata(first.path()).unwrap().ino();
    let mut options = common::quiet(&cache_dir);
    options.rebuild = true;
    let second = cache::open(&dir, &options).unwrap();
    assert_ne!(fs::metadata(second.path()).unwrap().ino(), inode);
}

#[test]
fn cache_file_opens_directly_and_index_json_means_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let dir = common::image_dataset(&tmp.path().join("ds"), 10, 3000);
    let path = common::open(&dir, &cache_dir).unwrap().path().to_path_buf();
    assert_eq!(CacheReader::open(&path).unwrap().len(), 10);
    assert_eq!(common::open(&path, &cache_dir).unwrap().len(), 10);
    let via_index = common::open(&dir.join("index.json"), &cache_dir).unwrap();
    assert_eq!(via_index.path(), path);
}

#[test]
fn default_cache_dir_follows_the_environment() {
    let dir = cache::default_cache_dir();
    match std::env::var_os("SLIPSTREAM_CACHE_DIR") {
        Some(d) if !d.is_empty() => assert_eq!(dir, std::path::PathBuf::from(d)),
        _ => assert!(dir.ends_with("slipstream") || dir.ends_with("slipstream-cache")),
    }
}
