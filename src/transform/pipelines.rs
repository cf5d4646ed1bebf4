//! A loader's pipelines: the checked outputs, and the device that runs them.

use super::cpu::CpuPipeline;
use super::gpu::{GpuPipeline, Prepared};
use super::gpu_api::GpuStages;
use super::output::{Outputs, Produced, Replacement};
use super::spec::{Device, OnError, PipelineSpec};
use crate::buffer::BufferPool;
use crate::cache::CacheReader;
use crate::decode::ImagePolicy;
use crate::error::Result;

pub struct Pipelines {
    outputs: Outputs,
    runner: Runner,
}

enum Runner {
    Cpu(CpuPipeline),
    Gpu(Box<GpuPipeline>),
}

impl Pipelines {
    /// `ring_slots`: pinned batch slots of the GPU path.
    pub fn new(
        reader: &CacheReader,
        specs: Vec<PipelineSpec>,
        on_error: OnError,
        policy: ImagePolicy,
        device: Device,
        ring_slots: usize,
    ) -> Result<Pipelines> {
        let outputs = Outputs::new(reader, specs, on_error, policy)?;
        let runner = match device {
            Device::Cuda {
                ordinal,
                decoder,
                roi_decode,
            } if !outputs.is_empty() => {
                let gpu = GpuPipeline::open(ordinal, ring_slots, decoder, roi_decode)?;
                Runner::Gpu(Box::new(gpu))
            }
            _ => Runner::Cpu(CpuPipeline::new(&outputs)),
        };
        Ok(Pipelines { outputs, runner })
    }

    /// The GPU the pipelines run on, if any.
    pub fn gpu(&self) -> Option<&GpuPipeline> {
        match &self.runner {
            Runner::Gpu(gpu) => Some(gpu),
            Runner::Cpu(_) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Fields consumed by pipelines (not loaded raw).
    pub fn source_fields(&self) -> Vec<usize> {
        self.outputs.source_fields()
    }

    pub fn output_names(&self) -> Vec<String> {
        self.outputs.names()
    }

    /// On a GPU, the host's first stage of a batch ([`GpuStages::prepare`]), which the loader
    /// runs for the next batch while [`Self::run`] submits the current one; `None` on the
    /// CPU.
    pub fn prepare<'a>(
        &self,
        reader: &'a CacheReader,
        seed: u64,
        epoch: u64,
        samples: &[u64],
        replacement: &Replacement,
    ) -> Option<Result<Prepared<'a>>> {
        self.gpu()
            .map(|gpu| gpu.prepare(&self.outputs, reader, (seed, epoch), samples, replacement))
    }

    /// Decode and transform `samples` into new batch tensors. `replacement` picks the samples
    /// tried instead of broken ones. On a GPU, `prepared` is what [`Self::prepare`] made of
    /// the same samples, if the caller ran it, and `threads` the pool that decodes what nvJPEG
    /// cannot (the CPU pipeline runs on the caller's pool).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        reader: &CacheReader,
        pool: &BufferPool,
        seed: u64,
        epoch: u64,
        samples: &[u64],
        replacement: &Replacement,
        prepared: Option<Prepared<'_>>,
        threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        let outputs = &self.outputs;
        match &self.runner {
            Runner::Cpu(cpu) => cpu.run(outputs, reader, pool, (seed, epoch), samples, replacement),
            Runner::Gpu(gpu) => {
                let prepared = match prepared {
                    Some(prepared) => prepared,
                    None => gpu.prepare(outputs, reader, (seed, epoch), samples, replacement)?,
                };
                gpu.submit(outputs, reader, samples, prepared, replacement, threads)
            }
        }
    }
}
