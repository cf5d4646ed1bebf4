//! Parquet shards as the Hugging Face hub lays out a dataset: `data/<split>-00000-of-00004.parquet`
//! (or any directory of `.parquet` files, one file, or a pattern such as
//! `data/train-*.parquet`).
//!
//! Each column becomes a field of the same name: an image column (`datasets`' `Image` feature,
//! a struct of `bytes` and `path`) as the image's bytes, integers (`ClassLabel` is an int64
//! column) as `int`, floats as `float`, booleans as `bool`, strings as `str`, binary as
//! `bytes`. Other column types, nulls and an image without embedded bytes are errors naming
//! the file. The cache is built one row group at a time; opening a dataset whose cache is
//! current reads only the first file's footer and stats the others.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::reader::{ChunkReader, Length};
use rayon::prelude::*;
use serde_json::{Value, json};

use super::arrow::{catch_quietly, encode_rows};
use super::dataset::{Part, Source};
use super::files::{Fingerprint, file_names, files_fingerprint, open_regular, shard_files};
use super::items::{DecodedChunk, Recycler};
use super::litdata::{FieldSpec, Layout, Schema};
use super::serializer::Serializer;
use crate::error::{Error, IoContext, Location, Result};

/// What the build reads the files with.
#[derive(Debug)]
struct Listing {
    /// Every row group: (file, row group in it, part).
    parts: Vec<(usize, usize, Part)>,
    /// Each file's footer, read once.
    footers: Vec<ArrowReaderMetadata>,
}

#[derive(Debug)]
pub struct Parquet {
    root: PathBuf,
    files: Vec<PathBuf>,
    /// The first file's Arrow schema, which every file must have.
    arrow: SchemaRef,
    /// Per field: whether it is an image struct whose `bytes` child holds the values.
    images: Vec<bool>,
    schema: Schema,
    fingerprint: String,
    /// Read when the cache is built.
    listing: OnceLock<Listing>,
}

impl Parquet {
    /// The shards of `root` (see the module's documentation).
    pub fn open(root: &Path, fingerprint: Fingerprint) -> Result<Parquet> {
        let (mut root, mut files) = shard_files(root, "parquet")?;
        if files.is_empty() && root.join("data").is_dir() {
            (root, files) = shard_files(&root.join("data"), "parquet")?;
        }
        if files.is_empty() {
            return Err(Error::format(
                Location::file(&root),
                "no .parquet files here, nor in its data/ folder",
            ));
        }
        check_one_split(&root, &files)?;
        let (fingerprint, _) = files_fingerprint("parquet", &files, fingerprint)?;
        let arrow = footer(&files[0])?.schema().clone();
        let mut fields = Vec::new();
        let mut images = Vec::new();
        for column in arrow.fields() {
            let name = column.name();
            let unsupported = || {
                Error::format(
                    Location::file(&files[0]),
                    format!(
                        "column '{name}' has type {}, which slipstream does not store: it reads \
                         images (datasets' Image feature), integers, floats, booleans, strings \
                         and binary columns",
                        column.data_type()
                    ),
                )
            };
            let (format, serializer, image) = match column.data_type() {
                DataType::Struct(children) => {
                    let bytes = children.iter().find(|c| c.name() == "bytes");
                    match bytes.map(|c| c.data_type()) {
                        Some(DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => {
                            ("bytes", Serializer::Bytes, true)
                        }
                        _ => return Err(unsupported()),
                    }
                }
                t if t.is_integer() => ("int", Serializer::Int, false),
                DataType::Float32 | DataType::Float64 => ("float", Serializer::Float, false),
                DataType::Boolean => ("bool", Serializer::Bool, false),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    ("str", Serializer::Str, false)
                }
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                    ("bytes", Serializer::Bytes, false)
                }
                _ => return Err(unsupported()),
            };
            fields.push(FieldSpec {
                name: name.clone(),
                format: format.into(),
                serializer,
            });
            images.push(image);
        }
        Ok(Parquet {
            root,
            files,
            arrow,
            images,
            schema: Schema {
                layout: Layout::Dict,
                fields,
            },
            fingerprint,
            listing: OnceLock::new(),
        })
    }

    fn listing(&self) -> Result<&Listing> {
        if let Some(listing) = self.listing.get() {
            return Ok(listing);
        }
        let footers: Vec<ArrowReaderMetadata> = self
            .files
            .par_iter()
            .map(|path| footer(path))
            .collect::<Result<_>>()?;
        let mut parts = Vec::new();
        let mut first_sample = 0;
        for (f, (path, footer)) in self.files.iter().zip(&footers).enumerate() {
            if footer.schema().fields() != self.arrow.fields() {
                return Err(Error::format(
                    Location::file(path),
                    format!(
                        "its columns ({}) differ from the first file's ({}): every file of a \
                         dataset must have one schema",
                        footer.schema(),
                        self.arrow
                    ),
                ));
            }
            for (g, group) in footer.metadata().row_groups().iter().enumerate() {
                check_codecs(path, group)?;
                let size = |n: i64| u64::try_from(n).unwrap_or(0);
                let (rows, inflated) = (size(group.num_rows()), size(group.total_byte_size()));
                parts.push((
                    f,
                    g,
                    Part {
                        path: self.files[f].clone(),
                        first_sample,
                        samples: rows,
                        file_bytes: size(group.compressed_size()),
                        item_bytes: inflated + rows * 4 * self.images.len() as u64,
                    },
                ));
                first_sample += rows;
            }
        }
        Ok(self.listing.get_or_init(|| Listing { parts, footers }))
    }

    /// Row group `group` of file `f`, as record batches.
    fn read_group(&self, f: usize, group: usize) -> Result<Vec<RecordBatch>> {
        let path = &self.files[f];
        let bad =
            |e: String| Error::format(Location::file(path), format!("row group {group}: {e}"));
        let footer = self.listing()?.footers[f].clone();
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(ShardFile::open(path)?, footer)
                .with_row_groups(vec![group])
                .build()
                .map_err(|e| bad(e.to_string()))?;
        // The Parquet reader panics on some damaged files instead of returning an error.
        catch_quietly(std::panic::AssertUnwindSafe(|| {
            reader.collect::<std::result::Result<Vec<_>, _>>()
        }))
        .map_err(|_| bad("the Parquet reader failed on it (a damaged file?)".into()))?
        .map_err(|e| bad(e.to_string()))
    }
}

/// The footer of the Parquet file at `path`: its schema and row groups.
fn footer(path: &Path) -> Result<ArrowReaderMetadata> {
    let file = ShardFile::open(path)?;
    catch_quietly(|| ArrowReaderMetadata::load(&file, ArrowReaderOptions::default()))
        .map_err(|_| "the Parquet reader failed on its footer".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| {
            Error::format(
                Location::file(path),
                format!("not a readable Parquet file: {e}"),
            )
        })
}

/// A Parquet file as the reader reads it, stricter than `File`'s own `ChunkReader`: reading at
/// the end of the file is an error, not an empty read, and a range past the end is refused
/// before any memory is taken for it. A damaged page header can claim a list of 2^31 values
/// that the reader skips one read at a time; at the end of the file each read used to return
/// nothing without error, so an 8 KB file kept a build busy for hours (found by the fuzzer).
struct ShardFile {
    file: File,
    len: u64,
}

impl ShardFile {
    fn open(path: &Path) -> Result<ShardFile> {
        let file = open_regular(path)?;
        let len = file.metadata().at(path)?.len();
        Ok(ShardFile { file, len })
    }
}

impl Length for ShardFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for ShardFile {
    type T = ToTheEnd<BufReader<File>>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(ToTheEnd(self.file.get_read(start)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        if start
            .checked_add(length as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(ParquetError::EOF(format!(
                "{length} bytes at byte {start} run past the end ({} bytes)",
                self.len
            )));
        }
        self.file.get_bytes(start, length)
    }
}

/// A reader for which reaching the end of its input is an error.
struct ToTheEnd<R>(R);

impl<R: Read> Read for ToTheEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf)? {
            0 if !buf.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the Parquet file",
            )),
            n => Ok(n),
        }
    }
}

/// An error unless every column chunk of `group` is compressed with a codec this build reads,
/// before a row group is read (the reader's own message names a compile-time feature).
fn check_codecs(path: &Path, group: &RowGroupMetaData) -> Result<()> {
    for column in group.columns() {
        let codec = column.compression();
        if matches!(codec, Compression::BROTLI(_) | Compression::LZO) {
            return Err(Error::format(
                Location::file(path),
                format!(
                    "column '{}' is compressed with {codec}, which slipstream does not read \
                     (it reads snappy, zstd, gzip, lz4 and uncompressed files): rewrite it, \
                     e.g. pyarrow.parquet.write_table(table, path, compression=\"zstd\")",
                    column.column_path()
                ),
            ));
        }
    }
    Ok(())
}

/// The hub names shards `<split>-<i>-of-<n>.parquet`; a dataset is one split.
fn check_one_split(root: &Path, files: &[PathBuf]) -> Result<()> {
    let mut splits: Vec<String> = files
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let (split, rest) = name.split_once('-')?;
            rest.contains("-of-").then(|| split.to_string())
        })
        .collect();
    splits.sort();
    splits.dedup();
    if splits.len() > 1 {
        let dir = if root.is_dir() {
            root
        } else {
            root.parent().unwrap_or(root)
        };
        return Err(Error::invalid(format!(
            "{} holds the splits {}: name one, e.g. {}",
            root.display(),
            splits.join(", "),
            dir.join(format!("{}-*.parquet", splits[0])).display()
        )));
    }
    Ok(())
}

impl Source for Parquet {
    fn kind(&self) -> &'static str {
        "parquet"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn parts(&self) -> Result<Vec<Part>> {
        Ok(self.listing()?.parts.iter().map(|p| p.2.clone()).collect())
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn config(&self) -> Value {
        json!({"files": file_names(&self.files)})
    }

    fn read_part(&self, i: usize, recycler: &Recycler) -> Result<DecodedChunk> {
        let (f, group, part) = &self.listing()?.parts[i];
        let path = &self.files[*f];
        let mut bytes = recycler
            .take(part.item_bytes as usize)
            .map_err(|e| Error::format(Location::file(path), e))?;
        let mut items = Vec::with_capacity(part.samples as usize);
        let mut row_base = part.first_sample;
        for batch in self.read_group(*f, *group)? {
            let at = |row: Option<usize>, message: String| match row {
                Some(r) => Error::format(Location::sample(path, row_base + r as u64), message),
                None => Error::format(Location::file(path), message),
            };
            let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.images.len());
            for (column, &image) in batch.columns().iter().zip(&self.images) {
                if !image {
                    arrays.push(column.clone());
                    continue;
                }
                let image = column.as_struct();
                if let Some(row) = (0..image.len()).find(|&r| image.is_null(r)) {
                    return Err(at(Some(row), "an image is null".into()));
                }
                let data = image.column_by_name("bytes").expect("checked at open");
                if let Some(row) = (0..data.len()).find(|&r| data.is_null(r)) {
                    return Err(at(
                        Some(row),
                        "an image without embedded bytes (only a path): slipstream reads the \
                         images stored in the files (datasets' push_to_hub and \
                         to_parquet embed them)"
                            .into(),
                    ));
                }
                arrays.push(Arc::clone(data));
            }
            let refs: Vec<&ArrayRef> = arrays.iter().collect();
            encode_rows(&refs, &self.schema, &mut bytes, &mut items)
                .map_err(|(row, message)| at(row, message))?;
            row_base += batch.num_rows() as u64;
        }
        Ok(DecodedChunk { bytes, items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_files_refuse_reads_past_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = ShardFile::open(&path).unwrap();
        let mut read = file.get_read(4).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(read.read(&mut buf).unwrap(), 6);
        let end = read.read(&mut buf).unwrap_err();
        assert_eq!(end.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(read.read(&mut []).unwrap(), 0);
        assert_eq!(&file.get_bytes(8, 2).unwrap()[..], b"89");
        // Refused from the lengths alone: nothing is allocated for the claimed size.
        for (start, length) in [(8, 3), (0, usize::MAX), (u64::MAX, 1)] {
            let err = file.get_bytes(start, length).unwrap_err().to_string();
            assert!(err.contains("run past the end (10 bytes)"), "{err}");
        }
    }
}
