//! The ring of pinned batch slots. A slot travels with its batch from `prepare` to `submit`
//! and comes back when the batch is done with it, so no two batches in flight share one, and
//! a slot is reused only once the GPU work that read it has completed.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::CudaEvent;

use crate::cuda::{Gpu, PinnedMemory, cuda_error};
use crate::error::Result;

pub(super) struct Slot {
    /// The batch's compressed images, back to back.
    pub(super) bytes: PinnedMemory,
    /// The batch's `ViewParams`.
    pub(super) params: PinnedMemory,
    /// Marks the end of the GPU work that reads this slot.
    pub(super) done: Option<Arc<CudaEvent>>,
}

pub(super) struct Ring {
    /// Free slots, oldest first.
    free: Mutex<Receiver<Slot>>,
    returns: Sender<Slot>,
}

impl Ring {
    /// `slots` slots, at least three: one batch being submitted, one handed over, one being
    /// prepared, so that `prepare` never waits for a slot that only a later `submit` would
    /// free.
    pub(super) fn new(gpu: &Arc<Gpu>, slots: usize) -> Result<Ring> {
        let (returns, free) = channel();
        for _ in 0..slots.max(3) {
            returns
                .send(Slot {
                    bytes: gpu.pinned(1 << 20)?,
                    params: gpu.pinned(64 << 10)?,
                    done: None,
                })
                .expect("the receiver is here");
        }
        Ok(Ring {
            free: Mutex::new(free),
            returns,
        })
    }

    /// The oldest free slot, once the GPU work that last read it is done, and the time spent
    /// waiting for it.
    pub(super) fn take(&self) -> Result<(SlotLease, Duration)> {
        let wait = Instant::now();
        let mut slot = SlotLease {
            slot: Some(
                self.free
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .recv()
                    .expect("the ring holds a sender"),
            ),
            ring: self.returns.clone(),
        };
        if let Some(done) = &slot.done {
            done.synchronize()
                .map_err(cuda_error("waiting for a ring slot"))?;
        }
        slot.done = None;
        Ok((slot, wait.elapsed()))
    }
}

/// A ring slot taken for one batch. It goes back to the ring when dropped, whatever becomes
/// of the batch (submitted, failed, or dropped by a stopped loader).
pub(super) struct SlotLease {
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
