//! The random parameters of the pipelines' stages, for Python's `get_params`: the same
//! counter-based draws the pipelines make, for one view of one sample.

use pyo3::prelude::*;

use super::errors::IntoPy;
use crate::error::Error;
use crate::transform::params::{self, ColorOp, ViewKey};
use crate::transform::spec::{Erasing, Photometric};

fn view_key(seed: u64, epoch: u64, sample: u64, view: u64) -> ViewKey {
    ViewKey {
        seed,
        epoch,
        sample,
        view,
    }
}

/// RandomResizedCrop's (top, left, height, width) for one view of one sample.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(super) fn random_resized_crop_params(
    seed: u64,
    epoch: u64,
    sample: u64,
    view: u64,
    height: u32,
    width: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> (u32, u32, u32, u32) {
    let key = view_key(seed, epoch, sample, view);
    let c = params::random_resized_crop_for(key, height, width, scale, ratio);
    (c.top, c.left, c.height, c.width)
}

/// Whether one view of one sample is flipped, with probability `p`.
#[pyfunction]
pub(super) fn flip_param(seed: u64, epoch: u64, sample: u64, view: u64, p: f64) -> bool {
    let key = view_key(seed, epoch, sample, view);
    params::flip_for(key, p)
}

/// The photometric operations one view of one sample undergoes, in order: (name, parameter),
/// for the stages in `stages_json` (a list, as in a pipeline's JSON).
#[pyfunction]
pub(super) fn photometric_params(
    py: Python<'_>,
    stages_json: &str,
    seed: u64,
    epoch: u64,
    sample: u64,
    view: u64,
) -> PyResult<Vec<(&'static str, Option<f64>)>> {
    let stages: Vec<Photometric> = serde_json::from_str(stages_json)
        .map_err(|e| Error::invalid(format!("photometric stages: {e}")))
        .py_err(py)?;
    let key = view_key(seed, epoch, sample, view);
    Ok(params::photometric_for(&stages, key)
        .into_iter()
        .map(|op| match op {
            ColorOp::Brightness(f) => ("brightness", Some(f)),
            ColorOp::Contrast(f) => ("contrast", Some(f)),
            ColorOp::Saturation(f) => ("saturation", Some(f)),
            ColorOp::Hue(f) => ("hue", Some(f)),
            ColorOp::Grayscale => ("grayscale", None),
            ColorOp::Blur { sigma, .. } => ("gaussian_blur", Some(sigma)),
            ColorOp::Solarize(t) => ("solarize", Some(t)),
        })
        .collect())
}

/// RandomErasing's (top, left, height, width) for one view of `height` x `width`, if any.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(super) fn erasing_params(
    py: Python<'_>,
    erasing_json: &str,
    seed: u64,
    epoch: u64,
    sample: u64,
    view: u64,
    height: u32,
    width: u32,
) -> PyResult<Option<(u32, u32, u32, u32)>> {
    let erasing: Erasing = serde_json::from_str(erasing_json)
        .map_err(|e| Error::invalid(format!("erasing: {e}")))
        .py_err(py)?;
    let key = view_key(seed, epoch, sample, view);
    Ok(params::erasing_for(key, &erasing, (height, width))
        .map(|b| (b.top, b.left, b.height, b.width)))
}
