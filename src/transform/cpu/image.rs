//! The CPU pipeline on one image, fused: decode once (only the region the crops need,
//! DCT-downscaled when allowed; a decode-free image's region converted to RGB), then for each view resize the crop (antialiased bilinear, the
//! convolution torchvision and Pillow use, by `fast_image_resize`'s SIMD kernels), flip, and
//! convert/normalize straight into the view's slot of the batch tensor.

use fast_image_resize as fr;
use fr::images::{TypedCroppedImage, TypedImage, TypedImageRef};
use fr::pixels::U8x3;

use super::convert::{Lut, erase_view, write_view};
use crate::decode::cpu::CpuDecoder;
use crate::decode::{DecodePlan, Decoded, Image, ImagePolicy};
use crate::transform::geometry::{Target, ViewGeometry, read_region, source_region, view_geometry};
use crate::transform::params::{
    ColorOp, Draw, erase_noise_key, erasing_for, flip_for, photometric_for,
};
use crate::transform::photometric;
use crate::transform::resample;
use crate::transform::spec::{Filter, PipelineSpec};

/// Per-thread state: the decoder and scratch buffers, reused image after image.
#[derive(Default)]
pub struct Workspace {
    decoder: CpuDecoder,
    decoded: Vec<u8>,
    resized: Vec<u8>,
    /// Bicubic's first pass (the rows resized, all of the window's lines).
    rows: Vec<u8>,
    canvas: Vec<u8>,
    blurred: Vec<f32>,
    resizer: fr::Resizer,
}

/// One pipeline's work on one image: its spec, its table, the number of its first view among
/// all views of the field (views are numbered across pipelines for their random streams),
/// and the image's slot in the output (all its views).
pub struct Job<'a> {
    pub spec: &'a PipelineSpec,
    pub lut: &'a Lut,
    pub first_view: u64,
    pub out: &'a mut [u8],
}

/// The smallest DCT scale (in eighths) at which every view still has at least as many pixels
/// as its output along each axis, so the final resize never enlarges. Only 1/1, 1/2, 1/4 and
/// 1/8: libjpeg-turbo has SIMD code for those, the others are slower than a full decode.
fn reduced_eighths(views: &[(ViewGeometry, (u32, u32))], height: u32, width: u32) -> u32 {
    let need = |out: u32, source: u32| (8 * out as u64).div_ceil(source.max(1) as u64) as u32;
    views
        .iter()
        .map(|(g, (oh, ow))| match *g {
            ViewGeometry::Crop(c) => need(*oh, c.height).max(need(*ow, c.width)),
            ViewGeometry::Window { resized, .. } => {
                need(resized.0, height).max(need(resized.1, width))
            }
        })
        .max()
        .unwrap_or(8)
        .clamp(1, 8)
        .next_power_of_two()
}

/// Decode `bytes` once and write every view of every job.
pub fn process_image(
    ws: &mut Workspace,
    image: Image,
    draw: Draw,
    policy: ImagePolicy,
    jobs: &mut [Job],
) -> Result<(), String> {
    let (width, height) = image.size()?;
    policy.check_size(width, height)?;
    let mut views = Vec::new();
    for job in jobs.iter() {
        for v in 0..job.spec.views as u64 {
            let view = job.first_view + v;
            let g = view_geometry(&job.spec.geometry, draw, view, height, width);
            views.push((g, job.spec.geometry.output_size()));
        }
    }
    let reduced = jobs
        .iter()
        .all(|j| j.spec.reduced_decode && j.spec.antialias);
    let eighths = if reduced {
        reduced_eighths(&views, height, width)
    } else {
        8
    };
    let region = read_region(views.iter().map(|(g, _)| g));
    let plan = DecodePlan {
        eighths,
        region,
        policy,
    };
    let decoded = ws.decoder.decode_image(image, plan, &mut ws.decoded)?;

    let mut views = views.into_iter();
    for job in jobs.iter_mut() {
        let per_view = job.spec.view_bytes();
        for v in 0..job.spec.views as u64 {
            let (geometry, (oh, ow)) = views.next().expect("one geometry per view");
            let key = draw.view(job.first_view + v);
            let flip = flip_for(key, job.spec.flip);
            let ops = match job.spec.photometric.as_slice() {
                [] => Vec::new(),
                stages => photometric_for(stages, key),
            };
            let erase = (job.spec.erasing.as_ref()).and_then(|e| erasing_for(key, e, (oh, ow)));
            let out = &mut job.out[v as usize * per_view..(v as usize + 1) * per_view];
            let target = Target {
                size: (oh, ow),
                flip,
                full: (height, width),
            };
            render_view(ws, &decoded, geometry, target, job.spec, job.lut, &ops, out)?;
            if let Some(erase) = erase {
                let noise = erase_noise_key(key);
                erase_view(out, job.spec, job.lut, (&erase, noise), flip);
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn render_view(
    ws: &mut Workspace,
    decoded: &Decoded,
    geometry: ViewGeometry,
    target: Target,
    spec: &PipelineSpec,
    lut: &Lut,
    ops: &[ColorOp],
    out: &mut [u8],
) -> Result<(), String> {
    let ((oh, ow), flip) = (target.size, target.flip);
    let r = source_region(geometry, &target, decoded);
    let src = TypedImageRef::<U8x3>::from_buffer(decoded.width, decoded.height, &ws.decoded)
        .map_err(|e| format!("decoded image buffer: {e:?}"))?;
    let [wx, wy, ww, wh] = r.window;
    let window = TypedCroppedImage::from_ref(&src, wx, wy, ww, wh)
        .map_err(|e| format!("window {:?}: {e:?}", r.window))?;
    let [px, py, pw, ph] = r.paste;
    ws.resized.resize(pw as usize * ph as usize * 3, 0);
    let mut dst = TypedImage::<U8x3>::from_buffer(pw, ph, &mut ws.resized)
        .map_err(|e| format!("output buffer: {e:?}"))?;
    let [bx, by, bw, bh] = r.bbox;
    let resize_err = |e| format!("resize: {e:?}");
    // Antialiased: the filter widened by the downscale factor (`Convolution`); not: its
    // support fixed (`Interpolation`), torch's `antialias=False`.
    let alg = |filter| match spec.antialias {
        true => fr::ResizeAlg::Convolution(filter),
        false => fr::ResizeAlg::Interpolation(filter),
    };
    match spec.filter {
        Filter::Bilinear => {
            let options = fr::ResizeOptions::new()
                .resize_alg(alg(fr::FilterType::Bilinear))
                .crop(bx, by, bw, bh);
            ws.resizer
                .resize_typed(&window, &mut dst, &options)
                .map_err(resize_err)?;
        }
        Filter::Bicubic => {
            // Keys' cubic (a = -0.5 antialiased, -0.75 not), rows first and rounded to 8 bits
            // before the columns, as PIL and torchvision's uint8 resize do (and the kernel):
            // in one call fast_image_resize does the columns first, which the cubic's
            // overshoot at edges shows (up to 11 levels from torchvision).
            let cubic = fr::ResizeOptions::new().resize_alg(alg(match spec.antialias {
                true => fr::FilterType::CatmullRom,
                false => fr::FilterType::Custom(torch_cubic()),
            }));
            ws.rows.resize(pw as usize * wh as usize * 3, 0);
            let mut rows = TypedImage::<U8x3>::from_buffer(pw, wh, &mut ws.rows)
                .map_err(|e| format!("row buffer: {e:?}"))?;
            let across = cubic.clone().crop(bx, 0.0, bw, wh as f64);
            ws.resizer
                .resize_typed(&window, &mut rows, &across)
                .map_err(resize_err)?;
            let down = cubic.crop(0.0, by, pw as f64, bh);
            ws.resizer
                .resize_typed(&rows, &mut dst, &down)
                .map_err(resize_err)?;
        }
    }
    let pixels = if (pw, ph) == (ow, oh) {
        &mut ws.resized
    } else {
        // Smaller than the view: zero padding around it, as torchvision pads.
        ws.canvas.clear();
        ws.canvas.resize(oh as usize * ow as usize * 3, 0);
        let row_bytes = pw as usize * 3;
        for y in 0..ph as usize {
            let src_row = &ws.resized[y * row_bytes..(y + 1) * row_bytes];
            let at = ((y + py as usize) * ow as usize + px as usize) * 3;
            ws.canvas[at..at + row_bytes].copy_from_slice(src_row);
        }
        &mut ws.canvas
    };
    // Before the flip: every photometric operation commutes with it (the blur's kernel and
    // padding are symmetric).
    if !ops.is_empty() {
        let mut weights = Vec::new();
        let steps = photometric::steps(ops, &mut weights);
        photometric::apply(&steps, &weights, pixels, (oh, ow), &mut ws.blurred);
    }
    write_view(pixels, oh, ow, flip, spec.memory_format, lut, out);
    Ok(())
}

/// Keys' cubic with a = -0.75, the one torch's `interpolate(mode="bicubic")` uses without
/// antialiasing (PIL's, and torch's antialiased one, have a = -0.5): the kernels' function.
fn torch_cubic() -> fr::Filter {
    fn cubic(x: f64) -> f64 {
        resample::filter(x as f32, true, -0.75) as f64
    }
    fr::Filter::new("cubic a=-0.75", cubic, 2.0).expect("a finite, positive support")
}
