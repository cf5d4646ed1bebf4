//! The last step of the CPU pipeline: resized RGB pixels into the output tensor's elements,
//! through a table per pipeline (scale, normalize, cast), flipped or not, in NCHW or
//! channels-last order.

use crate::dtype::DType;
use crate::transform::params::CropBox;
use crate::transform::photometric::{erase_noise_at, erased};
use crate::transform::spec::{MemoryFormat, PipelineSpec};

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

/// Overwrite the part of a written view inside `erase` with the pipeline's erasing value:
/// output elements as they are when it is in output units, else 0..255 pixel values converted
/// by `lut` like the view's pixels; with `value="random"`, the view's noise (`noise` is its
/// key). `flipped`: the view was flipped (which mirrors the box when the erasing came before
/// the flip).
pub fn erase_view(
    out: &mut [u8],
    spec: &PipelineSpec,
    lut: &Lut,
    (erase, noise): (&CropBox, u64),
    flipped: bool,
) {
    let Some(e) = &spec.erasing else { return };
    let (h, w) = spec.geometry.output_size();
    let place = (h, w, spec.memory_format, erase, flipped && e.before_flip);
    let pixel = e.value.map(|v| v.clamp(0.0, 255.0) as u8 as usize);
    let units = e.output_units;
    // The value of channel c at (x, y) of the box's frame, in output units.
    let value = |c: usize, x: u32, y: u32| match e.random {
        true => erase_noise_at(noise, c, (x, y), (h, w)),
        false => e.value[c],
    };
    match lut {
        Lut::U8 => erase_typed(out, place, |c, x, y| match units {
            true => value(c, x, y).clamp(0.0, 255.0) as u8,
            false => pixel[c] as u8,
        }),
        Lut::F32(t) => erase_typed(elements_mut::<f32>(out), place, |c, x, y| match units {
            true => value(c, x, y),
            false => t[c][pixel[c]],
        }),
        Lut::Half(t) => {
            let bits = |x: f32| match spec.dtype {
                DType::Bfloat16 => half::bf16::from_f32(x).to_bits(),
                _ => half::f16::from_f32(x).to_bits(),
            };
            erase_typed(elements_mut::<u16>(out), place, |c, x, y| match units {
                true => bits(value(c, x, y)),
                false => t[c][pixel[c]],
            })
        }
    }
}

type Placement<'a> = (u32, u32, MemoryFormat, &'a CropBox, bool);

/// `value(c, x, y)` into every element of the erased box, (x, y) in the box's frame (before
/// the mirroring of a flip that came after the erasing).
fn erase_typed<T: Copy>(
    out: &mut [T],
    (h, w, format, erase, mirrored): Placement,
    value: impl Fn(usize, u32, u32) -> T,
) {
    let (hs, ws) = (h as usize, w as usize);
    for y in 0..h {
        for x in 0..w {
            if !erased(erase, x, y, w, mirrored) {
                continue;
            }
            let framed = if mirrored { w - 1 - x } else { x };
            let (xs, ys) = (x as usize, y as usize);
            for c in 0..3 {
                let at = match format {
                    MemoryFormat::Contiguous => (c * hs + ys) * ws + xs,
                    MemoryFormat::ChannelsLast => (ys * ws + xs) * 3 + c,
                };
                out[at] = value(c, framed, y);
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
