//! Which samples each batch of an epoch holds, on each rank.
//!
//! The plan for (seed, epoch) is a pure function of the configuration: no state carries from
//! one epoch to the next, so resuming, re-running and running on another machine give the
//! same batches. Distribution follows `torch.utils.data.DistributedSampler`: every sample once
//! per epoch across ranks, the order padded by wrap-around to a multiple of the world size
//! (or cut to one when `drop_last`), rank `r` taking positions `r, r + world, ...`.
//!
//! `Order::QuasiRandom` is for datasets larger than RAM (FFCV's QUASI_RANDOM): samples are
//! grouped into the cache's pages of consecutive samples ([`CacheReader::page_starts`]: a
//! LitData dataset's chunks, else ~8 MiB of cache bytes), pages are shuffled, and samples are shuffled
//! only within windows of a few batches' worth of pages, so at any moment a rank reads from a
//! bounded set of pages. Ranks take contiguous stretches of that order (not strided
//! positions), so each rank's working set stays bounded too.

use std::str::FromStr;
use std::sync::Arc;

use crate::cache::CacheReader;
use crate::error::{Error, Result};
use crate::rng::{Stream, domain, key};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Index order (`shuffle=False`).
    Sequential,
    /// A full permutation per epoch.
    Random,
    /// Shuffled pages, samples shuffled within windows of pages.
    QuasiRandom,
}

impl Order {
    /// The order users ask for: `order` ("random" or "quasi_random") when `shuffle`, else
    /// index order.
    pub fn parse(order: &str, shuffle: bool) -> Result<Order> {
        let order: Order = order.parse()?;
        Ok(if shuffle { order } else { Order::Sequential })
    }
}

impl FromStr for Order {
    type Err = Error;
    /// A shuffled order by name (index order is `shuffle=False`, see [`Order::parse`]).
    fn from_str(s: &str) -> Result<Order> {
        match s {
            "random" => Ok(Order::Random),
            "quasi_random" => Ok(Order::QuasiRandom),
            other => Err(Error::invalid(format!(
                "order must be 'random' or 'quasi_random' (or shuffle=False for index order), \
                 not {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Samples in the dataset.
    pub dataset_len: u64,
    /// Restrict every epoch to these samples (in this order before shuffling).
    pub indices: Option<Arc<Vec<u64>>>,
    pub order: Order,
    pub seed: u64,
    pub batch_size: usize,
    pub drop_last: bool,
    pub rank: usize,
    pub world_size: usize,
    /// Sample indices where each page of the cache begins (ascending, starting at 0); used by
    /// `Order::QuasiRandom`.
    pub page_starts: Option<Arc<Vec<u64>>>,
}

impl SamplerConfig {
    /// One process, a new permutation of every sample each epoch, the last batch kept.
    pub fn shuffled(dataset_len: u64, batch_size: usize, seed: u64) -> SamplerConfig {
        SamplerConfig {
            dataset_len,
            indices: None,
            order: Order::Random,
            seed,
            batch_size,
            drop_last: false,
            rank: 0,
            world_size: 1,
            page_starts: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    per_rank: u64,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Result<Sampler> {
        if config.batch_size == 0 {
            return Err(Error::invalid("batch_size must be at least 1"));
        }
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(Error::invalid(format!(
                "rank {} is not in 0..world_size={}",
                config.rank, config.world_size
            )));
        }
        if let Some(indices) = &config.indices
            && let Some(bad) = indices.iter().find(|&&i| i >= config.dataset_len)
        {
            return Err(Error::invalid(format!(
                "indices contains {bad}, but the dataset has {} samples",
                config.dataset_len
            )));
        }
        let n = config
            .indices
            .as_ref()
            .map_or(config.dataset_len, |i| i.len() as u64);
        if n == 0 {
            return Err(Error::invalid(
                "there are no samples to load (empty indices)",
            ));
        }
        let world = config.world_size as u64;
        let per_rank = if config.drop_last {
            n / world
        } else {
            n.div_ceil(world)
        };
        if per_rank == 0 {
            return Err(Error::invalid(format!(
                "{n} samples cannot be split over {world} ranks with drop_last=True"
            )));
        }
        if config.order == Order::QuasiRandom
            && config
                .page_starts
                .as_ref()
                .is_none_or(|p| p.first() != Some(&0))
        {
            return Err(Error::invalid(
                "quasi-random order needs the cache's page layout",
            ));
        }
        Ok(Sampler { config, per_rank })
    }

    /// A sampler over the samples of `reader`, with the cache's page layout when the order
    /// needs it and `config` does not give one.
    pub fn for_cache(reader: &CacheReader, mut config: SamplerConfig) -> Result<Sampler> {
        if config.order == Order::QuasiRandom && config.page_starts.is_none() {
            config.page_starts = Some(Arc::new(reader.page_starts()));
        }
        Sampler::new(config)
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Samples this rank sees per epoch (before dropping an incomplete last batch).
    pub fn samples_per_rank(&self) -> u64 {
        self.per_rank
    }

    /// Batches per epoch on this rank.
    pub fn num_batches(&self) -> usize {
        let b = self.config.batch_size as u64;
        (if self.config.drop_last {
            self.per_rank / b
        } else {
            self.per_rank.div_ceil(b)
        }) as usize
    }

    fn population_len(&self) -> u64 {
        self.config
            .indices
            .as_ref()
            .map_or(self.config.dataset_len, |i| i.len() as u64)
    }

    fn population(&self, position: u64) -> u64 {
        match &self.config.indices {
            Some(indices) => indices[position as usize],
            None => position,
        }
    }

    /// The global order of the epoch: every sample of the population once.
    fn global_order(&self, epoch: u64) -> Vec<u64> {
        let n = self.population_len();
        let c = &self.config;
        match c.order {
            Order::Sequential => (0..n).map(|p| self.population(p)).collect(),
            Order::Random => {
                let mut order: Vec<u64> = (0..n).map(|p| self.population(p)).collect();
                Stream::new(key(&[domain::SHUFFLE, c.seed, epoch])).shuffle(&mut order);
                order
            }
            Order::QuasiRandom => self.quasi_random_order(epoch),
        }
    }

    fn quasi_random_order(&self, epoch: u64) -> Vec<u64> {
        let c = &self.config;
        let starts = c.page_starts.as_ref().expect("checked in new");
        // Group the population by page, keeping only pages that hold some of it.
        let mut pages: Vec<Vec<u64>> = vec![Vec::new(); starts.len()];
        for p in 0..self.population_len() {
            let sample = self.population(p);
            let page = starts.partition_point(|&s| s <= sample) - 1;
            pages[page].push(sample);
        }
        pages.retain(|p| !p.is_empty());
        Stream::new(key(&[domain::QUASI_PAGES, c.seed, epoch])).shuffle(&mut pages);

        let window = quasi_random_window(c.batch_size);
        let mut order = Vec::with_capacity(self.population_len() as usize);
        let mut start = 0;
        let mut w = 0u64;
        for page in pages {
            order.extend(page);
            if order.len() - start >= window {
                Stream::new(key(&[domain::QUASI_WINDOW, c.seed, epoch, w]))
                    .shuffle(&mut order[start..]);
                start = order.len();
                w += 1;
            }
        }
        Stream::new(key(&[domain::QUASI_WINDOW, c.seed, epoch, w])).shuffle(&mut order[start..]);
        order
    }

    /// The sample to deliver instead of `sample` when it cannot be (its `attempt`-th
    /// replacement): drawn from the same population, a pure function of its arguments.
    pub fn replacement(&self, epoch: u64, sample: u64, attempt: u64) -> u64 {
        let mut s = Stream::new(key(&[
            domain::REPLACE,
            self.config.seed,
            epoch,
            sample,
            attempt,
        ]));
        self.population(s.below(self.population_len()))
    }

    /// This rank's samples for the epoch, in the order they are loaded.
    pub fn rank_order(&self, epoch: u64) -> Vec<u64> {
        let c = &self.config;
        let mut order = self.global_order(epoch);
        let world = c.world_size as u64;
        let total = (self.per_rank * world) as usize;
        if order.len() >= total {
            order.truncate(total);
        } else {
            // Pad by wrap-around, as DistributedSampler does.
            let n = order.len();
            for i in 0..total - n {
                order.push(order[i % n]);
            }
        }
        match c.order {
            Order::QuasiRandom => {
                let start = c.rank * self.per_rank as usize;
                order[start..start + self.per_rank as usize].to_vec()
            }
            _ => order
                .into_iter()
                .skip(c.rank)
                .step_by(c.world_size)
                .collect(),
        }
    }

    /// The epoch's batches on this rank.
    pub fn batches(&self, epoch: u64) -> Vec<Vec<u64>> {
        let b = self.config.batch_size;
        let order = self.rank_order(epoch);
        let mut batches: Vec<Vec<u64>> = order.chunks(b).map(<[u64]>::to_vec).collect();
        if self.config.drop_last && batches.last().is_some_and(|l| l.len() < b) {
            batches.pop();
        }
        batches
    }
}

/// Samples per quasi-random shuffle window: enough for several batches to mix.
pub fn quasi_random_window(batch_size: usize) -> usize {
    8 * batch_size
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(n: u64, batch: usize, rank: usize, world: usize, drop_last: bool) -> SamplerConfig {
        SamplerConfig {
            drop_last,
            rank,
            world_size: world,
            ..SamplerConfig::shuffled(n, batch, 3)
        }
    }

    #[test]
    fn distributed_covers_every_sample_once_with_padding() {
        for (n, world) in [(10u64, 3usize), (12, 4), (7, 8), (100, 1)] {
            let mut seen: HashMap<u64, usize> = HashMap::new();
            let mut per_rank = None;
            for rank in 0..world {
                let s = Sampler::new(config(n, 4, rank, world, false)).unwrap();
                let order = s.rank_order(5);
                assert_eq!(order.len() as u64, n.div_ceil(world as u64));
                assert_eq!(*per_rank.get_or_insert(order.len()), order.len());
                for i in order {
                    *seen.entry(i).or_default() += 1;
                }
            }
            assert_eq!(seen.len() as u64, n, "every sample appears");
            let total: usize = seen.values().sum();
            assert_eq!(total as u64, n.div_ceil(world as u64) * world as u64);
        }
    }

    #[test]
    fn drop_last_cuts_to_a_multiple_and_drops_partial_batches() {
        let mut seen = Vec::new();
        for rank in 0..3 {
            let s = Sampler::new(config(10, 2, rank, 3, true)).unwrap();
            assert_eq!(s.samples_per_rank(), 3);
            assert_eq!(s.num_batches(), 1);
            let batches = s.batches(0);
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].len(), 2);
            seen.extend(s.rank_order(0));
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9, "no sample repeats when dropping");
    }

    #[test]
    fn order_depends_only_on_seed_and_epoch() {
        let a = Sampler::new(config(1000, 7, 0, 1, false)).unwrap();
        let b = Sampler::new(config(1000, 64, 0, 1, false)).unwrap();
        assert_eq!(
            a.rank_order(2),
            b.rank_order(2),
            "batch size does not change the order"
        );
        assert_ne!(a.rank_order(2), a.rank_order(3));
        let mut sorted = a.rank_order(2);
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn indices_restrict_the_population() {
        let mut c = config(100, 4, 0, 1, false);
        c.indices = Some(Arc::new(vec![5, 50, 7, 99]));
        let s = Sampler::new(c.clone()).unwrap();
        let mut order = s.rank_order(0);
        order.sort();
        assert_eq!(order, vec![5, 7, 50, 99]);
        c.indices = Some(Arc::new(vec![100]));
        assert!(Sampler::new(c).is_err());
    }

    #[test]
    fn quasi_random_keeps_a_bounded_working_set() {
        let n = 10_000u64;
        let page = 50u64;
        let batch = 16usize;
        let starts: Vec<u64> = (0..n).step_by(page as usize).collect();
        let mut all = Vec::new();
        for rank in 0..2 {
            let mut c = config(n, batch, rank, 2, false);
            c.order = Order::QuasiRandom;
            c.page_starts = Some(Arc::new(starts.clone()));
            let s = Sampler::new(c).unwrap();
            let batches = s.batches(1);
            // A window holds >= 8 batches of samples, so at most that many pages plus one.
            let pages_per_window = quasi_random_window(batch).div_ceil(page as usize) + 1;
            for pair in batches.windows(2) {
                let mut pages: Vec<u64> = pair.iter().flatten().map(|i| i / page).collect();
                pages.sort();
                pages.dedup();
                assert!(pages.len() <= 2 * pages_per_window, "{} pages", pages.len());
            }
            all.extend(s.rank_order(1));
        }
        all.sort();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }
}
