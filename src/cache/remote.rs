//! Caches of datasets on S3: list and download the LitData dataset into a local mirror while
//! the cache is built from it, chunk by chunk as chunks arrive, so a cold start costs about
//! the download.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use super::{
    BuildOptions, CacheReader, OpenOptions, build_cache, default_cache_dir, file_name_part,
    open_or_build,
};
use crate::error::{Error, IoContext, Location, Result};
use crate::source::LitDataset;
use crate::source::litdata::INDEX_FILENAME;
use crate::source::s3::{RemoteObject, S3Client, S3Location, S3Options};

/// Where the files of `at` are mirrored under `cache_dir`.
pub fn mirror_dir(cache_dir: &Path, at: &S3Location) -> PathBuf {
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

/// The cache of the LitData dataset at `url` (`s3://bucket/prefix/`), downloading and building
/// it when there is none for the dataset's current version.
pub fn open_s3(url: &str, s3: &S3Options, options: &OpenOptions) -> Result<CacheReader> {
    let at = S3Location::parse(url)?;
    let cache_dir = options.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let mirror = mirror_dir(&cache_dir, &at);
    std::fs::create_dir_all(&mirror).at(&mirror)?;
    let client = S3Client::new(s3)?;
    let listing = client.list(&at)?;
    let objects: HashMap<&str, &RemoteObject> =
        listing.iter().map(|o| (o.name.as_str(), o)).collect();
    if !objects.contains_key(INDEX_FILENAME) {
        return Err(Error::format(
            Location::file(at.url() + INDEX_FILENAME),
            format!(
                "no {INDEX_FILENAME} under {}: not a LitData optimized dataset ({} objects there)",
                at.url(),
                listing.len()
            ),
        ));
    }
    let index = client.get(&at, INDEX_FILENAME)?;
    let index_path = mirror.join(INDEX_FILENAME);
    let tmp = mirror.join(format!(".{INDEX_FILENAME}.tmp"));
    std::fs::write(&tmp, &index).at(&tmp)?;
    std::fs::rename(&tmp, &index_path).at(&index_path)?;
    let dataset = LitDataset::from_remote(&mirror, index, &|name| {
        objects
            .get(name)
            .map(|o| (o.size, o.etag.clone()))
            .ok_or_else(|| {
                Error::format(
                    Location::file(at.key(name)),
                    format!(
                        "chunk file listed in {} is not in the bucket",
                        at.url() + INDEX_FILENAME
                    ),
                )
            })
    })?;
    let build = |dataset: &LitDataset, path: &Path| -> Result<()> {
        let wanted: Vec<RemoteObject> = dataset
            .chunks
            .iter()
            .map(|c| (*objects[c.entry.filename.as_str()]).clone())
            .collect();
        download_and_build(&client, &at, &wanted, dataset, path, &options.build)
    };
    open_or_build(&dataset, &cache_dir, options, &build)
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

fn download_and_build(
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
        eprintln!(
            "slipstream: {} ({} samples, {:.1} MB) downloaded and cached in {seconds:.1} s \
             ({:.0} MB/s) -> {}",
            at.url(),
            report.samples,
            report.source_bytes as f64 / 1e6,
            report.source_bytes as f64 / 1e6 / seconds,
            path.display()
        );
    }
    Ok(())
}

/// A built cache in the shared store: the cache file, then this manifest, which is written
/// last so that a cache whose upload did not finish is never used.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SharedManifest {
    fingerprint: String,
    size: u64,
    samples: u64,
    /// The dataset the cache was built from, as the uploader saw it.
    source: String,
    uploaded_unix: u64,
}

const SHARED_FILE: &str = "cache.slipcache";
const SHARED_MANIFEST: &str = "manifest.json";

/// Caches shared through an S3 prefix (`remote_cache=`): one sub-prefix per dataset version,
/// `<dataset name>-<fingerprint>/`, holding the cache file and its manifest.
pub struct SharedCache {
    at: S3Location,
    options: S3Options,
    /// Made on first use: opening a dataset whose local cache is current needs no store, and
    /// loading the AWS configuration can take a while off EC2.
    client: OnceLock<S3Client>,
}

impl SharedCache {
    /// Checks the URL and options; connects nowhere yet.
    pub fn new(options: &super::RemoteCacheOptions) -> Result<SharedCache> {
        Ok(SharedCache {
            at: S3Location::parse(&options.url)?,
            options: S3Options::from_pairs(&options.storage)?,
            client: OnceLock::new(),
        })
    }

    fn client(&self) -> Result<&S3Client> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = S3Client::new(&self.options)?;
        Ok(self.client.get_or_init(|| client))
    }

    /// Where the cache of the dataset called `name` (its directory's name) at version
    /// `fingerprint` lives.
    fn entry(&self, name: &str, fingerprint: &str) -> S3Location {
        S3Location {
            bucket: self.at.bucket.clone(),
            prefix: format!("{}{}-{fingerprint}/", self.at.prefix, file_name_part(name)),
        }
    }

    /// The shared cache of `dataset`, downloaded to `path` and every checksum verified;
    /// `Ok(false)` when the store has none for this version of the dataset.
    pub fn fetch(&self, dataset: &LitDataset, path: &Path, progress: bool) -> Result<bool> {
        let started = Instant::now();
        let entry = self.entry(&dataset_name(&dataset.root), &dataset.fingerprint);
        let client = self.client()?;
        let listing = client.list(&entry)?;
        if !listing.iter().any(|o| o.name == SHARED_MANIFEST) {
            return Ok(false);
        }
        let manifest_url = entry.url() + SHARED_MANIFEST;
        let manifest: SharedManifest =
            serde_json::from_slice(&client.get(&entry, SHARED_MANIFEST)?).map_err(|e| {
                Error::format(
                    Location::file(&manifest_url),
                    format!("not a manifest: {e}"),
                )
            })?;
        let object = listing
            .iter()
            .find(|o| o.name == SHARED_FILE && o.size == manifest.size)
            .ok_or_else(|| {
                Error::format(
                    Location::file(&manifest_url),
                    format!(
                        "the manifest names a cache of {} bytes, which {} does not hold",
                        manifest.size,
                        entry.url()
                    ),
                )
            })?;
        let staging = staging_dir(path);
        let downloaded = staging.join(SHARED_FILE);
        let checked = client
            .download(
                &entry,
                std::slice::from_ref(object),
                &staging,
                progress,
                &|_, _| {},
            )
            .and_then(|()| verify(&downloaded, &dataset.fingerprint));
        if let Err(e) = checked {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        std::fs::rename(&downloaded, path).at(path)?;
        let _ = std::fs::remove_dir_all(&staging);
        if progress {
            eprintln!(
                "slipstream: shared cache {} ({} samples, {:.1} MB) downloaded and verified in \
                 {:.1} s -> {}",
                entry.url(),
                manifest.samples,
                manifest.size as f64 / 1e6,
                started.elapsed().as_secs_f64(),
                path.display()
            );
        }
        Ok(true)
    }

    /// Upload the cache at `path` (the cache file first, the manifest last). Returns where.
    pub fn publish(&self, path: &Path, progress: bool) -> Result<String> {
        let reader = CacheReader::open(path)?;
        let source = &reader.header().source;
        let entry = self.entry(&dataset_name(Path::new(&source.path)), &source.fingerprint);
        let size = std::fs::metadata(path).at(path)?.len();
        let client = self.client()?;
        client.upload(&entry, SHARED_FILE, path, progress)?;
        let manifest = SharedManifest {
            fingerprint: source.fingerprint.clone(),
            size,
            samples: reader.len(),
            source: source.path.clone(),
            uploaded_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Internal(format!("manifest: {e}")))?;
        client.put(&entry, SHARED_MANIFEST, bytes)?;
        if progress {
            eprintln!(
                "slipstream: cache shared as {} ({:.1} MB)",
                entry.url(),
                size as f64 / 1e6
            );
        }
        Ok(entry.url())
    }
}

fn dataset_name(root: &Path) -> String {
    root.file_name()
        .map_or_else(|| "dataset".into(), |n| n.to_string_lossy().into_owned())
}

/// Where a shared cache is downloaded before it is verified and moved into place.
fn staging_dir(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.shared"))
}

/// The downloaded cache is for this dataset version, and every table and sample matches its
/// checksum.
fn verify(path: &Path, fingerprint: &str) -> Result<()> {
    use rayon::prelude::*;
    let reader = CacheReader::open(path)?;
    if reader.header().source.fingerprint != fingerprint {
        return Err(Error::format(
            Location::file(path),
            "the shared cache was built from another version of the dataset",
        ));
    }
    reader.verify_tables()?;
    (0..reader.len())
        .into_par_iter()
        .try_for_each(|sample| reader.verify_sample(sample))
}
