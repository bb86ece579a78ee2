//! MobileNetV3 (A. Howard, M. Sandler, G. Chu, L.-C. Chen, B. Chen, M. Tan, W. Wang, Y. Zhu,
//! R. Pang, V. Vasudevan, Q. V. Le, H. Adam, *Searching for MobileNetV3*, ICCV 2019,
//! arXiv:1905.02244): MobileNetV2's inverted residuals with 3x3 or 5x5 depthwise convolutions,
//! squeeze-and-excitation in some blocks (hard-sigmoid gate, squeeze width
//! `make_divisible(expanded / 4, 8)`), hard-swish in the later blocks, and a head that pools
//! before a 1x1 convolution (with bias) to 1280 (large) or 1024 (small) features.
//!
//! The paper's Tables 1 (large) and 2 (small) as data: [`MOBILENET_V3_LARGE`],
//! [`MOBILENET_V3_SMALL`], one [`Bneck`] per row, grouped into timm's stages (`blocks.S.B`);
//! the last stage is a 1x1 convolution, batch norm and hard-swish (`blocks.S.0.{conv, bn1}`).
//!
//! Batch norm: timm's models use PyTorch's defaults (`eps = 1e-5, momentum = 0.1`),
//! torchvision's `eps = 1e-3, momentum = 0.01`; the configuration carries which
//! ([`MobileNetV3Config::torchvision`]), so each library's outputs and running statistics are
//! reproduced exactly.

use backbone::layers::{
    Activation, AdaptiveAvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Dropout,
    Flatten, Layer, Linear, SqueezeExcite, SqueezeExciteConfig,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};

/// One bottleneck of MobileNetV3 (a row of the paper's Tables 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bneck {
    /// Kernel of the depthwise convolution (3 or 5).
    pub kernel: usize,
    /// Expanded channels (`exp size`); equal to the input channels: no expansion convolution.
    pub expanded: usize,
    /// Output channels (`#out`).
    pub channels: usize,
    /// Whether the block has squeeze-and-excitation.
    pub se: bool,
    /// Hard-swish (`HS`) or ReLU (`RE`) after the expansion and depthwise convolutions.
    pub hard_swish: bool,
    /// Stride of the depthwise convolution.
    pub stride: usize,
}

const fn bneck(kernel: usize, expanded: usize, channels: usize, se: bool, hs: bool, stride: usize) -> Bneck {
    Bneck {
        kernel,
        expanded,
        channels,
        se,
        hard_swish: hs,
        stride,
    }
}

const SE: bool = true;
const NO: bool = false;
const HS: bool = true;
const RE: bool = false;

/// A MobileNetV3 architecture: stem width, the bottleneck stages, the last 1x1 convolution's
/// width and the head's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V3Arch {
    /// `large` or `small`.
    pub name: &'static str,
    /// Channels of the stem (16).
    pub stem: usize,
    /// The bottlenecks, grouped into timm's stages.
    pub stages: &'static [&'static [Bneck]],
    /// Channels of the last stage's 1x1 convolution (960, 576).
    pub last_conv: usize,
    /// Features of the head convolution, the pre-logits (1280, 1024).
    pub head: usize,
}

/// MobileNetV3-Large, the paper's Table 1 (`k, exp, out, SE, NL, s`).
pub const MOBILENET_V3_LARGE: V3Arch = V3Arch {
    name: "large",
    stem: 16,
    stages: &[
        &[bneck(3, 16, 16, NO, RE, 1)],
        &[bneck(3, 64, 24, NO, RE, 2), bneck(3, 72, 24, NO, RE, 1)],
        &[
            bneck(5, 72, 40, SE, RE, 2),
            bneck(5, 120, 40, SE, RE, 1),
            bneck(5, 120, 40, SE, RE, 1),
        ],
        &[
            bneck(3, 240, 80, NO, HS, 2),
            bneck(3, 200, 80, NO, HS, 1),
            bneck(3, 184, 80, NO, HS, 1),
            bneck(3, 184, 80, NO, HS, 1),
        ],
        &[bneck(3, 480, 112, SE, HS, 1), bneck(3, 672, 112, SE, HS, 1)],
        &[
            bneck(5, 672, 160, SE, HS, 2),
            bneck(5, 960, 160, SE, HS, 1),
            bneck(5, 960, 160, SE, HS, 1),
        ],
    ],
    last_conv: 960,
    head: 1280,
};

/// MobileNetV3-Small, the paper's Table 2 (`k, exp, out, SE, NL, s`).
pub const MOBILENET_V3_SMALL: V3Arch = V3Arch {
    name: "small",
    stem: 16,
    stages: &[
        &[bneck(3, 16, 16, SE, RE, 2)],
        &[bneck(3, 72, 24, NO, RE, 2), bneck(3, 88, 24, NO, RE, 1)],
        &[
            bneck(5, 96, 40, SE, HS, 2),
            bneck(5, 240, 40, SE, HS, 1),
            bneck(5, 240, 40, SE, HS, 1),
        ],
        &[bneck(5, 120, 48, SE, HS, 1), bneck(5, 144, 48, SE, HS, 1)],
        &[
            bneck(5, 288, 96, SE, HS, 2),
            bneck(5, 576, 96, SE, HS, 1),
            bneck(5, 576, 96, SE, HS, 1),
        ],
    ],
    last_conv: 576,
    head: 1024,
};

/// `v` rounded to the nearest multiple of `divisor`, at least `divisor`, and not below 90 % of
/// `v` (timm's `make_divisible`, torchvision's `_make_divisible`).
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let rounded = (((v + d / 2.0) / d).floor() * d).max(d);
    if rounded < 0.9 * v {
        (rounded + d) as usize
    } else {
        rounded as usize
    }
}

/// The squeeze width of a block's squeeze-and-excitation: `make_divisible(expanded / 4, 8)`
/// (timm's `round_channels(expanded * 0.25)`, torchvision's `_make_divisible(expanded // 4, 8)`;
/// equal for every expanded width of both tables, all multiples of 4).
pub fn squeeze_channels(expanded: usize) -> usize {
    make_divisible(expanded as f64 / 4.0, 8)
}

/// A MobileNetV3 variant.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileNetV3Config {
    /// The architecture.
    pub arch: V3Arch,
    /// Dropout before the classifier in training (torchvision's 0.2; timm's `drop_rate`, 0 by
    /// default).
    pub dropout: f32,
    /// Batch norm of every layer: timm's PyTorch defaults, or torchvision's `eps = 1e-3,
    /// momentum = 0.01`.
    pub batch_norm: BatchNormConfig,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
}

/// torchvision's batch norm of MobileNetV3: `eps = 1e-3, momentum = 0.01`.
pub const TORCHVISION_BATCH_NORM: BatchNormConfig = BatchNormConfig {
    eps: 1e-3,
    momentum: 0.01,
    affine: true,
};

impl MobileNetV3Config {
    fn of(arch: V3Arch) -> Self {
        Self {
            arch,
            dropout: 0.2,
            batch_norm: BatchNormConfig::default(),
            in_channels: 3,
            num_classes: 1000,
        }
    }

    /// timm's `mobilenetv3_large_100` (batch norm `eps = 1e-5, momentum = 0.1`), dropout 0.2.
    pub fn large_100() -> Self {
        Self::of(MOBILENET_V3_LARGE)
    }

    /// timm's `mobilenetv3_small_100` (batch norm `eps = 1e-5, momentum = 0.1`), dropout 0.2.
    pub fn small_100() -> Self {
        Self::of(MOBILENET_V3_SMALL)
    }

    /// torchvision's batch norm ([`TORCHVISION_BATCH_NORM`]): `mobilenet_v3_large`,
    /// `mobilenet_v3_small`.
    pub fn torchvision(mut self) -> Self {
        self.batch_norm = TORCHVISION_BATCH_NORM;
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

    /// The variant's name: timm's (`mobilenetv3_large_100`) with timm's batch norm,
    /// torchvision's (`mobilenet_v3_large`) with torchvision's, `mobilenetv3` otherwise.
    pub fn name(&self) -> &'static str {
        let tv = self.batch_norm == TORCHVISION_BATCH_NORM;
        let timm = self.batch_norm == BatchNormConfig::default();
        match (self.arch.name, tv, timm) {
            ("large", false, true) if self.arch == MOBILENET_V3_LARGE => "mobilenetv3_large_100",
            ("small", false, true) if self.arch == MOBILENET_V3_SMALL => "mobilenetv3_small_100",
            ("large", true, false) if self.arch == MOBILENET_V3_LARGE => "mobilenet_v3_large",
            ("small", true, false) if self.arch == MOBILENET_V3_SMALL => "mobilenet_v3_small",
            _ => "mobilenetv3",
        }
    }

    /// The width of the pre-logits (1280 large, 1024 small).
    pub fn num_features(&self) -> usize {
        self.arch.head
    }

    /// The total number of bottlenecks.
    pub fn num_blocks(&self) -> usize {
        self.arch.stages.iter().map(|s| s.len()).sum()
    }

    fn validate(&self) -> Result<()> {
        let a = &self.arch;
        let positive = a.stages.iter().all(|s| {
            !s.is_empty()
                && s.iter()
                    .all(|b| b.kernel % 2 == 1 && b.expanded > 0 && b.channels > 0 && b.stride > 0)
        });
        if !positive
            || a.stages.is_empty()
            || a.stem == 0
            || a.last_conv == 0
            || a.head == 0
            || self.in_channels == 0
            || self.num_classes == 0
        {
            return Err(Error::config(format!(
                "mobilenetv3: channels, odd kernels, strides and classes must be positive: {self:?}"
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(format!(
                "mobilenetv3: dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

impl Default for MobileNetV3Config {
    fn default() -> Self {
        Self::large_100()
    }
}

/// torchvision's initialisation of a fresh MobileNetV3 convolution: `kaiming_normal_` (fan
/// out), zero bias.
fn kaiming() -> Init {
    Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanOut,
        non_linearity: NonLinearity::ReLU,
    }
}

/// A convolution (no bias), batch norm and optional activation under timm's two names.
fn conv_bn(
    config: Conv2dConfig,
    bn: BatchNormConfig,
    act: Option<Activation>,
    conv_vb: VarBuilder,
    bn_vb: VarBuilder,
) -> Result<ConvBlock> {
    let channels = config.out_channels;
    Ok(ConvBlock::new(
        Conv2d::new(config.no_bias().init(kaiming(), Init::Const(0.0)), conv_vb)?,
        Some(BatchNorm2d::new(channels, bn, bn_vb)?),
        act,
    ))
}

/// A bottleneck: timm's `DepthwiseSeparableConv` without expansion (`conv_dw, bn1, [se],
/// conv_pw, bn2`), its `InvertedResidual` with (`conv_pw, bn1, conv_dw, bn2, [se], conv_pwl,
/// bn3`); the input added when the stride is 1 and the channels agree.
struct Block {
    expand: Option<ConvBlock>,
    depthwise: ConvBlock,
    se: Option<SqueezeExcite>,
    project: ConvBlock,
    residual: bool,
}

impl Block {
    fn new(in_channels: usize, b: &Bneck, bn: BatchNormConfig, vb: VarBuilder) -> Result<Self> {
        let act = Some(if b.hard_swish {
            Activation::HardSwish
        } else {
            Activation::Relu
        });
        let mid = b.expanded;
        let dw = Conv2dConfig::new(mid, mid, b.kernel)
            .stride(b.stride)
            .padding(b.kernel / 2)
            .groups(mid);
        let pw = |i, o| Conv2dConfig::new(i, o, 1);
        let expands = mid != in_channels;
        let (expand, depthwise, (proj_conv, proj_bn)) = if expands {
            (
                Some(conv_bn(
                    pw(in_channels, mid),
                    bn,
                    act,
                    vb.pp("conv_pw"),
                    vb.pp("bn1"),
                )?),
                conv_bn(dw, bn, act, vb.pp("conv_dw"), vb.pp("bn2"))?,
                ("conv_pwl", "bn3"),
            )
        } else {
            (
                None,
                conv_bn(dw, bn, act, vb.pp("conv_dw"), vb.pp("bn1"))?,
                ("conv_pw", "bn2"),
            )
        };
        let se = if b.se {
            let config = SqueezeExciteConfig::new(mid, squeeze_channels(mid))
                .act(Activation::Relu)
                .gate(Activation::HardSigmoid)
                .names("conv_reduce", "conv_expand")
                .init(kaiming(), Init::Const(0.0));
            Some(SqueezeExcite::new(config, vb.pp("se"))?)
        } else {
            None
        };
        let project = conv_bn(pw(mid, b.channels), bn, None, vb.pp(proj_conv), vb.pp(proj_bn))?;
        Ok(Self {
            expand,
            depthwise,
            se,
            project,
            residual: b.stride == 1 && in_channels == b.channels,
        })
    }
}

impl Layer for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let h = match &self.expand {
            Some(expand) => expand.forward_t(xs, train)?,
            None => xs.clone(),
        };
        let mut h = self.depthwise.forward_t(&h, train)?;
        if let Some(se) = &self.se {
            h = se.forward_t(&h, train)?;
        }
        let h = self.project.forward_t(&h, train)?;
        if self.residual {
            Ok((h + xs)?)
        } else {
            Ok(h)
        }
    }
}

/// MobileNetV3; see the [module documentation](self).
pub struct MobileNetV3 {
    config: MobileNetV3Config,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    stem: ConvBlock,
    /// The bottlenecks of each stage.
    stages: Vec<Vec<Block>>,
    /// The last stage: 1x1 convolution, batch norm, hard-swish (`blocks.S.0`).
    last: ConvBlock,
    pool: AdaptiveAvgPool2d,
    /// `conv_head`: 1x1 convolution with bias on the pooled features (torchvision's
    /// `classifier.0` linear layer).
    head: Conv2d,
    dropout: Dropout,
    classifier: Linear,
}

impl MobileNetV3 {
    /// Builds the model with timm's variable names: `conv_stem`, `bn1`, `blocks.S.B.{conv_pw,
    /// bn1, conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}` (without expansion:
    /// `conv_dw, bn1, se, conv_pw, bn2`), `blocks.S.0.{conv, bn1}` (last stage), `conv_head`,
    /// `classifier`.
    pub fn new(config: &MobileNetV3Config, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        config.validate()?;
        let bn = config.batch_norm;
        let arch = &config.arch;
        let stem = conv_bn(
            Conv2dConfig::new(config.in_channels, arch.stem, 3)
                .stride(2)
                .padding(1),
            bn,
            Some(Activation::HardSwish),
            vb.pp("conv_stem"),
            vb.pp("bn1"),
        )?;
        let mut prev = arch.stem;
        let mut stages = Vec::with_capacity(arch.stages.len());
        for (s, stage) in arch.stages.iter().enumerate() {
            let mut blocks = Vec::with_capacity(stage.len());
            for (b, bneck) in stage.iter().enumerate() {
                blocks.push(Block::new(prev, bneck, bn, vb.pp(format!("blocks.{s}.{b}")))?);
                prev = bneck.channels;
            }
            stages.push(blocks);
        }
        let last_vb = vb.pp(format!("blocks.{}.0", arch.stages.len()));
        let last = conv_bn(
            Conv2dConfig::new(prev, arch.last_conv, 1),
            bn,
            Some(Activation::HardSwish),
            last_vb.pp("conv"),
            last_vb.pp("bn1"),
        )?;
        // torchvision's linear layers: normal with standard deviation 0.01, zero bias.
        let normal = Init::Randn {
            mean: 0.0,
            stdev: 0.01,
        };
        let head = Conv2d::new(
            Conv2dConfig::new(arch.last_conv, arch.head, 1).init(normal, Init::Const(0.0)),
            vb.pp("conv_head"),
        )?;
        let classifier = Linear::with_init(
            arch.head,
            config.num_classes,
            true,
            normal,
            Init::Const(0.0),
            vb.pp("classifier"),
        )?;
        Ok(Self {
            config: config.clone(),
            input_type,
            stem,
            stages,
            last,
            pool: AdaptiveAvgPool2d::new((1, 1))?.named("global_pool"),
            head,
            dropout: Dropout::new(config.dropout)?,
            classifier,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MobileNetV3Config {
        &self.config
    }

    /// timm's feature stages (its `feature_location = 'bottleneck'`): the stem (`bn1`) when the
    /// first stage halves the maps, each stage `blocks.S` after which the maps are halved, and
    /// the last stage (the 1x1 convolution). `None`: the stem.
    fn feature_stages(&self) -> Vec<(Option<usize>, FeatureInfo)> {
        let arch = &self.config.arch;
        let stride = |s: usize| arch.stages.get(s).map_or(1, |st| st[0].stride);
        let mut out = Vec::new();
        let mut reduction = 2;
        if stride(0) > 1 {
            out.push((None, FeatureInfo::new("bn1", arch.stem, reduction)));
        }
        for (s, stage) in arch.stages.iter().enumerate() {
            reduction *= stage.iter().map(|b| b.stride).product::<usize>();
            if stride(s + 1) > 1 {
                let channels = stage[stage.len() - 1].channels;
                out.push((
                    Some(s),
                    FeatureInfo::new(format!("blocks.{s}"), channels, reduction),
                ));
            }
        }
        let s = arch.stages.len();
        out.push((
            Some(s),
            FeatureInfo::new(format!("blocks.{s}"), arch.last_conv, reduction),
        ));
        out
    }

    /// Stage `s` (the last one: the 1x1 convolution).
    fn run_stage(&self, s: usize, mut xs: Tensor, train: bool) -> Result<Tensor> {
        match self.stages.get(s) {
            Some(blocks) => {
                for block in blocks {
                    xs = block.forward_t(&xs, train)?;
                }
                Ok(xs)
            }
            None => self.last.forward_t(&xs, train),
        }
    }
}

impl Backbone for MobileNetV3 {
    fn name(&self) -> &str {
        self.config.name()
    }

    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: self.config.in_channels,
            // Every convolution is padded: a side of 1 stays 1.
            min_size: (1, 1),
            fixed_size: None,
            default_size: (224, 224),
        }
    }

    /// The stem, the bottlenecks and the last 1x1 convolution, batch norm and hard-swish
    /// (timm's `forward_features`): `[N, 960, h, w]` (large), `[N, 576, h, w]` (small).
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let mut xs = self.stem.forward_t(xs, train)?;
        for s in 0..=self.stages.len() {
            xs = self.run_stage(s, xs, train)?;
        }
        Ok(xs)
    }

    /// Global average pool, `conv_head` (with bias), hard-swish, flatten, dropout (in
    /// training): `[N, 1280]` (large), `[N, 1024]` (small).
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.pool.forward_t(features, train)?;
        let xs = self.head.forward_t(&xs, train)?;
        let xs = Activation::HardSwish.forward_t(&xs, train)?;
        let xs = Flatten::new().forward_t(&xs, train)?;
        self.dropout.forward_t(&xs, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.classifier.forward_t(pre_logits, train)
    }

    /// timm's: large `blocks.{0, 1, 2, 4, 6}` (16, 24, 40, 112, 960 channels at reductions 2
    /// to 32), small `bn1, blocks.{0, 1, 3, 5}` (16, 16, 24, 48, 576).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.feature_stages().into_iter().map(|(_, info)| info).collect()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let ends: Vec<Option<usize>> = self.feature_stages().into_iter().map(|(s, _)| s).collect();
        let mut xs = self.stem.forward_t(xs, train)?;
        let mut maps = Vec::with_capacity(ends.len());
        if ends.contains(&None) {
            maps.push(xs.clone());
        }
        for s in 0..=self.stages.len() {
            xs = self.run_stage(s, xs, train)?;
            if ends.contains(&Some(s)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeeze_widths_are_the_references() {
        // torchvision's `_make_divisible(expanded // 4, 8)` for every expanded width.
        for (exp, sq) in [
            (16, 8),
            (72, 24),
            (120, 32),
            (480, 120),
            (672, 168),
            (960, 240),
            (96, 24),
            (240, 64),
            (144, 40),
            (288, 72),
            (576, 144),
        ] {
            assert_eq!(squeeze_channels(exp), sq, "{exp}");
        }
    }

    #[test]
    fn blocks_names_and_validation() {
        assert_eq!(MobileNetV3Config::large_100().num_blocks(), 15);
        assert_eq!(MobileNetV3Config::small_100().num_blocks(), 11);
        assert_eq!(MobileNetV3Config::large_100().name(), "mobilenetv3_large_100");
        assert_eq!(
            MobileNetV3Config::small_100().torchvision().name(),
            "mobilenet_v3_small"
        );
        assert!(MobileNetV3Config::small_100()
            .with_dropout(1.0)
            .validate()
            .is_err());
        assert!(MobileNetV3Config::large_100().with_classes(0).validate().is_err());
    }
}
