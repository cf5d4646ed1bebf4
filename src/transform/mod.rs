//! Image pipelines: each turns one image field into a tensor `[B, 3, H, W]` (`[B, V, 3, H, W]`
//! with several views): a geometry stage (torchvision's RandomResizedCrop, or Resize +
//! CenterCrop), an optional horizontal flip, photometric operations (colour jitter, grayscale,
//! blur, solarize) and erasing, then conversion to the output dtype with an
//! optional normalization, in NCHW or channels-last order.
//!
//! Device-neutral parts first, then the two pipelines, which use them and never each other:
//! [`spec`] (what users ask for) → [`params`] (random parameters) → [`geometry`] (where each
//! view reads) and [`photometric`] (colour operations on a view's pixels) → [`resample`] and
//! [`program`] (the kernels' per-pixel math, in Rust) and [`output`] (outputs, results, the
//! `on_error` retry) → [`gpu_api`] (what a GPU pipeline offers the loader) → [`cpu`] and
//! [`gpu`] → [`pipelines`] (the loader's choice between them).

pub mod cpu;
pub mod geometry;
#[cfg(feature = "cuda")]
pub mod gpu;
#[cfg(not(feature = "cuda"))]
#[path = "gpu_unavailable.rs"]
pub mod gpu;
pub mod gpu_api;
pub mod output;
pub mod params;
pub mod photometric;
pub mod pipelines;
pub mod program;
pub mod resample;
pub mod spec;
#[cfg(test)]
mod twin_tests;

pub use gpu_api::GpuTimings;
pub use pipelines::Pipelines;
pub use spec::{
    Device, Geometry, GpuDecoder, IMAGENET_MEAN, IMAGENET_STD, MemoryFormat, OnError, PipelineSpec,
};
