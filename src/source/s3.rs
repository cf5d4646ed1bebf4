//! LitData datasets on S3: the prefix's listing, its `index.json` (copied into the local
//! mirror, where the chunks are downloaded to), and the object of each chunk the index names.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::litdata::{INDEX_FILENAME, LitDataset, MAX_INDEX_BYTES};
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

/// Read the dataset at `at` and put its `index.json` into `mirror`.
pub fn open(client: &S3Client, at: &S3Location, mirror: &Path) -> Result<RemoteLitData> {
    std::fs::create_dir_all(mirror).at(mirror)?;
    let listing = client.list(at)?;
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
