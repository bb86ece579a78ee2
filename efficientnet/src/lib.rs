//! # EfficientNet
//!
//! M. Tan, Q. V. Le, *EfficientNet: Rethinking Model Scaling for Convolutional Neural
//! Networks*, ICML 2019 (arXiv:1905.11946). EfficientNet-B0 to B7: the B0 network of the
//! paper's Table 1 scaled in width (channels rounded to multiples of 8) and depth (layers per
//! stage rounded up) by the compound coefficients.
//!
//! The base network, EfficientNet-B0 (input 224x224; timm's key names):
//!
//! | stage | key | operator | kernel | stride | channels | layers | output |
//! |---|---|---|---|---:|---:|---:|---|
//! | stem | `conv_stem`, `bn1` | conv, BN, SiLU | 3x3 | 2 | 32 | 1 | 112 x 112 |
//! | 1 | `blocks.0` | MBConv1 (depthwise separable) | 3x3 | 1 | 16 | 1 | 112 x 112 |
//! | 2 | `blocks.1` | MBConv6 | 3x3 | 2 | 24 | 2 | 56 x 56 |
//! | 3 | `blocks.2` | MBConv6 | 5x5 | 2 | 40 | 2 | 28 x 28 |
//! | 4 | `blocks.3` | MBConv6 | 3x3 | 2 | 80 | 3 | 14 x 14 |
//! | 5 | `blocks.4` | MBConv6 | 5x5 | 1 | 112 | 3 | 14 x 14 |
//! | 6 | `blocks.5` | MBConv6 | 5x5 | 2 | 192 | 4 | 7 x 7 |
//! | 7 | `blocks.6` | MBConv6 | 3x3 | 1 | 320 | 1 | 7 x 7 |
//! | head | `conv_head`, `bn2`, `classifier` | 1x1 conv (1280), BN, SiLU, global average pool, dropout, linear | | | | | classes |
//!
//! An MBConv block (inverted residual) expands the channels 6x with a 1x1 convolution
//! (`conv_pw`, `bn1`, SiLU), filters each channel with a depthwise convolution (`conv_dw`,
//! `bn2`, SiLU), reweights the channels with squeeze-and-excitation (`se.conv_reduce` to a
//! quarter of the block's input channels, SiLU, `se.conv_expand`, sigmoid) and projects back
//! with a 1x1 convolution (`conv_pwl`, `bn3`, no activation); the first stage has no expansion
//! (`conv_dw`, `bn1`, `se`, `conv_pw`, `bn2`). A block whose input and output shapes agree
//! adds its input back, its branch dropped per sample in training (stochastic depth, survival
//! probability `1 - drop_path * i / blocks` for block `i`, as torchvision and timm).
//!
//! Parameters with three input channels and 1000 classes (identical in torchvision and timm):
//!
//! | variant | width | depth | resolution | dropout | parameters | MACs at 224 | MACs at resolution |
//! |---|---:|---:|---:|---:|---:|---:|---:|
//! | [`EfficientNetConfig::b0`] | 1.0 | 1.0 | 224 | 0.2 | **5,288,548** | 0.39 G | 0.39 G |
//! | [`EfficientNetConfig::b1`] | 1.0 | 1.1 | 240 | 0.2 | 7,794,184 | 0.57 G | 0.69 G |
//! | [`EfficientNetConfig::b2`] | 1.1 | 1.2 | 260 | 0.3 | 9,109,994 | 0.66 G | 0.99 G |
//! | [`EfficientNetConfig::b3`] | 1.2 | 1.4 | 300 | 0.3 | 12,233,232 | 0.96 G | 1.83 G |
//! | [`EfficientNetConfig::b4`] | 1.4 | 1.8 | 380 | 0.4 | 19,341,616 | 1.50 G | 4.39 G |
//! | [`EfficientNetConfig::b5`] | 1.6 | 2.2 | 456 | 0.4 | 30,389,784 | 2.36 G | 10.27 G |
//! | [`EfficientNetConfig::b6`] | 1.8 | 2.6 | 528 | 0.5 | 43,040,704 | 3.36 G | 19.07 G |
//! | [`EfficientNetConfig::b7`] | 2.0 | 3.1 | 600 | 0.5 | 66,347,960 | 5.17 G | 37.75 G |
//!
//! (MACs: multiply-accumulates of the convolutions and the classifier for one image, as
//! [`backbone::summarize`] counts them; they match torchvision's "GFLOPS" at the same sizes.
//! torchvision evaluates B2 at 288x288, the paper at 260x260.)
//!
//! The architectures of torchvision's `efficientnet_bN` and timm's `efficientnet_bN` are the
//! same (channels, depths, squeeze widths, drop-path schedule); they differ in batch norm for
//! B5-B7, where torchvision uses `eps = 1e-3, momentum = 0.01` (the defaults here) and timm
//! `eps = 1e-5, momentum = 0.1` ([`EfficientNetConfig::timm`]). B0-B4 use `1e-5, 0.1` in
//! both. timm's `tf_efficientnet_b*` ports (TensorFlow "same" padding) are not covered.
//!
//! EfficientNetV2-S (`efficientnetv2_rw_s`, `tf_efficientnetv2_s`, torchvision's
//! `efficientnet_v2_s`) is in [`v2`]; the blocks are shared.
//!
//! ## Weights
//!
//! The variables use timm's names (`timm/efficientnet_b0.ra_in1k`). torchvision's state dicts
//! (`features.S.B.block.I...`, `classifier.1`) are renamed on load:
//! The catalogue ([`VARIANTS`], `Variant::load`) detects the layout ([`detect_layout`]) and applies
//! [`torchvision_to_timm`]; [`timm_to_torchvision`] goes the other way.
//!
//! The features entering the head are the pooled `[N, num_features]` vector (1280 for B0);
//! the head is dropout then `classifier`.

mod blocks;
pub mod catalogue;
mod layout;
pub mod v2;
pub use catalogue::VARIANTS;
pub use layout::{
    detect_layout, timm_to_torchvision, torchvision_name, torchvision_to_timm, v2_timm_to_torchvision,
    v2_torchvision_name, v2_torchvision_to_timm, WeightsLayout,
};
pub use v2::{BlockKind, EfficientNetV2, EfficientNetV2Config, V2Stage};

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use efficientnet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::layers::{
    Activation, AdaptiveAvgPool2d, BatchNormConfig, Conv2dConfig, Dropout, Flatten, Layer, Linear,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use blocks::{BlockArgs, ConvBn, MBConv};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// One stage of the base network (EfficientNet-B0, the paper's Table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageConfig {
    /// Expansion ratio of the blocks (1: no expansion convolution).
    pub expand_ratio: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the stage's first block.
    pub stride: usize,
    /// Input channels of the stage's first block.
    pub in_channels: usize,
    /// Output channels of every block.
    pub out_channels: usize,
    /// Number of blocks.
    pub num_layers: usize,
}

/// The seven stages of EfficientNet-B0.
pub const B0_STAGES: [StageConfig; 7] = [
    stage(1, 3, 1, 32, 16, 1),
    stage(6, 3, 2, 16, 24, 2),
    stage(6, 5, 2, 24, 40, 2),
    stage(6, 3, 2, 40, 80, 3),
    stage(6, 5, 1, 80, 112, 3),
    stage(6, 5, 2, 112, 192, 4),
    stage(6, 3, 1, 192, 320, 1),
];

const fn stage(
    expand_ratio: usize,
    kernel: usize,
    stride: usize,
    in_channels: usize,
    out_channels: usize,
    num_layers: usize,
) -> StageConfig {
    StageConfig {
        expand_ratio,
        kernel,
        stride,
        in_channels,
        out_channels,
        num_layers,
    }
}

/// Channels of the base network's stem and head.
const BASE_STEM: usize = 32;
const BASE_HEAD: usize = 1280;

/// `v` rounded to the nearest multiple of `divisor` (at least `divisor`), rounded up by one
/// multiple when that loses more than 10%: the TensorFlow reference's `round_filters`,
/// torchvision's `_make_divisible` and timm's `round_channels`.
pub fn round_filters(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let rounded = (((v + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * v {
        rounded + divisor
    } else {
        rounded
    }
}

/// An EfficientNet variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficientNetConfig {
    /// Width multiplier (channels).
    pub width_mult: f64,
    /// Depth multiplier (blocks per stage, rounded up).
    pub depth_mult: f64,
    /// The paper's input resolution (the default input size).
    pub resolution: usize,
    /// Dropout before the classifier in training (0 switches it off).
    pub dropout: f32,
    /// Stochastic depth: the drop probability of the last block's residual branch in
    /// training, scaled linearly from 0 for the first block (0.2; 0 switches it off).
    pub drop_path: f64,
    /// Batch normalisation (eps, momentum) of every layer.
    pub batch_norm: BatchNormConfig,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
}

/// One scaled stage: the base stage with its channels and depth multiplied out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaledStage {
    /// Expansion ratio.
    pub expand_ratio: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Input channels of the first block.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Number of blocks.
    pub num_layers: usize,
}

impl EfficientNetConfig {
    fn scaled(width_mult: f64, depth_mult: f64, resolution: usize, dropout: f32) -> Self {
        Self {
            width_mult,
            depth_mult,
            resolution,
            dropout,
            drop_path: 0.2,
            batch_norm: BatchNormConfig::default(),
            in_channels: 3,
            num_classes: 1000,
        }
    }

    /// torchvision's batch norm of B5-B7: `eps = 1e-3`, `momentum = 0.01`.
    fn tv_large(mut self) -> Self {
        self.batch_norm = BatchNormConfig {
            eps: 1e-3,
            momentum: 0.01,
            affine: true,
        };
        self
    }

    /// EfficientNet-B0: width 1.0, depth 1.0, 224x224, dropout 0.2.
    pub fn b0() -> Self {
        Self::scaled(1.0, 1.0, 224, 0.2)
    }

    /// EfficientNet-B1: width 1.0, depth 1.1, 240x240, dropout 0.2.
    pub fn b1() -> Self {
        Self::scaled(1.0, 1.1, 240, 0.2)
    }

    /// EfficientNet-B2: width 1.1, depth 1.2, 260x260, dropout 0.3.
    pub fn b2() -> Self {
        Self::scaled(1.1, 1.2, 260, 0.3)
    }

    /// EfficientNet-B3: width 1.2, depth 1.4, 300x300, dropout 0.3.
    pub fn b3() -> Self {
        Self::scaled(1.2, 1.4, 300, 0.3)
    }

    /// EfficientNet-B4: width 1.4, depth 1.8, 380x380, dropout 0.4.
    pub fn b4() -> Self {
        Self::scaled(1.4, 1.8, 380, 0.4)
    }

    /// EfficientNet-B5: width 1.6, depth 2.2, 456x456, dropout 0.4; torchvision's batch norm
    /// (`eps = 1e-3`, `momentum = 0.01`).
    pub fn b5() -> Self {
        Self::scaled(1.6, 2.2, 456, 0.4).tv_large()
    }

    /// EfficientNet-B6: width 1.8, depth 2.6, 528x528, dropout 0.5; torchvision's batch norm
    /// (`eps = 1e-3`, `momentum = 0.01`).
    pub fn b6() -> Self {
        Self::scaled(1.8, 2.6, 528, 0.5).tv_large()
    }

    /// EfficientNet-B7: width 2.0, depth 3.1, 600x600, dropout 0.5; torchvision's batch norm
    /// (`eps = 1e-3`, `momentum = 0.01`).
    pub fn b7() -> Self {
        Self::scaled(2.0, 3.1, 600, 0.5).tv_large()
    }

    /// The variant `0..=7`, if `b` is one.
    pub fn variant(b: usize) -> Option<Self> {
        [
            Self::b0,
            Self::b1,
            Self::b2,
            Self::b3,
            Self::b4,
            Self::b5,
            Self::b6,
            Self::b7,
        ]
        .get(b)
        .map(|f| f())
    }

    /// timm's `efficientnet_bN` hyper-parameters: batch norm `eps = 1e-5`, `momentum = 0.1`
    /// for every variant (the same as torchvision's for B0-B4).
    pub fn timm(mut self) -> Self {
        self.batch_norm = BatchNormConfig::default();
        self
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

    /// Sets the dropout before the classifier.
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets the stochastic depth rate.
    pub fn with_drop_path(mut self, drop_path: f64) -> Self {
        self.drop_path = drop_path;
        self
    }

    /// Sets the batch normalisation of every layer.
    pub fn with_batch_norm(mut self, batch_norm: BatchNormConfig) -> Self {
        self.batch_norm = batch_norm;
        self
    }

    /// The variant's name, `efficientnet_b0` ... `efficientnet_b7`, or `efficientnet` for other
    /// multipliers.
    pub fn name(&self) -> &'static str {
        const NAMES: [(f64, f64, &str); 8] = [
            (1.0, 1.0, "efficientnet_b0"),
            (1.0, 1.1, "efficientnet_b1"),
            (1.1, 1.2, "efficientnet_b2"),
            (1.2, 1.4, "efficientnet_b3"),
            (1.4, 1.8, "efficientnet_b4"),
            (1.6, 2.2, "efficientnet_b5"),
            (1.8, 2.6, "efficientnet_b6"),
            (2.0, 3.1, "efficientnet_b7"),
        ];
        NAMES
            .iter()
            .find(|(w, d, _)| *w == self.width_mult && *d == self.depth_mult)
            .map_or("efficientnet", |(_, _, name)| name)
    }

    fn channels(&self, base: usize) -> usize {
        round_filters(base as f64 * self.width_mult, 8)
    }

    /// The stages with channels and depths scaled: channels `round_filters(c * width)`,
    /// blocks `ceil(n * depth)`.
    pub fn stages(&self) -> Vec<ScaledStage> {
        B0_STAGES
            .iter()
            .map(|s| ScaledStage {
                expand_ratio: s.expand_ratio,
                kernel: s.kernel,
                stride: s.stride,
                in_channels: self.channels(s.in_channels),
                out_channels: self.channels(s.out_channels),
                num_layers: (s.num_layers as f64 * self.depth_mult).ceil() as usize,
            })
            .collect()
    }

    /// Output channels of the stem.
    pub fn stem_channels(&self) -> usize {
        self.channels(BASE_STEM)
    }

    /// Output channels of the head convolution: the width of the features entering the
    /// classifier (1280 for B0).
    pub fn num_features(&self) -> usize {
        self.channels(BASE_HEAD)
    }

    /// The total number of MBConv blocks.
    pub fn num_blocks(&self) -> usize {
        self.stages().iter().map(|s| s.num_layers).sum()
    }

    /// The spatial size of the last feature map for an input of `len` pixels along one
    /// axis, or `None` if some layer would get an empty input.
    fn output_len(&self, len: usize) -> Option<usize> {
        let out = |len: usize, k: usize, s: usize| (len + 2 * (k / 2)).checked_sub(k).map(|v| v / s + 1);
        let mut len = out(len, 3, 2)?;
        for stage in self.stages() {
            len = out(len, stage.kernel, stage.stride)?;
        }
        Some(len)
    }

    /// The smallest accepted input size along one axis: 1, every convolution is padded by
    /// half its kernel.
    pub fn min_input_size(&self) -> usize {
        (1..).find(|&len| self.output_len(len).is_some()).unwrap_or(1)
    }

    fn validate(&self) -> Result<()> {
        let positive = self.width_mult > 0.0 && self.depth_mult > 0.0;
        if !positive || self.in_channels == 0 || self.num_classes == 0 {
            return Err(Error::config(format!(
                "efficientnet: multipliers, channels and classes must be positive: {self:?}"
            )));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(Error::config(format!(
                "efficientnet: drop_path must be in [0, 1), got {}",
                self.drop_path
            )));
        }
        Ok(())
    }
}

impl Default for EfficientNetConfig {
    fn default() -> Self {
        Self::b0()
    }
}

/// timm's feature stages of a network whose stem halves the input, from each stage's (stride,
/// output channels, blocks): the stages after which the maps are halved, and the last one, as
/// (index of the stage's last block, description).
pub(crate) fn feature_stages(stages: &[(usize, usize, usize)]) -> Vec<(usize, FeatureInfo)> {
    let mut out = Vec::new();
    let (mut end, mut reduction) = (0, 2);
    for (s, &(stride, channels, blocks)) in stages.iter().enumerate() {
        end += blocks;
        reduction *= stride;
        let halved_next = stages.get(s + 1).is_none_or(|next| next.0 > 1);
        if halved_next && end > 0 {
            out.push((
                end - 1,
                FeatureInfo::new(format!("blocks.{s}"), channels, reduction),
            ));
        }
    }
    out
}

/// EfficientNet; see the [crate documentation](crate).
pub struct EfficientNet {
    config: EfficientNetConfig,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    stem: ConvBn,
    blocks: Vec<MBConv>,
    head: ConvBn,
    pool: AdaptiveAvgPool2d,
    dropout: Dropout,
    classifier: Linear,
}

impl EfficientNet {
    /// Builds the model with timm's variable names: `conv_stem`, `bn1`,
    /// `blocks.S.I.{conv_pw, bn1, conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}`
    /// (first stage: `conv_dw, bn1, se.*, conv_pw, bn2`), `conv_head`, `bn2`, `classifier`.
    pub fn new(config: &EfficientNetConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        config.validate()?;
        let bn = config.batch_norm;
        let silu = Some(Activation::Silu);
        let stem = ConvBn::new(
            Conv2dConfig::new(config.in_channels, config.stem_channels(), 3)
                .stride(2)
                .padding(1),
            bn,
            silu,
            vb.pp("conv_stem"),
            vb.pp("bn1"),
        )?;
        let stages = config.stages();
        let total = config.num_blocks();
        let mut blocks = Vec::with_capacity(total);
        for (s, stage) in stages.iter().enumerate() {
            for i in 0..stage.num_layers {
                let (in_channels, stride) = if i == 0 {
                    (stage.in_channels, stage.stride)
                } else {
                    (stage.out_channels, 1)
                };
                let args = BlockArgs {
                    in_channels,
                    out_channels: stage.out_channels,
                    expand_ratio: stage.expand_ratio,
                    kernel: stage.kernel,
                    stride,
                    drop_path: config.drop_path * blocks.len() as f64 / total as f64,
                    bn,
                    same: false,
                };
                blocks.push(MBConv::new(args, vb.pp(format!("blocks.{s}.{i}")))?);
            }
        }
        let last = stages.last().map_or(config.stem_channels(), |s| s.out_channels);
        let features = config.num_features();
        let head = ConvBn::new(
            Conv2dConfig::new(last, features, 1),
            bn,
            silu,
            vb.pp("conv_head"),
            vb.pp("bn2"),
        )?;
        // torchvision: uniform in +-1/sqrt(classes), zero bias.
        let bound = 1.0 / (config.num_classes as f64).sqrt();
        let classifier = Linear::with_init(
            features,
            config.num_classes,
            true,
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
            Init::Const(0.0),
            vb.pp("classifier"),
        )?;
        Ok(Self {
            input_type,
            config: *config,
            stem,
            blocks,
            head,
            pool: AdaptiveAvgPool2d::new((1, 1))?.named("global_pool"),
            dropout: Dropout::new(config.dropout)?,
            classifier,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EfficientNetConfig {
        &self.config
    }

    /// The feature stages: (index of the stage's last block in `blocks`, description).
    fn feature_stages(&self) -> Vec<(usize, FeatureInfo)> {
        let stages: Vec<_> = self
            .config
            .stages()
            .iter()
            .map(|s| (s.stride, s.out_channels, s.num_layers))
            .collect();
        feature_stages(&stages)
    }
}

impl Backbone for EfficientNet {
    fn name(&self) -> &str {
        self.config.name()
    }

    fn input_spec(&self) -> InputSpec {
        let min = self.config.min_input_size();
        InputSpec {
            channels: self.config.in_channels,
            min_size: (min, min),
            fixed_size: None,
            default_size: (self.config.resolution, self.config.resolution),
        }
    }

    /// `conv_head`, `bn2` and SiLU (timm's `forward_features`): `[N, num_features, h, w]`.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        crate::blocks::forward_body(&self.stem, &self.blocks, &self.head, xs, train)
    }

    /// Global average pool, flatten, dropout (in training).
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.pool.forward_t(features, train)?;
        let xs = Flatten::new().forward_t(&xs, train)?;
        self.dropout.forward_t(&xs, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.classifier.forward_t(pre_logits, train)
    }

    /// timm's: the output of each stage `blocks.S` after which the maps are halved, and of the
    /// last stage (B0: 16, 24, 40, 112, 320 channels at reductions 2 to 32).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.feature_stages().into_iter().map(|(_, info)| info).collect()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let ends: Vec<usize> = self.feature_stages().into_iter().map(|(end, _)| end).collect();
        crate::blocks::forward_stage_ends(&self.stem, &self.blocks, &ends, xs, train)
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
    use crate::layout::KeyMap;

    #[test]
    fn rounding_matches_torchvision() {
        // torchvision's _make_divisible on a few values (computed in Python).
        assert_eq!(round_filters(32.0 * 1.1, 8), 32);
        assert_eq!(round_filters(16.0 * 1.1, 8), 16);
        assert_eq!(round_filters(40.0 * 1.1, 8), 48);
        assert_eq!(round_filters(112.0 * 1.2, 8), 136);
        assert_eq!(round_filters(320.0 * 1.8, 8), 576);
        assert_eq!(round_filters(4.0, 8), 8);
    }

    #[test]
    fn stage_depths() {
        let depths = |c: EfficientNetConfig| c.stages().iter().map(|s| s.num_layers).collect::<Vec<_>>();
        // timm.create_model('efficientnet_bN').blocks lengths.
        assert_eq!(depths(EfficientNetConfig::b0()), [1, 2, 2, 3, 3, 4, 1]);
        assert_eq!(depths(EfficientNetConfig::b1()), [2, 3, 3, 4, 4, 5, 2]);
        assert_eq!(depths(EfficientNetConfig::b3()), [2, 3, 3, 5, 5, 6, 2]);
        assert_eq!(depths(EfficientNetConfig::b7()), [4, 7, 7, 10, 10, 13, 4]);
        let features: Vec<usize> = (0..8)
            .filter_map(EfficientNetConfig::variant)
            .map(|c| c.num_features())
            .collect();
        assert_eq!(features, [1280, 1280, 1408, 1536, 1792, 2048, 2304, 2560]);
    }

    #[test]
    fn key_maps_are_inverse() {
        let map = KeyMap::new(&EfficientNetConfig::b2());
        for (timm, tv) in [
            ("conv_stem.weight", "features.0.0.weight"),
            ("blocks.0.1.conv_pw.weight", "features.1.1.block.2.0.weight"),
            ("blocks.0.0.se.conv_reduce.bias", "features.1.0.block.1.fc1.bias"),
            ("blocks.3.2.bn3.running_var", "features.4.2.block.3.1.running_var"),
            (
                "blocks.5.4.se.conv_expand.weight",
                "features.6.4.block.2.fc2.weight",
            ),
            ("conv_head.weight", "features.8.0.weight"),
            ("bn2.num_batches_tracked", "features.8.1.num_batches_tracked"),
            ("classifier.bias", "classifier.1.bias"),
        ] {
            assert_eq!(map.to_torchvision(timm).as_deref(), Some(tv), "{timm}");
            assert_eq!(map.to_timm(tv).as_deref(), Some(timm), "{tv}");
        }
        assert_eq!(map.to_timm("features.9.0.weight"), None);
        assert_eq!(map.to_torchvision("blocks.7.0.conv_dw.weight"), None);
    }
}
