//! The `.beton` layout, from FFCV's own code (ffcv/types.py, writer.py, memory_allocator.py,
//! fields/*.py; all numbers little-endian), and the parsing of its header and field descriptors:
//!
//! - bytes 0..24, the header (numpy `HeaderType`, `align=True`): `u16 version` (2),
//!   `u16 num_fields`, `u32 page_size`, `u64 num_samples`, `u64 alloc_table_ptr`;
//! - `num_fields` field descriptors of 1041 bytes (`FieldDescType`): `u8 type_id`, the field's
//!   name (16 bytes, NUL-padded ASCII, cut at 16), 1024 bytes of the field class's arguments;
//! - the metadata table: `num_samples` rows, each the struct of the fields' entries that numpy
//!   builds with `align=True` (each entry at a multiple of its alignment, the row padded to the
//!   largest): `IntField` `i64` and `FloatField` `f64` (the value itself, alignment 8),
//!   `BytesField` and `JSONField` `{u64 ptr, u64 size}` (a packed struct: 16 bytes, alignment
//!   1), `RGBImageField` `{u8 mode, u16 width, u16 height, u64 data_ptr}` (packed: 13 bytes,
//!   alignment 1; mode 0 is JPEG, 1 raw `height × width × 3` RGB pixels), `NDArrayField` and
//!   `TorchTensorField` `u64 ptr` (alignment 8);
//! - the data region: pages of `page_size` bytes, the first at the metadata's end rounded up to
//!   a page; every pointer above is an absolute file offset into it;
//! - at `alloc_table_ptr`, up to the end of the file, the allocation table: one
//!   `{u64 sample_id, u64 ptr, u64 size}` entry per allocation, in no particular order. It
//!   is where an image's size is found (its metadata holds only the pointer).
//!

use std::path::Path;

use serde_json::Value;

use crate::dtype::DType;
use crate::error::{Error, Location};

/// FFCV's `CURRENT_VERSION`, the only one read.
const VERSION: u16 = 2;
pub(super) const HEADER_LEN: u64 = 24;
pub(super) const DESCRIPTOR_LEN: u64 = 1 + NAME_LEN as u64 + ARGS_LEN as u64;
pub(super) const NAME_LEN: usize = 16;
const ARGS_LEN: usize = 1024;
pub(super) const ALLOC_ENTRY_LEN: u64 = 24;
/// `NDArrayArgsType`: `u64 shape[32]`, `u64 type_length`, then the dtype's JSON description.
const ARRAY_ARGS_LEN: usize = 33 * 8;
const MAX_DIMS: usize = 32;
/// RGBImageField's modes (`IMAGE_MODES`).
pub(super) const MODE_JPG: u8 = 0;
pub(super) const MODE_RAW: u8 = 1;

/// The file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) version: u16,
    pub(super) num_fields: u16,
    pub(super) page_size: u32,
    pub(super) num_samples: u64,
    pub(super) alloc_table_ptr: u64,
}

/// An FFCV field class, from its descriptor's type id (`TYPE_ID_HANDLER`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Class {
    Float,
    Int,
    RgbImage,
    Bytes,
    NdArray(ArrayType),
    Json,
    TorchTensor(ArrayType),
}

/// The fixed dtype and shape of an `NDArrayField` or `TorchTensorField`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ArrayType {
    pub(super) dtype: DType,
    pub(super) shape: Vec<u32>,
    /// Bytes of one value.
    pub(super) size: u64,
}

impl Class {
    pub(super) fn ffcv_name(&self) -> &'static str {
        match self {
            Class::Float => "FloatField",
            Class::Int => "IntField",
            Class::RgbImage => "RGBImageField",
            Class::Bytes => "BytesField",
            Class::NdArray(_) => "NDArrayField",
            Class::Json => "JSONField",
            Class::TorchTensor(_) => "TorchTensorField",
        }
    }

    /// The size and numpy alignment of the field's metadata entry. Numbers are aligned to 8;
    /// the structs FFCV declares without `align=True` are packed, alignment 1.
    pub(super) fn entry(&self) -> (u64, u64) {
        match self {
            Class::Float | Class::Int | Class::NdArray(_) | Class::TorchTensor(_) => (8, 8),
            Class::RgbImage => (13, 1),
            Class::Bytes | Class::Json => (16, 1),
        }
    }
}

/// Why a file is not read: it is damaged, or it uses something slipstream does not read.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Refusal {
    Corrupt(String),
    Unsupported { feature: String, hint: String },
}

impl Refusal {
    pub(super) fn at(self, path: &Path) -> Error {
        match self {
            Refusal::Corrupt(message) => Error::format(Location::file(path), message),
            Refusal::Unsupported { feature, hint } => Error::Unsupported {
                dataset: path.to_path_buf(),
                feature,
                hint,
            },
        }
    }
}

/// How an array field's values are stored: a `numpy` leaf (LitData numpy dtype index, header
/// little-endian) or, for tensors whose dtype LitData's torch table has, a `tensor` leaf
/// (torch dtype index, header big-endian).
pub(super) enum ArrayLeaf {
    Numpy(u32),
    Tensor(u32),
}

pub(super) fn array_leaf(class: &Class, array: &ArrayType) -> ArrayLeaf {
    let index = |table: fn(u32) -> Option<DType>| (0..64).find(|&i| table(i) == Some(array.dtype));
    if matches!(class, Class::TorchTensor(_))
        && let Some(i) = index(DType::from_litdata_torch)
    {
        return ArrayLeaf::Tensor(i);
    }
    // Every dtype a numpy description names is in LitData's numpy table.
    ArrayLeaf::Numpy(index(DType::from_litdata_numpy).unwrap_or(u32::MAX))
}

/// The bytes that precede an array's data in its leaf.
pub(super) fn array_header(class: &Class, array: &ArrayType) -> Vec<u8> {
    let (index, big_endian) = match array_leaf(class, array) {
        ArrayLeaf::Numpy(i) => (i, false),
        ArrayLeaf::Tensor(i) => (i, true),
    };
    let mut header = Vec::with_capacity(8 + 4 * array.shape.len());
    let ndim = array.shape.len() as u32;
    for v in [index, ndim].into_iter().chain(array.shape.iter().copied()) {
        header.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }
    header
}

pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The header, from the file's first bytes; `None` when there are fewer than 24.
pub(super) fn parse_header(b: &[u8]) -> Option<Header> {
    if (b.len() as u64) < HEADER_LEN {
        return None;
    }
    // HeaderType with align=True: the u4 follows the two u2 without padding, the u8s at 8, 16.
    Some(Header {
        version: u16_at(b, 0),
        num_fields: u16_at(b, 2),
        page_size: u32_at(b, 4),
        num_samples: u64_at(b, 8),
        alloc_table_ptr: u64_at(b, 16),
    })
}

/// What the header alone says is wrong with a file of `len` bytes.
pub(super) fn check_header(h: &Header, len: u64) -> Result<(), String> {
    if h.version != VERSION {
        return Err(format!(
            "FFCV format version {}, where slipstream reads version {VERSION} (what \
             ffcv.writer.DatasetWriter writes); not a .beton file, or one from an older FFCV: \
             rewrite it with a current FFCV",
            h.version
        ));
    }
    if !h.page_size.is_power_of_two() {
        return Err(format!(
            "page size {} is not a power of two, as FFCV's are: not a .beton file, or damaged",
            h.page_size
        ));
    }
    if h.num_fields == 0 {
        return Err("the header declares no fields".into());
    }
    let descriptors_end = HEADER_LEN + h.num_fields as u64 * DESCRIPTOR_LEN;
    if descriptors_end > len {
        return Err(format!(
            "{} field descriptors end at byte {descriptors_end}, past the end of the file \
             ({len} bytes): truncated, or not a .beton file",
            h.num_fields
        ));
    }
    if h.alloc_table_ptr < descriptors_end || h.alloc_table_ptr > len {
        return Err(format!(
            "the allocation table pointer ({}) is outside bytes {descriptors_end}..{len} of \
             the file: truncated, or damaged",
            h.alloc_table_ptr
        ));
    }
    let table = len - h.alloc_table_ptr;
    if !table.is_multiple_of(ALLOC_ENTRY_LEN) {
        return Err(format!(
            "the allocation table (bytes {}..{len}) is not a whole number of \
             {ALLOC_ENTRY_LEN}-byte entries: truncated, or damaged",
            h.alloc_table_ptr
        ));
    }
    Ok(())
}

/// A field descriptor's name and class.
pub(super) fn parse_descriptor(d: &[u8]) -> Result<(String, Class), Refusal> {
    let corrupt = |m: String| Refusal::Corrupt(m);
    if d.len() as u64 != DESCRIPTOR_LEN {
        return Err(corrupt(format!("a field descriptor of {} bytes", d.len())));
    }
    let raw_name = &d[1..1 + NAME_LEN];
    let raw_name = &raw_name[..raw_name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN)];
    if !raw_name.is_ascii() {
        return Err(corrupt(format!(
            "field name {:?} is not ASCII, as FFCV writes names: damaged",
            String::from_utf8_lossy(raw_name)
        )));
    }
    let name = String::from_utf8_lossy(raw_name).into_owned();
    let args = &d[1 + NAME_LEN..];
    let class = match d[0] {
        0 => Class::Float,
        1 => Class::Int,
        2 => Class::RgbImage,
        3 => Class::Bytes,
        4 => Class::NdArray(parse_array_args(&name, args)?),
        5 => Class::Json,
        6 => Class::TorchTensor(parse_array_args(&name, args)?),
        255 => {
            return Err(Refusal::Unsupported {
                feature: format!("field '{name}', of a custom FFCV field class (type id 255),"),
                hint: "Only its own Python code knows its layout; slipstream reads FFCV's \
                       FloatField, IntField, RGBImageField, BytesField, NDArrayField, \
                       JSONField and TorchTensorField."
                    .into(),
            });
        }
        other => {
            return Err(corrupt(format!(
                "field '{name}' has type id {other}, which no FFCV field class has (0 to 6, \
                 255 for custom fields): damaged, or not a .beton file"
            )));
        }
    };
    Ok((name, class))
}

/// An array field's dtype and shape from its arguments (`NDArrayField.to_binary`): the shape
/// as 32 `u64`s, trailing zeros unused, then the length and text of `json.dumps(dtype.descr)`.
fn parse_array_args(name: &str, args: &[u8]) -> Result<ArrayType, Refusal> {
    let corrupt = |m: String| Refusal::Corrupt(format!("array field '{name}': {m}"));
    let unsupported = |what: String| Refusal::Unsupported {
        feature: format!("array field '{name}' of dtype {what}"),
        hint: "slipstream reads arrays of little-endian booleans, integers, floats and \
               complex numbers."
            .into(),
    };
    if args.len() != ARGS_LEN {
        return Err(corrupt(format!("{} bytes of arguments", args.len())));
    }
    let mut shape: Vec<u64> = (0..MAX_DIMS).map(|d| u64_at(args, 8 * d)).collect();
    // As NDArrayField.from_binary: trailing zeros are not dimensions.
    while shape.last() == Some(&0) {
        shape.pop();
    }
    let type_len = u64_at(args, 8 * MAX_DIMS);
    if type_len > (ARGS_LEN - ARRAY_ARGS_LEN) as u64 {
        return Err(corrupt(format!(
            "a dtype description of {type_len} bytes, more than its arguments hold"
        )));
    }
    let text = &args[ARRAY_ARGS_LEN..ARRAY_ARGS_LEN + type_len as usize];
    let descr: Value = serde_json::from_slice(text).map_err(|e| {
        corrupt(format!(
            "dtype description {:?} is not JSON: {e}",
            String::from_utf8_lossy(text)
        ))
    })?;
    // A plain dtype's `descr` is [["", "<f4"]]; structured and subarray dtypes have more.
    let typestr = match descr.as_array().map(Vec::as_slice) {
        Some([Value::Array(pair)]) => match pair.as_slice() {
            [Value::String(_), Value::String(t)] => t.clone(),
            _ => return Err(unsupported(descr.to_string())),
        },
        _ => return Err(unsupported(descr.to_string())),
    };
    let dtype = numpy_dtype(&typestr).ok_or_else(|| unsupported(format!("'{typestr}'")))?;
    let dims = shape
        .iter()
        .map(|&d| u32::try_from(d))
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| corrupt(format!("shape {shape:?} has a dimension of 4G or more")))?;
    let size = shape
        .iter()
        .try_fold(dtype.size() as u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| corrupt(format!("shape {shape:?} overflows")))?;
    Ok(ArrayType {
        dtype,
        shape: dims,
        size,
    })
}

/// The dtype of a numpy type string (`<f4`, `|u1`); `None` for big-endian and other kinds.
fn numpy_dtype(typestr: &str) -> Option<DType> {
    let (order, code) = typestr.split_at_checked(1)?;
    use DType::*;
    let dtype = match code {
        "b1" => Bool,
        "i1" => Int8,
        "u1" => Uint8,
        "i2" => Int16,
        "u2" => Uint16,
        "f2" => Float16,
        "i4" => Int32,
        "u4" => Uint32,
        "f4" => Float32,
        "i8" => Int64,
        "u8" => Uint64,
        "f8" => Float64,
        "c8" => Complex64,
        "c16" => Complex128,
        _ => return None,
    };
    let ok = match order {
        "<" | "=" => true,
        "|" | ">" => dtype.size() == 1,
        _ => false,
    };
    ok.then_some(dtype)
}

/// Each entry's offset in a metadata row and the row's size: numpy's layout of FFCV's
/// `get_metadata_type`, a struct of the fields' entries built with `align=True`.
pub(super) fn row_layout(classes: &[&Class]) -> (Vec<u64>, u64) {
    let mut offsets = Vec::with_capacity(classes.len());
    let mut end = 0u64;
    let mut max_align = 1u64;
    for class in classes {
        let (size, align) = class.entry();
        let at = end.next_multiple_of(align);
        offsets.push(at);
        end = at + size;
        max_align = max_align.max(align);
    }
    (offsets, end.next_multiple_of(max_align))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn header_bytes(h: &Header) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&h.version.to_le_bytes());
        b.extend_from_slice(&h.num_fields.to_le_bytes());
        b.extend_from_slice(&h.page_size.to_le_bytes());
        b.extend_from_slice(&h.num_samples.to_le_bytes());
        b.extend_from_slice(&h.alloc_table_ptr.to_le_bytes());
        b
    }

    pub fn descriptor(type_id: u8, name: &str, args: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; DESCRIPTOR_LEN as usize];
        d[0] = type_id;
        d[1..1 + name.len()].copy_from_slice(name.as_bytes());
        d[1 + NAME_LEN..1 + NAME_LEN + args.len()].copy_from_slice(args);
        d
    }

    /// NDArrayField.to_binary for a shape and a `json.dumps(dtype.descr)`.
    fn array_args(shape: &[u64], descr: &str) -> Vec<u8> {
        let mut a = vec![0u8; ARGS_LEN];
        for (d, &n) in shape.iter().enumerate() {
            a[8 * d..8 * d + 8].copy_from_slice(&n.to_le_bytes());
        }
        a[256..264].copy_from_slice(&(descr.len() as u64).to_le_bytes());
        a[264..264 + descr.len()].copy_from_slice(descr.as_bytes());
        a
    }

    #[test]
    fn header_fields_and_checks() {
        let h = Header {
            version: 2,
            num_fields: 1,
            page_size: 1 << 21,
            num_samples: 3,
            alloc_table_ptr: 24 + 1041 + 24,
        };
        let bytes = header_bytes(&h);
        assert_eq!(bytes.len(), 24);
        assert_eq!(parse_header(&bytes), Some(h));
        assert_eq!(parse_header(&bytes[..23]), None);
        let len = h.alloc_table_ptr + 48;
        assert!(check_header(&h, len).is_ok());
        for (bad, says) in [
            (Header { version: 1, ..h }, "version 1"),
            (
                Header {
                    page_size: 3 << 20,
                    ..h
                },
                "power of two",
            ),
            (Header { num_fields: 0, ..h }, "no fields"),
            (Header { num_fields: 2, ..h }, "past the end"),
            (
                Header {
                    alloc_table_ptr: len + 1,
                    ..h
                },
                "allocation table pointer",
            ),
            (
                Header {
                    alloc_table_ptr: 10,
                    ..h
                },
                "allocation table pointer",
            ),
            (
                Header {
                    alloc_table_ptr: len - 23,
                    ..h
                },
                "whole number",
            ),
        ] {
            let err = check_header(&bad, len).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn descriptors_name_and_class() {
        let (name, class) = parse_descriptor(&descriptor(1, "label", &[])).unwrap();
        assert_eq!((name.as_str(), class), ("label", Class::Int));
        // Names are cut at 16 bytes, with no NUL then.
        let (name, class) = parse_descriptor(&descriptor(2, "sixteen_letters_", &[])).unwrap();
        assert_eq!(
            (name.as_str(), class),
            ("sixteen_letters_", Class::RgbImage)
        );
        for (id, class) in [(0, Class::Float), (3, Class::Bytes), (5, Class::Json)] {
            assert_eq!(
                parse_descriptor(&descriptor(id, "x", &[])).unwrap().1,
                class
            );
        }
        let args = array_args(&[2, 3], r#"[["", "<f4"]]"#);
        let (_, class) = parse_descriptor(&descriptor(4, "emb", &args)).unwrap();
        let expected = ArrayType {
            dtype: DType::Float32,
            shape: vec![2, 3],
            size: 24,
        };
        assert_eq!(class, Class::NdArray(expected.clone()));
        let (_, class) = parse_descriptor(&descriptor(6, "t", &args)).unwrap();
        assert_eq!(class, Class::TorchTensor(expected));
        let args = array_args(&[5], r#"[["", "|u1"]]"#);
        let (_, class) = parse_descriptor(&descriptor(4, "u", &args)).unwrap();
        assert!(matches!(
            class,
            Class::NdArray(ArrayType {
                dtype: DType::Uint8,
                size: 5,
                ..
            })
        ));

        assert!(matches!(
            parse_descriptor(&descriptor(9, "x", &[])),
            Err(Refusal::Corrupt(m)) if m.contains("type id 9")
        ));
        assert!(matches!(
            parse_descriptor(&descriptor(255, "x", &[])),
            Err(Refusal::Unsupported { .. })
        ));
        let big_endian = array_args(&[2], r#"[["", ">i4"]]"#);
        assert!(matches!(
            parse_descriptor(&descriptor(4, "x", &big_endian)),
            Err(Refusal::Unsupported { .. })
        ));
        let structured = array_args(&[2], r#"[["a", "<i4"], ["b", "<f4"]]"#);
        assert!(matches!(
            parse_descriptor(&descriptor(4, "x", &structured)),
            Err(Refusal::Unsupported { .. })
        ));
        let mut too_long = array_args(&[2], r#"[["", "<i4"]]"#);
        too_long[256..264].copy_from_slice(&2000u64.to_le_bytes());
        assert!(matches!(
            parse_descriptor(&descriptor(4, "x", &too_long)),
            Err(Refusal::Corrupt(_))
        ));
        let mut non_ascii = descriptor(1, "x", &[]);
        non_ascii[1] = 0xff;
        assert!(matches!(
            parse_descriptor(&non_ascii),
            Err(Refusal::Corrupt(_))
        ));
    }

    #[test]
    fn rows_are_laid_out_as_numpy_aligns_them() {
        let array = Class::NdArray(ArrayType {
            dtype: DType::Uint8,
            shape: vec![1],
            size: 1,
        });
        // Checked against numpy: np.dtype([('', t) for t in types], align=True).
        let cases: [(&[&Class], &[u64], u64); 6] = [
            (&[&Class::Int, &Class::RgbImage], &[0, 8], 24),
            (&[&Class::RgbImage, &Class::Int], &[0, 16], 24),
            (&[&Class::Bytes, &Class::RgbImage], &[0, 16], 29),
            (&[&Class::RgbImage], &[0], 13),
            (&[&Class::RgbImage, &Class::RgbImage], &[0, 13], 26),
            (&[&Class::Float, &Class::Json, &array], &[0, 8, 24], 32),
        ];
        for (classes, offsets, len) in cases {
            assert_eq!(row_layout(classes), (offsets.to_vec(), len), "{classes:?}");
        }
    }

    #[test]
    fn array_leaf_headers() {
        let a = ArrayType {
            dtype: DType::Float32,
            shape: vec![2, 3],
            size: 24,
        };
        let numpy = array_header(&Class::NdArray(a.clone()), &a);
        let expected: Vec<u8> = [9u32, 2, 2, 3]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(numpy, expected);
        let tensor = array_header(&Class::TorchTensor(a.clone()), &a);
        let expected: Vec<u8> = [0u32, 2, 2, 3]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(tensor, expected);
        assert_eq!(numpy_dtype("<c16"), Some(DType::Complex128));
        assert_eq!(numpy_dtype("|b1"), Some(DType::Bool));
        assert_eq!(numpy_dtype(">i1"), Some(DType::Int8));
        assert_eq!(numpy_dtype(">f8"), None);
        assert_eq!(numpy_dtype("<M8[ns]"), None);
        assert_eq!(numpy_dtype(""), None);
    }
}
