//! Counter-based randomness: every random choice is a pure function of its key.
//!
//! DESIGN.md requires that shuffles, crops and flips depend only on (seed, epoch, sample index,
//! view), never on batch composition, thread count or device. So there is no shared generator
//! state: a [`Stream`] is created from a key and produces the same numbers wherever it runs.
//! The mixing function is SplitMix64's finaliser, which is simple to reimplement in CUDA or
//! Python when another component must reproduce a choice.

/// SplitMix64's output function: a bijective 64-bit mixer with good avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The golden-ratio increment of SplitMix64's counter.
pub const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hash a sequence of words into one key. Order matters; lengths are fixed by the caller.
#[inline]
pub fn key(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(GOLDEN, |acc, &w| mix64(acc ^ mix64(w.wrapping_add(GOLDEN))))
}

/// Domain tags so that different uses of the same (seed, epoch) never share numbers.
pub mod domain {
    pub const SHUFFLE: u64 = 1;
    pub const QUASI_PAGES: u64 = 2;
    pub const QUASI_WINDOW: u64 = 3;
    pub const REPLACE: u64 = 5;
}

/// A deterministic stream of 64-bit numbers (SplitMix64 over a keyed counter).
#[derive(Debug, Clone)]
pub struct Stream {
    state: u64,
}

impl Stream {
    pub fn new(key: u64) -> Self {
        Stream { state: key }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's multiply-and-reject).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = (self.next_u64() as u128) * (n as u128);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_uniform_enough() {
        let mut s = Stream::new(key(&[7, 1]));
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[s.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_400..10_600).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_keyed() {
        let mut a: Vec<u32> = (0..1000).collect();
        let mut b = a.clone();
        Stream::new(key(&[1, 2])).shuffle(&mut a);
        Stream::new(key(&[1, 2])).shuffle(&mut b);
        assert_eq!(a, b);
        let mut c: Vec<u32> = (0..1000).collect();
        Stream::new(key(&[1, 3])).shuffle(&mut c);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn key_depends_on_order() {
        assert_ne!(key(&[1, 2]), key(&[2, 1]));
        assert_ne!(key(&[0]), key(&[0, 0]));
    }
}
