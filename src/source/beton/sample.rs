//! One sample's values: where each field's value is, from its metadata row, and its leaf in
//! LitData's classic item encoding.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::layout::{ArrayLeaf, Class, MODE_JPG, MODE_RAW, array_leaf, u16_at, u64_at};
use crate::error::{Error, IoContext, Location, Result};
use crate::source::litdata::FieldSpec;
use crate::source::serializer::Serializer;

/// Which modes the samples of an image field use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Images {
    Jpg,
    Raw,
    Mixed,
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) class: Class,
    /// Where its entry starts in a metadata row.
    pub(super) offset: usize,
    /// For images: the modes its samples use.
    pub(super) images: Option<Images>,
    /// For arrays: the leaf's header (dtype, shape), the same for every sample.
    pub(super) array_header: Vec<u8>,
}

impl Field {
    pub(super) fn spec(&self) -> FieldSpec {
        let (format, serializer) = match (&self.class, self.images) {
            (Class::Float, _) => ("float".to_string(), Serializer::Float),
            (Class::Int, _) => ("int".to_string(), Serializer::Int),
            (Class::Bytes, _) => ("bytes".to_string(), Serializer::Bytes),
            (Class::Json, _) => ("str".to_string(), Serializer::Str),
            (Class::RgbImage, Some(Images::Raw)) => ("pil".to_string(), Serializer::Pil),
            (Class::RgbImage, _) => ("bytes".to_string(), Serializer::Bytes),
            (Class::NdArray(a) | Class::TorchTensor(a), _) => match array_leaf(&self.class, a) {
                ArrayLeaf::Tensor(_) => ("tensor".to_string(), Serializer::Tensor),
                ArrayLeaf::Numpy(_) => ("numpy".to_string(), Serializer::Numpy),
            },
        };
        FieldSpec {
            name: self.name.clone(),
            format,
            serializer,
        }
    }
}

/// One field's value in one sample, located from its metadata entry.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    /// An 8-byte number stored in the entry itself.
    Inline([u8; 8]),
    /// `len` bytes at `ptr`.
    Data { ptr: u64, len: u64 },
    /// An image: JPEG bytes, or `width × height × 3` raw pixels.
    Image {
        raw: bool,
        width: u32,
        height: u32,
        ptr: u64,
        len: u64,
    },
}

/// A file's fields and its data region: what locating and reading samples needs.
#[derive(Debug)]
pub(super) struct Samples {
    pub(super) path: PathBuf,
    pub(super) fields: Vec<Field>,
    /// The data region: from the metadata's end to the allocation table.
    pub(super) data_start: u64,
    pub(super) data_end: u64,
}

impl Samples {
    pub(super) fn at_sample(&self, sample: u64, message: String) -> Error {
        Error::format(Location::sample(&self.path, sample), message)
    }

    pub(super) fn bad_mode(&self, sample: u64, field: &Field, mode: u8) -> Error {
        self.at_sample(
            sample,
            format!(
                "image field '{}' has mode {mode}, where FFCV writes {MODE_JPG} (jpg) or \
                 {MODE_RAW} (raw): damaged",
                field.name
            ),
        )
    }

    /// Locate each field's value of `sample` from its metadata `row` into `slots`, checking
    /// that its data lies in the data region; returns the sample's item size (estimated for
    /// images that become PNG files) and the bytes of data it reads.
    pub(super) fn locate(
        &self,
        row: &[u8],
        sample: u64,
        alloc: &[(u64, u64)],
        slots: &mut Vec<Slot>,
    ) -> Result<(u64, u64)> {
        slots.clear();
        let mut item = 4 * self.fields.len() as u64;
        let mut data = 0;
        for field in &self.fields {
            let at = field.offset;
            let slot = match &field.class {
                Class::Float | Class::Int => {
                    let mut value = [0u8; 8];
                    value.copy_from_slice(&row[at..at + 8]);
                    Slot::Inline(value)
                }
                Class::Bytes | Class::Json => Slot::Data {
                    ptr: u64_at(row, at),
                    len: u64_at(row, at + 8),
                },
                Class::NdArray(a) | Class::TorchTensor(a) => Slot::Data {
                    ptr: u64_at(row, at),
                    len: a.size,
                },
                Class::RgbImage => {
                    let (width, height) = (u16_at(row, at + 1) as u32, u16_at(row, at + 3) as u32);
                    let ptr = u64_at(row, at + 5);
                    let raw = match row[at] {
                        MODE_RAW => true,
                        MODE_JPG => false,
                        other => return Err(self.bad_mode(sample, field, other)),
                    };
                    // Opening read every mode; a different one now means the file changed.
                    let expected = match field.images {
                        Some(Images::Raw) => Some(true),
                        Some(Images::Jpg) => Some(false),
                        _ => None,
                    };
                    if expected.is_some_and(|e| e != raw) {
                        return Err(self.at_sample(
                            sample,
                            format!(
                                "image field '{}' changed since the file was opened (its \
                                 image modes differ): open it again",
                                field.name
                            ),
                        ));
                    }
                    let len = if raw {
                        width as u64 * height as u64 * 3
                    } else {
                        let found = alloc
                            .binary_search_by_key(&ptr, |e| e.0)
                            .ok()
                            .map(|i| alloc[i].1);
                        found.ok_or_else(|| {
                            self.at_sample(
                                sample,
                                format!(
                                    "image field '{}': its JPEG at byte {ptr} has no entry in \
                                     the allocation table, which holds its size: damaged",
                                    field.name
                                ),
                            )
                        })?
                    };
                    Slot::Image {
                        raw,
                        width,
                        height,
                        ptr,
                        len,
                    }
                }
            };
            let leaf = match slot {
                Slot::Inline(_) => 8,
                Slot::Data { ptr, len } | Slot::Image { ptr, len, .. } => {
                    self.check_range(sample, field, ptr, len)?;
                    data += len;
                    match slot {
                        Slot::Image {
                            raw: true, height, ..
                        } if field.images == Some(Images::Mixed) => {
                            // About the pixels at most: PNG adds a filter byte per row
                            // and framing; deflate is fast and rarely grows the data.
                            len + height as u64 + len / 16384 * 5 + 128
                        }
                        Slot::Image { raw: true, .. } => 15 + len,
                        _ => field.array_header.len() as u64 + len,
                    }
                }
            };
            if leaf > u32::MAX as u64 {
                return Err(self.at_sample(
                    sample,
                    format!(
                        "field '{}': a value of {leaf} bytes, more than the 4 GiB a value may hold",
                        field.name
                    ),
                ));
            }
            item += leaf;
            slots.push(slot);
        }
        Ok((item, data))
    }

    /// Whether `len` bytes at `ptr` lie in the data region (an empty value may point anywhere:
    /// FFCV's allocator gives a sample's first, empty allocation a pointer before its pages).
    fn check_range(&self, sample: u64, field: &Field, ptr: u64, len: u64) -> Result<()> {
        let inside =
            ptr >= self.data_start && ptr.checked_add(len).is_some_and(|end| end <= self.data_end);
        if len == 0 || inside {
            return Ok(());
        }
        Err(self.at_sample(
            sample,
            format!(
                "field '{}': {len} bytes at byte {ptr} are not inside the data region (bytes \
                 {}..{} of the file): truncated, or damaged",
                field.name, self.data_start, self.data_end
            ),
        ))
    }

    /// Append the leaf of `field` for `slot` to `bytes`.
    pub(super) fn write_leaf(
        &self,
        file: &File,
        sample: u64,
        field: &Field,
        slot: Slot,
        bytes: &mut Vec<u8>,
        pixels: &mut Vec<u8>,
    ) -> Result<()> {
        let read_into = |bytes: &mut Vec<u8>, ptr: u64, len: u64| -> Result<()> {
            let at = bytes.len();
            bytes.resize(at + len as usize, 0);
            file.read_exact_at(&mut bytes[at..], ptr).at(&self.path)
        };
        match slot {
            Slot::Inline(value) => bytes.extend_from_slice(&value),
            Slot::Data { ptr, len } => {
                let at = bytes.len();
                bytes.extend_from_slice(&field.array_header);
                read_into(bytes, ptr, len)?;
                if field.class == Class::Json {
                    // JSONField appends a NUL; the text is what comes before the first one.
                    if let Some(nul) = bytes[at..].iter().position(|&b| b == 0) {
                        bytes.truncate(at + nul);
                    }
                    if std::str::from_utf8(&bytes[at..]).is_err() {
                        return Err(self.at_sample(
                            sample,
                            format!("JSON field '{}' is not UTF-8 text", field.name),
                        ));
                    }
                }
            }
            Slot::Image {
                raw: false,
                ptr,
                len,
                ..
            } => read_into(bytes, ptr, len)?,
            Slot::Image {
                raw: true,
                width,
                height,
                ptr,
                len,
            } => {
                if field.images == Some(Images::Mixed) {
                    pixels.clear();
                    read_into(pixels, ptr, len)?;
                    encode_png(pixels, width, height, bytes).map_err(|e| {
                        self.at_sample(
                            sample,
                            format!(
                                "image field '{}': its {width}x{height} raw image does not \
                                 encode as PNG: {e}",
                                field.name
                            ),
                        )
                    })?;
                } else {
                    // Serializer::Pil: u32 width, u32 height, u32 len(mode), mode, pixels.
                    for v in [width, height, 3] {
                        bytes.extend_from_slice(&v.to_le_bytes());
                    }
                    bytes.extend_from_slice(b"RGB");
                    read_into(bytes, ptr, len)?;
                }
            }
        }
        Ok(())
    }

    /// Append the item of `sample` (leaf sizes, then the leaves) to `bytes`.
    pub(super) fn write_item(
        &self,
        file: &File,
        sample: u64,
        row: &[u8],
        alloc: &[(u64, u64)],
        scratch: &mut Scratch,
        bytes: &mut Vec<u8>,
    ) -> Result<()> {
        let slots = &mut scratch.slots;
        self.locate(row, sample, alloc, slots)?;
        let start = bytes.len();
        bytes.resize(start + 4 * slots.len(), 0);
        for (f, (field, &slot)) in self.fields.iter().zip(slots.iter()).enumerate() {
            let leaf = bytes.len();
            self.write_leaf(file, sample, field, slot, bytes, &mut scratch.pixels)?;
            let size = u32::try_from(bytes.len() - leaf).map_err(|_| {
                self.at_sample(
                    sample,
                    format!("field '{}': a value of more than 4 GiB", field.name),
                )
            })?;
            bytes[start + 4 * f..start + 4 * f + 4].copy_from_slice(&size.to_le_bytes());
        }
        Ok(())
    }
}

/// Buffers reused from sample to sample.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    slots: Vec<Slot>,
    /// A raw image on its way to PNG.
    pixels: Vec<u8>,
}

/// Raw RGB pixels as a PNG file (lossless; fast deflate), appended to `into`.
fn encode_png(pixels: &[u8], width: u32, height: u32, into: &mut Vec<u8>) -> Result<(), String> {
    let mut encoder = png::Encoder::new(&mut *into, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(pixels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}
