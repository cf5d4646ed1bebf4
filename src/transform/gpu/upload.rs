//! A batch's small host tensors (its index and numeric fields) copied to the GPU on the
//! loader's stream, after the batch's kernels, so they arrive where the images are and in the
//! same stream order. The copies read pinned staging buffers, each reused only once the copies
//! that last read it have completed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaEvent, result, sys};

use crate::cuda::{Gpu, PinnedMemory, cuda_error};
use crate::error::Result;
use crate::tensor::{DeviceTensor, HostTensor};

struct Staging {
    pinned: PinnedMemory,
    /// Recorded after the copies that read `pinned`.
    done: Option<Arc<CudaEvent>>,
}

pub(super) struct Uploads {
    /// How many staging buffers to rotate through (the batches that may be in flight).
    count: usize,
    /// Oldest first.
    staging: Mutex<VecDeque<Staging>>,
}

impl Uploads {
    pub(super) fn new(count: usize) -> Uploads {
        Uploads {
            count: count.max(1),
            staging: Mutex::new(VecDeque::new()),
        }
    }

    /// `tensors` (C-contiguous) as device tensors on `gpu`, ready when their shared event is.
    pub(super) fn upload(
        &self,
        gpu: &Arc<Gpu>,
        tensors: &[&HostTensor],
    ) -> Result<Vec<DeviceTensor>> {
        let total: usize = tensors.iter().map(|t| t.nbytes()).sum();
        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        let mut buffer = if staging.len() < self.count {
            Staging {
                pinned: gpu.pinned(total.max(64 << 10).next_power_of_two())?,
                done: None,
            }
        } else {
            staging.pop_front().expect("count >= 1")
        };
        if let Some(done) = buffer.done.take() {
            done.synchronize()
                .map_err(cuda_error("waiting for an upload buffer"))?;
        }
        if buffer.pinned.len() < total {
            buffer.pinned = gpu.pinned(total.next_power_of_two())?;
        }
        let ready = Arc::new(
            gpu.context()
                .new_event(Some(sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC))
                .map_err(cuda_error("creating a CUDA event"))?,
        );
        let copied = copy_through(gpu, &mut buffer.pinned, tensors, &ready);
        if copied.is_err() {
            // Copies queued before the failure may still read the buffer.
            let _ = gpu.stream().synchronize();
        }
        let out = copied?;
        ready
            .record(gpu.stream())
            .map_err(cuda_error("recording a CUDA event"))?;
        buffer.done = Some(ready);
        staging.push_back(buffer);
        Ok(out)
    }
}

/// Queue one copy per tensor from `pinned` (filled here) into a new device allocation; each
/// tensor is ready at `ready`, which the caller records after these copies.
fn copy_through(
    gpu: &Arc<Gpu>,
    pinned: &mut PinnedMemory,
    tensors: &[&HostTensor],
    ready: &Arc<CudaEvent>,
) -> Result<Vec<DeviceTensor>> {
    let mut out = Vec::with_capacity(tensors.len());
    let mut at = 0;
    for t in tensors {
        assert!(t.strides.is_none(), "uploads are C-contiguous");
        let n = t.nbytes();
        pinned.as_mut_slice()[at..at + n].copy_from_slice(t.bytes());
        let memory = gpu.alloc(n)?;
        // SAFETY: the device allocation holds `n` bytes; the pinned source is not written
        // again until `ready` (recorded after this copy) has completed.
        unsafe {
            result::memcpy_htod_async(
                memory.ptr(),
                &pinned.as_slice()[at..at + n],
                gpu.stream().cu_stream(),
            )
        }
        .map_err(cuda_error("copying a batch's fields to the GPU"))?;
        out.push(DeviceTensor {
            memory: Arc::new(memory),
            ready: Arc::clone(ready),
            dtype: t.dtype,
            shape: t.shape.clone(),
            strides: c_strides(&t.shape),
        });
        at += n;
    }
    Ok(out)
}

/// Element strides of a C-ordered tensor of `shape`.
fn c_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

#[cfg(test)]
mod tests {
    #[test]
    fn c_strides_count_elements_from_the_last_dimension() {
        assert_eq!(super::c_strides(&[4, 3, 2]), [6, 2, 1]);
        assert_eq!(super::c_strides(&[5]), [1]);
        assert!(super::c_strides(&[]).is_empty());
    }
}
