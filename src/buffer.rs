//! Batch memory: aligned host buffers, recycled through a pool once nobody holds them.
//!
//! A batch's bytes go into a [`Buffer`] taken from a [`BufferPool`]. The buffer is shared
//! (`Arc`) with every tensor exported from it; when the last reference goes (the user dropped
//! the batch), `Drop` hands the allocation back to the pool for a later batch. So a batch the
//! user keeps is never overwritten, and a loop that drops its batches reuses a few warm
//! allocations instead of page-faulting fresh memory for every batch.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

use crate::error::{Error, Result};

/// DLPack asks for data pointers aligned like CUDA allocations.
pub const ALIGN: usize = 256;

/// A zero-initialised, `ALIGN`-aligned heap allocation.
struct Allocation {
    ptr: NonNull<u8>,
    capacity: usize,
}

// SAFETY: `Allocation` owns its memory exclusively (like a `Box<[u8]>`); moving or sharing the
// handle between threads is as safe as for a box.
unsafe impl Send for Allocation {}
unsafe impl Sync for Allocation {}

impl Allocation {
    /// `capacity` zeroed bytes, or `None` when the memory cannot be had.
    fn try_new(capacity: usize) -> Option<Allocation> {
        let capacity = capacity.max(ALIGN).checked_next_multiple_of(ALIGN)?;
        let layout = Layout::from_size_align(capacity, ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        Some(Allocation {
            ptr: NonNull::new(ptr)?,
            capacity,
        })
    }

    fn new(capacity: usize) -> Allocation {
        Allocation::try_new(capacity).unwrap_or_else(|| {
            let layout = Layout::from_size_align(capacity.max(1), ALIGN).expect("buffer size");
            std::alloc::handle_alloc_error(layout)
        })
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout, freed once.
        unsafe {
            dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.capacity, ALIGN),
            )
        }
    }
}

/// Bytes owned by Rust, handed to consumers through DLPack.
pub struct Buffer {
    allocation: Option<Allocation>,
    len: usize,
    pool: Weak<PoolInner>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.len)
    }
}

impl Buffer {
    /// A buffer of `len` zero bytes outside any pool.
    pub fn zeroed(len: usize) -> Buffer {
        Buffer {
            allocation: Some(Allocation::new(len)),
            len,
            pool: Weak::new(),
        }
    }

    /// A buffer holding a copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Buffer {
        let mut b = Buffer::zeroed(bytes.len());
        b.as_mut_slice().copy_from_slice(bytes);
        b
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.allocation.as_ref().expect("live buffer").ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the allocation holds at least `len` initialised (zeroed, then written)
        // bytes and lives as long as `self`. Rust code writes only through `&mut self`.
        // Consumers that received the memory through DLPack may write to it too; slipstream
        // only reads a buffer after export to copy values out for the user (`ragged[i]`),
        // under the GIL that those writers also hold.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` means nobody else holds this buffer yet.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let (Some(pool), Some(allocation)) = (self.pool.upgrade(), self.allocation.take()) {
            pool.give_back(allocation);
        }
    }
}

struct PoolInner {
    free: Mutex<Vec<Allocation>>,
    max_free: usize,
}

impl PoolInner {
    fn give_back(&self, allocation: Allocation) {
        let mut free = self.free.lock().unwrap();
        if free.len() < self.max_free {
            free.push(allocation);
        }
    }
}

/// Recycles allocations of buffers that their users have dropped.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

impl BufferPool {
    /// A pool keeping at most `max_free` idle allocations.
    pub fn new(max_free: usize) -> BufferPool {
        BufferPool {
            inner: Arc::new(PoolInner {
                free: Mutex::new(Vec::new()),
                max_free,
            }),
        }
    }

    /// A buffer of `len` bytes, or an error when the memory cannot be had (batch sizes come
    /// from the data and the user). Its contents are unspecified (old data or zeros): callers
    /// overwrite all of it.
    pub fn take(&self, len: usize) -> Result<Buffer> {
        let reused = {
            let mut free = self.inner.free.lock().unwrap();
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, a)| a.capacity >= len)
                .min_by_key(|(_, a)| a.capacity)
                .map(|(i, _)| i);
            match best {
                Some(i) => Some(free.swap_remove(i)),
                None => {
                    // Nothing fits: retire the largest too-small one so the pool stays bounded.
                    if let Some(i) = (0..free.len()).max_by_key(|&i| free[i].capacity) {
                        free.swap_remove(i);
                    }
                    None
                }
            }
        };
        // Headroom so that batches whose size varies a little reuse the same allocations.
        let allocation = match reused {
            Some(allocation) => allocation,
            None => Allocation::try_new(len.saturating_add(len / 8))
                .or_else(|| Allocation::try_new(len))
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "not enough memory for a batch buffer of {len} bytes"
                    ))
                })?,
        };
        Ok(Buffer {
            allocation: Some(allocation),
            len,
            pool: Arc::downgrade(&self.inner),
        })
    }

    /// Idle allocations waiting for reuse.
    pub fn idle(&self) -> usize {
        self.inner.free.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_recycled() {
        let pool = BufferPool::new(2);
        let mut a = pool.take(1000).unwrap();
        assert_eq!(a.as_ptr() as usize % ALIGN, 0);
        a.as_mut_slice().fill(7);
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(pool.idle(), 1);
        let b = pool.take(900).unwrap();
        assert_eq!(b.as_ptr(), ptr, "a dropped buffer's allocation is reused");
        assert_eq!(pool.idle(), 0);
        let c = pool.take(1000).unwrap();
        assert_ne!(c.as_ptr(), ptr, "a held buffer is never handed out twice");
    }

    #[test]
    fn pool_stays_bounded() {
        let pool = BufferPool::new(1);
        let bufs: Vec<_> = (0..4).map(|_| pool.take(64).unwrap()).collect();
        drop(bufs);
        assert_eq!(pool.idle(), 1);
        drop(pool.take(1 << 20).unwrap());
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn a_buffer_that_cannot_be_had_is_an_error_not_an_abort() {
        let pool = BufferPool::new(1);
        let e = pool.take(usize::MAX / 2).unwrap_err();
        assert!(e.to_string().contains("not enough memory"), "{e}");
    }
}
