//! slipstream: LitData datasets → an mmap cache → batches gathered in parallel → DLPack tensors.
//!
//! One module per stage (see ../shared/DESIGN.md):
//! [`source`] reads LitData datasets, [`cache`] builds and maps our cache file, [`sampler`]
//! decides which samples each batch holds, [`gather`] copies their bytes into batch buffers,
//! [`loader`] runs that ahead of the consumer on a background thread, [`dlpack`] hands the
//! buffers out, and `python` is the PyO3 glue.

pub mod buffer;
pub mod cache;
pub mod cli;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod decode;
pub mod demo;
pub mod dlpack;
pub mod dtype;
pub mod error;
pub mod gather;
pub mod loader;
pub mod rng;
pub mod sampler;
pub mod source;
pub mod transform;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
