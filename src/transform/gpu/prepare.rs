//! The host's first stage of a GPU batch: which sample fills each slot, the part of each image
//! its crops read, the compressed bytes gathered into a pinned ring slot, and each image's
//! decoder. It touches nothing `submit` uses, so the loader runs it for the next batch while
//! `submit` feeds nvJPEG the current one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::ring::{Ring, SlotLease};
use crate::cache::CacheReader;
use crate::cuda::Gpu;
use crate::decode::nvjpeg::{Planner, Route};
use crate::decode::{Image as CachedImage, ImagePolicy, Rect};
use crate::error::Result;
use crate::transform::geometry::{ViewGeometry, read_region, view_geometry};
use crate::transform::output::{Failure, Group, Outputs, Replacement, Retry, image_of};
use crate::transform::params::Draw;

/// A batch ready for the GPU: samples resolved, compressed bytes in a pinned slot, each
/// image's route chosen.
pub struct Prepared<'a> {
    /// The loader's seed and epoch.
    pub(super) draw: (u64, u64),
    pub(super) resolved: Vec<Resolved<'a>>,
    /// Where each image's bytes start in the slot (one more entry than images).
    pub(super) offsets: Vec<usize>,
    /// Per image: its route, and its size as nvJPEG reads it.
    pub(super) plan: Vec<(Route, Option<(u32, u32)>)>,
    /// The part of each image its views read (full-resolution pixels; `None`: all of it).
    pub(super) regions: Vec<Option<Rect>>,
    pub(super) slot: SlotLease,
    /// Host time spent preparing, and waiting for the slot.
    pub(super) busy: Duration,
    pub(super) waited: Duration,
}

impl Prepared<'_> {
    /// Every image of the batch, slot-major (a slot's images in group order).
    pub(super) fn images(&self) -> impl Iterator<Item = &Image<'_>> {
        self.resolved.iter().flat_map(|r| r.images.iter())
    }

    /// Each image's compressed bytes in the pinned slot.
    pub(super) fn data(&self) -> Vec<&[u8]> {
        let pinned = self.slot.bytes.as_slice();
        self.offsets
            .windows(2)
            .map(|w| &pinned[w[0]..w[1]])
            .collect()
    }
}

/// One image of a batch: a sample's value of one image field.
pub(super) struct Image<'a> {
    pub(super) value: CachedImage<'a>,
    pub(super) width: u32,
    pub(super) height: u32,
}

impl<'a> Image<'a> {
    /// What goes into the pinned slot for nvJPEG: an encoded image's bytes. Planes need no
    /// decode: they are uploaded as they are (`fallback.rs`), so they take no room.
    fn compressed(&self) -> &'a [u8] {
        match self.value {
            CachedImage::Encoded(bytes) => bytes,
            CachedImage::Yuv420(_) => &[],
        }
    }
}

/// A batch slot after choosing which sample fills it.
pub(super) struct Resolved<'a> {
    pub(super) sample: u64,
    /// Which candidate it is: 0 the requested sample, else the replacement of that number
    /// (the CPU pipeline's sequence).
    pub(super) attempt: u64,
    /// One per image field (pipeline group).
    pub(super) images: Vec<Image<'a>>,
}

/// What the first stage uses: the GPU (for pinned memory), the ring, and the decoder planner
/// (`None` when JPEGs are decoded on the CPU).
pub(super) struct Preparer {
    pub(super) gpu: Arc<Gpu>,
    pub(super) ring: Ring,
    pub(super) planner: Option<Mutex<Planner>>,
}

impl Preparer {
    /// Resolve the samples (replacing those whose headers are broken, as `on_error` says),
    /// draw their views' crops for `(seed, epoch)`, gather their compressed bytes into a free
    /// ring slot and choose each image's decoder.
    pub(super) fn prepare<'a>(
        &self,
        outputs: &Outputs,
        reader: &'a CacheReader,
        (seed, epoch): (u64, u64),
        samples: &[u64],
        replacement: &Replacement,
    ) -> Result<Prepared<'a>> {
        let started = Instant::now();
        self.gpu.bind()?;
        let fields: Vec<usize> = outputs.groups.iter().map(|g| g.field).collect();
        let source = reader.header().source.path.clone();
        let retry = Retry {
            on_error: outputs.on_error,
            source: &source,
            replacement,
        };
        let resolve = |k: usize| -> Result<Resolved> {
            let (sample, attempt, images) = retry.fill(samples[k], 0, |sample| {
                probe_sample(reader, &fields, outputs.policy, sample)
            })?;
            Ok(Resolved {
                sample,
                attempt,
                images,
            })
        };
        let resolved = (0..samples.len())
            .into_par_iter()
            .map(resolve)
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let regions: Vec<Option<Rect>> = resolved
            .par_iter()
            .flat_map_iter(|r| {
                let draw = Draw {
                    seed,
                    epoch,
                    sample: r.sample,
                };
                outputs
                    .groups
                    .iter()
                    .zip(&r.images)
                    .map(move |(group, image)| {
                        read_region(&group_views(outputs, group, draw, image))
                    })
            })
            .collect();

        let (mut slot, waited) = self.ring.take()?;
        // Gather the compressed bytes into pinned memory, one copy per image.
        let images: Vec<&Image> = resolved.iter().flat_map(|r| r.images.iter()).collect();
        let mut offsets = Vec::with_capacity(images.len() + 1);
        offsets.push(0usize);
        for image in &images {
            offsets.push(offsets.last().unwrap() + image.compressed().len());
        }
        let total = *offsets.last().unwrap();
        if slot.bytes.len() < total {
            slot.bytes = self.gpu.pinned(total.next_power_of_two())?;
        }
        {
            let mut rest = &mut slot.bytes.as_mut_slice()[..total];
            let mut parts = Vec::with_capacity(images.len());
            for image in &images {
                let (head, tail) = rest.split_at_mut(image.compressed().len());
                parts.push(head);
                rest = tail;
            }
            parts
                .into_par_iter()
                .zip(images.par_iter())
                .for_each(|(dst, image)| dst.copy_from_slice(image.compressed()));
        }
        let pinned = slot.bytes.as_slice();
        let data: Vec<&[u8]> = offsets.windows(2).map(|w| &pinned[w[0]..w[1]]).collect();
        // Planes leave an empty slice, which no decoder takes: the CPU route uploads them.
        let plan = match &self.planner {
            Some(planner) => planner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .plan(&data),
            None => vec![(Route::Cpu, None); data.len()],
        };
        Ok(Prepared {
            draw: (seed, epoch),
            resolved,
            offsets,
            plan,
            regions,
            slot,
            busy: started.elapsed().saturating_sub(waited),
            waited,
        })
    }
}

/// The geometry of every view that `group`'s outputs take from `image`.
fn group_views(outputs: &Outputs, group: &Group, draw: Draw, image: &Image) -> Vec<ViewGeometry> {
    group
        .outputs
        .iter()
        .flat_map(|&o| {
            let output = &outputs.outputs[o];
            (0..output.spec.views as u64).map(move |v| {
                let view = output.first_view + v;
                view_geometry(&output.spec.geometry, draw, view, image.height, image.width)
            })
        })
        .collect()
}

/// The images of `sample` with their sizes from the headers, if `policy` accepts the sizes.
fn probe_sample<'a>(
    reader: &'a CacheReader,
    fields: &[usize],
    policy: ImagePolicy,
    sample: u64,
) -> std::result::Result<Vec<Image<'a>>, Failure> {
    fields
        .iter()
        .map(|&f| {
            let value = image_of(reader, f, sample).map_err(Failure::Cache)?;
            let (width, height) = value
                .size()
                .and_then(|(w, h)| policy.check_size(w, h).map(|()| (w, h)))
                .map_err(|m| Failure::Image(reader.fields()[f].name.clone(), m))?;
            Ok(Image {
                value,
                width,
                height,
            })
        })
        .collect()
}
