//! Copying a batch's values out of the cache into one batch buffer.
//!
//! Each sample's bytes are copied once, straight from the memory map into their place in the
//! batch buffer, by rayon threads. The first time a value is read its checksum is checked on
//! the copy (see `CacheReader::check`).

use std::sync::Arc;

use rayon::prelude::*;

use crate::buffer::{Buffer, BufferPool};
use crate::cache::CacheReader;
use crate::cache::format::{FieldKind, Record};
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::HostTensor;
use crate::threads::parallelism_enabled;

/// A batch of variable-length values: their bytes back to back, and where each one starts.
#[derive(Debug)]
pub struct Gathered {
    pub buffer: Buffer,
    /// `offsets[i]..offsets[i + 1]` is sample `i`'s value; `offsets.len() == samples + 1`.
    pub offsets: Vec<i64>,
    pub records: Vec<Record>,
}

/// Copy field `field` of `samples` into one buffer from `pool`.
pub fn gather_values(
    reader: &CacheReader,
    field: usize,
    samples: &[u64],
    pool: &BufferPool,
) -> Result<Gathered> {
    let records: Vec<Record> = samples.iter().map(|&s| reader.record(field, s)).collect();
    let mut offsets = Vec::with_capacity(samples.len() + 1);
    let mut total = 0usize;
    offsets.push(0);
    for r in &records {
        total += r.size as usize;
        offsets.push(total as i64);
    }
    let mut buffer = pool.take(total)?;
    // Carve the buffer into one disjoint destination per sample.
    let mut destinations = Vec::with_capacity(samples.len());
    let mut rest = buffer.as_mut_slice();
    for r in &records {
        let (head, tail) = rest.split_at_mut(r.size as usize);
        destinations.push(head);
        rest = tail;
    }
    // The checksum is computed on the copy, while it is still in this core's cache.
    let copy = |((dst, r), &sample): ((&mut [u8], &Record), &u64)| -> Result<()> {
        dst.copy_from_slice(reader.record_bytes(field, sample, r)?);
        reader.check(field, sample, r, dst)
    };
    if parallelism_enabled() {
        destinations
            .into_par_iter()
            .zip(records.par_iter())
            .zip(samples.par_iter())
            .try_for_each(copy)?;
    } else {
        destinations
            .into_iter()
            .zip(records.iter())
            .zip(samples)
            .try_for_each(copy)?;
    }
    Ok(Gathered {
        buffer,
        offsets,
        records,
    })
}

/// Gather a scalar field (`int` → int64, `float` → float64, `bool` → bool) into a tensor [B].
pub fn gather_scalars(reader: &CacheReader, field: usize, samples: &[u64]) -> HostTensor {
    let kind = reader.fields()[field].kind;
    let (dtype, size) = match kind {
        FieldKind::Int => (DType::Int64, 8),
        FieldKind::Float => (DType::Float64, 8),
        FieldKind::Bool => (DType::Bool, 1),
        other => unreachable!("{other:?} is not a scalar kind"),
    };
    let table = reader.scalar_table(field);
    let mut buffer = Buffer::zeroed(samples.len() * size);
    for (dst, &s) in buffer.as_mut_slice().chunks_exact_mut(size).zip(samples) {
        let at = s as usize * size;
        dst.copy_from_slice(&table[at..at + size]);
    }
    HostTensor::new(Arc::new(buffer), dtype, vec![samples.len() as i64])
}
