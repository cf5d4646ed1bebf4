//! A decoded chunk: its items in LitData's classic encoding, whatever layout the file had, and
//! the pool of byte buffers chunks are decoded into.

use std::ops::Range;
use std::sync::Mutex;

/// A chunk's items in classic encoding.
#[derive(Debug)]
pub struct DecodedChunk {
    pub bytes: Vec<u8>,
    pub items: Vec<Range<usize>>,
}

impl DecodedChunk {
    pub fn item(&self, i: usize) -> &[u8] {
        &self.bytes[self.items[i].clone()]
    }
}

/// Byte vectors kept for reuse. Chunks are tens of MB; decoding each into fresh memory costs
/// more in page faults than the decoding itself, so buffers go back here once written.
#[derive(Debug, Default)]
pub struct Recycler {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Recycler {
    /// An empty vector with room for at least `capacity` bytes, or an error when that much
    /// memory cannot be had (sizes come from the files, which may lie).
    pub fn take(&self, capacity: usize) -> Result<Vec<u8>, String> {
        let mut v = {
            let mut free = self.free.lock().unwrap();
            match free.iter().position(|v| v.capacity() >= capacity) {
                Some(i) => free.swap_remove(i),
                None => free.pop().unwrap_or_default(),
            }
        };
        v.clear();
        v.try_reserve(capacity)
            .map_err(|_| format!("not enough memory for {capacity} bytes"))?;
        Ok(v)
    }

    pub fn give(&self, v: Vec<u8>) {
        let mut free = self.free.lock().unwrap();
        if free.len() < 16 {
            free.push(v);
        }
    }
}
