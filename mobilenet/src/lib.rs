//! # MobileNet
//!
//! M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, *MobileNetV2: Inverted Residuals
//! and Linear Bottlenecks*, CVPR 2018 (arXiv:1801.04381). A stack of inverted residual blocks:
//! a 1x1 convolution expands the channels, a 3x3 depthwise convolution filters each channel, a
//! linear 1x1 convolution projects back to a narrow bottleneck, and blocks whose input and
//! output shapes agree add their input back. Every activation is ReLU6 (`min(max(x, 0), 6)`),
//! every batch norm has PyTorch's defaults (`eps = 1e-5, momentum = 0.1`).
//!
//! MobileNetV2 at width 1.0 (input 224x224; timm's key names; the paper's Table 2, stages as
//! data in [`MOBILENET_V2`]):
//!
//! | stage | key | operator | expansion `t` | channels `c` | blocks `n` | stride `s` | output |
//! |---|---|---|---:|---:|---:|---:|---|
//! | stem | `conv_stem`, `bn1` | 3x3 conv, BN, ReLU6 | | 32 | 1 | 2 | 112 x 112 |
//! | 1 | `blocks.0` | depthwise separable | 1 | 16 | 1 | 1 | 112 x 112 |
//! | 2 | `blocks.1` | inverted residual | 6 | 24 | 2 | 2 | 56 x 56 |
//! | 3 | `blocks.2` | inverted residual | 6 | 32 | 3 | 2 | 28 x 28 |
//! | 4 | `blocks.3` | inverted residual | 6 | 64 | 4 | 2 | 14 x 14 |
//! | 5 | `blocks.4` | inverted residual | 6 | 96 | 3 | 1 | 14 x 14 |
//! | 6 | `blocks.5` | inverted residual | 6 | 160 | 3 | 2 | 7 x 7 |
//! | 7 | `blocks.6` | inverted residual | 6 | 320 | 1 | 1 | 7 x 7 |
//! | head | `conv_head`, `bn2`, `classifier` | 1x1 conv (1280), BN, ReLU6, global average pool, dropout, linear | | | | | classes |
//!
//! An inverted residual block (`blocks.S.B`): `conv_pw` (1x1 to `t` times the input channels),
//! `bn1`, ReLU6; `conv_dw` (3x3 depthwise, the stage's stride on the first block), `bn2`,
//! ReLU6; `conv_pwl` (1x1 to `c`), `bn3`, no activation; the input added when the stride is 1
//! and the channels agree. The first stage has no expansion: `conv_dw`, `bn1`, ReLU6,
//! `conv_pw`, `bn2` (no residual: 32 channels in, 16 out). No convolution has a bias.
//!
//! | variant | parameters (timm `mobilenetv2_100` = torchvision `mobilenet_v2`) | MACs at 224 |
//! |---|---:|---:|
//! | [`MobileNetV2Config::v2_100`] | **3,504,872** | 0.30 G |
//!
//! (MACs: multiply-accumulates of the convolutions and the classifier for one image, as
//! [`backbone::summarize`] counts them; torchvision quotes 0.30 "GFLOPS".)
//!
//! ## Weights
//!
//! The variables use timm's names (`timm/mobilenetv2_100.ra_in1k`). torchvision's state dicts
//! (`features.0.{0,1}`, `features.F.conv.I[.J]`, `features.18.{0,1}`, `classifier.1`) are
//! renamed on load: the catalogue ([`VARIANTS`], `Variant::load`) detects the layout
//! ([`detect_layout`]) and applies [`torchvision_to_timm`]; [`timm_to_torchvision`] goes the
//! other way.
//!
//! The features entering the head are the pooled `[N, 1280]` vector; the head is dropout then
//! `classifier`.
//!
//! MobileNetV3 (Howard et al. 2019, *Searching for MobileNetV3*): see [`v3`], its weights
//! layouts [`v3_layout`]. timm's `mobilenetv3_large_100` (5,483,032 parameters) and
//! `mobilenetv3_small_100` (2,542,856) and torchvision's `mobilenet_v3_large` and
//! `mobilenet_v3_small` are the same networks with the same parameters; torchvision's batch
//! norms have `eps = 1e-3, momentum = 0.01` where timm's have PyTorch's defaults, so the
//! catalogue lists torchvision's names as variants of their own (its batch norm), each loading
//! both layouts.

pub mod catalogue;
pub mod v3;
pub mod v3_layout;
pub use catalogue::VARIANTS;
pub use v3::{MobileNetV3, MobileNetV3Config};

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use mobilenet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::layers::{
    Activation, AdaptiveAvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Dropout,
    Flatten, Layer, Linear,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};
use std::collections::HashMap;

/// One stage of MobileNetV2 (a row of the paper's Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageConfig {
    /// Expansion factor `t` (1: no expansion convolution).
    pub expand_ratio: usize,
    /// Output channels `c` of every block.
    pub channels: usize,
    /// Number of blocks `n`.
    pub depth: usize,
    /// Stride `s` of the stage's first block.
    pub stride: usize,
}

const fn stage(expand_ratio: usize, channels: usize, depth: usize, stride: usize) -> StageConfig {
    StageConfig {
        expand_ratio,
        channels,
        depth,
        stride,
    }
}

/// The seven stages of MobileNetV2 at width 1.0 (`t, c, n, s`).
pub const MOBILENET_V2: [StageConfig; 7] = [
    stage(1, 16, 1, 1),
    stage(6, 24, 2, 2),
    stage(6, 32, 3, 2),
    stage(6, 64, 4, 2),
    stage(6, 96, 3, 1),
    stage(6, 160, 3, 2),
    stage(6, 320, 1, 1),
];

/// Channels of the stem.
pub const STEM_CHANNELS: usize = 32;
/// Channels of the head convolution (the features entering the classifier).
pub const HEAD_CHANNELS: usize = 1280;

/// A MobileNetV2 variant.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileNetV2Config {
    /// The stages.
    pub stages: [StageConfig; 7],
    /// Dropout before the classifier in training (torchvision's 0.2; timm's `drop_rate`, 0 by
    /// default).
    pub dropout: f32,
    /// Batch norm of every layer.
    pub batch_norm: BatchNormConfig,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl MobileNetV2Config {
    /// MobileNetV2 at width 1.0 ([`MOBILENET_V2`]): timm's `mobilenetv2_100`, torchvision's
    /// `mobilenet_v2`, dropout 0.2.
    pub fn v2_100() -> Self {
        Self {
            stages: MOBILENET_V2,
            dropout: 0.2,
            batch_norm: BatchNormConfig::default(),
            in_channels: 3,
            num_classes: 1000,
        }
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

    /// The variant's name: `mobilenetv2_100`, or `mobilenetv2` for other stages.
    pub fn name(&self) -> &'static str {
        if self.stages == MOBILENET_V2 {
            "mobilenetv2_100"
        } else {
            "mobilenetv2"
        }
    }

    /// The width of the features entering the head (1280).
    pub fn num_features(&self) -> usize {
        HEAD_CHANNELS
    }

    /// The total number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.stages.iter().map(|s| s.depth).sum()
    }

    /// The smallest accepted input side: 1 (every convolution is padded, so each stride-2
    /// layer maps a side of 1 to 1).
    pub fn min_input_size(&self) -> usize {
        1
    }

    fn validate(&self) -> Result<()> {
        let positive = self
            .stages
            .iter()
            .all(|s| s.depth > 0 && s.channels > 0 && s.expand_ratio > 0 && s.stride > 0);
        if !positive || self.in_channels == 0 || self.num_classes == 0 {
            return Err(Error::config(format!(
                "mobilenet: stages, channels and classes must be positive: {self:?}"
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(format!(
                "mobilenet: dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

impl Default for MobileNetV2Config {
    fn default() -> Self {
        Self::v2_100()
    }
}

/// torchvision's initialisation of a fresh MobileNetV2 convolution: `kaiming_normal_` (fan out),
/// no bias.
fn conv(config: Conv2dConfig, vb: VarBuilder) -> Result<Conv2d> {
    let kaiming = Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanOut,
        non_linearity: NonLinearity::ReLU,
    };
    Conv2d::new(config.no_bias().init(kaiming, Init::Const(0.0)), vb)
}

/// A convolution (no bias), batch norm and optional ReLU6 under timm's two names.
fn conv_bn(
    config: Conv2dConfig,
    bn: BatchNormConfig,
    relu6: bool,
    conv_vb: VarBuilder,
    bn_vb: VarBuilder,
) -> Result<ConvBlock> {
    let channels = config.out_channels;
    Ok(ConvBlock::new(
        conv(config, conv_vb)?,
        Some(BatchNorm2d::new(channels, bn, bn_vb)?),
        relu6.then_some(Activation::Relu6),
    ))
}

/// An inverted residual block (or the first stage's depthwise separable one); see the
/// [crate documentation](crate).
struct InvertedResidual {
    expand: Option<ConvBlock>,
    depthwise: ConvBlock,
    project: ConvBlock,
    residual: bool,
}

impl InvertedResidual {
    fn new(
        in_channels: usize,
        stage: &StageConfig,
        stride: usize,
        bn: BatchNormConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out = stage.channels;
        let mid = in_channels * stage.expand_ratio;
        let dw = Conv2dConfig::new(mid, mid, 3)
            .stride(stride)
            .padding(1)
            .groups(mid);
        let pw = |i, o| Conv2dConfig::new(i, o, 1);
        // timm names the layers by position: with an expansion conv_pw/bn1, conv_dw/bn2,
        // conv_pwl/bn3; without, conv_dw/bn1, conv_pw/bn2.
        let (expand, depthwise, project) = if stage.expand_ratio != 1 {
            (
                Some(conv_bn(
                    pw(in_channels, mid),
                    bn,
                    true,
                    vb.pp("conv_pw"),
                    vb.pp("bn1"),
                )?),
                conv_bn(dw, bn, true, vb.pp("conv_dw"), vb.pp("bn2"))?,
                conv_bn(pw(mid, out), bn, false, vb.pp("conv_pwl"), vb.pp("bn3"))?,
            )
        } else {
            (
                None,
                conv_bn(dw, bn, true, vb.pp("conv_dw"), vb.pp("bn1"))?,
                conv_bn(pw(mid, out), bn, false, vb.pp("conv_pw"), vb.pp("bn2"))?,
            )
        };
        Ok(Self {
            expand,
            depthwise,
            project,
            residual: stride == 1 && in_channels == out,
        })
    }
}

impl Layer for InvertedResidual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let h = match &self.expand {
            Some(expand) => expand.forward_t(xs, train)?,
            None => xs.clone(),
        };
        let h = self.depthwise.forward_t(&h, train)?;
        let h = self.project.forward_t(&h, train)?;
        if self.residual {
            Ok((h + xs)?)
        } else {
            Ok(h)
        }
    }
}

/// MobileNetV2; see the [crate documentation](crate).
pub struct MobileNetV2 {
    config: MobileNetV2Config,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    stem: ConvBlock,
    /// The blocks of each stage.
    stages: Vec<Vec<InvertedResidual>>,
    head: ConvBlock,
    pool: AdaptiveAvgPool2d,
    dropout: Dropout,
    classifier: Linear,
}

impl MobileNetV2 {
    /// Builds the model with timm's variable names: `conv_stem`, `bn1`,
    /// `blocks.S.B.{conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3}` (first stage:
    /// `conv_dw, bn1, conv_pw, bn2`), `conv_head`, `bn2`, `classifier`.
    pub fn new(config: &MobileNetV2Config, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        config.validate()?;
        let bn = config.batch_norm;
        let stem = conv_bn(
            Conv2dConfig::new(config.in_channels, STEM_CHANNELS, 3)
                .stride(2)
                .padding(1),
            bn,
            true,
            vb.pp("conv_stem"),
            vb.pp("bn1"),
        )?;
        let mut prev = STEM_CHANNELS;
        let mut stages = Vec::with_capacity(config.stages.len());
        for (s, stage) in config.stages.iter().enumerate() {
            let mut blocks = Vec::with_capacity(stage.depth);
            for b in 0..stage.depth {
                let stride = if b == 0 { stage.stride } else { 1 };
                blocks.push(InvertedResidual::new(
                    prev,
                    stage,
                    stride,
                    bn,
                    vb.pp(format!("blocks.{s}.{b}")),
                )?);
                prev = stage.channels;
            }
            stages.push(blocks);
        }
        let head = conv_bn(
            Conv2dConfig::new(prev, HEAD_CHANNELS, 1),
            bn,
            true,
            vb.pp("conv_head"),
            vb.pp("bn2"),
        )?;
        // torchvision: normal with standard deviation 0.01, zero bias.
        let classifier = Linear::with_init(
            HEAD_CHANNELS,
            config.num_classes,
            true,
            Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
            Init::Const(0.0),
            vb.pp("classifier"),
        )?;
        Ok(Self {
            config: config.clone(),
            input_type,
            stem,
            stages,
            head,
            pool: AdaptiveAvgPool2d::new((1, 1))?.named("global_pool"),
            dropout: Dropout::new(config.dropout)?,
            classifier,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MobileNetV2Config {
        &self.config
    }

    /// timm's feature stages: (stage index, description) of each stage after which the maps
    /// are halved, and of the last stage.
    fn feature_stages(&self) -> Vec<(usize, FeatureInfo)> {
        let stages = &self.config.stages;
        let mut out = Vec::new();
        let mut reduction = 2;
        for (s, stage) in stages.iter().enumerate() {
            reduction *= stage.stride;
            let halved_next = stages.get(s + 1).is_none_or(|next| next.stride > 1);
            if halved_next {
                out.push((
                    s,
                    FeatureInfo::new(format!("blocks.{s}"), stage.channels, reduction),
                ));
            }
        }
        out
    }

    fn run_stage(&self, s: usize, mut xs: Tensor, train: bool) -> Result<Tensor> {
        for block in &self.stages[s] {
            xs = block.forward_t(&xs, train)?;
        }
        Ok(xs)
    }
}

impl Backbone for MobileNetV2 {
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

    /// The stem, the blocks, `conv_head`, `bn2` and ReLU6 (timm's `forward_features`):
    /// `[N, 1280, h, w]`.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let mut xs = self.stem.forward_t(xs, train)?;
        for s in 0..self.stages.len() {
            xs = self.run_stage(s, xs, train)?;
        }
        self.head.forward_t(&xs, train)
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
    /// last stage (16, 24, 32, 96, 320 channels at reductions 2 to 32).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.feature_stages().into_iter().map(|(_, info)| info).collect()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let ends: Vec<usize> = self.feature_stages().into_iter().map(|(s, _)| s).collect();
        let mut xs = self.stem.forward_t(xs, train)?;
        let mut maps = Vec::with_capacity(ends.len());
        for s in 0..self.stages.len() {
            xs = self.run_stage(s, xs, train)?;
            if ends.contains(&s) {
                maps.push(xs.clone());
            }
        }
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

// ---------------------------------------------------------------------------------------------
// Weights layouts.

/// The naming scheme of a MobileNetV2 state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsLayout {
    /// timm's `mobilenetv2_100` (`conv_stem`, `blocks.S.B.conv_pw`, `classifier`): this
    /// crate's own names.
    Timm,
    /// torchvision's `mobilenet_v2` (`features.0.0`, `features.F.conv.I[.J]`, `classifier.1`).
    Torchvision,
}

/// torchvision's layout when some key starts with `features.`, timm's otherwise.
pub fn detect_layout<'a>(keys: impl IntoIterator<Item = &'a String>) -> WeightsLayout {
    if keys.into_iter().any(|k| k.starts_with("features.")) {
        WeightsLayout::Torchvision
    } else {
        WeightsLayout::Timm
    }
}

/// The module paths of both layouts of [`MOBILENET_V2`]'s network.
struct KeyMap {
    timm_to_tv: HashMap<String, String>,
    tv_to_timm: HashMap<String, String>,
}

impl KeyMap {
    fn new() -> Self {
        let mut pairs: Vec<(String, String)> = vec![
            ("conv_stem".into(), "features.0.0".into()),
            ("bn1".into(), "features.0.1".into()),
        ];
        // torchvision numbers the blocks over all stages from `features.1`.
        let mut f = 1;
        for (s, stage) in MOBILENET_V2.iter().enumerate() {
            let modules: &[(&str, &str)] = if stage.expand_ratio != 1 {
                &[
                    ("conv_pw", "0.0"),
                    ("bn1", "0.1"),
                    ("conv_dw", "1.0"),
                    ("bn2", "1.1"),
                    ("conv_pwl", "2"),
                    ("bn3", "3"),
                ]
            } else {
                &[("conv_dw", "0.0"), ("bn1", "0.1"), ("conv_pw", "1"), ("bn2", "2")]
            };
            for b in 0..stage.depth {
                for (timm, tv) in modules {
                    pairs.push((
                        format!("blocks.{s}.{b}.{timm}"),
                        format!("features.{f}.conv.{tv}"),
                    ));
                }
                f += 1;
            }
        }
        pairs.push(("conv_head".into(), format!("features.{f}.0")));
        pairs.push(("bn2".into(), format!("features.{f}.1")));
        pairs.push(("classifier".into(), "classifier.1".into()));
        Self {
            tv_to_timm: pairs.iter().map(|(a, b)| (b.clone(), a.clone())).collect(),
            timm_to_tv: pairs.into_iter().collect(),
        }
    }

    fn rename(map: &HashMap<String, String>, key: &str) -> Option<String> {
        let (module, param) = key.rsplit_once('.')?;
        map.get(module).map(|m| format!("{m}.{param}"))
    }
}

/// The torchvision name of a tensor this crate (timm) calls `key`
/// (`blocks.1.0.conv_dw.weight` -> `features.2.conv.1.0.weight`), if it has one: errors on a
/// torchvision file name the tensor as the file does.
pub fn torchvision_name(key: &str) -> Option<String> {
    KeyMap::rename(&KeyMap::new().timm_to_tv, key)
}

/// The timm name of torchvision key `key` (`features.18.1.running_var` -> `bn2.running_var`),
/// if it is one of MobileNetV2's.
pub fn torchvision_key_to_timm(key: &str) -> Option<String> {
    KeyMap::rename(&KeyMap::new().tv_to_timm, key)
}

/// Renames a torchvision MobileNetV2 state dict to timm's names (this crate's). Keys that are
/// not MobileNetV2's are kept as they are (strict loading then reports them).
pub fn torchvision_to_timm(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let map = KeyMap::new();
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (KeyMap::rename(&map.tv_to_timm, &k).unwrap_or(k), t))
        .collect())
}

/// Renames a timm MobileNetV2 state dict (this crate's names) to torchvision's, the inverse of
/// [`torchvision_to_timm`]. Keys that are not MobileNetV2's are kept.
pub fn timm_to_torchvision(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let map = KeyMap::new();
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (KeyMap::rename(&map.timm_to_tv, &k).unwrap_or(k), t))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_maps_are_inverse() {
        for (timm, tv) in [
            ("conv_stem.weight", "features.0.0.weight"),
            ("bn1.running_mean", "features.0.1.running_mean"),
            ("blocks.0.0.conv_dw.weight", "features.1.conv.0.0.weight"),
            ("blocks.0.0.bn1.bias", "features.1.conv.0.1.bias"),
            ("blocks.0.0.conv_pw.weight", "features.1.conv.1.weight"),
            ("blocks.0.0.bn2.weight", "features.1.conv.2.weight"),
            ("blocks.1.0.conv_pw.weight", "features.2.conv.0.0.weight"),
            ("blocks.1.1.bn2.running_var", "features.3.conv.1.1.running_var"),
            ("blocks.3.3.conv_pwl.weight", "features.10.conv.2.weight"),
            ("blocks.6.0.bn3.bias", "features.17.conv.3.bias"),
            ("conv_head.weight", "features.18.0.weight"),
            ("bn2.weight", "features.18.1.weight"),
            ("classifier.bias", "classifier.1.bias"),
        ] {
            assert_eq!(torchvision_name(timm).as_deref(), Some(tv), "{timm}");
            assert_eq!(torchvision_key_to_timm(tv).as_deref(), Some(timm), "{tv}");
        }
        for tv in [
            "features.19.0.weight",
            "features.1.conv.3.weight",
            "classifier.0.weight",
        ] {
            assert_eq!(torchvision_key_to_timm(tv), None, "{tv}");
        }
        assert_eq!(torchvision_name("blocks.7.0.conv_pw.weight"), None);
    }

    #[test]
    fn blocks_and_validation() {
        let c = MobileNetV2Config::v2_100();
        assert_eq!(c.num_blocks(), 17);
        assert_eq!(c.name(), "mobilenetv2_100");
        assert!(c.clone().with_dropout(1.0).validate().is_err());
        assert!(c.with_classes(0).validate().is_err());
    }
}
