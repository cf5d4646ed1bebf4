//! LitData chunk files: every on-disk layout LitData writes, reduced to one view.
//!
//! Whatever the layout, a decoded chunk is a byte buffer plus one range per item, each item in
//! LitData's classic item encoding (`u32 size[L]` then the L leaves). The layout is recognised
//! from the bytes themselves, not from `index.json`, because LitData sometimes writes a layout
//! other than the one its index names (see ../shared/TOOLCHAIN.md):
//!
//! | starts with / ends with | layout |
//! |---|---|
//! | zstd frame magic `28 b5 2f fd` | `compression_level="chunk"`: the whole file is one zstd frame of a classic chunk |
//! | `LDFZ01\0\0` | `compression_level="batch"`: frame table, then zstd frames of consecutive items |
//! | `u32 N, u32 offsets[N+1]`, items that start with zstd magic | `compression_level="sample"` |
//! | `u32 N, u32 offsets[N+1]` all equal to the header size, ends with `LDARW01\0` | "slim" chunk: rows in a trailing Arrow IPC blob |
//! | `u32 N, u32 offsets[N+1]`, items | classic, uncompressed (an Arrow footer after the items is ignored) |
//!
//! Every offset, size and count is checked before it is used.

use std::io::Read;
use std::ops::Range;
use std::path::Path;

use super::arrow::decode_slim;
use super::files::read_bounded;
use super::items::{DecodedChunk, Recycler};
use super::litdata::{Chunk, Schema};
use crate::error::{Error, Location, Result};

pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
pub const FRAMED_MAGIC: &[u8; 8] = b"LDFZ01\0\0";
pub const ARROW_FOOTER_MAGIC: &[u8; 8] = b"LDARW01\0";

/// Context for error messages and consistency checks.
struct Ctx<'a> {
    path: &'a Path,
    first_sample: u64,
    expected_items: u64,
    /// The most bytes the items may decompress to.
    max_inflated: u64,
    schema: &'a Schema,
    recycler: &'a Recycler,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> Error {
        Error::format(Location::file(self.path), message)
    }

    fn item_err(&self, item: usize, message: impl Into<String>) -> Error {
        Error::format(
            Location::sample(self.path, self.first_sample + item as u64),
            format!("item {item} of the chunk: {}", message.into()),
        )
    }
}

/// Read and decode one chunk file of a dataset.
pub fn read_chunk(chunk: &Chunk, schema: &Schema, recycler: &Recycler) -> Result<DecodedChunk> {
    let mut bytes = recycler
        .take(chunk.file_len as usize)
        .map_err(|e| Error::format(Location::file(&chunk.path), e))?;
    read_bounded(&chunk.path, chunk.file_len, &mut bytes)?;
    decode_chunk(bytes, chunk, schema, recycler)
}

/// Decode the contents of `chunk`'s file, `bytes` (which this takes over).
pub fn decode_chunk(
    bytes: Vec<u8>,
    chunk: &Chunk,
    schema: &Schema,
    recycler: &Recycler,
) -> Result<DecodedChunk> {
    let ctx = Ctx {
        path: &chunk.path,
        first_sample: chunk.first_sample,
        expected_items: chunk.entry.chunk_size,
        max_inflated: chunk.max_inflated,
        schema,
        recycler,
    };
    decode(bytes, &ctx, true)
}

/// Decode `bytes`, which this takes over (and recycles if it decodes into another buffer).
fn decode(bytes: Vec<u8>, ctx: &Ctx, allow_whole_file_zstd: bool) -> Result<DecodedChunk> {
    if bytes.starts_with(&ZSTD_MAGIC) && allow_whole_file_zstd {
        let guess = (bytes.len() as u64 * 4).min(ctx.max_inflated) as usize;
        let mut inflated = ctx.recycler.take(guess).map_err(|e| ctx.err(e))?;
        inflate(&bytes, ctx.max_inflated, &mut inflated)
            .map_err(|e| ctx.err(format!("zstd-compressed chunk: {e}")))?;
        ctx.recycler.give(bytes);
        return decode(inflated, ctx, false);
    }
    if bytes.starts_with(FRAMED_MAGIC) {
        let decoded = decode_framed(&bytes, ctx);
        ctx.recycler.give(bytes);
        return decoded;
    }
    decode_classic(bytes, ctx)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at.checked_add(4)?)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at.checked_add(8)?)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
}

fn check_count(n: u64, ctx: &Ctx) -> Result<()> {
    if n != ctx.expected_items {
        return Err(ctx.err(format!(
            "chunk holds {n} items but index.json says {}",
            ctx.expected_items
        )));
    }
    Ok(())
}

fn decode_classic(bytes: Vec<u8>, ctx: &Ctx) -> Result<DecodedChunk> {
    let len = bytes.len();
    let n = u32_at(&bytes, 0)
        .ok_or_else(|| ctx.err(format!("chunk is truncated: {len} bytes, no item count")))?
        as usize;
    check_count(n as u64, ctx)?;
    let header = 4 + 4 * (n + 1);
    if header > len {
        return Err(ctx.err(format!(
            "chunk is truncated: its offset table needs {header} bytes, the file has {len}"
        )));
    }
    let offsets: Vec<usize> = (0..=n)
        .map(|i| u32_at(&bytes, 4 + 4 * i).unwrap() as usize)
        .collect();
    if offsets[0] != header {
        return Err(ctx.err(format!(
            "first item offset is {}, expected the header size {header}",
            offsets[0]
        )));
    }
    for i in 0..n {
        if offsets[i + 1] < offsets[i] {
            return Err(ctx.item_err(i, "item offsets decrease"));
        }
        if offsets[i + 1] > len {
            return Err(ctx.item_err(
                i,
                format!(
                    "item ends at byte {} past the end of the file ({len} bytes): truncated chunk or corrupt offsets",
                    offsets[i + 1]
                ),
            ));
        }
    }
    let end = offsets[n];
    let footer = has_arrow_footer(&bytes);
    if n > 0 && end == header && footer {
        let decoded = decode_slim(&bytes, n, ctx.schema, ctx.recycler, ctx.max_inflated).map_err(
            |(item, message)| match item {
                Some(item) => ctx.item_err(item, message),
                None => ctx.err(message),
            },
        );
        ctx.recycler.give(bytes);
        return decoded;
    }
    if end != len && !footer {
        return Err(ctx.err(format!(
            "{} unexpected bytes after the last item (the offsets say the chunk ends at {end}, the file has {len})",
            len - end
        )));
    }
    let items: Vec<Range<usize>> = (0..n).map(|i| offsets[i]..offsets[i + 1]).collect();
    let sample_compressed = items
        .first()
        .is_some_and(|r| bytes[r.clone()].starts_with(&ZSTD_MAGIC));
    if sample_compressed {
        let decoded = inflate_items(&bytes, &items, ctx);
        ctx.recycler.give(bytes);
        return decoded;
    }
    Ok(DecodedChunk { bytes, items })
}

/// Decompress the zstd frames of `src` onto the end of `out`, streamed, and fail as soon as
/// more than `limit` bytes come out, or memory for them cannot be had.
fn inflate(src: &[u8], limit: u64, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(src)
        .map_err(|e| format!("does not decompress: {e}"))?;
    let start = out.len();
    let mut block = [0u8; 64 << 10];
    loop {
        let n = decoder
            .read(&mut block)
            .map_err(|e| format!("does not decompress: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        if (out.len() - start + n) as u64 > limit {
            return Err(format!(
                "decompresses to more than {limit} bytes, the most its index.json allows"
            ));
        }
        out.try_reserve(n)
            .map_err(|_| format!("not enough memory to decompress ({} bytes)", out.len() + n))?;
        out.extend_from_slice(&block[..n]);
    }
}

fn has_arrow_footer(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes.ends_with(ARROW_FOOTER_MAGIC)
}

/// `compression_level="sample"`: every item is its own zstd frame.
fn inflate_items(bytes: &[u8], items: &[Range<usize>], ctx: &Ctx) -> Result<DecodedChunk> {
    let mut out = ctx.recycler.take(bytes.len()).map_err(|e| ctx.err(e))?;
    let mut ranges = Vec::with_capacity(items.len());
    for (i, r) in items.iter().enumerate() {
        let start = out.len();
        let budget = ctx.max_inflated.saturating_sub(start as u64);
        inflate(&bytes[r.clone()], budget, &mut out)
            .map_err(|e| ctx.item_err(i, format!("zstd-compressed item: {e}")))?;
        ranges.push(start..out.len());
    }
    Ok(DecodedChunk {
        bytes: out,
        items: ranges,
    })
}

/// `compression_level="batch"`: `LDFZ01\0\0, u16 version, u16 flags, u32 N, u32 frame_rows,
/// u32 n_frames, u32 offsets[N+1]` (relative to the concatenated items), then per frame
/// `u32 first_item, u32 n_items, u64 offset, u32 compressed_len, u32 uncompressed_len`.
fn decode_framed(bytes: &[u8], ctx: &Ctx) -> Result<DecodedChunk> {
    const PREFIX: usize = 24;
    const FRAME: usize = 24;
    let truncated = || {
        ctx.err(format!(
            "framed zstd chunk is truncated ({} bytes)",
            bytes.len()
        ))
    };
    let version = bytes
        .get(8..10)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(truncated)?;
    if version != 1 {
        return Err(ctx.err(format!("framed zstd chunk version {version} is not known")));
    }
    let n = u32_at(bytes, 12).ok_or_else(truncated)? as usize;
    let n_frames = u32_at(bytes, 20).ok_or_else(truncated)? as usize;
    check_count(n as u64, ctx)?;
    let table = PREFIX + 4 * (n + 1);
    let frames_end = table
        .checked_add(FRAME.checked_mul(n_frames).ok_or_else(truncated)?)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(truncated)?;
    let offsets: Vec<usize> = (0..=n)
        .map(|i| u32_at(bytes, PREFIX + 4 * i).unwrap() as usize)
        .collect();
    if offsets[0] != 0 || offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(ctx.err("framed zstd chunk has inconsistent item offsets"));
    }
    let total = offsets[n];
    if total as u64 > ctx.max_inflated {
        return Err(ctx.err(format!(
            "framed zstd chunk claims {total} bytes of items, more than the {} its index allows",
            ctx.max_inflated
        )));
    }
    let mut out = ctx.recycler.take(total).map_err(|e| ctx.err(e))?;
    let mut next_item = 0usize;
    for f in 0..n_frames {
        let at = table + FRAME * f;
        let first = u32_at(bytes, at).unwrap() as usize;
        let count = u32_at(bytes, at + 4).unwrap() as usize;
        let offset = u64_at(bytes, at + 8).unwrap() as usize;
        let clen = u32_at(bytes, at + 16).unwrap() as usize;
        let ulen = u32_at(bytes, at + 20).unwrap() as usize;
        let frame_items = first..first.saturating_add(count);
        if first != next_item || frame_items.end > n {
            return Err(ctx.err(format!(
                "framed zstd frame {f} covers items {frame_items:?}, expected to start at {next_item}"
            )));
        }
        if offsets[frame_items.end] - offsets[first] != ulen {
            return Err(ctx.err(format!(
                "framed zstd frame {f} has the wrong uncompressed size"
            )));
        }
        let src = offset
            .checked_add(clen)
            .filter(|&e| offset >= frames_end && e <= bytes.len())
            .map(|e| &bytes[offset..e])
            .ok_or_else(|| {
                ctx.err(format!(
                    "framed zstd frame {f} lies outside the file: truncated chunk or corrupt frame table"
                ))
            })?;
        let before = out.len();
        inflate(src, ulen as u64, &mut out)
            .map_err(|e| ctx.item_err(first, format!("zstd frame {f}: {e}")))?;
        if out.len() - before != ulen {
            return Err(ctx.err(format!(
                "framed zstd frame {f} decompressed to the wrong size"
            )));
        }
        next_item = frame_items.end;
    }
    if next_item != n {
        return Err(ctx.err(format!("framed zstd frames cover {next_item} of {n} items")));
    }
    let items = (0..n).map(|i| offsets[i]..offsets[i + 1]).collect();
    Ok(DecodedChunk { bytes: out, items })
}

/// Split a classic item (`u32 size[L]` then the leaves) into its leaves.
pub fn split_item(item: &[u8], leaves: usize) -> std::result::Result<Vec<&[u8]>, String> {
    let header = 4 * leaves;
    if item.len() < header {
        return Err(format!(
            "item is {} bytes, too short for its {leaves} leaf sizes",
            item.len()
        ));
    }
    let mut out = Vec::with_capacity(leaves);
    let mut at = header;
    for l in 0..leaves {
        let size = u32_at(item, 4 * l).unwrap() as usize;
        let end = at
            .checked_add(size)
            .filter(|&e| e <= item.len())
            .ok_or_else(|| {
                format!(
                    "leaf {l} ({size} bytes) runs past the end of the item ({} bytes)",
                    item.len()
                )
            })?;
        out.push(&item[at..end]);
        at = end;
    }
    if at != item.len() {
        return Err(format!(
            "leaf sizes add up to {at} bytes but the item has {}",
            item.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflation_stops_at_its_bound() {
        let frame = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        let bomb: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 8)
            .collect();
        let mut out = Vec::new();
        inflate(&bomb, 8 << 20, &mut out).unwrap();
        assert_eq!(out.len(), 8 << 20, "every frame of a stream");
        out.clear();
        let e = inflate(&bomb, (3 << 20) + 5, &mut out).unwrap_err();
        assert!(e.contains("more than 3145733 bytes"), "{e}");
        assert!(out.len() <= (3 << 20) + 5, "nothing past the bound is kept");
        assert!(inflate(b"\x28\xb5\x2f\xfdnot zstd", 100, &mut out).is_err());
    }

    #[test]
    fn split_item_checks_sizes() {
        let mut item = Vec::new();
        item.extend_from_slice(&3u32.to_le_bytes());
        item.extend_from_slice(&1u32.to_le_bytes());
        item.extend_from_slice(b"abcZ");
        assert_eq!(split_item(&item, 2).unwrap(), vec![&b"abc"[..], &b"Z"[..]]);
        assert!(split_item(&item[..item.len() - 1], 2).is_err());
        item.push(0);
        assert!(split_item(&item, 2).is_err());
    }
}
