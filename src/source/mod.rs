//! Where samples come from: datasets in each format slipstream reads (LitData, local or on S3
//! with the `s3` feature; ImageFolder trees; WebDataset tar shards; Hugging Face Parquet shards; FFCV .beton files), each a [`dataset::Source`] the cache is built
//! from; LitData's chunk layouts and leaf serializers, and a writer of LitData datasets for
//! tests and the demo.

pub mod arrow;
pub mod beton;
pub mod chunk;
pub mod dataset;
mod files;
pub mod formats;
pub mod image_folder;
pub mod items;
pub mod litdata;
pub mod parquet;
#[cfg(feature = "s3")]
pub mod s3;
pub mod serializer;
mod tar;
pub mod webdataset;
pub mod writer;

pub use files::Fingerprint;
pub use formats::{Format, open_local};
pub use litdata::{Layout, LitDataset};
