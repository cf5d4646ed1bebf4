//! Caches that can be read while their LitData dataset is still downloading from S3.
//!
//! A streamed build lays the cache out so that it is readable as it fills: the tables (one
//! row per sample, their size known from the index) come first, at offsets fixed before the
//! first chunk arrives, and the data region after them grows chunk by chunk in the order the
//! chunks arrive. Chunks are fetched in the order readers ask for ([`CacheReader::prefer`]: a
//! loader's epoch), each one's values and table rows written, then published to readers, who
//! wait for the chunk of each sample they read. The header goes last, as in every cache; once
//! it is written the file is renamed into place and is an ordinary cache (docs/FORMAT.md).
//!
//! Only fields with fixed-size table rows stream (numbers, bytes, text: what image datasets
//! hold); a dataset with array or PIL fields is built whole before it is read.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::arrivals::Arrivals;
use super::format::{
    DATA_START, Encoding, FORMAT_NAME, FieldHeader, FieldKind, Header, Preamble, RECORD_LEN,
    Record, Region, TABLE_ALIGN, Table, VALUE_ALIGN, VERSION, align_up,
};
use super::parse::{ParsedChunk, Value, parse_part};
use super::paths::TempFile;
use super::reader::CacheReader;
use super::writer::{BuildOptions, chunk_pages, field_header, sample_alignment, source_info};
use crate::error::{Error, IoContext, Location, Result};
use crate::s3::{Order, S3Client, S3Location};
use crate::source::dataset::{Part, Source};
use crate::source::items::Recycler;
use crate::source::s3::RemoteLitData;

/// Whether `remote` can be read while it downloads: every field has fixed-size table rows.
pub(super) fn streamable(remote: &RemoteLitData) -> bool {
    remote
        .dataset
        .schema()
        .fields
        .iter()
        .map(field_header)
        .all(|f| {
            matches!(
                f.kind,
                FieldKind::Int
                    | FieldKind::Float
                    | FieldKind::Bool
                    | FieldKind::Bytes
                    | FieldKind::Str
            )
        })
}

/// Start building the cache of `remote` at `dest` (holding its build `lock`) while its chunks
/// download, and return a reader of it at once.
pub(super) fn start(
    client: S3Client,
    at: S3Location,
    remote: RemoteLitData,
    dest: PathBuf,
    lock: File,
    options: &BuildOptions,
) -> Result<CacheReader> {
    let parts = remote.dataset.parts()?;
    let layout = Layout::of(&remote, &parts);
    let tmp = TempFile::create(&dest)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp.path)
        .at(&tmp.path)?;
    file.set_len(layout.data_start).at(&tmp.path)?;
    let arrivals = Arc::new(Arrivals::new(
        parts.iter().map(|p| p.first_sample).collect(),
        tmp.path.clone(),
        dest.clone(),
    ));
    let reader = CacheReader::streaming(
        dest.clone(),
        &file,
        layout.header.clone(),
        layout.map_len,
        Arc::clone(&arrivals),
    )?;
    let build = Build {
        client,
        at,
        remote,
        parts,
        layout,
        file,
        tmp,
        dest,
        options: options.clone(),
        arrivals: Arc::clone(&arrivals),
    };
    let progress = options.progress;
    std::thread::Builder::new()
        .name("slipstream-stream".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build.run()))
                .unwrap_or_else(|_| Err(Error::Internal("the streamed build panicked".into())));
            if let Err(e) = outcome {
                if progress {
                    crate::progress::say(&format!("slipstream: the streamed build stopped: {e}"));
                }
                arrivals.fail(e);
            }
            // Other processes waiting to build this cache may go on.
            drop(lock);
        })
        .map_err(|e| Error::Internal(format!("cannot start the streamed build: {e}")))?;
    Ok(reader)
}

/// Where everything goes in a streamed cache.
struct Layout {
    /// The header readers use while the build runs: tables in place, the data region as
    /// large as it may grow.
    header: Header,
    data_start: u64,
    /// The most bytes the file can hold before its header: its items' bytes plus padding.
    map_len: u64,
}

impl Layout {
    fn of(remote: &RemoteLitData, parts: &[Part]) -> Layout {
        let dataset = &remote.dataset;
        let n: u64 = parts.iter().map(|p| p.samples).sum();
        let mut pos = DATA_START;
        let mut fields: Vec<FieldHeader> =
            dataset.schema().fields.iter().map(field_header).collect();
        for f in &mut fields {
            let row = if f.kind.is_scalar() {
                f.kind.scalar_size() as u64
            } else {
                RECORD_LEN as u64
            };
            let table = (n > 0).then(|| Table {
                offset: align_up(pos, TABLE_ALIGN),
                size: n * row,
                crc32c: 0,
            });
            if let Some(t) = &table {
                pos = t.offset + t.size;
            }
            if f.kind.is_scalar() {
                f.values = table;
            } else {
                f.records = table;
            }
        }
        let data_start = align_up(pos, DATA_START);
        let alignment = sample_alignment(parts, n);
        let items: u64 = parts.iter().map(|p| p.item_bytes).sum();
        let padding = n * (alignment + fields.len() as u64 * VALUE_ALIGN);
        let map_len = data_start + items + padding + alignment;
        let header = Header {
            format: FORMAT_NAME.into(),
            version: VERSION,
            num_samples: n,
            layout: dataset.schema().layout,
            fields,
            data: Region {
                offset: data_start,
                size: map_len - data_start,
            },
            sample_alignment: alignment,
            source: source_info(dataset),
            encoding: Encoding::Original,
            pages: chunk_pages(dataset, parts),
            created_by: format!("slipstream {}", env!("CARGO_PKG_VERSION")),
            created_unix: 0,
        };
        Layout {
            header,
            data_start,
            map_len,
        }
    }
}

/// A streamed build, run on its own thread.
struct Build {
    client: S3Client,
    at: S3Location,
    remote: RemoteLitData,
    parts: Vec<Part>,
    layout: Layout,
    file: File,
    tmp: TempFile,
    dest: PathBuf,
    options: BuildOptions,
    arrivals: Arc<Arrivals>,
}

impl Build {
    fn run(self) -> Result<()> {
        let started = Instant::now();
        let threads = match self.options.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
        .min(self.parts.len())
        .max(1);
        let in_flight = self.chunks_in_flight();
        let (arrived_tx, arrived_rx) = mpsc::channel::<usize>();
        let arrived_rx = Mutex::new(arrived_rx);
        let (parsed_tx, parsed_rx) = mpsc::sync_channel::<(usize, Result<ParsedChunk>)>(threads);
        let recycler = Recycler::default();
        let mut tables = Tables::new(&self.layout.header);
        let mut cursor = self.layout.data_start;
        let written = std::thread::scope(|scope| -> Result<usize> {
            let (client, at, remote, arrivals) =
                (&self.client, &self.at, &self.remote, &self.arrivals);
            let progress = self.options.progress;
            let download = scope.spawn(move || {
                // A failed object ends the download, whose error readers then get.
                let done = |i: usize, r: std::result::Result<(), String>| {
                    if r.is_ok() {
                        let _ = arrived_tx.send(i);
                    }
                };
                // One chunk at a time until a reader has said what it wants first.
                let order = Order {
                    next: &|| arrivals.next_to_fetch(),
                    in_flight: &|| {
                        if arrivals.has_preference() {
                            in_flight
                        } else {
                            1
                        }
                    },
                };
                let outcome = client.download_ordered(
                    at,
                    &remote.chunks,
                    &remote.dataset.root,
                    progress,
                    &order,
                    &done,
                );
                if let Err(e) = &outcome {
                    arrivals.fail(e.again());
                }
                outcome
            });
            for _ in 0..threads {
                let (parsed_tx, arrived_rx, recycler, parts) =
                    (parsed_tx.clone(), &arrived_rx, &recycler, &self.parts);
                scope.spawn(move || {
                    loop {
                        let next = arrived_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(i) = next else { return };
                        let parsed = parse_part(&remote.dataset, i, &parts[i], recycler);
                        if parsed_tx.send((i, parsed)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(parsed_tx);
            // Dropped on an early return, so that workers stop instead of waiting to send.
            let parsed_rx = parsed_rx;
            let mut written = 0;
            let mut block = Vec::new();
            for (i, parsed) in parsed_rx.iter() {
                let parsed = parsed
                    .and_then(|parsed| {
                        cursor = self.append(i, &parsed, cursor, &mut tables, &mut block)?;
                        Ok(parsed)
                    })
                    .inspect_err(|e| self.arrivals.fail(e.again()))?;
                recycler.give(parsed.decoded.bytes);
                self.arrivals.publish(i);
                written += 1;
                if written == self.parts.len() {
                    break;
                }
            }
            download
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the download panicked".into())))?;
            Ok(written)
        })?;
        if written != self.parts.len() {
            return Err(Error::cache(
                Location::file(&self.dest),
                "the download ended before every chunk arrived",
            ));
        }
        let cache_bytes = self.finish(cursor, tables)?;
        self.tmp.persist(&self.dest)?;
        if self.options.progress {
            let seconds = started.elapsed().as_secs_f64();
            crate::progress::say(&format!(
                "slipstream: {} ({} samples) streamed into its cache in {seconds:.1} s \
                 ({:.1} MB) -> {}",
                self.at.url(),
                self.layout.header.num_samples,
                cache_bytes as f64 / 1e6,
                self.dest.display()
            ));
        }
        Ok(())
    }

    /// Chunks should arrive in the order readers want them, so no more are started than keep
    /// `concurrency` GETs of `part_bytes` busy, plus one for the tail of the first to finish
    /// (a chunk started is a chunk the next preference cannot move). Fetching two chunks at a
    /// time in smaller parts kept the order stricter but made the download 1.85x slower
    /// (docs/BENCHMARKS.md).
    fn chunks_in_flight(&self) -> usize {
        let options = self.client.options();
        let mean = self.remote.chunks.iter().map(|o| o.size).sum::<u64>()
            / self.remote.chunks.len().max(1) as u64;
        let busy = (options.concurrency as u64 * options.part_bytes).div_ceil(mean.max(1));
        busy.min(options.concurrency as u64) as usize + 1
    }

    /// Write part `i`'s values at `cursor` and its table rows in place; returns the new end.
    fn append(
        &self,
        i: usize,
        parsed: &ParsedChunk,
        cursor: u64,
        tables: &mut Tables,
        block: &mut Vec<u8>,
    ) -> Result<u64> {
        let part = &self.parts[i];
        let alignment = self.layout.header.sample_alignment;
        let base = align_up(cursor, alignment);
        block.clear();
        for (k, values) in parsed.samples.iter().enumerate() {
            let sample = part.first_sample + k as u64;
            block.resize(align_up(block.len() as u64, alignment) as usize, 0);
            for (f, value) in values.iter().enumerate() {
                match value {
                    Value::Int(v) => tables.set(f, sample, &v.to_le_bytes()),
                    Value::Float(v) => tables.set(f, sample, &v.to_le_bytes()),
                    Value::Bool(v) => tables.set(f, sample, &[*v as u8]),
                    Value::Var(v) => {
                        block.resize(align_up(block.len() as u64, VALUE_ALIGN) as usize, 0);
                        let bytes = &parsed.decoded.bytes[v.range.clone()];
                        let record = Record {
                            offset: base + block.len() as u64,
                            size: bytes.len() as u32,
                            crc32c: v.crc32c,
                            height: v.height,
                            width: v.width,
                        };
                        block.extend_from_slice(bytes);
                        tables.set_record(f, sample, &record);
                    }
                }
            }
        }
        let end = base + block.len() as u64;
        if end > self.layout.map_len {
            return Err(Error::format(
                Location::file(&part.path),
                "the chunk holds more bytes than index.json says",
            ));
        }
        self.file.write_all_at(block, base).at(&self.tmp.path)?;
        tables.write_rows(&self.file, &self.tmp.path, part)?;
        Ok(end)
    }

    /// Write the header (with the tables' checksums) and the preamble; returns the file size.
    fn finish(&self, cursor: u64, tables: Tables) -> Result<u64> {
        let mut header = self.layout.header.clone();
        header.data.size = cursor - self.layout.data_start;
        header.created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (f, rows) in header.fields.iter_mut().zip(&tables.rows) {
            let table = if f.kind.is_scalar() {
                &mut f.values
            } else {
                &mut f.records
            };
            if let Some(t) = table {
                t.crc32c = crc32c::crc32c(rows);
            }
        }
        for (f, (images, total)) in header.fields.iter_mut().zip(tables.summaries()) {
            f.images &= images;
            f.total_bytes = total;
        }
        let json = serde_json::to_vec_pretty(&header).expect("header serializes");
        let at = align_up(cursor, TABLE_ALIGN);
        let path = &self.tmp.path;
        self.file.write_all_at(&json, at).at(path)?;
        let size = at + json.len() as u64;
        self.file.set_len(size).at(path)?;
        let preamble = Preamble {
            header_offset: at,
            header_len: json.len() as u64,
            header_crc32c: crc32c::crc32c(&json),
        };
        self.file.write_all_at(&preamble.encode(), 0).at(path)?;
        self.file.sync_all().at(path)?;
        Ok(size)
    }
}

/// The tables of a streamed cache, kept whole in memory (for their checksums) and written
/// to the file a part's rows at a time.
struct Tables {
    /// Per field: its values (scalars) or records.
    rows: Vec<Vec<u8>>,
    row_len: Vec<usize>,
    offsets: Vec<u64>,
}

impl Tables {
    fn new(header: &Header) -> Tables {
        let n = header.num_samples as usize;
        let row_len: Vec<usize> = header
            .fields
            .iter()
            .map(|f| {
                if f.kind.is_scalar() {
                    f.kind.scalar_size()
                } else {
                    RECORD_LEN
                }
            })
            .collect();
        Tables {
            rows: row_len.iter().map(|r| vec![0; r * n]).collect(),
            offsets: header
                .fields
                .iter()
                .map(|f| f.values.or(f.records).map_or(0, |t| t.offset))
                .collect(),
            row_len,
        }
    }

    fn set(&mut self, field: usize, sample: u64, bytes: &[u8]) {
        let at = sample as usize * self.row_len[field];
        self.rows[field][at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn set_record(&mut self, field: usize, sample: u64, record: &Record) {
        let mut row = Vec::with_capacity(RECORD_LEN);
        record.encode(&mut row);
        self.set(field, sample, &row);
    }

    fn write_rows(&self, file: &File, path: &std::path::Path, part: &Part) -> Result<()> {
        for ((rows, &len), &offset) in self.rows.iter().zip(&self.row_len).zip(&self.offsets) {
            let start = part.first_sample as usize * len;
            let end = start + part.samples as usize * len;
            file.write_all_at(&rows[start..end], offset + start as u64)
                .at(path)?;
        }
        Ok(())
    }

    /// Per field: whether every record has an image's size, and the values' total bytes.
    fn summaries(&self) -> Vec<(bool, u64)> {
        self.rows
            .iter()
            .zip(&self.row_len)
            .map(|(rows, &len)| {
                if len != RECORD_LEN {
                    return (false, 0);
                }
                rows.chunks_exact(RECORD_LEN).map(Record::decode).fold(
                    (true, 0),
                    |(images, total), r| {
                        (images && r.height > 0 && r.width > 0, total + r.size as u64)
                    },
                )
            })
            .collect()
    }
}
