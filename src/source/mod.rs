//! Where samples come from: LitData datasets, their chunk layouts and leaf serializers.

pub mod arrow;
pub mod chunk;
pub mod litdata;
#[cfg(feature = "s3")]
pub mod s3;
pub mod serializer;
pub mod writer;

pub use litdata::{Layout, LitDataset};
