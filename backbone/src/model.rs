//! The [`Backbone`] trait: what every architecture offers to users and to the trainer.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// What a model accepts as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    /// Number of input channels.
    pub channels: usize,
    /// Smallest (height, width) the architecture accepts.
    pub min_size: (usize, usize),
    /// When the architecture needs exactly one size (a flatten into a fixed-size linear
    /// layer), that size.
    pub fixed_size: Option<(usize, usize)>,
    /// The size the model is usually trained at (`224x224` for ImageNet models).
    pub default_size: (usize, usize),
}

impl InputSpec {
    /// The accepted shape, in words: `[N, 3, 224, 224]` or `[N, 3, H>=32, W>=32]`.
    pub fn describe(&self) -> String {
        match self.fixed_size {
            Some((h, w)) => format!("[N, {}, {h}, {w}]", self.channels),
            None => format!(
                "[N, {}, H>={}, W>={}]",
                self.channels, self.min_size.0, self.min_size.1
            ),
        }
    }

    /// Whether a `[n, c, h, w]` shape is accepted.
    pub fn accepts(&self, dims: &[usize]) -> bool {
        match *dims {
            [_, c, h, w] => {
                c == self.channels
                    && match self.fixed_size {
                        Some(size) => (h, w) == size,
                        None => h >= self.min_size.0 && w >= self.min_size.1,
                    }
            }
            _ => false,
        }
    }
}

/// The dtype and device of a model's weights, which its inputs must have too. Each model takes
/// it from its [`candle_nn::VarBuilder`] when built.
#[derive(Debug, Clone)]
pub struct InputType {
    /// The weights' dtype.
    pub dtype: DType,
    /// The weights' device.
    pub device: Device,
}

impl InputType {
    /// The dtype and device `vb` creates variables with.
    pub fn of(vb: &candle_nn::VarBuilder) -> Self {
        Self {
            dtype: vb.dtype(),
            device: vb.device().clone(),
        }
    }
}

/// Checks an image batch against a model's [`InputSpec`] and [`InputType`]; the error names the
/// model and what it expects (shape, or dtype and device).
pub fn check_input(model: &str, spec: &InputSpec, ty: &InputType, xs: &Tensor) -> Result<()> {
    if xs.dtype() != ty.dtype || !xs.device().same_device(&ty.device) {
        return Err(Error::InputType {
            model: model.to_string(),
            expected: format!("{:?} on {:?}", ty.dtype, ty.device.location()),
            actual: format!("{:?} on {:?}", xs.dtype(), xs.device().location()),
        });
    }
    if spec.accepts(xs.dims()) {
        Ok(())
    } else {
        Err(Error::input_shape(model, spec.describe(), xs.dims()))
    }
}

/// One stage of a model's feature pyramid (timm's `feature_info` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureInfo {
    /// The module whose output it is, in the reference implementation's names (`layer2`).
    pub module: String,
    /// Channels of the map.
    pub channels: usize,
    /// The product of the strides before it: the map is about `H / reduction` high.
    pub reduction: usize,
}

impl FeatureInfo {
    /// A stage.
    pub fn new(module: impl Into<String>, channels: usize, reduction: usize) -> Self {
        Self {
            module: module.into(),
            channels,
            reduction,
        }
    }
}

/// A model's feature pyramid alone (timm's `features_only=True`): [`FeaturesOnly::forward`]
/// returns the maps of the chosen stages.
pub struct FeaturesOnly<'a> {
    model: &'a dyn Backbone,
    indices: Vec<usize>,
}

impl<'a> FeaturesOnly<'a> {
    /// The stages at `indices` of `model` (every stage when `None`); an index out of range is
    /// an error naming the model and its stages.
    pub fn new(model: &'a dyn Backbone, indices: Option<Vec<usize>>) -> Result<Self> {
        let info = model.feature_info();
        let indices = indices.unwrap_or_else(|| (0..info.len()).collect());
        if let Some(&bad) = indices.iter().find(|&&i| i >= info.len()) {
            return Err(Error::config(format!(
                "{}: no feature stage {bad}; it has {}",
                model.name(),
                info.len()
            )));
        }
        Ok(Self { model, indices })
    }

    /// The chosen stages' descriptions.
    pub fn feature_info(&self) -> Vec<FeatureInfo> {
        let info = self.model.feature_info();
        self.indices.iter().map(|&i| info[i].clone()).collect()
    }

    /// Image batch -> the chosen stages' maps.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        self.model.forward_intermediates(xs, &self.indices, train)
    }
}

/// The outputs of a forward pass: the main logits and, in training, the logits of auxiliary
/// classifiers (GoogLeNet's `aux1`, `aux2`); empty for models without them.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// Logits of the main classifier, `[N, num_classes]`.
    pub logits: Tensor,
    /// Logits of the auxiliary classifiers, each `[N, num_classes]`.
    pub aux_logits: Vec<Tensor>,
}

/// The contract every architecture implements: features, then a classifier head.
///
/// Models are built from a [`candle_nn::VarBuilder`], so one constructor serves a fresh
/// trainable model (a `VarMap`, see [`crate::init::SeededVarMap`]) and a pretrained one
/// (safetensors, see [`crate::weights`]). Variable names follow the reference
/// implementation's state dict (torchvision / timm).
pub trait Backbone: Send + Sync {
    /// The variant's name (`lenet5`, `resnet50`, ...).
    fn name(&self) -> &str;

    /// What the model accepts as input.
    fn input_spec(&self) -> InputSpec;

    /// Image batch `[N, C, H, W]` -> the last feature map `[N, C', h, w]`, before any global
    /// pooling or classifier layer (timm's `forward_features`), for every architecture.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor>;

    /// Last feature map -> the pre-logits: what enters the final classifier (timm's
    /// `forward_head(x, pre_logits=True)`): global pooling, the hidden layers of an MLP head
    /// (LeNet, AlexNet, ZFNet, VGG) and head dropout in training; `[N, num_features]`. NiN,
    /// whose classifier is a convolution, keeps the map `[N, num_features, h, w]`.
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor>;

    /// Pre-logits -> logits `[N, num_classes]`: the final classifier alone (the variables
    /// under [`Self::head_prefix`]).
    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor>;

    /// Last feature map -> logits: [`Self::forward_pre_logits`] then
    /// [`Self::forward_classifier`].
    fn forward_head(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let pre_logits = self.forward_pre_logits(features, train)?;
        self.forward_classifier(&pre_logits, train)
    }

    /// The stages of the feature pyramid, shallow to deep (timm's `feature_info`): each
    /// stage's channels, reduction (the product of the strides before it) and module name.
    fn feature_info(&self) -> Vec<FeatureInfo>;

    /// Image batch -> the feature map of every stage of [`Self::feature_info`], in order.
    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>>;

    /// Image batch -> the feature maps of the stages at `indices` of [`Self::feature_info`]
    /// (timm's `forward_intermediates`), in the order asked; an index past the last stage is an
    /// error naming the model and its stages.
    fn forward_intermediates(&self, xs: &Tensor, indices: &[usize], train: bool) -> Result<Vec<Tensor>> {
        let info = self.feature_info();
        if let Some(&bad) = indices.iter().find(|&&i| i >= info.len()) {
            let names: Vec<&str> = info.iter().map(|f| f.module.as_str()).collect();
            return Err(Error::config(format!(
                "{}: no feature stage {bad}; it has {} ({})",
                self.name(),
                info.len(),
                names.join(", ")
            )));
        }
        let stages = self.forward_stages(xs, train)?;
        Ok(indices.iter().map(|&i| stages[i].clone()).collect())
    }

    /// Image batch -> logits: [`Self::forward_features`] then [`Self::forward_head`].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let features = self.forward_features(xs, train)?;
        self.forward_head(&features, train)
    }

    /// Image batch -> main logits plus auxiliary logits. Models with auxiliary classifiers
    /// override this and return them when `train` is true; the default has none.
    fn forward_aux(&self, xs: &Tensor, train: bool) -> Result<ModelOutput> {
        Ok(ModelOutput {
            logits: self.forward_t(xs, train)?,
            aux_logits: Vec::new(),
        })
    }

    /// The width of the pre-logits (what enters the final classifier).
    fn num_features(&self) -> usize;

    /// The number of classes of the head.
    fn num_classes(&self) -> usize;

    /// The variable-name prefix of the classifier head (`fc`, `classifier`, `fc3`): the
    /// variables to re-initialise when the class count changes, or to train alone.
    fn head_prefix(&self) -> &str;

    /// The layers from the input to [`Self::forward_features`]' output when they form a plain
    /// chain of convolutions, activations, poolings, LRNs and dropouts (LeNet, AlexNet, ZFNet,
    /// VGG): what the deconvnet of Zeiler & Fergus walks back. `None` (the default) for models
    /// with branches or residual connections.
    fn plain_features(&self) -> Option<Vec<crate::layers::PlainLayer<'_>>> {
        None
    }

    /// Prefixes of other variables whose shape depends on the class count (auxiliary heads'
    /// last layers); empty by default.
    fn aux_head_prefixes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Prefixes of variables that never train with the model (a frozen auxiliary learner: a
    /// channel-boosted network's autoencoder and pretrained feature extractor): no optimizer
    /// gets them (see [`crate::init::trainable_model_vars`]). Empty by default.
    fn frozen_prefixes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Parts of the model that train on their own before it, on reconstructing its input (a
    /// channel-boosted network's autoencoder), in the order they train. Empty by default.
    fn reconstructors(&self) -> Vec<&dyn Reconstructor> {
        Vec::new()
    }
}

/// A part of a model trained alone on reconstructing the model's input (an autoencoder), before
/// the model trains; see [`Backbone::reconstructors`].
pub trait Reconstructor: Send + Sync {
    /// What it is, for messages (`autoencoder`).
    fn name(&self) -> &str;

    /// The prefix of its variables in the model's map (`booster.ae`): what a reconstruction
    /// phase trains.
    fn var_prefix(&self) -> &str;

    /// Image batch `[N, C, H, W]` (as the model receives it) -> its reconstruction, same shape.
    fn reconstruct(&self, xs: &Tensor, train: bool) -> Result<Tensor>;
}
