//! Tensors handed to consumers, in host or GPU memory, and their export through DLPack.
//!
//! A tensor holds a reference to its memory (a pooled [`crate::buffer::Buffer`], or device
//! memory from the loader's pool); exporting it hands the consumer another reference, so the
//! memory stays valid until the consumer's deleter runs, whatever happens to the batch it came
//! from.

#[cfg(feature = "cuda")]
mod device;
#[cfg(not(feature = "cuda"))]
#[path = "device_unavailable.rs"]
mod device;
#[cfg(feature = "python")]
pub mod dlpack;
mod either;
mod host;

pub use device::DeviceTensor;
pub use either::Tensor;
pub use host::HostTensor;
