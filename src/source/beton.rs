//! FFCV `.beton` files, as `ffcv.writer.DatasetWriter` writes them (format version 2; the
//! layout is described in [`layout`]).
//!
//! Fields come out in the file's order under its names: ints as `int`, floats as `float`,
//! bytes as `bytes`, JSON as `str` (the text before FFCV's NUL terminator), arrays as `numpy`
//! (or `tensor` for `TorchTensorField`) leaves with the field's shape, and images by the modes
//! their samples use: all JPEG, a `bytes` field of the JPEG files; all raw, a `pil` field (mode
//! RGB); both (FFCV's `proportion` and `smart` write modes), a `bytes` field whose raw samples
//! are encoded as lossless PNG files. Opening reads the header, the descriptors and, when there
//! are image fields, the images' modes from the metadata table; the build reads the rest.

mod layout;
mod sample;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::dataset::{Part, Source};
use super::files::{Fingerprint, files_fingerprint, open_regular};
use super::items::{DecodedChunk, Recycler};
use super::litdata::{Layout, Schema};
use crate::error::{Error, IoContext, Location, Result};
use layout::{
    ALLOC_ENTRY_LEN, Class, DESCRIPTOR_LEN, HEADER_LEN, Header, MODE_JPG, MODE_RAW, NAME_LEN,
    array_header, check_header, parse_descriptor, parse_header, row_layout, u64_at,
};
use sample::{Field, Images, Samples, Scratch};

/// A part closes before it would pass this many bytes of items, or at this many samples.
const PART_BYTES: u64 = 32 << 20;
const PART_SAMPLES: u64 = 4096;
/// Metadata rows and allocation entries are read this many bytes at a time.
const SCAN_BYTES: u64 = 4 << 20;

/// What the build reads the samples with: the parts and the allocation table.
#[derive(Debug)]
struct Listing {
    parts: Vec<Part>,
    /// `(ptr, size)`, sorted by pointer, one entry per pointer (the largest: an empty
    /// allocation may share its pointer with the next).
    alloc: Vec<(u64, u64)>,
}

/// An FFCV `.beton` file, its header and fields read.
#[derive(Debug)]
pub struct Beton {
    len: u64,
    header: Header,
    samples: Samples,
    row_len: u64,
    metadata_start: u64,
    schema: Schema,
    fingerprint: String,
    listing: OnceLock<Listing>,
}

impl Beton {
    /// Read the header and fields of the `.beton` file at `path`; `fingerprint` says how its
    /// version is recognised.
    pub fn open(path: &Path, fingerprint: Fingerprint) -> Result<Beton> {
        let path = path.canonicalize().at(path)?;
        let file = open_regular(&path)?;
        let meta = file.metadata().at(&path)?;
        let len = meta.len();
        let bad = |m: String| Error::format(Location::file(&path), m);

        let mut head = [0u8; HEADER_LEN as usize];
        if len >= HEADER_LEN {
            file.read_exact_at(&mut head, 0).at(&path)?;
        }
        let header = parse_header(&head[..len.min(HEADER_LEN) as usize]).ok_or_else(|| {
            bad(format!(
                "{len} bytes: too short for an FFCV .beton header ({HEADER_LEN} bytes)"
            ))
        })?;
        check_header(&header, len).map_err(bad)?;

        // check_header bounds the descriptors by the file's length.
        let mut descriptors = vec![0u8; header.num_fields as usize * DESCRIPTOR_LEN as usize];
        file.read_exact_at(&mut descriptors, HEADER_LEN).at(&path)?;
        let mut parsed: Vec<(String, Class)> = Vec::with_capacity(header.num_fields as usize);
        for d in descriptors.chunks_exact(DESCRIPTOR_LEN as usize) {
            let (name, class) = parse_descriptor(d).map_err(|r| r.at(&path))?;
            if parsed.iter().any(|(n, _)| *n == name) {
                return Err(bad(format!(
                    "two fields named '{name}' (FFCV keeps the first {NAME_LEN} bytes of a \
                     name, so longer names that begin alike collide; FFCV's own reader \
                     cannot tell them apart either): rewrite it with shorter field names"
                )));
            }
            parsed.push((name, class));
        }

        let (offsets, row_len) = row_layout(&parsed.iter().map(|p| &p.1).collect::<Vec<_>>());
        let metadata_start = HEADER_LEN + descriptors.len() as u64;
        let metadata_end = header
            .num_samples
            .checked_mul(row_len)
            .and_then(|n| n.checked_add(metadata_start))
            .filter(|&end| end <= header.alloc_table_ptr)
            .ok_or_else(|| {
                bad(format!(
                    "{} samples of {row_len} bytes of metadata do not fit between byte \
                     {metadata_start} and the allocation table at byte {}: truncated, or \
                     damaged",
                    header.num_samples, header.alloc_table_ptr
                ))
            })?;
        let fields = parsed
            .into_iter()
            .zip(offsets)
            .map(|((name, class), offset)| Field {
                array_header: match &class {
                    Class::NdArray(a) | Class::TorchTensor(a) => array_header(&class, a),
                    _ => Vec::new(),
                },
                images: (class == Class::RgbImage).then_some(Images::Jpg),
                name,
                class,
                offset: offset as usize,
            });
        let (fingerprint, _) =
            files_fingerprint("beton", std::slice::from_ref(&path), fingerprint)?;

        let mut beton = Beton {
            len,
            header,
            samples: Samples {
                fields: fields.collect(),
                data_start: metadata_end,
                data_end: header.alloc_table_ptr,
                path,
            },
            row_len,
            metadata_start,
            schema: Schema {
                layout: Layout::Dict,
                fields: Vec::new(),
            },
            fingerprint,
            listing: OnceLock::new(),
        };
        beton.scan_modes(&file)?;
        beton.schema.fields = beton.samples.fields.iter().map(Field::spec).collect();
        Ok(beton)
    }

    fn path(&self) -> &Path {
        &self.samples.path
    }

    /// Call `f` with each sample's index and metadata row, in order, until it returns false.
    fn for_each_row(
        &self,
        file: &File,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let per_block = (SCAN_BYTES / self.row_len).max(1);
        let mut block = Vec::new();
        let mut first = 0;
        while first < self.header.num_samples {
            let rows = per_block.min(self.header.num_samples - first);
            self.read_rows(file, first, rows, &mut block)?;
            for (k, row) in block.chunks_exact(self.row_len as usize).enumerate() {
                if !f(first + k as u64, row)? {
                    return Ok(());
                }
            }
            first += rows;
        }
        Ok(())
    }

    /// The metadata rows of samples `first..first + rows` (inside the table, checked at open).
    fn read_rows(&self, file: &File, first: u64, rows: u64, into: &mut Vec<u8>) -> Result<()> {
        into.clear();
        into.resize((rows * self.row_len) as usize, 0);
        let at = self.metadata_start + first * self.row_len;
        file.read_exact_at(into, at).at(self.path())
    }

    /// Which modes each image field's samples use.
    fn scan_modes(&mut self, file: &File) -> Result<()> {
        let fields = &self.samples.fields;
        let images: Vec<usize> = (0..fields.len())
            .filter(|&f| fields[f].class == Class::RgbImage)
            .collect();
        if images.is_empty() {
            return Ok(());
        }
        // (any JPEG, any raw) per image field.
        let mut seen = vec![(false, false); images.len()];
        self.for_each_row(file, |sample, row| {
            for (s, &f) in seen.iter_mut().zip(&images) {
                let field = &self.samples.fields[f];
                match row[field.offset] {
                    MODE_JPG => s.0 = true,
                    MODE_RAW => s.1 = true,
                    other => return Err(self.samples.bad_mode(sample, field, other)),
                }
            }
            // Once every field has both there is nothing more to learn.
            Ok(!seen.iter().all(|&(j, r)| j && r))
        })?;
        for (&(jpg, raw), &f) in seen.iter().zip(&images) {
            self.samples.fields[f].images = Some(match (jpg, raw) {
                (true, true) => Images::Mixed,
                (false, true) => Images::Raw,
                _ => Images::Jpg,
            });
        }
        Ok(())
    }

    /// The allocation table as `(ptr, size)`, sorted by pointer, one entry per pointer.
    fn read_alloc_table(&self, file: &File) -> Result<Vec<(u64, u64)>> {
        let table = self.samples.data_end;
        let entries = (self.len - table) / ALLOC_ENTRY_LEN;
        let mut alloc: Vec<(u64, u64)> = Vec::new();
        alloc.try_reserve_exact(entries as usize).map_err(|_| {
            let message = format!("not enough memory for an allocation table of {entries} entries");
            Error::format(Location::file(self.path()), message)
        })?;
        let mut block = Vec::new();
        let mut done = 0;
        while done < entries {
            let n = (SCAN_BYTES / ALLOC_ENTRY_LEN).min(entries - done);
            block.clear();
            block.resize((n * ALLOC_ENTRY_LEN) as usize, 0);
            let at = table + done * ALLOC_ENTRY_LEN;
            file.read_exact_at(&mut block, at).at(self.path())?;
            // Entries: u64 sample_id, u64 ptr, u64 size.
            let entries = block.chunks_exact(ALLOC_ENTRY_LEN as usize);
            alloc.extend(entries.map(|e| (u64_at(e, 8), u64_at(e, 16))));
            done += n;
        }
        // Largest first among equal pointers, so that dedup keeps it.
        alloc.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        alloc.dedup_by_key(|e| e.0);
        Ok(alloc)
    }

    fn listing(&self) -> Result<&Listing> {
        if let Some(listing) = self.listing.get() {
            return Ok(listing);
        }
        let file = open_regular(self.path())?;
        let fields = &self.samples.fields;
        let alloc = if fields
            .iter()
            .any(|f| matches!(f.images, Some(Images::Jpg | Images::Mixed)))
        {
            self.read_alloc_table(&file)?
        } else {
            Vec::new()
        };
        let mut parts: Vec<Part> = Vec::new();
        let mut slots = Vec::with_capacity(fields.len());
        self.for_each_row(&file, |sample, row| {
            let (item, data) = self.samples.locate(row, sample, &alloc, &mut slots)?;
            let file_bytes = self.row_len + data;
            match parts.last_mut() {
                Some(p) if p.samples < PART_SAMPLES && p.item_bytes + item <= PART_BYTES => {
                    p.samples += 1;
                    p.file_bytes += file_bytes;
                    p.item_bytes += item;
                }
                _ => parts.push(Part {
                    path: self.path().to_path_buf(),
                    first_sample: sample,
                    samples: 1,
                    file_bytes,
                    item_bytes: item,
                }),
            }
            Ok(true)
        })?;
        Ok(self.listing.get_or_init(|| Listing { parts, alloc }))
    }
}

impl Source for Beton {
    fn kind(&self) -> &'static str {
        "beton"
    }

    fn root(&self) -> &Path {
        self.path()
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn parts(&self) -> Result<Vec<Part>> {
        Ok(self.listing()?.parts.clone())
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn config(&self) -> Value {
        let fields: Vec<Value> = (self.samples.fields.iter())
            .map(|f| {
                let mut v = json!({"name": f.name, "type": f.class.ffcv_name()});
                if let Some(images) = f.images {
                    v["modes"] = json!(match images {
                        Images::Jpg => "jpg",
                        Images::Raw => "raw",
                        Images::Mixed => "jpg+raw",
                    });
                }
                if let Class::NdArray(a) | Class::TorchTensor(a) = &f.class {
                    v["dtype"] = json!(a.dtype.name());
                    v["shape"] = json!(a.shape);
                }
                v
            })
            .collect();
        json!({
            "file": self.path().file_name().unwrap_or_default().to_string_lossy(),
            "version": self.header.version,
            "page_size": self.header.page_size,
            "num_samples": self.header.num_samples,
            "fields": fields,
        })
    }

    fn read_part(&self, i: usize, recycler: &Recycler) -> Result<DecodedChunk> {
        let listing = self.listing()?;
        let part = (listing.parts.get(i))
            .ok_or_else(|| Error::Internal(format!("part {i} of {}", listing.parts.len())))?;
        let file = open_regular(self.path())?;
        let mut rows = Vec::new();
        self.read_rows(&file, part.first_sample, part.samples, &mut rows)?;
        let mut bytes = recycler
            .take(part.item_bytes as usize)
            .map_err(|e| Error::format(Location::file(self.path()), e))?;
        let mut items = Vec::with_capacity(part.samples as usize);
        let mut scratch = Scratch::default();
        for (k, row) in rows.chunks_exact(self.row_len as usize).enumerate() {
            let sample = part.first_sample + k as u64;
            let start = bytes.len();
            let alloc = &listing.alloc;
            (self.samples).write_item(&file, sample, row, alloc, &mut scratch, &mut bytes)?;
            items.push(start..bytes.len());
        }
        Ok(DecodedChunk { bytes, items })
    }
}

#[cfg(test)]
mod tests {
    use super::layout::tests::{descriptor, header_bytes};
    use super::*;
    use crate::source::serializer::{Leaf, Serializer};

    /// An image: raw or not, width, height, its bytes.
    type Image = (bool, u16, u16, Vec<u8>);

    /// A .beton file with the fields int, json, image for samples (label, json text, image);
    /// its data right after the metadata rather than page-aligned, which readers do not mind.
    fn build(samples: &[(i64, &str, Image)]) -> Vec<u8> {
        let fields = [(1u8, "label"), (5, "meta"), (2, "image")];
        let classes = [Class::Int, Class::Json, Class::RgbImage];
        let (offsets, row_len) = row_layout(&classes.iter().collect::<Vec<_>>());
        let metadata_start = 24 + 3 * DESCRIPTOR_LEN;
        let data_start = metadata_start + samples.len() as u64 * row_len;
        let mut data = Vec::new();
        let mut rows = vec![0u8; (samples.len() as u64 * row_len) as usize];
        let mut alloc = Vec::new();
        for (s, (label, text, (raw, w, h, image))) in samples.iter().enumerate() {
            let row = &mut rows[s * row_len as usize..(s + 1) * row_len as usize];
            row[offsets[0] as usize..][..8].copy_from_slice(&label.to_le_bytes());
            let json = format!("{text}\0");
            let ptr = data_start + data.len() as u64;
            let o = offsets[1] as usize;
            row[o..o + 8].copy_from_slice(&ptr.to_le_bytes());
            row[o + 8..o + 16].copy_from_slice(&(json.len() as u64).to_le_bytes());
            alloc.push((s as u64, ptr, json.len() as u64));
            data.extend_from_slice(json.as_bytes());
            let ptr = data_start + data.len() as u64;
            let o = offsets[2] as usize;
            row[o] = if *raw { MODE_RAW } else { MODE_JPG };
            row[o + 1..o + 3].copy_from_slice(&w.to_le_bytes());
            row[o + 3..o + 5].copy_from_slice(&h.to_le_bytes());
            row[o + 5..o + 13].copy_from_slice(&ptr.to_le_bytes());
            alloc.push((s as u64, ptr, image.len() as u64));
            data.extend_from_slice(image);
        }
        let alloc_table_ptr = data_start + data.len() as u64;
        let mut bytes = header_bytes(&Header {
            version: 2,
            num_fields: 3,
            page_size: 1 << 21,
            num_samples: samples.len() as u64,
            alloc_table_ptr,
        });
        for (id, name) in fields {
            bytes.extend(descriptor(id, name, &[]));
        }
        bytes.extend(rows);
        bytes.extend(data);
        // In reverse, as worker order may put them.
        for (s, p, n) in alloc.into_iter().rev() {
            for v in [s, p, n] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        bytes
    }

    fn open(dir: &tempfile::TempDir, bytes: &[u8]) -> Result<Beton> {
        let path = dir.path().join("d.beton");
        std::fs::write(&path, bytes).unwrap();
        Beton::open(&path, Fingerprint::Mtime)
    }

    fn leaves(item: &[u8], n: usize) -> Vec<&[u8]> {
        let mut at = 4 * n;
        (0..n)
            .map(|f| {
                let len = u32::from_le_bytes(item[4 * f..4 * f + 4].try_into().unwrap()) as usize;
                at += len;
                &item[at - len..at]
            })
            .collect()
    }

    #[test]
    fn reads_samples_in_classic_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = vec![0xff, 0xd8, 1, 2, 3, 0xff, 0xd9];
        let pixels: Vec<u8> = (0..12).collect();
        let built = build(&[
            (7, r#"{"a": 1}"#, (false, 5, 4, jpeg.clone())),
            (-1, "[]", (false, 1, 1, jpeg.clone())),
        ]);
        let beton = open(&dir, &built).unwrap();
        let names: Vec<&str> = beton
            .schema()
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["label", "meta", "image"]);
        assert_eq!(beton.schema().fields[2].serializer, Serializer::Bytes);
        let parts = beton.parts().unwrap();
        assert_eq!((parts.len(), parts[0].samples), (1, 2));
        let chunk = beton.read_part(0, &Recycler::default()).unwrap();
        let first = leaves(chunk.item(0), 3);
        assert_eq!(first[0], 7i64.to_le_bytes());
        assert_eq!(first[1], br#"{"a": 1}"#);
        assert_eq!(first[2], jpeg);
        assert_eq!(leaves(chunk.item(1), 3)[0], (-1i64).to_le_bytes());

        // All raw: PIL leaves.
        let built = build(&[(0, "0", (true, 2, 2, pixels.clone()))]);
        let beton = open(&dir, &built).unwrap();
        assert_eq!(beton.schema().fields[2].serializer, Serializer::Pil);
        let chunk = beton.read_part(0, &Recycler::default()).unwrap();
        let leaf = leaves(chunk.item(0), 3)[2];
        assert_eq!(
            Serializer::Pil.decode(leaf).unwrap(),
            Leaf::Pil {
                width: 2,
                height: 2,
                mode: "RGB",
                pixels: &pixels
            }
        );

        // Both: bytes, the raw ones as PNG.
        let built = build(&[
            (0, "0", (true, 2, 2, pixels.clone())),
            (1, "1", (false, 1, 1, jpeg.clone())),
        ]);
        let beton = open(&dir, &built).unwrap();
        assert_eq!(beton.schema().fields[2].serializer, Serializer::Bytes);
        let chunk = beton.read_part(0, &Recycler::default()).unwrap();
        let png = leaves(chunk.item(0), 3)[2];
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut out = vec![0u8; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut out).unwrap();
        assert_eq!(out, pixels);
        assert_eq!(leaves(chunk.item(1), 3)[2], jpeg);
    }

    #[test]
    fn bad_files_are_format_errors() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = vec![0xff, 0xd8, 0xff, 0xd9];
        let good = build(&[(1, "1", (false, 1, 1, jpeg.clone()))]);
        let is_format = |r: Result<Beton>| matches!(r, Err(Error::Format { .. }));
        assert!(is_format(open(&dir, &good[..10])));
        // A sample count whose metadata would run past the allocation table.
        let mut many = good.clone();
        many[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(is_format(open(&dir, &many)));
        let mut few = good.clone();
        few[8..16].copy_from_slice(&1000u64.to_le_bytes());
        assert!(is_format(open(&dir, &few)));
        // A bad image mode is seen at open.
        let (offsets, _) = row_layout(&[&Class::Int, &Class::Json, &Class::RgbImage]);
        let row = (24 + 3 * DESCRIPTOR_LEN) as usize;
        let mut mode = good.clone();
        mode[row + offsets[2] as usize] = 7;
        assert!(is_format(open(&dir, &mode)));
        // A JSON pointer past the data region, and an image with no allocation entry, at parts().
        let mut ptr = good.clone();
        let at = row + offsets[1] as usize;
        ptr[at..at + 8].copy_from_slice(&(u64::MAX - 2).to_le_bytes());
        let beton = open(&dir, &ptr).unwrap();
        assert!(matches!(beton.parts(), Err(Error::Format { .. })));
        let mut image = good.clone();
        let at = row + offsets[2] as usize + 5;
        image[at..at + 8].copy_from_slice(&5u64.to_le_bytes());
        let beton = open(&dir, &image).unwrap();
        assert!(matches!(beton.parts(), Err(Error::Format { .. })));
        // A truncated allocation table.
        assert!(is_format(open(&dir, &good[..good.len() - 1])));
    }
}
