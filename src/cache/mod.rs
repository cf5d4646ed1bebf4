//! The slipstream cache: one file per source dataset, built once, then memory-mapped.
//!
//! [`open`] is the entry point: given a dataset (a LitData directory or another format the
//! source layer reads) it finds the cache under the cache directory, checks it still matches the source (the source fingerprint), and builds it if
//! not, under a lock so that several processes on one machine (the ranks of a job) build it
//! once while the others wait and reuse it. Given a `.slipcache` file it just opens it.

mod arrivals;
pub mod encoding;
pub mod format;
#[cfg(feature = "s3")]
mod from_s3;
mod parse;
mod paths;
mod reader;
#[cfg(feature = "s3")]
mod shared;
#[cfg(feature = "s3")]
mod streamed;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use format::Encoding;
pub use paths::{CACHE_EXTENSION, cache_path, default_cache_dir};
pub use reader::{CacheReader, FieldValue};
#[cfg(feature = "s3")]
pub use shared::SharedCache;
pub use writer::{BuildOptions, BuildReport, build_cache};

use crate::error::{Error, IoContext, Result};
use crate::source::Fingerprint;
use crate::source::dataset::Source;
use crate::source::litdata::INDEX_FILENAME;
use crate::source::{Format, open_local};

#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub cache_dir: Option<PathBuf>,
    pub build: BuildOptions,
    /// Build even when a matching cache exists.
    pub rebuild: bool,
    /// Share built caches through this store: download the cache from it instead of
    /// building, and upload what was built.
    pub remote_cache: Option<RemoteCacheOptions>,
    /// With `remote_cache`: fail instead of building when the store has no cache for the
    /// dataset (`slipstream sync pull`).
    pub remote_only: bool,
    /// How a local dataset's files are recognised as unchanged since the cache was built.
    pub fingerprint: Fingerprint,
    /// The source's format; `Auto` recognises it from the files.
    pub format: Format,
    /// How image fields are stored: another encoding than the original is a cache of its
    /// own, built from the original cache.
    pub encoding: Encoding,
    /// A LitData dataset on S3 with no cache yet is returned at once, its cache readable as
    /// its chunks arrive, in the order its readers ask for (`streamed.rs`), when it can be
    /// (original encoding, no remote cache, no other process building it).
    pub stream: bool,
}

/// Where built caches are shared between machines: an `s3://` prefix, and the storage options
/// (as [`crate::s3::S3Options::from_pairs`] takes them) that reach it. `Debug` shows
/// the option names only, since values may be keys.
#[derive(Clone, Default)]
pub struct RemoteCacheOptions {
    pub url: String,
    pub storage: Vec<(String, String)>,
}

impl std::fmt::Debug for RemoteCacheOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.storage.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("RemoteCacheOptions")
            .field("url", &self.url)
            .field("storage", &names)
            .finish()
    }
}

/// Open the cache of a dataset directory (building it if missing or stale) or a cache file.
pub fn open(source: &Path, options: &OpenOptions) -> Result<CacheReader> {
    let name = source.file_name().map(|n| n.to_string_lossy());
    let shard = match options.format {
        Format::Auto => name.and_then(|n| Format::of_file(&n)).is_some(),
        format => matches!(format, Format::WebDataset | Format::Parquet | Format::Beton),
    };
    if source.is_file() && !shard {
        if source.file_name().is_some_and(|n| n == INDEX_FILENAME) {
            return open(source.parent().unwrap_or(Path::new(".")), options);
        }
        return encoded(CacheReader::open(source)?, options);
    }
    let dataset = open_local(source, options.format, options.fingerprint)?;
    let original = open_or_build(&Wanted::of(&*dataset, options), options, &|path: &Path| {
        build_cache(&*dataset, path, &options.build).map(drop)
    })?;
    encoded(original, options)
}

/// The cache of `original` in `options.encoding`: `original` itself, or a cache beside it,
/// built from it when missing or stale.
fn encoded(original: CacheReader, options: &OpenOptions) -> Result<CacheReader> {
    let encoding = options.encoding;
    if encoding.is_original() {
        return Ok(original);
    }
    let source = &original.header().source;
    let wanted = Wanted {
        path: encoding.path(original.path()),
        root: PathBuf::from(&source.path),
        fingerprint: encoding.fingerprint(&source.fingerprint),
    };
    open_or_build(&wanted, options, &|path: &Path| {
        encoding::build_encoded(&original, encoding, path, &options.build).map(drop)
    })
}

/// The cache a dataset needs: its file, the dataset (named in messages and the shared store)
/// and the fingerprint it must have been built with.
struct Wanted {
    path: PathBuf,
    root: PathBuf,
    fingerprint: String,
}

impl Wanted {
    /// The original cache of `dataset`, under the options' cache directory.
    fn of(dataset: &dyn Source, options: &OpenOptions) -> Wanted {
        let cache_dir = options.cache_dir.clone().unwrap_or_else(default_cache_dir);
        Wanted {
            path: cache_path(dataset.root(), &cache_dir),
            root: dataset.root().to_path_buf(),
            fingerprint: dataset.fingerprint().to_string(),
        }
    }
}

/// The cache `wanted` names: reused when it matches, else built by `build` under the lock
/// that makes concurrent processes build once.
fn open_or_build(
    wanted: &Wanted,
    options: &OpenOptions,
    build: &dyn Fn(&Path) -> Result<()>,
) -> Result<CacheReader> {
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    let shared = shared_cache(options)?;
    let path = &wanted.path;
    if !options.rebuild
        && let Some(reader) = reusable(wanted, options.build.progress)
    {
        return Ok(reader);
    }
    let lock = build_lock(path, true, options.build.progress)?.expect("waited for it");
    // Whoever held the lock may have just built it.
    if !options.rebuild
        && let Some(reader) = reusable(wanted, false)
    {
        return Ok(reader);
    }
    #[cfg(feature = "s3")]
    if let Some(shared) = &shared
        && !options.rebuild
    {
        match shared.fetch(
            &wanted.root,
            &wanted.fingerprint,
            path,
            options.build.progress,
        ) {
            Ok(true) => return CacheReader::open(path),
            Ok(false) if options.remote_only => {
                return Err(Error::invalid(format!(
                    "{} holds no cache of {} as it is now",
                    options.remote_cache.as_ref().map_or("", |r| &r.url),
                    wanted.root.display()
                )));
            }
            Ok(false) => {}
            Err(e) if options.remote_only => return Err(e),
            Err(e) => crate::progress::say(&format!(
                "slipstream: not using the shared cache ({e}); building here"
            )),
        }
    }
    remove_abandoned_builds(path);
    build(path)?;
    #[cfg(feature = "s3")]
    if let Some(shared) = &shared
        && let Err(e) = shared.publish(path, options.build.progress)
    {
        crate::progress::say(&format!(
            "slipstream: the cache was built but could not be shared: {e}"
        ));
    }
    drop(lock);
    CacheReader::open(path)
}

/// The lock a builder of the cache at `path` holds, held on return: after waiting for
/// another process's build when `wait` (saying so when `progress`), else `None` when another
/// process holds it.
fn build_lock(path: &Path, wait: bool, progress: bool) -> Result<Option<File>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).at(dir)?;
    let lock_path = path.with_extension(format!("{CACHE_EXTENSION}.lock"));
    let lock = File::create(&lock_path).at(&lock_path)?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) if wait => {
            if progress {
                crate::progress::say(&format!(
                    "slipstream: waiting for another process building {}",
                    path.display()
                ));
            }
            lock.lock().at(&lock_path)?;
            Ok(Some(lock))
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&lock_path, e)),
    }
}

/// What a streamed open may do with the cache `wanted` names.
#[cfg(feature = "s3")]
enum Claim {
    /// A matching cache exists.
    Reuse(Box<CacheReader>),
    /// Build it, holding this lock.
    Build(File),
    /// Another process is building it.
    Busy,
}

#[cfg(feature = "s3")]
/// Reuse the cache `wanted` names, or take its build lock without waiting for it.
fn claim(wanted: &Wanted, options: &OpenOptions) -> Result<Claim> {
    let path = &wanted.path;
    if !options.rebuild
        && let Some(reader) = reusable(wanted, options.build.progress)
    {
        return Ok(Claim::Reuse(Box::new(reader)));
    }
    let Some(lock) = build_lock(path, false, false)? else {
        return Ok(Claim::Busy);
    };
    if !options.rebuild
        && let Some(reader) = reusable(wanted, false)
    {
        return Ok(Claim::Reuse(Box::new(reader)));
    }
    remove_abandoned_builds(path);
    Ok(Claim::Build(lock))
}

/// The store of `options.remote_cache`, if any.
#[cfg(feature = "s3")]
fn shared_cache(options: &OpenOptions) -> Result<Option<SharedCache>> {
    options
        .remote_cache
        .as_ref()
        .map(|r| SharedCache::new(&r.url, &r.storage))
        .transpose()
}

/// Without the `s3` feature there is no store: a remote cache is an error.
#[cfg(not(feature = "s3"))]
fn shared_cache(options: &OpenOptions) -> Result<Option<std::convert::Infallible>> {
    match &options.remote_cache {
        None => Ok(None),
        Some(r) => Err(Error::Unsupported {
            dataset: PathBuf::from(&r.url),
            feature: "sharing caches through S3".into(),
            hint: "this build of slipstream was made without the `s3` feature".into(),
        }),
    }
}

/// Upload the cache of `source` (building it first if needed) to `options.remote_cache`, even
/// when the store already has it. Returns where it went.
pub fn push(source: &str, storage: &[(String, String)], options: &OpenOptions) -> Result<String> {
    let Some(shared) = shared_cache(options)? else {
        return Err(Error::invalid(
            "push needs a remote cache (s3://bucket/prefix/)",
        ));
    };
    let local = OpenOptions {
        remote_cache: None,
        stream: false,
        ..options.clone()
    };
    // The storage options reach the store, and the dataset only when it is on S3 too.
    let dataset_storage = if source.starts_with("s3://") {
        storage
    } else {
        &[]
    };
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    let reader = open_source(source, dataset_storage, &local)?;
    #[cfg(feature = "s3")]
    return shared.publish(reader.path(), options.build.progress);
    #[cfg(not(feature = "s3"))]
    match shared {}
}

/// [`open`] for a local path, or the cache of a dataset on S3 (`s3://bucket/prefix/`, with
/// `storage` options as [`crate::s3::S3Options::from_pairs`] takes them).
pub fn open_source(
    source: &str,
    storage: &[(String, String)],
    options: &OpenOptions,
) -> Result<CacheReader> {
    if source.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return open_s3(source, &crate::s3::S3Options::from_pairs(storage)?, options);
        #[cfg(not(feature = "s3"))]
        return Err(Error::Unsupported {
            dataset: PathBuf::from(source),
            feature: "reading from S3".into(),
            hint: "this build of slipstream was made without the `s3` feature; install a wheel \
                   built with it, or download the dataset and pass its local path"
                .into(),
        });
    }
    if let Some((scheme, _)) = source.split_once("://") {
        return Err(Error::Unsupported {
            dataset: PathBuf::from(source),
            feature: format!("{scheme}:// URLs"),
            hint: "slipstream reads local directories and s3:// (also S3-compatible stores \
                   through endpoint_url); download the dataset and pass its local path"
                .into(),
        });
    }
    if !storage.is_empty() && options.remote_cache.is_none() {
        return Err(Error::invalid(format!(
            "{source}: storage options are for s3:// datasets and remote caches"
        )));
    }
    open(Path::new(source), options)
}

/// The cache of the dataset at `url` (`s3://bucket/prefix/`, or a file or pattern under it:
/// `s3://bucket/prefix/train-*.parquet`), downloading and building it when there is none for
/// the dataset's current version: a LitData dataset's chunks are built as they arrive, other
/// formats' files once downloaded.
#[cfg(feature = "s3")]
pub fn open_s3(url: &str, s3: &crate::s3::S3Options, options: &OpenOptions) -> Result<CacheReader> {
    let (prefix, file) = split_file(url);
    let at = crate::s3::S3Location::parse(prefix)?;
    let cache_dir = options.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let client = crate::s3::S3Client::new(s3)?;
    let mirror = from_s3::mirror_dir(&cache_dir, &at);
    let listing = client.list(&at)?;
    let litdata = file.is_none()
        && (options.format == Format::LitData
            || (options.format == Format::Auto
                && listing.iter().any(|o| o.name == INDEX_FILENAME)));
    if !litdata {
        let remote = crate::source::s3::RemoteFiles::new(
            &client,
            &at,
            &listing,
            file,
            options.format,
            &mirror,
            options.build.progress,
        )?;
        let original = open_or_build(&Wanted::of(&remote, options), options, &|path: &Path| {
            build_cache(&remote, path, &options.build).map(drop)
        })?;
        return encoded(original, options);
    }
    let remote = crate::source::s3::open(&client, &at, &listing, &mirror)?;
    let wanted = Wanted::of(&remote.dataset, options);
    if options.stream
        && options.remote_cache.is_none()
        && options.encoding.is_original()
        && streamed::streamable(&remote)
    {
        match claim(&wanted, options)? {
            Claim::Reuse(reader) => return Ok(*reader),
            Claim::Build(lock) => {
                let dest = wanted.path.clone();
                return streamed::start(client, at, remote, dest, lock, &options.build);
            }
            // Wait for the other process's build, as any open does.
            Claim::Busy => {}
        }
    }
    let build = |path: &Path| -> Result<()> {
        from_s3::download_and_build(
            &client,
            &at,
            &remote.chunks,
            &remote.dataset,
            path,
            &options.build,
        )
    };
    let original = open_or_build(&wanted, options, &build)?;
    encoded(original, options)
}

/// `s3://bucket/prefix/name` split into the prefix and `name` when `name` is a file of a
/// sharded format or a pattern (`train.beton`, `shard-*.tar`), not a folder.
#[cfg(feature = "s3")]
fn split_file(url: &str) -> (&str, Option<&str>) {
    let Some((prefix, name)) = url.rsplit_once('/') else {
        return (url, None);
    };
    let file = name.contains(['*', '?']) || Format::of_file(name).is_some();
    if file && prefix.len() > "s3:/".len() {
        (prefix, Some(name))
    } else {
        (url, None)
    }
}

/// Delete temporary files of builds of `path` that were killed. Only called with the lock
/// held, so no live builder is writing one.
fn remove_abandoned_builds(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The existing cache `wanted` names if it is intact and was built from this exact source.
fn reusable(wanted: &Wanted, say_why: bool) -> Option<CacheReader> {
    if !wanted.path.exists() {
        return None;
    }
    match CacheReader::open(&wanted.path) {
        Ok(reader) if reader.header().source.fingerprint == wanted.fingerprint => Some(reader),
        Ok(_) => {
            if say_why {
                crate::progress::say(&format!(
                    "slipstream: {} changed since its cache was built; rebuilding",
                    wanted.root.display()
                ));
            }
            None
        }
        Err(e) => {
            if say_why {
                crate::progress::say(&format!("slipstream: rebuilding unusable cache: {e}"));
            }
            None
        }
    }
}
