//! Where samples come from: LitData datasets (local, or on S3 with the `s3` feature), their
//! chunk layouts and leaf serializers, and a writer of LitData datasets for tests and the demo.

pub mod arrow;
pub mod chunk;
mod files;
pub mod items;
pub mod litdata;
#[cfg(feature = "s3")]
pub mod s3;
pub mod serializer;
pub mod writer;

pub use litdata::{Layout, LitDataset};
