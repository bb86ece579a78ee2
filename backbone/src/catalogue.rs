//! What an architecture crate knows about its variants, as data (timm's `default_cfgs` and
//! `@register_model` beside the model): names and aliases, the paper, the reference
//! configuration, the default preprocessing, the hub repositories known to hold weights, the
//! weights layouts it accepts (with their key and shape mappings) and how to build it.
//!
//! Every architecture crate exports `VARIANTS: &[Variant]`; the `convnets` facade and the
//! command line list and build models only through them. [`Variant::read_weights`] is the one
//! loader of every path: it reads a safetensors file (validated, see [`crate::weights::read`]),
//! recognises its layout from the keys, maps it to the crate's own names, and adapts the input
//! convolution to another channel count (timm's `adapt_input_conv`).

use crate::weights::load::load_into;
pub use crate::weights::load::LoadReport;
use crate::weights::{read_safetensors, ReadOptions, Weights};
use crate::{Backbone, Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// A state dict by name.
pub type StateDict = HashMap<String, Tensor>;

/// How to build a variant: classes, input channels, auxiliary classifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOptions {
    /// Classes of the head.
    pub num_classes: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Whether auxiliary classifiers (GoogLeNet's `aux1`/`aux2`, Inception-v3's `AuxLogits`)
    /// are built; ignored by variants without them.
    pub aux_logits: bool,
}

/// The default preprocessing of a variant's pretrained weights (timm's `pretrained_cfg`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocessing {
    /// `(channels, height, width)`.
    pub input_size: (usize, usize, usize),
    /// Per-channel mean of the normalisation.
    pub mean: &'static [f32],
    /// Per-channel standard deviation.
    pub std: &'static [f32],
    /// Center-crop fraction: images are resized to `size / crop_pct`, then cropped.
    pub crop_pct: f64,
    /// Resize interpolation: `bilinear`, `bicubic` or `nearest`.
    pub interpolation: &'static str,
    /// timm's `test_input_size`: the size the weights are evaluated at when it differs from the
    /// training size (`input_size`).
    pub test_input_size: Option<(usize, usize, usize)>,
    /// timm's `test_crop_pct`: the crop at the test size.
    pub test_crop_pct: Option<f64>,
}

/// ImageNet's mean and standard deviation.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocessing {
    /// torchvision's ImageNet evaluation: 224 px, ImageNet mean/std, crop 0.875, bilinear.
    pub const IMAGENET: Preprocessing = Preprocessing {
        input_size: (3, 224, 224),
        mean: &IMAGENET_MEAN,
        std: &IMAGENET_STD,
        crop_pct: 0.875,
        interpolation: "bilinear",
        test_input_size: None,
        test_crop_pct: None,
    };

    /// This preprocessing at another square size.
    pub const fn at(self, size: usize) -> Self {
        Preprocessing {
            input_size: (self.input_size.0, size, size),
            ..self
        }
    }

    /// With `crop_pct` and `interpolation`.
    pub const fn crop(self, crop_pct: f64, interpolation: &'static str) -> Self {
        Preprocessing {
            crop_pct,
            interpolation,
            ..self
        }
    }

    /// With another normalisation.
    pub const fn normalise(self, mean: &'static [f32], std: &'static [f32]) -> Self {
        Preprocessing { mean, std, ..self }
    }

    /// Evaluated at another square size (timm's `test_input_size`) with `crop_pct` (timm's
    /// `test_crop_pct`, `None` when the weights keep `crop_pct`).
    pub const fn test(self, size: usize, crop_pct: Option<f64>) -> Self {
        Preprocessing {
            test_input_size: Some((self.input_size.0, size, size)),
            test_crop_pct: crop_pct,
            ..self
        }
    }

    /// The input size and crop of the evaluation transform (timm's `resolve_data_config`):
    /// with `use_test_size` (timm's inference default, `use_test_size=True`), the test size and
    /// test crop where the weights define them; else the training size and crop.
    pub fn eval_size(&self, use_test_size: bool) -> ((usize, usize, usize), f64) {
        if use_test_size {
            (
                self.test_input_size.unwrap_or(self.input_size),
                self.test_crop_pct.unwrap_or(self.crop_pct),
            )
        } else {
            (self.input_size, self.crop_pct)
        }
    }
}

/// One published checkpoint of a variant: timm's `default_cfgs` entry `<variant>.<tag>` (or a
/// torchvision weights enum), with its own preprocessing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pretrained {
    /// The tag after the variant's name (`a1_in1k`, `tv2_in1k`).
    pub tag: &'static str,
    /// The Hugging Face hub id holding it (`timm/resnet50.a1_in1k`).
    pub hub_id: &'static str,
    /// How its images are prepared, as its publisher has it.
    pub cfg: Preprocessing,
}

impl Pretrained {
    /// A record: its tag, hub id and preprocessing.
    pub const fn new(tag: &'static str, hub_id: &'static str, cfg: Preprocessing) -> Self {
        Pretrained { tag, hub_id, cfg }
    }
}

/// A weights layout a variant accepts: how to recognise it from the keys and how to map it to
/// the crate's own names (the reference implementation's state dict).
pub struct Layout {
    /// `torchvision`, `timm`, `legacy (norm.1)`, ...
    pub name: &'static str,
    /// Whether a state dict is in this layout.
    pub detect: fn(&StateDict) -> bool,
    /// The state dict in the crate's own names and shapes; errors name the tensor.
    pub remap: fn(StateDict) -> Result<StateDict>,
    /// A tensor's name in the crate's names -> as this layout spells it, for errors that name
    /// the tensor as the file does (`None`: the same name).
    pub file_name: fn(&str) -> Option<String>,
}

impl fmt::Debug for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

fn any(_: &StateDict) -> bool {
    true
}

fn same(tensors: StateDict) -> Result<StateDict> {
    Ok(tensors)
}

/// The same name in the file as in the crate (a [`Layout::file_name`] for layouts that only
/// reshape or rename a few tensors).
pub fn same_name(_: &str) -> Option<String> {
    None
}

/// The crate's own names (torchvision's state dict where torchvision has the model, timm's
/// for EfficientNet), called `name`: the layout every other is mapped to; it matches any state
/// dict, so it comes last in [`Variant::layouts`].
pub const fn native(name: &'static str) -> Layout {
    Layout {
        name,
        detect: any,
        remap: same,
        file_name: same_name,
    }
}

const NATIVE: Layout = native("torchvision");

/// Builds a variant from options and a var builder.
pub type BuildFn = fn(&ModelOptions, VarBuilder) -> Result<Box<dyn Backbone>>;

/// One variant of an architecture, as data.
pub struct Variant {
    /// The name users type (`resnet50`), timm's where timm has the model.
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// The family (`resnet`): `bench resnet` runs every variant of it.
    pub family: &'static str,
    /// One line: what the variant is.
    pub description: &'static str,
    /// The paper that introduced it.
    pub paper: &'static str,
    /// Input channels and classes of the reference configuration.
    pub reference: (usize, usize),
    /// Parameters of the reference configuration (trainable ones, auxiliary heads included).
    pub params: u64,
    /// Multiply-accumulates of one image at the default input size (`preprocessing`), eval
    /// mode, as [`crate::summarize`] counts them.
    pub macs: u64,
    /// The default preprocessing: fresh models, and weights without a tag or a `config.json`
    /// (timm's `pretrained_cfg` of its default tag).
    pub preprocessing: Preprocessing,
    /// Its published checkpoints, the default first (timm's `default_cfgs`): tag, hub id and
    /// each one's own preprocessing.
    pub pretrained: &'static [Pretrained],
    /// The weights layouts it accepts, tried in order; the last is the crate's [`native`] one.
    pub layouts: &'static [Layout],
    /// Name prefixes of auxiliary classifiers (`AuxLogits.`): a file without them builds the
    /// model without them for inference, and leaves them fresh for fine-tuning.
    pub aux_prefixes: &'static [&'static str],
    /// The input convolution's weight, in the crate's names (`conv1.weight`): adapted when the
    /// model has another number of input channels than the file.
    pub stem: &'static str,
    /// Builds it.
    pub build: BuildFn,
}

impl fmt::Debug for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Variant")
            .field("name", &self.name)
            .field("family", &self.family)
            .field("layouts", &self.layouts)
            .finish_non_exhaustive()
    }
}

/// What [`Variant::read_weights`] did to a file's tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsInfo {
    /// The layout recognised (`timm`, `torchvision`, ...).
    pub layout: &'static str,
    /// Whether the file holds the auxiliary classifiers.
    pub has_aux: bool,
    /// The input convolution adapted from `from` to `to` channels, if it was.
    pub adapted_channels: Option<(usize, usize)>,
}

impl fmt::Display for WeightsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} layout", self.layout)?;
        if let Some((from, to)) = self.adapted_channels {
            write!(f, ", input convolution adapted from {from} to {to} channels")?;
        }
        Ok(())
    }
}

/// Names compared without case, `-` and `_` alike.
fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

impl Variant {
    /// The variant of `variants` (an architecture crate's `VARIANTS`) called `name` or an
    /// alias; an unknown name is an error listing the valid ones.
    pub fn find<'a>(variants: &'a [Variant], name: &str) -> Result<&'a Variant> {
        find(&variants.iter().collect::<Vec<_>>(), name)
    }

    /// Whether `name` is this variant's name or an alias (case and `-`/`_` ignored).
    pub fn matches(&self, name: &str) -> bool {
        let wanted = normalise(name);
        normalise(self.name) == wanted || self.aliases.iter().any(|a| normalise(a) == wanted)
    }

    /// The reference configuration's options (auxiliary classifiers on).
    pub fn reference_options(&self) -> ModelOptions {
        ModelOptions {
            num_classes: self.reference.1,
            in_channels: self.reference.0,
            aux_logits: true,
        }
    }

    /// Builds the variant with `options` from `vb` (fresh variables or weights).
    pub fn create(&self, options: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
        (self.build)(options, vb)
    }

    /// The first layout whose `detect` accepts `tensors`.
    pub fn layout_of(&self, tensors: &StateDict) -> &'static Layout {
        self.layouts
            .iter()
            .find(|layout| (layout.detect)(tensors))
            .unwrap_or(&NATIVE)
    }

    /// A state dict in any accepted layout -> the crate's names, for a model with
    /// `in_channels` input channels: `num_batches_tracked` counters dropped, the input
    /// convolution adapted (see [`Variant::adapt_stem`]; `None` keeps it as it is).
    pub fn canonical(
        &self,
        tensors: StateDict,
        in_channels: Option<usize>,
    ) -> Result<(StateDict, WeightsInfo)> {
        let layout = self.layout_of(&tensors);
        let mut tensors = (layout.remap)(tensors)?;
        tensors.retain(|name, _| !crate::weights::is_counter(name));
        let has_aux = self.aux_prefixes.is_empty()
            || tensors
                .keys()
                .any(|k| self.aux_prefixes.iter().any(|p| k.starts_with(p)));
        let mut info = WeightsInfo {
            layout: layout.name,
            has_aux,
            adapted_channels: None,
        };
        if let Some(in_channels) = in_channels {
            info.adapted_channels = self.adapt_stem(&mut tensors, in_channels)?;
        }
        Ok((tensors, info))
    }

    /// The input channels of a state dict in the crate's names (its stem's), if it has a stem.
    pub fn stem_channels(&self, tensors: &StateDict) -> Option<usize> {
        tensors
            .get(self.stem)
            .filter(|t| t.rank() == 4)
            .and_then(|t| t.dim(1).ok())
    }

    /// Adapts the input convolution of a state dict in the crate's names to `in_channels`
    /// (timm's `adapt_input_conv`); returns `(from, to)` when it changed.
    pub fn adapt_stem(&self, tensors: &mut StateDict, in_channels: usize) -> Result<Option<(usize, usize)>> {
        let Some(from) = self.stem_channels(tensors) else {
            return Ok(None);
        };
        if from == in_channels {
            return Ok(None);
        }
        let adapted = adapt_input_conv(&tensors[self.stem], in_channels).map_err(|e| Error::Weights {
            file: None,
            tensor: self.stem.to_string(),
            problem: format!("cannot adapt the input convolution from {from} to {in_channels} channels: {e}"),
        })?;
        tensors.insert(self.stem.to_string(), adapted);
        Ok(Some((from, in_channels)))
    }

    /// Reads a safetensors file and maps it with [`Variant::canonical`]. Errors name the file
    /// and the tensor.
    pub fn read_weights(&self, path: &Path, in_channels: Option<usize>) -> Result<(StateDict, WeightsInfo)> {
        let tensors = read_safetensors(path, &Device::Cpu, &ReadOptions::weights())?;
        self.canonical(tensors, in_channels).map_err(|e| match e {
            Error::Weights {
                file: None,
                tensor,
                problem,
            } => Error::Weights {
                file: Some(path.to_path_buf()),
                tensor,
                problem,
            },
            other => other,
        })
    }

    /// Builds the variant from a weights file in any accepted layout, strictly (every tensor
    /// used, every variable found), in `dtype` on `device`. A file without the auxiliary
    /// classifiers builds the model without them.
    pub fn load(
        &self,
        path: &Path,
        options: &ModelOptions,
        dtype: DType,
        device: &Device,
    ) -> Result<(Box<dyn Backbone>, WeightsInfo)> {
        let (tensors, info) = self.read_weights(path, Some(options.in_channels))?;
        let model = self.build_from(tensors, &info, Some(path), options, dtype, device)?;
        Ok((model, info))
    }

    /// [`Variant::load`] from a state dict [`Variant::canonical`] (or
    /// [`Variant::read_weights`]) returned, with its `info`; `file` is named in errors.
    pub fn build_from(
        &self,
        tensors: StateDict,
        info: &WeightsInfo,
        file: Option<&Path>,
        options: &ModelOptions,
        dtype: DType,
        device: &Device,
    ) -> Result<Box<dyn Backbone>> {
        let options = ModelOptions {
            aux_logits: options.aux_logits && info.has_aux,
            ..*options
        };
        let mut tensors = tensors;
        if !options.aux_logits {
            // A model without auxiliary heads ignores the file's (torchvision's
            // `aux_logits=False`).
            tensors.retain(|name, _| !self.aux_prefixes.iter().any(|p| name.starts_with(p)));
        }
        let weights = Weights::from_tensors(tensors, file.map(Path::to_path_buf));
        weights
            .build(dtype, device, true, |vb| self.create(&options, vb))
            .map_err(|e| self.as_file_names(e, info))
    }

    /// A weights error with the tensor named as the file spells it (the layout's
    /// [`Layout::file_name`]) and the layout the file was read as.
    fn as_file_names(&self, e: Error, info: &WeightsInfo) -> Error {
        match e {
            Error::Weights {
                file,
                tensor,
                problem,
            } => {
                let layout = self.layouts.iter().find(|l| l.name == info.layout);
                let spelled = layout.and_then(|l| (l.file_name)(&tensor));
                let problem = match &spelled {
                    Some(_) => {
                        format!("{problem} (the file was read as {info}; `{tensor}` in this crate's names)")
                    }
                    None => format!("{problem} (the file was read as {info})"),
                };
                Error::Weights {
                    file,
                    tensor: spelled.unwrap_or(tensor),
                    problem,
                }
            }
            other => other,
        }
    }

    /// Builds the variant with fresh variables from `vars` and copies a state dict that
    /// [`Variant::read_weights`] returned into them, so the model trains (timm's
    /// `load_pretrained`): the classifier (and auxiliary classifiers) keep their fresh
    /// initialisation where the file's shape differs (another `num_classes`) or the file lacks
    /// them; every other variable must be in the file with its shape, and every tensor of the
    /// file used. The [`LoadReport`] says what was loaded and what initialised.
    #[allow(clippy::too_many_arguments)]
    pub fn load_trainable(
        &self,
        tensors: StateDict,
        info: &WeightsInfo,
        file: &Path,
        options: &ModelOptions,
        vars: &crate::init::SeededVarMap,
        dtype: DType,
        device: &Device,
    ) -> Result<(Box<dyn Backbone>, LoadReport)> {
        let mut tensors = tensors;
        if !options.aux_logits {
            tensors.retain(|name, _| !self.aux_prefixes.iter().any(|p| name.starts_with(p)));
        }
        let model = self.create(options, vars.var_builder(dtype, device))?;
        let mut fresh = vec![model.head_prefix().to_string()];
        fresh.extend(model.aux_head_prefixes());
        if !info.has_aux {
            fresh.extend(
                self.aux_prefixes
                    .iter()
                    .map(|p| p.trim_end_matches('.').to_string()),
            );
        }
        let report =
            load_into(vars.varmap(), tensors, file, &fresh).map_err(|e| self.as_file_names(e, info))?;
        Ok((model, report))
    }

    /// Its checkpoint tagged `tag` (`a1_in1k`), if published.
    pub fn checkpoint(&self, tag: &str) -> Option<&'static Pretrained> {
        self.pretrained.iter().find(|p| p.tag.eq_ignore_ascii_case(tag))
    }

    /// Its checkpoint held by the hub repo `hub_id` (`timm/resnet50.a1_in1k`, a revision after
    /// `@` ignored), if it is one of its own.
    pub fn checkpoint_by_hub_id(&self, hub_id: &str) -> Option<&'static Pretrained> {
        let repo = hub_id.split('@').next().unwrap_or(hub_id);
        self.pretrained
            .iter()
            .find(|p| p.hub_id.eq_ignore_ascii_case(repo))
    }

    /// The preprocessing of `checkpoint` (or, without one, the variant's default).
    pub fn cfg(&self, checkpoint: Option<&Pretrained>) -> Preprocessing {
        checkpoint.map_or(self.preprocessing, |p| p.cfg)
    }
}

/// The variant and checkpoint a model name with an optional tag names (timm's
/// `resnet50.a1_in1k`: the variant `resnet50`, its checkpoint `a1_in1k`); an unknown variant or
/// tag is an error listing the valid ones.
pub fn find_tagged<'a>(
    catalogue: &[&'a Variant],
    name: &str,
) -> Result<(&'a Variant, Option<&'static Pretrained>)> {
    let (arch, tag) = match name.split_once('.') {
        Some((arch, tag)) => (arch, Some(tag)),
        None => (name, None),
    };
    let variant = find(catalogue, arch)?;
    let Some(tag) = tag else {
        return Ok((variant, None));
    };
    match variant.checkpoint(tag) {
        Some(checkpoint) => Ok((variant, Some(checkpoint))),
        None => {
            let tags: Vec<String> = variant
                .pretrained
                .iter()
                .map(|p| format!("{}.{}", variant.name, p.tag))
                .collect();
            Err(Error::config(format!(
                "unknown checkpoint `{name}`: {} {}",
                variant.name,
                if tags.is_empty() {
                    "has no published checkpoints".to_string()
                } else {
                    format!("has {}", tags.join(", "))
                }
            )))
        }
    }
}

/// timm's `adapt_input_conv`: RGB weights `[O, I, kh, kw]` for a model with `in_channels`
/// inputs: one channel sums the input channels; other counts repeat them cyclically and rescale
/// by `I / in_channels`.
pub fn adapt_input_conv(weight: &Tensor, in_channels: usize) -> Result<Tensor> {
    let (_, from, _, _) = weight.dims4()?;
    if in_channels == 0 {
        return Err(Error::config("a model needs at least one input channel"));
    }
    if in_channels == from {
        return Ok(weight.clone());
    }
    let dtype = weight.dtype();
    let w = weight.to_dtype(DType::F32)?;
    let adapted = if in_channels == 1 {
        w.sum_keepdim(1)?
    } else {
        let repeats = in_channels.div_ceil(from);
        let tiled = Tensor::cat(&vec![&w; repeats], 1)?.narrow(1, 0, in_channels)?;
        (tiled * (from as f64 / in_channels as f64))?
    };
    Ok(adapted.to_dtype(dtype)?)
}

/// The variant of `catalogue` called `name` (or an alias); an unknown name is an error listing
/// the valid ones.
pub fn find<'a>(catalogue: &[&'a Variant], name: &str) -> Result<&'a Variant> {
    catalogue
        .iter()
        .copied()
        .find(|v| v.matches(name))
        .ok_or_else(|| {
            let names: Vec<&str> = catalogue.iter().map(|v| v.name).collect();
            Error::config(format!(
                "unknown model `{name}`; valid names: {}",
                names.join(", ")
            ))
        })
}

/// A var builder backend that hands out zeros (untouched pages: nothing is computed) and counts
/// the parameters asked for.
#[derive(Clone, Default)]
struct Counter(std::sync::Arc<std::sync::Mutex<HashMap<String, Vec<usize>>>>);

impl candle_nn::var_builder::SimpleBackend for Counter {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), shape.dims().to_vec());
        Tensor::zeros(shape, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "{name}: a shape is needed to count parameters"
        )))
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// Every variable `variant` built with `options` asks for, with its shape (batch-norm running
/// statistics included), found without computing any weight.
pub fn variable_shapes(
    variant: &Variant,
    options: &ModelOptions,
) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
    let counter = Counter::default();
    let vb = VarBuilder::from_backend(Box::new(counter.clone()), DType::F32, Device::Cpu);
    variant.create(options, vb)?;
    let shapes = counter.0.lock().unwrap_or_else(|e| e.into_inner());
    Ok(shapes.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// The trainable parameters of `variant` built with `options` (batch-norm running statistics
/// excluded), counted without computing any weight.
pub fn count_params(variant: &Variant, options: &ModelOptions) -> Result<u64> {
    Ok(variable_shapes(variant, options)?
        .iter()
        .filter(|(name, _)| !crate::init::is_buffer(name))
        .map(|(_, shape)| shape.iter().product::<usize>() as u64)
        .sum())
}
