//! Tensors handed to consumers, and their DLPack export.
//!
//! A [`HostTensor`] is a typed, shaped view of a shared [`Buffer`]. Exporting it creates a
//! fresh DLPack managed tensor whose context holds a reference to the buffer, so the memory
//! stays valid until the consumer's deleter runs, whatever happens to the batch it came from.

use std::sync::Arc;

use crate::buffer::Buffer;
use crate::dtype::DType;

#[derive(Debug, Clone)]
pub struct HostTensor {
    pub buffer: Arc<Buffer>,
    /// Offset of the first element in the buffer.
    pub byte_offset: usize,
    pub dtype: DType,
    pub shape: Vec<i64>,
    /// Element strides when not C-contiguous (a permutation of a dense layout, such as
    /// channels-last); `None` for C order.
    pub strides: Option<Vec<i64>>,
}

impl HostTensor {
    pub fn new(buffer: Arc<Buffer>, dtype: DType, shape: Vec<i64>) -> HostTensor {
        let t = HostTensor {
            buffer,
            byte_offset: 0,
            dtype,
            shape,
            strides: None,
        };
        assert!(
            t.nbytes() <= t.buffer.len(),
            "tensor larger than its buffer"
        );
        t
    }

    /// The same elements with `strides` (in elements), which must describe a dense layout.
    pub fn with_strides(mut self, strides: Vec<i64>) -> HostTensor {
        assert_eq!(strides.len(), self.shape.len(), "one stride per dimension");
        self.strides = Some(strides);
        self
    }

    /// A 1-D int64 tensor holding `values`.
    pub fn from_i64(values: &[i64]) -> HostTensor {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        HostTensor::new(
            Arc::new(Buffer::copy_from(&bytes)),
            DType::Int64,
            vec![values.len() as i64],
        )
    }

    /// The values of an int64 tensor.
    pub fn i64_values(&self) -> Vec<i64> {
        assert_eq!(
            self.dtype,
            DType::Int64,
            "i64_values of a {} tensor",
            self.dtype.name()
        );
        self.bytes()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product::<i64>() as usize
    }

    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }

    /// The tensor's bytes (little-endian elements, C order).
    pub fn bytes(&self) -> &[u8] {
        &self.buffer.as_slice()[self.byte_offset..self.byte_offset + self.nbytes()]
    }
}

#[cfg(feature = "python")]
pub use export::Tensor;

#[cfg(feature = "python")]
mod export {
    use std::ffi::c_void;
    use std::sync::Arc;

    use dlpark::ffi::{
        DLDataType, DLDataTypeCode, DLDevice, DLManagedTensor, DLManagedTensorVersioned,
    };
    use dlpark::metadata::Dynamic;
    use dlpark::python::{DlpackExporter, ExportRequest, export_dlpack};
    use dlpark::{DlpackFlags, Managed, ManagedTensorBase};
    use pyo3::exceptions::PyBufferError;
    use pyo3::prelude::*;

    use super::HostTensor;
    use crate::buffer::Buffer;
    use crate::dtype::DType;

    /// A CPU tensor owned by slipstream. Convert it with `torch.from_dlpack` or
    /// `numpy.from_dlpack` (zero copy); it stays valid as long as any result does.
    #[pyclass(module = "slipstream._native", frozen)]
    pub struct Tensor {
        pub inner: HostTensor,
    }

    pub(super) fn dl_dtype(dtype: DType) -> DLDataType {
        let (code, bits) = match dtype {
            DType::Bool => (DLDataTypeCode::BOOL, 8),
            DType::Int8 => (DLDataTypeCode::INT, 8),
            DType::Int16 => (DLDataTypeCode::INT, 16),
            DType::Int32 => (DLDataTypeCode::INT, 32),
            DType::Int64 => (DLDataTypeCode::INT, 64),
            DType::Uint8 => (DLDataTypeCode::UINT, 8),
            DType::Uint16 => (DLDataTypeCode::UINT, 16),
            DType::Uint32 => (DLDataTypeCode::UINT, 32),
            DType::Uint64 => (DLDataTypeCode::UINT, 64),
            DType::Float16 => (DLDataTypeCode::FLOAT, 16),
            DType::Bfloat16 => (DLDataTypeCode::BFLOAT, 16),
            DType::Float32 => (DLDataTypeCode::FLOAT, 32),
            DType::Float64 => (DLDataTypeCode::FLOAT, 64),
            DType::Complex64 => (DLDataTypeCode::COMPLEX, 64),
            DType::Complex128 => (DLDataTypeCode::COMPLEX, 128),
        };
        DLDataType::scalar(code, bits)
    }

    impl Tensor {
        fn managed<M: ManagedTensorBase>(&self) -> PyResult<Managed<M>> {
            let t = &self.inner;
            let owner: Box<Arc<Buffer>> = Box::new(t.buffer.clone());
            let prepared = match &t.strides {
                Some(strides) => Dynamic::new(t.shape.clone(), strides.clone()).prepare_as::<M>(),
                None => Dynamic::compact(t.shape.clone()).prepare_as::<M>(),
            };
            let mut init = prepared
                .map_err(|e| PyBufferError::new_err(e.to_string()))?
                .initialize(owner);
            init.set_data(t.buffer.as_ptr() as *mut c_void)
                .set_device(DLDevice::CPU)
                .set_dtype(dl_dtype(t.dtype))
                .set_byte_offset(t.byte_offset as u64);
            // SAFETY: the data pointer, offset, shape and dtype describe memory inside the
            // buffer (`HostTensor::new` checks the size), and the managed tensor's context
            // holds an `Arc` of that buffer, so the memory outlives the managed tensor.
            // Strides are compact, or a permutation of a compact layout over the same bytes
            // (`with_strides`); no flags are claimed.
            Ok(unsafe { init.finish() })
        }
    }

    impl DlpackExporter for Tensor {
        fn device(&self) -> DLDevice {
            DLDevice::CPU
        }

        fn flags(&self) -> DlpackFlags {
            DlpackFlags::empty()
        }

        fn prepare_export(&self, _py: Python<'_>, _request: &ExportRequest<'_>) -> PyResult<()> {
            Ok(())
        }

        fn export_legacy(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensor>> {
            self.managed()
        }

        fn export_versioned(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensorVersioned>> {
            self.managed()
        }
    }

    #[pymethods]
    impl Tensor {
        #[pyo3(signature = (stream=None, *, max_version=None, dl_device=None, copy=None))]
        fn __dlpack__(
            &self,
            py: Python<'_>,
            stream: Option<Bound<'_, PyAny>>,
            max_version: Option<(u32, u32)>,
            dl_device: Option<(u32, i32)>,
            copy: Option<bool>,
        ) -> PyResult<Py<PyAny>> {
            let request = ExportRequest::parse(stream.as_ref(), max_version, dl_device, copy)?;
            export_dlpack(self, py, request)
        }

        fn __dlpack_device__(&self) -> (u32, i32) {
            (DLDevice::CPU.device_type.0, 0)
        }

        #[getter]
        fn shape(&self) -> Vec<i64> {
            self.inner.shape.clone()
        }

        #[getter]
        fn dtype(&self) -> &'static str {
            self.inner.dtype.name()
        }

        fn __repr__(&self) -> String {
            format!(
                "Tensor(shape={:?}, dtype={})",
                self.inner.shape,
                self.inner.dtype.name()
            )
        }
    }
}

#[cfg(all(feature = "python", feature = "cuda"))]
pub use cuda_export::CudaTensor;

/// CUDA tensors through DLPack, following the stream protocol: `__dlpack__(stream=s)` makes
/// the consumer's stream `s` wait for the event that marks the tensor ready (no host wait), and
/// remembers `s` so the memory is freed only after the work `s` has queued by then.
#[cfg(all(feature = "python", feature = "cuda"))]
mod cuda_export {
    use std::ffi::c_void;

    use dlpark::ffi::{DLDevice, DLManagedTensor, DLManagedTensorVersioned};
    use dlpark::metadata::Dynamic;
    use dlpark::python::{CudaStreamRequest, DlpackExporter, ExportRequest, export_dlpack};
    use dlpark::{DlpackFlags, Managed, ManagedTensorBase};
    use pyo3::exceptions::{PyBufferError, PyRuntimeError};
    use pyo3::prelude::*;

    use super::export::dl_dtype;
    use crate::transform::cuda::DeviceTensor;

    /// A GPU tensor owned by slipstream. Convert it with `torch.from_dlpack` (zero copy, on
    /// the current stream); it stays valid as long as any result does.
    #[pyclass(module = "slipstream._native", frozen)]
    pub struct CudaTensor {
        pub inner: DeviceTensor,
    }

    impl CudaTensor {
        fn device(&self) -> DLDevice {
            DLDevice::cuda(self.inner.memory.gpu().ordinal() as i32)
        }

        fn managed<M: ManagedTensorBase>(&self) -> PyResult<Managed<M>> {
            let t = &self.inner;
            let owner = Box::new(t.memory.clone());
            let mut init = Dynamic::new(t.shape.clone(), t.strides.clone())
                .prepare_as::<M>()
                .map_err(|e| PyBufferError::new_err(e.to_string()))?
                .initialize(owner);
            init.set_data(t.memory.ptr() as *mut c_void)
                .set_device(self.device())
                .set_dtype(dl_dtype(t.dtype))
                .set_byte_offset(0);
            // SAFETY: the pointer, shape, strides and dtype describe the device allocation the
            // kernel wrote (its size is the batch tensor's, allocated for exactly this layout),
            // and the managed tensor's context holds an `Arc` of that allocation, so it is
            // freed only after the consumer's deleter runs (and then in stream order after the
            // consumer's queued work).
            Ok(unsafe { init.finish() })
        }
    }

    impl DlpackExporter for CudaTensor {
        fn device(&self) -> DLDevice {
            CudaTensor::device(self)
        }

        fn flags(&self) -> DlpackFlags {
            DlpackFlags::empty()
        }

        fn prepare_export(&self, _py: Python<'_>, request: &ExportRequest<'_>) -> PyResult<()> {
            let stream = match request.cuda_stream()? {
                CudaStreamRequest::NoSync => return Ok(()),
                // The protocol's default: the legacy default stream.
                CudaStreamRequest::Omitted | CudaStreamRequest::LegacyDefault => 1,
                CudaStreamRequest::PerThreadDefault => 2,
                CudaStreamRequest::Pointer(p) => p,
            };
            let memory = &self.inner.memory;
            memory
                .gpu()
                .make_wait(stream, &self.inner.ready)
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            memory.consumed_on(stream);
            Ok(())
        }

        fn export_legacy(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensor>> {
            self.managed()
        }

        fn export_versioned(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensorVersioned>> {
            self.managed()
        }
    }

    #[pymethods]
    impl CudaTensor {
        #[pyo3(signature = (stream=None, *, max_version=None, dl_device=None, copy=None))]
        fn __dlpack__(
            &self,
            py: Python<'_>,
            stream: Option<Bound<'_, PyAny>>,
            max_version: Option<(u32, u32)>,
            dl_device: Option<(u32, i32)>,
            copy: Option<bool>,
        ) -> PyResult<Py<PyAny>> {
            let request = ExportRequest::parse(stream.as_ref(), max_version, dl_device, copy)?;
            export_dlpack(self, py, request)
        }

        fn __dlpack_device__(&self) -> (u32, i32) {
            let d = self.device();
            (d.device_type.0, d.device_id)
        }

        #[getter]
        fn shape(&self) -> Vec<i64> {
            self.inner.shape.clone()
        }

        #[getter]
        fn dtype(&self) -> &'static str {
            self.inner.dtype.name()
        }

        /// Block the calling thread until the tensor is written (for timing and tests).
        fn synchronize(&self, py: Python<'_>) -> PyResult<()> {
            py.detach(|| self.inner.ready.synchronize())
                .map_err(|e| PyRuntimeError::new_err(format!("CUDA: {e:?}")))
        }

        fn __repr__(&self) -> String {
            format!(
                "CudaTensor(cuda:{}, shape={:?}, dtype={})",
                self.inner.memory.gpu().ordinal(),
                self.inner.shape,
                self.inner.dtype.name()
            )
        }
    }
}
