//! A LitData "optimized" dataset on local disk: `index.json` and the chunk files it lists.
//!
//! Opening a dataset reads and validates `index.json` completely (every field LitData writes,
//! see [`Index`]), resolves the sample schema from `data_spec` + `data_format`, checks that
//! every chunk file exists and stays inside the dataset directory, and computes the source
//! fingerprint the cache uses to notice a changed source. Chunk contents are read later, by
//! [`super::chunk`].

use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::files::{Fingerprint, file_version, read_bounded};
use super::serializer::Serializer;
use crate::error::{Error, IoContext, Location, Result};

pub const INDEX_FILENAME: &str = "index.json";
/// The largest `index.json` read (LitData writes about 150 bytes per chunk).
pub const MAX_INDEX_BYTES: u64 = 512 << 20;

/// `index.json` as LitData writes it. Unknown keys are kept, so nothing a newer LitData adds
/// is silently lost when we record the config in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    pub chunks: Vec<ChunkEntry>,
    pub config: Config,
    #[serde(default)]
    pub updated_at: Option<Value>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub filename: String,
    /// Number of items in the chunk.
    pub chunk_size: u64,
    /// Size of the chunk before file-level compression.
    pub chunk_bytes: u64,
    #[serde(default)]
    pub dim: Option<u64>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub compression_level: Option<String>,
    #[serde(default)]
    pub compression_batch_size: Option<u64>,
    #[serde(default)]
    pub ipc_compression: Option<String>,
    #[serde(default)]
    pub chunk_size: Option<u64>,
    #[serde(default)]
    pub chunk_bytes: Option<u64>,
    #[serde(default)]
    pub data_format: Option<Vec<String>>,
    #[serde(default)]
    pub data_spec: Option<String>,
    #[serde(default)]
    pub types: Option<Value>,
    #[serde(default)]
    pub encryption: Option<Value>,
    #[serde(default)]
    pub item_loader: Option<String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// How a sample's leaves are arranged, from LitData's `data_spec` treespec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// A flat dict: fields are its keys, in insertion order.
    Dict,
    /// A flat tuple: fields are named "0", "1", ...
    Tuple,
    /// A flat list: fields are named "0", "1", ...
    List,
    /// A single value: one field named "0".
    Leaf,
}

#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub name: String,
    /// LitData's serializer name exactly as in `data_format` (e.g. `no_header_numpy:9`).
    pub format: String,
    pub serializer: Serializer,
}

impl FieldSpec {
    /// A field named `name` holding `serializer`'s values, `format` its LitData name.
    pub fn new(name: &str, format: &str, serializer: Serializer) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            format: format.into(),
            serializer,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub layout: Layout,
    pub fields: Vec<FieldSpec>,
}

#[derive(Debug, Clone)]
pub struct Chunk {
    pub path: PathBuf,
    pub entry: ChunkEntry,
    /// Global index of the chunk's first sample.
    pub first_sample: u64,
    /// Size on disk.
    pub file_len: u64,
    /// The most bytes its items may decompress to ([`max_inflated`]).
    pub max_inflated: u64,
}

/// The most bytes a chunk's items may decompress to: four times the most `index.json` says of
/// it (its entry's `chunk_bytes`, the config's `chunk_bytes`, its file size) plus 64 MiB, and
/// never more than 4 GiB. For whole-chunk compression the entry's `chunk_bytes` is the exact
/// uncompressed size; with per-item compression LitData fills a chunk until its items'
/// uncompressed size reaches the config's `chunk_bytes`, so only a last item larger than
/// three chunks could pass the bound. A zstd bomb is refused once it passes it.
pub fn max_inflated(entry: &ChunkEntry, config: &Config, file_len: u64) -> u64 {
    const HARD_CAP: u64 = 4 << 30;
    let declared = entry
        .chunk_bytes
        .max(config.chunk_bytes.unwrap_or(0))
        .max(file_len);
    declared
        .saturating_mul(4)
        .saturating_add(64 << 20)
        .min(HARD_CAP)
}

/// A chunk file's size and the bytes that identify its version (mtime, a content hash, or an
/// ETag).
type ChunkVersion = (u64, Vec<u8>);

/// The version of the local chunk file at `path`: its size and, as `fingerprint` says, its
/// modification time or a hash of its bytes.
fn local_version(path: &Path, fingerprint: Fingerprint) -> Result<ChunkVersion> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::format(
                Location::file(path),
                format!(
                    "chunk file listed in {} is missing",
                    path.with_file_name(INDEX_FILENAME).display()
                ),
            ));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let version = file_version(path, &meta, fingerprint)?;
    Ok((meta.len(), version.to_le_bytes().to_vec()))
}

/// A validated LitData dataset directory.
#[derive(Debug, Clone)]
pub struct LitDataset {
    pub root: PathBuf,
    pub index: Index,
    pub schema: Schema,
    pub chunks: Vec<Chunk>,
    pub num_samples: u64,
    /// Changes whenever `index.json` or any chunk file changes (content of the index, size and
    /// modification time of each chunk).
    pub fingerprint: String,
}

impl LitDataset {
    /// The dataset in directory `root`, fingerprinted by its chunks' sizes and modification
    /// times.
    pub fn open(root: impl AsRef<Path>) -> Result<LitDataset> {
        LitDataset::open_with(root, Fingerprint::Mtime)
    }

    pub fn open_with(root: impl AsRef<Path>, fingerprint: Fingerprint) -> Result<LitDataset> {
        let root = root.as_ref();
        let meta = fs::metadata(root).at(root)?;
        if !meta.is_dir() {
            return Err(Error::invalid(format!(
                "{}: not a directory; expected a LitData dataset directory (holding index.json) or a .slipcache file",
                root.display()
            )));
        }
        let root = root.canonicalize().at(root)?;
        let index_path = root.join(INDEX_FILENAME);
        if !index_path.exists() {
            return Err(Error::format(
                Location::file(&index_path),
                "index.json is missing: this is not a LitData optimized dataset (make one with \
                 litdata.optimize), nor an ImageFolder tree (it has no class folders)",
            ));
        }
        let mut index_bytes = Vec::new();
        read_bounded(&index_path, MAX_INDEX_BYTES, &mut index_bytes)?;
        LitDataset::assemble(root, index_bytes, &mut |path| {
            local_version(path, fingerprint)
        })
    }

    /// A dataset whose chunk files are still to arrive in `root` (downloads): `index.json`'s
    /// bytes, and each chunk's size and version (an ETag) by file name. The fingerprint covers
    /// the versions, so a changed remote dataset is noticed before anything is downloaded.
    pub fn from_remote(
        root: &Path,
        index_bytes: Vec<u8>,
        chunk: &dyn Fn(&str) -> Result<(u64, String)>,
    ) -> Result<LitDataset> {
        let root = root.canonicalize().at(root)?;
        let prefix = root.clone();
        LitDataset::assemble(root, index_bytes, &mut |path| {
            let name = path.strip_prefix(&prefix).unwrap_or(path).to_string_lossy();
            let (size, version) = chunk(&name)?;
            Ok((size, version.into_bytes()))
        })
    }

    /// The dataset from `index.json`'s bytes; `file(path)` gives each chunk file's size and
    /// the bytes that identify its version (for the fingerprint).
    fn assemble(
        root: PathBuf,
        index_bytes: Vec<u8>,
        file: &mut dyn FnMut(&Path) -> Result<ChunkVersion>,
    ) -> Result<LitDataset> {
        let index_path = root.join(INDEX_FILENAME);
        let index: Index = serde_json::from_slice(&index_bytes).map_err(|e| {
            Error::format(
                Location::file(&index_path),
                format!("index.json is not valid LitData index JSON: {e}"),
            )
        })?;
        let schema = resolve_schema(&root, &index_path, &index.config)?;

        let mut chunks = Vec::with_capacity(index.chunks.len());
        let mut first_sample = 0u64;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&index_bytes);
        for entry in &index.chunks {
            let path = chunk_path(&root, &index_path, &entry.filename)?;
            let (len, version) = file(&path)?;
            hasher.update(entry.filename.as_bytes());
            hasher.update(&len.to_le_bytes());
            hasher.update(&version);
            chunks.push(Chunk {
                path,
                entry: entry.clone(),
                first_sample,
                file_len: len,
                max_inflated: max_inflated(entry, &index.config, len),
            });
            first_sample = first_sample.checked_add(entry.chunk_size).ok_or_else(|| {
                Error::format(Location::file(&index_path), "chunk sizes overflow")
            })?;
        }
        if first_sample == 0 {
            return Err(Error::format(
                Location::file(&index_path),
                "the dataset is empty (index.json lists no samples)",
            ));
        }
        Ok(LitDataset {
            root,
            index,
            schema,
            chunks,
            num_samples: first_sample,
            fingerprint: format!("{:032x}", hasher.digest128()),
        })
    }
}

fn chunk_path(root: &Path, index_path: &Path, filename: &str) -> Result<PathBuf> {
    let rel = Path::new(filename);
    let plain = !filename.is_empty()
        && !filename.contains('\\')
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(Error::format(
            Location::file(index_path),
            format!(
                "chunk filename {filename:?} points outside the dataset directory; refusing to read it"
            ),
        ));
    }
    Ok(root.join(rel))
}

fn resolve_schema(root: &Path, index_path: &Path, config: &Config) -> Result<Schema> {
    let unsupported = |feature: String, hint: &str| Error::Unsupported {
        dataset: root.to_path_buf(),
        feature,
        hint: hint.to_string(),
    };
    if config.encryption.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "an encrypted LitData dataset".into(),
            "Write the dataset without `encryption=` (slipstream keeps its own cache on local disk).",
        ));
    }
    match config.item_loader.as_deref() {
        None | Some("PyTreeLoader") => {}
        Some(other) => {
            return Err(unsupported(
                format!("item_loader {other:?}"),
                "slipstream reads datasets written by litdata.optimize() with the default PyTreeLoader; \
                 re-run optimize() without a custom item_loader (ParquetLoader, TokensLoader and \
                 TemporalArrayLoader datasets are not images+labels datasets).",
            ));
        }
    }
    if let Some(c) = &config.compression
        && !c.starts_with("zstd")
    {
        return Err(unsupported(
            format!("compression {c:?}"),
            "slipstream reads uncompressed and zstd-compressed chunks; re-run optimize() with compression=None or \"zstd\".",
        ));
    }
    let formats = config.data_format.clone().ok_or_else(|| {
        Error::format(
            Location::file(index_path),
            "config.data_format is missing or null",
        )
    })?;
    let spec_text = config.data_spec.as_deref().ok_or_else(|| {
        Error::format(
            Location::file(index_path),
            "config.data_spec is missing or null",
        )
    })?;
    let (layout, names) = parse_data_spec(spec_text).map_err(|message| {
        if message.starts_with("nested") {
            unsupported(
                format!("a nested sample structure ({message})"),
                "slipstream reads samples that are a flat dict (or tuple/list) of leaves; return a flat \
                 dict such as {\"image\": ..., \"label\": ...} from your optimize() function.",
            )
        } else {
            Error::format(
                Location::file(index_path),
                format!("config.data_spec: {message}"),
            )
        }
    })?;
    if names.len() != formats.len() {
        return Err(Error::format(
            Location::file(index_path),
            format!(
                "config.data_spec has {} leaves but config.data_format has {} entries",
                names.len(),
                formats.len()
            ),
        ));
    }
    let mut fields = Vec::with_capacity(names.len());
    for (name, format) in names.into_iter().zip(formats) {
        let serializer = Serializer::parse(&format).map_err(|why| {
            unsupported(
                format!("field '{name}' with LitData serializer {format:?} ({why})"),
                "Supported serializers: bytes, jpeg, image:*, pil, int, float, bool, str, text, \
                 numpy, tensor, no_header_numpy:N, no_header_tensor:N. Store the value as one of \
                 those (for example raw file bytes) and run optimize() again.",
            )
        })?;
        fields.push(FieldSpec {
            name,
            format,
            serializer,
        });
    }
    Ok(Schema { layout, fields })
}

/// Parse LitData's serialized treespec, `[protocol, {"type", "context", "children_spec"}]`,
/// for a flat container of leaves. Returns the layout and one name per leaf.
fn parse_data_spec(text: &str) -> std::result::Result<(Layout, Vec<String>), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let node = value
        .as_array()
        .filter(|a| a.len() == 2)
        .map(|a| &a[1])
        .ok_or("expected [protocol, treespec]")?;
    let is_leaf = |n: &Value| {
        n.get("type").is_some_and(Value::is_null)
            && n.get("children_spec")
                .and_then(Value::as_array)
                .is_some_and(|c| c.is_empty())
    };
    if is_leaf(node) {
        return Ok((Layout::Leaf, vec!["0".into()]));
    }
    let kind = node
        .get("type")
        .and_then(Value::as_str)
        .ok_or("treespec node without a type")?;
    let children = node
        .get("children_spec")
        .and_then(Value::as_array)
        .ok_or("treespec node without children_spec")?;
    if let Some(bad) = children.iter().position(|c| !is_leaf(c)) {
        return Err(format!(
            "nested: child {bad} of the {kind} is itself a container"
        ));
    }
    match kind {
        "builtins.dict" | "collections.OrderedDict" | "collections.defaultdict" => {
            let context = node.get("context").ok_or("dict treespec without context")?;
            // LitData stores the key list as a JSON string inside the JSON.
            let keys: Value = match context {
                Value::String(s) => {
                    serde_json::from_str(s).map_err(|e| format!("dict context: {e}"))?
                }
                other => other.clone(),
            };
            let keys = keys
                .as_array()
                .ok_or("dict context is not a list of keys")?
                .iter()
                .map(|k| match k {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>();
            if keys.len() != children.len() {
                return Err(format!(
                    "dict has {} keys but {} children",
                    keys.len(),
                    children.len()
                ));
            }
            Ok((Layout::Dict, keys))
        }
        "builtins.tuple" | "builtins.list" => {
            let layout = if kind == "builtins.tuple" {
                Layout::Tuple
            } else {
                Layout::List
            };
            Ok((layout, (0..children.len()).map(|i| i.to_string()).collect()))
        }
        other => Err(format!("nested: unsupported container type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_spec_dict() {
        let spec = r#"[1, {"type": "builtins.dict", "context": "[\"image\", \"label\"]", "children_spec": [{"type": null, "context": null, "children_spec": []}, {"type": null, "context": null, "children_spec": []}]}]"#;
        let (layout, names) = parse_data_spec(spec).unwrap();
        assert_eq!(layout, Layout::Dict);
        assert_eq!(names, ["image", "label"]);
    }

    #[test]
    fn data_spec_leaf_and_tuple() {
        let leaf = r#"[1, {"type": null, "context": null, "children_spec": []}]"#;
        assert_eq!(
            parse_data_spec(leaf).unwrap(),
            (Layout::Leaf, vec!["0".into()])
        );
        let tuple = r#"[1, {"type": "builtins.tuple", "context": "null", "children_spec": [{"type": null, "context": null, "children_spec": []}, {"type": null, "context": null, "children_spec": []}]}]"#;
        assert_eq!(
            parse_data_spec(tuple).unwrap(),
            (Layout::Tuple, vec!["0".into(), "1".into()])
        );
    }

    #[test]
    fn data_spec_nested_is_refused() {
        let nested = r#"[1, {"type": "builtins.dict", "context": "[\"a\"]", "children_spec": [{"type": "builtins.list", "context": "null", "children_spec": [{"type": null, "context": null, "children_spec": []}]}]}]"#;
        assert!(parse_data_spec(nested).unwrap_err().starts_with("nested"));
    }

    #[test]
    fn chunk_names_must_stay_inside() {
        let root = Path::new("/data/ds");
        let index = root.join("index.json");
        assert!(chunk_path(root, &index, "chunk-0-0.bin").is_ok());
        for bad in ["../x.bin", "/etc/passwd", "", "a/../../b", "..\\x.bin"] {
            assert!(chunk_path(root, &index, bad).is_err(), "{bad}");
        }
    }
}
