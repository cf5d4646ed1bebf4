//! Re-encoding images for the cache's encodings: decoded on the CPU, scaled down to fit a
//! maximum side (antialiased bilinear, torchvision's `Resize`), then compressed as JPEG or
//! converted to YUV 4:2:0 planes ([`super::yuv420`]) by libjpeg-turbo. A 4:2:0 JPEG that needs
//! no scaling gives its own planes, without a round trip through RGB.

use std::ffi::c_int;

use fast_image_resize as fr;
use fr::images::{TypedImage, TypedImageRef};
use fr::pixels::U8x3;
use turbojpeg_sys as tj;

use super::cpu::{CpuDecoder, Handle};
use super::plan::{DecodePlan, ImagePolicy, resize_fallibly};
use super::probe::image_size;

/// What an image becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A baseline JPEG (4:2:0) of this quality (1..=100).
    Jpeg { quality: u8 },
    /// Decode-free planes.
    Yuv420,
}

/// An image to re-encode: an encoded file's bytes, or raw pixels in a PIL mode (`RGB`,
/// `RGBA`, `L`).
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    Encoded(&'a [u8]),
    Raw {
        mode: &'a str,
        width: u32,
        height: u32,
        pixels: &'a [u8],
    },
}

/// The size of a `width × height` image scaled to fit `max_side` (never enlarged): the longer
/// side becomes `max_side`, the other is rounded, at least 1.
pub fn fitted(width: u32, height: u32, max_side: Option<u32>) -> (u32, u32) {
    match max_side {
        Some(side) if width.max(height) > side => {
            let scale = side as f64 / width.max(height) as f64;
            let round = |x: u32| ((x as f64 * scale).round() as u32).clamp(1, side);
            (round(width), round(height))
        }
        _ => (width, height),
    }
}

/// Re-encodes images one after another, reusing its buffers (one per thread).
#[derive(Default)]
pub struct CpuEncoder {
    compressor: Option<Handle>,
    decoder: CpuDecoder,
    rgb: Vec<u8>,
    resized: Vec<u8>,
    resizer: fr::Resizer,
}

impl CpuEncoder {
    /// `image` as `target` in `out`, scaled to fit `max_side`; returns its width and height.
    pub fn encode(
        &mut self,
        image: Pixels,
        max_side: Option<u32>,
        target: Target,
        policy: ImagePolicy,
        out: &mut Vec<u8>,
    ) -> Result<(u32, u32), String> {
        if let (Target::Yuv420, Pixels::Encoded(bytes)) = (target, image) {
            let (w, h) = image_size(bytes)?;
            if fitted(w, h, max_side) == (w, h)
                && let Some(size) = self.decoder.jpeg_planes(bytes, policy, out)?
            {
                return Ok(size);
            }
        }
        let (w, h) = self.decode_rgb(image, policy)?;
        let (w, h) = self.fit(w, h, max_side)?;
        let h_tj = self.compressor()?;
        let pixels = &self.rgb[..w as usize * h as usize * 3];
        let set = |p: tj::TJPARAM, v: c_int| {
            // SAFETY: `h_tj` is a live compressor owned by `self`.
            if unsafe { tj::tj3Set(h_tj, p as c_int, v) } != 0 {
                return Err(format!("libjpeg-turbo refused parameter {p}"));
            }
            Ok(())
        };
        set(tj::TJPARAM_TJPARAM_SUBSAMP, tj::TJSAMP_TJSAMP_420 as c_int)?;
        let status = match target {
            Target::Jpeg { quality } => {
                set(tj::TJPARAM_TJPARAM_QUALITY, quality as c_int)?;
                set(tj::TJPARAM_TJPARAM_NOREALLOC, 1)?;
                // SAFETY: a pure size computation.
                let bound =
                    unsafe { tj::tj3JPEGBufSize(w as c_int, h as c_int, tj::TJSAMP_TJSAMP_420) };
                resize_fallibly(out, bound as usize)?;
                let mut dst = out.as_mut_ptr();
                let mut size = bound;
                // SAFETY: `pixels` holds `h` rows of `3w` bytes; with NOREALLOC TurboJPEG
                // writes at most `bound` bytes into `dst`, which has that many.
                let status = unsafe {
                    tj::tj3Compress8(
                        h_tj,
                        pixels.as_ptr(),
                        w as c_int,
                        0,
                        h as c_int,
                        tj::TJPF_TJPF_RGB as c_int,
                        &mut dst,
                        &mut size,
                    )
                };
                out.truncate(size as usize);
                status
            }
            Target::Yuv420 => {
                resize_fallibly(out, super::yuv420::planes_len(w, h))?;
                // SAFETY: as above; `out` has exactly the planes' size for align 1.
                unsafe {
                    tj::tj3EncodeYUV8(
                        h_tj,
                        pixels.as_ptr(),
                        w as c_int,
                        0,
                        h as c_int,
                        tj::TJPF_TJPF_RGB as c_int,
                        out.as_mut_ptr(),
                        1,
                    )
                }
            }
        };
        if status != 0 {
            // SAFETY: the handle is live; its error string is copied at once.
            let message = unsafe { std::ffi::CStr::from_ptr(tj::tj3GetErrorStr(h_tj)) };
            return Err(format!("encoding: {}", message.to_string_lossy()));
        }
        Ok((w, h))
    }

    fn compressor(&mut self) -> Result<*mut std::ffi::c_void, String> {
        if self.compressor.is_none() {
            self.compressor = Some(Handle::new(tj::TJINIT_TJINIT_COMPRESS)?);
        }
        Ok(self.compressor.as_ref().unwrap().ptr())
    }

    /// The whole image as packed RGB in `self.rgb`.
    fn decode_rgb(&mut self, image: Pixels, policy: ImagePolicy) -> Result<(u32, u32), String> {
        match image {
            Pixels::Encoded(bytes) => {
                let d = self
                    .decoder
                    .decode(bytes, DecodePlan::full(policy), &mut self.rgb)?;
                Ok((d.width, d.height))
            }
            Pixels::Raw {
                mode,
                width,
                height,
                pixels,
            } => {
                policy.check_size(width, height)?;
                let channels = match mode {
                    "RGB" => 3,
                    "RGBA" => 4,
                    "L" => 1,
                    _ => return Err(format!("PIL mode {mode:?} is not an RGB, RGBA or L image")),
                };
                let n = width as usize * height as usize;
                if pixels.len() != n * channels || n == 0 {
                    return Err(format!(
                        "{} bytes of {mode} pixels for a {width}x{height} image",
                        pixels.len()
                    ));
                }
                resize_fallibly(&mut self.rgb, n * 3)?;
                for (rgb, px) in self
                    .rgb
                    .chunks_exact_mut(3)
                    .zip(pixels.chunks_exact(channels))
                {
                    match channels {
                        1 => rgb.fill(px[0]),
                        // PIL's convert("RGB") drops alpha.
                        _ => rgb.copy_from_slice(&px[..3]),
                    }
                }
                Ok((width, height))
            }
        }
    }

    /// Scale `self.rgb` (`width × height`) to fit `max_side`; the new size.
    fn fit(
        &mut self,
        width: u32,
        height: u32,
        max_side: Option<u32>,
    ) -> Result<(u32, u32), String> {
        let (w, h) = fitted(width, height, max_side);
        if (w, h) == (width, height) {
            return Ok((w, h));
        }
        let src = TypedImageRef::<U8x3>::from_buffer(width, height, &self.rgb)
            .map_err(|e| format!("image buffer: {e:?}"))?;
        resize_fallibly(&mut self.resized, w as usize * h as usize * 3)?;
        let mut dst = TypedImage::<U8x3>::from_buffer(w, h, &mut self.resized)
            .map_err(|e| format!("resized buffer: {e:?}"))?;
        let bilinear = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
        self.resizer
            .resize_typed(&src, &mut dst, &bilinear)
            .map_err(|e| format!("resize: {e:?}"))?;
        std::mem::swap(&mut self.rgb, &mut self.resized);
        Ok((w, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::yuv420::Yuv420;

    fn photo(w: u32, h: u32, subsamp: tj::TJSAMP) -> Vec<u8> {
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    ((x + y) % 256) as u8,
                ]
            })
            .collect();
        let handle = Handle::new(tj::TJINIT_TJINIT_COMPRESS).unwrap();
        let mut buf = std::ptr::null_mut();
        let mut size = 0;
        // SAFETY: test-only; TurboJPEG allocates the output, freed below.
        unsafe {
            tj::tj3Set(handle.ptr(), tj::TJPARAM_TJPARAM_QUALITY as c_int, 95);
            tj::tj3Set(
                handle.ptr(),
                tj::TJPARAM_TJPARAM_SUBSAMP as c_int,
                subsamp as c_int,
            );
            let status = tj::tj3Compress8(
                handle.ptr(),
                rgb.as_ptr(),
                w as c_int,
                0,
                h as c_int,
                tj::TJPF_TJPF_RGB as c_int,
                &mut buf,
                &mut size,
            );
            assert_eq!(status, 0);
            let out = std::slice::from_raw_parts(buf, size as usize).to_vec();
            tj::tj3Free(buf.cast());
            out
        }
    }

    fn decoded(bytes: &[u8]) -> Vec<u8> {
        let mut rgb = Vec::new();
        CpuDecoder::new()
            .decode(bytes, DecodePlan::FULL, &mut rgb)
            .unwrap();
        rgb
    }

    fn max_difference(a: &[u8], b: &[u8]) -> u8 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
    }

    #[test]
    fn fitting_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(fitted(500, 375, Some(256)), (256, 192));
        assert_eq!(fitted(375, 500, Some(256)), (192, 256));
        assert_eq!(fitted(200, 100, Some(256)), (200, 100));
        assert_eq!(fitted(5000, 3, Some(100)), (100, 1));
        assert_eq!(fitted(500, 375, None), (500, 375));
    }

    #[test]
    fn planes_of_a_420_jpeg_convert_like_libjpeg_decodes_it() {
        for (w, h) in [(64, 48), (61, 37)] {
            let jpeg = photo(w, h, tj::TJSAMP_TJSAMP_420);
            let mut planes = Vec::new();
            let mut encoder = CpuEncoder::default();
            let size = encoder
                .encode(
                    Pixels::Encoded(&jpeg),
                    None,
                    Target::Yuv420,
                    ImagePolicy::DEFAULT,
                    &mut planes,
                )
                .unwrap();
            assert_eq!(size, (w, h));
            let mut rgb = Vec::new();
            Yuv420::new(w, h, &planes)
                .unwrap()
                .to_rgb(DecodePlan::FULL, &mut rgb)
                .unwrap();
            // libjpeg's fancy upsampling rounds its chroma to integers; ours does not.
            assert!(max_difference(&rgb, &decoded(&jpeg)) <= 2, "{w}x{h}");
        }
    }

    #[test]
    fn other_images_go_through_rgb() {
        let jpeg = photo(80, 60, tj::TJSAMP_TJSAMP_444);
        let mut encoder = CpuEncoder::default();
        let mut planes = Vec::new();
        let size = encoder
            .encode(
                Pixels::Encoded(&jpeg),
                Some(40),
                Target::Yuv420,
                ImagePolicy::DEFAULT,
                &mut planes,
            )
            .unwrap();
        assert_eq!(size, (40, 30));
        assert!(Yuv420::new(40, 30, &planes).is_ok());
        let mut small = Vec::new();
        let size = encoder
            .encode(
                Pixels::Encoded(&jpeg),
                Some(40),
                Target::Jpeg { quality: 90 },
                ImagePolicy::DEFAULT,
                &mut small,
            )
            .unwrap();
        assert_eq!(size, (40, 30));
        assert_eq!(image_size(&small).unwrap(), (40, 30));
        let gray = vec![77u8; 6];
        let raw = Pixels::Raw {
            mode: "L",
            width: 3,
            height: 2,
            pixels: &gray,
        };
        let mut planes = Vec::new();
        encoder
            .encode(raw, None, Target::Yuv420, ImagePolicy::DEFAULT, &mut planes)
            .unwrap();
        // Y padded to 4x2 (libjpeg-turbo's layout), then 2x1 Cb and Cr.
        assert_eq!(planes, [77, 77, 77, 77, 77, 77, 77, 77, 128, 128, 128, 128]);
        let bad = Pixels::Raw {
            mode: "CMYK",
            width: 3,
            height: 2,
            pixels: &gray,
        };
        let e = encoder
            .encode(bad, None, Target::Yuv420, ImagePolicy::DEFAULT, &mut planes)
            .unwrap_err();
        assert!(e.contains("not an RGB, RGBA or L image"), "{e}");
    }
}
