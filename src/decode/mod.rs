//! Image decoding. For now: reading an encoded image's size from its header, which the cache
//! records per sample so batches can report heights and widths without decoding.

mod probe;

pub use probe::{ImageFormat, probe};
