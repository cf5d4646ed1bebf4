//! The GPU pipeline: a batch's compressed images gathered into a pinned ring slot, decoded by
//! nvJPEG (hardware engine, else CUDA, else the CPU decoder), then one launch per output of
//! `kernels/resample.cu` writes the final tensor. Geometry and random parameters come from the
//! same functions as the CPU pipeline's, so the crops are identical.
//!
//! A batch passes two host stages, which the loader runs on two threads for consecutive
//! batches: `prepare` (headers, gathering into the slot, choosing decoders) and `submit`
//! (nvJPEG, CPU fallback, kernels), all queued on the loader's stream. The host waits for the
//! GPU only before reusing a ring slot and, in `submit`, for the previous batch before calling
//! nvJPEG again. Each output tensor carries the event that marks it ready, for the DLPack
//! stream protocol.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::{CudaEvent, CudaFunction, DeviceRepr, LaunchConfig, PushKernelArg};
use cudarc::driver::{result, sys};
use cudarc::nvrtc::Ptx;
use rayon::prelude::*;

use super::batch::{Failure, GpuDecoder, GpuTimings, Group, MAX_ATTEMPTS, OnError, Pipelines};
use super::cpu::{Draw, Target, ViewGeometry, read_region, view_geometry};
use super::resample::{Convert, ViewParams, source_region};
use crate::cache::CacheReader;
use crate::cuda::{DeviceMemory, Gpu, PinnedMemory, cuda_error};
use crate::decode::cpu::{CpuDecoder, DecodePlan, Decoded, Rect, image_size};
use crate::decode::nvjpeg::{self, BatchDecoder, Planner, Roi, Route, rgb_destination, roi_for};
use crate::dtype::DType;
use crate::error::{Error, Location, Result};
use crate::gather::in_pool;
use crate::transform::MemoryFormat;
use crate::transform::params::flip_for;

#[cfg(slipstream_kernels)]
const RESAMPLE_FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/resample.fatbin"));
#[cfg(not(slipstream_kernels))]
const RESAMPLE_FATBIN: &[u8] = &[];

// SAFETY: `Convert` is `repr(C)` plain f32 data matching `struct Convert` in the kernel.
unsafe impl DeviceRepr for Convert {}

/// A batch tensor on the GPU.
#[derive(Clone)]
pub struct DeviceTensor {
    pub memory: Arc<DeviceMemory>,
    /// Recorded on the loader's stream after the kernel that writes the tensor.
    pub ready: Arc<CudaEvent>,
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub strides: Vec<i64>,
}

impl DeviceTensor {
    pub fn nbytes(&self) -> usize {
        self.shape.iter().product::<i64>() as usize * self.dtype.size()
    }

    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The tensor's bytes, copied to the host once it is ready (for tests, the demo's
    /// picture, debugging: not the training path).
    pub fn to_host(&self) -> Result<Vec<u8>> {
        let gpu = self.memory.gpu();
        gpu.bind()?;
        let stream = gpu.stream();
        stream
            .wait(&self.ready)
            .map_err(cuda_error("waiting for a batch"))?;
        let mut out = vec![0u8; self.nbytes()];
        // SAFETY: the allocation holds the tensor's `nbytes` (allocated for this layout); the
        // copy is ordered after the kernel that writes it and waited for before returning.
        unsafe { result::memcpy_dtoh_async(&mut out, self.memory.ptr(), stream.cu_stream()) }
            .map_err(cuda_error("copying a batch to the host"))?;
        stream
            .synchronize()
            .map_err(cuda_error("copying a batch to the host"))?;
        Ok(out)
    }
}

impl std::fmt::Debug for DeviceTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceTensor(cuda:{}, {:?}, {})",
            self.memory.gpu().ordinal(),
            self.shape,
            self.dtype.name()
        )
    }
}

/// What a GPU batch produced.
pub struct Produced {
    pub samples: Vec<u64>,
    pub tensors: Vec<(String, DeviceTensor)>,
    pub replaced: u64,
    /// Images decoded by the hardware engine, nvJPEG's CUDA backend, and the CPU.
    pub routes: [u64; 3],
}

/// The events that time one batch on the GPU.
struct BatchEvents {
    start: CudaEvent,
    decoded: CudaEvent,
    ready: Arc<CudaEvent>,
}

/// GPU state of one loader. A batch goes through two stages, [`GpuPipelines::prepare`] and
/// [`GpuPipelines::submit`], which may run on two threads at once for consecutive batches.
pub struct GpuPipelines {
    gpu: Arc<Gpu>,
    /// Ring slots free for the next batch, oldest first: a slot travels with its batch from
    /// `prepare` to `submit` and comes back here, so no two batches share one.
    free_slots: Mutex<Receiver<Slot>>,
    slot_return: Sender<Slot>,
    /// `None` when JPEGs are decoded on the CPU.
    planner: Option<Mutex<Planner>>,
    inner: Mutex<Inner>,
}

/// A batch ready for the GPU: samples resolved, compressed bytes in a pinned slot, each
/// image's route chosen.
pub struct Prepared<'a> {
    /// The loader's seed and epoch.
    draw: (u64, u64),
    resolved: Vec<Resolved<'a>>,
    /// Where each image's bytes start in the slot (one more entry than images).
    offsets: Vec<usize>,
    plan: Vec<(Route, Option<(u32, u32)>)>,
    /// The part of each image its views read (full-resolution pixels; `None`: all of it).
    regions: Vec<Option<Rect>>,
    slot: SlotLease,
    /// Host time spent preparing, and waiting for the slot.
    busy: Duration,
    waited: Duration,
}

/// A ring slot taken for one batch. It goes back to the ring when dropped, whatever becomes
/// of the batch (submitted, failed, or dropped by a stopped loader).
struct SlotLease {
    slot: Option<Slot>,
    ring: Sender<Slot>,
}

impl std::ops::Deref for SlotLease {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        self.slot.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for SlotLease {
    fn deref_mut(&mut self) -> &mut Slot {
        self.slot.as_mut().expect("held until dropped")
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let _ = self.ring.send(slot);
        }
    }
}

struct Slot {
    /// The batch's compressed images, back to back.
    bytes: PinnedMemory,
    /// The batch's `ViewParams`.
    params: PinnedMemory,
    /// Marks the end of the GPU work that reads this slot.
    done: Option<Arc<CudaEvent>>,
}

struct Inner {
    /// `None` when JPEGs are decoded on the CPU.
    decoder: Option<BatchDecoder>,
    /// Indexed by `kernel_index`.
    kernels: Vec<CudaFunction>,
    /// Decoded images of the batch in flight; grown when a batch needs more, else reused.
    decoded: Option<DeviceMemory>,
    /// The previous batch's events.
    previous: Option<BatchEvents>,
    /// Whether the hardware engine decodes only the regions the crops read; turned off if
    /// it declines a region that it decodes whole.
    roi_decode: bool,
    timings: GpuTimings,
}

fn kernel_index(dtype: DType) -> usize {
    match dtype {
        DType::Uint8 => 0,
        DType::Float16 => 1,
        DType::Bfloat16 => 2,
        _ => 3,
    }
}

const KERNELS: [&str; 4] = [
    "resample_uint8",
    "resample_float16",
    "resample_bfloat16",
    "resample_float32",
];

/// One image of a batch: a sample's value of one image field.
struct Image<'a> {
    bytes: &'a [u8],
    width: u32,
    height: u32,
}

/// A batch slot after choosing which sample fills it.
struct Resolved<'a> {
    sample: u64,
    /// Which candidate it is: 0 the requested sample, else the replacement of that number
    /// (the CPU pipeline's sequence).
    attempt: u64,
    /// One per image field (pipeline group).
    images: Vec<Image<'a>>,
}

/// Pixels decoded on the host for a slot nvJPEG could not take.
struct HostDecoded {
    /// Per image field: RGB pixels, width, height.
    images: Vec<(Vec<u8>, u32, u32)>,
}

const fn align(x: usize) -> usize {
    x.div_ceil(256) * 256
}

impl GpuPipelines {
    /// Open GPU `ordinal` for a loader with `slots` ring slots. `roi_decode`: let the
    /// hardware engine decode only the part of each image the crops read.
    pub fn new(
        ordinal: usize,
        slots: usize,
        decoder: GpuDecoder,
        roi_decode: bool,
    ) -> Result<GpuPipelines> {
        let gpu = Gpu::open(ordinal)?;
        if RESAMPLE_FATBIN.is_empty() {
            return Err(Error::Cuda(
                "this build of slipstream has no GPU kernels (nvcc was not found when it was \
                 built); rebuild with nvcc available, or use device=\"cpu\""
                    .into(),
            ));
        }
        gpu.bind()?;
        let module = gpu
            .context()
            .load_module(Ptx::from_binary(RESAMPLE_FATBIN.to_vec()))
            .map_err(cuda_error(
                "loading the kernels (is the driver older than CUDA 13.0?)",
            ))?;
        let kernels = KERNELS
            .iter()
            .map(|name| {
                module
                    .load_function(name)
                    .map_err(cuda_error(&format!("loading kernel {name}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let (planner, decoder) = match decoder {
            GpuDecoder::Cpu => (None, None),
            GpuDecoder::Auto | GpuDecoder::Cuda => {
                let (planner, decoder) = nvjpeg::open(decoder == GpuDecoder::Auto)?;
                (Some(Mutex::new(planner)), Some(decoder))
            }
        };
        // One batch being submitted, one handed over, one being prepared: three slots keep
        // `prepare` from ever waiting for a slot that only a later `submit` would free.
        let (slot_return, free_slots) = channel();
        for _ in 0..slots.max(3) {
            slot_return
                .send(Slot {
                    bytes: gpu.pinned(1 << 20)?,
                    params: gpu.pinned(64 << 10)?,
                    done: None,
                })
                .expect("the receiver is here");
        }
        Ok(GpuPipelines {
            free_slots: Mutex::new(free_slots),
            slot_return,
            planner,
            inner: Mutex::new(Inner {
                decoder,
                kernels,
                decoded: None,
                previous: None,
                roi_decode,
                timings: GpuTimings::default(),
            }),
            gpu,
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// A line for users: which GPU and which decode paths.
    pub fn describe(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let decode = match inner.decoder.as_ref().map(BatchDecoder::hardware_engines) {
            None => "JPEG decode on the CPU".to_string(),
            Some((0, _)) => "nvJPEG CUDA backend".to_string(),
            Some((engines, cores)) => {
                let roi = if inner.roi_decode {
                    ", crop regions"
                } else {
                    ""
                };
                format!("nvJPEG hardware engine ({engines} x {cores} cores{roi}) + CUDA backend")
            }
        };
        format!("cuda:{} {} ({decode})", self.gpu.ordinal(), self.gpu.name())
    }

    /// Device memory this loader holds: ring of decoded images plus the batch-tensor pool.
    pub fn memory_bytes(&self) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.decoded.as_ref().map_or(0, |d| d.len() as u64) + self.gpu.pool_bytes()
    }

    pub fn timings(&self) -> GpuTimings {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).timings
    }

    /// Decode and transform `samples` into new GPU batch tensors: [`Self::prepare`] then
    /// [`Self::submit`].
    pub fn run(
        &self,
        pipelines: &Pipelines,
        reader: &CacheReader,
        draw: (u64, u64),
        samples: &[u64],
        replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
        threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        let prepared = self.prepare(pipelines, reader, draw, samples, replacement)?;
        self.submit(pipelines, reader, samples, prepared, replacement, threads)
    }

    /// The host's first stage of a batch: resolve the samples (replacing those whose headers
    /// are broken, as `on_error` says), draw their views' crops for `(seed, epoch)`, gather
    /// their compressed bytes into a free ring slot and choose each image's decoder. Touches
    /// no state `submit` uses, so the loader runs it for the next batch while `submit` feeds
    /// nvJPEG the current one.
    pub fn prepare<'a>(
        &self,
        pipelines: &Pipelines,
        reader: &'a CacheReader,
        (seed, epoch): (u64, u64),
        samples: &[u64],
        replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
    ) -> Result<Prepared<'a>> {
        let started = Instant::now();
        self.gpu.bind()?;
        let fields: Vec<usize> = pipelines.groups.iter().map(|g| g.field).collect();
        let source = reader.header().source.path.clone();
        let on_error = pipelines.on_error;

        // Which sample fills each slot: the requested one unless its images' headers are
        // broken (then as `on_error` says).
        let resolve = |k: usize| -> Result<Resolved> {
            let requested = samples[k];
            let mut first_failure = None;
            for attempt in 0..MAX_ATTEMPTS {
                let sample = if attempt == 0 {
                    requested
                } else {
                    replacement(requested, attempt)
                };
                match probe_sample(reader, &fields, sample) {
                    Ok(images) => {
                        return Ok(Resolved {
                            sample,
                            attempt,
                            images,
                        });
                    }
                    Err(Failure::Cache(e)) => return Err(e),
                    Err(Failure::Image(field, message)) => {
                        let e = Error::Decode {
                            location: Location::sample(&source, sample),
                            field,
                            message,
                        };
                        if on_error == OnError::Raise {
                            return Err(e);
                        }
                        first_failure.get_or_insert(e);
                    }
                }
            }
            Err(first_failure.expect("at least one attempt failed"))
        };
        let resolved = (0..samples.len())
            .into_par_iter()
            .map(resolve)
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let regions: Vec<Option<Rect>> = resolved
            .par_iter()
            .flat_map_iter(|r| {
                let draw = Draw {
                    seed,
                    epoch,
                    sample: r.sample,
                };
                pipelines
                    .groups
                    .iter()
                    .zip(&r.images)
                    .map(move |(group, image)| {
                        read_region(&group_views(pipelines, group, draw, image))
                    })
            })
            .collect();

        // The oldest free slot, once the GPU work that last read it is done.
        let wait = Instant::now();
        let mut slot = SlotLease {
            slot: Some(
                self.free_slots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .recv()
                    .expect("GpuPipelines holds a sender"),
            ),
            ring: self.slot_return.clone(),
        };
        if let Some(done) = &slot.done {
            done.synchronize()
                .map_err(cuda_error("waiting for a ring slot"))?;
        }
        slot.done = None;
        let waited = wait.elapsed();

        // Gather the compressed bytes into pinned memory, one copy per image.
        let images: Vec<&Image> = resolved.iter().flat_map(|r| r.images.iter()).collect();
        let mut offsets = Vec::with_capacity(images.len() + 1);
        offsets.push(0usize);
        for image in &images {
            offsets.push(offsets.last().unwrap() + image.bytes.len());
        }
        let total = *offsets.last().unwrap();
        if slot.bytes.len() < total {
            slot.bytes = self.gpu.pinned(total.next_power_of_two())?;
        }
        {
            let mut rest = &mut slot.bytes.as_mut_slice()[..total];
            let mut parts = Vec::with_capacity(images.len());
            for image in &images {
                let (head, tail) = rest.split_at_mut(image.bytes.len());
                parts.push(head);
                rest = tail;
            }
            parts
                .into_par_iter()
                .zip(images.par_iter())
                .for_each(|(dst, image)| dst.copy_from_slice(image.bytes));
        }
        let pinned = slot.bytes.as_slice();
        let data: Vec<&[u8]> = offsets.windows(2).map(|w| &pinned[w[0]..w[1]]).collect();
        let plan = match &self.planner {
            Some(planner) => planner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .plan(&data),
            None => vec![(Route::Cpu, None); data.len()],
        };
        Ok(Prepared {
            draw: (seed, epoch),
            resolved,
            offsets,
            plan,
            regions,
            slot,
            busy: started.elapsed().saturating_sub(waited),
            waited,
        })
    }

    /// The host's second stage of a batch: decode (nvJPEG, or the CPU, on `threads`, for what
    /// nvJPEG cannot take), upload the crop parameters and launch the kernels, all queued on
    /// the loader's stream. Batches are submitted in the order they were prepared.
    pub fn submit(
        &self,
        pipelines: &Pipelines,
        reader: &CacheReader,
        samples: &[u64],
        mut prepared: Prepared<'_>,
        replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
        threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let produced = self.queue(
            &mut guard,
            pipelines,
            reader,
            samples,
            &mut prepared,
            replacement,
            threads,
        );
        if produced.is_err() {
            // Work queued before the failure may still read the slot, which goes back to the
            // ring when `prepared` drops.
            let _ = self.gpu.stream().synchronize();
        }
        produced
    }

    #[allow(clippy::too_many_arguments)]
    fn queue(
        &self,
        inner: &mut Inner,
        pipelines: &Pipelines,
        reader: &CacheReader,
        samples: &[u64],
        prepared: &mut Prepared<'_>,
        replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
        threads: Option<&rayon::ThreadPool>,
    ) -> Result<Produced> {
        let started = Instant::now();
        let mut waited = Duration::ZERO;
        self.gpu.bind()?;
        let fields: Vec<usize> = pipelines.groups.iter().map(|g| g.field).collect();
        let source = reader.header().source.path.clone();
        let on_error = pipelines.on_error;
        let resolved = &prepared.resolved;
        let slot = &mut *prepared.slot;
        let images: Vec<&Image> = resolved.iter().flat_map(|r| r.images.iter()).collect();
        let pinned = slot.bytes.as_slice();
        let data: Vec<&[u8]> = prepared
            .offsets
            .windows(2)
            .map(|w| &pinned[w[0]..w[1]])
            .collect();
        let plan = &prepared.plan;
        let (seed, epoch) = prepared.draw;

        // Routes: a slot goes to nvJPEG when every one of its images does.
        let per_sample = fields.len();
        let mut routes: Vec<Route> = vec![Route::Cpu; resolved.len()];
        for (k, r) in resolved.iter().enumerate() {
            let mine = &plan[k * per_sample..(k + 1) * per_sample];
            let agrees = mine.iter().zip(&r.images).all(|((route, size), image)| {
                *route != Route::Cpu && *size == Some((image.width, image.height))
            });
            if agrees {
                routes[k] = if mine.iter().all(|(route, _)| *route == Route::Hardware) {
                    Route::Hardware
                } else {
                    Route::Cuda
                };
            }
        }

        // Decoded images on the device: where each one goes.
        let mut at = vec![0usize; images.len()];
        let mut needed = 0usize;
        for (i, image) in images.iter().enumerate() {
            if routes[i / per_sample] != Route::Cpu {
                at[i] = needed;
                needed += align(image.width as usize * 3 * image.height as usize);
            }
        }
        if inner.decoded.as_ref().is_none_or(|d| d.len() < needed) {
            // Dropping the old buffer frees it after the work already queued on the stream.
            inner.decoded = None;
            inner.decoded = Some(self.gpu.alloc(needed + needed / 4)?);
        }
        let base = inner.decoded.as_ref().expect("allocated above").ptr();
        // nvJPEG's decode states keep staging buffers from one call to the next; the host has
        // prepared this batch while the GPU worked on the previous one, and waits for that
        // work before handing nvJPEG the next batch.
        let previous_wait = Instant::now();
        if let Some(previous) = inner.previous.take() {
            previous
                .ready
                .synchronize()
                .map_err(cuda_error("waiting for the previous batch"))?;
            let t = &mut inner.timings;
            t.gpu_batches += 1;
            let ms = |a: &CudaEvent, b: &CudaEvent| a.elapsed_ms(b).map_or(0.0, |ms| ms as f64);
            t.gpu_decode_s += ms(&previous.start, &previous.decoded) / 1e3;
            t.gpu_transform_s += ms(&previous.decoded, &previous.ready) / 1e3;
        }
        waited += previous_wait.elapsed();
        let stream = self.gpu.stream().cu_stream() as crate::decode::nvjpeg::sys::cudaStream_t;
        let timing_event = || {
            let event = self
                .gpu
                .context()
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(cuda_error("creating a CUDA event"))?;
            event
                .record(self.gpu.stream())
                .map_err(cuda_error("recording a CUDA event"))?;
            Ok::<_, Error>(event)
        };
        let start = timing_event()?;
        for route in [Route::Hardware, Route::Cuda] {
            let chosen: Vec<usize> = (0..images.len())
                .filter(|&i| routes[i / per_sample] == route)
                .collect();
            if chosen.is_empty() {
                continue;
            }
            let bytes: Vec<&[u8]> = chosen.iter().map(|&i| data[i]).collect();
            // Where pixel (x, y) of image i goes: the same address whether the image is
            // decoded whole or only a region of it, so the kernels read the same places.
            let pixel = |i: usize, x: u32, y: u32| {
                let pitch = images[i].width as u64 * 3;
                base + at[i] as u64 + y as u64 * pitch + x as u64 * 3
            };
            let pitch = |i: usize| images[i].width as usize * 3;
            let rois: Option<Vec<Roi>> =
                (route == Route::Hardware && inner.roi_decode).then(|| {
                    chosen
                        .iter()
                        .map(|&i| roi_for(prepared.regions[i], images[i].width, images[i].height))
                        .collect()
                });
            let decoder = inner
                .decoder
                .as_mut()
                .expect("nvJPEG routes need a decoder");
            let mut decoded = Err(Error::Internal("not decoded".into()));
            if let Some(rois) = &rois {
                let mut out: Vec<_> = chosen
                    .iter()
                    .zip(rois)
                    .map(|(&i, &[x, y, _, _])| rgb_destination(pixel(i, x, y), pitch(i)))
                    .collect();
                // SAFETY: each region lies inside its image, whose pixels fit in `decoded`
                // (sized above for every image at pitch width · 3); the pinned slot is not
                // touched again until the event recorded after this batch's work completes.
                decoded = unsafe { decoder.decode(route, &bytes, Some(rois), &mut out, stream) };
            }
            if decoded.is_err() {
                let mut out: Vec<_> = chosen
                    .iter()
                    .map(|&i| rgb_destination(pixel(i, 0, 0), pitch(i)))
                    .collect();
                // SAFETY: as above, for whole images.
                decoded = unsafe { decoder.decode(route, &bytes, None, &mut out, stream) };
                if rois.is_some() && decoded.is_ok() {
                    // The engine takes these images whole but not their regions.
                    inner.roi_decode = false;
                }
            }
            if decoded.is_err() {
                // A bitstream nvJPEG rejects mid-batch: the CPU decoder decides, image by
                // image, what is broken.
                for &i in &chosen {
                    routes[i / per_sample] = Route::Cpu;
                }
            }
        }

        let decode_end = timing_event()?;

        // The CPU route, replacing samples that do not decode as `on_error` says.
        let mut host: Vec<Option<HostDecoded>> = (0..resolved.len()).map(|_| None).collect();
        let fallback: Vec<usize> = (0..resolved.len())
            .filter(|&k| routes[k] == Route::Cpu)
            .collect();
        let decoded_on_host = in_pool(threads, || {
            fallback
                .par_iter()
                .map(|&k| {
                    decode_on_host(
                        reader,
                        &fields,
                        &source,
                        on_error,
                        samples[k],
                        &resolved[k],
                        replacement,
                    )
                })
                .collect::<Vec<_>>()
        });
        // The sample and whether it replaces the requested one, per slot.
        let mut chosen: Vec<(u64, bool)> =
            resolved.iter().map(|r| (r.sample, r.attempt > 0)).collect();
        for (&k, outcome) in fallback.iter().zip(decoded_on_host) {
            let (sample, decoded) = outcome?;
            chosen[k] = (sample, sample != samples[k]);
            host[k] = Some(decoded);
        }
        let host_bytes: usize = host
            .iter()
            .flatten()
            .flat_map(|h| h.images.iter())
            .map(|(p, _, _)| align(p.len()))
            .sum();
        let uploaded = if host_bytes > 0 {
            Some(self.gpu.alloc(host_bytes)?)
        } else {
            None
        };
        // Device address, pitch, width and height of every image, slot-major.
        let mut sources: Vec<(u64, u32, u32, u32)> = Vec::with_capacity(images.len());
        let mut up_at = 0usize;
        for (k, r) in resolved.iter().enumerate() {
            match &host[k] {
                None => {
                    for (g, image) in r.images.iter().enumerate() {
                        let i = k * per_sample + g;
                        sources.push((
                            base + at[i] as u64,
                            image.width * 3,
                            image.width,
                            image.height,
                        ));
                    }
                }
                Some(h) => {
                    let dst = uploaded.as_ref().expect("allocated for host images");
                    for (pixels, width, height) in &h.images {
                        let ptr = dst.ptr() + up_at as u64;
                        // SAFETY: `ptr` has room for `pixels` (sized above); a copy from
                        // pageable memory returns once the bytes are staged, so `pixels` may
                        // be dropped afterwards.
                        unsafe {
                            result::memcpy_htod_async(ptr, pixels, self.gpu.stream().cu_stream())
                        }
                        .map_err(cuda_error("uploading a CPU-decoded image"))?;
                        up_at += align(pixels.len());
                        sources.push((ptr, width * 3, *width, *height));
                    }
                }
            }
        }

        // Every view's parameters, output after output, uploaded in one copy.
        let mut params = Vec::new();
        let mut starts = Vec::new();
        for (g, group) in pipelines.groups.iter().enumerate() {
            for &o in &group.outputs {
                let output = &pipelines.outputs[o];
                let spec = &output.spec;
                let (oh, ow) = spec.geometry.output_size();
                let view_elems = 3 * oh as u64 * ow as u64;
                starts.push((o, params.len()));
                for (k, &(sample, _)) in chosen.iter().enumerate() {
                    let (ptr, pitch, width, height) = sources[k * per_sample + g];
                    let draw = Draw {
                        seed,
                        epoch,
                        sample,
                    };
                    let decoded = Decoded {
                        eighths: 8,
                        x0: 0,
                        y0: 0,
                        width,
                        height,
                    };
                    for v in 0..spec.views as u64 {
                        let view = output.first_view + v;
                        let geometry = view_geometry(&spec.geometry, draw, view, height, width);
                        let target = Target {
                            size: (oh, ow),
                            flip: flip_for(draw.view(view), spec.flip),
                            full: (height, width),
                        };
                        let region = source_region(geometry, &target, &decoded);
                        let src = ptr
                            + region.window[1] as u64 * pitch as u64
                            + region.window[0] as u64 * 3;
                        let dst = (k as u64 * spec.views as u64 + v) * view_elems;
                        params.push(ViewParams::new(&region, src, pitch, target.flip, dst));
                    }
                }
            }
        }
        let param_bytes = params.len() * std::mem::size_of::<ViewParams>();
        if slot.params.len() < param_bytes {
            slot.params = self.gpu.pinned(param_bytes.next_power_of_two())?;
        }
        // SAFETY: `ViewParams` is repr(C) plain data without padding (64 bytes, asserted).
        let raw = unsafe { std::slice::from_raw_parts(params.as_ptr() as *const u8, param_bytes) };
        slot.params.as_mut_slice()[..param_bytes].copy_from_slice(raw);
        let params_device = self.gpu.alloc(param_bytes)?;
        // SAFETY: both buffers hold `param_bytes`; the pinned source stays untouched until the
        // slot's event completes.
        unsafe {
            result::memcpy_htod_async(
                params_device.ptr(),
                &slot.params.as_slice()[..param_bytes],
                self.gpu.stream().cu_stream(),
            )
        }
        .map_err(cuda_error("uploading view parameters"))?;

        // One launch per output; `ready` is recorded after the last one.
        let ready = Arc::new(
            self.gpu
                .context()
                .new_event(Some(sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC))
                .map_err(cuda_error("creating a CUDA event"))?,
        );
        let b = chosen.len();
        let mut tensors: Vec<Option<(String, DeviceTensor)>> =
            (0..pipelines.outputs.len()).map(|_| None).collect();
        for (o, first) in starts {
            let spec = &pipelines.outputs[o].spec;
            let (oh, ow) = spec.geometry.output_size();
            let n_views = (b * spec.views as usize) as u32;
            let out = self
                .gpu
                .alloc(b * spec.views as usize * spec.view_bytes())?;
            let views_ptr =
                params_device.ptr() + (first * std::mem::size_of::<ViewParams>()) as u64;
            let out_ptr = out.ptr();
            let channels_last = (spec.memory_format == MemoryFormat::ChannelsLast) as u32;
            let k = Convert::new(spec.normalize);
            let config = LaunchConfig {
                grid_dim: (ow.div_ceil(32), oh.div_ceil(8), n_views.clamp(1, 65_535)),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            let kernel = &inner.kernels[kernel_index(spec.dtype)];
            let mut launch = self.gpu.stream().launch_builder(kernel);
            launch
                .arg(&views_ptr)
                .arg(&n_views)
                .arg(&out_ptr)
                .arg(&oh)
                .arg(&ow)
                .arg(&channels_last)
                .arg(&k);
            // SAFETY: the arguments match the kernel's signature (two device pointers as u64,
            // u32s, `Convert` by value); `views_ptr` holds `n_views` parameters whose source
            // windows lie inside decoded images and whose destinations lie inside `out`.
            unsafe { launch.launch(config) }
                .map_err(cuda_error("launching the resample kernel"))?;
            let (shape, strides) = spec.tensor_layout(b);
            let tensor = DeviceTensor {
                memory: Arc::new(out),
                ready: Arc::clone(&ready),
                dtype: spec.dtype,
                shape,
                strides,
            };
            tensors[o] = Some((spec.name.clone(), tensor));
        }
        ready
            .record(self.gpu.stream())
            .map_err(cuda_error("recording a CUDA event"))?;
        slot.done = Some(Arc::clone(&ready));
        inner.previous = Some(BatchEvents {
            start,
            decoded: decode_end,
            ready,
        });
        let t = &mut inner.timings;
        t.batches += 1;
        t.host_prepare_s += prepared.busy.as_secs_f64();
        t.host_wait_s += (prepared.waited + waited).as_secs_f64();
        t.host_submit_s += started.elapsed().saturating_sub(waited).as_secs_f64();
        // Per-batch buffers (`params_device`, `uploaded`) are freed in stream order, after the
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
            tensors: tensors
                .into_iter()
                .map(|t| t.expect("every output launched"))
                .collect(),
            routes: counts,
        })
    }
}

/// The geometry of every view that `group`'s outputs take from `image`.
fn group_views(
    pipelines: &Pipelines,
    group: &Group,
    draw: Draw,
    image: &Image,
) -> Vec<ViewGeometry> {
    group
        .outputs
        .iter()
        .flat_map(|&o| {
            let output = &pipelines.outputs[o];
            (0..output.spec.views as u64).map(move |v| {
                let view = output.first_view + v;
                view_geometry(&output.spec.geometry, draw, view, image.height, image.width)
            })
        })
        .collect()
}

/// The images of `sample` with their sizes from the headers.
fn probe_sample<'a>(
    reader: &'a CacheReader,
    fields: &[usize],
    sample: u64,
) -> std::result::Result<Vec<Image<'a>>, Failure> {
    fields
        .iter()
        .map(|&f| {
            let bytes = reader.value_bytes(f, sample).map_err(Failure::Cache)?;
            let (width, height) = image_size(bytes)
                .map_err(|m| Failure::Image(reader.fields()[f].name.clone(), m))?;
            Ok(Image {
                bytes,
                width,
                height,
            })
        })
        .collect()
}

/// Decode a slot's images on the CPU (full resolution, as nvJPEG would), going on through the
/// replacement candidates under `OnError::Skip` in the CPU pipeline's order, so both devices
/// replace a broken sample by the same one. Returns the sample used.
fn decode_on_host(
    reader: &CacheReader,
    fields: &[usize],
    source: &str,
    on_error: OnError,
    requested: u64,
    resolved: &Resolved,
    replacement: &(dyn Fn(u64, u64) -> u64 + Sync),
) -> Result<(u64, HostDecoded)> {
    let mut decoder = CpuDecoder::new();
    let mut first_failure = None;
    for attempt in resolved.attempt..MAX_ATTEMPTS {
        let sample = if attempt == 0 {
            requested
        } else {
            replacement(requested, attempt)
        };
        let mut images = Vec::with_capacity(fields.len());
        let mut failed = None;
        for &f in fields {
            let bytes = reader.value_bytes(f, sample)?;
            let mut pixels = Vec::new();
            match decoder.decode(bytes, DecodePlan::FULL, &mut pixels) {
                Ok(d) => images.push((pixels, d.width, d.height)),
                Err(message) => {
                    failed = Some(Error::Decode {
                        location: Location::sample(source, sample),
                        field: reader.fields()[f].name.clone(),
                        message,
                    });
                    break;
                }
            }
        }
        match failed {
            None => return Ok((sample, HostDecoded { images })),
            Some(e) if on_error == OnError::Raise => return Err(e),
            Some(e) => {
                first_failure.get_or_insert(e);
            }
        }
    }
    Err(first_failure.expect("at least one attempt failed"))
}
