//! # ResNet, ResNeXt and Wide ResNet
//!
//! * K. He, X. Zhang, S. Ren, J. Sun, *Deep Residual Learning for Image Recognition*,
//!   CVPR 2016 (ResNet-18/34 with basic blocks, ResNet-50/101/152 with bottlenecks);
//! * S. Xie, R. Girshick, P. Dollár, Z. Tu, K. He, *Aggregated Residual Transformations for
//!   Deep Neural Networks*, CVPR 2017 (ResNeXt: the bottleneck's 3x3 convolution split into
//!   `groups` groups of `width_per_group` channels);
//! * S. Zagoruyko, N. Komodakis, *Wide Residual Networks*, BMVC 2016 (here torchvision's
//!   bottleneck variant: the inner 3x3 convolutions twice as wide);
//! * J. Hu, L. Shen, G. Sun, *Squeeze-and-Excitation Networks*, CVPR 2018 (SE-ResNet,
//!   SE-ResNeXt: a squeeze-and-excitation block on every residual branch, timm's layout).
//!
//! The model is torchvision's `ResNet` (v1.5: a bottleneck's stride is on its 3x3
//! convolution, not on the first 1x1), with its state-dict names, which timm's hub files for
//! these models share (`timm/resnet50.a1_in1k`, ...):
//! `conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2,3}`, `.bn{1,2,3}`, `.downsample.{0,1}`, `fc`.
//!
//! | variant                                    | block      | blocks per stage | groups x width | parameters  | MACs (224x224) |
//! |--------------------------------------------|------------|------------------|----------------|------------:|---------------:|
//! | [`resnet18`](ResNetConfig::resnet18)               | basic      | 2, 2, 2, 2       | 1 x 64         |  11,689,512 |  1.81 G |
//! | [`resnet34`](ResNetConfig::resnet34)               | basic      | 3, 4, 6, 3       | 1 x 64         |  21,797,672 |  3.66 G |
//! | [`resnet50`](ResNetConfig::resnet50)               | bottleneck | 3, 4, 6, 3       | 1 x 64         |  25,557,032 |  4.09 G |
//! | [`resnet101`](ResNetConfig::resnet101)             | bottleneck | 3, 4, 23, 3      | 1 x 64         |  44,549,160 |  7.80 G |
//! | [`resnet152`](ResNetConfig::resnet152)             | bottleneck | 3, 8, 36, 3      | 1 x 64         |  60,192,808 | 11.51 G |
//! | [`resnext50_32x4d`](ResNetConfig::resnext50_32x4d)   | bottleneck | 3, 4, 6, 3       | 32 x 4         |  25,028,904 |  4.23 G |
//! | [`resnext101_32x8d`](ResNetConfig::resnext101_32x8d) | bottleneck | 3, 4, 23, 3      | 32 x 8         |  88,791,336 | 16.41 G |
//! | [`resnext101_64x4d`](ResNetConfig::resnext101_64x4d) | bottleneck | 3, 4, 23, 3      | 64 x 4         |  83,455,272 | 15.46 G |
//! | [`wide_resnet50_2`](ResNetConfig::wide_resnet50_2)   | bottleneck | 3, 4, 6, 3       | 1 x 128        |  68,883,240 | 11.40 G |
//! | [`wide_resnet101_2`](ResNetConfig::wide_resnet101_2) | bottleneck | 3, 4, 23, 3      | 1 x 128        | 126,886,696 | 22.75 G |
//! | [`seresnet50`](ResNetConfig::seresnet50)             | bottleneck + SE | 3, 4, 6, 3  | 1 x 64         |  28,088,024 |  4.09 G |
//! | [`seresnext50_32x4d`](ResNetConfig::seresnext50_32x4d) | bottleneck + SE | 3, 4, 6, 3 | 32 x 4        |  27,559,896 |  4.23 G |
//!
//! Parameters with 3 input channels and 1000 classes (torchvision's counts, timm's for the SE
//! variants, to the unit);
//! MACs of one 3x224x224 image as [`backbone::summarize`] counts them (convolutions and `fc`),
//! which are torchvision's published GFLOPS to the two decimals.
//!
//! ## Layers (ResNet-50, input 3x224x224)
//!
//! | stage    | keys                                  | blocks | block (bottleneck: 1x1, 3x3, 1x1)        | output        |
//! |----------|---------------------------------------|-------:|------------------------------------------|---------------|
//! | stem     | `conv1` 7x7/2 pad 3, `bn1`, max pool 3x3/2 pad 1 | - | -                              | 64 x 56 x 56  |
//! | `layer1` | `layer1.{0..2}`                       |      3 | 64, 64, 256                              | 256 x 56 x 56 |
//! | `layer2` | `layer2.{0..3}`                       |      4 | 128, 128 (stride 2), 512                 | 512 x 28 x 28 |
//! | `layer3` | `layer3.{0..5}`                       |      6 | 256, 256 (stride 2), 1024                | 1024 x 14 x 14|
//! | `layer4` | `layer4.{0..2}`                       |      3 | 512, 512 (stride 2), 2048                | 2048 x 7 x 7  |
//! | head     | global average pool, `fc`             |      - | 2048 -> classes                          | classes       |
//!
//! A basic block is two 3x3 convolutions of `planes` channels (64, 128, 256, 512; the first
//! with the stage's stride). A bottleneck of `planes` channels has inner width
//! `planes * width_per_group / 64 * groups` and `4 * planes` outputs. The first block of a
//! stage whose stride or width changes has a projection shortcut `downsample` (1x1 conv with
//! the stride, batch norm). Every convolution has no bias and is followed by batch norm; a
//! block computes `relu(residual(x) + shortcut(x))`.
//!
//! ## Squeeze-and-excitation
//!
//! With [`Attention::SqueezeExcite`] (timm's `block_args=dict(attn_layer='se')`), the residual
//! branch ends in timm's `SEModule` after its last batch norm, under `se` (`layer1.0.se.fc1`,
//! `.fc2`, both with a bias): global average, 1x1 convolution down to
//! `make_divisible(C / 16, 8)` channels (16, 32, 64, 128 for the bottlenecks' 256 ... 2048),
//! ReLU, 1x1 convolution back to `C`, sigmoid, and the branch scaled channel-wise by it. The
//! names are otherwise the ones above, which timm's ResNet shares (`timm/seresnet50.a1_in1k`).
//!
//! ## Input
//!
//! `[N, C, H, W]` with any `H, W >= 1` (torchvision's `min_size`): the stride-2 layers
//! (conv 7x7 pad 3, max pool 3x3 pad 1, 3x3 pad 1 and 1x1 convolutions) map any size >= 1
//! to a size >= 1. ImageNet models are trained at 224x224 (features 7x7); below 32x32 the
//! last stages run on 1x1 maps, and training (batch statistics) then needs batches of more
//! than one image. [`ResNetConfig::with_cifar_stem`] replaces the stem by a 3x3 stride-1
//! convolution without max pool, for 32x32 images (features 4x4).
//!
//! ## Features and head
//!
//! As timm: [`Backbone::forward_features`] is the `layer4` output `[N, 512 or 2048, h, w]`;
//! the head is global average pooling, flatten and `fc`.
//!
//! ## Initialisation
//!
//! torchvision's: convolutions `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, batch
//! norm weight 1 and bias 0, `fc` PyTorch's default `Linear` initialisation. With
//! [`ResNetConfig::with_zero_init_residual`] the last batch norm of every block starts with a
//! zero weight, so every block starts as `relu(shortcut(x))` (Goyal et al. 2017).

mod blocked;
pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use resnet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::layers::{
    Activation, AdaptiveAvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Flatten,
    Layer, Linear, MaxPool2d, PoolConfig, SqueezeExcite, SqueezeExciteConfig,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};

/// The residual block of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18/34); expansion 1.
    Basic,
    /// 1x1, 3x3 (grouped for ResNeXt, strided), 1x1 convolutions (ResNet-50 and deeper,
    /// ResNeXt, Wide ResNet); expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels of a block over its `planes`: 1 for basic blocks, 4 for bottlenecks.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }

    /// Convolutions on the residual branch (2 or 3).
    fn convs(self) -> usize {
        match self {
            BlockKind::Basic => 2,
            BlockKind::Bottleneck => 3,
        }
    }
}

/// The attention on a block's residual branch, after its last batch norm (timm's
/// `attn_layer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// None (ResNet, ResNeXt, Wide ResNet).
    None,
    /// timm's `SEModule` under `se` (SE-ResNet, SE-ResNeXt): squeeze to
    /// [`se_width`]`(C)` channels, ReLU, sigmoid gate.
    SqueezeExcite,
}

/// The squeeze width of timm's `SEModule` over `channels`: `make_divisible(channels / 16, 8,
/// round_limit=0)`, the multiple of 8 nearest `channels / 16` (halves up), at least 8.
pub fn se_width(channels: usize) -> usize {
    // int(v + 4) // 8 * 8 with v = channels / 16, in integers: (channels + 64) / 128 * 8.
    ((channels + 64) / 128 * 8).max(8)
}

/// The `planes` of the four stages.
pub const STAGE_PLANES: [usize; 4] = [64, 128, 256, 512];

/// A ResNet / ResNeXt / Wide ResNet variant: torchvision's `ResNet` arguments, plus the
/// input channels and the CIFAR stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// The residual block.
    pub block: BlockKind,
    /// Blocks in each of the four stages (each at least 1).
    pub layers: [usize; 4],
    /// Groups of the bottleneck's 3x3 convolution (ResNeXt's cardinality; 1 for basic blocks).
    pub groups: usize,
    /// Channels per group of the bottleneck's 3x3 convolution at the first stage (64: ResNet,
    /// 128: Wide ResNet-2, ResNeXt's `4d` / `8d`; 64 for basic blocks).
    pub width_per_group: usize,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Start the last batch norm of every block with a zero weight (fresh models only).
    pub zero_init_residual: bool,
    /// `conv1` 3x3 stride 1 padding 1 and no max pool (for 32x32 inputs) instead of the
    /// ImageNet stem (7x7 stride 2 padding 3, 3x3 stride 2 max pool).
    pub cifar_stem: bool,
    /// The attention on every residual branch ([`Attention::None`] but for SE-ResNet(X)t).
    pub attention: Attention,
}

impl ResNetConfig {
    fn base(block: BlockKind, layers: [usize; 4], groups: usize, width_per_group: usize) -> Self {
        Self {
            block,
            layers,
            groups,
            width_per_group,
            in_channels: 3,
            num_classes: 1000,
            zero_init_residual: false,
            cifar_stem: false,
            attention: Attention::None,
        }
    }

    /// ResNet-18: basic blocks, 2-2-2-2.
    pub fn resnet18() -> Self {
        Self::base(BlockKind::Basic, [2, 2, 2, 2], 1, 64)
    }

    /// ResNet-34: basic blocks, 3-4-6-3.
    pub fn resnet34() -> Self {
        Self::base(BlockKind::Basic, [3, 4, 6, 3], 1, 64)
    }

    /// ResNet-50: bottlenecks, 3-4-6-3.
    pub fn resnet50() -> Self {
        Self::base(BlockKind::Bottleneck, [3, 4, 6, 3], 1, 64)
    }

    /// ResNet-101: bottlenecks, 3-4-23-3.
    pub fn resnet101() -> Self {
        Self::base(BlockKind::Bottleneck, [3, 4, 23, 3], 1, 64)
    }

    /// ResNet-152: bottlenecks, 3-8-36-3.
    pub fn resnet152() -> Self {
        Self::base(BlockKind::Bottleneck, [3, 8, 36, 3], 1, 64)
    }

    /// ResNeXt-50 32x4d: ResNet-50 with 32 groups of 4 channels (at the first stage).
    pub fn resnext50_32x4d() -> Self {
        Self::base(BlockKind::Bottleneck, [3, 4, 6, 3], 32, 4)
    }

    /// ResNeXt-101 32x8d: ResNet-101 with 32 groups of 8 channels.
    pub fn resnext101_32x8d() -> Self {
        Self::base(BlockKind::Bottleneck, [3, 4, 23, 3], 32, 8)
    }

    /// ResNeXt-101 64x4d: ResNet-101 with 64 groups of 4 channels.
    pub fn resnext101_64x4d() -> Self {
        Self::base(BlockKind::Bottleneck, [3, 4, 23, 3], 64, 4)
    }

    /// Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide inside.
    pub fn wide_resnet50_2() -> Self {
        Self::base(BlockKind::Bottleneck, [3, 4, 6, 3], 1, 128)
    }

    /// Wide ResNet-101-2: ResNet-101 with bottlenecks twice as wide inside.
    pub fn wide_resnet101_2() -> Self {
        Self::base(BlockKind::Bottleneck, [3, 4, 23, 3], 1, 128)
    }

    /// SE-ResNet-50 (timm's `seresnet50`): ResNet-50 with squeeze-and-excitation.
    pub fn seresnet50() -> Self {
        Self::resnet50().with_attention(Attention::SqueezeExcite)
    }

    /// SE-ResNeXt-50 32x4d (timm's `seresnext50_32x4d`): ResNeXt-50 32x4d with
    /// squeeze-and-excitation.
    pub fn seresnext50_32x4d() -> Self {
        Self::resnext50_32x4d().with_attention(Attention::SqueezeExcite)
    }

    /// The twelve variants of the [crate documentation](crate), in its order.
    pub fn variants() -> [Self; 12] {
        [
            Self::resnet18(),
            Self::resnet34(),
            Self::resnet50(),
            Self::resnet101(),
            Self::resnet152(),
            Self::resnext50_32x4d(),
            Self::resnext101_32x8d(),
            Self::resnext101_64x4d(),
            Self::wide_resnet50_2(),
            Self::wide_resnet101_2(),
            Self::seresnet50(),
            Self::seresnext50_32x4d(),
        ]
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

    /// Zero-initialises the last batch norm weight of every block.
    pub fn with_zero_init_residual(mut self, zero_init_residual: bool) -> Self {
        self.zero_init_residual = zero_init_residual;
        self
    }

    /// Sets the attention on every residual branch.
    pub fn with_attention(mut self, attention: Attention) -> Self {
        self.attention = attention;
        self
    }

    /// Selects the CIFAR stem (3x3 stride-1 `conv1`, no max pool).
    pub fn with_cifar_stem(mut self, cifar_stem: bool) -> Self {
        self.cifar_stem = cifar_stem;
        self
    }

    /// The number of weighted layers: `2 * blocks + 2` (basic) or `3 * blocks + 2`
    /// (bottleneck), e.g. 50.
    pub fn depth(&self) -> usize {
        self.block.convs() * self.layers.iter().sum::<usize>() + 2
    }

    /// The variant's name: `resnet{depth}`, `resnext{depth}_{groups}x{width}d`,
    /// `wide_resnet{depth}_{width / 64}`, prefixed `se` with squeeze-and-excitation, with
    /// `_cifar` appended for the CIFAR stem.
    pub fn name(&self) -> String {
        let depth = self.depth();
        let base = if self.groups > 1 {
            format!("resnext{depth}_{}x{}d", self.groups, self.width_per_group)
        } else if self.width_per_group == 64 {
            format!("resnet{depth}")
        } else if self.width_per_group.is_multiple_of(64) {
            format!("wide_resnet{depth}_{}", self.width_per_group / 64)
        } else {
            format!("resnet{depth}_w{}", self.width_per_group)
        };
        let base = match self.attention {
            Attention::None => base,
            Attention::SqueezeExcite => format!("se{base}"),
        };
        if self.cifar_stem {
            format!("{base}_cifar")
        } else {
            base
        }
    }

    /// The width of the features: `512 * expansion` (512 or 2048).
    pub fn num_features(&self) -> usize {
        STAGE_PLANES[3] * self.block.expansion()
    }

    /// The inner width of a bottleneck of `planes` (its 3x3 convolution's channels), or
    /// `planes` for a basic block.
    pub fn inner_width(&self, planes: usize) -> usize {
        match self.block {
            BlockKind::Basic => planes,
            BlockKind::Bottleneck => planes * self.width_per_group / 64 * self.groups,
        }
    }

    /// Checks that the configuration describes a model (the rules of torchvision, plus
    /// positive sizes).
    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.num_classes == 0 {
            return Err(Error::config(format!(
                "resnet: in_channels ({}) and num_classes ({}) must be positive",
                self.in_channels, self.num_classes
            )));
        }
        if self.layers.contains(&0) {
            return Err(Error::config(format!(
                "resnet: every stage needs at least one block, got {:?}",
                self.layers
            )));
        }
        if self.groups == 0 || self.width_per_group == 0 {
            return Err(Error::config(format!(
                "resnet: groups ({}) and width_per_group ({}) must be positive",
                self.groups, self.width_per_group
            )));
        }
        if self.block == BlockKind::Basic && (self.groups != 1 || self.width_per_group != 64) {
            return Err(Error::config(format!(
                "resnet: basic blocks only support groups = 1 and width_per_group = 64, got {} and {}",
                self.groups, self.width_per_group
            )));
        }
        Ok(())
    }

    /// The number of trainable parameters (weights and biases, not the batch-norm running
    /// statistics), computed from the configuration without building the model.
    pub fn num_params(&self) -> usize {
        let bn = |c: usize| 2 * c;
        let k = if self.cifar_stem { 3 } else { 7 };
        let mut total = self.in_channels * 64 * k * k + bn(64);
        let mut inplanes = 64;
        for (stage, (&planes, &blocks)) in STAGE_PLANES.iter().zip(&self.layers).enumerate() {
            let out = planes * self.block.expansion();
            for i in 0..blocks {
                total += match self.block {
                    BlockKind::Basic => inplanes * planes * 9 + bn(planes) + planes * planes * 9 + bn(planes),
                    BlockKind::Bottleneck => {
                        let width = self.inner_width(planes);
                        inplanes * width
                            + bn(width)
                            + width * (width / self.groups) * 9
                            + bn(width)
                            + width * out
                            + bn(out)
                    }
                };
                if i == 0 && (stage > 0 || inplanes != out) {
                    total += inplanes * out + bn(out);
                }
                if self.attention == Attention::SqueezeExcite {
                    let rd = se_width(out);
                    total += out * rd + rd + rd * out + out;
                }
                inplanes = out;
            }
        }
        total + self.num_features() * self.num_classes + self.num_classes
    }
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self::resnet50()
    }
}

/// torchvision's convolution initialisation: `kaiming_normal_(mode="fan_out",
/// nonlinearity="relu")`, no bias.
fn conv(in_c: usize, out_c: usize, kernel: usize, stride: usize, groups: usize) -> Conv2dConfig {
    Conv2dConfig::new(in_c, out_c, kernel)
        .stride(stride)
        .padding(kernel / 2)
        .groups(groups)
        .no_bias()
        .init(kaiming(), Init::Const(0.0))
}

/// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
fn kaiming() -> Init {
    Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanOut,
        non_linearity: NonLinearity::ReLU,
    }
}

/// A batch norm of `c` channels; with `zero_weight`, a fresh weight starts at 0 instead of 1.
fn batch_norm(c: usize, zero_weight: bool, vb: VarBuilder) -> Result<BatchNorm2d> {
    if zero_weight {
        // Created first with zeros, the weight is then found by the batch norm's constructor
        // (a fresh variable map returns the existing variable; weights files ignore the hint).
        vb.get_with_hints(c, "weight", Init::Const(0.0))?;
    }
    BatchNorm2d::new(c, BatchNormConfig::default(), vb)
}

/// One residual block (basic or bottleneck): `relu(residual(x) + shortcut(x))`, where the
/// residual branch is `conv1`/`bn1`, ReLU, `conv2`/`bn2` (, ReLU, `conv3`/`bn3`) and the
/// shortcut is the identity or `downsample.0` (1x1 conv) / `downsample.1` (batch norm).
///
/// Each convolution and its batch norm (and the ReLU that follows inside the branch) is a
/// [`ConvBlock`]: folded into one pass in eval mode when no gradient is needed.
#[derive(Debug, Clone)]
pub struct Block {
    branch: Vec<ConvBlock>,
    /// Squeeze-and-excitation at the end of the branch (`se`).
    se: Option<SqueezeExcite>,
    downsample: Option<ConvBlock>,
    kind: BlockKind,
    name: String,
}

impl Block {
    /// Builds a block of `planes` taking `inplanes` channels (variables under `vb`'s prefix,
    /// e.g. `layer2.0`).
    pub fn new(
        config: &ResNetConfig,
        inplanes: usize,
        planes: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out = planes * config.block.expansion();
        let width = config.inner_width(planes);
        // (in, out, kernel, stride, groups) of each convolution of the residual branch.
        let convs = match config.block {
            BlockKind::Basic => vec![(inplanes, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
            BlockKind::Bottleneck => vec![
                (inplanes, width, 1, 1, 1),
                (width, width, 3, stride, config.groups),
                (width, out, 1, 1, 1),
            ],
        };
        let last = convs.len();
        let branch = convs
            .into_iter()
            .enumerate()
            .map(|(i, (c_in, c_out, k, s, g))| {
                let n = i + 1;
                Ok(ConvBlock::new(
                    Conv2d::new(conv(c_in, c_out, k, s, g), vb.pp(format!("conv{n}")))?,
                    Some(batch_norm(
                        c_out,
                        config.zero_init_residual && n == last,
                        vb.pp(format!("bn{n}")),
                    )?),
                    // ReLU between the convolutions, not after the last (it follows the sum).
                    (n < last).then_some(Activation::Relu),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let se = match config.attention {
            Attention::None => None,
            Attention::SqueezeExcite => {
                let mut se = SqueezeExciteConfig::new(out, se_width(out));
                // timm's init_weights: every Conv2d kaiming_normal_(fan_out, relu), biases
                // PyTorch's default.
                se.weight_init = Some(kaiming());
                Some(SqueezeExcite::new(se, vb.pp("se"))?)
            }
        };
        let downsample = if stride != 1 || inplanes != out {
            let vb = vb.pp("downsample");
            Some(ConvBlock::new(
                Conv2d::new(conv(inplanes, out, 1, stride, 1), vb.pp("0"))?,
                Some(batch_norm(out, false, vb.pp("1"))?),
                None,
            ))
        } else {
            None
        };
        Ok(Self {
            branch,
            se,
            downsample,
            kind: config.block,
            name: vb.prefix(),
        })
    }

    /// The block kind.
    pub fn kind(&self) -> BlockKind {
        self.kind
    }

    /// The block's variable path (`layer2.0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the shortcut is a projection (`downsample`) rather than the identity.
    pub fn has_downsample(&self) -> bool {
        self.downsample.is_some()
    }

    /// The last batch norm of the residual branch (`bn2` or `bn3`).
    pub fn last_bn(&self) -> Option<&BatchNorm2d> {
        self.branch.last().and_then(ConvBlock::norm)
    }

    /// The shortcut: `x`, or `downsample(x)`.
    pub fn shortcut(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match &self.downsample {
            Some(ds) => ds.forward_t(xs, train),
            None => Ok(xs.clone()),
        }
    }

    /// The residual branch (with its squeeze-and-excitation), before the addition.
    pub fn residual(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut out = xs.clone();
        for cb in &self.branch {
            out = cb.forward_t(&out, train)?;
        }
        match &self.se {
            Some(se) => se.forward_t(&out, train),
            None => Ok(out),
        }
    }
}

impl Layer for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let shortcut = self.shortcut(xs, train)?;
        match (self.branch.split_last(), &self.se) {
            // The last batch norm, the addition and the ReLU: one op (the sum is not kept
            // alive for the backward pass), in eval mode inside the last convolution's pass.
            (Some((last, rest)), None) => {
                let mut out = xs.clone();
                for cb in rest {
                    out = cb.forward_t(&out, train)?;
                }
                Ok(last.forward_add_relu(&out, &shortcut, train)?)
            }
            _ => {
                let residual = self.residual(xs, train)?;
                Ok(backbone::ops::add_relu(&residual, &shortcut)?)
            }
        }
    }
}

/// A ResNet, ResNeXt or Wide ResNet; see the [crate documentation](crate).
pub struct ResNet {
    config: ResNetConfig,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    name: String,
    /// `conv1`, `bn1` and ReLU.
    stem: ConvBlock,
    maxpool: Option<MaxPool2d>,
    stages: Vec<Vec<Block>>,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl ResNet {
    /// Builds the model; variables named as torchvision's state dict (`conv1.weight`,
    /// `layer1.0.bn1.running_mean`, `layer2.0.downsample.0.weight`, `fc.bias`, ...). Fails
    /// with [`Error::Config`] on an invalid configuration (see [`ResNetConfig::validate`]).
    pub fn new(config: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        config.validate()?;
        let (kernel, stride) = if config.cifar_stem { (3, 1) } else { (7, 2) };
        let conv1 = Conv2d::new(conv(config.in_channels, 64, kernel, stride, 1), vb.pp("conv1"))?;
        let bn1 = batch_norm(64, false, vb.pp("bn1"))?;
        let stem = ConvBlock::new(conv1, Some(bn1), Some(Activation::Relu));
        let maxpool = if config.cifar_stem {
            None
        } else {
            Some(MaxPool2d::new(PoolConfig::new(3).stride(2).padding(1))?.named("maxpool"))
        };
        let mut inplanes = 64;
        let mut stages = Vec::with_capacity(4);
        for (s, (&planes, &blocks)) in STAGE_PLANES.iter().zip(&config.layers).enumerate() {
            let vb = vb.pp(format!("layer{}", s + 1));
            let mut stage = Vec::with_capacity(blocks);
            for i in 0..blocks {
                let stride = if s > 0 && i == 0 { 2 } else { 1 };
                stage.push(Block::new(config, inplanes, planes, stride, vb.pp(i))?);
                inplanes = planes * config.block.expansion();
            }
            stages.push(stage);
        }
        let features = config.num_features();
        let fc = Linear::new(features, config.num_classes, vb.pp("fc"))?;
        Ok(Self {
            input_type,
            config: *config,
            name: config.name(),
            stem,
            maxpool,
            stages,
            avgpool: AdaptiveAvgPool2d::new((1, 1))?.named("avgpool"),
            fc,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// The blocks of the four stages (`layer1` ... `layer4`).
    pub fn stages(&self) -> &[Vec<Block>] {
        &self.stages
    }

    /// The stem: `conv1`, `bn1`, ReLU and (ImageNet stem) the max pool; checks the input.
    pub fn forward_stem(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(&self.name, &self.input_spec(), &self.input_type, xs)?;
        let xs = self.stem.forward_t(xs, train)?;
        match &self.maxpool {
            Some(pool) => pool.forward_t(&xs, train),
            None => Ok(xs),
        }
    }
}

impl Backbone for ResNet {
    fn name(&self) -> &str {
        &self.name
    }

    fn input_spec(&self) -> InputSpec {
        let default = if self.config.cifar_stem { 32 } else { 224 };
        InputSpec {
            channels: self.config.in_channels,
            min_size: (1, 1),
            fixed_size: None,
            default_size: (default, default),
        }
    }

    /// The `layer4` output `[N, num_features, h, w]`.
    /// `layer4`'s output, `[N, num_features, h, w]`.
    ///
    /// In eval mode inside `backbone::with_frozen_weights`, on the blocked layout where
    /// [`backbone::blocked::enabled`] and every layer has a blocked kernel (not SE-ResNet or
    /// ResNeXt): the same values within rounding.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !train && backbone::blocked::enabled() {
            check_input(&self.name, &self.input_spec(), &self.input_type, xs)?;
            let plan =
                backbone::prepared_model(self.stem.conv().weight(), || blocked::BlockedResNet::new(self))?;
            if let Some(Some(plan)) = plan.as_deref() {
                return plan.forward(xs);
            }
        }
        let mut xs = self.forward_stem(xs, train)?;
        for block in self.stages.iter().flatten() {
            xs = block.forward_t(&xs, train)?;
        }
        Ok(xs)
    }

    /// Global average pool and flatten.
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.avgpool.forward_t(features, train)?;
        Flatten::new().forward_t(&xs, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.fc.forward_t(pre_logits, train)
    }

    /// timm's: `act1` (the stem's ReLU, before the max pool) and `layer1` ... `layer4`.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        let stem = if self.config.cifar_stem { 1 } else { 2 };
        let pool = if self.config.cifar_stem { 1 } else { 2 };
        let expansion = self.config.block.expansion();
        let mut info = vec![FeatureInfo::new("act1", 64, stem)];
        for (s, &planes) in STAGE_PLANES.iter().enumerate() {
            let reduction = stem * pool * (1 << s);
            info.push(FeatureInfo::new(
                format!("layer{}", s + 1),
                planes * expansion,
                reduction,
            ));
        }
        info
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(&self.name, &self.input_spec(), &self.input_type, xs)?;
        let act1 = self.stem.forward_t(xs, train)?;
        let mut xs = match &self.maxpool {
            Some(pool) => pool.forward_t(&act1, train)?,
            None => act1.clone(),
        };
        let mut maps = vec![act1];
        for stage in &self.stages {
            for block in stage {
                xs = block.forward_t(&xs, train)?;
            }
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
        "fc"
    }
}
