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
    /// An empty vector with room for at least `capacity` bytes.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap();
        let mut v = match free.iter().position(|v| v.capacity() >= capacity) {
            Some(i) => free.swap_remove(i),
            None => free.pop().unwrap_or_default(),
        };
        v.clear();
        v.reserve(capacity);
        v
    }

    pub fn give(&self, v: Vec<u8>) {
        let mut free = self.free.lock().unwrap();
        if free.len() < 16 {
            free.push(v);
        }
    }
}
