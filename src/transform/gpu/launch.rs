//! The kernels' part of `submit`: every view's parameters (the same geometry and random draws
//! as the CPU pipeline's), uploaded in one copy, then one launch of `kernels/resample.cu` per
//! output, each writing a new batch tensor: `resample_*`, or `program_*` for a pipeline with
//! photometric stages or erasing.

use std::sync::Arc;

use cudarc::driver::{
    CudaEvent, CudaFunction, DeviceRepr, LaunchConfig, PushKernelArg, result, sys,
};
use cudarc::nvrtc::Ptx;

use super::ring::Slot;
use crate::cuda::{DeviceMemory, Gpu, cuda_error};
use crate::decode::Decoded;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernel_images::{self, force_ptx};
use crate::tensor::{DeviceTensor, Tensor};
use crate::transform::geometry::{Target, source_region, view_geometry};
use crate::transform::output::NamedTensors;
use crate::transform::output::Outputs;
use crate::transform::params::{Draw, flip_for};
use crate::transform::photometric::ColorStep;
use crate::transform::program::{EraseValue, ViewProgram, has_program};
use crate::transform::resample::{Convert, SourceImage, ViewParams};
use crate::transform::spec::{MemoryFormat, PipelineSpec};

// SAFETY: `Convert` and `EraseValue` are `repr(C)` plain f32/u32 data matching `struct Convert`
// and `struct EraseValue` in the kernel.
unsafe impl DeviceRepr for Convert {}
unsafe impl DeviceRepr for EraseValue {}

/// Blocks of `program_*`, each rendering one view at a time in its own scratch slot: enough
/// to fill an H100/H200 (132 SMs, four 256-thread blocks each), few enough that the slots of
/// a batch of 224² views stay under 400 MB with a blur.
const PROGRAM_BLOCKS: u32 = 512;

/// One kernel per output dtype.
struct ByDtype {
    uint8: CudaFunction,
    float16: CudaFunction,
    bfloat16: CudaFunction,
    float32: CudaFunction,
}

impl ByDtype {
    fn load(function: &dyn Fn(&str) -> Result<CudaFunction>, prefix: &str) -> Result<ByDtype> {
        Ok(ByDtype {
            uint8: function(&format!("{prefix}_uint8"))?,
            float16: function(&format!("{prefix}_float16"))?,
            bfloat16: function(&format!("{prefix}_bfloat16"))?,
            float32: function(&format!("{prefix}_float32"))?,
        })
    }

    fn get(&self, dtype: DType) -> &CudaFunction {
        match dtype {
            DType::Uint8 => &self.uint8,
            DType::Float16 => &self.float16,
            DType::Bfloat16 => &self.bfloat16,
            _ => &self.float32,
        }
    }
}

/// The image kernels.
pub(super) struct Kernels {
    /// Which build of them the GPU runs ("sm_90 machine code", or PTX the driver compiled).
    pub(super) image: String,
    resample: ByDtype,
    program: ByDtype,
}

impl Kernels {
    /// Load the kernels built into this library onto `gpu`.
    pub(super) fn load(gpu: &Gpu) -> Result<Kernels> {
        let Some(image) = kernel_images::RESAMPLE.pick(gpu.compute_capability(), force_ptx())
        else {
            return Err(Error::Cuda(
                "this build of slipstream has no GPU kernels (NVRTC was not found when it was \
                 built); rebuild with `make nvrtc` done, or use device=\"cpu\""
                    .into(),
            ));
        };
        gpu.bind()?;
        let module = gpu
            .context()
            .load_module(Ptx::from_binary(image.code.to_vec()))
            .map_err(cuda_error(&format!("loading the kernels ({})", image.name)))?;
        let function = |name: &str| {
            module
                .load_function(name)
                .map_err(cuda_error(&format!("loading kernel {name}")))
        };
        Ok(Kernels {
            resample: ByDtype::load(&function, "resample")?,
            program: ByDtype::load(&function, "program")?,
            image: image.name,
        })
    }
}

/// Every view's kernel parameters, output after output: its `ViewParams`, its `ViewProgram`
/// (at the same position) with the steps and blur weights they point into, and where each
/// output's views start.
#[derive(Default)]
pub(super) struct ViewPlan {
    params: Vec<ViewParams>,
    programs: Vec<ViewProgram>,
    steps: Vec<ColorStep>,
    weights: Vec<f32>,
    pub(super) starts: Vec<(usize, usize)>,
}

impl ViewPlan {
    /// The four lists back to back (each starting 16-byte aligned), as one upload, and the
    /// byte offsets of the last three.
    fn bytes(&self) -> (Vec<u8>, [usize; 3]) {
        fn raw<T>(items: &[T]) -> &[u8] {
            // SAFETY: only `ViewParams`, `ViewProgram`, `ColorStep` and f32 come here:
            // repr(C) plain data without padding (their sizes are asserted).
            unsafe { std::slice::from_raw_parts(items.as_ptr() as *const u8, size_of_val(items)) }
        }
        let mut bytes = raw(&self.params).to_vec();
        let mut offsets = [0; 3];
        let parts = [raw(&self.programs), raw(&self.steps), raw(&self.weights)];
        for (offset, part) in offsets.iter_mut().zip(parts) {
            bytes.resize(bytes.len().next_multiple_of(16), 0);
            *offset = bytes.len();
            bytes.extend_from_slice(part);
        }
        (bytes, offsets)
    }
}

/// The plan of a batch. `chosen`: the sample of each slot; `sources`: where each of its
/// images is on the device.
pub(super) fn view_params(
    outputs: &Outputs,
    (seed, epoch): (u64, u64),
    chosen: &[(u64, bool)],
    sources: &[SourceImage],
) -> ViewPlan {
    let per_sample = outputs.groups.len();
    let mut plan = ViewPlan::default();
    for (g, group) in outputs.groups.iter().enumerate() {
        for &o in &group.outputs {
            let output = &outputs.outputs[o];
            let spec = &output.spec;
            let (oh, ow) = spec.geometry.output_size();
            let view_elems = 3 * oh as u64 * ow as u64;
            plan.starts.push((o, plan.params.len()));
            for (k, &(sample, _)) in chosen.iter().enumerate() {
                let source = sources[k * per_sample + g];
                let (width, height) = (source.width, source.height);
                let draw = Draw {
                    seed,
                    epoch,
                    sample,
                };
                let decoded = Decoded::whole(width, height);
                for v in 0..spec.views as u64 {
                    let view = output.first_view + v;
                    let geometry = view_geometry(&spec.geometry, draw, view, height, width);
                    let target = Target {
                        size: (oh, ow),
                        flip: flip_for(draw.view(view), spec.flip),
                        full: (height, width),
                    };
                    let region = source_region(geometry, &target, &decoded);
                    let dst = (k as u64 * spec.views as u64 + v) * view_elems;
                    let (steps, weights) = (&mut plan.steps, &mut plan.weights);
                    let program = match has_program(spec) {
                        true => ViewProgram::for_view(spec, draw.view(view), steps, weights),
                        false => ViewProgram::default(),
                    };
                    plan.programs.push(program);
                    plan.params.push(ViewParams::new(
                        &region,
                        &source,
                        (target.flip, spec.filter, spec.antialias),
                        dst,
                    ));
                }
            }
        }
    }
    plan
}

/// Where a batch's plan is on the device.
pub(super) struct PlanOnDevice {
    memory: DeviceMemory,
    offsets: [usize; 3],
}

/// Upload `plan` through the slot's pinned buffer, in one copy on the loader's stream.
pub(super) fn upload_params(
    gpu: &Arc<Gpu>,
    slot: &mut Slot,
    plan: &ViewPlan,
) -> Result<PlanOnDevice> {
    let (raw, offsets) = plan.bytes();
    let param_bytes = raw.len();
    if slot.params.len() < param_bytes {
        slot.params = gpu.pinned(param_bytes.next_power_of_two())?;
    }
    slot.params.as_mut_slice()[..param_bytes].copy_from_slice(&raw);
    let params_device = gpu.alloc(param_bytes)?;
    // SAFETY: both buffers hold `param_bytes`; the pinned source stays untouched until the
    // slot's event completes.
    unsafe {
        result::memcpy_htod_async(
            params_device.ptr(),
            &slot.params.as_slice()[..param_bytes],
            gpu.stream().cu_stream(),
        )
    }
    .map_err(cuda_error("uploading view parameters"))?;
    Ok(PlanOnDevice {
        memory: params_device,
        offsets,
    })
}

impl Kernels {
    /// One launch per output over the `b` slots, reading the plan from each output's start;
    /// every tensor carries the event recorded after the last launch, which is returned too.
    pub(super) fn launch(
        &self,
        gpu: &Arc<Gpu>,
        outputs: &Outputs,
        b: usize,
        plan: &PlanOnDevice,
        starts: &[(usize, usize)],
    ) -> Result<(NamedTensors, Arc<CudaEvent>)> {
        let ready = Arc::new(
            gpu.context()
                .new_event(Some(sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC))
                .map_err(cuda_error("creating a CUDA event"))?,
        );
        let mut tensors: Vec<Option<(String, Tensor)>> =
            (0..outputs.outputs.len()).map(|_| None).collect();
        for &(o, first) in starts {
            let spec = &outputs.outputs[o].spec;
            let out = gpu.alloc(b * spec.views as usize * spec.view_bytes())?;
            let n_views = (b * spec.views as usize) as u32;
            if has_program(spec) {
                self.launch_program(gpu, spec, plan, first, n_views, &out)?;
            } else {
                self.launch_resample(gpu, spec, plan, first, n_views, &out)?;
            }
            let (shape, strides) = spec.tensor_layout(b);
            let tensor = DeviceTensor {
                memory: Arc::new(out),
                ready: Arc::clone(&ready),
                dtype: spec.dtype,
                shape,
                strides,
            };
            tensors[o] = Some((spec.name.clone(), Tensor::Device(tensor)));
        }
        ready
            .record(gpu.stream())
            .map_err(cuda_error("recording a CUDA event"))?;
        let tensors = tensors
            .into_iter()
            .map(|t| t.expect("every output launched"))
            .collect();
        Ok((tensors, ready))
    }

    /// `resample_*` over the output's views: a thread per output pixel.
    fn launch_resample(
        &self,
        gpu: &Arc<Gpu>,
        spec: &PipelineSpec,
        plan: &PlanOnDevice,
        first: usize,
        n_views: u32,
        out: &DeviceMemory,
    ) -> Result<()> {
        let (oh, ow) = spec.geometry.output_size();
        let views_ptr = plan.memory.ptr() + (first * size_of::<ViewParams>()) as u64;
        let out_ptr = out.ptr();
        let channels_last = (spec.memory_format == MemoryFormat::ChannelsLast) as u32;
        let k = Convert::new(spec.normalize);
        let config = LaunchConfig {
            grid_dim: (ow.div_ceil(32), oh.div_ceil(8), n_views.clamp(1, 65_535)),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = gpu.stream().launch_builder(self.resample.get(spec.dtype));
        launch
            .arg(&views_ptr)
            .arg(&n_views)
            .arg(&out_ptr)
            .arg(&oh)
            .arg(&ow)
            .arg(&channels_last)
            .arg(&k);
        // SAFETY: the arguments match the kernel's signature (two device pointers as u64,
        // u32s, `Convert` by value); `views_ptr` holds `n_views` parameters whose source
        // windows lie inside their images (RGB, or planes of `image_width x image_height`,
        // whose chroma reads are clamped to the planes) and whose destinations lie inside `out`.
        unsafe { launch.launch(config) }.map_err(cuda_error("launching the resample kernel"))?;
        Ok(())
    }

    /// `program_*` over the output's views: a block per view at a time, each with a scratch
    /// slot of the view's pixels (and of float rows when the pipeline blurs), freed in stream
    /// order after the launch.
    fn launch_program(
        &self,
        gpu: &Arc<Gpu>,
        spec: &PipelineSpec,
        plan: &PlanOnDevice,
        first: usize,
        n_views: u32,
        out: &DeviceMemory,
    ) -> Result<()> {
        let (oh, ow) = spec.geometry.output_size();
        let base = plan.memory.ptr();
        let [programs_at, steps_at, weights_at] = plan.offsets.map(|o| base + o as u64);
        let views_ptr = base + (first * size_of::<ViewParams>()) as u64;
        let programs_ptr = programs_at + (first * size_of::<ViewProgram>()) as u64;
        let blocks = n_views.clamp(1, PROGRAM_BLOCKS);
        let slot_pixels = 3 * oh as usize * ow as usize;
        let pixels = gpu.alloc(blocks as usize * slot_pixels)?;
        let blurred = match blurs(spec) {
            true => Some(gpu.alloc(blocks as usize * slot_pixels * size_of::<f32>())?),
            false => None,
        };
        let (pixels_ptr, blurred_ptr) = (pixels.ptr(), blurred.as_ref().map_or(0, |b| b.ptr()));
        let out_ptr = out.ptr();
        let channels_last = (spec.memory_format == MemoryFormat::ChannelsLast) as u32;
        let k = Convert::new(spec.normalize);
        let e = EraseValue::new(spec.erasing.as_ref());
        let config = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = gpu.stream().launch_builder(self.program.get(spec.dtype));
        launch
            .arg(&views_ptr)
            .arg(&programs_ptr)
            .arg(&steps_at)
            .arg(&weights_at)
            .arg(&n_views)
            .arg(&pixels_ptr)
            .arg(&blurred_ptr)
            .arg(&out_ptr)
            .arg(&oh)
            .arg(&ow)
            .arg(&channels_last)
            .arg(&k)
            .arg(&e);
        // SAFETY: the arguments match the kernel's signature (device pointers as u64, u32s,
        // `Convert` and `EraseValue` by value); the plan holds `n_views` parameters and
        // programs from `first`, whose steps and weights it holds too; `pixels` (and
        // `blurred`, null only when no view blurs) hold a slot per block; destinations lie
        // inside `out`.
        unsafe { launch.launch(config) }.map_err(cuda_error("launching the program kernel"))?;
        Ok(())
    }
}

/// Whether any view of the pipeline may blur (it has a GaussianBlur stage somewhere).
fn blurs(spec: &PipelineSpec) -> bool {
    fn any(stages: &[crate::transform::spec::Photometric]) -> bool {
        use crate::transform::spec::Photometric;
        stages.iter().any(|s| match s {
            Photometric::GaussianBlur { .. } => true,
            Photometric::Apply { stages, .. } => any(stages),
            _ => false,
        })
    }
    any(&spec.photometric)
}
