//! The kernels' part of `submit`: every view's parameters (the same geometry and random draws
//! as the CPU pipeline's), uploaded in one copy, then one launch of `kernels/resample.cu` per
//! output, each writing a new batch tensor.

use std::sync::Arc;

use cudarc::driver::{
    CudaEvent, CudaFunction, DeviceRepr, LaunchConfig, PushKernelArg, result, sys,
};
use cudarc::nvrtc::Ptx;

use super::fallback::Source;
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
use crate::transform::resample::{Convert, ViewParams};
use crate::transform::spec::MemoryFormat;

// SAFETY: `Convert` is `repr(C)` plain f32 data matching `struct Convert` in the kernel.
unsafe impl DeviceRepr for Convert {}

/// The resample kernel for each output dtype.
pub(super) struct Kernels {
    /// Which build of them the GPU runs ("sm_90 machine code", or PTX the driver compiled).
    pub(super) image: String,
    uint8: CudaFunction,
    float16: CudaFunction,
    bfloat16: CudaFunction,
    float32: CudaFunction,
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
            uint8: function("resample_uint8")?,
            float16: function("resample_float16")?,
            bfloat16: function("resample_bfloat16")?,
            float32: function("resample_float32")?,
            image: image.name,
        })
    }

    fn for_dtype(&self, dtype: DType) -> &CudaFunction {
        match dtype {
            DType::Uint8 => &self.uint8,
            DType::Float16 => &self.float16,
            DType::Bfloat16 => &self.bfloat16,
            _ => &self.float32,
        }
    }
}

/// Every view's kernel parameters, output after output, and where each output's start.
/// `chosen`: the sample of each slot; `sources`: where each of its images is on the device.
pub(super) fn view_params(
    outputs: &Outputs,
    (seed, epoch): (u64, u64),
    chosen: &[(u64, bool)],
    sources: &[Source],
) -> (Vec<ViewParams>, Vec<(usize, usize)>) {
    let per_sample = outputs.groups.len();
    let mut params = Vec::new();
    let mut starts = Vec::new();
    for (g, group) in outputs.groups.iter().enumerate() {
        for &o in &group.outputs {
            let output = &outputs.outputs[o];
            let spec = &output.spec;
            let (oh, ow) = spec.geometry.output_size();
            let view_elems = 3 * oh as u64 * ow as u64;
            starts.push((o, params.len()));
            for (k, &(sample, _)) in chosen.iter().enumerate() {
                let (ptr, pitch, width, height) = sources[k * per_sample + g];
                let draw = Draw {
                    seed,
                    epoch,
                    sample,
                };
                let decoded = Decoded {
                    eighths: 8,
                    x0: 0,
                    y0: 0,
                    width,
                    height,
                };
                for v in 0..spec.views as u64 {
                    let view = output.first_view + v;
                    let geometry = view_geometry(&spec.geometry, draw, view, height, width);
                    let target = Target {
                        size: (oh, ow),
                        flip: flip_for(draw.view(view), spec.flip),
                        full: (height, width),
                    };
                    let region = source_region(geometry, &target, &decoded);
                    let src =
                        ptr + region.window[1] as u64 * pitch as u64 + region.window[0] as u64 * 3;
                    let dst = (k as u64 * spec.views as u64 + v) * view_elems;
                    params.push(ViewParams::new(&region, src, pitch, target.flip, dst));
                }
            }
        }
    }
    (params, starts)
}

/// Upload `params` through the slot's pinned buffer, in one copy on the loader's stream.
pub(super) fn upload_params(
    gpu: &Arc<Gpu>,
    slot: &mut Slot,
    params: &[ViewParams],
) -> Result<DeviceMemory> {
    let param_bytes = std::mem::size_of_val(params);
    if slot.params.len() < param_bytes {
        slot.params = gpu.pinned(param_bytes.next_power_of_two())?;
    }
    // SAFETY: `ViewParams` is repr(C) plain data without padding (64 bytes, asserted).
    let raw = unsafe { std::slice::from_raw_parts(params.as_ptr() as *const u8, param_bytes) };
    slot.params.as_mut_slice()[..param_bytes].copy_from_slice(raw);
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
    Ok(params_device)
}

impl Kernels {
    /// One launch per output over the `b` slots, reading the parameters at `params` from each
    /// output's start; every tensor carries the event recorded after the last launch, which
    /// is returned too.
    pub(super) fn launch(
        &self,
        gpu: &Arc<Gpu>,
        outputs: &Outputs,
        b: usize,
        params: &DeviceMemory,
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
            let (oh, ow) = spec.geometry.output_size();
            let n_views = (b * spec.views as usize) as u32;
            let out = gpu.alloc(b * spec.views as usize * spec.view_bytes())?;
            let views_ptr = params.ptr() + (first * std::mem::size_of::<ViewParams>()) as u64;
            let out_ptr = out.ptr();
            let channels_last = (spec.memory_format == MemoryFormat::ChannelsLast) as u32;
            let k = Convert::new(spec.normalize);
            let config = LaunchConfig {
                grid_dim: (ow.div_ceil(32), oh.div_ceil(8), n_views.clamp(1, 65_535)),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            let mut launch = gpu.stream().launch_builder(self.for_dtype(spec.dtype));
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
            // windows lie inside decoded images and whose destinations lie inside `out`.
            unsafe { launch.launch(config) }
                .map_err(cuda_error("launching the resample kernel"))?;
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
}
