//! The GPU pipeline: a batch's compressed images gathered into a pinned ring slot, decoded by
//! nvJPEG (hardware engine, else CUDA, else the CPU decoder), then one launch per output of
//! `kernels/resample.cu` writes the final tensor. Geometry and random parameters come from the
//! device-neutral modules the CPU pipeline uses, so the crops are identical.
//!
//! A batch passes the two host stages of [`GpuStages`], which the loader runs on two threads
//! for consecutive batches: [`prepare`] (headers, gathering into the slot, choosing decoders),
//! then `submit`: [`decode`] (nvJPEG), [`fallback`] (the CPU decoder for what nvJPEG cannot
//! take), [`launch`] (parameters and kernels), all queued on the loader's stream. [`ring`]
//! holds the pinned slots and [`timings`] the events that time each batch. The host waits for
//! the GPU only before reusing a ring slot and, in `submit`, for the previous batch before
//! calling nvJPEG again. Each output tensor carries the event that marks it ready, for the
//! DLPack stream protocol. [`upload`] then copies the batch's index and numeric fields to the
//! GPU behind the kernels.

mod decode;
mod fallback;
mod launch;
mod prepare;
mod ring;
mod timings;
mod upload;

pub use prepare::Prepared;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use decode::{Nvjpeg, placement, slot_routes};
use fallback::{decode_on_host, image_sources};
use launch::{Kernels, upload_params, view_params};
use prepare::Preparer;
use ring::Ring;
use timings::{BatchEvents, Timings, timing_event};
use upload::Uploads;

use super::gpu_api::{GpuStages, GpuTimings};
use super::output::{Outputs, Produced, Replacement, Retry};
use super::spec::GpuDecoder;
use crate::cache::CacheReader;
use crate::cuda::Gpu;
use crate::decode::nvjpeg::{self, BatchDecoder, Route};
use crate::error::Result;
use crate::tensor::{DeviceTensor, HostTensor};

/// GPU state of one loader.
pub struct GpuPipeline {
    gpu: Arc<Gpu>,
    /// What `prepare` uses.
    preparer: Preparer,
    /// What `submit` uses, one batch at a time.
    state: Mutex<State>,
    uploads: Uploads,
}

struct State {
    nvjpeg: Nvjpeg,
    kernels: Kernels,
    timings: Timings,
}

impl GpuStages for GpuPipeline {
    type Prepared<'a> = Prepared<'a>;

    fn open(ordinal: usize, slots: usize, decoder: GpuDecoder, roi_decode: bool) -> Result<Self> {
        let gpu = Gpu::open(ordinal)?;
        let kernels = Kernels::load(&gpu)?;
        let (planner, decoder) = match decoder {
            GpuDecoder::Cpu => (None, None),
            GpuDecoder::Auto | GpuDecoder::Cuda => {
                let (planner, decoder) = nvjpeg::open(decoder == GpuDecoder::Auto)?;
                (Some(Mutex::new(planner)), Some(decoder))
            }
        };
        Ok(GpuPipeline {
            preparer: Preparer {
                gpu: Arc::clone(&gpu),
                ring: Ring::new(&gpu, slots)?,
                planner,
            },
            state: Mutex::new(State {
                nvjpeg: Nvjpeg {
                    decoder,
                    decoded: None,
                    roi_decode,
                },
                kernels,
                timings: Timings::default(),
            }),
            uploads: Uploads::new(slots),
            gpu,
        })
    }

    fn prepare<'a>(
        &self,
        outputs: &Outputs,
        reader: &'a CacheReader,
        draw: (u64, u64),
        samples: &[u64],
        replacement: &Replacement,
    ) -> Result<Prepared<'a>> {
        self.preparer
            .prepare(outputs, reader, draw, samples, replacement)
    }

    fn submit(
        &self,
        outputs: &Outputs,
        reader: &CacheReader,
        samples: &[u64],
        mut prepared: Prepared<'_>,
        replacement: &Replacement,
        threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let source = reader.header().source.path.clone();
        let retry = Retry {
            on_error: outputs.on_error,
            source: &source,
            replacement,
        };
        let batch = Batch {
            outputs,
            reader,
            samples,
            retry: &retry,
            threads,
        };
        let produced = self.queue(&mut state, &batch, &mut prepared);
        if produced.is_err() {
            // Work queued before the failure may still read the slot, which goes back to the
            // ring when `prepared` drops.
            let _ = self.gpu.stream().synchronize();
        }
        produced
    }

    fn upload(&self, tensors: &[&HostTensor]) -> Result<Vec<DeviceTensor>> {
        self.uploads.upload(&self.gpu, tensors)
    }

    fn describe(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let nvjpeg = &state.nvjpeg;
        let decode = match nvjpeg.decoder.as_ref().map(BatchDecoder::hardware_engines) {
            None => "JPEG decode on the CPU".to_string(),
            Some((0, _)) => "nvJPEG CUDA backend".to_string(),
            Some((engines, cores)) => {
                let roi = if nvjpeg.roi_decode {
                    ", crop regions"
                } else {
                    ""
                };
                format!("nvJPEG hardware engine ({engines} x {cores} cores{roi}) + CUDA backend")
            }
        };
        format!(
            "cuda:{} {} ({decode}; kernels: {})",
            self.gpu.ordinal(),
            self.gpu.name(),
            state.kernels.image
        )
    }

    /// The ring of decoded images plus the batch-tensor pool.
    fn memory_bytes(&self) -> u64 {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let decoded = state.nvjpeg.decoded.as_ref().map_or(0, |d| d.len() as u64);
        decoded + self.gpu.pool_bytes()
    }

    fn timings(&self) -> GpuTimings {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .timings
            .totals
    }
}

/// What `submit` was given for one batch.
struct Batch<'a> {
    outputs: &'a Outputs,
    reader: &'a CacheReader,
    /// The requested samples.
    samples: &'a [u64],
    retry: &'a Retry<'a>,
    threads: Option<&'a rayon::ThreadPool>,
}

impl GpuPipeline {
    /// The GPU, its stream and memory pool.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// The host's second stage of a batch: decode (nvJPEG, or the CPU for what nvJPEG cannot
    /// take), upload the crop parameters and launch the kernels, all queued on the loader's
    /// stream.
    fn queue(
        &self,
        state: &mut State,
        batch: &Batch,
        prepared: &mut Prepared<'_>,
    ) -> Result<Produced> {
        let started = Instant::now();
        self.gpu.bind()?;
        let outputs = batch.outputs;
        let per_sample = outputs.groups.len();

        // nvJPEG's share, into the decoded-image buffer.
        let mut routes = slot_routes(prepared, per_sample);
        let (at, needed) = placement(prepared, &routes, per_sample);
        let base = state.nvjpeg.buffer(&self.gpu, needed)?;
        // The host prepared this batch while the GPU worked on the previous one.
        let waited = state.timings.wait_for_previous()?;
        let start = timing_event(&self.gpu)?;
        let stream = self.gpu.stream();
        state
            .nvjpeg
            .decode(stream, prepared, &mut routes, per_sample, base, &at);
        let decoded = timing_event(&self.gpu)?;

        // The CPU's share, then every view's parameters and the kernels.
        let (chosen, host) = decode_on_host(
            batch.retry,
            batch.reader,
            outputs,
            batch.samples,
            prepared,
            &routes,
            batch.threads,
        )?;
        let (sources, _uploaded) = image_sources(&self.gpu, prepared, &host, base, &at)?;
        let plan = view_params(outputs, prepared.draw, &chosen, &sources);
        let on_device = upload_params(&self.gpu, &mut prepared.slot, &plan)?;
        let kernels = &state.kernels;
        let (tensors, ready) =
            kernels.launch(&self.gpu, outputs, chosen.len(), &on_device, &plan.starts)?;
        prepared.slot.done = Some(Arc::clone(&ready));
        let events = BatchEvents {
            start,
            decoded,
            ready,
        };
        let submit = started.elapsed().saturating_sub(waited);
        state
            .timings
            .submitted(events, prepared.busy, prepared.waited + waited, submit);
        // Per-batch buffers (`on_device`, `_uploaded`) are freed in stream order, after the
        // kernels, when they drop at the end of this function.

        let mut counts = [0u64; 3];
        for route in &routes {
            counts[match route {
                Route::Hardware => 0,
                Route::Cuda => 1,
                Route::Cpu => 2,
            }] += per_sample as u64;
        }
        Ok(Produced {
            replaced: chosen.iter().filter(|(_, r)| *r).count() as u64,
            samples: chosen.iter().map(|(s, _)| *s).collect(),
            tensors,
            routes: counts,
        })
    }
}
