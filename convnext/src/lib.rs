//! # ConvNeXt
//!
//! Z. Liu, H. Mao, C.-Y. Wu, C. Feichtenhofer, T. Darrell, S. Xie, *A ConvNet for the 2020s*,
//! CVPR 2022 (arXiv:2201.03545). A ResNet modernised step by step towards the Swin
//! Transformer's design: a "patchify" stem, stage depths 3:3:9:3, depthwise 7x7 convolutions,
//! inverted bottlenecks, GELU, layer normalisation, separate downsampling layers.
//!
//! ConvNeXt-T (input 224x224; timm's key names; `C = 96`):
//!
//! | stage | key | layers | channels | blocks | output |
//! |---|---|---|---:|---:|---|
//! | stem | `stem.0`, `stem.1` | 4x4 conv, stride 4; LayerNorm | 96 | | 56 x 56 |
//! | 1 | `stages.0.blocks` | ConvNeXt block | 96 | 3 | 56 x 56 |
//! | 2 | `stages.1.downsample`, `stages.1.blocks` | LayerNorm; 2x2 conv, stride 2; blocks | 192 | 3 | 28 x 28 |
//! | 3 | `stages.2.downsample`, `stages.2.blocks` | LayerNorm; 2x2 conv, stride 2; blocks | 384 | 9 | 14 x 14 |
//! | 4 | `stages.3.downsample`, `stages.3.blocks` | LayerNorm; 2x2 conv, stride 2; blocks | 768 | 3 | 7 x 7 |
//! | head | `head.norm`, `head.fc` | global average pool, LayerNorm, dropout, linear | | | classes |
//!
//! A ConvNeXt block (`stages.S.blocks.B`) of `C` channels: a 7x7 depthwise convolution
//! (`conv_dw`, padding 3, with bias), then channels last: LayerNorm (`norm`), a linear layer to
//! `4C` (`mlp.fc1`), GELU, a linear layer back to `C` (`mlp.fc2`), a per-channel layer scale
//! (`gamma`, initialised to 1e-6); back to channels first, the branch dropped per sample in
//! training (stochastic depth, rate `drop_path * i / (blocks - 1)` for block `i`, as timm's
//! `linspace` and torchvision), and the block's input added. Every LayerNorm has `eps = 1e-6`.
//!
//! The variants (the paper's Table 1 / section 3), as data ([`CONVNEXT_T`], [`CONVNEXT_S`],
//! [`CONVNEXT_B`]); parameters with three input channels and 1000 classes, identical in timm and
//! torchvision:
//!
//! | variant | depths | channels | stochastic depth | parameters | MACs at 224 |
//! |---|---|---|---:|---:|---:|
//! | [`ConvNeXtConfig::tiny`] | 3, 3, 9, 3 | 96, 192, 384, 768 | 0.1 | **28,589,128** | 4.46 G |
//! | [`ConvNeXtConfig::small`] | 3, 3, 27, 3 | 96, 192, 384, 768 | 0.4 | 50,223,688 | 8.68 G |
//! | [`ConvNeXtConfig::base`] | 3, 3, 27, 3 | 128, 256, 512, 1024 | 0.5 | 88,591,464 | 15.36 G |
//!
//! (MACs: multiply-accumulates of the convolutions and linear layers for one image, as
//! [`backbone::summarize`] counts them; torchvision quotes 4.46, 8.68 and 15.36 "GFLOPS".
//! The stochastic depth rates are the paper's for ImageNet-1k training, torchvision's defaults;
//! timm's `create_model` defaults to 0.)
//!
//! ## Weights
//!
//! The variables use timm's names (`timm/convnext_tiny.fb_in1k`). torchvision's state dicts
//! (`features.*`, `block.0/2/3/5`, `layer_scale` of shape `[C, 1, 1]`, `classifier.0/2`) are
//! renamed and reshaped on load: the catalogue ([`VARIANTS`], `Variant::load`) detects the
//! layout ([`detect_layout`]) and applies [`torchvision_to_timm`]; [`timm_to_torchvision`] goes
//! the other way.
//!
//! The features entering the head are the pooled and normalised `[N, num_features]` vector (768
//! for ConvNeXt-T); the classifier is `head.fc`.

pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use convnext::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::layers::{
    AdaptiveAvgPool2d, Conv2d, Conv2dConfig, DropPath, Dropout, Flatten, Gelu, Layer, LayerNorm, LayerNorm2d,
    LayerScale, Linear,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use std::collections::HashMap;

/// One stage of a ConvNeXt: its blocks and their channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageConfig {
    /// Number of blocks.
    pub depth: usize,
    /// Channels of every block (the downsampling layer before the stage outputs them).
    pub dim: usize,
}

const fn stage(depth: usize, dim: usize) -> StageConfig {
    StageConfig { depth, dim }
}

/// ConvNeXt-T: depths 3, 3, 9, 3; channels 96, 192, 384, 768.
pub const CONVNEXT_T: [StageConfig; 4] = [stage(3, 96), stage(3, 192), stage(9, 384), stage(3, 768)];
/// ConvNeXt-S: depths 3, 3, 27, 3; channels 96, 192, 384, 768.
pub const CONVNEXT_S: [StageConfig; 4] = [stage(3, 96), stage(3, 192), stage(27, 384), stage(3, 768)];
/// ConvNeXt-B: depths 3, 3, 27, 3; channels 128, 256, 512, 1024.
pub const CONVNEXT_B: [StageConfig; 4] = [stage(3, 128), stage(3, 256), stage(27, 512), stage(3, 1024)];

/// `eps` of every LayerNorm (timm's and torchvision's ConvNeXt).
pub const LAYER_NORM_EPS: f64 = 1e-6;

/// The expansion of a block's MLP (`4C` hidden channels).
pub const MLP_RATIO: usize = 4;

/// A ConvNeXt variant.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNeXtConfig {
    /// The four stages (depth and channels).
    pub stages: [StageConfig; 4],
    /// Stochastic depth: the drop probability of the last block's residual branch in
    /// training, scaled linearly from 0 for the first block (0 switches it off).
    pub drop_path: f64,
    /// Dropout before the classifier in training (timm's `drop_rate`, 0 by default).
    pub dropout: f32,
    /// Initial value of every layer scale `gamma` (1e-6).
    pub layer_scale_init: f64,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl ConvNeXtConfig {
    fn with_stages(stages: [StageConfig; 4], drop_path: f64) -> Self {
        Self {
            stages,
            drop_path,
            dropout: 0.0,
            layer_scale_init: 1e-6,
            in_channels: 3,
            num_classes: 1000,
        }
    }

    /// ConvNeXt-T ([`CONVNEXT_T`]), stochastic depth 0.1.
    pub fn tiny() -> Self {
        Self::with_stages(CONVNEXT_T, 0.1)
    }

    /// ConvNeXt-S ([`CONVNEXT_S`]), stochastic depth 0.4.
    pub fn small() -> Self {
        Self::with_stages(CONVNEXT_S, 0.4)
    }

    /// ConvNeXt-B ([`CONVNEXT_B`]), stochastic depth 0.5.
    pub fn base() -> Self {
        Self::with_stages(CONVNEXT_B, 0.5)
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

    /// Sets the stochastic depth rate.
    pub fn with_drop_path(mut self, drop_path: f64) -> Self {
        self.drop_path = drop_path;
        self
    }

    /// Sets the dropout before the classifier.
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }

    /// The variant's name: `convnext_tiny`, `convnext_small`, `convnext_base`, or `convnext`
    /// for other stages.
    pub fn name(&self) -> &'static str {
        match self.stages {
            s if s == CONVNEXT_T => "convnext_tiny",
            s if s == CONVNEXT_S => "convnext_small",
            s if s == CONVNEXT_B => "convnext_base",
            _ => "convnext",
        }
    }

    /// The width of the features entering the head (the last stage's channels).
    pub fn num_features(&self) -> usize {
        self.stages[3].dim
    }

    /// The total number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.stages.iter().map(|s| s.depth).sum()
    }

    /// The drop probability of block `i` (counted over all stages): timm's
    /// `linspace(0, drop_path, blocks)`, torchvision's `p * i / (blocks - 1)`.
    pub fn drop_path_of(&self, i: usize) -> f64 {
        let total = self.num_blocks();
        if total <= 1 {
            0.0
        } else {
            self.drop_path * i as f64 / (total - 1) as f64
        }
    }

    /// The smallest accepted input side: 32 (the stem divides by 4, each downsampling by 2,
    /// without padding).
    pub fn min_input_size(&self) -> usize {
        32
    }

    fn validate(&self) -> Result<()> {
        let positive = self.stages.iter().all(|s| s.depth > 0 && s.dim > 0);
        if !positive || self.in_channels == 0 || self.num_classes == 0 {
            return Err(Error::config(format!(
                "convnext: depths, channels and classes must be positive: {self:?}"
            )));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(Error::config(format!(
                "convnext: drop_path must be in [0, 1), got {}",
                self.drop_path
            )));
        }
        Ok(())
    }
}

impl Default for ConvNeXtConfig {
    fn default() -> Self {
        Self::tiny()
    }
}

/// timm's and torchvision's initialisation of a fresh ConvNeXt convolution or linear layer:
/// normal with standard deviation 0.02 (`trunc_normal_(std=.02)`, whose bounds at +-2 never
/// cut), zero bias.
fn trunc_normal() -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    }
}

fn conv(config: Conv2dConfig, vb: VarBuilder) -> Result<Conv2d> {
    Conv2d::new(config.init(trunc_normal(), Init::Const(0.0)), vb)
}

fn linear(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::with_init(
        in_features,
        out_features,
        true,
        trunc_normal(),
        Init::Const(0.0),
        vb,
    )
}

/// A ConvNeXt block; see the [crate documentation](crate).
struct Block {
    conv_dw: Conv2d,
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    gamma: LayerScale,
    drop_path: DropPath,
}

impl Block {
    fn new(dim: usize, drop_path: f64, layer_scale_init: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv_dw: conv(
                Conv2dConfig::new(dim, dim, 7).padding(3).groups(dim),
                vb.pp("conv_dw"),
            )?,
            norm: LayerNorm::new(dim, LAYER_NORM_EPS, vb.pp("norm"))?,
            fc1: linear(dim, MLP_RATIO * dim, vb.pp("mlp.fc1"))?,
            fc2: linear(MLP_RATIO * dim, dim, vb.pp("mlp.fc2"))?,
            gamma: LayerScale::new(dim, layer_scale_init, vb)?,
            drop_path: DropPath::new(drop_path)?,
        })
    }
}

impl Layer for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.conv_dw.forward_t(xs, train)?;
        let (n, c, height, width) = h.dims4()?;
        // Channels last, one row per position: LayerNorm and the MLP act on each row.
        let h = h.permute((0, 2, 3, 1))?.reshape((n * height * width, c))?;
        let h = self.norm.forward_t(&h, train)?;
        let h = Gelu.forward_t(&self.fc1.forward_t(&h, train)?, train)?;
        let h = self.fc2.forward_t(&h, train)?;
        let h = self.gamma.forward_t(&h, train)?;
        let h = h.reshape((n, height, width, c))?.permute((0, 3, 1, 2))?;
        let h = self.drop_path.forward_t(&h, train)?;
        Ok((xs + h)?)
    }
}

/// A stage: the downsampling layer (none for the first) and the blocks.
struct Stage {
    downsample: Option<(LayerNorm2d, Conv2d)>,
    blocks: Vec<Block>,
}

impl Layer for Stage {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut xs = match &self.downsample {
            Some((norm, conv)) => conv.forward_t(&norm.forward_t(xs, train)?, train)?,
            None => xs.clone(),
        };
        for block in &self.blocks {
            xs = block.forward_t(&xs, train)?;
        }
        Ok(xs)
    }
}

/// ConvNeXt; see the [crate documentation](crate).
pub struct ConvNeXt {
    config: ConvNeXtConfig,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    stem_conv: Conv2d,
    stem_norm: LayerNorm2d,
    stages: Vec<Stage>,
    pool: AdaptiveAvgPool2d,
    head_norm: LayerNorm2d,
    dropout: Dropout,
    fc: Linear,
}

impl ConvNeXt {
    /// Builds the model with timm's variable names: `stem.0` (4x4 convolution), `stem.1`
    /// (LayerNorm2d), `stages.S.downsample.{0,1}` (LayerNorm2d, 2x2 convolution; S >= 1),
    /// `stages.S.blocks.B.{conv_dw, norm, mlp.fc1, mlp.fc2, gamma}`, `head.norm`, `head.fc`.
    pub fn new(config: &ConvNeXtConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        config.validate()?;
        let first = config.stages[0].dim;
        let stem_conv = conv(
            Conv2dConfig::new(config.in_channels, first, 4).stride(4),
            vb.pp("stem.0"),
        )?;
        let stem_norm = LayerNorm2d::new(first, LAYER_NORM_EPS, vb.pp("stem.1"))?;
        let mut stages = Vec::with_capacity(4);
        let (mut prev, mut index) = (first, 0);
        for (s, stage) in config.stages.iter().enumerate() {
            let vb = vb.pp(format!("stages.{s}"));
            let downsample = if s == 0 {
                None
            } else {
                let down = vb.pp("downsample");
                Some((
                    LayerNorm2d::new(prev, LAYER_NORM_EPS, down.pp("0"))?,
                    conv(Conv2dConfig::new(prev, stage.dim, 2).stride(2), down.pp("1"))?,
                ))
            };
            let mut blocks = Vec::with_capacity(stage.depth);
            for b in 0..stage.depth {
                blocks.push(Block::new(
                    stage.dim,
                    config.drop_path_of(index),
                    config.layer_scale_init,
                    vb.pp(format!("blocks.{b}")),
                )?);
                index += 1;
            }
            stages.push(Stage { downsample, blocks });
            prev = stage.dim;
        }
        let features = config.num_features();
        Ok(Self {
            input_type,
            config: config.clone(),
            stem_conv,
            stem_norm,
            stages,
            pool: AdaptiveAvgPool2d::new((1, 1))?.named("head.global_pool"),
            head_norm: LayerNorm2d::new(features, LAYER_NORM_EPS, vb.pp("head.norm"))?,
            dropout: Dropout::new(config.dropout)?,
            fc: linear(features, config.num_classes, vb.pp("head.fc"))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ConvNeXtConfig {
        &self.config
    }

    fn stem(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let xs = self.stem_conv.forward_t(xs, train)?;
        self.stem_norm.forward_t(&xs, train)
    }
}

impl Backbone for ConvNeXt {
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

    /// The stem and the four stages (timm's `forward_features`; its `norm_pre` is the
    /// identity): `[N, num_features, h, w]`.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut xs = self.stem(xs, train)?;
        for stage in &self.stages {
            xs = stage.forward_t(&xs, train)?;
        }
        Ok(xs)
    }

    /// Global average pool, `head.norm` (LayerNorm over the channels), flatten, dropout (in
    /// training): timm's `NormMlpClassifierHead` without a hidden layer, torchvision's
    /// `avgpool` + `classifier.0/1`.
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.pool.forward_t(features, train)?;
        let xs = self.head_norm.forward_t(&xs, train)?;
        let xs = Flatten::new().forward_t(&xs, train)?;
        self.dropout.forward_t(&xs, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.fc.forward_t(pre_logits, train)
    }

    /// timm's: the output of each stage `stages.S` (ConvNeXt-T: 96, 192, 384, 768 channels at
    /// reductions 4, 8, 16, 32).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.config
            .stages
            .iter()
            .enumerate()
            .map(|(s, stage)| FeatureInfo::new(format!("stages.{s}"), stage.dim, 4 << s))
            .collect()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut xs = self.stem(xs, train)?;
        let mut maps = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            xs = stage.forward_t(&xs, train)?;
            maps.push(xs.clone());
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
        "head.fc"
    }
}

// ---------------------------------------------------------------------------------------------
// Weights layouts.

/// The naming scheme of a ConvNeXt state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsLayout {
    /// timm's `convnext_*` (`stem.0`, `stages.S.blocks.B.conv_dw`, `head.fc`): this crate's
    /// own names.
    Timm,
    /// torchvision's `convnext_*` (`features.0.0`, `features.{2S+1}.B.block.{0,2,3,5}`,
    /// `features.{2S+1}.B.layer_scale`, `classifier.{0,2}`).
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

/// A block's layers: timm's name, torchvision's position in `block`.
const BLOCK_LAYERS: [(&str, &str); 4] = [
    ("conv_dw", "block.0"),
    ("norm", "block.2"),
    ("mlp.fc1", "block.3"),
    ("mlp.fc2", "block.5"),
];

/// The timm name of torchvision key `key` (`features.3.1.block.3.weight` ->
/// `stages.1.blocks.1.mlp.fc1.weight`), if it is one of a ConvNeXt's.
pub fn torchvision_key_to_timm(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        ["classifier", "0", p] => Some(format!("head.norm.{p}")),
        ["classifier", "2", p] => Some(format!("head.fc.{p}")),
        ["features", "0", i @ ("0" | "1"), p] => Some(format!("stem.{i}.{p}")),
        ["features", f, rest @ ..] => {
            let f: usize = f.parse().ok()?;
            if f == 0 || f > 7 {
                return None;
            }
            let s = f / 2;
            match rest {
                [i @ ("0" | "1"), p] if f.is_multiple_of(2) => Some(format!("stages.{s}.downsample.{i}.{p}")),
                [b, "layer_scale"] if f % 2 == 1 => {
                    let b: usize = b.parse().ok()?;
                    Some(format!("stages.{s}.blocks.{b}.gamma"))
                }
                [b, "block", l, p] if f % 2 == 1 => {
                    let b: usize = b.parse().ok()?;
                    let (timm, _) = BLOCK_LAYERS
                        .iter()
                        .find(|(_, tv)| tv.strip_prefix("block.") == Some(l))?;
                    Some(format!("stages.{s}.blocks.{b}.{timm}.{p}"))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The torchvision name of a tensor this crate (timm) calls `key`
/// (`stages.2.blocks.0.gamma` -> `features.5.0.layer_scale`), if it has one: errors on a
/// torchvision file name the tensor as the file does.
pub fn torchvision_name(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        ["head", "norm", p] => Some(format!("classifier.0.{p}")),
        ["head", "fc", p] => Some(format!("classifier.2.{p}")),
        ["stem", i @ ("0" | "1"), p] => Some(format!("features.0.{i}.{p}")),
        ["stages", s, rest @ ..] => {
            let s: usize = s.parse().ok()?;
            if s > 3 {
                return None;
            }
            match rest {
                ["downsample", i @ ("0" | "1"), p] if s > 0 => Some(format!("features.{}.{i}.{p}", 2 * s)),
                ["blocks", b, "gamma"] => Some(format!("features.{}.{b}.layer_scale", 2 * s + 1)),
                ["blocks", b, layer @ .., p] => {
                    let layer = layer.join(".");
                    let (_, tv) = BLOCK_LAYERS.iter().find(|(timm, _)| *timm == layer)?;
                    Some(format!("features.{}.{b}.{tv}.{p}", 2 * s + 1))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Renames a torchvision ConvNeXt state dict to timm's names (this crate's) and reshapes each
/// `layer_scale` `[C, 1, 1]` to timm's `gamma` `[C]`. Keys that are not a ConvNeXt's are kept as
/// they are (strict loading then reports them).
pub fn torchvision_to_timm(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(k, t)| match torchvision_key_to_timm(&k) {
            Some(name) if name.ends_with(".gamma") => {
                let flat = t.flatten_all().map_err(|e| {
                    Error::config(format!("convnext: tensor `{k}` of shape {:?}: {e}", t.dims()))
                })?;
                Ok((name, flat))
            }
            Some(name) => Ok((name, t)),
            None => Ok((k, t)),
        })
        .collect()
}

/// Renames a timm ConvNeXt state dict (this crate's names) to torchvision's, the inverse of
/// [`torchvision_to_timm`] (each `gamma` `[C]` becomes `layer_scale` `[C, 1, 1]`). Keys that are
/// not a ConvNeXt's are kept.
pub fn timm_to_torchvision(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(k, t)| match torchvision_name(&k) {
            Some(name) if name.ends_with(".layer_scale") => {
                let c = t.elem_count();
                Ok((name, t.reshape((c, 1, 1))?))
            }
            Some(name) => Ok((name, t)),
            None => Ok((k, t)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_maps_are_inverse() {
        for (timm, tv) in [
            ("stem.0.weight", "features.0.0.weight"),
            ("stem.1.bias", "features.0.1.bias"),
            ("stages.0.blocks.2.conv_dw.weight", "features.1.2.block.0.weight"),
            ("stages.1.downsample.0.weight", "features.2.0.weight"),
            ("stages.1.downsample.1.bias", "features.2.1.bias"),
            ("stages.2.blocks.26.norm.weight", "features.5.26.block.2.weight"),
            ("stages.3.blocks.0.mlp.fc1.bias", "features.7.0.block.3.bias"),
            ("stages.3.blocks.2.mlp.fc2.weight", "features.7.2.block.5.weight"),
            ("stages.2.blocks.0.gamma", "features.5.0.layer_scale"),
            ("head.norm.weight", "classifier.0.weight"),
            ("head.fc.bias", "classifier.2.bias"),
        ] {
            assert_eq!(torchvision_name(timm).as_deref(), Some(tv), "{timm}");
            assert_eq!(torchvision_key_to_timm(tv).as_deref(), Some(timm), "{tv}");
        }
        for tv in [
            "features.8.0.weight",
            "features.1.0.block.1.weight",
            "classifier.1.weight",
            "features.2.2.weight",
        ] {
            assert_eq!(torchvision_key_to_timm(tv), None, "{tv}");
        }
        for timm in [
            "stages.0.downsample.0.weight",
            "stages.4.blocks.0.gamma",
            "head.pool.weight",
        ] {
            assert_eq!(torchvision_name(timm), None, "{timm}");
        }
    }

    #[test]
    fn drop_path_schedule_is_timms_linspace() {
        let c = ConvNeXtConfig::tiny();
        assert_eq!(c.num_blocks(), 18);
        assert_eq!(c.drop_path_of(0), 0.0);
        assert!((c.drop_path_of(17) - 0.1).abs() < 1e-12);
        assert!((c.drop_path_of(9) - 0.1 * 9.0 / 17.0).abs() < 1e-12);
        assert_eq!(ConvNeXtConfig::small().num_blocks(), 36);
        assert_eq!(ConvNeXtConfig::base().name(), "convnext_base");
        assert!(ConvNeXtConfig::tiny().with_drop_path(1.0).validate().is_err());
    }
}
