//! The CPU twin of `program_*` in `kernels/resample.cu`: a view resampled as `resample.rs`
//! does, its photometric steps (`photometric.rs`) applied, then flipped, erased and converted,
//! as the kernel does, so that a GPU run only has to agree with [`program_view`]. Also
//! [`reference_view`], which renders a view as the GPU would, with whichever kernel.

use super::geometry::{Target, ViewGeometry, source_region};
use super::params::{CropBox, ViewKey, erase_noise_key, erasing_for, photometric_for};
use super::photometric::{self, ColorStep};
use super::resample::{Convert, OutputElement, SourceImage, ViewParams, resample_view};
use super::spec::{Erasing, MemoryFormat, PipelineSpec};
use crate::decode::Decoded;

/// What `program_*` adds to a view, mirroring `struct ViewProgram` in the kernel (40 bytes):
/// where its steps are in the batch's step list, its erased rectangle and the key of its
/// erasing noise.
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
    pub noise: u64,
}

const _: () = assert!(std::mem::size_of::<ViewProgram>() == 40);

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
            noise: erase_noise_key(key),
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
    /// `value="random"`: the view's noise instead of `value`.
    pub random: u32,
}

impl EraseValue {
    pub fn new(e: Option<&Erasing>) -> EraseValue {
        e.map_or(EraseValue::default(), |e| EraseValue {
            value: e.value,
            output_units: e.output_units as u32,
            before_flip: e.before_flip as u32,
            random: e.random as u32,
        })
    }
}

/// An erased element: the value (or the noise, given) as an output element, or as a 0..255
/// pixel value converted like the view's pixels.
fn erased_element<T: OutputElement>(k: &Convert, e: &EraseValue, c: usize, noise: f32) -> T {
    if e.random != 0 {
        T::from_value(noise)
    } else if e.output_units == 0 {
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
            let framed = if mirrored { out_w - 1 - xo } else { xo };
            let (xo, y) = (xo as usize, y as usize);
            for c in 0..3 {
                let at = match format {
                    MemoryFormat::ChannelsLast => (y * out_w as usize + xo) * 3 + c,
                    MemoryFormat::Contiguous => c * plane + y * out_w as usize + xo,
                };
                let u = pixels[(y * out_w as usize + x as usize) * 3 + c] as f32;
                out[at] = if erased {
                    let noise = match e.random {
                        0 => 0.0,
                        _ => photometric::erase_noise_at(prog.noise, c, (framed, y as u32), size),
                    };
                    erased_element(k, e, c, noise)
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

/// View `key` of pipeline `spec`, rendered by the twin as the GPU renders it from `pixels`:
/// `image` (a decoded image, `decoded`, or planes).
pub fn reference_view<T: OutputElement>(
    (pixels, image): (&[u8], &SourceImage),
    decoded: &Decoded,
    geometry: ViewGeometry,
    target: &Target,
    spec: &PipelineSpec,
    key: ViewKey,
) -> Vec<T> {
    let region = source_region(geometry, target, decoded);
    let params = ViewParams::new(
        &region,
        image,
        (target.flip, spec.filter, spec.antialias),
        0,
    );
    let (oh, ow) = target.size;
    let mut out = vec![T::default(); 3 * oh as usize * ow as usize];
    let k = Convert::new(spec.normalize);
    let (src, format) = (pixels, spec.memory_format);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::cpu::CpuDecoder;
    use crate::decode::{DecodePlan, Image, ImagePolicy};
    use crate::demo::scene;
    use crate::dtype::DType;
    use crate::transform::cpu::{Job, Lut, Workspace, process_image};
    use crate::transform::geometry::view_geometry;
    use crate::transform::params::Draw;
    use crate::transform::spec::{Filter, Geometry};

    /// `value="random"`: the CPU pipeline and the twin put the same noise at the same place,
    /// with the box and its noise mirrored when the erasing came before the flip.
    #[test]
    fn erasing_noise_is_the_same_in_the_cpu_pipeline_and_the_twin() {
        let (jpeg, _) = scene::jpeg(4);
        let mut rgb = Vec::new();
        let decoded = CpuDecoder::new()
            .decode(&jpeg, DecodePlan::FULL, &mut rgb)
            .unwrap();
        for before_flip in [false, true] {
            let spec = PipelineSpec {
                name: "image".into(),
                field: "image".into(),
                views: 1,
                geometry: Geometry::CenterCrop {
                    height: 96,
                    width: 128,
                    resize: Some(140),
                },
                flip: 1.0,
                photometric: Vec::new(),
                erasing: Some(Erasing {
                    p: 1.0,
                    scale: (0.1, 0.3),
                    ratio: (0.5, 2.0),
                    value: [0.0; 3],
                    random: true,
                    output_units: true,
                    before_flip,
                }),
                filter: Filter::Bilinear,
                antialias: true,
                normalize: Some(([0.5; 3], [0.25; 3])),
                dtype: DType::Float32,
                memory_format: MemoryFormat::Contiguous,
                reduced_decode: false,
            };
            let draw = Draw {
                seed: 9,
                epoch: 1,
                sample: 3,
            };
            let mut out = vec![0u8; spec.view_bytes()];
            let lut = Lut::new(&spec);
            let job = Job {
                spec: &spec,
                lut: &lut,
                first_view: 0,
                out: &mut out,
            };
            process_image(
                &mut Workspace::default(),
                Image::Encoded(&jpeg),
                draw,
                ImagePolicy::DEFAULT,
                &mut [job],
            )
            .unwrap();
            let cpu: Vec<f32> = (out.chunks_exact(4))
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let (h, w) = (decoded.height, decoded.width);
            let target = Target {
                size: (96, 128),
                flip: true,
                full: (h, w),
            };
            let geometry = view_geometry(&spec.geometry, draw, 0, h, w);
            let image = SourceImage::rgb(0, w, h);
            let (src, key) = ((rgb.as_slice(), &image), draw.view(0));
            let twin = reference_view::<f32>(src, &decoded, geometry, &target, &spec, key);
            let e = spec.erasing.as_ref().unwrap();
            let b = erasing_for(draw.view(0), e, (96, 128)).unwrap();
            let mut erased = Vec::new();
            for y in 0..96u32 {
                for x in 0..128u32 {
                    if !photometric::erased(&b, x, y, 128, before_flip) {
                        continue;
                    }
                    for c in 0..3 {
                        let at = (c * 96 + y as usize) * 128 + x as usize;
                        assert_eq!(cpu[at], twin[at], "({x}, {y}, {c}) {before_flip}");
                        erased.push(cpu[at] as f64);
                    }
                }
            }
            assert_eq!(erased.len(), 3 * b.height as usize * b.width as usize);
            // Noise, not the (zero) value: its spread is about one.
            let n = erased.len() as f64;
            let mean = erased.iter().sum::<f64>() / n;
            let var = erased.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            assert!(mean.abs() < 0.1 && (var - 1.0).abs() < 0.1, "{mean} {var}");
        }
    }
}
