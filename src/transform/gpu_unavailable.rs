//! Stand-in for the GPU pipeline ([`super::gpu_api::GpuStages`]) in builds without the
//! `cuda` feature: opening it says how to get the GPU path; no value of it can exist.

use super::gpu_api::{GpuStages, GpuTimings};
use super::output::{Outputs, Produced, Replacement};
use super::spec::GpuDecoder;
use crate::cache::CacheReader;
use crate::error::{Error, Result};
use crate::tensor::{DeviceTensor, HostTensor};

pub enum GpuPipeline {}

pub struct Prepared<'a>(std::marker::PhantomData<&'a CacheReader>);

impl GpuStages for GpuPipeline {
    type Prepared<'a> = Prepared<'a>;

    fn open(_ordinal: usize, _slots: usize, _decoder: GpuDecoder, _roi: bool) -> Result<Self> {
        Err(Error::Cuda(
            "this build of slipstream has no GPU support (it was built without the `cuda` \
             feature); install a wheel built with it, or use device=\"cpu\""
                .into(),
        ))
    }

    fn prepare<'a>(
        &self,
        _outputs: &Outputs,
        _reader: &'a CacheReader,
        _draw: (u64, u64),
        _samples: &[u64],
        _replacement: &Replacement,
    ) -> Result<Prepared<'a>> {
        match *self {}
    }

    fn submit(
        &self,
        _outputs: &Outputs,
        _reader: &CacheReader,
        _samples: &[u64],
        _prepared: Prepared<'_>,
        _replacement: &Replacement,
        _threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        match *self {}
    }

    fn upload(&self, _tensors: &[&HostTensor]) -> Result<Vec<DeviceTensor>> {
        match *self {}
    }

    fn describe(&self) -> String {
        match *self {}
    }

    fn memory_bytes(&self) -> u64 {
        match *self {}
    }

    fn timings(&self) -> GpuTimings {
        match *self {}
    }
}
