//! torchvision's ImageFolder layout: `root/<class>/**/<image file>`.
//!
//! Classes and samples come out exactly as `torchvision.datasets.ImageFolder` numbers and
//! orders them: every subdirectory of `root` is a class (hidden ones too), numbered in sorted
//! order; a class's samples are its files at any depth (symbolic links followed) whose names
//! end in one of torchvision's image extensions, directory by directory in sorted path order,
//! each directory's files sorted. A class with no such file is an error, as in torchvision.
//!
//! Each sample has the fields `image` (the file's bytes), `label` (the class index) and `path`
//! (`<root's name>/<class>/.../<file>`, as upstream slipstream's ImageFolder reader gives it).

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::{Value, json};

use super::dataset::{Part, Source};
use super::files::{Fingerprint, file_version, read_bounded};
use super::items::{DecodedChunk, Recycler};
use super::litdata::{FieldSpec, Layout, Schema};
use super::serializer::Serializer;
use crate::decode::probe;
use crate::error::{Error, IoContext, Location, Result};

/// torchvision's `IMG_EXTENSIONS`, compared with the lower-cased file name.
pub const IMG_EXTENSIONS: [&str; 9] = [
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
];
/// A part closes once it holds this many bytes or files: large enough for sequential reads,
/// small enough that the build's `2 × threads` parts in flight stay small.
const PART_BYTES: u64 = 32 << 20;
const PART_FILES: usize = 4096;
/// Directory levels below a class folder; deeper means a symbolic link loop.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
struct ImageFile {
    /// Relative to the root, `/`-separated.
    rel: String,
    label: i64,
    size: u64,
}

/// An ImageFolder tree, listed and fingerprinted.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    /// The root's own name, the first component of every `path` value.
    name: String,
    classes: Vec<String>,
    files: Vec<ImageFile>,
    parts: Vec<Part>,
    schema: Schema,
    fingerprint: String,
}

impl ImageFolder {
    /// List the tree at `root`; `fingerprint` says how each file's version is recognised.
    pub fn open(root: &Path, fingerprint: Fingerprint) -> Result<ImageFolder> {
        let name = root
            .canonicalize()
            .at(root)?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        ImageFolder::open_named(root, &name.unwrap_or_default(), fingerprint)
    }

    /// [`ImageFolder::open`], with `name` for the first component of `path` values (the tree
    /// of an S3 prefix, mirrored under another name).
    pub fn open_named(root: &Path, name: &str, fingerprint: Fingerprint) -> Result<ImageFolder> {
        let root = root.canonicalize().at(root)?;
        let classes = class_names(&root)?;
        if classes.is_empty() {
            return Err(Error::format(
                Location::file(&root),
                "no class folders: an ImageFolder dataset holds one folder per class \
                 (root/<class>/<image>), and a LitData dataset an index.json",
            ));
        }
        let listed: Vec<(Vec<ImageFile>, Vec<u8>)> = classes
            .par_iter()
            .enumerate()
            .map(|(label, class)| list_class(&root, class, label as i64, fingerprint))
            .collect::<Result<_>>()?;
        let empty: Vec<&str> = classes
            .iter()
            .zip(&listed)
            .filter(|(_, (files, _))| files.is_empty())
            .map(|(c, _)| c.as_str())
            .collect();
        if !empty.is_empty() {
            return Err(Error::format(
                Location::file(&root),
                format!(
                    "no image file (a name ending in {}) in the class folders {}; torchvision's \
                     ImageFolder refuses them too: remove them or add images",
                    IMG_EXTENSIONS.join(" "),
                    empty.join(", ")
                ),
            ));
        }
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(b"imagefolder\0");
        let mut files = Vec::new();
        for (class_files, versions) in listed {
            hasher.update(&versions);
            files.extend(class_files);
        }
        let name = name.to_string();
        let parts = parts(&root, &files, &name);
        Ok(ImageFolder {
            schema: Schema {
                layout: Layout::Dict,
                fields: vec![
                    FieldSpec::new("image", "bytes", Serializer::Bytes),
                    FieldSpec::new("label", "int", Serializer::Int),
                    FieldSpec::new("path", "str", Serializer::Str),
                ],
            },
            fingerprint: format!("{:032x}", hasher.digest128()),
            root,
            name,
            classes,
            files,
            parts,
        })
    }

    /// The class names, in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    fn path_value(&self, file: &ImageFile) -> String {
        format!("{}/{}", self.name, file.rel)
    }
}

/// Whether a directory entry is a directory, following a symbolic link as `os.scandir`'s
/// `is_dir()` does (a broken link is not one).
fn is_dir(entry: &fs::DirEntry) -> bool {
    match entry.file_type() {
        Ok(t) if t.is_symlink() => fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()),
        Ok(t) => t.is_dir(),
        Err(_) => false,
    }
}

fn utf8_name(entry: &fs::DirEntry) -> String {
    entry.file_name().to_string_lossy().into_owned()
}

/// The subdirectories of `root`, sorted: the class names.
fn class_names(root: &Path) -> Result<Vec<String>> {
    let mut classes = Vec::new();
    for entry in fs::read_dir(root).at(root)? {
        let entry = entry.at(root)?;
        if is_dir(&entry) {
            classes.push(utf8_name(&entry));
        }
    }
    classes.sort();
    Ok(classes)
}

/// One class's image files in torchvision's order, and their versions for the fingerprint.
fn list_class(
    root: &Path,
    class: &str,
    label: i64,
    fingerprint: Fingerprint,
) -> Result<(Vec<ImageFile>, Vec<u8>)> {
    let mut dirs = Vec::new();
    walk(root, class.to_string(), 0, &mut dirs)?;
    // os.walk's (dirpath, ...) tuples, sorted: by the directory's whole path.
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut files = Vec::new();
    let mut versions = Vec::new();
    for (dir, mut names) in dirs {
        names.sort();
        for name in names {
            let lower = name.to_lowercase();
            if !IMG_EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
                continue;
            }
            let rel = format!("{dir}/{name}");
            let path = root.join(&rel);
            let meta = fs::metadata(&path).at(&path)?;
            let version = file_version(&path, &meta, fingerprint)?;
            versions.extend_from_slice(rel.as_bytes());
            versions.push(0);
            versions.extend_from_slice(&meta.len().to_le_bytes());
            versions.extend_from_slice(&version.to_le_bytes());
            files.push(ImageFile {
                rel,
                label,
                size: meta.len(),
            });
        }
    }
    Ok((files, versions))
}

/// Every directory under `root/rel` with the names of its non-directory entries.
fn walk(
    root: &Path,
    rel: String,
    depth: usize,
    out: &mut Vec<(String, Vec<String>)>,
) -> Result<()> {
    let dir = root.join(&rel);
    if depth > MAX_DEPTH {
        return Err(Error::format(
            Location::file(&dir),
            format!("more than {MAX_DEPTH} folders deep: a symbolic link loop?"),
        ));
    }
    let mut names = Vec::new();
    let mut subdirs = Vec::new();
    for entry in fs::read_dir(&dir).at(&dir)? {
        let entry = entry.at(&dir)?;
        if is_dir(&entry) {
            subdirs.push(utf8_name(&entry));
        } else {
            names.push(utf8_name(&entry));
        }
    }
    out.push((rel.clone(), names));
    for sub in subdirs {
        walk(root, format!("{rel}/{sub}"), depth + 1, out)?;
    }
    Ok(())
}

/// Runs of consecutive files of at most `PART_BYTES` or `PART_FILES`.
fn parts(root: &Path, files: &[ImageFile], name: &str) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let item = item_len(f, name);
        match parts.last_mut() {
            Some(p) if p.file_bytes < PART_BYTES && (p.samples as usize) < PART_FILES => {
                p.samples += 1;
                p.file_bytes += f.size;
                p.item_bytes += item;
            }
            _ => {
                let class = f.rel.split('/').next().unwrap_or_default();
                parts.push(Part {
                    path: root.join(class),
                    first_sample: i as u64,
                    samples: 1,
                    file_bytes: f.size,
                    item_bytes: item,
                });
            }
        }
    }
    parts
}

/// A sample's size in classic encoding: three leaf sizes, the image, the label, the path.
fn item_len(f: &ImageFile, name: &str) -> u64 {
    12 + f.size + 8 + (name.len() + 1 + f.rel.len()) as u64
}

impl Source for ImageFolder {
    fn kind(&self) -> &'static str {
        "imagefolder"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn parts(&self) -> Result<Vec<Part>> {
        Ok(self.parts.clone())
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn config(&self) -> Value {
        json!({"classes": self.classes})
    }

    fn read_part(&self, i: usize, recycler: &Recycler) -> Result<DecodedChunk> {
        let part = &self.parts[i];
        let first = part.first_sample as usize;
        let mut bytes = recycler
            .take(part.item_bytes as usize)
            .map_err(|e| Error::format(Location::file(&part.path), e))?;
        let mut items = Vec::with_capacity(part.samples as usize);
        for (k, f) in self.files[first..first + part.samples as usize]
            .iter()
            .enumerate()
        {
            let path = self.root.join(&f.rel);
            let at = |message: String| {
                Error::format(Location::sample(&path, (first + k) as u64), message)
            };
            if f.size > u32::MAX as u64 {
                return Err(at(format!("{} bytes: more than 4 GiB", f.size)));
            }
            let value = self.path_value(f);
            let start = bytes.len();
            for len in [f.size, 8, value.len() as u64] {
                bytes.extend_from_slice(&(len as u32).to_le_bytes());
            }
            let image = bytes.len();
            read_bounded(&path, f.size, &mut bytes)?;
            let read = (bytes.len() - image) as u64;
            if read != f.size {
                return Err(at(format!(
                    "changed while the cache was built ({read} bytes, {} when listed)",
                    f.size
                )));
            }
            if probe(&bytes[image..]).is_none() {
                return Err(at(
                    "not a JPEG, PNG or WebP image, the formats slipstream decodes \
                     (torchvision's ImageFolder opens others with PIL): convert or remove the \
                     file"
                        .into(),
                ));
            }
            bytes.extend_from_slice(&f.label.to_le_bytes());
            bytes.extend_from_slice(value.as_bytes());
            items.push(start..bytes.len());
        }
        Ok(DecodedChunk { bytes, items })
    }
}
