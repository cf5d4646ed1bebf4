//! Caches of datasets on S3: the LitData dataset is downloaded into a local mirror while the
//! cache is built from it, chunk by chunk as chunks arrive, so a cold start costs about the
//! download.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::paths::file_name_part;
use super::writer::{BuildOptions, build_cache};
use crate::error::{Error, Result};
use crate::s3::{RemoteObject, S3Client, S3Location};
use crate::source::LitDataset;

/// Where the files of `at` are mirrored under `cache_dir`.
pub(super) fn mirror_dir(cache_dir: &Path, at: &S3Location) -> PathBuf {
    let hash = xxhash_rust::xxh3::xxh3_64(at.url().as_bytes());
    let name = at
        .prefix
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    cache_dir
        .join("s3")
        .join(file_name_part(&at.bucket))
        .join(format!(
            "{}-{hash:016x}",
            file_name_part(if name.is_empty() { "root" } else { name })
        ))
}

/// Which chunks are on disk; the build waits on it.
#[derive(Default)]
struct Arrivals {
    state: Mutex<Vec<Option<std::result::Result<(), String>>>>,
    changed: Condvar,
}

impl Arrivals {
    fn set(&self, i: usize, outcome: std::result::Result<(), String>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state[i] = Some(outcome);
        self.changed.notify_all();
    }

    /// Mark every chunk not yet arrived as failed (the download ended early).
    fn abandon(&self, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for s in state.iter_mut().filter(|s| s.is_none()) {
            *s = Some(Err(why.to_string()));
        }
        self.changed.notify_all();
    }

    fn wait(&self, i: usize, url: &str) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &state[i] {
                Some(Ok(())) => return Ok(()),
                Some(Err(why)) => {
                    return Err(Error::Io {
                        path: PathBuf::from(url),
                        source: std::io::Error::other(format!("not downloaded: {why}")),
                    });
                }
                None => state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Build the cache of `dataset` at `path` from its chunk `objects` while they download.
pub(super) fn download_and_build(
    client: &S3Client,
    at: &S3Location,
    objects: &[RemoteObject],
    dataset: &LitDataset,
    path: &Path,
    options: &BuildOptions,
) -> Result<()> {
    let started = Instant::now();
    let arrivals = Arc::new(Arrivals {
        state: Mutex::new(vec![None; objects.len()]),
        changed: Condvar::new(),
    });
    let gate = {
        let arrivals = Arc::clone(&arrivals);
        let keys: Vec<String> = objects
            .iter()
            .map(|o| format!("s3://{}/{}", at.bucket, at.key(&o.name)))
            .collect();
        Arc::new(move |i: usize| arrivals.wait(i, &keys[i]))
    };
    let build_options = BuildOptions {
        // The download's bar shows the progress; the build follows it chunk by chunk.
        progress: false,
        chunk_ready: Some(gate),
        ..options.clone()
    };
    let (downloaded, built) = std::thread::scope(|scope| {
        let download = scope.spawn(|| {
            let outcome = client.download(at, objects, &dataset.root, options.progress, &|i, r| {
                arrivals.set(i, r)
            });
            if let Err(e) = &outcome {
                arrivals.abandon(&e.to_string());
            }
            outcome
        });
        let built = build_cache(dataset, path, &build_options);
        let downloaded = download
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("the download thread panicked".into())));
        (downloaded, built)
    });
    // The download's error names the object; the build's only says a chunk never came.
    downloaded?;
    let report = built?;
    if options.progress {
        let seconds = started.elapsed().as_secs_f64();
        crate::progress::say(&format!(
            "slipstream: {} ({} samples, {:.1} MB) downloaded and cached in {seconds:.1} s \
             ({:.0} MB/s) -> {}",
            at.url(),
            report.samples,
            report.source_bytes as f64 / 1e6,
            report.source_bytes as f64 / 1e6 / seconds,
            path.display()
        ));
    }
    Ok(())
}
