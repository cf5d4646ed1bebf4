//! Stand-in for `cuda.rs` in builds without the `cuda` feature: the same names, so the rest of
//! the crate has no `cfg`s, and an error that says how to get the GPU path.

use super::batch::{GpuDecoder, GpuTimings, Pipelines};
use crate::cache::CacheReader;
use crate::error::{Error, Result};

/// A GPU tensor; none is ever made in this build.
#[derive(Debug, Clone)]
pub struct DeviceTensor {
    _none: (),
}

impl DeviceTensor {
    pub fn nbytes(&self) -> usize {
        unreachable!("no DeviceTensor exists without the cuda feature")
    }

    pub fn shape(&self) -> &[i64] {
        unreachable!("no DeviceTensor exists without the cuda feature")
    }

    pub fn to_host(&self) -> Result<Vec<u8>> {
        unreachable!("no DeviceTensor exists without the cuda feature")
    }
}

enum Never {}

pub struct GpuPipelines {
    never: Never,
}

pub struct Prepared<'a> {
    never: Never,
    _reader: std::marker::PhantomData<&'a CacheReader>,
}

pub struct Produced {
    pub samples: Vec<u64>,
    pub tensors: Vec<(String, DeviceTensor)>,
    pub replaced: u64,
    pub routes: [u64; 3],
}

impl GpuPipelines {
    pub fn new(
        _ordinal: usize,
        _slots: usize,
        _decoder: GpuDecoder,
        _roi_decode: bool,
    ) -> Result<GpuPipelines> {
        Err(Error::Cuda(
            "this build of slipstream has no GPU support (it was built without the `cuda` \
             feature); install a wheel built with it, or use device=\"cpu\""
                .into(),
        ))
    }

    pub fn describe(&self) -> String {
        match self.never {}
    }

    pub fn memory_bytes(&self) -> u64 {
        match self.never {}
    }

    pub fn timings(&self) -> GpuTimings {
        match self.never {}
    }

    pub fn prepare<'a>(
        &self,
        _pipelines: &Pipelines,
        _reader: &'a CacheReader,
        _draw: (u64, u64),
        _samples: &[u64],
        _replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
    ) -> Result<Prepared<'a>> {
        match self.never {}
    }

    pub fn submit(
        &self,
        _pipelines: &Pipelines,
        _reader: &CacheReader,
        _samples: &[u64],
        prepared: Prepared<'_>,
        _replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
        _threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        match prepared.never {}
    }

    pub fn run(
        &self,
        _pipelines: &Pipelines,
        _reader: &CacheReader,
        _draw: (u64, u64),
        _samples: &[u64],
        _replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
        _threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        match self.never {}
    }
}
