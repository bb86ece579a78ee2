//! # DenseNet
//!
//! G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, *Densely Connected Convolutional
//! Networks*, CVPR 2017 (arXiv:1608.06993). The DenseNet-BC variants of the paper's Table 1,
//! with torchvision's state-dict names (`torchvision.models.densenet121` ...).
//!
//! Input `[N, 3, H, W]`, trained at 224x224; any `H, W >= 29` is accepted (the three
//! transitions' 2x2 average pools need a map of at least 2x2). Parameters with three input
//! channels and 1000 classes:
//!
//! | variant | growth k | layers per dense block | stem width | features | parameters | MACs at 224 |
//! |---|---:|---|---:|---:|---:|---:|
//! | [`DenseNetConfig::densenet121`] | 32 | 6, 12, 24, 16 | 64 | 1024 | **7,978,856** | 2.83 G |
//! | [`DenseNetConfig::densenet161`] | 48 | 6, 12, 36, 24 | 96 | 2208 | **28,681,000** | 7.73 G |
//! | [`DenseNetConfig::densenet169`] | 32 | 6, 12, 32, 32 | 64 | 1664 | **14,149,480** | 3.36 G |
//! | [`DenseNetConfig::densenet201`] | 32 | 6, 12, 48, 32 | 64 | 1920 | **20,013,928** | 4.29 G |
//!
//! (MACs: multiply-accumulates of the convolutions and the classifier for one image, as
//! [`backbone::summarize`] counts them; torchvision's "GFLOPS" are the same numbers.)
//!
//! The layers of DenseNet-121 at 224x224 (`features.` omitted from the keys):
//!
//! | # | stage | key | layers | output |
//! |---|---|---|---|---|
//! | 1 | stem | `conv0`, `norm0` | 7x7 conv stride 2 (64), BN, ReLU, 3x3 max pool stride 2 | 64 x 56 x 56 |
//! | 2 | dense block 1 | `denseblock1.denselayer1..6` | 6 x [BN-ReLU-1x1 conv (4k), BN-ReLU-3x3 conv (k)] | 256 x 56 x 56 |
//! | 3 | transition 1 | `transition1.{norm,conv}` | BN-ReLU-1x1 conv (halves channels), 2x2 avg pool | 128 x 28 x 28 |
//! | 4 | dense block 2 | `denseblock2.denselayer1..12` | 12 x bottleneck layers | 512 x 28 x 28 |
//! | 5 | transition 2 | `transition2` | | 256 x 14 x 14 |
//! | 6 | dense block 3 | `denseblock3.denselayer1..24` | 24 x bottleneck layers | 1024 x 14 x 14 |
//! | 7 | transition 3 | `transition3` | | 512 x 7 x 7 |
//! | 8 | dense block 4 | `denseblock4.denselayer1..16` | 16 x bottleneck layers | 1024 x 7 x 7 |
//! | 9 | head | `norm5`, `classifier` | BN, ReLU, global average pool, linear | classes |
//!
//! Each dense layer sees the concatenation of the block's input and of every earlier layer's
//! `k` new channels (BN-ReLU-conv order, bottleneck width `bn_size * k = 4k`); each
//! transition halves the channels (compression 0.5) and the resolution.
//!
//! [`DenseNetConfig::dropout`] is torchvision's `drop_rate`, dropout after every dense layer
//! in training (0 by default, as in torchvision). The features entering the head are the
//! pooled `[N, num_features]` vector after `norm5` and the final ReLU; the head is
//! `classifier`.
//!
//! Weights: [`DenseNet::new`] reads torchvision's names through any
//! [`candle_nn::VarBuilder`]; the catalogue ([`VARIANTS`], `Variant::load`) loads a file, first renaming the
//! legacy keys of old torchvision checkpoints (`...denselayer1.norm.1.weight`) with
//! [`remap_legacy`].

pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use densenet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::layers::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, Dropout, Flatten,
    Layer, Linear, MaxPool2d, PoolConfig,
};
use backbone::{check_input, Backbone, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};
use std::collections::HashMap;

/// A DenseNet variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenseNetConfig {
    /// Channels added by every dense layer (`k`: 32, or 48 for DenseNet-161).
    pub growth_rate: usize,
    /// Dense layers in each of the four blocks.
    pub block_config: [usize; 4],
    /// Output channels of the stem convolution.
    pub num_init_features: usize,
    /// Bottleneck width factor: the 1x1 convolution has `bn_size * growth_rate` outputs.
    pub bn_size: usize,
    /// Dropout probability after every dense layer in training (torchvision's `drop_rate`;
    /// 0 switches it off).
    pub dropout: f32,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl DenseNetConfig {
    fn base(growth_rate: usize, block_config: [usize; 4], num_init_features: usize) -> Self {
        Self {
            growth_rate,
            block_config,
            num_init_features,
            bn_size: 4,
            dropout: 0.0,
            in_channels: 3,
            num_classes: 1000,
        }
    }

    /// DenseNet-121: k = 32, blocks (6, 12, 24, 16), 64 stem channels.
    pub fn densenet121() -> Self {
        Self::base(32, [6, 12, 24, 16], 64)
    }

    /// DenseNet-161: k = 48, blocks (6, 12, 36, 24), 96 stem channels.
    pub fn densenet161() -> Self {
        Self::base(48, [6, 12, 36, 24], 96)
    }

    /// DenseNet-169: k = 32, blocks (6, 12, 32, 32), 64 stem channels.
    pub fn densenet169() -> Self {
        Self::base(32, [6, 12, 32, 32], 64)
    }

    /// DenseNet-201: k = 32, blocks (6, 12, 48, 32), 64 stem channels.
    pub fn densenet201() -> Self {
        Self::base(32, [6, 12, 48, 32], 64)
    }

    /// Sets the number of classes.
    pub fn with_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Sets the number of input channels.
    pub fn with_in_channels(mut self, in_channels: usize) -> Self {
        self.in_channels = in_channels;
        self
    }

    /// Sets the dropout after every dense layer.
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }

    /// The variant's name: `densenet121`, `densenet161`, `densenet169`, `densenet201`, or
    /// `densenet` for a custom configuration.
    pub fn name(&self) -> &'static str {
        match (
            self.growth_rate,
            self.block_config,
            self.num_init_features,
            self.bn_size,
        ) {
            (32, [6, 12, 24, 16], 64, 4) => "densenet121",
            (48, [6, 12, 36, 24], 96, 4) => "densenet161",
            (32, [6, 12, 32, 32], 64, 4) => "densenet169",
            (32, [6, 12, 48, 32], 64, 4) => "densenet201",
            _ => "densenet",
        }
    }

    /// The width of the features entering the classifier.
    pub fn num_features(&self) -> usize {
        let mut features = self.num_init_features;
        for (i, &layers) in self.block_config.iter().enumerate() {
            features += layers * self.growth_rate;
            if i + 1 < self.block_config.len() {
                features /= 2;
            }
        }
        features
    }

    /// The spatial size after the whole network for an input of `len` pixels along one axis,
    /// or `None` if some layer would get an empty input.
    fn output_len(&self, len: usize) -> Option<usize> {
        let out = |len: usize, k: usize, s: usize, p: usize| (len + 2 * p).checked_sub(k).map(|v| v / s + 1);
        let mut len = out(len, 7, 2, 3)?; // conv0
        len = out(len, 3, 2, 1)?; // pool0
        for _ in 1..self.block_config.len() {
            len = out(len, 2, 2, 0)?; // transition pools (dense layers keep the size)
        }
        Some(len)
    }

    /// The smallest accepted input size along one axis (29 for every variant).
    pub fn min_input_size(&self) -> usize {
        (1..).find(|&len| self.output_len(len).is_some()).unwrap_or(1)
    }

    fn validate(&self) -> Result<()> {
        if self.growth_rate == 0
            || self.bn_size == 0
            || self.num_init_features == 0
            || self.in_channels == 0
            || self.num_classes == 0
            || self.block_config.contains(&0)
        {
            return Err(backbone::Error::config(format!(
                "densenet: every size must be positive: {self:?}"
            )));
        }
        Ok(())
    }
}

impl Default for DenseNetConfig {
    fn default() -> Self {
        Self::densenet121()
    }
}

/// torchvision's initialisation of a fresh DenseNet convolution: `kaiming_normal_` (fan in,
/// gain `sqrt(2)`).
fn conv(config: Conv2dConfig, vb: VarBuilder) -> Result<Conv2d> {
    let kaiming = Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanIn,
        non_linearity: NonLinearity::ReLU,
    };
    Conv2d::new(config.no_bias().init(kaiming, Init::Const(0.0)), vb)
}

fn batch_norm(channels: usize, vb: VarBuilder) -> Result<BatchNorm2d> {
    BatchNorm2d::new(channels, BatchNormConfig::default(), vb)
}

/// One bottleneck layer of a dense block: BN-ReLU-1x1 conv, BN-ReLU-3x3 conv, dropout.
struct DenseLayer {
    norm1: BatchNorm2d,
    conv1: Conv2d,
    norm2: BatchNorm2d,
    conv2: Conv2d,
    dropout: Dropout,
}

impl DenseLayer {
    fn new(in_features: usize, config: &DenseNetConfig, vb: VarBuilder) -> Result<Self> {
        let width = config.bn_size * config.growth_rate;
        Ok(Self {
            norm1: batch_norm(in_features, vb.pp("norm1"))?,
            conv1: conv(Conv2dConfig::new(in_features, width, 1), vb.pp("conv1"))?,
            norm2: batch_norm(width, vb.pp("norm2"))?,
            conv2: conv(
                Conv2dConfig::new(width, config.growth_rate, 3).padding(1),
                vb.pp("conv2"),
            )?,
            dropout: Dropout::new(config.dropout)?,
        })
    }

    /// The layer's `k` new channels.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        // Batch norm + ReLU: one fused pass in eval mode.
        let xs = self.norm1.forward_relu(xs, train)?;
        let xs = self.conv1.forward_t(&xs, train)?;
        let xs = self.norm2.forward_relu(&xs, train)?;
        let xs = self.conv2.forward_t(&xs, train)?;
        self.dropout.forward_t(&xs, train)
    }
}

/// BN-ReLU-1x1 conv, 2x2 average pool.
struct Transition {
    norm: BatchNorm2d,
    conv: Conv2d,
    pool: AvgPool2d,
}

impl Transition {
    fn new(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Self> {
        let pool = AvgPool2d::new(PoolConfig::new(2).stride(2))?.named(format!("{}.pool", vb.prefix()));
        Ok(Self {
            norm: batch_norm(in_features, vb.pp("norm"))?,
            conv: conv(Conv2dConfig::new(in_features, out_features, 1), vb.pp("conv"))?,
            pool,
        })
    }
}

impl Layer for Transition {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.norm.forward_relu(xs, train)?;
        let xs = self.conv.forward_t(&xs, train)?;
        self.pool.forward_t(&xs, train)
    }
}

/// Dense layers whose inputs are the concatenation of everything before them in the block.
struct DenseBlock {
    layers: Vec<DenseLayer>,
}

impl Layer for DenseBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut features = xs.clone();
        for layer in &self.layers {
            let new = layer.forward_t(&features, train)?;
            features = Tensor::cat(&[&features, &new], 1)?;
        }
        Ok(features)
    }
}

/// DenseNet; see the [crate documentation](crate).
pub struct DenseNet {
    config: DenseNetConfig,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    conv0: Conv2d,
    norm0: BatchNorm2d,
    pool0: MaxPool2d,
    blocks: Vec<DenseBlock>,
    transitions: Vec<Transition>,
    norm5: BatchNorm2d,
    pool: AdaptiveAvgPool2d,
    classifier: Linear,
}

impl DenseNet {
    /// Builds the model; variables under `features.` (`conv0`, `norm0`,
    /// `denseblockK.denselayerJ.{norm1,conv1,norm2,conv2}`, `transitionK.{norm,conv}`,
    /// `norm5`) and `classifier`, torchvision's names.
    pub fn new(config: &DenseNetConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        config.validate()?;
        let f = vb.pp("features");
        let conv0 = conv(
            Conv2dConfig::new(config.in_channels, config.num_init_features, 7)
                .stride(2)
                .padding(3),
            f.pp("conv0"),
        )?;
        let norm0 = batch_norm(config.num_init_features, f.pp("norm0"))?;
        let pool0 = MaxPool2d::new(PoolConfig::new(3).stride(2).padding(1))?.named("features.pool0");
        let mut features = config.num_init_features;
        let mut blocks = Vec::with_capacity(4);
        let mut transitions = Vec::with_capacity(3);
        for (i, &num_layers) in config.block_config.iter().enumerate() {
            let block_vb = f.pp(format!("denseblock{}", i + 1));
            let layers = (0..num_layers)
                .map(|j| {
                    DenseLayer::new(
                        features + j * config.growth_rate,
                        config,
                        block_vb.pp(format!("denselayer{}", j + 1)),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            blocks.push(DenseBlock { layers });
            features += num_layers * config.growth_rate;
            if i + 1 < config.block_config.len() {
                let vb = f.pp(format!("transition{}", i + 1));
                transitions.push(Transition::new(features, features / 2, vb)?);
                features /= 2;
            }
        }
        let norm5 = batch_norm(features, f.pp("norm5"))?;
        // torchvision: the classifier's bias starts at zero.
        let classifier = Linear::with_init(
            features,
            config.num_classes,
            true,
            backbone::init::torch_default(features),
            Init::Const(0.0),
            vb.pp("classifier"),
        )?;
        Ok(Self {
            input_type,
            config: *config,
            conv0,
            norm0,
            pool0,
            blocks,
            transitions,
            norm5,
            pool: AdaptiveAvgPool2d::new((1, 1))?.named("avgpool"),
            classifier,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DenseNetConfig {
        &self.config
    }
}

/// Renames the keys of old torchvision DenseNet checkpoints to the current spelling, as
/// torchvision's `_load_state_dict` does: `features.denseblock1.denselayer1.norm.1.weight`
/// becomes `features.denseblock1.denselayer1.norm1.weight` (for `norm`, `relu`, `conv`, the
/// digits 1 and 2 and `weight`, `bias`, `running_mean`, `running_var`). Other keys are kept.
pub fn remap_legacy(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .map(|(key, tensor)| (legacy_key(&key).unwrap_or(key), tensor))
        .collect()
}

/// Whether a state dict has a key of old torchvision checkpoints (see [`remap_legacy`]).
pub fn is_legacy_layout(tensors: &HashMap<String, Tensor>) -> bool {
    tensors.keys().any(|k| legacy_key(k).is_some())
}

/// The current spelling of a legacy key, or `None` if `key` is not one.
fn legacy_key(key: &str) -> Option<String> {
    // `<prefix>.denselayerN.<kind>.<digit>.<param>`
    let mut parts = key.rsplitn(4, '.');
    let param = parts.next()?;
    let digit = parts.next()?;
    let kind = parts.next()?;
    let prefix = parts.next()?;
    let layer = prefix.rsplit('.').next()?;
    let is_layer = layer
        .strip_prefix("denselayer")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let ok = is_layer
        && matches!(kind, "norm" | "relu" | "conv")
        && matches!(digit, "1" | "2")
        && matches!(param, "weight" | "bias" | "running_mean" | "running_var");
    ok.then(|| format!("{prefix}.{kind}{digit}.{param}"))
}

impl Backbone for DenseNet {
    fn name(&self) -> &str {
        self.config.name()
    }

    fn input_spec(&self) -> InputSpec {
        let min = self.config.min_input_size();
        InputSpec {
            channels: self.config.in_channels,
            min_size: (min, min),
            fixed_size: None,
            default_size: (224, 224),
        }
    }

    /// `norm5` and its ReLU (timm's `forward_features`): `[N, num_features, h, w]`.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self
            .forward_stages(xs, train)?
            .pop()
            .unwrap_or_else(|| xs.clone()))
    }

    /// Global average pool and flatten.
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.pool.forward_t(features, train)?;
        Flatten::new().forward_t(&xs, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.classifier.forward_t(pre_logits, train)
    }

    /// timm's: `features.norm0` (with its ReLU), each dense block's output but the last, and
    /// `features.norm5` (with its ReLU).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        let c = &self.config;
        let mut channels = c.num_init_features;
        let mut info = vec![FeatureInfo::new("features.norm0", channels, 2)];
        let mut reduction = 4;
        for (i, &layers) in c.block_config.iter().enumerate() {
            channels += layers * c.growth_rate;
            if i + 1 < c.block_config.len() {
                info.push(FeatureInfo::new(
                    format!("features.denseblock{}", i + 1),
                    channels,
                    reduction,
                ));
                channels /= 2;
                reduction *= 2;
            }
        }
        info.push(FeatureInfo::new("features.norm5", channels, reduction));
        info
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let norm0 = self
            .norm0
            .forward_relu(&self.conv0.forward_t(xs, train)?, train)?;
        let mut xs = self.pool0.forward_t(&norm0, train)?;
        let mut maps = vec![norm0];
        for (i, block) in self.blocks.iter().enumerate() {
            xs = block.forward_t(&xs, train)?;
            if let Some(transition) = self.transitions.get(i) {
                maps.push(xs.clone());
                xs = transition.forward_t(&xs, train)?;
            }
        }
        maps.push(self.norm5.forward_relu(&xs, train)?);
        Ok(maps)
    }

    fn num_features(&self) -> usize {
        self.config.num_features()
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn head_prefix(&self) -> &str {
        "classifier"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys() {
        let cases = [
            (
                "features.denseblock1.denselayer1.norm.1.weight",
                Some("features.denseblock1.denselayer1.norm1.weight"),
            ),
            (
                "features.denseblock4.denselayer16.conv.2.weight",
                Some("features.denseblock4.denselayer16.conv2.weight"),
            ),
            (
                "features.denseblock2.denselayer3.norm.2.running_var",
                Some("features.denseblock2.denselayer3.norm2.running_var"),
            ),
            ("features.denseblock1.denselayer1.norm1.weight", None),
            ("features.transition1.norm.weight", None),
            ("features.denseblock1.denselayer1.norm.3.weight", None),
            ("features.denseblock1.denselayerX.norm.1.weight", None),
            (
                "features.denseblock1.denselayer1.norm.1.num_batches_tracked",
                None,
            ),
            ("classifier.weight", None),
        ];
        for (key, expected) in cases {
            assert_eq!(legacy_key(key).as_deref(), expected, "{key}");
        }
    }

    #[test]
    fn num_features_and_min_size() {
        let expected = [1024, 2208, 1664, 1920];
        let configs = [
            DenseNetConfig::densenet121(),
            DenseNetConfig::densenet161(),
            DenseNetConfig::densenet169(),
            DenseNetConfig::densenet201(),
        ];
        for (config, features) in configs.iter().zip(expected) {
            assert_eq!(config.num_features(), features);
            assert_eq!(config.min_input_size(), 29);
            assert_eq!(config.output_len(29), Some(1));
            assert_eq!(config.output_len(28), None);
            assert_eq!(config.output_len(224), Some(7));
        }
    }
}
