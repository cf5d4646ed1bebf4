//! LitData's "slim" chunks: rows kept only in a trailing Arrow IPC blob.
//!
//! With pyarrow importable at write time, LitData stores rows whose leaves are all JSON-like
//! (bytes, str, int, float, bool, lists, dicts) as an Arrow IPC file appended to an item table
//! whose offsets all point at its own end:
//!
//! `u32 N | u32 offsets[N+1] (all = 4 + 4(N+1)) | Arrow IPC (file "ARROW1..." or stream) | u32 ipc_len | "LDARW01\0"`
//!
//! The IPC may use Arrow's own buffer compression (zstd or lz4). We read the columns named by
//! the dataset's schema and re-encode each row as a classic item, so the rest of slipstream
//! sees one item encoding whatever the chunk layout.

use std::io::Cursor;
use std::ops::Range;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BinaryViewArray, BooleanArray, LargeBinaryArray,
    LargeStringArray, RecordBatch, StringArray, StringViewArray, cast::AsArray, types,
};
use arrow_schema::DataType;

use super::items::{DecodedChunk, Recycler};
use super::litdata::Schema;
use super::serializer::Serializer;

/// An error, with the row it is about when there is one.
pub(super) type ArrowResult<T> = std::result::Result<T, (Option<usize>, String)>;

fn whole(message: impl Into<String>) -> (Option<usize>, String) {
    (None, message.into())
}

/// Decode a slim chunk's `n` rows into classic items, refusing an IPC blob whose buffers
/// claim to decompress to more than `max_inflated` bytes in all.
pub fn decode_slim(
    bytes: &[u8],
    n: usize,
    schema: &Schema,
    recycler: &Recycler,
    max_inflated: u64,
) -> ArrowResult<DecodedChunk> {
    let len = bytes.len();
    let ipc_len = u32::from_le_bytes(bytes[len - 12..len - 8].try_into().unwrap()) as usize;
    let start = (len - 12)
        .checked_sub(ipc_len)
        .filter(|_| ipc_len > 0)
        .ok_or_else(|| whole("Arrow footer length points before the start of the chunk"))?;
    let ipc = &bytes[start..len - 12];
    check_sizes(ipc, max_inflated).map_err(|e| whole(format!("Arrow footer: {e}")))?;
    // arrow-ipc panics on some malformed input (buffers shorter than their arrays) instead of
    // returning an error; a damaged chunk must give an error.
    let batches = catch_quietly(|| read_batches(ipc))
        .map_err(|_| whole("Arrow footer is corrupt: the Arrow IPC reader rejected it"))??;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != n {
        return Err(whole(format!(
            "Arrow footer holds {rows} rows but the chunk header says {n}"
        )));
    }
    let mut out = recycler.take(ipc.len()).map_err(|e| (None, e))?;
    let mut items = Vec::with_capacity(n);
    let mut row_base = 0usize;
    for batch in &batches {
        let arrays = schema
            .fields
            .iter()
            .map(|f| {
                batch.column_by_name(&f.name).ok_or_else(|| {
                    whole(format!(
                        "Arrow footer has no column '{}' (it has: {})",
                        f.name,
                        batch
                            .schema()
                            .fields()
                            .iter()
                            .map(|c| c.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            })
            .collect::<ArrowResult<Vec<_>>>()?;
        encode_rows(&arrays, schema, &mut out, &mut items)
            .map_err(|(row, m)| (row.map(|r| row_base + r), m))?;
        row_base += batch.num_rows();
    }
    Ok(DecodedChunk { bytes: out, items })
}

/// Every row of `arrays` (one per field of `schema`, in its order, all of one length) as a
/// classic item appended to `out`, its range to `items`. Errors name the row.
pub(super) fn encode_rows(
    arrays: &[&ArrayRef],
    schema: &Schema,
    out: &mut Vec<u8>,
    items: &mut Vec<Range<usize>>,
) -> ArrowResult<()> {
    let columns = arrays
        .iter()
        .zip(&schema.fields)
        .map(|(&array, f)| Ok((array, Column::new(array, &f.serializer, &f.name)?)))
        .collect::<ArrowResult<Vec<_>>>()?;
    let rows = arrays.first().map_or(0, |a| a.len());
    for row in 0..rows {
        items.push(encode_row(&columns, row, out).map_err(|m| (Some(row), m))?);
    }
    Ok(())
}

/// Check what the IPC messages arrow-ipc will read declare, before it trusts them: every block
/// of a file's footer inside the blob, every buffer inside its message, every array length and
/// the decompressed size of every compressed buffer within `max_bytes` (in all, for the
/// buffers). What does not parse is left for arrow-ipc to report.
fn check_sizes(ipc: &[u8], max_bytes: u64) -> Result<(), String> {
    let mut inflated = 0u64;
    for (meta, body) in messages(ipc)? {
        let Ok(message) = arrow_ipc::root_as_message(meta) else {
            continue;
        };
        let batch = message
            .header_as_record_batch()
            .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
        let Some(batch) = batch else {
            continue;
        };
        let lengths = std::iter::once(batch.length())
            .chain(batch.nodes().into_iter().flatten().map(|n| n.length()));
        for length in lengths {
            if u64::try_from(length).map_or(true, |l| l > max_bytes) {
                return Err(format!("an array claims {length} elements"));
            }
        }
        let compressed = batch.compression().is_some();
        for buffer in batch.buffers().into_iter().flatten() {
            // arrow-ipc panics on a buffer past the body.
            let range = usize::try_from(buffer.offset())
                .ok()
                .zip(usize::try_from(buffer.length()).ok())
                .and_then(|(o, l)| Some(o..o.checked_add(l)?))
                .filter(|r| r.end <= body.len())
                .ok_or("a buffer lies outside its message")?;
            // A compressed buffer starts with its decompressed length (-1: stored).
            if compressed && range.len() >= 8 {
                let declared =
                    i64::from_le_bytes(body[range.start..range.start + 8].try_into().unwrap());
                inflated = inflated.saturating_add(declared.max(0) as u64);
                if inflated > max_bytes {
                    return Err(format!(
                        "its buffers claim more than {max_bytes} bytes decompressed, the most \
                         the chunk's index.json allows"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// An encapsulated IPC message: its metadata (a flatbuffer) and its body.
type Message<'a> = (&'a [u8], &'a [u8]);

/// The (metadata, body) of each message arrow-ipc reads: a stream's in order, up to the
/// end-of-stream marker; a file's at the blocks its footer lists (dictionaries and batches),
/// which must lie inside the blob.
fn messages(ipc: &[u8]) -> Result<Vec<Message<'_>>, String> {
    let i32_at = |at: usize| {
        ipc.get(at..at.checked_add(4)?)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
    };
    // A message's metadata: since Arrow 0.15, 0xFFFFFFFF, its length, then the flatbuffer.
    let metadata = |at: usize| -> Option<&[u8]> {
        let (meta_at, meta_len) = match i32_at(at)? {
            -1 => (at + 8, i32_at(at + 4)?),
            len => (at + 4, len),
        };
        let len = usize::try_from(meta_len).ok().filter(|&l| l > 0)?;
        ipc.get(meta_at..meta_at.checked_add(len)?)
    };
    let mut out = Vec::new();
    if !ipc.starts_with(b"ARROW1") {
        let mut at = 0;
        while let Some(meta) = metadata(at) {
            let Ok(message) = arrow_ipc::root_as_message(meta) else {
                break;
            };
            let body_at = meta.as_ptr() as usize - ipc.as_ptr() as usize + meta.len();
            let Some(body) = usize::try_from(message.bodyLength())
                .ok()
                .and_then(|l| ipc.get(body_at..body_at.checked_add(l)?))
            else {
                break;
            };
            out.push((meta, body));
            at = body_at + body.len();
        }
        return Ok(out);
    }
    // A file ends with its footer, the footer's length (4 bytes) and "ARROW1".
    let footer = ipc.len().checked_sub(10).and_then(|at| {
        let footer_len = usize::try_from(i32_at(at)?).ok()?;
        ipc.get(at.checked_sub(footer_len)?..at)
    });
    let Some(footer) = footer else {
        return Ok(out);
    };
    let Ok(footer) = arrow_ipc::root_as_footer(footer) else {
        return Ok(out);
    };
    let blocks = footer.dictionaries().into_iter().flatten();
    for block in blocks.chain(footer.recordBatches().into_iter().flatten()) {
        let outside = || "its footer lists a block outside the blob".to_string();
        let offset = usize::try_from(block.offset()).map_err(|_| outside())?;
        let meta_len = usize::try_from(block.metaDataLength()).map_err(|_| outside())?;
        let body_len = usize::try_from(block.bodyLength()).map_err(|_| outside())?;
        let body_at = offset.checked_add(meta_len).ok_or_else(outside)?;
        let end = body_at.checked_add(body_len).ok_or_else(outside)?;
        let block = ipc.get(offset..end).ok_or_else(outside)?;
        let body = &block[meta_len..];
        // arrow-ipc parses the flatbuffer from the whole block after its 4- or 8-byte prefix
        // (body included, whatever length the prefix states): the check must see those bytes.
        let prefix = if block.starts_with(&[0xff; 4]) { 8 } else { 4 };
        if let Some(meta) = block.get(prefix..) {
            out.push((meta, body));
        }
    }
    Ok(out)
}

/// `f`'s result, or `Err` if it panicked, without the panic message that the panic hook
/// would print (a damaged file is reported as an error, not as a crash on stderr).
pub(super) fn catch_quietly<T>(
    f: impl FnOnce() -> T + std::panic::UnwindSafe,
) -> std::thread::Result<T> {
    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(f);
    QUIET.with(|q| q.set(false));
    result
}

fn read_batches(ipc: &[u8]) -> ArrowResult<Vec<RecordBatch>> {
    let bad = |e: arrow_schema::ArrowError| whole(format!("Arrow footer does not parse: {e}"));
    if ipc.starts_with(b"ARROW1") {
        let reader = arrow_ipc::reader::FileReader::try_new(Cursor::new(ipc), None).map_err(bad)?;
        reader.collect::<Result<Vec<_>, _>>().map_err(bad)
    } else {
        let reader =
            arrow_ipc::reader::StreamReader::try_new(Cursor::new(ipc), None).map_err(bad)?;
        reader.collect::<Result<Vec<_>, _>>().map_err(bad)
    }
}

/// A column viewed as the leaf type its field's serializer expects.
enum Column<'a> {
    Binary(&'a BinaryArray),
    LargeBinary(&'a LargeBinaryArray),
    BinaryView(&'a BinaryViewArray),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Int(Box<dyn Fn(usize) -> Option<i64> + 'a>),
    Float(Box<dyn Fn(usize) -> f64 + 'a>),
    Bool(&'a BooleanArray),
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef, serializer: &Serializer, name: &str) -> ArrowResult<Column<'a>> {
        if *array.data_type() == DataType::Null {
            return Err(whole(format!(
                "field '{name}' is None in every row of this chunk; slipstream does not read optional fields"
            )));
        }
        let mismatch = || {
            whole(format!(
                "column '{name}' has Arrow type {} which does not hold LitData {serializer:?} values",
                array.data_type()
            ))
        };
        Ok(match (serializer, array.data_type()) {
            (Serializer::Bytes | Serializer::Jpeg | Serializer::Image, DataType::Binary) => {
                Column::Binary(array.as_binary())
            }
            (Serializer::Bytes | Serializer::Jpeg | Serializer::Image, DataType::LargeBinary) => {
                Column::LargeBinary(array.as_binary())
            }
            (Serializer::Bytes | Serializer::Jpeg | Serializer::Image, DataType::BinaryView) => {
                Column::BinaryView(array.as_binary_view())
            }
            (Serializer::Str, DataType::Utf8) => Column::Utf8(array.as_string()),
            (Serializer::Str, DataType::LargeUtf8) => Column::LargeUtf8(array.as_string()),
            (Serializer::Str, DataType::Utf8View) => Column::Utf8View(array.as_string_view()),
            (Serializer::Int, dt) if dt.is_integer() => Column::Int(int_getter(array)),
            (Serializer::Float, DataType::Float64) => {
                let a = array.as_primitive::<types::Float64Type>();
                Column::Float(Box::new(move |i| a.value(i)))
            }
            (Serializer::Float, DataType::Float32) => {
                let a = array.as_primitive::<types::Float32Type>();
                Column::Float(Box::new(move |i| a.value(i) as f64))
            }
            (Serializer::Bool, DataType::Boolean) => Column::Bool(array.as_boolean()),
            _ => return Err(mismatch()),
        })
    }
}

fn int_getter(array: &ArrayRef) -> Box<dyn Fn(usize) -> Option<i64> + '_> {
    macro_rules! signed {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            Box::new(move |i| Some(a.value(i) as i64))
        }};
    }
    match array.data_type() {
        DataType::Int8 => signed!(types::Int8Type),
        DataType::Int16 => signed!(types::Int16Type),
        DataType::Int32 => signed!(types::Int32Type),
        DataType::Int64 => signed!(types::Int64Type),
        DataType::UInt8 => signed!(types::UInt8Type),
        DataType::UInt16 => signed!(types::UInt16Type),
        DataType::UInt32 => signed!(types::UInt32Type),
        DataType::UInt64 => {
            let a = array.as_primitive::<types::UInt64Type>();
            Box::new(move |i| i64::try_from(a.value(i)).ok())
        }
        _ => unreachable!("int_getter is only called for integer columns"),
    }
}

fn encode_row(
    columns: &[(&ArrayRef, Column)],
    row: usize,
    out: &mut Vec<u8>,
) -> Result<Range<usize>, String> {
    let start = out.len();
    out.resize(start + 4 * columns.len(), 0);
    for (l, (array, column)) in columns.iter().enumerate() {
        if array.is_null(row) {
            return Err(format!(
                "leaf {l} is null (None); slipstream does not read optional fields, give every sample a value"
            ));
        }
        let before = out.len();
        match column {
            Column::Binary(a) => out.extend_from_slice(a.value(row)),
            Column::LargeBinary(a) => out.extend_from_slice(a.value(row)),
            Column::BinaryView(a) => out.extend_from_slice(a.value(row)),
            Column::Utf8(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Column::LargeUtf8(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Column::Utf8View(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Column::Int(get) => {
                let v = get(row).ok_or("integer does not fit in int64")?;
                out.extend_from_slice(&v.to_le_bytes());
            }
            Column::Float(get) => out.extend_from_slice(&get(row).to_le_bytes()),
            Column::Bool(a) => out.push(a.value(row) as u8),
        }
        let size = u32::try_from(out.len() - before).map_err(|_| "leaf larger than 4 GiB")?;
        out[start + 4 * l..start + 4 * l + 4].copy_from_slice(&size.to_le_bytes());
    }
    Ok(start..out.len())
}
