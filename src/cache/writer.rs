//! Building a cache file from a source dataset (any format, see [`Source`]).
//!
//! Worker threads read and decode its parts in parallel (decompression, Arrow, checksums, image
//! header probes); the calling thread appends their samples to the file in index order. At most
//! `2 × threads` decoded chunks are in memory at once. The file is written under a temporary
//! name and renamed into place only when complete, so a reader never sees a partial cache and
//! an interrupted build leaves nothing that could be mistaken for one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::format::{
    DATA_START, Encoding, FORMAT_NAME, FieldHeader, FieldKind, Header, PREAMBLE_LEN, Preamble,
    Record, Region, SourceInfo, TABLE_ALIGN, Table, VALUE_ALIGN, VERSION, align_up,
};
use super::parse::{ParsedChunk, Value, VarValue, parse_part};
use super::paths::TempFile;
use crate::dtype::DType;
use crate::error::{Error, IoContext, Location, Result};
use crate::source::Layout;
use crate::source::dataset::{Part, Source};
use crate::source::items::Recycler;
use crate::source::litdata::FieldSpec;
use crate::source::serializer::{Framework, Serializer};

/// Blocks until part `i` is on disk (a download still running), or says why it never will be.
pub type ChunkGate = Arc<dyn Fn(usize) -> Result<()> + Send + Sync>;

#[derive(Clone)]
pub struct BuildOptions {
    /// Decoding threads; 0 means one per core.
    pub threads: usize,
    /// Draw a progress bar on stderr (when it is a terminal) and print a summary line.
    pub progress: bool,
    /// Asked before each part is read, when parts are still arriving.
    pub chunk_ready: Option<ChunkGate>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("threads", &self.threads)
            .field("progress", &self.progress)
            .field("chunk_ready", &self.chunk_ready.is_some())
            .finish()
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            threads: 0,
            progress: true,
            chunk_ready: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub path: PathBuf,
    pub samples: u64,
    /// Bytes of source files read.
    pub source_bytes: u64,
    /// Size of the cache file.
    pub cache_bytes: u64,
    pub seconds: f64,
}

/// A part read by a worker, its items split into values.
pub(super) type ReadPart<'a> = dyn Fn(usize, &Part, &Recycler) -> Result<ParsedChunk> + Sync + 'a;

/// What a build writes: the header's description of the source, the fields (their tables
/// still empty), and the parts of samples with how a worker reads one.
pub(super) struct Input<'a> {
    pub source: SourceInfo,
    pub encoding: Encoding,
    pub layout: Layout,
    pub fields: Vec<FieldHeader>,
    pub parts: Vec<Part>,
    /// The header's `pages`.
    pub pages: Option<Vec<u64>>,
    pub read: &'a ReadPart<'a>,
}

/// Build the cache for `dataset` at `dest`, replacing whatever is there.
pub fn build_cache(
    dataset: &dyn Source,
    dest: &Path,
    options: &BuildOptions,
) -> Result<BuildReport> {
    let parts = dataset.parts()?;
    let read = |i: usize, part: &Part, recycler: &Recycler| parse_part(dataset, i, part, recycler);
    let input = Input {
        source: source_info(dataset),
        encoding: Encoding::Original,
        layout: dataset.schema().layout,
        fields: dataset.schema().fields.iter().map(field_header).collect(),
        pages: chunk_pages(dataset, &parts),
        parts,
        read: &read,
    };
    write_cache(input, dest, options)
}

/// What a cache's header says of the dataset it was built from.
pub(super) fn source_info(dataset: &dyn Source) -> SourceInfo {
    SourceInfo {
        kind: dataset.kind().into(),
        path: dataset.root().display().to_string(),
        fingerprint: dataset.fingerprint().to_string(),
        config: dataset.config(),
    }
}

/// A LitData dataset's pages are its chunks: the unit its files are downloaded in, so that
/// quasi-random order can start on a dataset still downloading (`from_s3`).
pub(super) fn chunk_pages(dataset: &dyn Source, parts: &[Part]) -> Option<Vec<u64>> {
    (dataset.kind() == "litdata").then(|| {
        parts
            .iter()
            .filter(|p| p.samples > 0)
            .map(|p| p.first_sample)
            .collect()
    })
}

/// Write the cache `input` describes at `dest`, replacing whatever is there.
pub(super) fn write_cache(
    input: Input,
    dest: &Path,
    options: &BuildOptions,
) -> Result<BuildReport> {
    let started = Instant::now();
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let parts = &input.parts;
    let num_samples: u64 = parts.iter().map(|p| p.samples).sum();
    let source_bytes: u64 = parts.iter().map(|p| p.file_bytes).sum();
    let progress = Progress::new(options.progress, source_bytes, &input);

    let tmp = TempFile::create(dest)?;
    let mut out = Output::new(&tmp.path, input.fields.clone(), parts, num_samples)?;

    // Bounded, ordered pipeline: a worker takes a permit before it claims the next part, so
    // the lowest unwritten part always holds a permit and the writer can always progress.
    let permits = Semaphore::new(2 * threads);
    let next_chunk = AtomicUsize::new(0);
    let recycler = Recycler::default();
    let (tx, rx) = mpsc::channel::<(usize, Result<ParsedChunk>)>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..threads.min(parts.len()) {
            let tx = tx.clone();
            let (permits, next_chunk, recycler, read) =
                (&permits, &next_chunk, &recycler, input.read);
            scope.spawn(move || {
                loop {
                    if !permits.acquire() {
                        return;
                    }
                    let i = next_chunk.fetch_add(1, Ordering::SeqCst);
                    let Some(part) = parts.get(i) else {
                        return;
                    };
                    // A panic would leave the writer waiting for this chunk forever.
                    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if let Some(ready) = &options.chunk_ready {
                            ready(i)?;
                        }
                        read(i, part, recycler)
                    }))
                    .unwrap_or_else(|_| {
                        Err(Error::Internal(format!(
                            "decoding {} panicked",
                            part.path.display()
                        )))
                    });
                    let failed = parsed.is_err();
                    if tx.send((i, parsed)).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let result = (|| {
            let mut pending = BTreeMap::new();
            let mut expected = 0usize;
            for (i, parsed) in rx.iter() {
                pending.insert(i, parsed);
                while let Some(parsed) = pending.remove(&expected) {
                    let parsed = parsed?;
                    out.append_part(&parsed, &parts[expected])?;
                    progress.advance(&parts[expected]);
                    recycler.give(parsed.decoded.bytes);
                    permits.release();
                    expected += 1;
                }
            }
            if expected != parts.len() {
                if let Some((_, Err(e))) = pending.pop_first() {
                    return Err(e);
                }
                return Err(Error::cache(
                    Location::file(dest),
                    "a build worker stopped before every part was read",
                ));
            }
            Ok(())
        })();
        // On error, wake and stop the workers before the scope joins them.
        permits.close();
        result
    })?;

    let cache_bytes = out.finish(&input, num_samples)?;
    tmp.persist(dest)?;
    let report = BuildReport {
        path: dest.to_path_buf(),
        samples: num_samples,
        source_bytes,
        cache_bytes,
        seconds: started.elapsed().as_secs_f64(),
    };
    progress.finish(&report);
    Ok(report)
}

/// Per-field tables, accumulated in memory while the data region is written.
struct FieldTables {
    header: FieldHeader,
    values: Vec<u8>,
    records: Vec<u8>,
    shapes: Vec<u8>,
    modes: Vec<u8>,
}

struct Output {
    file: BufWriter<File>,
    path: PathBuf,
    /// File offset the next byte goes to.
    pos: u64,
    alignment: u64,
    fields: Vec<FieldTables>,
}

impl Output {
    fn new(
        path: &Path,
        fields: Vec<FieldHeader>,
        parts: &[Part],
        num_samples: u64,
    ) -> Result<Output> {
        let mut file = File::create(path).at(path)?;
        file.write_all(&vec![0u8; DATA_START as usize]).at(path)?;
        let alignment = sample_alignment(parts, num_samples);
        let fields = fields
            .into_iter()
            .map(|header| FieldTables {
                header,
                values: Vec::new(),
                records: Vec::new(),
                shapes: Vec::new(),
                modes: Vec::new(),
            })
            .collect();
        Ok(Output {
            file: BufWriter::with_capacity(8 << 20, file),
            path: path.to_path_buf(),
            pos: DATA_START,
            alignment,
            fields,
        })
    }

    fn pad_to(&mut self, boundary: u64) -> Result<()> {
        let target = align_up(self.pos, boundary);
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.pos < target {
            let n = ((target - self.pos) as usize).min(ZEROS.len());
            self.file.write_all(&ZEROS[..n]).at(&self.path)?;
            self.pos += n as u64;
        }
        Ok(())
    }

    fn append_part(&mut self, parsed: &ParsedChunk, part: &Part) -> Result<()> {
        for (i, values) in parsed.samples.iter().enumerate() {
            let sample = part.first_sample + i as u64;
            self.pad_to(self.alignment)?;
            for (f, value) in values.iter().enumerate() {
                match value {
                    Value::Int(v) => self.fields[f].values.extend_from_slice(&v.to_le_bytes()),
                    Value::Float(v) => self.fields[f].values.extend_from_slice(&v.to_le_bytes()),
                    Value::Bool(v) => self.fields[f].values.push(*v as u8),
                    Value::Var(v) => {
                        self.pad_to(VALUE_ALIGN)?;
                        let bytes = &parsed.decoded.bytes[v.range.clone()];
                        let record = Record {
                            offset: self.pos,
                            size: bytes.len() as u32,
                            crc32c: v.crc32c,
                            height: v.height,
                            width: v.width,
                        };
                        self.file.write_all(bytes).at(&self.path)?;
                        self.pos += bytes.len() as u64;
                        self.fields[f].add_var(record, v, &part.path, sample)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Write the tables and the header, then the preamble. Returns the file size.
    fn finish(mut self, input: &Input, num_samples: u64) -> Result<u64> {
        let data = Region {
            offset: DATA_START,
            size: self.pos - DATA_START,
        };
        let mut fields = std::mem::take(&mut self.fields);
        for f in &mut fields {
            f.header.values = self.write_table(&f.values)?;
            f.header.records = self.write_table(&f.records)?;
            f.header.shapes = self.write_table(&f.shapes)?;
            f.header.modes = self.write_table(&f.modes)?;
        }
        let header = Header {
            format: FORMAT_NAME.into(),
            version: VERSION,
            num_samples,
            layout: input.layout,
            fields: fields.into_iter().map(|f| f.header).collect(),
            data,
            sample_alignment: self.alignment,
            source: input.source.clone(),
            encoding: input.encoding,
            pages: input.pages.clone(),
            created_by: format!("slipstream {}", env!("CARGO_PKG_VERSION")),
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let json = serde_json::to_vec_pretty(&header).expect("header serializes");
        self.pad_to(TABLE_ALIGN)?;
        let preamble = Preamble {
            header_offset: self.pos,
            header_len: json.len() as u64,
            header_crc32c: crc32c::crc32c(&json),
        };
        self.file.write_all(&json).at(&self.path)?;
        let total = self.pos + json.len() as u64;
        let mut file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.seek(SeekFrom::Start(0)).at(&self.path)?;
        file.write_all(&preamble.encode()).at(&self.path)?;
        debug_assert_eq!(preamble.encode().len(), PREAMBLE_LEN);
        file.sync_all().at(&self.path)?;
        Ok(total)
    }

    fn write_table(&mut self, bytes: &[u8]) -> Result<Option<Table>> {
        if bytes.is_empty() {
            return Ok(None);
        }
        self.pad_to(TABLE_ALIGN)?;
        let table = Table {
            offset: self.pos,
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        };
        self.file.write_all(bytes).at(&self.path)?;
        self.pos += bytes.len() as u64;
        Ok(Some(table))
    }
}

/// Where each sample's block of values starts: direct I/O wants blocks on block boundaries,
/// but for small samples that would mostly store padding, so they are only aligned for
/// copying.
pub(super) fn sample_alignment(parts: &[Part], num_samples: u64) -> u64 {
    let source: u64 = parts.iter().map(|p| p.item_bytes).sum();
    if source / num_samples.max(1) >= 4096 {
        512
    } else {
        VALUE_ALIGN
    }
}

/// The header of a source field, its tables still empty.
pub(super) fn field_header(f: &FieldSpec) -> FieldHeader {
    FieldHeader {
        framework: f.serializer.framework().map(|fw| {
            match fw {
                Framework::Numpy => "numpy",
                Framework::Torch => "torch",
            }
            .to_string()
        }),
        images: matches!(f.serializer, Serializer::Pil)
            || f.serializer.is_encoded_image()
            || f.serializer == Serializer::Bytes,
        ..FieldHeader::empty(&f.name, field_kind(&f.serializer), &f.format)
    }
}

fn field_kind(serializer: &Serializer) -> FieldKind {
    match serializer {
        Serializer::Int => FieldKind::Int,
        Serializer::Float => FieldKind::Float,
        Serializer::Bool => FieldKind::Bool,
        Serializer::Str => FieldKind::Str,
        Serializer::Pil => FieldKind::Pil,
        Serializer::Bytes | Serializer::Jpeg | Serializer::Image => FieldKind::Bytes,
        Serializer::Numpy
        | Serializer::Tensor
        | Serializer::NoHeaderNumpy(_)
        | Serializer::NoHeaderTensor(_) => FieldKind::Array,
    }
}

impl FieldTables {
    fn add_var(&mut self, record: Record, v: &VarValue, chunk: &Path, sample: u64) -> Result<()> {
        let h = &mut self.header;
        let inconsistent = |what: String| Error::Unsupported {
            dataset: chunk.to_path_buf(),
            feature: format!("field '{}' with {what} (sample {sample})", h.name),
            hint:
                "slipstream stores one element type and rank per array field; cast the arrays to \
                   one dtype and rank when writing the dataset."
                    .into(),
        };
        if h.kind == FieldKind::Array {
            let dtype = v.dtype.expect("arrays carry a dtype");
            let ndim = v.shape.len() as u32;
            if self.records.is_empty() {
                h.dtype = Some(dtype);
                h.ndim = Some(ndim);
                h.fixed_shape = Some(v.shape.clone());
            } else if h.dtype != Some(dtype) {
                return Err(inconsistent(format!(
                    "arrays of dtype {} after {}",
                    dtype.name(),
                    h.dtype.map_or("?", DType::name)
                )));
            } else if h.ndim != Some(ndim) {
                return Err(inconsistent(format!(
                    "arrays of {ndim} dimensions after {}",
                    h.ndim.unwrap_or(0)
                )));
            }
            if h.fixed_shape.as_deref() != Some(&v.shape[..]) {
                h.fixed_shape = None;
            }
            for d in &v.shape {
                self.shapes.extend_from_slice(&d.to_le_bytes());
            }
        }
        if let Some(mode) = &v.mode {
            let names = h.mode_names.get_or_insert_with(Vec::new);
            let idx = match names.iter().position(|m| m == mode) {
                Some(i) => i,
                None => {
                    names.push(mode.clone());
                    names.len() - 1
                }
            };
            let idx =
                u8::try_from(idx).map_err(|_| inconsistent("more than 256 PIL modes".into()))?;
            self.modes.push(idx);
        }
        if record.height == 0 || record.width == 0 {
            h.images = false;
        }
        h.total_bytes += record.size as u64;
        record.encode(&mut self.records);
        Ok(())
    }
}

/// A counting semaphore that can be closed to wake and stop every waiter.
struct Semaphore {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
}

impl Semaphore {
    fn new(permits: usize) -> Self {
        Semaphore {
            state: Mutex::new((permits, false)),
            cv: Condvar::new(),
        }
    }

    /// Take a permit; false once closed.
    fn acquire(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        while s.0 == 0 && !s.1 {
            s = self.cv.wait(s).unwrap();
        }
        if s.1 {
            return false;
        }
        s.0 -= 1;
        true
    }

    fn release(&self) {
        self.state.lock().unwrap().0 += 1;
        self.cv.notify_one();
    }

    fn close(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// The build's progress (bytes of source read) and its first and last lines.
struct Progress {
    bytes: crate::progress::Progress,
    announce: bool,
}

impl Progress {
    fn new(enabled: bool, total: u64, input: &Input) -> Progress {
        let parts = &input.parts;
        if enabled {
            let unit = if input.source.kind == "litdata" && input.encoding == Encoding::Original {
                "chunks"
            } else {
                "parts"
            };
            crate::progress::say(&format!(
                "slipstream: building cache for {} ({} samples, {} {unit}, {:.1} MB)",
                input.source.path,
                parts.iter().map(|p| p.samples).sum::<u64>(),
                parts.len(),
                total as f64 / 1e6
            ));
        }
        Progress {
            bytes: crate::progress::Progress::start(enabled, "building cache", total),
            announce: enabled,
        }
    }

    fn advance(&self, part: &Part) {
        self.bytes.inc(part.file_bytes);
    }

    fn finish(&self, report: &BuildReport) {
        self.bytes.finish();
        if self.announce {
            crate::progress::say(&format!(
                "slipstream: built {} ({} samples, {:.1} MB) in {:.2} s, {:.0} MB/s",
                report.path.display(),
                report.samples,
                report.cache_bytes as f64 / 1e6,
                report.seconds,
                report.source_bytes as f64 / 1e6 / report.seconds.max(1e-9)
            ));
        }
    }
}
