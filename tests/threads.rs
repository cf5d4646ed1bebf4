//! Prefetch threads end with their iterators. Alone in its own test binary, because it counts
//! the threads of the whole process.

mod common;

use std::sync::Arc;

use slipstream::loader::{Loader, LoaderOptions};
use slipstream::sampler::{Sampler, SamplerConfig};

fn prefetch_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.starts_with("slipstream-pref"))
        })
        .count()
}

/// `count()` once it is at most `target`, or after a minute. A joined thread can stay listed in
/// /proc for a moment after `join` returns (the kernel wakes the joiner before it reaps the
/// task), so a count read right after the join can be one too high; on a loaded machine the
/// moment can be long. The deadline only bounds a failing run.
fn settled(count: fn() -> usize, target: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = count();
        if n <= target || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn two_hundred_iterators_leave_no_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::image_dataset(&tmp.path().join("ds"), 64, 5000);
    let reader = Arc::new(common::open(&dir, &tmp.path().join("cache")).unwrap());
    let sampler = Sampler::new(SamplerConfig::shuffled(64, 4, 1)).unwrap();
    let loader = Arc::new(Loader::new(reader, sampler, LoaderOptions::default()).unwrap());
    drop(loader.iter(0, 0).next());
    let before = common::thread_count();
    for e in 0..200 {
        let mut it = loader.iter(e, 0);
        if e % 2 == 0 {
            it.next().unwrap().unwrap();
        }
        // Dropped mid-epoch, with the prefetch thread blocked on a full queue.
    }
    assert_eq!(settled(prefetch_threads, 0), 0);
    for batch in loader.iter(0, 0) {
        batch.unwrap();
    }
    assert_eq!(
        settled(prefetch_threads, 0),
        0,
        "a finished epoch's thread has ended"
    );
    assert!(
        settled(common::thread_count, before) <= before,
        "no thread of any kind accumulates"
    );
}
