//! Where samples come from: LitData datasets, their chunk layouts and leaf serializers.

pub mod arrow;
pub mod chunk;
pub mod litdata;
pub mod serializer;
pub mod writer;

pub use litdata::{Layout, LitDataset};
