//! The library's one error type.
//!
//! Every failure a user can cause (bad input, a bad argument, a corrupt cache) is an [`Error`]
//! that names the file and, where there is one, the sample. The Python glue maps each variant
//! to a `slipstream.SlipstreamError` subclass in one place (`python/errors.rs`), so the
//! grouping here is the grouping users catch.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a dataset something went wrong: a file and, when known, a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// Global sample index (the index a user passes to `ds[i]`).
    pub sample: Option<u64>,
}

impl Location {
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Location {
            path: path.into(),
            sample: None,
        }
    }

    pub fn sample(path: impl Into<PathBuf>, sample: u64) -> Self {
        Location {
            path: path.into(),
            sample: Some(sample),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sample {
            Some(sample) => write!(f, "{} (sample {})", self.path.display(), sample),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The source dataset is malformed: a bad `index.json`, a truncated or inconsistent chunk.
    #[error("{location}: {message}")]
    Format { location: Location, message: String },

    /// The source dataset uses something slipstream does not read (yet).
    #[error("{dataset}: {feature} is not supported. {hint}")]
    Unsupported {
        dataset: PathBuf,
        feature: String,
        hint: String,
    },

    /// A slipstream cache file is malformed (wrong magic, version, bounds).
    #[error("{location}: corrupt cache: {message}")]
    Cache { location: Location, message: String },

    /// A sample's bytes no longer match the checksum written when the cache was built.
    #[error(
        "{location}: checksum mismatch in field '{field}' (stored {expected:#010x}, computed {actual:#010x}); rebuild the cache"
    )]
    Checksum {
        location: Location,
        field: String,
        expected: u32,
        actual: u32,
    },

    /// An encoded image that does not decode.
    #[error("{location}: field '{field}': {message}")]
    Decode {
        location: Location,
        field: String,
        message: String,
    },

    /// The GPU path cannot run or failed: no driver or device, a kernel, CUDA or nvJPEG error.
    #[error("CUDA: {0}")]
    Cuda(String),

    /// A caller passed an argument that cannot work (bad index, bad option).
    #[error("{0}")]
    InvalidArgument(String),

    /// A bug in slipstream, reported instead of crashing the caller.
    #[error("internal error (please report it): {0}")]
    Internal(String),

    /// A sample index outside the dataset.
    #[error("sample index {index} is out of range for a dataset of {len} samples")]
    IndexOutOfRange { index: i64, len: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error again, for reporting one failure to several callers (the readers of a
    /// cache whose download failed); an I/O error keeps its kind and message.
    pub fn again(&self) -> Error {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Format { location, message } => Error::Format {
                location: location.clone(),
                message: message.clone(),
            },
            Error::Unsupported {
                dataset,
                feature,
                hint,
            } => Error::Unsupported {
                dataset: dataset.clone(),
                feature: feature.clone(),
                hint: hint.clone(),
            },
            Error::Cache { location, message } => Error::Cache {
                location: location.clone(),
                message: message.clone(),
            },
            Error::Checksum {
                location,
                field,
                expected,
                actual,
            } => Error::Checksum {
                location: location.clone(),
                field: field.clone(),
                expected: *expected,
                actual: *actual,
            },
            Error::Decode {
                location,
                field,
                message,
            } => Error::Decode {
                location: location.clone(),
                field: field.clone(),
                message: message.clone(),
            },
            Error::Cuda(m) => Error::Cuda(m.clone()),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
            Error::IndexOutOfRange { index, len } => Error::IndexOutOfRange {
                index: *index,
                len: *len,
            },
        }
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn format(location: Location, message: impl Into<String>) -> Self {
        Error::Format {
            location,
            message: message.into(),
        }
    }

    pub fn cache(location: Location, message: impl Into<String>) -> Self {
        Error::Cache {
            location,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}

/// Attach a path to `std::io::Result`s.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
