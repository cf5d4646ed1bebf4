//! Bad input gives an error that names the file (and the sample), never a crash, a hang or
//! wrong bytes. One test per defect.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use slipstream::Error;
use slipstream::cache::CacheReader;

/// A 30-sample dataset in several chunks, in a fresh directory.
fn dataset() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::image_dataset(&tmp.path().join("ds"), 30, 4000);
    (tmp, dir)
}

fn edit_index(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut index);
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

fn open_err(dir: &Path) -> Error {
    let cache = tempfile::tempdir().unwrap();
    let err = common::open(dir, cache.path()).expect_err("bad input must fail");
    let leftovers: Vec<_> = fs::read_dir(cache.path())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|n| n.to_string_lossy().ends_with(".lock")),
        "a failed build leaves no cache or temporary file behind: {leftovers:?}"
    );
    err
}

fn chunk_offsets(path: &Path) -> Vec<u32> {
    let b = fs::read(path).unwrap();
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    (0..=n)
        .map(|i| u32::from_le_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap()))
        .collect()
}

fn assert_format(err: &Error, file: &str, needle: &str) {
    let message = err.to_string();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    assert!(message.contains(file), "names {file}: {message}");
    assert!(message.contains(needle), "says {needle:?}: {message}");
}

#[test]
fn truncated_chunk() {
    let (_tmp, dir) = dataset();
    let chunk = dir.join("chunk-0-1.bin");
    let len = fs::metadata(&chunk).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&chunk).unwrap();
    f.set_len(len - 10).unwrap();
    let err = open_err(&dir);
    assert_format(&err, "chunk-0-1.bin", "past the end of the file");
    assert!(
        err.to_string().contains("(sample "),
        "names the sample: {err}"
    );
}

#[test]
fn offsets_past_the_end() {
    let (_tmp, dir) = dataset();
    let chunk = dir.join("chunk-0-0.bin");
    let mut bytes = fs::read(&chunk).unwrap();
    let n = chunk_offsets(&chunk).len() - 1;
    // Point the second item's end far past the file.
    bytes[4 + 4 * 2..4 + 4 * 3].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&chunk, bytes).unwrap();
    assert!(n >= 2);
    let err = open_err(&dir);
    assert_format(&err, "chunk-0-0.bin", "past the end");
    assert!(err.to_string().contains("(sample 1)"), "{err}");
}

#[test]
fn leaf_sizes_that_do_not_add_up() {
    let (_tmp, dir) = dataset();
    let chunk = dir.join("chunk-0-0.bin");
    let offsets = chunk_offsets(&chunk);
    let mut bytes = fs::read(&chunk).unwrap();
    // The first item's first leaf size, made one too large.
    let at = offsets[0] as usize;
    let size = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(size + 1).to_le_bytes());
    fs::write(&chunk, bytes).unwrap();
    let err = open_err(&dir);
    assert_format(&err, "chunk-0-0.bin", "sample 0");
}

#[test]
fn item_count_disagrees_with_index() {
    let (_tmp, dir) = dataset();
    edit_index(&dir, |i| i["chunks"][0]["chunk_size"] = 99.into());
    let err = open_err(&dir);
    assert_format(&err, "chunk-0-0.bin", "index.json says 99");
}

#[test]
fn corrupt_index_json() {
    let (_tmp, dir) = dataset();
    fs::write(dir.join("index.json"), b"{\"chunks\": [").unwrap();
    assert_format(
        &open_err(&dir),
        "index.json",
        "not valid LitData index JSON",
    );
}

#[test]
fn index_json_without_config() {
    let (_tmp, dir) = dataset();
    edit_index(&dir, |i| {
        i.as_object_mut().unwrap().remove("config");
    });
    assert_format(&open_err(&dir), "index.json", "config");
}

#[test]
fn missing_index_json() {
    let (_tmp, dir) = dataset();
    fs::remove_file(dir.join("index.json")).unwrap();
    assert_format(&open_err(&dir), "index.json", "missing");
}

#[test]
fn missing_chunk_file() {
    let (_tmp, dir) = dataset();
    fs::remove_file(dir.join("chunk-0-2.bin")).unwrap();
    assert_format(&open_err(&dir), "chunk-0-2.bin", "missing");
}

#[test]
fn chunk_name_outside_the_dataset() {
    let (tmp, dir) = dataset();
    fs::write(
        tmp.path().join("outside.bin"),
        fs::read(dir.join("chunk-0-0.bin")).unwrap(),
    )
    .unwrap();
    for name in ["../outside.bin", "/etc/passwd"] {
        edit_index(&dir, |i| i["chunks"][0]["filename"] = name.into());
        assert_format(
            &open_err(&dir),
            "index.json",
            "outside the dataset directory",
        );
    }
}

#[test]
fn unknown_serializer() {
    let (_tmp, dir) = dataset();
    edit_index(&dir, |i| i["config"]["data_format"][1] = "mystery".into());
    let err = open_err(&dir);
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("'label'") && message.contains("mystery"),
        "{message}"
    );
    assert!(
        message.contains("Supported serializers"),
        "says what to do: {message}"
    );
}

#[test]
fn encrypted_dataset() {
    let (_tmp, dir) = dataset();
    edit_index(&dir, |i| {
        i["config"]["encryption"] = serde_json::json!({"algorithm": "fernet"})
    });
    let err = open_err(&dir);
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("encrypted"), "{err}");
}

#[test]
fn parquet_item_loader() {
    let (_tmp, dir) = dataset();
    edit_index(&dir, |i| {
        i["config"]["item_loader"] = "ParquetLoader".into()
    });
    let err = open_err(&dir);
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("ParquetLoader") && message.contains("PyTreeLoader"),
        "{message}"
    );
    assert!(
        message.contains(dir.file_name().unwrap().to_str().unwrap()),
        "names the dataset"
    );
}

#[test]
fn nested_samples() {
    let (_tmp, dir) = dataset();
    let leaf = serde_json::json!({"type": null, "context": null, "children_spec": []});
    let list =
        serde_json::json!({"type": "builtins.list", "context": "null", "children_spec": [leaf]});
    let spec = serde_json::json!([1, {"type": "builtins.dict", "context": "[\"image\", \"label\"]", "children_spec": [leaf, list]}]);
    edit_index(&dir, |i| i["config"]["data_spec"] = spec.to_string().into());
    let err = open_err(&dir);
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("flat dict"), "{err}");
}

#[test]
fn empty_dataset() {
    let (_tmp, dir) = dataset();
    edit_index(&dir, |i| i["chunks"] = serde_json::json!([]));
    assert_format(&open_err(&dir), "index.json", "empty");
}

#[test]
fn corrupt_zstd_chunk() {
    let (_tmp, dir) = dataset();
    let mut garbage = vec![0x28, 0xb5, 0x2f, 0xfd];
    garbage.extend_from_slice(&[0x55; 64]);
    fs::write(dir.join("chunk-0-1.bin"), garbage).unwrap();
    assert_format(&open_err(&dir), "chunk-0-1.bin", "does not decompress");
}

#[test]
fn wrong_value_size_for_int() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = slipstream::source::writer::LitDataWriter::new(
        tmp.path().join("ds"),
        &[("label", "int", "int")],
        1000,
    )
    .unwrap();
    w.add(&[&7i64.to_le_bytes()]).unwrap();
    w.add(&[&[1, 2, 3]]).unwrap();
    let dir = w.finish().unwrap();
    let err = open_err(&dir);
    assert_format(&err, "chunk-0-0.bin", "sample 1");
    assert!(err.to_string().contains("expected 8 bytes"), "{err}");
}

/// The data region offset of sample `s`'s image, and its record.
fn corrupt_one_byte(reader: &CacheReader, sample: u64) -> PathBuf {
    let r = reader.record(0, sample);
    let path = reader.path().to_path_buf();
    let mut bytes = fs::read(&path).unwrap();
    bytes[r.offset as usize + 3] ^= 0x40;
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn cache_checksum_failure_names_the_sample() {
    let (_tmp, dir) = dataset();
    let cache = tempfile::tempdir().unwrap();
    let path = {
        let reader = common::open(&dir, cache.path()).unwrap();
        corrupt_one_byte(&reader, 17)
    };
    let reader = CacheReader::open(&path).unwrap();
    for s in 0..30 {
        let result = reader.verify_sample(s);
        if s == 17 {
            let err = result.expect_err("the flipped byte is found");
            assert!(matches!(err, Error::Checksum { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains("(sample 17)") && message.contains("'image'"),
                "{message}"
            );
        } else {
            result.unwrap();
        }
    }
    // The command line says so too, with a failing exit status.
    let code =
        slipstream::cli::run(["slipstream", "verify", path.to_str().unwrap()].map(String::from));
    assert_eq!(code, 1);
}

#[test]
fn truncated_cache_is_refused_and_rebuilt() {
    let (_tmp, dir) = dataset();
    let cache = tempfile::tempdir().unwrap();
    let path = common::open(&dir, cache.path())
        .unwrap()
        .path()
        .to_path_buf();
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let err = CacheReader::open(&path).expect_err("a truncated cache does not open");
    assert!(matches!(err, Error::Cache { .. }), "{err:?}");
    // Opening the dataset notices the broken cache and builds a good one.
    let reader = common::open(&dir, cache.path()).unwrap();
    assert_eq!(reader.len(), 30);
    assert_eq!(reader.value_bytes(0, 5).unwrap(), common::image_of(5));
}

#[test]
fn not_a_cache_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.slipcache");
    fs::write(&path, vec![7u8; 200]).unwrap();
    let err = CacheReader::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a slipstream cache"), "{err}");
}
