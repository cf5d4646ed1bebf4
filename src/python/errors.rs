//! Slipstream's errors raised as the matching `slipstream.errors` classes.

use pyo3::prelude::*;

use crate::error::Error;

/// Raise `error` as the matching `slipstream.errors` class.
fn to_py(py: Python<'_>, error: Error) -> PyErr {
    let class = match &error {
        Error::Io { .. } => "SlipstreamIOError",
        Error::Format { .. } => "FormatError",
        Error::Unsupported { .. } => "UnsupportedError",
        Error::Cache { .. } => "CacheError",
        Error::Checksum { .. } => "ChecksumError",
        Error::Decode { .. } => "DecodeError",
        Error::Cuda(_) => "CudaError",
        Error::InvalidArgument(_) => "ConfigError",
        Error::IndexOutOfRange { .. } => "SampleIndexError",
        Error::Internal(_) => "SlipstreamError",
    };
    error_of_class(py, class, error.to_string())
}

/// An instance of the `slipstream.errors` class named `class`.
pub(super) fn error_of_class(py: Python<'_>, class: &str, message: String) -> PyErr {
    match py
        .import("slipstream.errors")
        .and_then(|m| m.getattr(class))
    {
        Ok(class) => match class.call1((message,)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

pub(super) trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for crate::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
