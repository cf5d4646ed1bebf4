//! The loader: every batch holds the right bytes, held batches stay intact, threads end.

mod common;

use std::sync::Arc;

use slipstream::cache::CacheReader;
use slipstream::loader::{Batch, FieldBatch, Loader, LoaderOptions, Ragged};
use slipstream::sampler::{Order, Sampler, SamplerConfig};

fn reader(n: u64) -> (tempfile::TempDir, Arc<CacheReader>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::image_dataset(&tmp.path().join("ds"), n, 5000);
    let reader = common::open(&dir, &tmp.path().join("cache")).unwrap();
    (tmp, Arc::new(reader))
}

fn loader(
    reader: &Arc<CacheReader>,
    batch: usize,
    order: Order,
    options: LoaderOptions,
) -> Arc<Loader> {
    let sampler = Sampler::new(SamplerConfig {
        order,
        page_starts: (order == Order::QuasiRandom).then(|| Arc::new(reader.page_starts())),
        ..SamplerConfig::shuffled(reader.len(), batch, 11)
    })
    .unwrap();
    Arc::new(Loader::new(reader.clone(), sampler, options).unwrap())
}

fn parts(batch: &Batch) -> (Vec<i64>, &Ragged, Vec<i64>) {
    let FieldBatch::Ragged(images) = &batch.fields[0].1 else {
        panic!()
    };
    let FieldBatch::Tensor(labels) = &batch.fields[1].1 else {
        panic!()
    };
    (batch.indices.i64_values(), images, labels.i64_values())
}

fn check_batch(batch: &Batch) {
    let (indices, images, labels) = parts(batch);
    assert_eq!(images.len(), indices.len());
    for (k, &i) in indices.iter().enumerate() {
        assert_eq!(images.item(k), common::image_of(i as u64), "sample {i}");
        assert_eq!(labels[k], i % 10);
    }
    let heights = images.heights.as_ref().unwrap().i64_values();
    assert_eq!(heights[0] as u64, 8 + (indices[0] as u64 % 3) * 4);
}

#[test]
fn held_batches_keep_their_own_data() {
    let (_tmp, reader) = reader(203);
    let l = loader(
        &reader,
        16,
        Order::Random,
        LoaderOptions {
            batches_ahead: 2,
            ..Default::default()
        },
    );
    // Hold every batch of three epochs: buffers are recycled only after a batch is dropped.
    let held: Vec<Batch> = (0..3)
        .flat_map(|e| l.iter(e, 0).map(Result::unwrap))
        .collect();
    assert_eq!(held.len(), 3 * 13);
    held.iter().for_each(check_batch);
    let mut seen: Vec<i64> = held[..13].iter().flat_map(|b| parts(b).0).collect();
    seen.sort();
    assert_eq!(seen, (0..203).collect::<Vec<_>>());
}

#[test]
fn dropped_batches_are_recycled_and_still_correct() {
    let (_tmp, reader) = reader(100);
    let l = loader(&reader, 8, Order::Random, LoaderOptions::default());
    for e in 0..5 {
        for batch in l.iter(e, 0) {
            check_batch(&batch.unwrap());
        }
    }
}

#[test]
fn same_batches_for_any_thread_count_and_prefetch_depth() {
    let (_tmp, reader) = reader(90);
    let plan = |options| -> Vec<Vec<i64>> {
        loader(&reader, 7, Order::Random, options)
            .iter(4, 0)
            .map(|b| parts(&b.unwrap()).0)
            .collect()
    };
    let a = plan(LoaderOptions {
        num_threads: 1,
        batches_ahead: 1,
        ..Default::default()
    });
    let b = plan(LoaderOptions {
        num_threads: 2,
        batches_ahead: 5,
        ..Default::default()
    });
    assert_eq!(a, b);
}

#[test]
fn resume_starts_at_the_requested_batch() {
    let (_tmp, reader) = reader(50);
    let l = loader(&reader, 6, Order::Random, LoaderOptions::default());
    let all: Vec<Vec<i64>> = l.iter(2, 0).map(|b| parts(&b.unwrap()).0).collect();
    let tail: Vec<Vec<i64>> = l.iter(2, 4).map(|b| parts(&b.unwrap()).0).collect();
    assert_eq!(tail, all[4..]);
}

#[test]
fn quasi_random_order_loads_everything() {
    let (_tmp, reader) = reader(120);
    let l = loader(&reader, 10, Order::QuasiRandom, LoaderOptions::default());
    let mut seen: Vec<i64> = l.iter(0, 0).flat_map(|b| parts(&b.unwrap()).0).collect();
    assert_ne!(seen, (0..120).collect::<Vec<_>>(), "shuffled");
    seen.sort();
    assert_eq!(seen, (0..120).collect::<Vec<_>>());
}

#[test]
fn selected_fields_only() {
    let (_tmp, reader) = reader(20);
    let l = loader(
        &reader,
        5,
        Order::Sequential,
        LoaderOptions {
            fields: Some(vec!["label".into()]),
            ..Default::default()
        },
    );
    let batch = l.iter(0, 0).next().unwrap().unwrap();
    assert_eq!(batch.fields.len(), 1);
    assert_eq!(batch.fields[0].0, "label");
    let missing = Loader::new(
        reader.clone(),
        l.sampler().clone(),
        LoaderOptions {
            fields: Some(vec!["nope".into()]),
            ..Default::default()
        },
    );
    let err = missing.err().unwrap().to_string();
    assert!(
        err.contains("no field named 'nope'") && err.contains("image, label"),
        "{err}"
    );
}
