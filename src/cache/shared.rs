//! Caches shared through an S3 prefix (`remote_cache=`): a machine with no current local
//! cache downloads the one built from the same dataset version, verifies it and uses it; a
//! machine that built one uploads it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use super::paths::file_name_part;
use super::reader::CacheReader;
use crate::error::{Error, IoContext, Location, Result};
use crate::s3::{S3Client, S3Location, S3Options};

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
    /// The store at `url` (`s3://bucket/prefix/`), reached with `storage` options as
    /// [`S3Options::from_pairs`] takes them. Checks both; connects nowhere yet.
    pub fn new(url: &str, storage: &[(String, String)]) -> Result<SharedCache> {
        Ok(SharedCache {
            at: S3Location::parse(url)?,
            options: S3Options::from_pairs(storage)?,
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
    pub fn fetch(
        &self,
        root: &Path,
        fingerprint: &str,
        path: &Path,
        progress: bool,
    ) -> Result<bool> {
        let started = Instant::now();
        let entry = self.entry(&dataset_name(root), fingerprint);
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
            .and_then(|()| verify(&downloaded, fingerprint));
        if let Err(e) = checked {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        std::fs::rename(&downloaded, path).at(path)?;
        let _ = std::fs::remove_dir_all(&staging);
        if progress {
            crate::progress::say(&format!(
                "slipstream: shared cache {} ({} samples, {:.1} MB) downloaded and verified in \
                 {:.1} s -> {}",
                entry.url(),
                manifest.samples,
                manifest.size as f64 / 1e6,
                started.elapsed().as_secs_f64(),
                path.display()
            ));
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
            crate::progress::say(&format!(
                "slipstream: cache shared as {} ({:.1} MB)",
                entry.url(),
                size as f64 / 1e6
            ));
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
    let reader = CacheReader::open(path)?;
    if reader.header().source.fingerprint != fingerprint {
        return Err(Error::format(
            Location::file(path),
            "the shared cache was built from another version of the dataset",
        ));
    }
    reader.verify_tables()?;
    reader.verify_samples()
}
