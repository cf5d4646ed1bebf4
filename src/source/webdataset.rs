//! Tar shards in WebDataset's layout: `shard-000000.tar`, ... each holding the files of its
//! samples one after another, a sample's files sharing a key (`n01440764/img_17.jpg`,
//! `n01440764/img_17.cls`).
//!
//! Keys and fields follow WebDataset's reader: a member's key is its path up to the first dot
//! of its file name and the field is the rest, lower-cased (`img_17.seg.png`: key `img_17`,
//! field `seg.png`); consecutive members with one key are one sample; members whose file name
//! has no dot (or starts with one) are skipped. Every sample must have the fields of the first.
//! Fields: `__key__` (str), then the first sample's fields in its order: integer fields
//! (`cls`, `cls2`, `class`, `count`, `index`, `inx`, `id`, stored as decimal text) as `int`,
//! text fields (`txt`, `text`, `transcript`, `json`, `jsn`) as `str`, anything else (images)
//! as the member's bytes.
//!
//! Opening reads the first sample's headers (for the fields) and stats the shards (for the
//! fingerprint); the build reads every shard's headers ([`Source::parts`]) and then the members'
//! bytes (the tar format itself is [`super::tar`]).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;
use serde_json::{Value, json};

use super::dataset::{Part, Source};
use super::files::{Fingerprint, file_names, files_fingerprint, open_regular, shard_files};
use super::items::{DecodedChunk, Recycler};
use super::litdata::{FieldSpec, Layout, Schema};
use super::serializer::Serializer;
use super::tar::Members;
use crate::error::{Error, IoContext, Location, Result};

const INT_FIELDS: [&str; 7] = ["cls", "cls2", "class", "count", "index", "inx", "id"];
const TEXT_FIELDS: [&str; 5] = ["txt", "text", "transcript", "json", "jsn"];
/// A part closes at this many bytes or samples (see image_folder.rs).
const PART_BYTES: u64 = 32 << 20;
const PART_SAMPLES: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bytes,
}

#[derive(Debug, Clone)]
struct Shard {
    path: PathBuf,
    size: u64,
}

/// Where a member's data is in its shard: (offset, size).
type Member = (u64, u64);

/// One sample in a shard: its key and, per field after `__key__`, its member.
#[derive(Debug, Clone)]
struct Sample {
    key: String,
    members: Vec<Member>,
}

/// Every shard's samples, read from the headers.
#[derive(Debug)]
struct Listing {
    /// `samples[s]`: the samples of shard `s`, in order.
    samples: Vec<Vec<Sample>>,
    parts: Vec<(usize, std::ops::Range<usize>, Part)>,
}

#[derive(Debug)]
pub struct WebDataset {
    root: PathBuf,
    shards: Vec<Shard>,
    /// The fields after `__key__`, as named in the shards.
    fields: Vec<(String, Kind)>,
    schema: Schema,
    fingerprint: String,
    listing: OnceLock<Listing>,
}

impl WebDataset {
    /// The shards of `root`: a `.tar` file, a directory's `*.tar` files, or the files a
    /// pattern names (`/data/shard-*.tar`), in name order.
    pub fn open(root: &Path, fingerprint: Fingerprint) -> Result<WebDataset> {
        let (root, paths) = shard_files(root, "tar")?;
        if paths.is_empty() {
            return Err(Error::format(
                Location::file(&root),
                "no .tar shards here (a WebDataset dataset is a directory of .tar files)",
            ));
        }
        let (fingerprint, sizes) = files_fingerprint("webdataset", &paths, fingerprint)?;
        let shards: Vec<Shard> = paths
            .into_iter()
            .zip(sizes)
            .map(|(path, size)| Shard { path, size })
            .collect();
        let fields = first_fields(&shards[0])?;
        let mut specs = vec![FieldSpec::new("__key__", "str", Serializer::Str)];
        for (name, kind) in &fields {
            specs.push(match kind {
                Kind::Int => FieldSpec::new(name, "int", Serializer::Int),
                Kind::Text => FieldSpec::new(name, "str", Serializer::Str),
                Kind::Bytes => FieldSpec::new(name, "bytes", Serializer::Bytes),
            });
        }
        Ok(WebDataset {
            root,
            shards,
            fields,
            schema: Schema {
                layout: Layout::Dict,
                fields: specs,
            },
            fingerprint,
            listing: OnceLock::new(),
        })
    }

    fn listing(&self) -> Result<&Listing> {
        if let Some(listing) = self.listing.get() {
            return Ok(listing);
        }
        let samples: Vec<Vec<Sample>> = self
            .shards
            .par_iter()
            .map(|shard| self.list_shard(shard))
            .collect::<Result<_>>()?;
        let mut parts = Vec::new();
        let mut first_sample = 0u64;
        for (s, shard_samples) in samples.iter().enumerate() {
            let mut start = 0;
            let mut bytes = 0;
            for (i, sample) in shard_samples.iter().enumerate() {
                bytes += sample.key.len() as u64 + sample.members.iter().map(|m| m.1).sum::<u64>();
                let n = (i + 1 - start) as u64;
                if bytes >= PART_BYTES || n >= PART_SAMPLES || i + 1 == shard_samples.len() {
                    let items = start..i + 1;
                    let span = |k: usize| shard_samples[k].members.iter();
                    let lo = span(start).map(|m| m.0).min().unwrap_or(0);
                    let hi = span(i).map(|m| m.0 + m.1).max().unwrap_or(0);
                    parts.push((
                        s,
                        items,
                        Part {
                            path: self.shards[s].path.clone(),
                            first_sample,
                            samples: n,
                            file_bytes: hi.saturating_sub(lo),
                            // Leaf sizes, and integers grown from text to 8 bytes.
                            item_bytes: bytes + n * (4 + 12 * self.fields.len() as u64),
                        },
                    ));
                    first_sample += n;
                    start = i + 1;
                    bytes = 0;
                }
            }
        }
        Ok(self.listing.get_or_init(|| Listing { samples, parts }))
    }

    /// A shard's samples, from its headers.
    fn list_shard(&self, shard: &Shard) -> Result<Vec<Sample>> {
        let mut samples: Vec<Sample> = Vec::new();
        // The sample being read: its key and each field's member, once seen.
        let mut open: Option<(String, Vec<Option<Member>>)> = None;
        for member in Members::new(&shard.path, shard.size)? {
            let (name, offset, size) = member?;
            let Some((key, ext)) = split_key(&name) else {
                continue;
            };
            if open.as_ref().is_none_or(|(k, _)| k != key) {
                if let Some((key, members)) = open.take() {
                    samples.push(self.complete(shard, key, members)?);
                }
                open = Some((key.to_string(), vec![None; self.fields.len()]));
            }
            let (key, members) = open.as_mut().expect("a sample is open");
            let Some(f) = self.fields.iter().position(|(n, _)| *n == ext) else {
                return Err(mismatch(shard, key, format!("has a field '{ext}'")));
            };
            if members[f].replace((offset, size)).is_some() {
                return Err(mismatch(shard, key, format!("has two '{ext}' files")));
            }
        }
        if let Some((key, members)) = open {
            samples.push(self.complete(shard, key, members)?);
        }
        Ok(samples)
    }

    /// The sample `key` once its members are read, if it has every field.
    fn complete(&self, shard: &Shard, key: String, members: Vec<Option<Member>>) -> Result<Sample> {
        let missing: Vec<&str> = members
            .iter()
            .zip(&self.fields)
            .filter(|(m, _)| m.is_none())
            .map(|(_, f)| f.0.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(mismatch(
                shard,
                &key,
                format!("lacks {}", missing.join(", ")),
            ));
        }
        Ok(Sample {
            key,
            members: members.into_iter().flatten().collect(),
        })
    }
}

fn mismatch(shard: &Shard, key: &str, what: String) -> Error {
    Error::format(
        Location::file(&shard.path),
        format!(
            "sample '{key}' {what}, unlike the first sample of the dataset: slipstream needs \
             every sample to have the same fields"
        ),
    )
}

/// WebDataset's split of a member name into key and field: the name up to the first dot of
/// its last component, and the rest lower-cased; `None` when that component has no dot, or
/// only a leading one.
fn split_key(name: &str) -> Option<(&str, String)> {
    let base = name.rfind('/').map_or(0, |i| i + 1);
    let dot = base + name[base..].find('.')?;
    if dot == base {
        return None;
    }
    Some((&name[..dot], name[dot + 1..].to_lowercase()))
}

/// The fields of the first sample of `shard`, in the order its members come.
fn first_fields(shard: &Shard) -> Result<Vec<(String, Kind)>> {
    let mut key = None;
    let mut fields: Vec<(String, Kind)> = Vec::new();
    for member in Members::new(&shard.path, shard.size)? {
        let (name, _, _) = member?;
        let Some((k, ext)) = split_key(&name) else {
            continue;
        };
        match &key {
            None => key = Some(k.to_string()),
            Some(first) if first != k => break,
            Some(_) => {}
        }
        let kind = if INT_FIELDS.contains(&ext.as_str()) {
            Kind::Int
        } else if TEXT_FIELDS.contains(&ext.as_str()) {
            Kind::Text
        } else {
            Kind::Bytes
        };
        if fields.iter().any(|f| f.0 == ext) {
            return Err(mismatch(shard, k, format!("has two '{ext}' files")));
        }
        fields.push((ext, kind));
    }
    if fields.is_empty() {
        return Err(Error::format(
            Location::file(&shard.path),
            "no sample files (names like key.jpg) in this tar shard",
        ));
    }
    Ok(fields)
}

impl Source for WebDataset {
    fn kind(&self) -> &'static str {
        "webdataset"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn parts(&self) -> Result<Vec<Part>> {
        Ok(self.listing()?.parts.iter().map(|p| p.2.clone()).collect())
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn config(&self) -> Value {
        let paths: Vec<PathBuf> = self.shards.iter().map(|s| s.path.clone()).collect();
        json!({"shards": file_names(&paths)})
    }

    fn read_part(&self, i: usize, recycler: &Recycler) -> Result<DecodedChunk> {
        let listing = self.listing()?;
        let (s, items, part) = &listing.parts[i];
        let shard = &self.shards[*s];
        let file = open_regular(&shard.path)?;
        let mut bytes = recycler
            .take(part.item_bytes as usize)
            .map_err(|e| Error::format(Location::file(&part.path), e))?;
        let mut ranges = Vec::with_capacity(items.len());
        for (k, sample) in listing.samples[*s][items.clone()].iter().enumerate() {
            let at = |message: String| {
                Error::format(
                    Location::sample(&shard.path, part.first_sample + k as u64),
                    format!("sample '{}': {message}", sample.key),
                )
            };
            // The leaf sizes first (the key's now, the members' once read), then the leaves.
            let start = bytes.len();
            let sizes = start + 4;
            bytes.extend_from_slice(&(sample.key.len() as u32).to_le_bytes());
            bytes.resize(sizes + 4 * sample.members.len(), 0);
            bytes.extend_from_slice(sample.key.as_bytes());
            for (f, (&(offset, size), (name, kind))) in
                sample.members.iter().zip(&self.fields).enumerate()
            {
                let leaf = bytes.len();
                bytes.resize(leaf + size as usize, 0);
                file.read_exact_at(&mut bytes[leaf..], offset)
                    .at(&shard.path)?;
                match kind {
                    Kind::Bytes => {}
                    Kind::Text => {
                        std::str::from_utf8(&bytes[leaf..])
                            .map_err(|_| at(format!("'{name}' is not UTF-8 text")))?;
                    }
                    Kind::Int => {
                        let text = std::str::from_utf8(&bytes[leaf..]).unwrap_or("").trim();
                        let n: i64 = text
                            .parse()
                            .map_err(|_| at(format!("'{name}' holds {text:?}, not an integer")))?;
                        bytes.truncate(leaf);
                        bytes.extend_from_slice(&n.to_le_bytes());
                    }
                }
                let len = (bytes.len() - leaf) as u32;
                bytes[sizes + 4 * f..sizes + 4 * f + 4].copy_from_slice(&len.to_le_bytes());
            }
            ranges.push(start..bytes.len());
        }
        Ok(DecodedChunk {
            bytes,
            items: ranges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_as_webdataset_does() {
        assert_eq!(
            split_key("a/b/img.seg.PNG"),
            Some(("a/b/img", "seg.png".into()))
        );
        assert_eq!(split_key("x.jpg"), Some(("x", "jpg".into())));
        assert_eq!(split_key("dir.d/x"), None);
        assert_eq!(split_key("a/.hidden"), None);
        assert_eq!(split_key("noext"), None);
    }
}
