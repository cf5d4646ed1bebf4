//! Image decoding: reading an encoded image's size from its header (recorded in the cache so
//! batches report heights and widths without decoding), and decoding to RGB on the CPU.

pub mod cpu;
mod probe;

pub use probe::{ImageFormat, probe};
