//! What the cache builder reads, whatever the source's format: samples in one schema, read in
//! parts (a LitData chunk, a run of ImageFolder files) by worker threads, each part's items in
//! LitData's classic item encoding (`u32 size[L]` then the L leaves, one per field), so the
//! cache writer needs to know nothing of where they came from.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chunk::read_chunk;
use super::items::{DecodedChunk, Recycler};
use super::litdata::{LitDataset, Schema};
use crate::error::Result;

/// A run of consecutive samples that is read as one unit.
#[derive(Debug, Clone)]
pub struct Part {
    /// The file or folder its samples come from, named in errors.
    pub path: PathBuf,
    pub first_sample: u64,
    pub samples: u64,
    /// Bytes read from storage for it (progress, the build rate).
    pub file_bytes: u64,
    /// Bytes of its items once read (how large the samples are).
    pub item_bytes: u64,
}

/// A dataset in one of the formats slipstream reads.
pub trait Source: Send + Sync {
    /// The format's name, recorded in the cache: `"litdata"`, `"imagefolder"`, ...
    fn kind(&self) -> &'static str;
    /// The directory (or file) the dataset is; its cache is named after it.
    fn root(&self) -> &Path;
    /// The fields; a build asks for it after [`Source::parts`], which may have had to fetch
    /// the files it is read from (datasets on S3).
    fn schema(&self) -> &Schema;
    /// Every sample, in order, as consecutive parts. May read the source (a tar shard's
    /// headers), so only builds call it.
    fn parts(&self) -> Result<Vec<Part>>;
    /// Changes whenever the source's samples may have changed.
    fn fingerprint(&self) -> &str;
    /// The source's own description of itself, kept in the cache header.
    fn config(&self) -> Value;
    /// Part `i`'s items in classic encoding, with one leaf per field of [`Source::schema`].
    fn read_part(&self, i: usize, recycler: &Recycler) -> Result<DecodedChunk>;
}

impl Source for LitDataset {
    fn kind(&self) -> &'static str {
        "litdata"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn parts(&self) -> Result<Vec<Part>> {
        Ok(self
            .chunks
            .iter()
            .map(|c| Part {
                path: c.path.clone(),
                first_sample: c.first_sample,
                samples: c.entry.chunk_size,
                file_bytes: c.file_len,
                item_bytes: c.entry.chunk_bytes,
            })
            .collect())
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn config(&self) -> Value {
        serde_json::to_value(&self.index.config).unwrap_or_default()
    }

    fn read_part(&self, i: usize, recycler: &Recycler) -> Result<DecodedChunk> {
        read_chunk(&self.chunks[i], &self.schema, recycler)
    }
}
