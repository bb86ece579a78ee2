//! Every classic convolutional network of this workspace by name, with timm's verbs:
//! [`list_models`], [`create_model`], [`pretrained_cfg`]. The names, layouts and preprocessing
//! come from the architecture crates' catalogues ([`backbone::catalogue`]); a cargo feature per
//! family (all on by default) decides which crates are in.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use convnets::{create_model, list_models, CreateOptions};
//!
//! assert!(list_models("resnet*").contains(&"resnet50"));
//! // A fresh, seeded model with 10 classes (a weights file: `CreateOptions::weights`).
//! let model = create_model("resnet18", &CreateOptions { num_classes: Some(10), ..Default::default() })?;
//! let logits = model.forward_t(&Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu)?, false)?;
//! assert_eq!(logits.dims(), [2, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "cbcnn")]
pub mod boosted;

use backbone::catalogue::{find, find_tagged};
use candle_core::{DType, Device};
use std::ops::Deref;
use std::path::{Path, PathBuf};

pub use backbone::catalogue::{LoadReport, ModelOptions, Preprocessing, Pretrained, Variant, WeightsInfo};
pub use backbone::init::SeededVarMap;
pub use backbone::{self, Backbone, Error, Result};
pub use hub::{DataConfig, Interpolation, PretrainedConfig, IMAGENET_MEAN, IMAGENET_STD};
/// Export to ONNX (`convnets-onnx`), with the `onnx` feature.
#[cfg(feature = "onnx")]
pub use onnx;

/// Every variant of the enabled families, in the order `cargo xtask models` lists them.
pub fn catalogue() -> Vec<&'static Variant> {
    let all: [&'static [Variant]; 13] = [
        #[cfg(feature = "lenet")]
        lenet::VARIANTS,
        #[cfg(not(feature = "lenet"))]
        &[],
        #[cfg(feature = "alexnet")]
        alexnet::VARIANTS,
        #[cfg(not(feature = "alexnet"))]
        &[],
        #[cfg(feature = "zfnet")]
        zfnet::VARIANTS,
        #[cfg(not(feature = "zfnet"))]
        &[],
        #[cfg(feature = "nin")]
        nin::VARIANTS,
        #[cfg(not(feature = "nin"))]
        &[],
        #[cfg(feature = "vgg")]
        vgg::VARIANTS,
        #[cfg(not(feature = "vgg"))]
        &[],
        #[cfg(feature = "googlenet")]
        googlenet::VARIANTS,
        #[cfg(not(feature = "googlenet"))]
        &[],
        #[cfg(feature = "resnet")]
        resnet::VARIANTS,
        #[cfg(not(feature = "resnet"))]
        &[],
        #[cfg(feature = "densenet")]
        densenet::VARIANTS,
        #[cfg(not(feature = "densenet"))]
        &[],
        #[cfg(feature = "efficientnet")]
        efficientnet::VARIANTS,
        #[cfg(not(feature = "efficientnet"))]
        &[],
        #[cfg(feature = "convnext")]
        convnext::VARIANTS,
        #[cfg(not(feature = "convnext"))]
        &[],
        #[cfg(feature = "mobilenet")]
        mobilenet::VARIANTS,
        #[cfg(not(feature = "mobilenet"))]
        &[],
        #[cfg(feature = "regnet")]
        regnet::VARIANTS,
        #[cfg(not(feature = "regnet"))]
        &[],
        #[cfg(feature = "cbcnn")]
        boosted::VARIANTS,
        #[cfg(not(feature = "cbcnn"))]
        &[],
    ];
    all.into_iter().flatten().collect()
}

/// Whether `name` matches a shell-style `pattern` (`*` any run, `?` one character), without
/// case.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The variant names matching `pattern` (timm's `list_models`: `*` and `?` wildcards; an empty
/// pattern lists every name), in catalogue order.
pub fn list_models(pattern: &str) -> Vec<&'static str> {
    let pattern = if pattern.is_empty() { "*" } else { pattern };
    catalogue()
        .into_iter()
        .filter(|v| glob(pattern, v.name))
        .map(|v| v.name)
        .collect()
}

/// The variant called `name` (or an alias); an unknown name is an error listing the valid ones.
pub fn find_model(name: &str) -> Result<&'static Variant> {
    find(&catalogue(), name)
}

/// The variants named by `names`: each a variant, a family (`resnet`) or `all`, without
/// repeats; an unknown name is an error listing the valid ones.
pub fn select_models(names: &[impl AsRef<str>]) -> Result<Vec<&'static Variant>> {
    let all = catalogue();
    let mut out: Vec<&'static Variant> = Vec::new();
    for name in names {
        let name = name.as_ref();
        let family: Vec<&'static Variant> = if name.eq_ignore_ascii_case("all") {
            all.clone()
        } else {
            all.iter()
                .copied()
                .filter(|v| v.family.eq_ignore_ascii_case(name))
                .collect()
        };
        let group = if family.is_empty() {
            vec![find(&all, name)?]
        } else {
            family
        };
        for variant in group {
            if !out.iter().any(|v| v.name == variant.name) {
                out.push(variant);
            }
        }
    }
    Ok(out)
}

/// The family names, in catalogue order.
pub fn families() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for v in catalogue() {
        if !out.contains(&v.family) {
            out.push(v.family);
        }
    }
    out
}

/// The preprocessing of `name`'s pretrained weights (timm's `pretrained_cfg`): a tagged name
/// (`resnet50.tv2_in1k`) gives that checkpoint's own record, a plain one the variant's default.
pub fn pretrained_cfg(name: &str) -> Result<Preprocessing> {
    let (variant, checkpoint) = find_checkpoint(name)?;
    Ok(variant.cfg(checkpoint))
}

/// The variant and the published checkpoint a name gives: `resnet50.a1_in1k` -> (resnet50,
/// its `a1_in1k` record); a name without a tag gives no checkpoint. Unknown names and tags are
/// errors listing the valid ones.
pub fn find_checkpoint(name: &str) -> Result<(&'static Variant, Option<&'static Pretrained>)> {
    find_tagged(&catalogue(), name)
}

/// How [`create_model`] builds a model.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Classes of the head (default: the weights' `config.json`, else the variant's reference,
    /// 1000 for ImageNet models). Pretrained weights with another class count keep everything
    /// but the classifier, which starts fresh (timm's `num_classes` with `pretrained=True`).
    pub num_classes: Option<usize>,
    /// Input channels (default: the weights' `config.json`, else the variant's reference;
    /// pretrained RGB weights are adapted, see [`backbone::catalogue::adapt_input_conv`]).
    pub in_channels: Option<usize>,
    /// Build auxiliary classifiers (GoogLeNet, Inception-v3) when the weights have them (or,
    /// with `trainable`, fresh when they do not).
    pub aux_logits: bool,
    /// The weights' dtype.
    pub dtype: DType,
    /// Where the model runs.
    pub device: Device,
    /// Pretrained weights: a `.safetensors` file (any layout the variant accepts), a directory
    /// holding `model.safetensors` (and `config.json`), or a Hugging Face model id
    /// `owner/name[@revision]` through the standard cache (downloaded with feature `hub`).
    /// `None`: fresh weights from `seed` (unless `pretrained`).
    pub weights: Option<String>,
    /// Without `weights`: the checkpoint the name's tag names (`resnet50.a1_in1k` ->
    /// `timm/resnet50.a1_in1k`), else the variant's default one, the first of
    /// [`Variant::pretrained`] (timm's `pretrained=True`).
    pub pretrained: bool,
    /// Pretrained weights come back trainable: copied into [`Model::vars`] (fresh weights always
    /// are). Otherwise they are loaded as constants, for inference.
    pub trainable: bool,
    /// Never touch the network: hub weights must be in the cache (also `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// The Hugging Face cache (default: `HF_HUB_CACHE`, `$HF_HOME/hub`,
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Seed of fresh weights (a fresh classifier too).
    pub seed: u64,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            num_classes: None,
            in_channels: None,
            aux_logits: true,
            dtype: DType::F32,
            device: Device::Cpu,
            weights: None,
            pretrained: false,
            trainable: false,
            offline: false,
            cache_dir: None,
            seed: 0,
        }
    }
}

/// The pretrained weights a [`Model`] was made from.
#[derive(Debug, Clone)]
pub struct LoadedWeights {
    /// Where they came from, as resolved (`timm/resnet50.a1_in1k@main`, or the file).
    pub source: String,
    /// The weights file read.
    pub file: PathBuf,
    /// The layout recognised and what was adapted.
    pub info: WeightsInfo,
    /// Trainable or with a fresh head: what was loaded and what initialised fresh (a
    /// classifier of another class count, auxiliary heads the file lacks).
    pub report: Option<LoadReport>,
}

/// A model made by [`create_model`]: use it as a [`Backbone`] (it dereferences to one).
pub struct Model {
    /// The network.
    pub net: Box<dyn Backbone>,
    /// Its catalogue entry.
    pub variant: &'static Variant,
    /// The published checkpoint its name's tag, or its hub id, names.
    pub checkpoint: Option<&'static Pretrained>,
    /// Its variables, to train them: fresh weights, and pretrained ones made `trainable` or
    /// with a fresh head; `None` for pretrained weights loaded as constants.
    pub vars: Option<SeededVarMap>,
    /// Pretrained weights: the file read, the layout recognised, what was adapted.
    pub weights: Option<LoadedWeights>,
    /// How its images are prepared (timm's `pretrained_cfg`): the weights' `config.json`, else
    /// the checkpoint's record, else the variant's default; also the classes and label names.
    pub pretrained_cfg: PretrainedConfig,
}

impl Deref for Model {
    type Target = dyn Backbone;

    fn deref(&self) -> &Self::Target {
        self.net.as_ref()
    }
}

impl Model {
    /// The evaluation transform's settings (timm's `resolve_data_config`): with
    /// `use_test_size` (timm's inference default) the weights' test size and test crop where
    /// they define them; else the training size (timm's `--use-train-size`, and fine-tuning).
    /// `trainer::data::Pipeline::eval_config` turns it into the transform.
    pub fn data_config(&self, use_test_size: bool) -> DataConfig {
        self.pretrained_cfg.data_config(use_test_size)
    }

    /// The head's class count.
    pub fn num_classes(&self) -> usize {
        self.net.num_classes()
    }

    /// The trainable variables (none of the model's frozen ones), if it has variables.
    pub fn trainable_vars(&self) -> Option<Vec<(String, candle_core::Var)>> {
        let vars = self.vars.as_ref()?;
        Some(backbone::init::trainable_model_vars(
            vars.varmap(),
            self.net.as_ref(),
        ))
    }
}

/// Resolves a weights reference (a file, a directory holding `model.safetensors`, or a hub
/// id `owner/name[@revision]` through the Hugging Face cache) into the weights file and the
/// `config.json` beside it: the one resolver of every path.
pub fn resolve_weights(
    reference: &str,
    offline: bool,
    cache_dir: Option<&Path>,
) -> Result<hub::ResolvedWeights> {
    let weights_error = |e: hub::Error| Error::WeightsFile {
        file: PathBuf::from(reference),
        problem: match e {
            hub::Error::Pretrained { problem, .. } => problem,
            other => other.to_string(),
        },
    };
    let parsed = hub::WeightsRef::parse(reference).map_err(weights_error)?;
    let mut hub_options = hub::HubOptions::from_env();
    hub_options.offline |= offline;
    if let Some(dir) = cache_dir {
        hub_options.cache_dir = Some(dir.to_path_buf());
    }
    hub::resolve(&parsed, &hub_options).map_err(weights_error)
}

/// The preprocessing of weights that come without a `config.json`: the checkpoint's or the
/// variant's, unless the file's input convolution has another channel count (a model trained
/// on other images): then ImageNet's normalisation for 3 channels, mean and std 0.5 otherwise.
fn default_config(cfg: &Preprocessing, file_channels: Option<usize>) -> PretrainedConfig {
    let config = PretrainedConfig::from_preprocessing(cfg);
    match file_channels {
        Some(c) if c != cfg.input_size.0 => {
            let (mean, std) = if c == 3 {
                (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
            } else {
                (vec![0.5; c], vec![0.5; c])
            };
            PretrainedConfig {
                input_size: (c, cfg.input_size.1, cfg.input_size.2),
                test_input_size: cfg.test_input_size.map(|(_, h, w)| (c, h, w)),
                mean,
                std,
                ..config
            }
        }
        _ => config,
    }
}

/// Builds the model `name` (timm's `create_model`), the one way to make a named model: fresh
/// seeded weights, or pretrained ones in any layout the variant accepts (torchvision, timm,
/// legacy spellings; `f16`/`bf16` converted; `num_batches_tracked` ignored; strict otherwise:
/// the error names the file, the tensor, the expected and the actual shape).
///
/// `name` may carry a checkpoint tag (`resnet50.a1_in1k`): its hub id is the weights with
/// `pretrained`, and its record the preprocessing when the weights have no `config.json`.
/// Weights with another class count than an explicit `num_classes` keep a fresh classifier
/// (said on stderr and in [`LoadedWeights::report`]); without `num_classes` the file's head
/// must fit the class count of its `config.json` (or the variant's).
pub fn create_model(name: &str, options: &CreateOptions) -> Result<Model> {
    let (variant, mut checkpoint) = find_checkpoint(name)?;
    let reference = match (&options.weights, options.pretrained) {
        (Some(weights), _) => Some(weights.clone()),
        (None, true) => Some(
            checkpoint
                .or(variant.pretrained.first())
                .ok_or_else(|| {
                    Error::config(format!("{}: no published weights are known for it", variant.name))
                })?
                .hub_id
                .to_string(),
        ),
        (None, false) => None,
    };
    let Some(reference) = reference else {
        let pretrained_cfg = PretrainedConfig::from_preprocessing(&variant.cfg(checkpoint));
        let model_options = ModelOptions {
            num_classes: options.num_classes.unwrap_or(variant.reference.1),
            in_channels: options.in_channels.unwrap_or(variant.reference.0),
            aux_logits: options.aux_logits,
        };
        let vars = SeededVarMap::new(options.seed);
        let net = variant.create(&model_options, vars.var_builder(options.dtype, &options.device))?;
        return Ok(Model {
            net,
            variant,
            checkpoint,
            vars: Some(vars),
            weights: None,
            pretrained_cfg,
        });
    };
    let resolved = resolve_weights(&reference, options.offline, options.cache_dir.as_deref())?;
    if checkpoint.is_none() {
        checkpoint = variant.checkpoint_by_hub_id(&reference);
    }
    let file = resolved.weights_file.clone();
    let (mut tensors, mut info) = variant.read_weights(&file, None)?;
    let defaults = default_config(&variant.cfg(checkpoint), variant.stem_channels(&tensors));
    let pretrained_cfg = match resolved.config {
        Some(mut config) => {
            // A config.json without (part of) a pretrained_cfg: the settings it does not give
            // are the checkpoint's or variant's (a LeNet's labels-only config.json keeps one
            // grey 32x32 channel rather than ImageNet's three).
            let taken = config.fill_missing_from(&defaults);
            if !taken.is_empty() {
                eprintln!(
                    "note: {} gives no {} in its pretrained_cfg: {}'s defaults are used ({}x{}x{} \
                     input, mean {:?}, std {:?})",
                    resolved
                        .config_file
                        .as_ref()
                        .map_or("config.json".to_string(), |f| f.display().to_string()),
                    taken.join(", "),
                    variant.name,
                    config.input_size.0,
                    config.input_size.1,
                    config.input_size.2,
                    config.mean,
                    config.std
                );
                config.validate().map_err(|e| Error::WeightsFile {
                    file: resolved.config_file.clone().unwrap_or_else(|| file.clone()),
                    problem: e.to_string(),
                })?;
            }
            config
        }
        None => defaults,
    };
    let in_channels = options.in_channels.unwrap_or(pretrained_cfg.input_size.0);
    info.adapted_channels = variant.adapt_stem(&mut tensors, in_channels)?;
    let num_classes = options
        .num_classes
        .or(pretrained_cfg.num_classes)
        .or(pretrained_cfg.label_names.as_ref().map(Vec::len))
        .unwrap_or(variant.reference.1);
    let model_options = ModelOptions {
        num_classes,
        in_channels,
        aux_logits: options.aux_logits,
    };
    // `num_classes` asked for and other than the file's (a tensor of another shape): fresh
    // variables for the classifier (timm's `create_model(..., pretrained=True,
    // num_classes=N)`). Without it, the file must fit (an error names the tensor).
    let other_head = options.num_classes.is_some() && {
        let shapes = backbone::catalogue::variable_shapes(variant, &model_options)?;
        shapes
            .iter()
            .any(|(name, shape)| tensors.get(name).is_some_and(|t| t.dims() != shape.as_slice()))
    };
    let (net, vars, report) = if options.trainable || other_head {
        let vars = SeededVarMap::new(options.seed);
        let (net, report) = variant.load_trainable(
            tensors,
            &info,
            &file,
            &model_options,
            &vars,
            options.dtype,
            &options.device,
        )?;
        if !report.initialised.is_empty() && other_head {
            let names: Vec<&str> = report.initialised.iter().map(|(n, _)| n.as_str()).collect();
            eprintln!(
                "{}: the weights' classifier has another class count: a fresh {num_classes}-class \
                 head ({}), everything else from {}",
                variant.name,
                names.join(", "),
                file.display()
            );
        }
        (net, Some(vars), Some(report))
    } else {
        let net = variant.build_from(
            tensors,
            &info,
            Some(&file),
            &model_options,
            options.dtype,
            &options.device,
        )?;
        (net, None, None)
    };
    // A head of another class count drops the file's label names (they name other classes).
    let pretrained_cfg = pretrained_cfg.with_num_classes(num_classes);
    Ok(Model {
        net,
        variant,
        checkpoint,
        vars,
        weights: Some(LoadedWeights {
            source: resolved.source,
            file,
            info,
            report,
        }),
        pretrained_cfg,
    })
}
