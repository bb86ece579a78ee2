//! # EfficientNetV2
//!
//! M. Tan, Q. V. Le, *EfficientNetV2: Smaller Models and Faster Training*, ICML 2021
//! (arXiv:2104.00298). The early stages replace MBConv's expansion and depthwise convolutions
//! by one regular convolution (FusedMBConv), which runs faster on accelerators at small
//! channel counts; the later stages are EfficientNet's MBConv with squeeze-and-excitation.
//!
//! EfficientNetV2-S, the paper's Table 4 (timm's key names):
//!
//! | stage | key | operator | kernel | stride | channels | layers |
//! |---|---|---|---|---:|---:|---:|
//! | stem | `conv_stem`, `bn1` | conv, BN, SiLU | 3x3 | 2 | 24 | 1 |
//! | 1 | `blocks.0` | Fused-MBConv1 (timm: conv, BN, SiLU + residual) | 3x3 | 1 | 24 | 2 |
//! | 2 | `blocks.1` | Fused-MBConv4 | 3x3 | 2 | 48 | 4 |
//! | 3 | `blocks.2` | Fused-MBConv4 | 3x3 | 2 | 64 | 4 |
//! | 4 | `blocks.3` | MBConv4, SE 0.25 | 3x3 | 2 | 128 | 6 |
//! | 5 | `blocks.4` | MBConv6, SE 0.25 | 3x3 | 1 | 160 | 9 |
//! | 6 | `blocks.5` | MBConv6, SE 0.25 | 3x3 | 2 | 256 | 15 |
//! | head | `conv_head`, `bn2`, `classifier` | 1x1 conv (1280), BN, SiLU, global average pool, dropout, linear | | | | |
//!
//! A Fused-MBConv block (timm's `EdgeResidual`) expands with a `kernel` x `kernel`
//! convolution (`conv_exp`, `bn1`, SiLU) and projects with a 1x1 convolution (`conv_pwl`,
//! `bn2`); without expansion it is one convolution (timm's `ConvBnAct`: `conv`, `bn1`, SiLU).
//! The squeeze-and-excitation of the MBConv blocks squeezes to a quarter of the block's
//! INPUT channels (timm: `se_ratio / expand_ratio` of the expanded channels; torchvision:
//! `input_channels // 4`). Every block whose input and output shapes agree adds its input
//! back, its branch dropped per sample in training (drop rate `drop_path * i / blocks`).
//!
//! Three networks (3 input channels, 1000 classes):
//!
//! | variant | reference | first stage | last stage | head | padding | BN eps | parameters |
//! |---|---|---|---|---:|---|---:|---:|
//! | [`EfficientNetV2Config::rw_s`] | timm's `efficientnetv2_rw_s` | Fused-MBConv1 with projection (`conv_exp`, `conv_pwl`) | 272 | 1792 | PyTorch (symmetric) | 1e-5 | 23,941,296 |
//! | [`EfficientNetV2Config::tf_s`] | timm's `tf_efficientnetv2_s` (TensorFlow's weights) | conv, BN, SiLU | 256 | 1280 | TensorFlow "SAME" | 1e-3 | 21,458,488 |
//! | [`EfficientNetV2Config::s`] | torchvision's `efficientnet_v2_s` | conv, BN, SiLU | 256 | 1280 | PyTorch (symmetric) | 1e-3 | 21,458,488 |
//!
//! `efficientnetv2_rw_s` is Ross Wightman's reading of the paper before the official code:
//! a first stage with a projection, 272 channels in the last stage and a 1792-wide head.
//! `tf_efficientnetv2_s` and torchvision's `efficientnet_v2_s` have the same layers and
//! parameters but are not the same network: torchvision trained its own weights (not a port
//! of TensorFlow's) with PyTorch's symmetric padding, while the `tf_` weights need
//! TensorFlow's "SAME" padding, which pads the stride-2 convolutions of an even-sized map by
//! `(0, 1)` instead of `(1, 1)` (`backbone::layers::Conv2dConfig::same_padding`). torchvision's
//! network equals timm's `efficientnetv2_s` with `bn_eps = 1e-3` (timm's own uses `1e-5`).
//! Batch-norm momentum is PyTorch's default, 0.1, in all three.

use crate::blocks::{BlockArgs, ConvBn, ConvBnAct, FusedMBConv, MBConv};
use crate::feature_stages;
use backbone::layers::{
    Activation, AdaptiveAvgPool2d, BatchNormConfig, Conv2dConfig, Dropout, Flatten, Layer, Linear,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// The block of a stage (timm's block codes `cn`, `er`, `ir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `cn`: a convolution, batch norm and SiLU with a residual (Fused-MBConv1 of the paper,
    /// torchvision's `FusedMBConv` without expansion).
    ConvBnAct,
    /// `er`: Fused-MBConv (timm's `EdgeResidual`): `conv_exp` (kxk) and `conv_pwl` (1x1).
    Fused,
    /// `ir`: MBConv with squeeze-and-excitation (a quarter of the input channels).
    MBConv,
}

/// One stage of an EfficientNetV2 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Stage {
    /// The block.
    pub kind: BlockKind,
    /// Expansion ratio.
    pub expand_ratio: usize,
    /// Kernel size of the fused (or depthwise) convolution.
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

const fn stage(
    kind: BlockKind,
    expand_ratio: usize,
    kernel: usize,
    stride: usize,
    in_channels: usize,
    out_channels: usize,
    num_layers: usize,
) -> V2Stage {
    V2Stage {
        kind,
        expand_ratio,
        kernel,
        stride,
        in_channels,
        out_channels,
        num_layers,
    }
}

use BlockKind::{ConvBnAct as Cn, Fused as Er, MBConv as Ir};

/// EfficientNetV2-S (the paper's Table 4; timm's `efficientnetv2_s` / `tf_efficientnetv2_s`,
/// torchvision's `efficientnet_v2_s`).
pub const S_STAGES: [V2Stage; 6] = [
    stage(Cn, 1, 3, 1, 24, 24, 2),
    stage(Er, 4, 3, 2, 24, 48, 4),
    stage(Er, 4, 3, 2, 48, 64, 4),
    stage(Ir, 4, 3, 2, 64, 128, 6),
    stage(Ir, 6, 3, 1, 128, 160, 9),
    stage(Ir, 6, 3, 2, 160, 256, 15),
];

/// timm's `efficientnetv2_rw_s`: a Fused-MBConv1 with projection first, 272 channels last.
pub const RW_S_STAGES: [V2Stage; 6] = [
    stage(Er, 1, 3, 1, 24, 24, 2),
    stage(Er, 4, 3, 2, 24, 48, 4),
    stage(Er, 4, 3, 2, 48, 64, 4),
    stage(Ir, 4, 3, 2, 64, 128, 6),
    stage(Ir, 6, 3, 1, 128, 160, 9),
    stage(Ir, 6, 3, 2, 160, 272, 15),
];

/// The three networks of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Variant {
    /// timm's `efficientnetv2_rw_s`.
    RwS,
    /// timm's `tf_efficientnetv2_s`.
    TfS,
    /// torchvision's `efficientnet_v2_s`.
    S,
}

/// An EfficientNetV2 network and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficientNetV2Config {
    /// Which network (stages, stem, head).
    pub variant: V2Variant,
    /// TensorFlow's "SAME" padding (the `tf_` weights) instead of PyTorch's symmetric one.
    pub same_padding: bool,
    /// The default input size (timm's training size of the weights; torchvision's 384).
    pub resolution: usize,
    /// Dropout before the classifier in training (0 switches it off).
    pub dropout: f32,
    /// Stochastic depth: the drop probability of the last block's residual branch in
    /// training, scaled linearly from 0 for the first block (0 switches it off).
    pub drop_path: f64,
    /// Batch normalisation (eps, momentum) of every layer.
    pub batch_norm: BatchNormConfig,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
}

/// Channels of the stem.
const STEM: usize = 24;

impl EfficientNetV2Config {
    fn new(variant: V2Variant, same_padding: bool, resolution: usize, eps: f64) -> Self {
        Self {
            variant,
            same_padding,
            resolution,
            dropout: 0.2,
            drop_path: 0.2,
            batch_norm: BatchNormConfig {
                eps,
                momentum: 0.1,
                affine: true,
            },
            in_channels: 3,
            num_classes: 1000,
        }
    }

    /// timm's `efficientnetv2_rw_s`: PyTorch padding, BN eps 1e-5, 288x288 (its weights'
    /// training size), dropout 0.2, drop path 0.2.
    pub fn rw_s() -> Self {
        Self::new(V2Variant::RwS, false, 288, 1e-5)
    }

    /// timm's `tf_efficientnetv2_s`: TensorFlow "SAME" padding, BN eps 1e-3, 300x300, dropout
    /// 0.2, drop path 0.2.
    pub fn tf_s() -> Self {
        Self::new(V2Variant::TfS, true, 300, 1e-3)
    }

    /// torchvision's `efficientnet_v2_s`: PyTorch padding, BN eps 1e-3, 384x384 (its weights'
    /// evaluation size), dropout 0.2, stochastic depth 0.2.
    pub fn s() -> Self {
        Self::new(V2Variant::S, false, 384, 1e-3)
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

    /// The catalogue name: `efficientnetv2_rw_s`, `tf_efficientnetv2_s` or `efficientnet_v2_s`.
    pub fn name(&self) -> &'static str {
        match self.variant {
            V2Variant::RwS => "efficientnetv2_rw_s",
            V2Variant::TfS => "tf_efficientnetv2_s",
            V2Variant::S => "efficientnet_v2_s",
        }
    }

    /// The stages.
    pub fn stages(&self) -> &'static [V2Stage] {
        match self.variant {
            V2Variant::RwS => &RW_S_STAGES,
            V2Variant::TfS | V2Variant::S => &S_STAGES,
        }
    }

    /// Output channels of the stem (24).
    pub fn stem_channels(&self) -> usize {
        STEM
    }

    /// Output channels of the head convolution: the width of the features entering the
    /// classifier (1792 for `efficientnetv2_rw_s`, 1280 for the others).
    pub fn num_features(&self) -> usize {
        match self.variant {
            V2Variant::RwS => 1792,
            V2Variant::TfS | V2Variant::S => 1280,
        }
    }

    /// The total number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.stages().iter().map(|s| s.num_layers).sum()
    }

    fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.num_classes == 0 {
            return Err(Error::config(format!(
                "{}: channels and classes must be positive: {self:?}",
                self.name()
            )));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(Error::config(format!(
                "{}: drop_path must be in [0, 1), got {}",
                self.name(),
                self.drop_path
            )));
        }
        Ok(())
    }
}

/// One block of any kind.
enum Block {
    ConvBnAct(Box<ConvBnAct>),
    Fused(Box<FusedMBConv>),
    MBConv(Box<MBConv>),
}

impl Layer for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Block::ConvBnAct(b) => b.forward_t(xs, train),
            Block::Fused(b) => b.forward_t(xs, train),
            Block::MBConv(b) => b.forward_t(xs, train),
        }
    }
}

/// EfficientNetV2; see the [module documentation](self).
pub struct EfficientNetV2 {
    config: EfficientNetV2Config,
    input_type: InputType,
    stem: ConvBn,
    blocks: Vec<Block>,
    head: ConvBn,
    pool: AdaptiveAvgPool2d,
    dropout: Dropout,
    classifier: Linear,
}

impl EfficientNetV2 {
    /// Builds the model with timm's variable names: `conv_stem`, `bn1`, `blocks.S.I.*`
    /// (`conv`, `bn1`; `conv_exp`, `bn1`, `conv_pwl`, `bn2`; `conv_pw`, `bn1`, `conv_dw`,
    /// `bn2`, `se.conv_reduce`, `se.conv_expand`, `conv_pwl`, `bn3`), `conv_head`, `bn2`,
    /// `classifier`.
    pub fn new(config: &EfficientNetV2Config, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        config.validate()?;
        let (bn, same, silu) = (config.batch_norm, config.same_padding, Some(Activation::Silu));
        let stem = ConvBn::new(
            crate::blocks::spatial(config.in_channels, STEM, 3, 2, same),
            bn,
            silu,
            vb.pp("conv_stem"),
            vb.pp("bn1"),
        )?;
        let total = config.num_blocks();
        let mut blocks = Vec::with_capacity(total);
        for (s, stage) in config.stages().iter().enumerate() {
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
                    same,
                };
                let vb = vb.pp(format!("blocks.{s}.{i}"));
                blocks.push(match stage.kind {
                    BlockKind::ConvBnAct => Block::ConvBnAct(Box::new(ConvBnAct::new(args, vb)?)),
                    BlockKind::Fused => Block::Fused(Box::new(FusedMBConv::new(args, vb)?)),
                    BlockKind::MBConv => Block::MBConv(Box::new(MBConv::new(args, vb)?)),
                });
            }
        }
        let last = config.stages().last().map_or(STEM, |s| s.out_channels);
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
            config: *config,
            input_type,
            stem,
            blocks,
            head,
            pool: AdaptiveAvgPool2d::new((1, 1))?.named("global_pool"),
            dropout: Dropout::new(config.dropout)?,
            classifier,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EfficientNetV2Config {
        &self.config
    }

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

impl Backbone for EfficientNetV2 {
    fn name(&self) -> &str {
        self.config.name()
    }

    /// Any size from 1x1: every convolution is padded (by half its kernel, or "SAME").
    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: self.config.in_channels,
            min_size: (1, 1),
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
    /// last stage (V2-S: 24, 48, 64, 160, 256 channels at reductions 2 to 32; rw: 272 last).
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
