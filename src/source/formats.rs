//! Which format a dataset is in, and opening it as a [`Source`].

use std::path::Path;

use super::beton::Beton;
use super::dataset::Source;
use super::files::Fingerprint;
use super::image_folder::ImageFolder;
use super::litdata::{INDEX_FILENAME, LitDataset};
use super::parquet::Parquet;
use super::webdataset::WebDataset;
use crate::error::{Error, IoContext, Result};

/// The formats slipstream reads (`format=` in Python, `--format` on the command line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Recognised from the files: `index.json` makes a LitData dataset, `.tar` files
    /// WebDataset shards, `.parquet` files (or a `data/` folder of them) Parquet shards, class
    /// folders an ImageFolder tree, a `.beton` (or `.ffcv`) file an FFCV dataset.
    #[default]
    Auto,
    LitData,
    ImageFolder,
    WebDataset,
    Parquet,
    Beton,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        match s {
            "auto" => Ok(Format::Auto),
            "litdata" => Ok(Format::LitData),
            "imagefolder" => Ok(Format::ImageFolder),
            "webdataset" => Ok(Format::WebDataset),
            "parquet" => Ok(Format::Parquet),
            "beton" => Ok(Format::Beton),
            other => Err(Error::invalid(format!(
                "format must be 'auto', 'litdata', 'imagefolder', 'webdataset', 'parquet' or \
                 'beton', not {other:?}"
            ))),
        }
    }
}

impl Format {
    /// The format a single file of a sharded dataset is in, by its extension (`.tar`,
    /// `.parquet`, `.beton` or `.ffcv`); `None` for any other name.
    pub fn of_file(name: &str) -> Option<Format> {
        let (_, ext) = name.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "tar" => Some(Format::WebDataset),
            "parquet" => Some(Format::Parquet),
            "beton" | "ffcv" => Some(Format::Beton),
            _ => None,
        }
    }

    /// The name the cache header gives a source in this format.
    pub fn kind(self) -> &'static str {
        match self {
            Format::Auto | Format::LitData => "litdata",
            Format::ImageFolder => "imagefolder",
            Format::WebDataset => "webdataset",
            Format::Parquet => "parquet",
            Format::Beton => "beton",
        }
    }
}

/// The local dataset directory `root`, in `format`.
pub fn open_local(
    root: &Path,
    format: Format,
    fingerprint: Fingerprint,
) -> Result<Box<dyn Source>> {
    let format = match format {
        Format::Auto => detect(root)?,
        known => known,
    };
    Ok(match format {
        Format::ImageFolder => Box::new(ImageFolder::open(root, fingerprint)?),
        Format::WebDataset => Box::new(WebDataset::open(root, fingerprint)?),
        Format::Parquet => Box::new(Parquet::open(root, fingerprint)?),
        Format::Beton => Box::new(Beton::open(root, fingerprint)?),
        _ => Box::new(LitDataset::open_with(root, fingerprint)?),
    })
}

/// By the files: a `.beton` or `.ffcv` file is FFCV's; a `.tar` file (or a pattern naming them) or a
/// directory of them holds WebDataset shards; `.parquet` files, in the directory or its `data/` folder, Parquet shards; a
/// directory with `index.json` is LitData's; one with subdirectories is taken for an
/// ImageFolder tree, which says what it lacks when it is not one either.
fn detect(root: &Path) -> Result<Format> {
    let by_name = |p: &Path| Format::of_file(&p.file_name()?.to_string_lossy());
    let pattern = root
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains(['*', '?']));
    if pattern || !std::fs::metadata(root).at(root)?.is_dir() {
        return Ok(by_name(root).unwrap_or(Format::LitData));
    }
    if root.join(INDEX_FILENAME).exists() {
        return Ok(Format::LitData);
    }
    let mut subdirs = false;
    for entry in std::fs::read_dir(root).at(root)? {
        let path = entry.at(root)?.path();
        if let Some(format) = by_name(&path) {
            return Ok(format);
        }
        subdirs |= std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
    }
    let data = root.join("data");
    if data.is_dir()
        && std::fs::read_dir(&data)
            .at(&data)?
            .any(|e| e.is_ok_and(|e| by_name(&e.path()) == Some(Format::Parquet)))
    {
        return Ok(Format::Parquet);
    }
    Ok(if subdirs {
        Format::ImageFolder
    } else {
        Format::LitData
    })
}
