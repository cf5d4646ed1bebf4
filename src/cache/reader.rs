//! Reading a cache file through a memory map.
//!
//! [`CacheReader::open`] validates everything but the data region: magic, version, header
//! checksum and JSON, that every table lies inside the file with the size the sample count
//! implies, and every table's checksum (tables are small: 24 bytes per sample and field).
//! Each record is bounds-checked against the data region when it is used, and each value's
//! checksum is checked the first time this process reads it, so a corrupt cache gives an
//! error, never wrong bytes; later reads of the same value skip the check.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;

use super::arrivals::Arrivals;
use super::format::{
    FieldHeader, FieldKind, Header, MAX_HEADER_LEN, Preamble, RECORD_LEN, Record, Table, VERSION,
};
use crate::decode::yuv420::Yuv420;
use crate::error::{Error, IoContext, Location, Result};

/// Without pages in the header, quasi-random pages hold about this many bytes of values.
const PAGE_BYTES: u64 = 8 << 20;
/// ... or, in caches without variable-length fields, this many samples.
const SCALAR_PAGE_SAMPLES: u64 = 4096;

pub struct CacheReader {
    path: PathBuf,
    map: Mmap,
    header: Header,
    /// Per field, one bit per sample: the value's checksum has been checked.
    verified: Vec<Vec<AtomicU64>>,
    /// Set while the cache is still being written by a streamed build (`streamed.rs`): a
    /// sample may be read once its part has arrived.
    arrivals: Option<Arc<Arrivals>>,
}

impl std::fmt::Debug for CacheReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheReader")
            .field("path", &self.path)
            .field("num_samples", &self.header.num_samples)
            .finish()
    }
}

/// One field's value of one sample, borrowing from the map.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(&'a [u8]),
    Str(&'a str),
    Pil {
        width: u32,
        height: u32,
        mode: &'a str,
        pixels: &'a [u8],
    },
    Array {
        shape: Vec<u32>,
        data: &'a [u8],
    },
    Yuv420(Yuv420<'a>),
}

impl CacheReader {
    pub fn open(path: impl AsRef<Path>) -> Result<CacheReader> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).at(&path)?;
        // SAFETY: a published cache file is never written again: builders write a new file
        // under a temporary name and rename it over the old one, which leaves this inode (and
        // so this mapping) untouched. Truncating the file by hand while it is mapped would
        // break this, as it would for any mmap reader; that is documented in docs/FORMAT.md.
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        let header = parse_header(&map, &path)?;
        let reader = CacheReader {
            path,
            map,
            verified: unverified(&header),
            header,
            arrivals: None,
        };
        reader.verify_tables()?;
        Ok(reader)
    }

    #[cfg(feature = "s3")]
    /// A reader of the cache a streamed build is writing into `file` (to become `path`):
    /// `header` says where its tables and data region lie, `map_len` bytes cover everything
    /// the build may write, and `arrivals` says which samples are written.
    pub(super) fn streaming(
        path: PathBuf,
        file: &File,
        header: Header,
        map_len: u64,
        arrivals: Arc<Arrivals>,
    ) -> Result<CacheReader> {
        // SAFETY: the builder writes each byte of the file at most once, before publishing
        // the part it belongs to, and every read of a value or table row waits in
        // `wait_for` until its part is published, so no byte is read while it can change.
        // The map may extend past the end of the file: no read goes beyond what was written.
        let map =
            unsafe { memmap2::MmapOptions::new().len(map_len as usize).map(file) }.at(&path)?;
        Ok(CacheReader {
            path,
            map,
            verified: unverified(&header),
            header,
            arrivals: Some(arrivals),
        })
    }

    /// Fetch the parts of `samples` first while the cache is being streamed in (a loader's
    /// order); nothing otherwise.
    pub fn prefer(&self, samples: impl IntoIterator<Item = u64>) {
        if let Some(arrivals) = &self.arrivals {
            arrivals.prefer(samples);
        }
    }

    /// Block until `sample` has been written, when the cache is being streamed in.
    fn wait_for(&self, sample: u64) -> Result<()> {
        match &self.arrivals {
            Some(arrivals) => arrivals.wait(sample),
            None => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn len(&self) -> u64 {
        self.header.num_samples
    }

    pub fn is_empty(&self) -> bool {
        self.header.num_samples == 0
    }

    pub fn fields(&self) -> &[FieldHeader] {
        &self.header.fields
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.header.fields.iter().position(|f| f.name == name)
    }

    fn table<'a>(&'a self, table: &Option<Table>) -> &'a [u8] {
        match table {
            // In bounds: checked in `parse_header`.
            Some(t) => &self.map[t.offset as usize..(t.offset + t.size) as usize],
            None => &[],
        }
    }

    fn assert_index(&self, sample: u64) {
        assert!(
            sample < self.header.num_samples,
            "sample {sample} out of range (callers check indices)"
        );
        // Callers check indices with `check_index`, which reports a failed download; a
        // sample read without it (a replacement) still waits for its bytes, and if they never
        // come reads an empty record, which every reader of values rejects.
        let _ = self.wait_for(sample);
    }

    /// The record of a variable-length field.
    pub fn record(&self, field: usize, sample: u64) -> Record {
        self.assert_index(sample);
        let at = sample as usize * RECORD_LEN;
        Record::decode(&self.table(&self.header.fields[field].records)[at..at + RECORD_LEN])
    }

    /// Bytes of a variable-length value, bounds-checked and checksum-checked.
    pub fn value_bytes(&self, field: usize, sample: u64) -> Result<&[u8]> {
        let r = self.record(field, sample);
        let bytes = self.record_bytes(field, sample, &r)?;
        self.check(field, sample, &r, bytes)?;
        Ok(bytes)
    }

    /// Check `bytes` (the value of `record`, or a copy of it) against the record's checksum,
    /// unless this value was checked before in this process.
    pub fn check(&self, field: usize, sample: u64, record: &Record, bytes: &[u8]) -> Result<()> {
        let (word, bit) = ((sample / 64) as usize, 1u64 << (sample % 64));
        let flags = &self.verified[field][word];
        if flags.load(Ordering::Relaxed) & bit != 0 {
            return Ok(());
        }
        let actual = crc32c::crc32c(bytes);
        if actual != record.crc32c {
            return Err(Error::Checksum {
                location: Location::sample(&self.path, sample),
                field: self.header.fields[field].name.clone(),
                expected: record.crc32c,
                actual,
            });
        }
        flags.fetch_or(bit, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes of a variable-length value, bounds-checked only (see [`CacheReader::check`]).
    pub fn record_bytes(&self, field: usize, sample: u64, r: &Record) -> Result<&[u8]> {
        let data = self.header.data;
        let end = r.offset.checked_add(r.size as u64);
        match end {
            Some(end) if r.offset >= data.offset && end <= data.offset + data.size => {
                Ok(&self.map[r.offset as usize..end as usize])
            }
            _ => Err(Error::cache(
                Location::sample(&self.path, sample),
                format!(
                    "record of field '{}' points outside the data region",
                    self.header.fields[field].name
                ),
            )),
        }
    }

    pub fn int(&self, field: usize, sample: u64) -> i64 {
        self.assert_index(sample);
        let t = self.table(&self.header.fields[field].values);
        let at = sample as usize * 8;
        i64::from_le_bytes(t[at..at + 8].try_into().unwrap())
    }

    pub fn float(&self, field: usize, sample: u64) -> f64 {
        self.assert_index(sample);
        let t = self.table(&self.header.fields[field].values);
        let at = sample as usize * 8;
        f64::from_le_bytes(t[at..at + 8].try_into().unwrap())
    }

    pub fn bool(&self, field: usize, sample: u64) -> bool {
        self.assert_index(sample);
        self.table(&self.header.fields[field].values)[sample as usize] != 0
    }

    /// The whole scalar table of a field (`<i8`, `<f8` or `u1` values), for gathers.
    pub fn scalar_table(&self, field: usize) -> &[u8] {
        self.table(&self.header.fields[field].values)
    }

    pub fn shape(&self, field: usize, sample: u64) -> Vec<u32> {
        self.assert_index(sample);
        let f = &self.header.fields[field];
        let ndim = f.ndim.unwrap_or(0) as usize;
        let t = self.table(&f.shapes);
        let at = sample as usize * ndim * 4;
        (0..ndim)
            .map(|d| u32::from_le_bytes(t[at + 4 * d..at + 4 * d + 4].try_into().unwrap()))
            .collect()
    }

    pub fn mode(&self, field: usize, sample: u64) -> Result<&str> {
        self.assert_index(sample);
        let f = &self.header.fields[field];
        let idx = self.table(&f.modes)[sample as usize] as usize;
        f.mode_names
            .as_ref()
            .and_then(|m| m.get(idx))
            .map(String::as_str)
            .ok_or_else(|| {
                Error::cache(
                    Location::sample(&self.path, sample),
                    format!("PIL mode index {idx} of field '{}' is out of range", f.name),
                )
            })
    }

    /// One field of one sample.
    pub fn value(&self, field: usize, sample: u64) -> Result<FieldValue<'_>> {
        let f = &self.header.fields[field];
        Ok(match f.kind {
            FieldKind::Int => FieldValue::Int(self.int(field, sample)),
            FieldKind::Float => FieldValue::Float(self.float(field, sample)),
            FieldKind::Bool => FieldValue::Bool(self.bool(field, sample)),
            FieldKind::Bytes => FieldValue::Bytes(self.value_bytes(field, sample)?),
            FieldKind::Str => {
                let bytes = self.value_bytes(field, sample)?;
                FieldValue::Str(std::str::from_utf8(bytes).map_err(|_| {
                    Error::cache(
                        Location::sample(&self.path, sample),
                        format!("text of field '{}' is not UTF-8", f.name),
                    )
                })?)
            }
            FieldKind::Pil => {
                let r = self.record(field, sample);
                FieldValue::Pil {
                    width: r.width,
                    height: r.height,
                    mode: self.mode(field, sample)?,
                    pixels: self.value_bytes(field, sample)?,
                }
            }
            FieldKind::Array => FieldValue::Array {
                shape: self.shape(field, sample),
                data: self.value_bytes(field, sample)?,
            },
            FieldKind::Yuv420 => {
                let r = self.record(field, sample);
                if r.width == 0 || r.height == 0 {
                    // An image the build could not decode: the original's bytes.
                    return Ok(FieldValue::Bytes(self.value_bytes(field, sample)?));
                }
                let planes = Yuv420::new(r.width, r.height, self.value_bytes(field, sample)?);
                FieldValue::Yuv420(planes.map_err(|m| {
                    Error::cache(
                        Location::sample(&self.path, sample),
                        format!("field '{}': {m}", f.name),
                    )
                })?)
            }
        })
    }

    /// Every field's value of `sample`, in field order.
    pub fn values(&self, sample: u64) -> Result<Vec<FieldValue<'_>>> {
        self.check_index(sample)?;
        (0..self.header.fields.len())
            .map(|f| self.value(f, sample))
            .collect()
    }

    /// `IndexOutOfRange` unless the cache holds `sample` (for indices users pass); waits for
    /// it when the cache is being streamed in.
    pub fn check_index(&self, sample: u64) -> Result<()> {
        if sample < self.len() {
            self.wait_for(sample)
        } else {
            Err(Error::IndexOutOfRange {
                index: sample as i64,
                len: self.len(),
            })
        }
    }

    /// Check every sample against its checksums, in parallel; the error names a bad sample.
    pub fn verify_samples(&self) -> Result<()> {
        use rayon::prelude::*;
        (0..self.len()).into_par_iter().try_for_each(|sample| {
            self.check_index(sample)?;
            self.verify_sample(sample)
        })
    }

    /// Check every variable-length value of one sample against its stored checksum, whether
    /// or not it was checked before.
    pub fn verify_sample(&self, sample: u64) -> Result<()> {
        for (i, f) in self.header.fields.iter().enumerate() {
            if f.kind.is_scalar() {
                continue;
            }
            let r = self.record(i, sample);
            let actual = crc32c::crc32c(self.record_bytes(i, sample, &r)?);
            if actual != r.crc32c {
                return Err(Error::Checksum {
                    location: Location::sample(&self.path, sample),
                    field: f.name.clone(),
                    expected: r.crc32c,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Check every table against its stored checksum.
    pub fn verify_tables(&self) -> Result<()> {
        for f in &self.header.fields {
            for (what, table) in [
                ("values", &f.values),
                ("records", &f.records),
                ("shapes", &f.shapes),
                ("modes", &f.modes),
            ] {
                if let Some(t) = table {
                    let actual = crc32c::crc32c(self.table(table));
                    if actual != t.crc32c {
                        return Err(Error::Checksum {
                            location: Location::file(&self.path),
                            field: format!("{} ({what} table)", f.name),
                            expected: t.crc32c,
                            actual,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Sample indices at which the pages of quasi-random order begin: the header's `pages`
    /// when it has them, else a new page every ~`PAGE_BYTES` of the first variable-length
    /// field's values (every `SCALAR_PAGE_SAMPLES` samples when there is none).
    pub fn page_starts(&self) -> Vec<u64> {
        if let Some(pages) = &self.header.pages {
            return pages.clone();
        }
        let n = self.len();
        let Some(field) = self.fields().iter().position(|f| !f.kind.is_scalar()) else {
            return (0..n).step_by(SCALAR_PAGE_SAMPLES as usize).collect();
        };
        let mut starts = vec![0];
        let mut page_offset = self.record(field, 0).offset;
        for s in 1..n {
            let offset = self.record(field, s).offset;
            if offset.saturating_sub(page_offset) >= PAGE_BYTES {
                starts.push(s);
                page_offset = offset;
            }
        }
        starts
    }

    /// Tell the kernel which pages are about to be read, for sequential sweeps.
    pub fn advise_sequential(&self) {
        let _ = self.map.advise(memmap2::Advice::Sequential);
    }
}

/// No value checked yet: one bit per sample of each variable-length field.
fn unverified(header: &Header) -> Vec<Vec<AtomicU64>> {
    header
        .fields
        .iter()
        .map(|f| {
            let words = if f.kind.is_scalar() {
                0
            } else {
                header.num_samples.div_ceil(64)
            };
            (0..words).map(|_| AtomicU64::new(0)).collect()
        })
        .collect()
}

fn parse_header(map: &[u8], path: &Path) -> Result<Header> {
    let bad = |m: String| Error::cache(Location::file(path), m);
    let preamble = Preamble::decode(map).map_err(bad)?;
    let len = map.len() as u64;
    if preamble.header_len > MAX_HEADER_LEN {
        return Err(bad(format!(
            "header length {} is implausible",
            preamble.header_len
        )));
    }
    let end = preamble
        .header_offset
        .checked_add(preamble.header_len)
        .filter(|&e| e == len)
        .ok_or_else(|| {
            bad(format!(
                "header at {}+{} does not end at the end of the file ({len} bytes): truncated or overwritten",
                preamble.header_offset, preamble.header_len
            ))
        })?;
    let json = &map[preamble.header_offset as usize..end as usize];
    if crc32c::crc32c(json) != preamble.header_crc32c {
        return Err(bad("header checksum mismatch".into()));
    }
    let header: Header =
        serde_json::from_slice(json).map_err(|e| bad(format!("header JSON: {e}")))?;
    if header.version != VERSION {
        return Err(bad(format!("header version {}", header.version)));
    }
    let n = header.num_samples;
    let within = |offset: u64, size: u64| offset.checked_add(size).is_some_and(|e| e <= len);
    if !within(header.data.offset, header.data.size) {
        return Err(bad("data region lies outside the file".into()));
    }
    if let Some(pages) = &header.pages
        && (pages.first().is_some_and(|&p| p != 0)
            || pages.windows(2).any(|w| w[0] >= w[1])
            || pages.last().is_some_and(|&p| p >= n.max(1)))
    {
        return Err(bad("pages are not ascending sample indices from 0".into()));
    }
    for f in &header.fields {
        let expect = |table: &Option<Table>, what: &str, row: u64| -> Result<()> {
            let Some(t) = table else {
                return if row == 0 || n == 0 {
                    Ok(())
                } else {
                    Err(bad(format!("field '{}' has no {what} table", f.name)))
                };
            };
            if !within(t.offset, t.size) {
                return Err(bad(format!(
                    "{what} table of field '{}' lies outside the file",
                    f.name
                )));
            }
            if Some(t.size) != n.checked_mul(row) {
                return Err(bad(format!(
                    "{what} table of field '{}' is {} bytes, expected {n} × {row}",
                    f.name, t.size
                )));
            }
            Ok(())
        };
        let is = |k: FieldKind| f.kind == k;
        expect(&f.values, "values", f.kind.scalar_size() as u64)?;
        expect(
            &f.records,
            "records",
            if f.kind.is_scalar() {
                0
            } else {
                RECORD_LEN as u64
            },
        )?;
        let ndim = if is(FieldKind::Array) {
            f.ndim
                .ok_or_else(|| bad(format!("array field '{}' has no ndim", f.name)))?
        } else {
            0
        };
        expect(&f.shapes, "shapes", 4 * ndim as u64)?;
        expect(&f.modes, "modes", is(FieldKind::Pil) as u64)?;
        if is(FieldKind::Array) && f.dtype.is_none() && n > 0 {
            return Err(bad(format!("array field '{}' has no dtype", f.name)));
        }
    }
    Ok(header)
}
