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

/// The README's Rust snippets, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "cbcnn")]
pub mod boosted;

use backbone::catalogue::find;
use candle_core::{DType, Device};
use std::ops::Deref;
use std::path::PathBuf;

pub use backbone::catalogue::{ModelOptions, Preprocessing, Variant, WeightsInfo};
pub use backbone::init::SeededVarMap;
pub use backbone::{self, Backbone, Error, Result};

/// Every variant of the enabled families, in the order `cargo xtask models` lists them.
pub fn catalogue() -> Vec<&'static Variant> {
    let all: [&'static [Variant]; 10] = [
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

/// The default preprocessing of `name`'s pretrained weights (timm's `pretrained_cfg`).
pub fn pretrained_cfg(name: &str) -> Result<Preprocessing> {
    Ok(find_model(name)?.preprocessing)
}

/// How [`create_model`] builds a model.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Classes of the head (default: the variant's reference, 1000 for ImageNet models).
    pub num_classes: Option<usize>,
    /// Input channels (default: the variant's reference; pretrained RGB weights are adapted,
    /// see [`backbone::catalogue::adapt_input_conv`]).
    pub in_channels: Option<usize>,
    /// Build auxiliary classifiers (GoogLeNet, Inception-v3) when the weights have them.
    pub aux_logits: bool,
    /// The weights' dtype.
    pub dtype: DType,
    /// Where the model runs.
    pub device: Device,
    /// Pretrained weights: a `.safetensors` file (any layout the variant accepts), a directory
    /// holding `model.safetensors`, or (feature `hub`) a Hugging Face model id
    /// `owner/name[@revision]`. `None`: fresh weights from `seed` (unless `pretrained`).
    pub weights: Option<String>,
    /// (Feature `hub`.) Without `weights`: the variant's default hub weights, the first of
    /// [`Variant::hub`] (timm's `pretrained=True`).
    pub pretrained: bool,
    /// (Feature `hub`.) Never touch the network: hub weights must be in the cache (also
    /// `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// (Feature `hub`.) The Hugging Face cache (default: `HF_HUB_CACHE`, `$HF_HOME/hub`,
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Seed of fresh weights.
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
            offline: false,
            cache_dir: None,
            seed: 0,
        }
    }
}

/// A model made by [`create_model`]: use it as a [`Backbone`] (it dereferences to one).
pub struct Model {
    /// The network.
    pub net: Box<dyn Backbone>,
    /// Its catalogue entry.
    pub variant: &'static Variant,
    /// Fresh weights: their variables, to train them (`None` for pretrained weights, which are
    /// loaded as constants; fine-tune them with the `trainer` crate).
    pub vars: Option<SeededVarMap>,
    /// Pretrained weights: the file read, the layout recognised and what was adapted.
    pub weights: Option<(PathBuf, WeightsInfo)>,
    /// (Feature `hub`.) The `config.json` beside the weights, if any (timm's pretrained config:
    /// preprocessing, classes, label names).
    #[cfg(feature = "hub")]
    pub config: Option<hub::PretrainedConfig>,
}

impl Deref for Model {
    type Target = dyn Backbone;

    fn deref(&self) -> &Self::Target {
        self.net.as_ref()
    }
}

/// The weights file a reference names, and the `config.json` beside it (feature `hub`).
#[cfg(feature = "hub")]
fn resolve_weights(
    reference: &str,
    options: &CreateOptions,
) -> Result<(PathBuf, Option<hub::PretrainedConfig>)> {
    let weights_error = |e: hub::Error| Error::WeightsFile {
        file: PathBuf::from(reference),
        problem: match e {
            hub::Error::Pretrained { problem, .. } => problem,
            other => other.to_string(),
        },
    };
    let parsed = hub::WeightsRef::parse(reference).map_err(weights_error)?;
    let mut hub_options = hub::HubOptions::from_env();
    hub_options.offline |= options.offline;
    if let Some(dir) = &options.cache_dir {
        hub_options.cache_dir = Some(dir.clone());
    }
    let resolved = hub::resolve(&parsed, &hub_options).map_err(weights_error)?;
    Ok((resolved.weights_file, resolved.config))
}

/// The weights file a reference names (a file, or `model.safetensors` in a directory).
#[cfg(not(feature = "hub"))]
fn resolve_weights(reference: &str, _: &CreateOptions) -> Result<(PathBuf, Option<()>)> {
    let path = std::path::Path::new(reference);
    if path.is_dir() {
        let file = path.join("model.safetensors");
        if file.is_file() {
            return Ok((file, None));
        }
        return Err(Error::WeightsFile {
            file: path.to_path_buf(),
            problem: "a directory without model.safetensors".into(),
        });
    }
    Ok((path.to_path_buf(), None))
}

/// Builds the variant `name` (timm's `create_model`): fresh seeded weights, or pretrained ones
/// in any layout the variant accepts (torchvision, timm, legacy spellings; `f16`/`bf16`
/// converted; `num_batches_tracked` ignored; strict otherwise: the error names the file, the
/// tensor, the expected and the actual shape). Pretrained weights with a `config.json` give
/// the head its class count unless `num_classes` says otherwise.
pub fn create_model(name: &str, options: &CreateOptions) -> Result<Model> {
    let variant = find_model(name)?;
    let reference = match (&options.weights, options.pretrained) {
        (Some(weights), _) => Some(weights.clone()),
        (None, true) => Some(
            variant
                .hub
                .first()
                .ok_or_else(|| Error::config(format!("{}: no hub weights are known for it", variant.name)))?
                .to_string(),
        ),
        (None, false) => None,
    };
    let Some(reference) = reference else {
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
            vars: Some(vars),
            weights: None,
            #[cfg(feature = "hub")]
            config: None,
        });
    };
    let (file, config) = resolve_weights(&reference, options)?;
    #[cfg(feature = "hub")]
    let config_classes = config.as_ref().and_then(|c| c.num_classes);
    #[cfg(not(feature = "hub"))]
    let config_classes: Option<usize> = config.and(None);
    let model_options = ModelOptions {
        num_classes: options
            .num_classes
            .or(config_classes)
            .unwrap_or(variant.reference.1),
        in_channels: options.in_channels.unwrap_or(variant.reference.0),
        aux_logits: options.aux_logits,
    };
    let (net, info) = variant.load(&file, &model_options, options.dtype, &options.device)?;
    Ok(Model {
        net,
        variant,
        vars: None,
        weights: Some((file, info)),
        #[cfg(feature = "hub")]
        config,
    })
}
