//! slipstream: datasets → an mmap cache → batches decoded and transformed on the CPU or a GPU
//! → DLPack tensors for PyTorch. docs/ARCHITECTURE.md shows the layers and follows one batch
//! through them. The modules are listed by layer, bottom first; each imports only from layers
//! above it in this list (`scripts/check_layers.py` checks).

pub mod error; // the one error type; each failure names its file and sample

pub mod dtype; // element types of stored and handed-out arrays
#[cfg(feature = "cuda")]
pub mod kernel_images; // the compiled kernels, and which one a GPU loads
pub mod progress; // progress of builds and transfers: a bar, log lines, or a reporter
pub mod rng; // counter-based random streams keyed by (seed, epoch, sample, view)
pub mod threads; // where parallel work runs (rayon pools; none after fork)

pub mod buffer; // aligned host batch memory, recycled once consumers drop it
#[cfg(feature = "cuda")]
pub mod cuda; // the CUDA device: context, stream, device and pinned memory
#[cfg(feature = "s3")]
pub mod s3; // S3: locations, options, listing, parallel ranged downloads, uploads

pub mod decode; // image headers, CPU decode (libjpeg-turbo, PNG), nvJPEG
pub mod tensor; // host and device tensors and their DLPack export

pub mod source; // LitData datasets (local or on S3): index, chunk layouts, serializers

pub mod cache; // the cache file: format, build, mmap reader, shared caches

pub mod gather; // copying a batch's values from the cache into batch buffers
pub mod sampler; // which samples each batch of an epoch holds, on each rank

pub mod transform; // image pipelines: specs, geometry, the CPU and the GPU pipeline

pub mod loader; // batches prepared ahead of the consumer on background threads

pub mod demo; // synthetic photographs, and `slipstream demo`
pub mod info; // `slipstream info`: this build and what it finds on the machine

pub mod cli; // the `slipstream` command line

#[cfg(feature = "python")]
mod python; // PyO3 glue: argument conversion, GIL release, error mapping

pub use error::{Error, Result};
