//! nvJPEG's part of `submit`: which slots go to which decoder, where each decoded image lives
//! on the device, and the batched decode calls (crop regions on the hardware engine, whole
//! images otherwise).

use std::sync::Arc;

use cudarc::driver::CudaStream;

use super::prepare::Prepared;
use crate::cuda::{DeviceMemory, Gpu};
use crate::decode::nvjpeg::{BatchDecoder, Destination, Roi, Route, roi_for};
use crate::error::{Error, Result};

/// Device memory is handed out in multiples of this.
pub(super) const fn align(x: usize) -> usize {
    x.div_ceil(256) * 256
}

/// The route of each slot: nvJPEG's when every one of its images goes there (the hardware
/// engine when all of them do), else the CPU.
pub(super) fn slot_routes(prepared: &Prepared, per_sample: usize) -> Vec<Route> {
    prepared
        .resolved
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let mine = &prepared.plan[k * per_sample..(k + 1) * per_sample];
            let agrees = mine.iter().zip(&r.images).all(|((route, size), image)| {
                *route != Route::Cpu && *size == Some((image.width, image.height))
            });
            if !agrees {
                Route::Cpu
            } else if mine.iter().all(|(route, _)| *route == Route::Hardware) {
                Route::Hardware
            } else {
                Route::Cuda
            }
        })
        .collect()
}

/// Where nvJPEG writes each image: offsets (bytes) into the decoded-image buffer, which the
/// batch needs `needed` bytes of. Images of CPU-route slots take no room.
pub(super) fn placement(
    prepared: &Prepared,
    routes: &[Route],
    per_sample: usize,
) -> (Vec<usize>, usize) {
    let mut at = Vec::new();
    let mut needed = 0usize;
    for (i, image) in prepared.images().enumerate() {
        if routes[i / per_sample] == Route::Cpu {
            at.push(0);
        } else {
            at.push(needed);
            needed += align(image.width as usize * 3 * image.height as usize);
        }
    }
    (at, needed)
}

/// nvJPEG's state in a loader, used by one batch at a time.
pub(super) struct Nvjpeg {
    /// `None` when JPEGs are decoded on the CPU.
    pub(super) decoder: Option<BatchDecoder>,
    /// Decoded images of the batch in flight; grown when a batch needs more, else reused.
    pub(super) decoded: Option<DeviceMemory>,
    /// Whether the hardware engine decodes only the regions the crops read; turned off if
    /// it declines a region that it decodes whole.
    pub(super) roi_decode: bool,
}

impl Nvjpeg {
    /// The device address of a decoded-image buffer of at least `needed` bytes (a larger one
    /// replaces a smaller: dropping the old buffer frees it after the work already queued on
    /// the stream).
    pub(super) fn buffer(&mut self, gpu: &Arc<Gpu>, needed: usize) -> Result<u64> {
        if self.decoded.as_ref().is_none_or(|d| d.len() < needed) {
            self.decoded = None;
            self.decoded = Some(gpu.alloc(needed + needed / 4)?);
        }
        Ok(self.decoded.as_ref().expect("allocated above").ptr())
    }

    /// Queue the nvJPEG decodes of the batch (`per_sample` images a slot) on the loader's
    /// stream, into the decoded-image buffer at `base` (`at[i]` bytes in for image `i`).
    /// Slots whose images nvJPEG rejects are moved to the CPU route.
    pub(super) fn decode(
        &mut self,
        stream: &CudaStream,
        prepared: &Prepared,
        routes: &mut [Route],
        per_sample: usize,
        base: u64,
        at: &[usize],
    ) {
        let images: Vec<_> = prepared.images().collect();
        let data = prepared.data();
        for route in [Route::Hardware, Route::Cuda] {
            let chosen: Vec<usize> = (0..images.len())
                .filter(|&i| routes[i / per_sample] == route)
                .collect();
            if chosen.is_empty() {
                continue;
            }
            let bytes: Vec<&[u8]> = chosen.iter().map(|&i| data[i]).collect();
            // Where pixel (x, y) of image i goes: the same address whether the image is
            // decoded whole or only a region of it, so the kernels read the same places.
            let pitch = |i: usize| images[i].width as usize * 3;
            let pixel = |i: usize, x: u32, y: u32| Destination {
                ptr: base + at[i] as u64 + y as u64 * pitch(i) as u64 + x as u64 * 3,
                pitch: pitch(i),
            };
            let rois: Option<Vec<Roi>> = (route == Route::Hardware && self.roi_decode).then(|| {
                chosen
                    .iter()
                    .map(|&i| roi_for(prepared.regions[i], images[i].width, images[i].height))
                    .collect()
            });
            let decoder = self.decoder.as_mut().expect("nvJPEG routes need a decoder");
            let mut decoded = Err(Error::Internal("not decoded".into()));
            if let Some(rois) = &rois {
                let out: Vec<Destination> = chosen
                    .iter()
                    .zip(rois)
                    .map(|(&i, &[x, y, _, _])| pixel(i, x, y))
                    .collect();
                // SAFETY: each region lies inside its image, whose pixels fit in the decoded
                // buffer (sized by `placement` for every image at pitch width · 3); the pinned
                // slot is not touched again until the event recorded after this batch's work
                // completes.
                decoded = unsafe { decoder.decode(route, &bytes, Some(rois), &out, stream) };
            }
            if decoded.is_err() {
                let out: Vec<Destination> = chosen.iter().map(|&i| pixel(i, 0, 0)).collect();
                // SAFETY: as above, for whole images.
                decoded = unsafe { decoder.decode(route, &bytes, None, &out, stream) };
                if rois.is_some() && decoded.is_ok() {
                    // The engine takes these images whole but not their regions.
                    self.roi_decode = false;
                }
            }
            if decoded.is_err() {
                // A bitstream nvJPEG rejects mid-batch: the CPU decoder decides, image by
                // image, what is broken.
                for &i in &chosen {
                    routes[i / per_sample] = Route::Cpu;
                }
            }
        }
    }
}
