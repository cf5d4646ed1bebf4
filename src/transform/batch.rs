//! Running a loader's pipelines over one batch: every image decoded once, its views written
//! into the batch tensors by rayon threads, failures raised or replaced by other samples.

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;

use super::PipelineSpec;
use super::cpu::{Draw, Job, Lut, Workspace, process_image};
use super::cuda::{DeviceTensor, GpuPipelines, Prepared};
use crate::buffer::BufferPool;
use crate::cache::CacheReader;
use crate::cache::format::FieldKind;
use crate::dlpack::HostTensor;
use crate::error::{Error, Location, Result};
use crate::gather::parallelism_enabled;

/// What to do with an image that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Fail the batch with an error naming the sample.
    Raise,
    /// Use another sample instead (chosen deterministically) and count it.
    Skip,
}

/// Samples tried for one slot of a batch before giving up, under `OnError::Skip`.
pub(super) const MAX_ATTEMPTS: u64 = 16;

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

pub(super) struct Output {
    pub(super) spec: PipelineSpec,
    lut: Lut,
    /// Number of the first view among all views of its field.
    pub(super) first_view: u64,
}

/// Why a sample could not be rendered: the image (may be replaced), or the cache (never).
pub(super) enum Failure {
    Image(String, String),
    Cache(Error),
}

/// The pipelines reading one image field.
pub(super) struct Group {
    pub(super) field: usize,
    pub(super) outputs: Vec<usize>,
}

/// A loader's pipelines, checked against the cache's fields.
pub struct Pipelines {
    pub(super) outputs: Vec<Output>,
    pub(super) groups: Vec<Group>,
    pub(super) on_error: OnError,
    /// Set when the pipelines run on a GPU.
    gpu: Option<GpuPipelines>,
}

/// A batch tensor in host or device memory.
#[derive(Debug, Clone)]
pub enum OutputTensor {
    Host(HostTensor),
    Device(DeviceTensor),
}

/// The outcome of one batch.
pub struct Produced {
    /// The samples actually delivered (differs from the request where one was replaced).
    pub samples: Vec<u64>,
    /// One tensor per pipeline, in the order the pipelines were given.
    pub tensors: Vec<(String, OutputTensor)>,
    pub replaced: u64,
    /// Images decoded by the GPU's hardware engine, nvJPEG's CUDA backend, and the CPU.
    pub routes: [u64; 3],
}

/// Where pipelines run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// A GPU by ordinal, decoding JPEGs with `decoder`; `roi_decode`: the hardware engine
    /// decodes only the part of each image the crops read (the same pixels there as a whole
    /// decode; off for measuring what it saves).
    Cuda {
        ordinal: usize,
        decoder: GpuDecoder,
        roi_decode: bool,
    },
}

/// Who decodes JPEGs for a GPU pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuDecoder {
    /// nvJPEG: the hardware engine where the GPU has one and it takes the image, else the
    /// CUDA backend; the CPU for what nvJPEG cannot decode.
    Auto,
    /// nvJPEG's CUDA backend only (and the CPU fallback).
    Cuda,
    /// libjpeg-turbo on the host threads; the GPU only transforms.
    Cpu,
}

/// Where a loader's GPU batches spent their time, summed over the batches so far: the host
/// (prefetch thread) preparing, waiting for the GPU and submitting work, and the GPU decoding
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

impl Pipelines {
    /// `ring_slots`: pinned batch slots of the GPU path.
    pub fn new(
        reader: &CacheReader,
        specs: Vec<PipelineSpec>,
        on_error: OnError,
        device: Device,
        ring_slots: usize,
    ) -> Result<Pipelines> {
        let mut outputs = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        for spec in specs {
            spec.validate()?;
            let field = reader.field_index(&spec.field).ok_or_else(|| {
                Error::invalid(format!(
                    "pipeline '{}' reads field '{}', which the dataset does not have",
                    spec.name, spec.field
                ))
            })?;
            if reader.fields()[field].kind != FieldKind::Bytes {
                return Err(Error::invalid(format!(
                    "pipeline '{}' reads field '{}', which holds {:?} values, not encoded images",
                    spec.name,
                    spec.field,
                    reader.fields()[field].kind
                )));
            }
            if outputs.iter().any(|o: &Output| o.spec.name == spec.name) {
                return Err(Error::invalid(format!(
                    "two pipelines are named '{}'",
                    spec.name
                )));
            }
            let group = match groups.iter().position(|g| g.field == field) {
                Some(g) => g,
                None => {
                    groups.push(Group {
                        field,
                        outputs: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let first_view = groups[group]
                .outputs
                .iter()
                .map(|&o| outputs[o].spec.views as u64)
                .sum();
            groups[group].outputs.push(outputs.len());
            outputs.push(Output {
                lut: Lut::new(&spec),
                spec,
                first_view,
            });
        }
        let gpu = match device {
            Device::Cuda {
                ordinal,
                decoder,
                roi_decode,
            } if !outputs.is_empty() => {
                Some(GpuPipelines::new(ordinal, ring_slots, decoder, roi_decode)?)
            }
            _ => None,
        };
        Ok(Pipelines {
            outputs,
            groups,
            on_error,
            gpu,
        })
    }

    /// The GPU the pipelines run on, if any.
    pub fn gpu(&self) -> Option<&GpuPipelines> {
        self.gpu.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Fields consumed by pipelines (not loaded raw).
    pub fn source_fields(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.field).collect()
    }

    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.spec.name.clone()).collect()
    }

    /// On a GPU, the host's first stage of a batch ([`GpuPipelines::prepare`]), which the
    /// loader runs for the next batch while [`Self::run`] submits the current one; `None` on
    /// the CPU.
    pub fn prepare<'a>(
        &self,
        reader: &'a CacheReader,
        seed: u64,
        epoch: u64,
        samples: &[u64],
        replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
    ) -> Option<Result<Prepared<'a>>> {
        self.gpu
            .as_ref()
            .map(|gpu| gpu.prepare(self, reader, (seed, epoch), samples, replacement))
    }

    /// Decode and transform `samples` into new batch tensors. `replacement(sample, attempt)`
    /// picks the sample to try instead of a broken one. On a GPU, `prepared` is what
    /// [`Self::prepare`] made of the same samples, if the caller ran it, and `threads` the
    /// pool that decodes what nvJPEG cannot (the CPU pipeline runs on the caller's pool).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        reader: &CacheReader,
        pool: &BufferPool,
        seed: u64,
        epoch: u64,
        samples: &[u64],
        replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
        prepared: Option<Prepared<'_>>,
        threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        if let Some(gpu) = &self.gpu {
            let draw = (seed, epoch);
            let p = match prepared {
                Some(prepared) => {
                    gpu.submit(self, reader, samples, prepared, replacement, threads)?
                }
                None => gpu.run(self, reader, draw, samples, replacement, threads)?,
            };
            return Ok(Produced {
                samples: p.samples,
                tensors: p
                    .tensors
                    .into_iter()
                    .map(|(name, t)| (name, OutputTensor::Device(t)))
                    .collect(),
                replaced: p.replaced,
                routes: p.routes,
            });
        }
        let b = samples.len();
        let mut buffers: Vec<_> = self
            .outputs
            .iter()
            .map(|o| pool.take(b * o.spec.views as usize * o.spec.view_bytes()))
            .collect();
        // One slot per (sample, output), carved from the outputs' buffers.
        let mut slots: Vec<Vec<&mut [u8]>> = (0..b).map(|_| Vec::new()).collect();
        for (buffer, o) in buffers.iter_mut().zip(&self.outputs) {
            let per_sample = o.spec.views as usize * o.spec.view_bytes();
            for (k, slot) in buffer
                .as_mut_slice()
                .chunks_exact_mut(per_sample)
                .enumerate()
            {
                slots[k].push(slot);
            }
        }
        let source = reader.header().source.path.clone();
        let one = |(k, mut slots): (usize, Vec<&mut [u8]>)| -> Result<(u64, bool)> {
            let requested = samples[k];
            let mut failure = None;
            for attempt in 0..MAX_ATTEMPTS {
                let sample = if attempt == 0 {
                    requested
                } else {
                    replacement(requested, attempt)
                };
                match self.render_sample(reader, seed, epoch, sample, &mut slots) {
                    Ok(()) => return Ok((sample, attempt > 0)),
                    Err(Failure::Cache(error)) => return Err(error),
                    Err(Failure::Image(field, message)) => {
                        let error = Error::Decode {
                            location: Location::sample(&source, sample),
                            field,
                            message,
                        };
                        if self.on_error == OnError::Raise {
                            return Err(error);
                        }
                        failure.get_or_insert(error);
                    }
                }
            }
            Err(failure.expect("at least one attempt failed"))
        };
        let outcomes: Vec<Result<(u64, bool)>> = if parallelism_enabled() {
            slots.into_par_iter().enumerate().map(one).collect()
        } else {
            slots.into_iter().enumerate().map(one).collect()
        };
        // The first failure in batch order, whichever thread met it first.
        let outcomes: Vec<(u64, bool)> = outcomes.into_iter().collect::<Result<_>>()?;
        let tensors = buffers
            .into_iter()
            .zip(&self.outputs)
            .map(|(buffer, o)| {
                let (shape, strides) = o.spec.tensor_layout(b);
                let tensor =
                    HostTensor::new(Arc::new(buffer), o.spec.dtype, shape).with_strides(strides);
                (o.spec.name.clone(), OutputTensor::Host(tensor))
            })
            .collect();
        Ok(Produced {
            routes: [0, 0, b as u64],
            replaced: outcomes.iter().filter(|(_, r)| *r).count() as u64,
            samples: outcomes.into_iter().map(|(s, _)| s).collect(),
            tensors,
        })
    }

    /// Every output of one sample into its slots.
    fn render_sample(
        &self,
        reader: &CacheReader,
        seed: u64,
        epoch: u64,
        sample: u64,
        slots: &mut [&mut [u8]],
    ) -> std::result::Result<(), Failure> {
        let draw = Draw {
            seed,
            epoch,
            sample,
        };
        // Slots are in output order; hand each group its own.
        let mut by_output: Vec<Option<&mut [u8]>> =
            slots.iter_mut().map(|s| Some(&mut **s)).collect();
        for group in &self.groups {
            let name = &reader.fields()[group.field].name;
            let bytes = reader
                .value_bytes(group.field, sample)
                .map_err(Failure::Cache)?;
            let mut jobs: Vec<Job> = group
                .outputs
                .iter()
                .map(|&o| Job {
                    spec: &self.outputs[o].spec,
                    lut: &self.outputs[o].lut,
                    first_view: self.outputs[o].first_view,
                    out: by_output[o]
                        .take()
                        .expect("each output belongs to one group"),
                })
                .collect();
            WORKSPACE
                .with(|ws| process_image(&mut ws.borrow_mut(), bytes, draw, &mut jobs))
                .map_err(|message| Failure::Image(name.clone(), message))?;
        }
        Ok(())
    }
}
