//! Image decoding: reading an encoded image's size from its header (recorded in the cache so
//! batches report heights and widths without decoding), and decoding to RGB on the CPU, or on the GPU with nvJPEG (`cuda` feature).

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod nvjpeg;
mod probe;

pub use probe::{ImageFormat, probe};
