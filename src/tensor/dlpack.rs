//! The DLPack exporter of every tensor slipstream hands to Python: `_native.Tensor`.
//!
//! Each export creates a fresh managed tensor whose context holds a reference to the memory.
//! GPU tensors follow the stream protocol: `__dlpack__(stream=s)` makes the consumer's stream
//! `s` wait for the event that marks the tensor ready (no host wait), and the memory is freed
//! only after the work `s` has queued by then.

use std::ffi::c_void;

use dlpark::ffi::{
    DLDataType, DLDataTypeCode, DLDevice, DLManagedTensor, DLManagedTensorVersioned,
};
use dlpark::metadata::Dynamic;
use dlpark::python::{CudaStreamRequest, DlpackExporter, ExportRequest, export_dlpack};
use dlpark::{DlpackFlags, Managed, ManagedTensorBase};
use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::prelude::*;

use super::either::Tensor;
use crate::dtype::DType;

/// A tensor owned by slipstream, on the CPU or a GPU. Convert it with `torch.from_dlpack` or
/// (on the CPU) `numpy.from_dlpack`, zero copy; it stays valid as long as any result does.
#[pyclass(name = "Tensor", module = "slipstream._native", frozen)]
pub struct PyTensor {
    pub inner: Tensor,
}

fn dl_dtype(dtype: DType) -> DLDataType {
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

impl PyTensor {
    fn device(&self) -> DLDevice {
        match &self.inner {
            Tensor::Host(_) => DLDevice::CPU,
            Tensor::Device(t) => DLDevice::cuda(t.ordinal() as i32),
        }
    }

    fn shape(&self) -> &[i64] {
        match &self.inner {
            Tensor::Host(t) => &t.shape,
            Tensor::Device(t) => t.shape(),
        }
    }

    fn dtype(&self) -> DType {
        match &self.inner {
            Tensor::Host(t) => t.dtype,
            Tensor::Device(t) => t.dtype(),
        }
    }

    fn managed<M: ManagedTensorBase>(&self) -> PyResult<Managed<M>> {
        // Data pointer, byte offset, strides (`None`: compact) and the owner of the memory.
        let (data, offset, strides, owner): (_, _, _, Box<dyn std::any::Any + Send>) =
            match &self.inner {
                Tensor::Host(t) => (
                    t.buffer.as_ptr() as *mut c_void,
                    t.byte_offset,
                    t.strides.clone(),
                    Box::new(t.buffer.clone()),
                ),
                Tensor::Device(t) => (
                    t.data_ptr() as *mut c_void,
                    0,
                    Some(t.strides().to_vec()),
                    t.keep_alive(),
                ),
            };
        let shape = self.shape().to_vec();
        let prepared = match strides {
            Some(strides) => Dynamic::new(shape, strides).prepare_as::<M>(),
            None => Dynamic::compact(shape).prepare_as::<M>(),
        };
        let mut init = prepared
            .map_err(|e| PyBufferError::new_err(e.to_string()))?
            .initialize(Box::new(owner));
        init.set_data(data)
            .set_device(self.device())
            .set_dtype(dl_dtype(self.dtype()))
            .set_byte_offset(offset as u64);
        // SAFETY: the pointer, offset, shape, strides and dtype describe memory inside the
        // tensor's allocation (a host buffer whose size `HostTensor::new` checks, or the device
        // allocation the kernel wrote, sized for exactly this layout), and the managed tensor's
        // context owns a reference to that allocation, so the memory outlives the managed
        // tensor (device memory is then freed in stream order after the consumer's queued
        // work). Strides are compact, or a permutation of a compact layout over the same
        // bytes; no flags are claimed.
        Ok(unsafe { init.finish() })
    }
}

impl DlpackExporter for PyTensor {
    fn device(&self) -> DLDevice {
        PyTensor::device(self)
    }

    fn flags(&self) -> DlpackFlags {
        DlpackFlags::empty()
    }

    fn prepare_export(&self, _py: Python<'_>, request: &ExportRequest<'_>) -> PyResult<()> {
        let Tensor::Device(t) = &self.inner else {
            return Ok(());
        };
        let stream = match request.cuda_stream()? {
            CudaStreamRequest::NoSync => return Ok(()),
            // The protocol's default: the legacy default stream.
            CudaStreamRequest::Omitted | CudaStreamRequest::LegacyDefault => 1,
            CudaStreamRequest::PerThreadDefault => 2,
            CudaStreamRequest::Pointer(p) => p,
        };
        t.hand_to_stream(stream)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn export_legacy(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensor>> {
        self.managed()
    }

    fn export_versioned(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensorVersioned>> {
        self.managed()
    }
}

#[pymethods]
impl PyTensor {
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
        let d = PyTensor::device(self);
        (d.device_type.0, d.device_id)
    }

    #[getter(shape)]
    fn py_shape(&self) -> Vec<i64> {
        self.shape().to_vec()
    }

    #[getter(dtype)]
    fn py_dtype(&self) -> &'static str {
        self.dtype().name()
    }

    /// Block the calling thread until the tensor is written (for timing and tests; a CPU
    /// tensor is always written).
    fn synchronize(&self, py: Python<'_>) -> PyResult<()> {
        match &self.inner {
            Tensor::Host(_) => Ok(()),
            Tensor::Device(t) => py
                .detach(|| t.synchronize())
                .map_err(|e| PyRuntimeError::new_err(e.to_string())),
        }
    }

    fn __repr__(&self) -> String {
        let shape = self.shape();
        let dtype = self.dtype().name();
        match &self.inner {
            Tensor::Host(_) => format!("Tensor(shape={shape:?}, dtype={dtype})"),
            Tensor::Device(t) => {
                format!(
                    "CudaTensor(cuda:{}, shape={shape:?}, dtype={dtype})",
                    t.ordinal()
                )
            }
        }
    }
}
