//! Datasets written by the real `litdata.optimize` (tests/fixtures/litdata, made by
//! scripts/make_fixtures.py) read back value for value, in every chunk layout LitData writes.

mod common;

use serde_json::Value;
use slipstream::cache::FieldValue;
use slipstream::source::{Layout, LitDataset};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn check(name: &str) {
    let dir = common::fixture(name);
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let reader = common::open(&dir, cache.path()).unwrap();
    let names: Vec<&str> = expected["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let got: Vec<&str> = reader.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(got, names, "{name}: field names and order");
    let samples = expected["samples"].as_array().unwrap();
    assert_eq!(reader.len(), samples.len() as u64);
    for (i, sample) in samples.iter().enumerate() {
        for (f, want) in sample.as_array().unwrap().iter().enumerate() {
            let value = reader.value(f, i as u64).unwrap();
            let (kind, want) = want.as_object().unwrap().iter().next().unwrap();
            let at = format!("{name} sample {i} field {}", names[f]);
            match (kind.as_str(), value) {
                ("bytes", FieldValue::Bytes(b)) => {
                    assert_eq!(b, hex(want.as_str().unwrap()), "{at}")
                }
                ("int", FieldValue::Int(v)) => assert_eq!(v, want.as_i64().unwrap(), "{at}"),
                ("float", FieldValue::Float(v)) => assert_eq!(v, want.as_f64().unwrap(), "{at}"),
                ("bool", FieldValue::Bool(v)) => assert_eq!(v, want.as_bool().unwrap(), "{at}"),
                ("str", FieldValue::Str(v)) => assert_eq!(v, want.as_str().unwrap(), "{at}"),
                (
                    "pil",
                    FieldValue::Pil {
                        width,
                        height,
                        mode,
                        pixels,
                    },
                ) => {
                    assert_eq!(mode, want["mode"].as_str().unwrap(), "{at}");
                    assert_eq!(width as u64, want["width"].as_u64().unwrap(), "{at}");
                    assert_eq!(height as u64, want["height"].as_u64().unwrap(), "{at}");
                    assert_eq!(pixels, hex(want["pixels"].as_str().unwrap()), "{at}");
                }
                ("array", FieldValue::Array { shape, data }) => {
                    let field = &reader.fields()[f];
                    assert_eq!(
                        field.dtype.unwrap().name(),
                        want["dtype"].as_str().unwrap(),
                        "{at}"
                    );
                    let want_shape: Vec<u32> = want["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap() as u32)
                        .collect();
                    assert_eq!(shape, want_shape, "{at}");
                    assert_eq!(data, hex(want["data"].as_str().unwrap()), "{at}");
                }
                (kind, value) => panic!("{at}: expected {kind}, got {value:?}"),
            }
        }
        reader.verify_sample(i as u64).unwrap();
    }
    reader.verify_tables().unwrap();
}

#[test]
fn classic_chunks_with_every_serializer() {
    check("full-plain");
}

#[test]
fn whole_chunk_zstd() {
    check("full-zstd-chunk");
}

#[test]
fn framed_batch_zstd() {
    check("full-zstd-batch");
}

#[test]
fn per_sample_zstd() {
    check("full-zstd-sample");
}

#[test]
fn arrow_slim_chunks() {
    check("flat-arrow");
}

#[test]
fn arrow_slim_chunks_with_ipc_zstd() {
    check("text-arrow-zstd");
}

#[test]
fn index_says_compressed_but_chunks_are_classic() {
    check("flat-nopyarrow-batch");
}

#[test]
fn tuple_samples() {
    check("tuple-plain");
    let ds = LitDataset::open(common::fixture("tuple-plain")).unwrap();
    assert_eq!(ds.schema.layout, Layout::Tuple);
}

#[test]
fn image_fields_know_their_sizes() {
    let cache = tempfile::tempdir().unwrap();
    let reader = common::open(&common::fixture("full-plain"), cache.path()).unwrap();
    let jpeg = &reader.fields()[0];
    assert!(jpeg.images, "jpeg field is marked as images");
    let r = reader.record(0, 0);
    assert_eq!((r.height, r.width), (16, 24));
    let raw = reader.field_index("raw").unwrap();
    assert!(
        !reader.fields()[raw].images,
        "arbitrary bytes are not images"
    );
}
