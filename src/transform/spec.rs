//! What a user asks of the pipelines: each pipeline's [`PipelineSpec`], where they run
//! ([`Device`], [`GpuDecoder`]) and what to do with an image that does not decode
//! ([`OnError`]). Every option string is parsed here, once.

use std::str::FromStr;

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

/// A photometric stage between the geometry and the conversion, in pipeline order, with
/// torchvision v2's parameters. They act on the 8-bit view as torchvision's do on uint8 images
/// (each operation's result truncated or rounded to 0..255 as torchvision does).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Photometric {
    /// `ColorJitter`: each factor range `None` when the operation is off; the four run in a
    /// random order drawn per view.
    ColorJitter {
        brightness: Option<(f64, f64)>,
        contrast: Option<(f64, f64)>,
        saturation: Option<(f64, f64)>,
        hue: Option<(f64, f64)>,
    },
    /// `RandomGrayscale(p)` (three equal channels).
    Grayscale { p: f64 },
    /// `GaussianBlur(kernel_size, sigma)`: kernel (x, y), odd; sigma uniform in the range.
    GaussianBlur {
        kernel: (u32, u32),
        sigma: (f64, f64),
    },
    /// `RandomSolarize(threshold, p)`: values >= threshold (0..255 scale) inverted.
    Solarize { threshold: f64, p: f64 },
    /// `RandomApply(stages, p)`: all of `stages` or none.
    Apply { p: f64, stages: Vec<Photometric> },
}

/// `RandomErasing(p, scale, ratio, value)`: a rectangle of the output view set to `value`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Erasing {
    pub p: f64,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    /// Per channel; in output units when `output_units` (the stage came after `Normalize` or
    /// `ToTorchImage`, or the output is uint8), else a 0..255 pixel value that goes through
    /// the conversion like the view's pixels.
    pub value: [f32; 3],
    /// `value="random"`: every erased element standard normal noise (in output units).
    #[serde(default)]
    pub random: bool,
    pub output_units: bool,
    /// The stage came before the flip, so a flipped view has the rectangle mirrored.
    pub before_flip: bool,
}

/// How views are resized: PIL's and torchvision's filters, antialiased (the filter widened by
/// the downscale factor) unless the spec says `antialias: false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    #[default]
    Bilinear,
    /// Cubic convolution with a = -0.5 (PIL's `BICUBIC`, torchvision's antialiased bicubic),
    /// or a = -0.75 without antialiasing (torch's `interpolate(mode="bicubic")`).
    Bicubic,
}

fn antialiased() -> bool {
    true
}

/// Where channels go in memory: `[.., 3, H, W]` or `[.., H, W, 3]`. Either way the tensor's
/// shape is `[.., 3, H, W]`; channels-last is expressed with strides, as PyTorch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum MemoryFormat {
    Contiguous,
    ChannelsLast,
}

impl FromStr for MemoryFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<MemoryFormat> {
        match s {
            "contiguous" => Ok(MemoryFormat::Contiguous),
            "channels_last" => Ok(MemoryFormat::ChannelsLast),
            other => Err(Error::invalid(format!(
                "memory_format must be 'contiguous' or 'channels_last', not {other:?}"
            ))),
        }
    }
}

impl TryFrom<String> for MemoryFormat {
    type Error = Error;
    fn try_from(s: String) -> Result<MemoryFormat> {
        s.parse()
    }
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
    /// Photometric stages, applied to the view's 8-bit pixels in this order.
    #[serde(default)]
    pub photometric: Vec<Photometric>,
    #[serde(default)]
    pub erasing: Option<Erasing>,
    /// The geometry stage's `interpolation`.
    #[serde(default)]
    pub filter: Filter,
    /// The geometry stage's `antialias` (torchvision v2's default, true). False: the filter is
    /// not widened when it downscales, as torch's `interpolate(..., antialias=False)`; the
    /// decode is then never DCT-reduced, which would smooth what the filter does not.
    #[serde(default = "antialiased")]
    pub antialias: bool,
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
            photometric: Vec::new(),
            erasing: None,
            filter: Filter::Bilinear,
            antialias: true,
            normalize: Some((IMAGENET_MEAN, IMAGENET_STD)),
            dtype,
            memory_format: MemoryFormat::Contiguous,
            reduced_decode,
        }
    }

    /// The pipelines of a loader from the JSON the Python package sends (checked with the
    /// dataset when the loader is made).
    pub fn list_from_json(json: &str) -> Result<Vec<PipelineSpec>> {
        // Through a `Value`, so that errors name the problem without a position in the text.
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::invalid(format!("pipelines: {e}")))?;
        serde_json::from_value(value).map_err(|e| Error::invalid(format!("pipelines: {e}")))
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
        for stage in &self.photometric {
            stage.validate((h, w)).or_else(bad)?;
        }
        if let Some(e) = &self.erasing {
            e.validate().or_else(bad)?;
            if e.random && (!e.output_units || self.dtype == DType::Uint8) {
                return bad(
                    "RandomErasing(value='random') fills with normal noise in the \
                            normalized units: put it after Normalize, with a float dtype"
                        .into(),
                );
            }
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

fn probability(name: &str, p: f64) -> std::result::Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{name} probability {p} is not in [0, 1]"))
    }
}

fn increasing(
    name: &str,
    (lo, hi): (f64, f64),
    bound: (f64, f64),
) -> std::result::Result<(), String> {
    if bound.0 <= lo && lo <= hi && hi <= bound.1 {
        Ok(())
    } else {
        Err(format!(
            "{name} range ({lo}, {hi}) must be increasing and within [{}, {}]",
            bound.0, bound.1
        ))
    }
}

impl Photometric {
    /// Checked against torchvision's own checks, for a view of `size` (height, width).
    fn validate(&self, size: (u32, u32)) -> std::result::Result<(), String> {
        match self {
            Photometric::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
            } => {
                let factors = [("brightness", brightness), ("contrast", contrast)];
                for (name, range) in factors.into_iter().chain([("saturation", saturation)]) {
                    if let Some(r) = range {
                        increasing(name, *r, (0.0, f64::INFINITY))?;
                    }
                }
                if let Some(r) = hue {
                    increasing("hue", *r, (-0.5, 0.5))?;
                }
                Ok(())
            }
            Photometric::Grayscale { p } => probability("RandomGrayscale", *p),
            Photometric::GaussianBlur { kernel, sigma } => {
                let (kx, ky) = *kernel;
                if kx % 2 == 0 || ky % 2 == 0 {
                    return Err(format!(
                        "GaussianBlur kernel_size must be odd and positive, not ({kx}, {ky})"
                    ));
                }
                // Reflection padding needs the half kernel inside the view, as torch's does.
                if kx / 2 >= size.1 || ky / 2 >= size.0 {
                    return Err(format!(
                        "GaussianBlur kernel_size ({kx}, {ky}) is too large for a {}x{} view",
                        size.0, size.1
                    ));
                }
                if sigma.0 <= 0.0 {
                    return Err(format!(
                        "GaussianBlur sigma must be positive, not {sigma:?}"
                    ));
                }
                increasing("GaussianBlur sigma", *sigma, (0.0, f64::INFINITY))
            }
            Photometric::Solarize { threshold, p } => {
                if !(0.0..=255.0).contains(threshold) {
                    return Err(format!(
                        "RandomSolarize threshold {threshold} is not in [0, 255]"
                    ));
                }
                probability("RandomSolarize", *p)
            }
            Photometric::Apply { p, stages } => {
                probability("RandomApply", *p)?;
                stages.iter().try_for_each(|s| s.validate(size))
            }
        }
    }
}

impl Erasing {
    fn validate(&self) -> std::result::Result<(), String> {
        probability("RandomErasing", self.p)?;
        increasing("RandomErasing scale", self.scale, (0.0, 1.0))?;
        if self.ratio.0 <= 0.0 {
            return Err(format!(
                "RandomErasing ratio must be positive, not {:?}",
                self.ratio
            ));
        }
        increasing("RandomErasing ratio", self.ratio, (0.0, f64::INFINITY))?;
        if !self.value.iter().all(|v| v.is_finite()) {
            return Err(format!(
                "RandomErasing value {:?} must be finite",
                self.value
            ));
        }
        Ok(())
    }
}

/// What to do with an image that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Fail the batch with an error naming the sample.
    Raise,
    /// Use another sample instead (chosen deterministically) and count it.
    Skip,
}

impl FromStr for OnError {
    type Err = Error;
    fn from_str(s: &str) -> Result<OnError> {
        match s {
            "raise" => Ok(OnError::Raise),
            "skip" => Ok(OnError::Skip),
            other => Err(Error::invalid(format!(
                "on_error must be 'raise' or 'skip', not {other:?}"
            ))),
        }
    }
}

/// Where pipelines run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// A GPU by ordinal, decoding JPEGs with `decoder`; `roi_decode`: the hardware engine
    /// decodes only the part of each image the crops read (the same pixels there as a whole
    /// decode; off for measuring what it saves).
    Cuda {
        ordinal: usize,
        decoder: GpuDecoder,
        roi_decode: bool,
    },
}

/// Who decodes JPEGs for a GPU pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuDecoder {
    /// nvJPEG: the hardware engine where the GPU has one and it takes the image, else the
    /// CUDA backend; the CPU for what nvJPEG cannot decode.
    Auto,
    /// nvJPEG's CUDA backend only (and the CPU fallback).
    Cuda,
    /// libjpeg-turbo on the host threads; the GPU only transforms.
    Cpu,
}

impl FromStr for GpuDecoder {
    type Err = Error;
    fn from_str(s: &str) -> Result<GpuDecoder> {
        match s {
            "auto" => Ok(GpuDecoder::Auto),
            "cuda" => Ok(GpuDecoder::Cuda),
            "cpu" => Ok(GpuDecoder::Cpu),
            other => Err(Error::invalid(format!(
                "decoder must be 'auto', 'cuda' or 'cpu', not {other:?}"
            ))),
        }
    }
}
