//! Datasets on S3. LitData's: the prefix's listing, its `index.json` (copied into the local
//! mirror, where the chunks are downloaded to), and the object of each chunk the index names.
//! Other formats ([`RemoteFiles`]): their files, downloaded into the mirror when the cache is
//! built and read there as the local format reads them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::dataset::{Part, Source};
use super::files::{Fingerprint, glob_match};
use super::formats::{Format, open_local};
use super::image_folder::{IMG_EXTENSIONS, ImageFolder};
use super::items::{DecodedChunk, Recycler};
use super::litdata::{INDEX_FILENAME, LitDataset, MAX_INDEX_BYTES, Schema};
use crate::error::{Error, IoContext, Location, Result};
use crate::s3::{RemoteObject, S3Client, S3Location};

/// A LitData dataset on S3.
pub struct RemoteLitData {
    /// The dataset as its index describes it, rooted at the local mirror; its fingerprint
    /// comes from the index and the chunk objects' sizes and ETags.
    pub dataset: LitDataset,
    /// The object of each chunk, in the dataset's chunk order.
    pub chunks: Vec<RemoteObject>,
}

/// Read the dataset at `at` (whose objects are `listing`) and put its `index.json` into
/// `mirror`.
pub fn open(
    client: &S3Client,
    at: &S3Location,
    listing: &[RemoteObject],
    mirror: &Path,
) -> Result<RemoteLitData> {
    std::fs::create_dir_all(mirror).at(mirror)?;
    let objects: HashMap<&str, &RemoteObject> =
        listing.iter().map(|o| (o.name.as_str(), o)).collect();
    let Some(index) = objects.get(INDEX_FILENAME) else {
        return Err(Error::format(
            Location::file(at.url() + INDEX_FILENAME),
            format!(
                "no {INDEX_FILENAME} under {}: not a LitData optimized dataset ({} objects there)",
                at.url(),
                listing.len()
            ),
        ));
    };
    if index.size > MAX_INDEX_BYTES {
        return Err(Error::format(
            Location::file(at.url() + INDEX_FILENAME),
            format!(
                "{} bytes, more than the {MAX_INDEX_BYTES} expected",
                index.size
            ),
        ));
    }
    let index = client.get(at, INDEX_FILENAME)?;
    let index_path = mirror.join(INDEX_FILENAME);
    // A name of this call's own: the ranks of a node open the same mirror at once, and a
    // shared temporary name let one rank's rename take the file another was about to rename.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = mirror.join(format!(".{INDEX_FILENAME}.tmp-{}-{n}", std::process::id()));
    std::fs::write(&tmp, &index).at(&tmp)?;
    std::fs::rename(&tmp, &index_path).at(&index_path)?;
    let dataset = LitDataset::from_remote(mirror, index, &|name| {
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
    let chunks = dataset
        .chunks
        .iter()
        .map(|c| (*objects[c.entry.filename.as_str()]).clone())
        .collect();
    Ok(RemoteLitData { dataset, chunks })
}

/// A dataset in a format other than LitData's on S3: the objects it is made of, fingerprinted by
/// their names, sizes and ETags; downloaded into the mirror (and opened there) only when its
/// cache is built, so that opening a dataset whose cache is current reads only the listing.
pub struct RemoteFiles<'a> {
    client: &'a S3Client,
    at: S3Location,
    objects: Vec<RemoteObject>,
    mirror: PathBuf,
    /// What the local format opens in the mirror: the mirror, or the file or pattern named.
    local_root: PathBuf,
    format: Format,
    fingerprint: String,
    progress: bool,
    local: OnceLock<Box<dyn Source>>,
}

impl<'a> RemoteFiles<'a> {
    /// The dataset at `at` in `format` (`Auto`: by the objects' names), from its `listing`;
    /// `file` names one object or a pattern of them (`train-*.parquet`) directly under `at`.
    pub fn new(
        client: &'a S3Client,
        at: &S3Location,
        listing: &[RemoteObject],
        file: Option<&str>,
        format: Format,
        mirror: &Path,
        progress: bool,
    ) -> Result<RemoteFiles<'a>> {
        let (format, objects) = select(listing, format, file);
        if objects.is_empty() {
            return Err(Error::format(
                Location::file(at.url() + file.unwrap_or("")),
                format!(
                    "no files of a {format:?} dataset here ({} objects, no index.json)",
                    listing.len()
                ),
            ));
        }
        if let Some(o) = objects.iter().find(|o| !inside(&o.name)) {
            return Err(Error::format(
                Location::file(at.key(&o.name)),
                "an object name that leaves the dataset's prefix (.., or an absolute path)",
            ));
        }
        if format == Format::Beton && objects.len() > 1 {
            return Err(Error::invalid(format!(
                "{} holds {} .beton files: name one (s3://.../train.beton)",
                at.url(),
                objects.len()
            )));
        }
        let mut sorted: Vec<&RemoteObject> = objects.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(format!("s3 {format:?}\0").as_bytes());
        for o in sorted {
            hasher.update(o.name.as_bytes());
            hasher.update(&[0]);
            hasher.update(&o.size.to_le_bytes());
            hasher.update(o.etag.as_bytes());
            hasher.update(&[0]);
        }
        let local_root = match (format, file) {
            (Format::Beton, _) => mirror.join(&objects[0].name),
            (_, Some(f)) => mirror.join(f),
            _ => mirror.to_path_buf(),
        };
        Ok(RemoteFiles {
            client,
            at: at.clone(),
            objects,
            mirror: mirror.to_path_buf(),
            local_root,
            format,
            fingerprint: format!("{:032x}", hasher.digest128()),
            progress,
            local: OnceLock::new(),
        })
    }

    /// The dataset as downloaded into the mirror.
    fn local(&self) -> Result<&dyn Source> {
        if let Some(local) = self.local.get() {
            return Ok(&**local);
        }
        let ignore = |_: usize, _: std::result::Result<(), String>| {};
        self.client.download(
            &self.at,
            &self.objects,
            &self.mirror,
            self.progress,
            &ignore,
        )?;
        let local: Box<dyn Source> = if self.format == Format::ImageFolder {
            // `path` values name the prefix, as they name the folder of a local tree.
            let name = self.at.prefix.trim_end_matches('/').rsplit('/').next();
            let name = name.filter(|n| !n.is_empty()).unwrap_or(&self.at.bucket);
            Box::new(ImageFolder::open_named(
                &self.local_root,
                name,
                Fingerprint::Mtime,
            )?)
        } else {
            open_local(&self.local_root, self.format, Fingerprint::Mtime)?
        };
        Ok(&**self.local.get_or_init(|| local))
    }
}

/// The format of the dataset (`format`, or by the objects' names when `Auto`) and the objects
/// of `listing` it is made of; `file` names one object, or a pattern, directly under the prefix.
fn select(
    listing: &[RemoteObject],
    format: Format,
    file: Option<&str>,
) -> (Format, Vec<RemoteObject>) {
    let ext = |name: &str, e: &str| name.to_lowercase().ends_with(e);
    let top = |o: &&RemoteObject, pattern: &str| {
        !o.name.contains('/') && glob_match(pattern.as_bytes(), o.name.as_bytes())
    };
    let format = match (format, file) {
        (Format::Auto, Some(f)) => Format::of_file(f).unwrap_or(Format::Auto),
        (Format::Auto, None) => {
            let has = |format: Format, top_only: bool| {
                listing.iter().any(|o| {
                    Format::of_file(&o.name) == Some(format) && !(top_only && o.name.contains('/'))
                })
            };
            if has(Format::WebDataset, true) {
                Format::WebDataset
            } else if has(Format::Parquet, false) {
                Format::Parquet
            } else if has(Format::Beton, false) {
                Format::Beton
            } else {
                Format::ImageFolder
            }
        }
        (format, _) => format,
    };
    let objects: Vec<RemoteObject> = match (format, file) {
        (_, Some(f)) => listing.iter().filter(|o| top(o, f)).cloned().collect(),
        (Format::WebDataset, None) => listing
            .iter()
            .filter(|o| top(o, "*.tar"))
            .cloned()
            .collect(),
        (Format::Beton, None) => listing
            .iter()
            .filter(|o| top(o, "*.beton") || top(o, "*.ffcv"))
            .cloned()
            .collect(),
        (Format::Parquet, None) => {
            let here: Vec<_> = listing
                .iter()
                .filter(|o| top(o, "*.parquet"))
                .cloned()
                .collect();
            if here.is_empty() {
                let data = |o: &&RemoteObject| {
                    o.name
                        .strip_prefix("data/")
                        .is_some_and(|n| !n.contains('/') && glob_match(b"*.parquet", n.as_bytes()))
                };
                listing.iter().filter(data).cloned().collect()
            } else {
                here
            }
        }
        _ => listing
            .iter()
            .filter(|o| o.name.contains('/') && IMG_EXTENSIONS.iter().any(|e| ext(&o.name, e)))
            .cloned()
            .collect(),
    };
    (format, objects)
}

/// Whether an object's name stays under its prefix when joined to a local directory.
fn inside(name: &str) -> bool {
    !name.starts_with('/') && name.split('/').all(|c| c != ".." && c != ".")
}

impl Source for RemoteFiles<'_> {
    fn kind(&self) -> &'static str {
        self.format.kind()
    }

    fn root(&self) -> &Path {
        &self.local_root
    }

    fn schema(&self) -> &Schema {
        self.local
            .get()
            .expect("the build asks for the parts before the schema")
            .schema()
    }

    fn parts(&self) -> Result<Vec<Part>> {
        self.local()?.parts()
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn config(&self) -> Value {
        self.local.get().map_or(Value::Null, |l| l.config())
    }

    fn read_part(&self, i: usize, recycler: &Recycler) -> Result<DecodedChunk> {
        self.local()?.read_part(i, recycler)
    }
}
