//! What the loader asks of a GPU pipeline. The CUDA pipeline ([`super::gpu`]) and, in builds
//! without the `cuda` feature, its stand-in implement this one trait, so the compiler keeps
//! the two in step and the rest of the crate has no `cfg`s.

use super::output::{Outputs, Produced, Replacement};
use super::spec::GpuDecoder;
use crate::cache::CacheReader;
use crate::error::Result;
use crate::tensor::{DeviceTensor, HostTensor};

/// A batch passes two host stages, which the loader runs on two threads for consecutive
/// batches: [`GpuStages::prepare`] (headers, gathering into pinned memory, choosing decoders)
/// and [`GpuStages::submit`] (decoding, kernels), both queued on the loader's stream.
pub trait GpuStages: Sized {
    /// A batch between the two stages.
    type Prepared<'a>: Send;

    /// Open GPU `ordinal` for a loader with `slots` pinned ring slots. `roi_decode`: let the
    /// hardware engine decode only the part of each image the crops read.
    fn open(ordinal: usize, slots: usize, decoder: GpuDecoder, roi_decode: bool) -> Result<Self>;

    /// The first stage of a batch of `samples`, with the random draws of `(seed, epoch)`.
    fn prepare<'a>(
        &self,
        outputs: &Outputs,
        reader: &'a CacheReader,
        draw: (u64, u64),
        samples: &[u64],
        replacement: &Replacement,
    ) -> Result<Self::Prepared<'a>>;

    /// The second stage: the batch's tensors, written on the GPU. `threads` decode what
    /// nvJPEG cannot. Batches are submitted in the order they were prepared.
    fn submit(
        &self,
        outputs: &Outputs,
        reader: &CacheReader,
        samples: &[u64],
        prepared: Self::Prepared<'_>,
        replacement: &Replacement,
        threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced>;

    /// `tensors` (a batch's index and numeric fields, C-contiguous) copied to the GPU through
    /// pinned memory, queued on the loader's stream after the batch submitted last.
    fn upload(&self, tensors: &[&HostTensor]) -> Result<Vec<DeviceTensor>>;

    /// A line for users: which GPU and which decode paths.
    fn describe(&self) -> String;

    /// Device memory the loader holds.
    fn memory_bytes(&self) -> u64;

    fn timings(&self) -> GpuTimings;
}

/// Where a loader's GPU batches spent their time, summed over the batches so far: the host
/// (prefetch threads) preparing, waiting for the GPU and submitting work, and the GPU decoding
/// and transforming (device time, counted once the batch has completed).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuTimings {
    pub batches: u64,
    /// Headers, gathering into the pinned slot, choosing each image's decoder.
    pub host_prepare_s: f64,
    /// Waiting for a ring slot or for the previous batch's GPU work.
    pub host_wait_s: f64,
    /// nvJPEG calls, CPU fallback decoding, parameter upload and kernel launches.
    pub host_submit_s: f64,
    /// Batches whose device time is counted below.
    pub gpu_batches: u64,
    /// From the first nvJPEG call to the end of decoding, on the loader's stream.
    pub gpu_decode_s: f64,
    /// From the end of decoding to the batch tensors being ready (uploads and kernels).
    pub gpu_transform_s: f64,
}
