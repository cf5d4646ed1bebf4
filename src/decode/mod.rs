//! Image decoding: reading an encoded image's size from its header (recorded in the cache so
//! batches report heights and widths without decoding), and decoding to RGB on the CPU, or on
//! the GPU with nvJPEG (`cuda` feature). Both decoders take the same [`DecodePlan`]. Also the
//! decode-free images of [`yuv420`], and [`encode`], which makes them and re-encoded JPEGs for
//! the cache's encodings.

pub mod cpu;
pub mod encode;
mod image;
mod libjpeg_warnings;
#[cfg(feature = "cuda")]
pub mod nvjpeg;
mod plan;
mod probe;
mod whole;
pub mod yuv420;

pub use image::Image;
pub use plan::{DecodePlan, Decoded, ImagePolicy, Rect};
pub use probe::{ImageFormat, image_size, probe};
