//! The cache file format, version 1. docs/FORMAT.md is the specification; this module is its
//! one implementation of the constants and the header types.
//!
//! ```text
//! 0      preamble (64 bytes): magic, version, header offset/length/checksum
//! 4096   data region: one block per sample, each starting on `sample_alignment`
//! ...    tables (64-byte aligned): per-field values / records / shapes / modes
//! ...    header: UTF-8 JSON describing everything above
//! ```

use serde::{Deserialize, Serialize};

use crate::dtype::DType;
use crate::source::Layout;

pub const MAGIC: &[u8; 8] = b"SLIPCACH";
pub const VERSION: u32 = 1;
pub const PREAMBLE_LEN: usize = 64;
/// The data region starts here, so it is aligned for direct I/O on any device.
pub const DATA_START: u64 = 4096;
/// Tables start on this boundary, so `numpy.memmap` views are aligned for every dtype.
pub const TABLE_ALIGN: u64 = 64;
/// Each value inside a sample block starts on this boundary.
pub const VALUE_ALIGN: u64 = 8;
pub const RECORD_LEN: usize = 24;
/// Refuse headers larger than this before allocating for them.
pub const MAX_HEADER_LEN: u64 = 256 << 20;
pub const FORMAT_NAME: &str = "slipstream-cache";

/// The 64-byte preamble at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub header_offset: u64,
    pub header_len: u64,
    pub header_crc32c: u32,
}

impl Preamble {
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        out[0..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        // 12..16: flags, zero in version 1.
        out[16..24].copy_from_slice(&self.header_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.header_len.to_le_bytes());
        out[32..36].copy_from_slice(&self.header_crc32c.to_le_bytes());
        out
    }

    /// Parse and check magic and version. The error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Preamble, String> {
        if bytes.len() < PREAMBLE_LEN {
            return Err(format!(
                "file is {} bytes, shorter than the preamble",
                bytes.len()
            ));
        }
        if &bytes[0..8] != MAGIC {
            return Err("not a slipstream cache (wrong magic)".into());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(format!(
                "cache format version {version}, this slipstream reads version {VERSION}"
            ));
        }
        let flags = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
        if flags != 0 {
            return Err(format!("unknown flags {flags:#x}"));
        }
        Ok(Preamble {
            header_offset: u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
            header_len: u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
            header_crc32c: u32::from_le_bytes(bytes[32..36].try_into().unwrap()),
        })
    }
}

/// A variable-length value's place in the data region, and what we know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    /// Absolute file offset of the value's first byte.
    pub offset: u64,
    pub size: u32,
    /// CRC-32C (Castagnoli) of the value's bytes.
    pub crc32c: u32,
    /// Image height and width read from the encoded header (or the PIL header); 0 if unknown.
    pub height: u32,
    pub width: u32,
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.crc32c.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Record {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Record {
            offset: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            size: u32_at(8),
            crc32c: u32_at(12),
            height: u32_at(16),
            width: u32_at(20),
        }
    }
}

/// A byte range of the file holding a table, with its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub offset: u64,
    pub size: u64,
    pub crc32c: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub offset: u64,
    pub size: u64,
}

/// What a field holds, which decides its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// `values`: `<i8` [N].
    Int,
    /// `values`: `<f8` [N].
    Float,
    /// `values`: `u1` [N], 0 or 1.
    Bool,
    /// `records`; the value is the bytes.
    Bytes,
    /// `records`; the value is UTF-8 text.
    Str,
    /// `records` (height/width set) and `modes`; the value is raw pixels as PIL's `tobytes()`.
    Pil,
    /// `records` and `shapes`; the value is the array's elements, C order, little-endian.
    Array,
    /// `records` (height/width set); the value is an image's YUV 4:2:0 planes
    /// (`decode::yuv420`), made by the `yuv420` encoding.
    Yuv420,
}

impl FieldKind {
    pub fn is_scalar(self) -> bool {
        matches!(self, FieldKind::Int | FieldKind::Float | FieldKind::Bool)
    }

    pub fn scalar_size(self) -> usize {
        match self {
            FieldKind::Int | FieldKind::Float => 8,
            FieldKind::Bool => 1,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldHeader {
    pub name: String,
    pub kind: FieldKind,
    /// The LitData serializer the values came from (`jpeg`, `no_header_numpy:9`, ...).
    pub litdata_format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Table>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Table>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shapes: Option<Table>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modes: Option<Table>,
    /// Array element type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<DType>,
    /// Array rank (the `shapes` table is [N, ndim]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndim: Option<u32>,
    /// The shape every sample has, when they all have the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_shape: Option<Vec<u32>>,
    /// `"numpy"` or `"torch"`: what LitData handed back for this array field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// PIL modes; the `modes` table indexes this list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode_names: Option<Vec<String>>,
    /// True when every record has its image height and width (encoded images, PIL images).
    #[serde(default)]
    pub images: bool,
    /// Sum of the sizes of all values (variable-length kinds).
    #[serde(default)]
    pub total_bytes: u64,
}

impl FieldHeader {
    /// A field of `kind` with no values yet: its tables are written once the data is.
    pub fn empty(name: &str, kind: FieldKind, litdata_format: &str) -> FieldHeader {
        FieldHeader {
            name: name.to_string(),
            kind,
            litdata_format: litdata_format.to_string(),
            values: None,
            records: None,
            shapes: None,
            modes: None,
            dtype: None,
            ndim: None,
            fixed_shape: None,
            framework: None,
            mode_names: (kind == FieldKind::Pil).then(Vec::new),
            images: false,
            total_bytes: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `"litdata"`.
    pub kind: String,
    /// The dataset directory the cache was built from.
    pub path: String,
    /// Changes when the source changes; a cache whose fingerprint differs is rebuilt.
    pub fingerprint: String,
    /// LitData's `config` from index.json, as it was.
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub num_samples: u64,
    pub layout: Layout,
    pub fields: Vec<FieldHeader>,
    pub data: Region,
    pub sample_alignment: u64,
    pub source: SourceInfo,
    /// How image fields were stored: absent for the source's own bytes (`original`).
    #[serde(default, skip_serializing_if = "Encoding::is_original")]
    pub encoding: Encoding,
    /// Where the pages quasi-random order shuffles begin (ascending sample indices from 0):
    /// a LitData source's chunks, so that the order, which depends on them, is the same
    /// however the cache was laid out. Absent: pages of about 8 MiB of the data region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<Vec<u64>>,
    pub created_by: String,
    pub created_unix: u64,
}

pub fn align_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// How a cache stores its image fields (`encoding.rs` builds the encodings other than the
/// original).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Original,
    Jpeg {
        max_side: Option<u32>,
        quality: u8,
    },
    Yuv420 {
        max_side: Option<u32>,
    },
}

impl Encoding {
    pub fn is_original(&self) -> bool {
        *self == Encoding::Original
    }
}
