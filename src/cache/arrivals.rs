//! Which parts of a cache still being written may be read, and in which order its builder
//! should fetch the rest: the meeting point of a streamed build (`streamed.rs`) and the
//! readers of its cache.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::{Error, Location, Result};

/// The parts (a LitData dataset's chunks) of a cache being built in the order they arrive.
/// Only S3 datasets stream (the `s3` feature builds them); readers wait on it either way.
pub struct Arrivals {
    /// The process whose thread builds the cache; a forked child (a DataLoader worker) sees
    /// none of its progress, only the finished file.
    builder_pid: u32,
    /// The file being written, and the cache it becomes once complete.
    tmp: PathBuf,
    dest: PathBuf,
    /// First sample of each part, ascending.
    part_starts: Vec<u64>,
    /// Part `i`'s values and table rows are written and will not change.
    published: Vec<AtomicBool>,
    /// Every part is published (the fast path of [`Arrivals::wait`]).
    complete: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Why the build stopped before publishing everything.
    failed: Option<Error>,
    /// Parts in the order readers will want them (the last preference given wins).
    preferred: Vec<usize>,
    /// Parts the builder has started fetching.
    started: Vec<bool>,
    /// How many parts are published.
    #[cfg(any(feature = "s3", test))]
    published: usize,
}

impl Arrivals {
    #[cfg(any(feature = "s3", test))]
    pub fn new(part_starts: Vec<u64>, tmp: PathBuf, dest: PathBuf) -> Arrivals {
        let n = part_starts.len();
        Arrivals {
            builder_pid: std::process::id(),
            tmp,
            dest,
            published: (0..n).map(|_| AtomicBool::new(false)).collect(),
            complete: AtomicBool::new(n == 0),
            part_starts,
            state: Mutex::new(State {
                started: vec![false; n],
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The part sample `sample` is in.
    pub fn part_of(&self, sample: u64) -> usize {
        self.part_starts
            .partition_point(|&s| s <= sample)
            .saturating_sub(1)
    }

    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    #[cfg(any(feature = "s3", test))]
    /// Part `i` is written; readers may read its samples.
    pub fn publish(&self, i: usize) {
        let mut state = self.state();
        if !self.published[i].swap(true, Ordering::Release) {
            state.published += 1;
        }
        if state.published == self.published.len() {
            self.complete.store(true, Ordering::Release);
        }
        self.changed.notify_all();
    }

    #[cfg(any(feature = "s3", test))]
    /// The build stopped: readers waiting for parts not yet published get `why`.
    pub fn fail(&self, why: Error) {
        self.state().failed.get_or_insert(why);
        self.changed.notify_all();
    }

    /// Block until the part of `sample` is published, or say why it never will be.
    pub fn wait(&self, sample: u64) -> Result<()> {
        if self.is_complete() {
            return Ok(());
        }
        if std::process::id() != self.builder_pid {
            return self.wait_in_child();
        }
        let part = self.part_of(sample);
        let mut state = self.state();
        if !state.started[part] && state.preferred.first() != Some(&part) {
            // Asked for before its turn (`ds[i]`): it goes first.
            state.preferred.insert(0, part);
        }
        loop {
            if self.published[part].load(Ordering::Acquire) {
                return Ok(());
            }
            if let Some(why) = &state.failed {
                return Err(why.again());
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// In a process forked from the builder's: wait until the build's file was renamed into
    /// place (everything written: the child's map of it shows the builder's writes), or
    /// removed without becoming the cache (the build failed).
    fn wait_in_child(&self) -> Result<()> {
        loop {
            if self.dest.exists() && !self.tmp.exists() {
                self.complete.store(true, Ordering::Release);
                return Ok(());
            }
            if !self.tmp.exists() && !self.dest.exists() {
                return Err(Error::cache(
                    Location::file(&self.dest),
                    "its download stopped in the process that opened the dataset",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fetch the parts of `samples` first, in the order the samples first need them.
    pub fn prefer(&self, samples: impl IntoIterator<Item = u64>) {
        if self.is_complete() {
            return;
        }
        let mut seen = vec![false; self.part_starts.len()];
        let mut order = Vec::new();
        for sample in samples {
            let part = self.part_of(sample);
            if !std::mem::replace(&mut seen[part], true) {
                order.push(part);
            }
        }
        self.state().preferred = order;
    }

    #[cfg(any(feature = "s3", test))]
    /// Whether a reader has said what it wants first.
    pub fn has_preference(&self) -> bool {
        !self.state().preferred.is_empty()
    }

    #[cfg(any(feature = "s3", test))]
    /// The next part for the builder to fetch: the first preferred one not yet started,
    /// else the first in index order; `None` once every part is started, or the build failed.
    pub fn next_to_fetch(&self) -> Option<usize> {
        let mut state = self.state();
        if state.failed.is_some() {
            return None;
        }
        let State {
            preferred, started, ..
        } = &mut *state;
        let next = preferred
            .iter()
            .copied()
            .find(|&p| !started[p])
            .or_else(|| started.iter().position(|s| !s))?;
        started[next] = true;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_parts_are_fetched_first_then_the_rest_in_order() {
        let a = Arrivals::new(vec![0, 10, 20, 30, 40], PathBuf::new(), PathBuf::new());
        assert_eq!(a.next_to_fetch(), Some(0));
        a.prefer([35, 31, 12, 0, 45]);
        assert_eq!(a.next_to_fetch(), Some(3));
        assert_eq!(a.next_to_fetch(), Some(1));
        assert_eq!(a.next_to_fetch(), Some(4), "part 0 was started already");
        assert_eq!(a.next_to_fetch(), Some(2));
        assert_eq!(a.next_to_fetch(), None);
    }

    #[test]
    fn readers_wait_for_their_part_or_learn_why_it_never_comes() {
        let a = std::sync::Arc::new(Arrivals::new(vec![0, 10], PathBuf::new(), PathBuf::new()));
        a.publish(1);
        assert!(a.wait(15).is_ok());
        assert!(!a.is_complete());
        let waiter = {
            let a = std::sync::Arc::clone(&a);
            std::thread::spawn(move || a.wait(3))
        };
        a.fail(Error::invalid("chunk-0.bin: 403"));
        let err = waiter.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "chunk-0.bin: 403");
        a.publish(0);
        assert!(a.is_complete());
        assert!(a.wait(3).is_ok());
    }
}
