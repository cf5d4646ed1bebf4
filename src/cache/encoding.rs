//! The cache's encodings of image fields, chosen when a cache is opened: `original` (the
//! source's bytes, the default), `jpeg` (every image re-encoded at `quality`, scaled to fit
//! `max_side`: FFCV's `max_resolution`) and `yuv420` (decode-free planes, optionally scaled).
//!
//! Any encoding but the original is a cache file of its own beside the original cache, built
//! from it by [`build_encoded`], with a fingerprint made of the original's and the encoding's
//! parameters: each encoding is reused, or rebuilt when its source changes, on its own.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::format::{Encoding, FieldHeader, FieldKind};
use super::parse::{ParsedChunk, Value, VarValue};
use super::reader::CacheReader;
use super::writer::{BuildOptions, BuildReport, Input, write_cache};
use crate::decode::ImagePolicy;
use crate::decode::encode::{CpuEncoder, Pixels, Target};
use crate::error::{Error, Location, Result};
use crate::source::dataset::Part;
use crate::source::items::{DecodedChunk, Recycler};

/// FFCV's default `jpeg_quality`.
pub const DEFAULT_QUALITY: u8 = 90;

/// Samples per part of an encoding build: small, since each costs a decode and an encode.
const PART_SAMPLES: u64 = 64;

impl Encoding {
    /// The encoding called `name` with its options, checked.
    pub fn new(name: &str, max_side: Option<u32>, quality: Option<u8>) -> Result<Encoding> {
        let encoding = match name {
            "original" if max_side.is_some() || quality.is_some() => {
                return Err(Error::invalid(
                    "max_side and quality re-encode images: pass encoding=\"jpeg\" or \"yuv420\"",
                ));
            }
            "original" => Encoding::Original,
            "jpeg" => Encoding::Jpeg {
                max_side,
                quality: quality.unwrap_or(DEFAULT_QUALITY),
            },
            "yuv420" if quality.is_some() => {
                return Err(Error::invalid(
                    "quality is the JPEG quality of encoding=\"jpeg\"; yuv420 is not compressed",
                ));
            }
            "yuv420" => Encoding::Yuv420 { max_side },
            other => {
                return Err(Error::invalid(format!(
                    "unknown encoding {other:?}: use \"original\", \"jpeg\" or \"yuv420\""
                )));
            }
        };
        if max_side == Some(0) {
            return Err(Error::invalid("max_side must be at least 1"));
        }
        if let Some(q) = quality
            && !(1..=100).contains(&q)
        {
            return Err(Error::invalid(format!(
                "quality={q}: JPEG qualities are 1..100"
            )));
        }
        Ok(encoding)
    }

    fn max_side(&self) -> Option<u32> {
        match *self {
            Encoding::Original => None,
            Encoding::Jpeg { max_side, .. } | Encoding::Yuv420 { max_side } => max_side,
        }
    }

    /// The cache file of this encoding of the cache at `original`: beside it, its name
    /// extended with the encoding and its parameters (`train-….jpeg-q90-512.slipcache`).
    pub fn path(&self, original: &Path) -> PathBuf {
        let mut tag = match self {
            Encoding::Original => return original.to_path_buf(),
            Encoding::Jpeg { quality, .. } => format!("jpeg-q{quality}"),
            Encoding::Yuv420 { .. } => "yuv420".to_string(),
        };
        if let Some(side) = self.max_side() {
            tag += &format!("-{side}");
        }
        let stem = original.file_stem().unwrap_or_default().to_string_lossy();
        let extension = original.extension().unwrap_or_default().to_string_lossy();
        original.with_file_name(format!("{stem}.{tag}.{extension}"))
    }

    /// The fingerprint of this encoding of a cache whose source has `original`.
    pub fn fingerprint(&self, original: &str) -> String {
        let description = serde_json::to_string(self).expect("encodings serialize");
        let key = format!("{original}\0{description}");
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
    }
}

thread_local! {
    static ENCODER: RefCell<CpuEncoder> = RefCell::new(CpuEncoder::default());
}

/// The images of a build that did not decode.
#[derive(Default)]
struct Broken(Mutex<BrokenImages>);

#[derive(Default)]
struct BrokenImages {
    count: u64,
    /// The first by sample: the sample, its field and the decoder's message.
    first: Option<(u64, String, String)>,
}

impl Broken {
    fn note(&self, field: &str, sample: u64, message: String) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.count += 1;
        if state
            .first
            .as_ref()
            .is_none_or(|(first, _, _)| sample < *first)
        {
            state.first = Some((sample, field.to_string(), message));
        }
    }

    /// Say how many there were, whether or not progress is shown: these samples will fail
    /// at load time.
    fn report(self, format: &str) {
        let BrokenImages { count, first } = self.0.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some((sample, field, message)) = first {
            crate::progress::say(&format!(
                "slipstream: {count} image(s) could not be decoded for the {format} encoding \
                 (the first: sample {sample}, field '{field}': {message}); they keep the \
                 original's bytes, and the pipelines treat them as broken images (on_error)"
            ));
        }
    }
}

/// Build at `dest` the cache of `original` with its image fields (encoded images, and raw
/// PIL images in RGB, RGBA or L) in `encoding`; every other value is copied as it is.
pub fn build_encoded(
    original: &CacheReader,
    encoding: Encoding,
    dest: &Path,
    options: &BuildOptions,
) -> Result<BuildReport> {
    let header = original.header();
    if !header.encoding.is_original() {
        return Err(Error::invalid(format!(
            "{} is already an encoded cache; open the dataset or its original cache",
            original.path().display()
        )));
    }
    let (target, format) = match encoding {
        Encoding::Original => unreachable!("the original is not built from a cache"),
        Encoding::Jpeg { quality, .. } => (Target::Jpeg { quality }, "jpeg"),
        Encoding::Yuv420 { .. } => (Target::Yuv420, "yuv420"),
    };
    let images: Vec<bool> = header
        .fields
        .iter()
        .map(|f| f.images && matches!(f.kind, FieldKind::Bytes | FieldKind::Pil))
        .collect();
    if !images.contains(&true) {
        return Err(Error::invalid(format!(
            "{}: no field holds images, so there is nothing to encode as {format}",
            header.source.path
        )));
    }
    let fields = header
        .fields
        .iter()
        .zip(&images)
        .map(|(f, &image)| empty_field(f, image.then_some((target, format))))
        .collect();
    let broken = Broken::default();
    let read = |_: usize, part: &Part, recycler: &Recycler| {
        ENCODER.with(|encoder| {
            let mut encoder = encoder.borrow_mut();
            read_part(
                original,
                (&images, encoding.max_side(), target),
                part,
                recycler,
                (&mut encoder, &broken),
            )
        })
    };
    let input = Input {
        source: super::format::SourceInfo {
            fingerprint: encoding.fingerprint(&header.source.fingerprint),
            ..header.source.clone()
        },
        encoding,
        layout: header.layout,
        fields,
        parts: parts(original),
        // The original's pages, so that quasi-random order is the same in every encoding.
        pages: Some(original.page_starts()),
        read: &read,
    };
    let report = write_cache(input, dest, options)?;
    broken.report(format);
    Ok(report)
}

/// The header of `f` with its tables empty, as an encoded image field when `image` says how.
fn empty_field(f: &FieldHeader, image: Option<(Target, &str)>) -> FieldHeader {
    match image {
        None => FieldHeader {
            framework: f.framework.clone(),
            images: f.images,
            ..FieldHeader::empty(&f.name, f.kind, &f.litdata_format)
        },
        Some((target, format)) => {
            let kind = match target {
                Target::Jpeg { .. } => FieldKind::Bytes,
                Target::Yuv420 => FieldKind::Yuv420,
            };
            FieldHeader {
                images: true,
                ..FieldHeader::empty(&f.name, kind, format)
            }
        }
    }
}

/// The original's samples in runs of [`PART_SAMPLES`], sized by their values' bytes.
fn parts(original: &CacheReader) -> Vec<Part> {
    let var: Vec<usize> = (original.fields().iter().enumerate())
        .filter(|(_, f)| f.records.is_some())
        .map(|(i, _)| i)
        .collect();
    let n = original.len();
    (0..n.div_ceil(PART_SAMPLES))
        .map(|k| {
            let first = k * PART_SAMPLES;
            let samples = PART_SAMPLES.min(n - first);
            let bytes: u64 = (first..first + samples)
                .flat_map(|s| var.iter().map(move |&f| (f, s)))
                .map(|(f, s)| original.record(f, s).size as u64)
                .sum();
            Part {
                path: original.path().to_path_buf(),
                first_sample: first,
                samples,
                file_bytes: bytes,
                item_bytes: bytes,
            }
        })
        .collect()
}

/// One part's samples, image fields encoded, in a buffer from `recycler`.
fn read_part(
    original: &CacheReader,
    (images, max_side, target): (&[bool], Option<u32>, Target),
    part: &Part,
    recycler: &Recycler,
    (encoder, broken): (&mut CpuEncoder, &Broken),
) -> Result<ParsedChunk> {
    let mut bytes = recycler
        .take(part.item_bytes as usize)
        .map_err(|m| Error::cache(Location::file(original.path()), m))?;
    let mut encoded = Vec::new();
    let mut samples = Vec::with_capacity(part.samples as usize);
    for s in part.first_sample..part.first_sample + part.samples {
        let mut values = Vec::with_capacity(images.len());
        for (f, field) in original.fields().iter().enumerate() {
            values.push(match field.kind {
                FieldKind::Int => Value::Int(original.int(f, s)),
                FieldKind::Float => Value::Float(original.float(f, s)),
                FieldKind::Bool => Value::Bool(original.bool(f, s)),
                _ => {
                    let record = original.record(f, s);
                    let value = original.record_bytes(f, s, &record)?;
                    original.check(f, s, &record, value)?;
                    let start = bytes.len();
                    let mode = match field.kind {
                        FieldKind::Pil => Some(original.mode(f, s)?),
                        _ => None,
                    };
                    if !images[f] {
                        bytes.extend_from_slice(value);
                        Value::Var(VarValue {
                            range: start..bytes.len(),
                            crc32c: record.crc32c,
                            height: record.height,
                            width: record.width,
                            dtype: field.dtype,
                            shape: match field.kind {
                                FieldKind::Array => original.shape(f, s),
                                _ => Vec::new(),
                            },
                            mode: mode.map(str::to_string),
                        })
                    } else {
                        let pixels = match mode {
                            Some(mode) => Pixels::Raw {
                                mode,
                                width: record.width,
                                height: record.height,
                                pixels: value,
                            },
                            None => Pixels::Encoded(value),
                        };
                        let encoding = encoder.encode(
                            pixels,
                            max_side,
                            target,
                            ImagePolicy::DEFAULT,
                            &mut encoded,
                        );
                        // An image that does not decode keeps the original's bytes, sized 0 x 0:
                        // readers decode those as the original cache would, so `on_error`
                        // decides at load time, as it does for the original.
                        let ((width, height), kept) = match encoding {
                            Ok(size) => (size, encoded.as_slice()),
                            Err(message) => {
                                broken.note(&field.name, s, message);
                                ((0, 0), value)
                            }
                        };
                        bytes.extend_from_slice(kept);
                        Value::Var(VarValue {
                            range: start..bytes.len(),
                            crc32c: crc32c::crc32c(kept),
                            height,
                            width,
                            dtype: None,
                            shape: Vec::new(),
                            mode: None,
                        })
                    }
                }
            });
        }
        samples.push(values);
    }
    Ok(ParsedChunk {
        decoded: DecodedChunk {
            bytes,
            items: Vec::new(),
        },
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert_eq!(
            Encoding::new("original", None, None).unwrap(),
            Encoding::Original
        );
        assert_eq!(
            Encoding::new("jpeg", Some(512), None).unwrap(),
            Encoding::Jpeg {
                max_side: Some(512),
                quality: 90
            }
        );
        for (name, side, quality, says) in [
            (
                "original",
                Some(512),
                None,
                "encoding=\"jpeg\" or \"yuv420\"",
            ),
            ("yuv420", None, Some(90), "yuv420 is not compressed"),
            ("jpeg", None, Some(101), "quality=101"),
            ("jpeg", Some(0), None, "max_side must be at least 1"),
            ("webp", None, None, "unknown encoding \"webp\""),
        ] {
            let e = Encoding::new(name, side, quality).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn each_encoding_has_its_file_and_fingerprint() {
        let original = Path::new("/c/train-00ff.slipcache");
        let jpeg = Encoding::new("jpeg", Some(512), Some(85)).unwrap();
        let yuv = Encoding::new("yuv420", None, None).unwrap();
        assert_eq!(
            jpeg.path(original),
            Path::new("/c/train-00ff.jpeg-q85-512.slipcache")
        );
        assert_eq!(
            yuv.path(original),
            Path::new("/c/train-00ff.yuv420.slipcache")
        );
        assert_eq!(Encoding::Original.path(original), original);
        let prints = [
            jpeg.fingerprint("a"),
            jpeg.fingerprint("b"),
            yuv.fingerprint("a"),
        ];
        assert_eq!(prints[0].len(), 32);
        assert!(prints[0] != prints[1] && prints[0] != prints[2]);
    }
}
