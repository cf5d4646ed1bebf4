//! Tensors in GPU memory, written by the GPU pipeline on the loader's stream.

use std::sync::Arc;

use cudarc::driver::{CudaEvent, result};

use crate::cuda::{DeviceMemory, cuda_error};
use crate::dtype::DType;
use crate::error::Result;

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

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn strides(&self) -> &[i64] {
        &self.strides
    }

    pub fn ordinal(&self) -> usize {
        self.memory.gpu().ordinal()
    }

    /// The device address of the first element.
    pub fn data_ptr(&self) -> u64 {
        self.memory.ptr()
    }

    /// What keeps the memory alive for a consumer that holds the tensor through DLPack.
    pub fn keep_alive(&self) -> Box<dyn std::any::Any + Send> {
        Box::new(Arc::clone(&self.memory))
    }

    /// The DLPack stream protocol: make the consumer's `stream` (a raw `CUstream`, or the
    /// sentinels 1 and 2) wait for the tensor without a host wait, and free the memory only
    /// after the work `stream` has queued by the time it is dropped.
    pub fn hand_to_stream(&self, stream: usize) -> Result<()> {
        self.memory.gpu().make_wait(stream, &self.ready)?;
        self.memory.consumed_on(stream);
        Ok(())
    }

    /// Block the calling thread until the tensor is written.
    pub fn synchronize(&self) -> Result<()> {
        self.ready
            .synchronize()
            .map_err(cuda_error("waiting for a batch"))
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
            self.ordinal(),
            self.shape,
            self.dtype.name()
        )
    }
}
