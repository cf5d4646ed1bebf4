//! The CPU twin of `program_*` in `kernels/resample.cu`: a view resampled as `resample.rs`
//! does, its photometric steps (`photometric.rs`) applied, then flipped, erased and converted,
//! as the kernel does, so that a GPU run only has to agree with [`program_view`]. Also
//! [`reference_view`], which renders a view as the GPU would, with whichever kernel.

use super::geometry::{Target, ViewGeometry, source_region};
use super::params::{CropBox, ViewKey, erasing_for, photometric_for};
use super::photometric::{self, ColorStep};
use super::resample::{Convert, OutputElement, ViewParams, resample_view};
use super::spec::{Erasing, MemoryFormat, PipelineSpec};
use crate::decode::Decoded;

/// What `program_*` adds to a view, mirroring `struct ViewProgram` in the kernel (32 bytes):
/// where its steps are in the batch's step list, and its erased rectangle.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ViewProgram {
    pub first_step: u32,
    pub n_steps: u32,
    pub erase: u32,
    pub erase_top: u32,
    pub erase_left: u32,
    pub erase_h: u32,
    pub erase_w: u32,
    pub unused: u32,
}

const _: () = assert!(std::mem::size_of::<ViewProgram>() == 32);

impl ViewProgram {
    /// The program of view `key` of a pipeline: its photometric steps appended to `steps`
    /// (their blur weights to `weights`) and its erased rectangle, drawn as the CPU pipeline
    /// draws them.
    pub fn for_view(
        spec: &PipelineSpec,
        key: ViewKey,
        steps: &mut Vec<ColorStep>,
        weights: &mut Vec<f32>,
    ) -> ViewProgram {
        let first_step = steps.len() as u32;
        if !spec.photometric.is_empty() {
            let ops = photometric_for(&spec.photometric, key);
            steps.extend(photometric::steps(&ops, weights));
        }
        let size = spec.geometry.output_size();
        let erase = (spec.erasing.as_ref()).and_then(|e| erasing_for(key, e, size));
        let b = erase.unwrap_or(CropBox {
            top: 0,
            left: 0,
            height: 0,
            width: 0,
        });
        ViewProgram {
            first_step,
            n_steps: steps.len() as u32 - first_step,
            erase: erase.is_some() as u32,
            erase_top: b.top,
            erase_left: b.left,
            erase_h: b.height,
            erase_w: b.width,
            unused: 0,
        }
    }
}

/// A pipeline's erasing value as `program_*` takes it (`struct EraseValue`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EraseValue {
    pub value: [f32; 3],
    pub output_units: u32,
    pub before_flip: u32,
}

impl EraseValue {
    pub fn new(e: Option<&Erasing>) -> EraseValue {
        e.map_or(EraseValue::default(), |e| EraseValue {
            value: e.value,
            output_units: e.output_units as u32,
            before_flip: e.before_flip as u32,
        })
    }
}

/// An erased element: the value as an output element, or as a 0..255 pixel value converted
/// like the view's pixels.
fn erased_element<T: OutputElement>(k: &Convert, e: &EraseValue, c: usize) -> T {
    if e.output_units == 0 {
        T::from_pixel(k, e.value[c].clamp(0.0, 255.0).trunc(), c)
    } else {
        T::from_value(e.value[c])
    }
}

/// Render one view exactly as `program_*` does: resampled (unflipped) into 0..255 pixels,
/// its steps applied, then flipped, erased and converted into `out`.
#[allow(clippy::too_many_arguments)]
pub fn program_view<T: OutputElement>(
    v: &ViewParams,
    prog: &ViewProgram,
    steps: &[ColorStep],
    weights: &[f32],
    src: &[u8],
    (out_h, out_w): (u32, u32),
    format: MemoryFormat,
    k: &Convert,
    e: &EraseValue,
    out: &mut [T],
) {
    let plain = ViewParams { flip: 0, ..*v };
    let mut pixels = vec![0u8; 3 * out_h as usize * out_w as usize];
    let size = (out_h, out_w);
    let none = Convert::new(None);
    resample_view(
        &plain,
        src,
        size,
        MemoryFormat::ChannelsLast,
        &none,
        &mut pixels,
    );
    let at = prog.first_step as usize;
    let steps = &steps[at..at + prog.n_steps as usize];
    photometric::apply(steps, weights, &mut pixels, size, &mut Vec::new());
    let erase = CropBox {
        top: prog.erase_top,
        left: prog.erase_left,
        height: prog.erase_h,
        width: prog.erase_w,
    };
    let mirrored = v.flip != 0 && e.before_flip != 0;
    let plane = out_h as usize * out_w as usize;
    for y in 0..out_h {
        for x in 0..out_w {
            let xo = if v.flip != 0 { out_w - 1 - x } else { x };
            let erased = prog.erase != 0 && photometric::erased(&erase, xo, y, out_w, mirrored);
            let (xo, y) = (xo as usize, y as usize);
            for c in 0..3 {
                let at = match format {
                    MemoryFormat::ChannelsLast => (y * out_w as usize + xo) * 3 + c,
                    MemoryFormat::Contiguous => c * plane + y * out_w as usize + xo,
                };
                let u = pixels[(y * out_w as usize + x as usize) * 3 + c] as f32;
                out[at] = if erased {
                    erased_element(k, e, c)
                } else {
                    T::from_pixel(k, u, c)
                };
            }
        }
    }
}

/// Whether a pipeline's views go through `program_*` rather than `resample_*`.
pub fn has_program(spec: &PipelineSpec) -> bool {
    !spec.photometric.is_empty() || spec.erasing.is_some()
}

/// View `key` of pipeline `spec`, rendered by the twin from a decoded image (`rgb`, tightly
/// packed rows) as the GPU renders it.
pub fn reference_view<T: OutputElement>(
    rgb: &[u8],
    decoded: &Decoded,
    geometry: ViewGeometry,
    target: &Target,
    spec: &PipelineSpec,
    key: ViewKey,
) -> Vec<T> {
    let region = source_region(geometry, target, decoded);
    let pitch = decoded.width * 3;
    let params = ViewParams::new(&region, 0, pitch, (target.flip, spec.filter), 0);
    let start = region.window[1] as usize * pitch as usize + region.window[0] as usize * 3;
    let (oh, ow) = target.size;
    let mut out = vec![T::default(); 3 * oh as usize * ow as usize];
    let k = Convert::new(spec.normalize);
    let (src, format) = (&rgb[start..], spec.memory_format);
    if has_program(spec) {
        let (mut steps, mut weights) = (Vec::new(), Vec::new());
        let prog = ViewProgram::for_view(spec, key, &mut steps, &mut weights);
        let e = EraseValue::new(spec.erasing.as_ref());
        program_view(
            &params,
            &prog,
            &steps,
            &weights,
            src,
            target.size,
            format,
            &k,
            &e,
            &mut out,
        );
    } else {
        resample_view(&params, src, target.size, format, &k, &mut out);
    }
    out
}
