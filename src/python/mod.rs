//! PyO3 glue: argument conversion, GIL release, error mapping. No logic lives here.
//!
//! The Python package (python/slipstream/) wraps these classes; users never see `_native`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList};

use crate::cache::{
    self, BuildOptions, CacheReader, Encoding, FieldValue, OpenOptions, RemoteCacheOptions,
};
use crate::decode::cpu::CpuDecoder;
use crate::decode::{DecodePlan, ImagePolicy};
use crate::error::Error;
use crate::loader::{self, BatchIter, FieldBatch, LoaderOptions};
use crate::sampler::{Order, Sampler, SamplerConfig};
use crate::source::{Fingerprint, Format};
use crate::tensor::dlpack::PyTensor;
use crate::tensor::{HostTensor, Tensor};
use crate::transform::gpu_api::GpuStages;
use crate::transform::{Device, GpuDecoder, OnError, PipelineSpec};

mod errors;
mod params;

use errors::{IntoPy, error_of_class};

fn tensor(py: Python<'_>, t: HostTensor) -> PyResult<Py<PyTensor>> {
    Py::new(
        py,
        PyTensor {
            inner: Tensor::Host(t),
        },
    )
}

/// An opened cache.
#[pyclass(module = "slipstream._native", frozen)]
struct Dataset {
    reader: Arc<CacheReader>,
}

#[pymethods]
impl Dataset {
    #[new]
    #[pyo3(signature = (path, cache_dir=None, rebuild=false, progress=true, threads=0, storage_options=Vec::new(), remote_cache=None, fingerprint="mtime", format="auto", encoding="original", max_side=None, quality=None, stream=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: String,
        cache_dir: Option<PathBuf>,
        rebuild: bool,
        progress: bool,
        threads: usize,
        storage_options: Vec<(String, String)>,
        remote_cache: Option<String>,
        fingerprint: &str,
        format: &str,
        encoding: &str,
        max_side: Option<u32>,
        quality: Option<u8>,
        stream: bool,
    ) -> PyResult<Dataset> {
        let options = OpenOptions {
            cache_dir,
            rebuild,
            build: BuildOptions {
                threads,
                progress,
                ..Default::default()
            },
            remote_cache: remote_cache.map(|url| RemoteCacheOptions {
                url,
                storage: storage_options.clone(),
            }),
            remote_only: false,
            fingerprint: fingerprint.parse::<Fingerprint>().py_err(py)?,
            format: format.parse::<Format>().py_err(py)?,
            encoding: Encoding::new(encoding, max_side, quality).py_err(py)?,
            stream,
        };
        let reader = py
            .detach(|| cache::open_source(&path, &storage_options, &options))
            .py_err(py)?;
        Ok(Dataset {
            reader: Arc::new(reader),
        })
    }

    fn __len__(&self) -> usize {
        self.reader.len() as usize
    }

    #[getter]
    fn cache_path(&self) -> PathBuf {
        self.reader.path().to_path_buf()
    }

    /// The cache header (docs/FORMAT.md) as JSON text.
    fn header_json(&self) -> String {
        serde_json::to_string(self.reader.header()).expect("header serializes")
    }

    /// One sample's field values, in field order.
    fn sample<'py>(&self, py: Python<'py>, index: u64) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let values = self.reader.values(index).py_err(py)?;
        values
            .into_iter()
            .map(|value| {
                Ok(match value {
                    FieldValue::Int(v) => v.into_pyobject(py)?.into_any(),
                    FieldValue::Float(v) => v.into_pyobject(py)?.into_any(),
                    FieldValue::Bool(v) => v.into_pyobject(py)?.to_owned().into_any(),
                    FieldValue::Bytes(b) => PyBytes::new(py, b).into_any(),
                    FieldValue::Str(s) => s.into_pyobject(py)?.into_any(),
                    FieldValue::Pil {
                        width,
                        height,
                        mode,
                        pixels,
                    } => (mode, width, height, PyBytes::new(py, pixels))
                        .into_pyobject(py)?
                        .into_any(),
                    // Decode-free images as PIL's RGB values: there is nothing to decode.
                    FieldValue::Yuv420(planes) => {
                        let mut rgb = Vec::new();
                        let plan = DecodePlan::full(ImagePolicy {
                            max_pixels: 0,
                            ..Default::default()
                        });
                        planes
                            .to_rgb(plan, &mut rgb)
                            .map_err(Error::invalid)
                            .py_err(py)?;
                        ("RGB", planes.width, planes.height, PyBytes::new(py, &rgb))
                            .into_pyobject(py)?
                            .into_any()
                    }
                    // A bytearray, so numpy views it writable (LitData returns fresh arrays).
                    FieldValue::Array { shape, data } => (shape, PyByteArray::new(py, data))
                        .into_pyobject(py)?
                        .into_any(),
                })
            })
            .collect()
    }

    /// Check every checksum; raises `ChecksumError` naming the first bad sample.
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.reader.verify_samples()).py_err(py)
    }
}

/// Sampling and prefetch for one rank.
#[pyclass(module = "slipstream._native", frozen)]
struct Loader {
    inner: Arc<loader::Loader>,
}

#[pymethods]
impl Loader {
    #[new]
    #[pyo3(signature = (dataset, batch_size, *, seed, order, drop_last, indices, rank, world_size, batches_ahead, fields, num_threads, pipelines_json, on_error, device=None, decoder="auto", shuffle=true, max_image_pixels=Some(ImagePolicy::DEFAULT_MAX_PIXELS), load_truncated_images=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        dataset: &Dataset,
        batch_size: usize,
        seed: u64,
        order: &str,
        drop_last: bool,
        indices: Option<Vec<u64>>,
        rank: usize,
        world_size: usize,
        batches_ahead: usize,
        fields: Option<Vec<String>>,
        num_threads: usize,
        pipelines_json: &str,
        on_error: &str,
        device: Option<usize>,
        decoder: &str,
        shuffle: bool,
        max_image_pixels: Option<u64>,
        load_truncated_images: bool,
    ) -> PyResult<Loader> {
        let reader = dataset.reader.clone();
        py.detach(|| {
            let decoder: GpuDecoder = decoder.parse()?;
            let device = match device {
                None => Device::Cpu,
                Some(ordinal) => Device::Cuda {
                    ordinal,
                    decoder,
                    roi_decode: true,
                },
            };
            let options = LoaderOptions {
                batches_ahead,
                fields,
                num_threads,
                pipelines: PipelineSpec::list_from_json(pipelines_json)?,
                on_error: on_error.parse::<OnError>()?,
                image_policy: image_policy(max_image_pixels, load_truncated_images),
                fields_on_device: matches!(device, Device::Cuda { .. }),
                device,
            };
            let sampler = Sampler::for_cache(
                &reader,
                SamplerConfig {
                    dataset_len: reader.len(),
                    indices: indices.map(Arc::new),
                    order: Order::parse(order, shuffle)?,
                    seed,
                    batch_size,
                    drop_last,
                    rank,
                    world_size,
                    page_starts: None,
                },
            )?;
            loader::Loader::new(reader, sampler, options)
        })
        .py_err(py)
        .map(|l| Loader { inner: Arc::new(l) })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Start prefetching `epoch` from batch `start`.
    fn iter(&self, py: Python<'_>, epoch: u64, start: usize) -> BatchIterator {
        let inner = &self.inner;
        BatchIterator {
            inner: Mutex::new(Some(py.detach(|| inner.iter(epoch, start)))),
        }
    }

    /// The samples of each batch of `epoch` on this rank.
    fn plan(&self, py: Python<'_>, epoch: u64) -> Vec<Vec<u64>> {
        py.detach(|| self.inner.sampler().batches(epoch))
    }

    /// One batch of these samples, now, on this thread (and rayon's).
    fn load<'py>(
        &self,
        py: Python<'py>,
        epoch: u64,
        samples: Vec<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let batch = py
            .detach(|| self.inner.gather(epoch, 0, &samples))
            .py_err(py)?;
        batch_dict(py, batch)
    }

    /// Counters so far (see `SlipstreamLoader.stats`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let out = PyDict::new(py);
        out.set_item("images", s.images)?;
        out.set_item("replaced", s.replaced)?;
        if let Some(gpu) = self.inner.gpu() {
            out.set_item("decoded_hardware", s.decoded_hardware)?;
            out.set_item("decoded_cuda", s.decoded_cuda)?;
            out.set_item("decoded_cpu", s.decoded_cpu)?;
            out.set_item("gpu_memory_bytes", gpu.memory_bytes())?;
            let t = gpu.timings();
            out.set_item("gpu_batches", t.batches)?;
            out.set_item("host_prepare_s", t.host_prepare_s)?;
            out.set_item("host_wait_s", t.host_wait_s)?;
            out.set_item("host_submit_s", t.host_submit_s)?;
            out.set_item("gpu_timed_batches", t.gpu_batches)?;
            out.set_item("gpu_decode_s", t.gpu_decode_s)?;
            out.set_item("gpu_transform_s", t.gpu_transform_s)?;
        }
        Ok(out)
    }

    /// Where the pipelines run, in words: "cpu", or the GPU and its decode paths.
    fn device_info(&self) -> String {
        self.inner
            .gpu()
            .map_or_else(|| "cpu".to_string(), |g| g.describe())
    }
}

#[pyclass(module = "slipstream._native", frozen)]
struct BatchIterator {
    inner: Mutex<Option<BatchIter>>,
}

#[pymethods]
impl BatchIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next batch as a dict of native values, `None` at the end.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let next = py.detach(|| {
            let mut guard = self.inner.lock().unwrap();
            guard.as_mut().and_then(Iterator::next)
        });
        let Some(batch) = next else {
            self.close(py);
            return Ok(None);
        };
        batch_dict(py, batch.py_err(py)?).map(Some)
    }

    /// Stop the prefetch thread now.
    fn close(&self, py: Python<'_>) {
        let taken = self.inner.lock().unwrap().take();
        py.detach(move || drop(taken));
    }
}

/// A batch as a dict of native values: `__position__`, `index` (also as `_indices`, upstream
/// slipstream's name, which a field called `index` does not replace), then the fields.
fn batch_dict(py: Python<'_>, batch: loader::Batch) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("__position__", batch.position)?;
    let indices = match batch.device_indices {
        Some(t) => Py::new(
            py,
            PyTensor {
                inner: Tensor::Device(t),
            },
        )?,
        None => tensor(py, batch.indices)?,
    };
    out.set_item("_indices", &indices)?;
    out.set_item("index", indices)?;
    for (name, field) in batch.fields {
        match field {
            FieldBatch::Tensor(t) => out.set_item(name, tensor(py, t)?)?,
            FieldBatch::Device(t) => {
                let t = PyTensor {
                    inner: Tensor::Device(t),
                };
                out.set_item(name, Py::new(py, t)?)?
            }
            FieldBatch::Strings(s) => out.set_item(name, PyList::new(py, s)?)?,
            FieldBatch::Ragged(r) => out.set_item(name, Py::new(py, Ragged { inner: *r })?)?,
        }
    }
    Ok(out)
}

/// A batch of variable-length values (see `slipstream.RaggedBatch`).
#[pyclass(module = "slipstream._native", frozen)]
struct Ragged {
    inner: loader::Ragged,
}

#[pymethods]
impl Ragged {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyTensor>> {
        tensor(py, self.inner.data.clone())
    }

    #[getter]
    fn offsets(&self, py: Python<'_>) -> PyResult<Py<PyTensor>> {
        tensor(py, self.inner.offsets.clone())
    }

    #[getter]
    fn heights(&self, py: Python<'_>) -> PyResult<Option<Py<PyTensor>>> {
        self.inner
            .heights
            .clone()
            .map(|t| tensor(py, t))
            .transpose()
    }

    #[getter]
    fn widths(&self, py: Python<'_>) -> PyResult<Option<Py<PyTensor>>> {
        self.inner.widths.clone().map(|t| tensor(py, t)).transpose()
    }

    #[getter]
    fn modes(&self) -> Option<Vec<String>> {
        self.inner.modes.clone()
    }

    #[getter]
    fn dtype(&self) -> Option<&'static str> {
        self.inner.dtype.map(|d| d.name())
    }

    #[getter]
    fn shapes(&self) -> Option<Vec<Vec<u32>>> {
        self.inner.shapes.clone()
    }

    /// Sample `i`'s bytes (`i` already range-checked).
    fn item<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyBytes>> {
        if i >= self.inner.len() {
            return Err(PyIndexError::new_err("ragged index out of range"));
        }
        Ok(PyBytes::new(py, self.inner.item(i)))
    }
}

/// Which images to decode: `max_image_pixels=None` means any size.
fn image_policy(max_image_pixels: Option<u64>, load_truncated_images: bool) -> ImagePolicy {
    ImagePolicy {
        max_pixels: max_image_pixels.unwrap_or(0),
        load_truncated: load_truncated_images,
    }
}

/// Decode a JPEG, PNG or WebP to (height, width, packed RGB bytes), with the CPU pipeline's decoder.
#[pyfunction]
#[pyo3(signature = (data, max_image_pixels=Some(ImagePolicy::DEFAULT_MAX_PIXELS), load_truncated_images=false))]
fn decode_image<'py>(
    py: Python<'py>,
    data: &[u8],
    max_image_pixels: Option<u64>,
    load_truncated_images: bool,
) -> PyResult<(u32, u32, Bound<'py, PyBytes>)> {
    let mut rgb = Vec::new();
    let plan = DecodePlan::full(image_policy(max_image_pixels, load_truncated_images));
    let decoded = py
        .detach(|| CpuDecoder::new().decode(data, plan, &mut rgb))
        .map_err(|message| error_of_class(py, "DecodeError", message))?;
    Ok((decoded.height, decoded.width, PyBytes::new(py, &rgb)))
}

/// Run the `slipstream` command line with these arguments (argv[0] included).
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| crate::cli::run(argv))
}

/// `slipstream info` as JSON.
#[pyfunction]
fn info_json(py: Python<'_>) -> String {
    py.detach(|| crate::info::Info::gather().to_json())
}

/// Called in a forked child: rayon's threads did not survive the fork.
#[pyfunction]
fn after_fork_in_child() {
    crate::threads::disable_parallelism();
}

/// Send the progress of builds and transfers to `reporter(kind, id, text, done, total)`
/// (kind: "start", "advance", "finish" or "line"), or back to stderr with `None`.
#[pyfunction]
fn set_progress_reporter(reporter: Option<Py<PyAny>>) {
    use crate::progress::Event;
    let reporter = reporter.map(|f| {
        Arc::new(move |event: &Event<'_>| {
            let args = match event {
                Event::Start { id, what, total } => ("start", *id, what.to_string(), 0, *total),
                Event::Advance { id, done } => ("advance", *id, String::new(), *done, 0),
                Event::Finish { id } => ("finish", *id, String::new(), 0, 0),
                Event::Line(line) => ("line", 0, line.to_string(), 0, 0),
            };
            Python::attach(|py| {
                if let Err(e) = f.call1(py, args) {
                    e.print(py); // a broken reporter must not stop the build
                }
            });
        }) as Arc<crate::progress::Reporter>
    });
    crate::progress::set_reporter(reporter);
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Dataset>()?;
    m.add_class::<Loader>()?;
    m.add_class::<BatchIterator>()?;
    m.add_class::<Ragged>()?;
    m.add_class::<PyTensor>()?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(info_json, m)?)?;
    m.add_function(wrap_pyfunction!(params::random_resized_crop_params, m)?)?;
    m.add_function(wrap_pyfunction!(params::flip_param, m)?)?;
    m.add_function(wrap_pyfunction!(params::photometric_params, m)?)?;
    m.add_function(wrap_pyfunction!(params::erasing_params, m)?)?;
    m.add_function(wrap_pyfunction!(decode_image, m)?)?;
    m.add_function(wrap_pyfunction!(after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(set_progress_reporter, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_IMAGE_PIXELS", ImagePolicy::DEFAULT_MAX_PIXELS)?;
    Ok(())
}
