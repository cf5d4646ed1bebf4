//! The CPU pipeline, fused per image: decode once (only the region the crops need,
//! DCT-downscaled when allowed), then for each view resize the crop (antialiased bilinear, the
//! convolution torchvision and Pillow use, by `fast_image_resize`'s SIMD kernels), flip, and
//! convert/normalize straight into the view's slot of the batch tensor.

use fast_image_resize as fr;
use fr::images::{TypedCroppedImage, TypedImage, TypedImageRef};
use fr::pixels::U8x3;

use super::params::{
    CropBox, ViewKey, center_crop_axis, flip_for, random_resized_crop_for, resized_shorter_side,
};
use super::resample::source_region;
use super::{Geometry, MemoryFormat, PipelineSpec};
use crate::decode::cpu::{CpuDecoder, DecodePlan, Decoded, Rect, image_size};
use crate::dtype::DType;

/// Per-thread state: the decoder and scratch buffers, reused image after image.
#[derive(Default)]
pub struct Workspace {
    decoder: CpuDecoder,
    decoded: Vec<u8>,
    resized: Vec<u8>,
    canvas: Vec<u8>,
    resizer: fr::Resizer,
}

/// How a pipeline turns u8 pixels into output elements: per channel, a table of the 256
/// possible values, scaled to [0, 1], normalized and cast. Computed once per pipeline; a
/// lookup per element is cheaper than the arithmetic (a division) and exactly equal to it.
#[derive(Debug, Clone)]
pub enum Lut {
    U8,
    F32(Box<[[f32; 256]; 3]>),
    /// float16 or bfloat16 bit patterns.
    Half(Box<[[u16; 256]; 3]>),
}

impl Lut {
    pub fn new(spec: &PipelineSpec) -> Lut {
        let (mean, std) = spec.normalize.unwrap_or(([0.0; 3], [1.0; 3]));
        // torchvision's float32 operations: ToDtype(scale=True) multiplies by float32(1/255),
        // Normalize subtracts the mean and divides by the std.
        let k = (1.0f64 / 255.0) as f32;
        let value = |c: usize, u: usize| (u as f32 * k - mean[c]) / std[c];
        let table = |cast: fn(f32) -> u16| {
            let mut t = Box::new([[0u16; 256]; 3]);
            for (c, row) in t.iter_mut().enumerate() {
                for (u, v) in row.iter_mut().enumerate() {
                    *v = cast(value(c, u));
                }
            }
            t
        };
        match spec.dtype {
            DType::Float32 => {
                let mut t = Box::new([[0f32; 256]; 3]);
                for (c, row) in t.iter_mut().enumerate() {
                    for (u, v) in row.iter_mut().enumerate() {
                        *v = value(c, u);
                    }
                }
                Lut::F32(t)
            }
            DType::Float16 => Lut::Half(table(|v| half::f16::from_f32(v).to_bits())),
            DType::Bfloat16 => Lut::Half(table(|v| half::bf16::from_f32(v).to_bits())),
            _ => Lut::U8,
        }
    }
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

/// Which random draws: the loader's seed and epoch and the sample's index.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    pub seed: u64,
    pub epoch: u64,
    pub sample: u64,
}

impl Draw {
    pub fn view(self, view: u64) -> ViewKey {
        ViewKey {
            seed: self.seed,
            epoch: self.epoch,
            sample: self.sample,
            view,
        }
    }
}

/// One view's geometry in full-resolution pixels of the image.
#[derive(Debug, Clone, Copy)]
pub enum ViewGeometry {
    /// Resize exactly this crop to the output (pixels outside it are never read).
    Crop(CropBox),
    /// Resize the whole image to `resized` (height, width), then take `window` of it, which
    /// may extend past it (padding with zeros): per axis (start, length, offset in output).
    Window {
        resized: (u32, u32),
        rows: (u32, u32, u32),
        cols: (u32, u32, u32),
    },
}

pub fn view_geometry(
    geometry: &Geometry,
    draw: Draw,
    view: u64,
    height: u32,
    width: u32,
) -> ViewGeometry {
    match *geometry {
        Geometry::RandomResizedCrop { scale, ratio, .. } => ViewGeometry::Crop(
            random_resized_crop_for(draw.view(view), height, width, scale, ratio),
        ),
        Geometry::CenterCrop {
            height: ch,
            width: cw,
            resize,
        } => {
            let resized = match resize {
                Some(size) => resized_shorter_side(height, width, size),
                None => (height, width),
            };
            ViewGeometry::Window {
                resized,
                rows: center_crop_axis(resized.0, ch),
                cols: center_crop_axis(resized.1, cw),
            }
        }
    }
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

/// The part of an image (full-resolution pixels) its views read: the union of their crops
/// when every view is a crop, `None` (the whole image) otherwise. Both decoders decode only
/// this.
pub fn read_region<'a>(views: impl IntoIterator<Item = &'a ViewGeometry>) -> Option<Rect> {
    views
        .into_iter()
        .map(|g| match g {
            ViewGeometry::Crop(c) => Some(Rect {
                x: c.left,
                y: c.top,
                w: c.width,
                h: c.height,
            }),
            ViewGeometry::Window { .. } => None,
        })
        .collect::<Option<Vec<Rect>>>()
        .and_then(|crops| crops.into_iter().reduce(Rect::union))
}

/// Decode `bytes` once and write every view of every job.
pub fn process_image(
    ws: &mut Workspace,
    bytes: &[u8],
    draw: Draw,
    jobs: &mut [Job],
) -> Result<(), String> {
    let (width, height) = image_size(bytes)?;
    let mut views = Vec::new();
    for job in jobs.iter() {
        for v in 0..job.spec.views as u64 {
            let view = job.first_view + v;
            let g = view_geometry(&job.spec.geometry, draw, view, height, width);
            views.push((g, job.spec.geometry.output_size()));
        }
    }
    let reduced = jobs.iter().all(|j| j.spec.reduced_decode);
    let eighths = if reduced {
        reduced_eighths(&views, height, width)
    } else {
        8
    };
    let region = read_region(views.iter().map(|(g, _)| g));
    let decoded = ws
        .decoder
        .decode(bytes, DecodePlan { eighths, region }, &mut ws.decoded)?;

    let mut views = views.into_iter();
    for job in jobs.iter_mut() {
        let per_view = job.spec.view_bytes();
        for v in 0..job.spec.views as u64 {
            let (geometry, (oh, ow)) = views.next().expect("one geometry per view");
            let flip = flip_for(draw.view(job.first_view + v), job.spec.flip);
            let out = &mut job.out[v as usize * per_view..(v as usize + 1) * per_view];
            let target = Target {
                size: (oh, ow),
                flip,
                full: (height, width),
            };
            render_view(ws, &decoded, geometry, target, job.spec, job.lut, out)?;
        }
    }
    Ok(())
}

/// What one view must become: output (height, width), flipped or not, from an image whose
/// full resolution is `full` (height, width).
pub struct Target {
    pub size: (u32, u32),
    pub flip: bool,
    pub full: (u32, u32),
}

fn render_view(
    ws: &mut Workspace,
    decoded: &Decoded,
    geometry: ViewGeometry,
    target: Target,
    spec: &PipelineSpec,
    lut: &Lut,
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
    let options = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
        .crop(bx, by, bw, bh);
    ws.resizer
        .resize_typed(&window, &mut dst, &options)
        .map_err(|e| format!("resize: {e:?}"))?;
    if (pw, ph) == (ow, oh) {
        write_view(&ws.resized, oh, ow, flip, spec.memory_format, lut, out);
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
        write_view(&ws.canvas, oh, ow, flip, spec.memory_format, lut, out);
    }
    Ok(())
}

/// Write an RGB image (`h`×`w`×3 bytes) into `out` converted by `lut`, flipped if asked, in
/// the requested memory format.
pub fn write_view(
    rgb: &[u8],
    h: u32,
    w: u32,
    flip: bool,
    format: MemoryFormat,
    lut: &Lut,
    out: &mut [u8],
) {
    let (h, w) = (h as usize, w as usize);
    match lut {
        Lut::U8 => write_typed(rgb, h, w, flip, format, &IDENTITY, out),
        Lut::F32(t) => write_typed(rgb, h, w, flip, format, t, elements_mut::<f32>(out)),
        Lut::Half(t) => write_typed(rgb, h, w, flip, format, t, elements_mut::<u16>(out)),
    }
}

const IDENTITY: [[u8; 256]; 3] = {
    let mut t = [[0u8; 256]; 3];
    let mut i = 0;
    while i < 256 {
        t[0][i] = i as u8;
        t[1][i] = i as u8;
        t[2][i] = i as u8;
        i += 1;
    }
    t
};

/// The loops of `write_view`: per output row, walk the source row once, forwards or
/// backwards, looking each byte up in its channel's table.
fn write_typed<T: Copy>(
    rgb: &[u8],
    h: usize,
    w: usize,
    flip: bool,
    format: MemoryFormat,
    table: &[[T; 256]; 3],
    out: &mut [T],
) {
    for y in 0..h {
        let src = &rgb[y * w * 3..(y + 1) * w * 3];
        match format {
            MemoryFormat::Contiguous => {
                for (c, t) in table.iter().enumerate() {
                    let dst = &mut out[(c * h + y) * w..(c * h + y + 1) * w];
                    let pixels = src.chunks_exact(3).map(|p| t[p[c] as usize]);
                    if flip {
                        dst.iter_mut().rev().zip(pixels).for_each(|(d, v)| *d = v);
                    } else {
                        dst.iter_mut().zip(pixels).for_each(|(d, v)| *d = v);
                    }
                }
            }
            MemoryFormat::ChannelsLast => {
                let dst = &mut out[y * w * 3..(y + 1) * w * 3];
                let pixels = src.chunks_exact(3).map(|p| {
                    [
                        table[0][p[0] as usize],
                        table[1][p[1] as usize],
                        table[2][p[2] as usize],
                    ]
                });
                if flip {
                    dst.chunks_exact_mut(3)
                        .rev()
                        .zip(pixels)
                        .for_each(|(d, v)| d.copy_from_slice(&v));
                } else {
                    dst.chunks_exact_mut(3)
                        .zip(pixels)
                        .for_each(|(d, v)| d.copy_from_slice(&v));
                }
            }
        }
    }
}

/// Plain-old-data element types a byte buffer may be viewed as.
trait Element: Copy {}
impl Element for f32 {}
impl Element for u16 {}

/// View an aligned byte slice as elements.
fn elements_mut<T: Element>(bytes: &mut [u8]) -> &mut [T] {
    // SAFETY: `T` is f32 or u16, for which every bit pattern is a valid value; `align_to_mut`
    // only yields correctly aligned, in-bounds elements, and we insist the whole slice is
    // covered (batch buffers are 256-byte aligned and slots are whole elements).
    let (head, elements, tail) = unsafe { bytes.align_to_mut::<T>() };
    assert!(head.is_empty() && tail.is_empty(), "misaligned output slot");
    elements
}
