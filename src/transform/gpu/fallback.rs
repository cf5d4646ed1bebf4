//! The CPU route of `submit`: slots nvJPEG could not take are decoded by libjpeg-turbo on the
//! loader's threads (replacing broken samples in the CPU pipeline's order, so both devices
//! replace a broken sample by the same one), then uploaded beside nvJPEG's output. A yuv420
//! cache's planes take this route undecoded: uploaded as they are (half the bytes of RGB), they
//! are converted by the kernels as they read them.

use std::borrow::Cow;
use std::sync::Arc;

use cudarc::driver::result;
use rayon::prelude::*;

use super::decode::align;
use super::prepare::{Prepared, Resolved};
use crate::cache::CacheReader;
use crate::cuda::{DeviceMemory, Gpu, cuda_error};
use crate::decode::cpu::CpuDecoder;
use crate::decode::nvjpeg::Route;
use crate::decode::{DecodePlan, Image, ImagePolicy};
use crate::error::Result;
use crate::threads::in_pool;
use crate::transform::output::{Failure, Outputs, Retry, image_of};
use crate::transform::resample::SourceImage;

/// A slot's images read on the host: per image field, its bytes (decoded RGB pixels, or the
/// planes where the cache holds them) and what they are (the device address filled in once
/// uploaded).
pub(super) struct HostDecoded<'a> {
    images: Vec<(Cow<'a, [u8]>, SourceImage)>,
}

/// The sample of each slot of a batch and whether it replaces the requested one.
pub(super) type Chosen = Vec<(u64, bool)>;

/// Decode the CPU-route slots on `threads`. Returns each slot's sample and whether it
/// replaces the requested one, and the pixels of the slots decoded here.
pub(super) fn decode_on_host<'a>(
    retry: &Retry,
    reader: &'a CacheReader,
    outputs: &Outputs,
    samples: &[u64],
    prepared: &Prepared,
    routes: &[Route],
    threads: Option<&rayon::ThreadPool>,
) -> Result<(Chosen, Vec<Option<HostDecoded<'a>>>)> {
    let resolved = &prepared.resolved;
    let fields = outputs.source_fields();
    let mut host: Vec<Option<HostDecoded<'a>>> = (0..resolved.len()).map(|_| None).collect();
    let fallback: Vec<usize> = (0..resolved.len())
        .filter(|&k| routes[k] == Route::Cpu)
        .collect();
    let decoded_on_host = in_pool(threads, || {
        fallback
            .par_iter()
            .map(|&k| {
                let policy = outputs.policy;
                decode_slot(retry, reader, &fields, policy, samples[k], &resolved[k])
            })
            .collect::<Vec<_>>()
    });
    let mut chosen: Vec<(u64, bool)> = resolved.iter().map(|r| (r.sample, r.attempt > 0)).collect();
    for (&k, outcome) in fallback.iter().zip(decoded_on_host) {
        let (sample, decoded) = outcome?;
        chosen[k] = (sample, sample != samples[k]);
        host[k] = Some(decoded);
    }
    Ok((chosen, host))
}

/// Decode a slot's images on the CPU (full resolution, as nvJPEG would), going on through the
/// replacement candidates after the resolved one. Returns the sample used.
fn decode_slot<'a>(
    retry: &Retry,
    reader: &'a CacheReader,
    fields: &[usize],
    policy: ImagePolicy,
    requested: u64,
    resolved: &Resolved,
) -> Result<(u64, HostDecoded<'a>)> {
    let mut decoder = CpuDecoder::new();
    let (sample, _, images) = retry.fill(requested, resolved.attempt, |sample| {
        let mut images = Vec::with_capacity(fields.len());
        for &f in fields {
            let image = image_of(reader, f, sample).map_err(Failure::Cache)?;
            let failed = |message| Failure::Image(reader.fields()[f].name.clone(), message);
            images.push(match image {
                Image::Yuv420(planes) => {
                    let (w, h) = (planes.width, planes.height);
                    policy.check_size(w, h).map_err(failed)?;
                    (Cow::Borrowed(planes.bytes()), SourceImage::planes(0, w, h))
                }
                Image::Encoded(bytes) => {
                    let mut pixels = Vec::new();
                    let d = decoder
                        .decode(bytes, DecodePlan::full(policy), &mut pixels)
                        .map_err(failed)?;
                    (Cow::Owned(pixels), SourceImage::rgb(0, d.width, d.height))
                }
            });
        }
        Ok(images)
    })?;
    Ok((sample, HostDecoded { images }))
}

/// Where the kernels read every image, slot-major: nvJPEG's output in the decoded-image
/// buffer at `base` (`at[i]` bytes in), or what the host read, uploaded into the returned
/// allocation (freed in stream order once dropped after the kernels are queued).
pub(super) fn image_sources(
    gpu: &Arc<Gpu>,
    prepared: &Prepared,
    host: &[Option<HostDecoded>],
    base: u64,
    at: &[usize],
) -> Result<(Vec<SourceImage>, Option<DeviceMemory>)> {
    let host_bytes: usize = host
        .iter()
        .flatten()
        .flat_map(|h| h.images.iter())
        .map(|(p, _)| align(p.len()))
        .sum();
    let uploaded = if host_bytes > 0 {
        Some(gpu.alloc(host_bytes)?)
    } else {
        None
    };
    let mut sources: Vec<SourceImage> = Vec::with_capacity(at.len());
    let mut up_at = 0usize;
    for (k, r) in prepared.resolved.iter().enumerate() {
        match &host[k] {
            None => {
                for image in &r.images {
                    // Slot-major, so image `sources.len()` is this one.
                    let addr = base + at[sources.len()] as u64;
                    sources.push(SourceImage::rgb(addr, image.width, image.height));
                }
            }
            Some(h) => {
                let dst = uploaded.as_ref().expect("allocated for host images");
                for (pixels, image) in &h.images {
                    let ptr = dst.ptr() + up_at as u64;
                    // SAFETY: `ptr` has room for `pixels` (sized above); a copy from
                    // pageable memory (a Vec, or the cache's memory map) returns once the
                    // bytes are staged, so `pixels` may be dropped afterwards.
                    let pixels: &[u8] = pixels;
                    unsafe { result::memcpy_htod_async(ptr, pixels, gpu.stream().cu_stream()) }
                        .map_err(cuda_error("uploading an image read on the host"))?;
                    up_at += align(pixels.len());
                    sources.push(SourceImage {
                        addr: ptr,
                        ..*image
                    });
                }
            }
        }
    }
    Ok((sources, uploaded))
}
