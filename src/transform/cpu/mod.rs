//! The CPU pipeline: every image of a batch decoded once and its views written into the batch
//! tensors by rayon threads ([`image`] for one image, [`convert`] for the output elements),
//! broken images raised or replaced as `on_error` says.

mod convert;
mod image;

pub use convert::{Lut, write_view};
pub use image::{Job, Workspace, process_image};

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;

use super::output::{Failure, Outputs, Produced, Replacement, Retry, image_of};
use super::params::Draw;
use crate::buffer::BufferPool;
use crate::cache::CacheReader;
use crate::error::Result;
use crate::tensor::{HostTensor, Tensor};
use crate::threads::parallelism_enabled;

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

/// The CPU pipeline of a loader: one conversion table per output.
pub struct CpuPipeline {
    luts: Vec<Lut>,
}

impl CpuPipeline {
    pub fn new(outputs: &Outputs) -> CpuPipeline {
        CpuPipeline {
            luts: outputs.outputs.iter().map(|o| Lut::new(&o.spec)).collect(),
        }
    }

    /// Decode and transform `samples` into new batch tensors from `pool`, on the calling
    /// thread's rayon pool, with the random draws of `(seed, epoch)`.
    pub fn run(
        &self,
        outputs: &Outputs,
        reader: &CacheReader,
        pool: &BufferPool,
        (seed, epoch): (u64, u64),
        samples: &[u64],
        replacement: &Replacement,
    ) -> Result<Produced> {
        let b = samples.len();
        let mut buffers = outputs
            .outputs
            .iter()
            .map(|o| pool.take(b * o.spec.views as usize * o.spec.view_bytes()))
            .collect::<Result<Vec<_>>>()?;
        // One slot per (sample, output), carved from the outputs' buffers.
        let mut slots: Vec<Vec<&mut [u8]>> = (0..b).map(|_| Vec::new()).collect();
        for (buffer, o) in buffers.iter_mut().zip(&outputs.outputs) {
            let per_sample = o.spec.views as usize * o.spec.view_bytes();
            for (k, slot) in buffer
                .as_mut_slice()
                .chunks_exact_mut(per_sample)
                .enumerate()
            {
                slots[k].push(slot);
            }
        }
        let source = reader.header().source.path.clone();
        let retry = Retry {
            on_error: outputs.on_error,
            source: &source,
            replacement,
        };
        let one = |(k, mut slots): (usize, Vec<&mut [u8]>)| -> Result<(u64, bool)> {
            let (sample, attempt, ()) = retry.fill(samples[k], 0, |sample| {
                let draw = Draw {
                    seed,
                    epoch,
                    sample,
                };
                self.render_sample(outputs, reader, draw, &mut slots)
            })?;
            Ok((sample, attempt > 0))
        };
        let outcomes: Vec<Result<(u64, bool)>> = if parallelism_enabled() {
            slots.into_par_iter().enumerate().map(one).collect()
        } else {
            slots.into_iter().enumerate().map(one).collect()
        };
        // The first failure in batch order, whichever thread met it first.
        let outcomes: Vec<(u64, bool)> = outcomes.into_iter().collect::<Result<_>>()?;
        let tensors = buffers
            .into_iter()
            .zip(&outputs.outputs)
            .map(|(buffer, o)| {
                let (shape, strides) = o.spec.tensor_layout(b);
                let tensor =
                    HostTensor::new(Arc::new(buffer), o.spec.dtype, shape).with_strides(strides);
                (o.spec.name.clone(), Tensor::Host(tensor))
            })
            .collect();
        Ok(Produced {
            routes: [0, 0, b as u64],
            replaced: outcomes.iter().filter(|(_, r)| *r).count() as u64,
            samples: outcomes.into_iter().map(|(s, _)| s).collect(),
            tensors,
        })
    }

    /// Every output of one sample into its slots (in output order).
    fn render_sample(
        &self,
        outputs: &Outputs,
        reader: &CacheReader,
        draw: Draw,
        slots: &mut [&mut [u8]],
    ) -> std::result::Result<(), Failure> {
        // Hand each group its own slots.
        let mut by_output: Vec<Option<&mut [u8]>> =
            slots.iter_mut().map(|s| Some(&mut **s)).collect();
        for group in &outputs.groups {
            let name = &reader.fields()[group.field].name;
            let image = image_of(reader, group.field, draw.sample).map_err(Failure::Cache)?;
            let mut jobs: Vec<Job> = group
                .outputs
                .iter()
                .map(|&o| Job {
                    spec: &outputs.outputs[o].spec,
                    lut: &self.luts[o],
                    first_view: outputs.outputs[o].first_view,
                    out: by_output[o]
                        .take()
                        .expect("each output belongs to one group"),
                })
                .collect();
            WORKSPACE
                .with(|ws| {
                    process_image(&mut ws.borrow_mut(), image, draw, outputs.policy, &mut jobs)
                })
                .map_err(|message| Failure::Image(name.clone(), message))?;
        }
        Ok(())
    }
}
