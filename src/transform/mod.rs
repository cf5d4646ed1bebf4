//! Image pipelines: what a user asks for (a [`PipelineSpec`]) and the geometry of each view.
//!
//! A pipeline turns one image field into a tensor `[B, 3, H, W]` (`[B, V, 3, H, W]` with
//! several views): a geometry stage (torchvision's RandomResizedCrop, or Resize + CenterCrop),
//! an optional horizontal flip, then conversion to the output dtype with an optional
//! normalization, in NCHW or channels-last order. [`cpu`] runs it fused, per image; [`cuda`]
//! runs it on a GPU (nvJPEG, then one kernel launch per batch and output), with
//! [`resample`] holding the geometry both share and the CPU twin of the kernel's math.

pub mod batch;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_unavailable.rs"]
pub mod cuda;
pub mod params;
pub mod resample;

use serde::Deserialize;

use crate::dtype::DType;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Geometry {
    /// `RandomResizedCrop(size, scale, ratio)`, antialiased bilinear.
    RandomResizedCrop {
        height: u32,
        width: u32,
        scale: (f64, f64),
        ratio: (f64, f64),
    },
    /// `Resize(resize)` (shorter side; skipped when `None`) then `CenterCrop((height, width))`.
    CenterCrop {
        height: u32,
        width: u32,
        resize: Option<u32>,
    },
}

impl Geometry {
    pub fn output_size(&self) -> (u32, u32) {
        match *self {
            Geometry::RandomResizedCrop { height, width, .. }
            | Geometry::CenterCrop { height, width, .. } => (height, width),
        }
    }
}

/// Where channels go in memory: `[.., 3, H, W]` or `[.., H, W, 3]`. Either way the tensor's
/// shape is `[.., 3, H, W]`; channels-last is expressed with strides, as PyTorch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryFormat {
    Contiguous,
    ChannelsLast,
}

/// Also the JSON the Python package sends (see `python/slipstream/transforms.py`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The batch key of the output.
    pub name: String,
    /// The image field it reads.
    pub field: String,
    /// Independent random views of each image (each with its own crop and flip).
    pub views: u32,
    pub geometry: Geometry,
    /// Probability of a horizontal flip (0 when there is no flip stage).
    pub flip: f64,
    /// `Normalize(mean, std)` on values scaled to [0, 1].
    pub normalize: Option<([f32; 3], [f32; 3])>,
    pub dtype: DType,
    pub memory_format: MemoryFormat,
    /// Decode only what the crops need, DCT-downscaled when they are much larger than the
    /// output. Off: every crop is resized from full-resolution pixels, as torchvision does.
    pub reduced_decode: bool,
}

/// torchvision's ImageNet channel means and standard deviations, on the 0..1 scale.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl PipelineSpec {
    /// The usual training transform of the field "image", output "image": torchvision's
    /// RandomResizedCrop(size) (scale 0.08-1, ratio 3/4-4/3), horizontal flip with p 0.5 and
    /// ImageNet normalization, NCHW.
    pub fn imagenet_training(size: u32, dtype: DType, reduced_decode: bool) -> PipelineSpec {
        PipelineSpec {
            name: "image".into(),
            field: "image".into(),
            views: 1,
            geometry: Geometry::RandomResizedCrop {
                height: size,
                width: size,
                scale: (0.08, 1.0),
                ratio: (0.75, 4.0 / 3.0),
            },
            flip: 0.5,
            normalize: Some((IMAGENET_MEAN, IMAGENET_STD)),
            dtype,
            memory_format: MemoryFormat::Contiguous,
            reduced_decode,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let (h, w) = self.geometry.output_size();
        let bad = |m: String| Err(Error::invalid(format!("pipeline '{}': {m}", self.name)));
        if h == 0 || w == 0 {
            return bad(format!("output size {h}x{w} is empty"));
        }
        if self.views == 0 {
            return bad("views must be at least 1".into());
        }
        if !matches!(
            self.dtype,
            DType::Uint8 | DType::Float16 | DType::Bfloat16 | DType::Float32
        ) {
            return bad(format!(
                "dtype {} is not an image dtype (uint8, float16, bfloat16, float32)",
                self.dtype.name()
            ));
        }
        if self.dtype == DType::Uint8 && self.normalize.is_some() {
            return bad("Normalize needs a float dtype (float16, bfloat16 or float32)".into());
        }
        if let Some((_, std)) = self.normalize
            && std.contains(&0.0)
        {
            return bad("Normalize std must not be 0".into());
        }
        if let Geometry::RandomResizedCrop { scale, ratio, .. } = self.geometry
            && !(scale.0 > 0.0 && scale.0 <= scale.1 && ratio.0 > 0.0 && ratio.0 <= ratio.1)
        {
            return bad(format!(
                "RandomResizedCrop needs 0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1], got scale={scale:?} ratio={ratio:?}"
            ));
        }
        if !(0.0..=1.0).contains(&self.flip) {
            return bad(format!("flip probability {} is not in [0, 1]", self.flip));
        }
        Ok(())
    }

    /// Bytes of one view of one image in the output.
    pub fn view_bytes(&self) -> usize {
        let (h, w) = self.geometry.output_size();
        3 * h as usize * w as usize * self.dtype.size()
    }

    /// Shape and strides (in elements) of the batch tensor for `batch` images.
    pub fn tensor_layout(&self, batch: usize) -> (Vec<i64>, Vec<i64>) {
        let (h, w) = self.geometry.output_size();
        let (h, w) = (h as i64, w as i64);
        let (c_stride, y_stride, x_stride) = match self.memory_format {
            MemoryFormat::Contiguous => (h * w, w, 1),
            MemoryFormat::ChannelsLast => (1, w * 3, 3),
        };
        let image = 3 * h * w;
        if self.views == 1 {
            (
                vec![batch as i64, 3, h, w],
                vec![image, c_stride, y_stride, x_stride],
            )
        } else {
            let v = self.views as i64;
            (
                vec![batch as i64, v, 3, h, w],
                vec![v * image, image, c_stride, y_stride, x_stride],
            )
        }
    }
}
