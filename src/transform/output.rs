//! What both pipelines share at the level of a batch: the outputs and the image fields they
//! read, checked against the cache; what a batch produced; and the `on_error` policy, one
//! retry loop that both devices follow, so that they replace a broken sample by the same one.

use super::spec::{OnError, PipelineSpec};
use crate::cache::format::FieldKind;
use crate::cache::{CacheReader, FieldValue};
use crate::decode::{Image, ImagePolicy};
use crate::error::{Error, Location, Result};
use crate::tensor::Tensor;

/// One pipeline's output.
pub struct Output {
    pub spec: PipelineSpec,
    /// Number of the first view among all views of its field: views are numbered across the
    /// pipelines that read one field, each number with its own random stream.
    pub first_view: u64,
}

/// The pipelines reading one image field (each image is decoded once for all of them).
pub struct Group {
    pub field: usize,
    /// Indices into [`Outputs::outputs`].
    pub outputs: Vec<usize>,
}

/// A loader's pipelines, checked against the cache's fields, grouped by the field they read,
/// with what they do with images that do not decode or that they refuse.
pub struct Outputs {
    pub outputs: Vec<Output>,
    pub groups: Vec<Group>,
    pub on_error: OnError,
    pub policy: ImagePolicy,
}

impl Outputs {
    pub fn new(
        reader: &CacheReader,
        specs: Vec<PipelineSpec>,
        on_error: OnError,
        policy: ImagePolicy,
    ) -> Result<Outputs> {
        let mut outputs: Vec<Output> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        for spec in specs {
            spec.validate()?;
            let field = image_field(reader, &spec)?;
            if outputs.iter().any(|o| o.spec.name == spec.name) {
                return Err(Error::invalid(format!(
                    "two pipelines are named '{}'",
                    spec.name
                )));
            }
            let group = match groups.iter().position(|g| g.field == field) {
                Some(g) => g,
                None => {
                    groups.push(Group {
                        field,
                        outputs: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let first_view = groups[group]
                .outputs
                .iter()
                .map(|&o| outputs[o].spec.views as u64)
                .sum();
            groups[group].outputs.push(outputs.len());
            outputs.push(Output { spec, first_view });
        }
        Ok(Outputs {
            outputs,
            groups,
            on_error,
            policy,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// The image fields the pipelines read.
    pub fn source_fields(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.field).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.spec.name.clone()).collect()
    }
}

/// The field `spec` reads, which must hold encoded images.
fn image_field(reader: &CacheReader, spec: &PipelineSpec) -> Result<usize> {
    let field = reader.field_index(&spec.field).ok_or_else(|| {
        Error::invalid(format!(
            "pipeline '{}' reads field '{}', which the dataset does not have",
            spec.name, spec.field
        ))
    })?;
    let kind = reader.fields()[field].kind;
    if !matches!(kind, FieldKind::Bytes | FieldKind::Yuv420) {
        let hint = match kind {
            FieldKind::Pil => {
                "; open the dataset with encoding=\"yuv420\" or \"jpeg\" to read them"
            }
            _ => "",
        };
        return Err(Error::invalid(format!(
            "pipeline '{}' reads field '{}', which holds {kind:?} values, not images{hint}",
            spec.name, spec.field
        )));
    }
    Ok(field)
}

/// Batch tensors with their output names.
pub type NamedTensors = Vec<(String, Tensor)>;

/// What one batch produced.
pub struct Produced {
    /// The samples actually delivered (differs from the request where one was replaced).
    pub samples: Vec<u64>,
    /// One tensor per pipeline, in the order the pipelines were given.
    pub tensors: NamedTensors,
    pub replaced: u64,
    /// Images decoded by the GPU's hardware engine, nvJPEG's CUDA backend, and the CPU.
    pub routes: [u64; 3],
}

/// `replacement(sample, attempt)`: the sample tried instead of a broken `sample` at attempt
/// 1, 2, ... (the sampler's deterministic choice).
pub type Replacement<'a> = dyn Fn(u64, u64) -> u64 + Sync + 'a;

/// The image `sample` holds in `field`, one that [`Outputs::new`] accepted as an image field.
pub fn image_of(reader: &CacheReader, field: usize, sample: u64) -> Result<Image<'_>> {
    Ok(match reader.value(field, sample)? {
        FieldValue::Bytes(bytes) => Image::Encoded(bytes),
        FieldValue::Yuv420(planes) => Image::Yuv420(planes),
        _ => unreachable!("pipelines read image fields (Outputs::new checks)"),
    })
}

/// Samples tried for one slot of a batch before giving up, under `OnError::Skip`.
pub const MAX_ATTEMPTS: u64 = 16;

/// Why a sample could not be rendered: one of its images (the sample may be replaced), or the
/// cache (never replaced).
pub enum Failure {
    /// The image field's name and what is wrong with the image.
    Image(String, String),
    Cache(Error),
}

/// The `on_error` policy for the slots of one batch.
pub struct Retry<'a> {
    pub on_error: OnError,
    /// The cache's source, named in errors.
    pub source: &'a str,
    pub replacement: &'a Replacement<'a>,
}

impl Retry<'_> {
    /// Fill the slot of `requested`: try candidate `first`, `first + 1`, ... (candidate 0 is
    /// `requested`, candidate k its k-th replacement) until `render` succeeds, and return the
    /// sample used, its candidate number and what `render` made of it. A cache failure ends
    /// the search at once, as does a broken image under `OnError::Raise`; after
    /// [`MAX_ATTEMPTS`] candidates the first broken image is the error.
    pub fn fill<T>(
        &self,
        requested: u64,
        first: u64,
        mut render: impl FnMut(u64) -> std::result::Result<T, Failure>,
    ) -> Result<(u64, u64, T)> {
        let mut first_failure = None;
        for attempt in first..MAX_ATTEMPTS {
            let sample = if attempt == 0 {
                requested
            } else {
                (self.replacement)(requested, attempt)
            };
            match render(sample) {
                Ok(made) => return Ok((sample, attempt, made)),
                Err(Failure::Cache(error)) => return Err(error),
                Err(Failure::Image(field, message)) => {
                    let error = Error::Decode {
                        location: Location::sample(self.source, sample),
                        field,
                        message,
                    };
                    if self.on_error == OnError::Raise {
                        return Err(error);
                    }
                    first_failure.get_or_insert(error);
                }
            }
        }
        Err(first_failure.expect("at least one attempt failed"))
    }
}
