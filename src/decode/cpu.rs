//! Decoding encoded images to RGB on the CPU: JPEG with libjpeg-turbo (only the rows and MCU
//! columns a crop needs, optionally DCT-downscaled); PNG and WebP, decoded whole, in `whole`.
//!
//! One [`CpuDecoder`] per thread: the TurboJPEG handle inside is not thread-safe.

use std::ffi::{CStr, c_int};
use std::ptr::NonNull;

use turbojpeg_sys as tj;

use super::image::Image;
use super::libjpeg_warnings::{Warning, all_warnings, classify};
use super::plan::{DecodePlan, Decoded, ImagePolicy, resize_fallibly};
use super::probe::{ImageFormat, not_an_image, probe};
use super::whole::{decode_png, decode_webp};

/// iMCU width in pixels per TurboJPEG subsampling (444, 422, 420, gray, 440, 411, 441):
/// turbojpeg.h's `tjMCUWidth`, a static table the library does not export.
const MCU_WIDTH: [u32; 7] = [8, 16, 16, 8, 8, 32, 8];

/// Pixels (at full resolution) decoded around a requested region: more than the reach of
/// chroma upsampling at any subsampling.
const REGION_MARGIN: u32 = 16;

/// Round `x · eighths / 8` up, as libjpeg does for scaled sizes.
pub fn scaled(x: u32, eighths: u32) -> u32 {
    (x * eighths).div_ceil(8)
}

/// A TurboJPEG instance (a decompressor here, a compressor in `encode`).
pub(super) struct Handle(NonNull<std::ffi::c_void>);

impl Handle {
    /// A new instance of `kind` (`TJINIT_*`).
    pub(super) fn new(kind: tj::TJINIT) -> Result<Handle, String> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { tj::tj3Init(kind as c_int) };
        NonNull::new(raw)
            .map(Handle)
            .ok_or_else(|| "libjpeg-turbo could not allocate an instance".into())
    }

    pub(super) fn ptr(&self) -> *mut std::ffi::c_void {
        self.0.as_ptr()
    }
}

// SAFETY: a TurboJPEG handle is plain heap state with no thread affinity; it may move between
// threads as long as one thread uses it at a time, which `&mut CpuDecoder` guarantees.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { tj::tj3Destroy(self.0.as_ptr()) }
    }
}

/// Decodes JPEG, PNG and WebP images to packed RGB, reusing its buffers between images.
#[derive(Default)]
pub struct CpuDecoder {
    handle: Option<Handle>,
    cmyk: Vec<u8>,
}

impl CpuDecoder {
    pub fn new() -> CpuDecoder {
        CpuDecoder::default()
    }

    /// Drop the decompressor after a failure: libjpeg-turbo leaves one whose header could not
    /// be read mid-header, and it then misreads the next image's header (a good image after a
    /// broken one failed, or decoded at the wrong size). A new one costs microseconds.
    fn forget_failure(&mut self) {
        self.handle = None;
    }

    fn handle(&mut self) -> Result<*mut std::ffi::c_void, String> {
        if self.handle.is_none() {
            self.handle = Some(Handle::new(tj::TJINIT_TJINIT_DECOMPRESS)?);
        }
        Ok(self.handle.as_ref().unwrap().ptr())
    }

    /// Decode `bytes` into `out` (packed RGB, resized to fit) following `plan` as far as the
    /// format allows.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        plan: DecodePlan,
        out: &mut Vec<u8>,
    ) -> Result<Decoded, String> {
        match probe(bytes) {
            Some((ImageFormat::Jpeg, _, _)) => {
                let decoded = self.decode_jpeg(bytes, plan, out);
                if decoded.is_err() {
                    self.forget_failure();
                }
                decoded
            }
            Some((ImageFormat::Png, _, _)) => decode_png(bytes, plan, out),
            Some((ImageFormat::WebP, _, _)) => decode_webp(bytes, plan, out),
            None => Err(not_an_image(bytes)),
        }
    }

    /// [`CpuDecoder::decode`] for an image of either kind a cache holds.
    pub fn decode_image(
        &mut self,
        image: Image,
        plan: DecodePlan,
        out: &mut Vec<u8>,
    ) -> Result<Decoded, String> {
        match image {
            Image::Encoded(bytes) => self.decode(bytes, plan, out),
            Image::Yuv420(planes) => planes.to_rgb(plan, out),
        }
    }

    /// A baseline 4:2:0 JPEG's own planes (no upsampling, no colour conversion) into `out` as
    /// [`super::yuv420`] lays them out, and its size; `None` for other JPEGs.
    pub fn jpeg_planes(
        &mut self,
        bytes: &[u8],
        policy: ImagePolicy,
        out: &mut Vec<u8>,
    ) -> Result<Option<(u32, u32)>, String> {
        let planes = self.jpeg_planes_of(bytes, policy, out);
        if !matches!(planes, Ok(Some(_))) {
            self.forget_failure();
        }
        planes
    }

    fn jpeg_planes_of(
        &mut self,
        bytes: &[u8],
        policy: ImagePolicy,
        out: &mut Vec<u8>,
    ) -> Result<Option<(u32, u32)>, String> {
        let h = self.handle()?;
        // SAFETY (every call below): `h` is a live decompressor owned by `self`, `bytes`
        // outlives the calls, and `out` has the size TurboJPEG writes for align 1.
        if unsafe { tj::tj3DecompressHeader(h, bytes.as_ptr(), bytes.len() as tj::size_t) } != 0 {
            return Ok(None); // decode() reports it
        }
        let get = |p| unsafe { tj::tj3Get(h, p as c_int) };
        let (width, height) = (
            get(tj::TJPARAM_TJPARAM_JPEGWIDTH) as u32,
            get(tj::TJPARAM_TJPARAM_JPEGHEIGHT) as u32,
        );
        let yuv420 = get(tj::TJPARAM_TJPARAM_SUBSAMP) == tj::TJSAMP_TJSAMP_420 as c_int
            && get(tj::TJPARAM_TJPARAM_COLORSPACE) == tj::TJCS_TJCS_YCbCr as c_int
            && get(tj::TJPARAM_TJPARAM_PRECISION) == 8;
        if !yuv420 || width == 0 || height == 0 {
            return Ok(None);
        }
        policy.check_size(width, height)?;
        let whole = tj::tjregion {
            x: 0,
            y: 0,
            w: 0,
            h: 0,
        };
        let unscaled = tj::tjscalingfactor { num: 1, denom: 1 };
        if unsafe { tj::tj3SetScalingFactor(h, unscaled) } != 0
            || unsafe { tj::tj3SetCroppingRegion(h, whole) } != 0
        {
            return Err("JPEG: libjpeg-turbo refused a full-size decode".into());
        }
        resize_fallibly(out, super::yuv420::planes_len(width, height))?;
        let status = unsafe {
            tj::tj3DecompressToYUV8(
                h,
                bytes.as_ptr(),
                bytes.len() as tj::size_t,
                out.as_mut_ptr(),
                1,
            )
        };
        if status != 0 {
            decode_failure(h, bytes, policy)?;
        }
        Ok(Some((width, height)))
    }

    fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        plan: DecodePlan,
        out: &mut Vec<u8>,
    ) -> Result<Decoded, String> {
        let h = self.handle()?;
        let error = |h| {
            // SAFETY: the handle is live; the string is owned by it and copied at once.
            unsafe { CStr::from_ptr(tj::tj3GetErrorStr(h)) }
                .to_string_lossy()
                .into_owned()
        };
        // SAFETY (for every call below): `h` is a live decompressor owned by `self`, `bytes`
        // outlives the calls, and the output buffer is sized for the region and pitch given.
        if unsafe { tj::tj3DecompressHeader(h, bytes.as_ptr(), bytes.len() as tj::size_t) } != 0 {
            let message = error(h);
            let warning = unsafe { tj::tj3GetErrorCode(h) } == tj::TJERR_TJERR_WARNING as c_int;
            // A harmless header warning (an unknown JFIF revision) is decoded past; it comes
            // back, with any other, from the decode itself.
            if !(warning && classify(&message) == Warning::Harmless) {
                return Err(format!("JPEG header: {message}"));
            }
        }
        let get = |p| unsafe { tj::tj3Get(h, p as c_int) };
        let (width, height) = (
            get(tj::TJPARAM_TJPARAM_JPEGWIDTH) as u32,
            get(tj::TJPARAM_TJPARAM_JPEGHEIGHT) as u32,
        );
        let subsamp = get(tj::TJPARAM_TJPARAM_SUBSAMP);
        let colorspace = get(tj::TJPARAM_TJPARAM_COLORSPACE) as u32;
        if get(tj::TJPARAM_TJPARAM_PRECISION) != 8 {
            return Err("JPEG with more than 8 bits per sample is not supported".into());
        }
        if width == 0 || height == 0 {
            return Err("JPEG with an empty frame".into());
        }
        plan.policy.check_size(width, height)?;
        let eighths = plan.eighths.clamp(1, 8);
        if unsafe { tj::tj3SetScalingFactor(h, scaling_factor(eighths)) } != 0 {
            return Err(format!("JPEG scaling: {}", error(h)));
        }
        let (x0, y0, x1, y1) = scaled_region(plan, subsamp, width, height, eighths);
        let (w, hh) = (x1 - x0, y1 - y0);
        let region = tj::tjregion {
            x: x0 as c_int,
            y: y0 as c_int,
            w: if plan.region.is_some() { w as c_int } else { 0 },
            h: if plan.region.is_some() {
                hh as c_int
            } else {
                0
            },
        };
        if unsafe { tj::tj3SetCroppingRegion(h, region) } != 0 {
            return Err(format!("JPEG cropping region: {}", error(h)));
        }
        let cmyk = matches!(colorspace, tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK);
        let pixels = w as usize * hh as usize;
        let (format, target) = if cmyk {
            resize_fallibly(&mut self.cmyk, pixels * 4)?;
            (tj::TJPF_TJPF_CMYK, &mut self.cmyk)
        } else {
            resize_fallibly(out, pixels * 3)?;
            (tj::TJPF_TJPF_RGB, &mut *out)
        };
        let pitch = (w * if cmyk { 4 } else { 3 }) as c_int;
        let status = unsafe {
            tj::tj3Decompress8(
                h,
                bytes.as_ptr(),
                bytes.len() as tj::size_t,
                target.as_mut_ptr(),
                pitch,
                format as c_int,
            )
        };
        if status != 0 {
            decode_failure(h, bytes, plan.policy)?;
        }
        if cmyk {
            cmyk_to_rgb(&self.cmyk[..pixels * 4], out)?;
        }
        Ok(Decoded {
            eighths,
            x0,
            y0,
            width: w,
            height: hh,
        })
    }
}

/// After a decompression of `bytes` by `h` returned an error: `Ok` when it was only warnings
/// that `policy` accepts (libjpeg finishes the image after a warning; what it could not read
/// is grey), else the error.
fn decode_failure(
    h: *mut std::ffi::c_void,
    bytes: &[u8],
    policy: ImagePolicy,
) -> Result<(), String> {
    // SAFETY: `h` is a live handle; its error string is copied at once.
    let message = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(h)) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: as above.
    let fatal = unsafe { tj::tj3GetErrorCode(h) } != tj::TJERR_TJERR_WARNING as c_int;
    let accepted = |message: &str| match classify(message) {
        Warning::Harmless => true,
        Warning::Truncated => policy.load_truncated,
        Warning::Corrupt => false,
    };
    if fatal || !accepted(&message) {
        return Err(format!("JPEG data: {message}"));
    }
    // TurboJPEG reports the first warning only: a harmless one may hide others.
    let later = all_warnings(bytes).ok_or("JPEG data: it does not decode to its end")?;
    if let Some(bad) = later.iter().find(|m| !accepted(m)) {
        return Err(format!("JPEG data: {bad}"));
    }
    Ok(())
}

/// libjpeg-turbo's scaling factor for `eighths`/8, in lowest terms (1/2, not 4/8) as it lists
/// them.
fn scaling_factor(eighths: u32) -> tj::tjscalingfactor {
    let divisor = [8, 4, 2, 1]
        .into_iter()
        .find(|&d| eighths.is_multiple_of(d))
        .unwrap_or(1);
    tj::tjscalingfactor {
        num: (eighths / divisor) as c_int,
        denom: (8 / divisor) as c_int,
    }
}

/// The region to decode in scaled pixels, (x0, y0, x1, y1): the plan's region grown by a
/// margin so that pixels at its edges get the same chroma upsampling as in a full decode
/// (which reads neighbouring samples), and its left edge moved down to a scaled iMCU boundary
/// as libjpeg-turbo requires; the whole scaled image without a region.
fn scaled_region(
    plan: DecodePlan,
    subsamp: c_int,
    width: u32,
    height: u32,
    eighths: u32,
) -> (u32, u32, u32, u32) {
    let (sw, sh) = (scaled(width, eighths), scaled(height, eighths));
    let Some(r) = plan.region else {
        return (0, 0, sw, sh);
    };
    let mcu = match MCU_WIDTH.get(subsamp as usize) {
        Some(&w) if subsamp >= 0 => scaled(w, eighths),
        _ => sw,
    };
    let margin = REGION_MARGIN * eighths / 8;
    let x0 = (r.x * eighths / 8)
        .saturating_sub(margin)
        .min(sw.saturating_sub(1));
    let x0 = x0 / mcu * mcu;
    let y0 = (r.y * eighths / 8)
        .saturating_sub(margin)
        .min(sh.saturating_sub(1));
    let x1 = (scaled(r.x + r.w, eighths) + margin).clamp(x0 + 1, sw);
    let y1 = (scaled(r.y + r.h, eighths) + margin).clamp(y0 + 1, sh);
    (x0, y0, x1, y1)
}

/// Adobe (inverted) CMYK, as libjpeg delivers it, to RGB: `R = C · K / 255`, like Pillow.
fn cmyk_to_rgb(cmyk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.try_reserve(cmyk.len() / 4 * 3)
        .map_err(|_| "not enough memory to decode the image".to_string())?;
    for p in cmyk.chunks_exact(4) {
        let k = p[3] as u32;
        for &c in &p[..3] {
            out.push(((c as u32 * k + 127) / 255) as u8);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::plan::Rect;

    fn jpeg(w: u16, h: u16) -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..w as usize * h as usize)
            .flat_map(|i| {
                let (x, y) = (i % w as usize, i / w as usize);
                [
                    (x * 255 / w as usize) as u8,
                    (y * 255 / h as usize) as u8,
                    128,
                ]
            })
            .collect();
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 95)
            .encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        (out, pixels)
    }

    #[test]
    fn full_region_and_scaled_decodes_agree() {
        let (bytes, pixels) = jpeg(200, 120);
        let mut d = CpuDecoder::new();
        let mut full = Vec::new();
        let info = d.decode(&bytes, DecodePlan::FULL, &mut full).unwrap();
        assert_eq!(
            (info.width, info.height, info.x0, info.y0),
            (200, 120, 0, 0)
        );
        let mean_err: f64 = full
            .iter()
            .zip(&pixels)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / full.len() as f64;
        assert!(
            mean_err < 2.0,
            "a smooth image decodes close to its pixels: {mean_err}"
        );

        // A region decodes the same pixels as the full decode, from an MCU-aligned left edge.
        let mut part = Vec::new();
        let region = Rect {
            x: 37,
            y: 21,
            w: 90,
            h: 50,
        };
        let info = d
            .decode(
                &bytes,
                DecodePlan {
                    eighths: 8,
                    region: Some(region),
                    ..DecodePlan::FULL
                },
                &mut part,
            )
            .unwrap();
        assert_eq!(info.x0 % 16, 0);
        assert!(info.x0 <= 37 && info.x0 + info.width >= 127);
        assert!(info.y0 <= 21 && info.y0 + info.height >= 71);
        for y in 0..info.height as usize {
            for x in 0..info.width as usize {
                let (fx, fy) = (x + info.x0 as usize, y + info.y0 as usize);
                for c in 0..3 {
                    let a = part[(y * info.width as usize + x) * 3 + c] as i32;
                    let b = full[(fy * 200 + fx) * 3 + c] as i32;
                    assert_eq!(a, b, "({fx},{fy})");
                }
            }
        }

        let mut half = Vec::new();
        let info = d
            .decode(
                &bytes,
                DecodePlan {
                    eighths: 4,
                    ..DecodePlan::FULL
                },
                &mut half,
            )
            .unwrap();
        assert_eq!((info.width, info.height, info.scale()), (100, 60, 0.5));
    }

    /// `jpeg` with its JFIF header claiming major revision 3, which libjpeg warns about.
    fn unknown_jfif_revision(mut jpeg: Vec<u8>) -> Vec<u8> {
        let at = jpeg
            .windows(5)
            .position(|w| w == b"JFIF\0")
            .expect("a JFIF header");
        jpeg[at + 5] = 3;
        jpeg
    }

    #[test]
    fn truncation_after_a_harmless_warning_is_still_an_error() {
        let (bytes, _) = jpeg(64, 64);
        let mut d = CpuDecoder::new();
        let mut out = Vec::new();
        let odd = unknown_jfif_revision(bytes.clone());
        d.decode(&odd, DecodePlan::FULL, &mut out)
            .expect("an unknown JFIF revision alone is harmless");
        let mut cut = odd[..odd.len() / 2].to_vec();
        cut.extend_from_slice(&[0xff, 0xd9]);
        let e = d.decode(&cut, DecodePlan::FULL, &mut out).unwrap_err();
        assert!(e.contains("premature end of data segment"), "{e}");
        let lenient = DecodePlan::full(crate::decode::ImagePolicy {
            load_truncated: true,
            ..Default::default()
        });
        d.decode(&cut, lenient, &mut out)
            .expect("accepted when asked");
        let warnings = super::super::libjpeg_warnings::all_warnings(&cut).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("Warning: unknown JFIF revision number 3."));
    }

    #[test]
    fn damaged_images_are_errors() {
        let (bytes, _) = jpeg(64, 64);
        let mut d = CpuDecoder::new();
        let mut out = Vec::new();
        let err = d
            .decode(&bytes[..bytes.len() / 2], DecodePlan::FULL, &mut out)
            .unwrap_err();
        assert!(
            err.contains("Premature end") || err.contains("JPEG"),
            "{err}"
        );
        assert!(
            d.decode(b"GIF89a....", DecodePlan::FULL, &mut out)
                .unwrap_err()
                .contains("not a JPEG, PNG or WebP")
        );
        let mut garbage = bytes.clone();
        for b in garbage.iter_mut().skip(200).take(64) {
            *b = 0xff;
        }
        // Either decodes to something or errors; never panics.
        let _ = d.decode(&garbage, DecodePlan::FULL, &mut out);
    }
}
