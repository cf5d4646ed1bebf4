//! The loader: batches of an epoch, prepared ahead of the consumer on a background thread.
//!
//! [`Loader::iter`] starts one prefetch thread for one pass over an epoch. The thread walks
//! the sampler's batches, gathers each (rayon inside), and hands it over a bounded channel, so
//! at most `batches_ahead` batches wait for the consumer. Dropping the iterator (a `break`,
//! an exception, the end of the epoch) stops the thread and joins it before returning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::buffer::BufferPool;
use crate::cache::CacheReader;
use crate::cache::FieldValue;
use crate::cache::format::{FieldKind, Record};
use crate::decode::ImagePolicy;
use crate::dtype::DType;
use crate::error::{Error, Location, Result};
use crate::gather::{gather_scalars, gather_values};
use crate::sampler::Sampler;
use crate::tensor::{DeviceTensor, HostTensor, Tensor};
use crate::threads::{in_pool, name_global_threads};
use crate::transform::gpu::{GpuPipeline, Prepared};
use crate::transform::gpu_api::GpuStages;
use crate::transform::{Device, OnError, PipelineSpec, Pipelines};

#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Batches prepared ahead of the consumer (at least 1).
    pub batches_ahead: usize,
    /// Fields to load, by name; `None` loads every field.
    pub fields: Option<Vec<String>>,
    /// Gather threads; 0 uses rayon's global pool (one thread per core).
    pub num_threads: usize,
    /// Image pipelines; the fields they read are not loaded raw (unless named in `fields`).
    pub pipelines: Vec<PipelineSpec>,
    pub on_error: OnError,
    /// Which images pipelines decode (a pixel limit, truncated JPEGs); others are broken
    /// images, as `on_error` says.
    pub image_policy: ImagePolicy,
    /// Where the pipelines run; raw fields are always gathered on the host.
    pub device: Device,
    /// With a GPU `device`, copy each batch's index and numeric fields there too (through
    /// pinned memory, on the loader's stream after the batch's kernels); strings and
    /// variable-length values stay on the host.
    pub fields_on_device: bool,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batches_ahead: 3,
            fields: None,
            num_threads: 0,
            pipelines: Vec::new(),
            on_error: OnError::Raise,
            image_policy: ImagePolicy::DEFAULT,
            device: Device::Cpu,
            fields_on_device: false,
        }
    }
}

/// Counters over the loader's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoaderStats {
    /// Images decoded and transformed by pipelines.
    pub images: u64,
    /// Samples replaced because their image did not decode (`on_error="skip"`).
    pub replaced: u64,
    /// Images decoded by the GPU's hardware JPEG engine, by nvJPEG's CUDA backend, and by
    /// the CPU (every image of the CPU pipeline; the GPU pipeline's fallback).
    pub decoded_hardware: u64,
    pub decoded_cuda: u64,
    pub decoded_cpu: u64,
}

/// Variable-length values of a batch: bytes back to back plus where each one starts.
#[derive(Debug, Clone)]
pub struct Ragged {
    /// uint8 [total bytes].
    pub data: HostTensor,
    /// int64 [B + 1].
    pub offsets: HostTensor,
    /// int64 [B] each, for image fields.
    pub heights: Option<HostTensor>,
    pub widths: Option<HostTensor>,
    /// PIL fields: each sample's mode.
    pub modes: Option<Vec<String>>,
    /// Arrays of varying shape: element type and each sample's shape.
    pub dtype: Option<DType>,
    pub shapes: Option<Vec<Vec<u32>>>,
}

impl Ragged {
    pub fn len(&self) -> usize {
        self.offsets.numel() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i`'s bytes.
    pub fn item(&self, i: usize) -> &[u8] {
        let offsets = self.offsets.bytes();
        let at = |k: usize| i64::from_le_bytes(offsets[8 * k..8 * k + 8].try_into().unwrap());
        &self.data.bytes()[at(i) as usize..at(i + 1) as usize]
    }
}

#[derive(Debug, Clone)]
pub enum FieldBatch {
    /// Scalars [B], or arrays that all have one shape [B, ...].
    Tensor(HostTensor),
    /// A pipeline's output on a GPU.
    Device(DeviceTensor),
    Ragged(Box<Ragged>),
    Strings(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub epoch: u64,
    /// Position of the batch in its epoch.
    pub position: usize,
    /// int64 [B]: the dataset index of each sample.
    pub indices: HostTensor,
    /// The same on the GPU, with `fields_on_device`.
    pub device_indices: Option<DeviceTensor>,
    pub fields: Vec<(String, FieldBatch)>,
}

pub struct Loader {
    reader: Arc<CacheReader>,
    sampler: Sampler,
    fields: Vec<usize>,
    pipelines: Pipelines,
    pool: BufferPool,
    threads: Option<rayon::ThreadPool>,
    batches_ahead: usize,
    fields_on_device: bool,
    images: AtomicU64,
    replaced: AtomicU64,
    routes: [AtomicU64; 3],
}

impl Loader {
    pub fn new(
        reader: Arc<CacheReader>,
        sampler: Sampler,
        options: LoaderOptions,
    ) -> Result<Loader> {
        if options.batches_ahead == 0 {
            return Err(Error::invalid("batches_ahead must be at least 1"));
        }
        let pipelines = Pipelines::new(
            &reader,
            options.pipelines,
            options.on_error,
            options.image_policy,
            options.device,
            options.batches_ahead + 2,
        )?;
        let sources = pipelines.source_fields();
        let fields = match &options.fields {
            None => (0..reader.fields().len())
                .filter(|f| !sources.contains(f))
                .collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    reader.field_index(n).ok_or_else(|| {
                        Error::invalid(format!(
                            "no field named '{n}'; the dataset has: {}",
                            field_names(&reader)
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let threads = match options.num_threads {
            0 => {
                name_global_threads();
                None
            }
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("slipstream-gather-{i}"))
                    .build()
                    .map_err(|e| Error::invalid(format!("cannot start {n} gather threads: {e}")))?,
            ),
        };
        let buffers_per_batch = fields
            .iter()
            .filter(|&&f| !reader.fields()[f].kind.is_scalar())
            .count()
            + pipelines.output_names().len();
        Ok(Loader {
            pool: BufferPool::new((options.batches_ahead + 2) * buffers_per_batch.max(1)),
            reader,
            sampler,
            fields,
            pipelines,
            threads,
            batches_ahead: options.batches_ahead,
            fields_on_device: options.fields_on_device,
            images: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            routes: Default::default(),
        })
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    pub fn stats(&self) -> LoaderStats {
        LoaderStats {
            images: self.images.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
            decoded_hardware: self.routes[0].load(Ordering::Relaxed),
            decoded_cuda: self.routes[1].load(Ordering::Relaxed),
            decoded_cpu: self.routes[2].load(Ordering::Relaxed),
        }
    }

    /// The GPU the pipelines run on, if any.
    pub fn gpu(&self) -> Option<&GpuPipeline> {
        self.pipelines.gpu()
    }

    pub fn reader(&self) -> &Arc<CacheReader> {
        &self.reader
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        self.sampler.num_batches()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gather one batch of `samples` (synchronously, on the calling thread and rayon).
    pub fn gather(&self, epoch: u64, position: usize, samples: &[u64]) -> Result<Batch> {
        for &sample in samples {
            self.reader.check_index(sample)?;
        }
        self.in_pool(|| self.gather_here(epoch, position, samples, None))
    }

    /// Run `f` on the loader's threads (its rayon pool, when it has one).
    fn in_pool<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_pool(self.threads.as_ref(), f)
    }

    /// `prepared`: the GPU's first stage of this batch, when the caller ran it.
    fn gather_here(
        &self,
        epoch: u64,
        position: usize,
        samples: &[u64],
        prepared: Option<Prepared<'_>>,
    ) -> Result<Batch> {
        let r = &*self.reader;
        let mut fields =
            Vec::with_capacity(self.fields.len() + self.pipelines.output_names().len());
        // Pipelines first: a sample whose image is replaced is replaced in every field.
        let produced;
        let samples = if self.pipelines.is_empty() {
            samples
        } else {
            let replacement = |sample, attempt| self.sampler.replacement(epoch, sample, attempt);
            produced = self.pipelines.run(
                r,
                &self.pool,
                self.sampler.config().seed,
                epoch,
                samples,
                &replacement,
                prepared,
                self.threads.as_ref(),
            )?;
            self.images
                .fetch_add(samples.len() as u64, Ordering::Relaxed);
            self.replaced
                .fetch_add(produced.replaced, Ordering::Relaxed);
            for (route, count) in self.routes.iter().zip(produced.routes) {
                route.fetch_add(count, Ordering::Relaxed);
            }
            for (name, tensor) in produced.tensors {
                let batch = match tensor {
                    Tensor::Host(t) => FieldBatch::Tensor(t),
                    Tensor::Device(t) => FieldBatch::Device(t),
                };
                fields.push((name, batch));
            }
            &produced.samples[..]
        };
        // On a GPU the caller runs this outside the loader's pool (its thread waits on nvJPEG,
        // which must not hold a pool thread the next batch's preparation could use); the
        // copies run in the pool either way.
        fields.extend(self.in_pool(|| self.gather_fields(samples))?);
        let indices: Vec<i64> = samples.iter().map(|&s| s as i64).collect();
        let indices = HostTensor::from_i64(&indices);
        let device_indices = match self.pipelines.gpu() {
            Some(gpu) if self.fields_on_device => move_to_gpu(gpu, &indices, &mut fields)?,
            _ => None,
        };
        Ok(Batch {
            epoch,
            position,
            indices,
            device_indices,
            fields,
        })
    }

    /// The loader's raw (non-pipeline) fields of `samples`.
    fn gather_fields(&self, samples: &[u64]) -> Result<Vec<(String, FieldBatch)>> {
        let r = &*self.reader;
        let b = samples.len() as i64;
        let mut out = Vec::with_capacity(self.fields.len());
        for &f in &self.fields {
            let header = &r.fields()[f];
            let batch = match header.kind {
                FieldKind::Int | FieldKind::Float | FieldKind::Bool => {
                    FieldBatch::Tensor(gather_scalars(r, f, samples))
                }
                FieldKind::Str => FieldBatch::Strings(
                    samples
                        .iter()
                        .map(|&s| match r.value(f, s)? {
                            FieldValue::Str(text) => Ok(text.to_string()),
                            _ => unreachable!("str field"),
                        })
                        .collect::<Result<_>>()?,
                ),
                FieldKind::Array if header.fixed_shape.is_some() => {
                    let g = gather_values(r, f, samples, &self.pool)?;
                    let mut shape = vec![b];
                    shape.extend(header.fixed_shape.iter().flatten().map(|&d| d as i64));
                    let dtype = header.dtype.expect("array fields have a dtype");
                    let per_sample = shape[1..].iter().product::<i64>() as usize * dtype.size();
                    if let Some(k) = g.records.iter().position(|x| x.size as usize != per_sample) {
                        return Err(Error::cache(
                            Location::sample(r.path(), samples[k]),
                            format!(
                                "array of field '{}' does not have the field's fixed shape",
                                header.name
                            ),
                        ));
                    }
                    FieldBatch::Tensor(HostTensor::new(Arc::new(g.buffer), dtype, shape))
                }
                FieldKind::Bytes | FieldKind::Pil | FieldKind::Array | FieldKind::Yuv420 => {
                    let g = gather_values(r, f, samples, &self.pool)?;
                    let sizes = |pick: fn(&Record) -> u32| {
                        HostTensor::from_i64(
                            &g.records.iter().map(|x| pick(x) as i64).collect::<Vec<_>>(),
                        )
                    };
                    let images = header.images;
                    let ragged = Ragged {
                        heights: images.then(|| sizes(|x| x.height)),
                        widths: images.then(|| sizes(|x| x.width)),
                        modes: (header.kind == FieldKind::Pil)
                            .then(|| {
                                samples
                                    .iter()
                                    .map(|&s| r.mode(f, s).map(str::to_string))
                                    .collect::<Result<Vec<_>>>()
                            })
                            .transpose()?,
                        dtype: header.dtype,
                        shapes: (header.kind == FieldKind::Array)
                            .then(|| samples.iter().map(|&s| r.shape(f, s)).collect()),
                        offsets: HostTensor::from_i64(&g.offsets),
                        data: {
                            let len = g.buffer.len() as i64;
                            HostTensor::new(Arc::new(g.buffer), DType::Uint8, vec![len])
                        },
                    };
                    FieldBatch::Ragged(Box::new(ragged))
                }
            };
            out.push((header.name.clone(), batch));
        }
        Ok(out)
    }

    /// Iterate over the batches of `epoch` from position `start`, prepared on a background
    /// thread.
    pub fn iter(self: &Arc<Self>, epoch: u64, start: usize) -> BatchIter {
        let (tx, rx) = sync_channel(self.batches_ahead - 1);
        let stop = Arc::new(AtomicBool::new(false));
        let loader = Arc::clone(self);
        let thread_stop = Arc::clone(&stop);
        let batches = self.sampler.batches(epoch);
        // A cache still streaming in from S3 fetches its chunks in this epoch's order from now.
        self.reader
            .prefer(batches.iter().skip(start).flatten().copied());
        let handle = std::thread::Builder::new()
            .name("slipstream-prefetch".into())
            .spawn(move || loader.produce(epoch, &batches, start, tx, &thread_stop))
            .expect("spawn the prefetch thread");
        BatchIter {
            rx: Some(rx),
            stop,
            handle: Some(handle),
            pid: std::process::id(),
        }
    }

    fn produce(
        &self,
        epoch: u64,
        batches: &[Vec<u64>],
        start: usize,
        tx: SyncSender<Result<Batch>>,
        stop: &AtomicBool,
    ) {
        let todo = batches.iter().enumerate().skip(start);
        if self.pipelines.gpu().is_none() {
            for (position, samples) in todo {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let batch = self.gather(epoch, position, samples);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
            return;
        }
        // On a GPU a second thread prepares batch k+1 (headers, gathering into pinned memory,
        // choosing decoders) while this one submits batch k to nvJPEG and the kernels. One
        // after the other, the two stages (5.9 + 6.8 ms per batch of 256 on an H200) held the
        // loader to half the rate of the hardware decoder alone.
        let replacement = |sample, attempt| self.sampler.replacement(epoch, sample, attempt);
        std::thread::scope(|scope| {
            let (ready_tx, ready_rx) = sync_channel(1);
            std::thread::Builder::new()
                .name("slipstream-prepare".into())
                .spawn_scoped(scope, move || {
                    for (position, samples) in todo {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let arrived = samples.iter().try_for_each(|&s| self.reader.check_index(s));
                        let prepared = arrived.and_then(|()| {
                            self.in_pool(|| {
                                self.pipelines.prepare(
                                    &self.reader,
                                    self.sampler.config().seed,
                                    epoch,
                                    samples,
                                    &replacement,
                                )
                            })
                            .expect("GPU pipelines prepare")
                        });
                        let failed = prepared.is_err();
                        if ready_tx.send((position, samples, prepared)).is_err() || failed {
                            return;
                        }
                    }
                })
                .expect("spawn the prepare thread");
            for (position, samples, prepared) in ready_rx {
                let batch =
                    prepared.and_then(|p| self.gather_here(epoch, position, samples, Some(p)));
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
    }
}

/// Copy `indices` and every host tensor of `fields` to `gpu` in one upload; the fields are
/// replaced by their device copies, the indices' copy is returned.
fn move_to_gpu(
    gpu: &GpuPipeline,
    indices: &HostTensor,
    fields: &mut [(String, FieldBatch)],
) -> Result<Option<DeviceTensor>> {
    let mut host = vec![indices];
    host.extend(fields.iter().filter_map(|(_, f)| match f {
        FieldBatch::Tensor(t) => Some(t),
        _ => None,
    }));
    let mut uploaded = gpu.upload(&host)?.into_iter();
    let device_indices = uploaded.next();
    let on_host = fields
        .iter_mut()
        .filter(|(_, f)| matches!(f, FieldBatch::Tensor(_)));
    for ((_, f), device) in on_host.zip(uploaded.map(FieldBatch::Device)) {
        *f = device;
    }
    Ok(device_indices)
}

fn field_names(reader: &CacheReader) -> String {
    reader
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The batches of one pass, arriving from the prefetch thread.
pub struct BatchIter {
    rx: Option<Receiver<Result<Batch>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// The process that started the thread; after `fork` the child has no such thread.
    pid: u32,
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.pid != std::process::id() {
            return Some(Err(Error::invalid(
                "this iterator was started before the process forked; start a new one (iter(loader)) in the child",
            )));
        }
        match self.rx.as_ref()?.recv() {
            Ok(batch) => Some(batch),
            // The thread is done, normally or by panicking: only the latter is an error.
            Err(_) => match self.handle.take()?.join() {
                Ok(()) => None,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Some(Err(Error::Internal(format!(
                        "the prefetch thread panicked: {what}"
                    ))))
                }
            },
        }
    }
}

impl BatchIter {
    /// Stop the prefetch thread and wait for it.
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver fails the thread's pending `send`, so it never blocks.
        self.rx = None;
        if let Some(handle) = self.handle.take()
            && self.pid == std::process::id()
        {
            let _ = handle.join();
        }
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        self.close();
    }
}
