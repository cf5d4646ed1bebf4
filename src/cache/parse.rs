//! A worker's share of a cache build: one part of the source read, each item split into its
//! fields' values, variable-length values checksummed and image headers probed.

use std::ops::Range;

use crate::decode::probe;
use crate::dtype::DType;
use crate::error::{Error, Location, Result};
use crate::source::chunk::split_item;
use crate::source::dataset::{Part, Source};
use crate::source::items::{DecodedChunk, Recycler};
use crate::source::serializer::Leaf;

/// One field's value of one sample, decoded by a worker.
pub(super) enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Var(VarValue),
}

pub(super) struct VarValue {
    /// Where the value's bytes are in the decoded part.
    pub(super) range: Range<usize>,
    pub(super) crc32c: u32,
    pub(super) height: u32,
    pub(super) width: u32,
    /// Arrays: element type and shape. PIL: the mode.
    pub(super) dtype: Option<DType>,
    pub(super) shape: Vec<u32>,
    pub(super) mode: Option<String>,
}

pub(super) struct ParsedChunk {
    pub(super) decoded: DecodedChunk,
    /// `samples[i][f]`: field `f` of the part's item `i`.
    pub(super) samples: Vec<Vec<Value>>,
}

/// Read part `index` of `source` and split its items into values.
pub(super) fn parse_part(
    source: &dyn Source,
    index: usize,
    part: &Part,
    recycler: &Recycler,
) -> Result<ParsedChunk> {
    let fields = &source.schema().fields;
    let decoded = source.read_part(index, recycler)?;
    if decoded.items.len() as u64 != part.samples {
        return Err(Error::format(
            Location::file(&part.path),
            format!(
                "{} samples read where {} were expected",
                decoded.items.len(),
                part.samples
            ),
        ));
    }
    let base = decoded.bytes.as_ptr() as usize;
    let mut samples = Vec::with_capacity(decoded.items.len());
    for i in 0..decoded.items.len() {
        let sample = part.first_sample + i as u64;
        let fail = |message: String| {
            Error::format(
                Location::sample(&part.path, sample),
                format!("item {i}: {message}"),
            )
        };
        let leaves = split_item(decoded.item(i), fields.len()).map_err(fail)?;
        let mut values = Vec::with_capacity(fields.len());
        for (field, bytes) in fields.iter().zip(leaves) {
            let leaf = field
                .serializer
                .decode(bytes)
                .map_err(|m| fail(format!("field '{}' ({}): {m}", field.name, field.format)))?;
            let range_of = |s: &[u8]| {
                let start = s.as_ptr() as usize - base;
                start..start + s.len()
            };
            let var = |s: &[u8]| VarValue {
                range: range_of(s),
                crc32c: crc32c::crc32c(s),
                height: 0,
                width: 0,
                dtype: None,
                shape: Vec::new(),
                mode: None,
            };
            values.push(match leaf {
                Leaf::Int(v) => Value::Int(v),
                Leaf::Float(v) => Value::Float(v),
                Leaf::Bool(v) => Value::Bool(v),
                Leaf::Str(s) => Value::Var(var(s.as_bytes())),
                Leaf::Bytes(b) => {
                    let mut v = var(b);
                    if let Some((_, h, w)) = probe(b) {
                        (v.height, v.width) = (h, w);
                    }
                    Value::Var(v)
                }
                Leaf::Pil {
                    width,
                    height,
                    mode,
                    pixels,
                } => Value::Var(VarValue {
                    height,
                    width,
                    mode: Some(mode.to_string()),
                    ..var(pixels)
                }),
                Leaf::Array { dtype, shape, data } => Value::Var(VarValue {
                    dtype: Some(dtype),
                    shape,
                    ..var(data)
                }),
            });
        }
        samples.push(values);
    }
    Ok(ParsedChunk { decoded, samples })
}
