//! # RegNetX and RegNetY
//!
//! I. Radosavovic, R. P. Kosaraju, R. Girshick, K. He, P. Dollár, *Designing Network Design
//! Spaces*, CVPR 2020.
//!
//! A RegNet is a stem (3x3 stride-2 convolution to 32 channels), four stages of residual
//! bottlenecks (1x1, grouped 3x3 with the stage's stride 2, 1x1; bottleneck ratio 1) and a
//! global-average-pool head. Its per-block widths come from four numbers, a linear
//! parametrisation quantized to a geometric series ([`RegNetParams::stages`]):
//! `u_j = w0 + wa * j` for the `depth` blocks, `s_j = round(log(u_j / w0) / log(wm))`,
//! `w_j = round(w0 * wm^s_j / 8) * 8`; blocks of equal width form a stage, and each stage's
//! width is rounded to a multiple of its group width. RegNetY adds squeeze-and-excitation
//! after the 3x3 convolution, squeezing to `round(se_ratio * block input width)` channels.
//!
//! | variant                                  | w0 | wa    | wm   | depth | group width | SE   | widths             | blocks       | parameters | MACs (224x224) |
//! |------------------------------------------|---:|------:|-----:|------:|------------:|-----:|--------------------|--------------|-----------:|---------------:|
//! | [`regnetx_016`](RegNetConfig::regnetx_016) | 80 | 34.01 | 2.25 | 18    | 24          | -    | 72, 168, 408, 912  | 2, 4, 10, 2  |  9,190,136 | 1.60 G |
//! | [`regnety_016`](RegNetConfig::regnety_016) | 48 | 20.71 | 2.65 | 27    | 24          | 0.25 | 48, 120, 336, 888  | 2, 6, 17, 2  | 11,202,430 | 1.63 G |
//!
//! Parameters with 3 input channels and 1000 classes, timm's and torchvision's counts to the
//! unit; MACs as [`backbone::summarize`] counts them (convolutions and `fc`).
//!
//! ## One network, two layouts
//!
//! timm's `regnetx_016` / `regnety_016` and torchvision's `regnet_x_1_6gf` / `regnet_y_1_6gf`
//! are the same networks: the same widths, depths and group widths (timm rounds the
//! bottleneck width to the group width with `round`, torchvision with its `_make_divisible`;
//! both give the widths above), SE widths relative to the block's input width in both
//! (`round(0.25 * w_in)`), bottleneck ratio 1, batch norm eps 1e-5 and momentum 0.1, ReLU.
//! They differ in names only. This crate uses timm's:
//! `stem.{conv,bn}`, `s{1..4}.b{1..}.{conv1,conv2,conv3}.{conv,bn}`, `.se.{fc1,fc2}`,
//! `.downsample.{conv,bn}`, `head.fc`; torchvision's (`stem.{0,1}`,
//! `trunk_output.block{S}.block{S}-{B}.f.{a,b,c}.{0,1}`, `.f.se.{fc1,fc2}`, `.proj.{0,1}`,
//! `fc`) are renamed by the catalogue ([`torchvision_to_timm`]), and torchvision's names are
//! aliases of the variants (`regnet_y_1_6gf` finds `regnety_016`).
//!
//! ## Layers (RegNetY-1.6GF, input 3x224x224)
//!
//! | stage  | keys                       | blocks | width | groups (x 24) | SE squeeze of the first block | output        |
//! |--------|----------------------------|-------:|------:|--------------:|------------------------------:|---------------|
//! | stem   | `stem.conv` 3x3/2, `stem.bn` | -    |    32 | -             | -                             | 32 x 112 x 112 |
//! | `s1`   | `s1.b{1,2}`                |      2 |    48 |  2            | 8                             | 48 x 56 x 56  |
//! | `s2`   | `s2.b{1..6}`               |      6 |   120 |  5            | 12                            | 120 x 28 x 28 |
//! | `s3`   | `s3.b{1..17}`              |     17 |   336 | 14            | 30                            | 336 x 14 x 14 |
//! | `s4`   | `s4.b{1,2}`                |      2 |   888 | 37            | 84                            | 888 x 7 x 7   |
//! | head   | global average pool, `head.fc` | -  |     - | -             | -                             | classes       |
//!
//! A block computes `relu(conv3(se(conv2(conv1(x)))) + shortcut(x))`, each `conv` a
//! convolution without bias, batch norm and (but `conv3`) ReLU; the shortcut is a 1x1
//! convolution with the stride and batch norm (`downsample`) where the width or the size
//! changes (each stage's first block), the identity elsewhere.
//!
//! ## Features and head
//!
//! As timm: [`Backbone::forward_features`] is `s4`'s output (timm's `final_conv` is the
//! identity for these variants); the head is global average pooling, flatten and `head.fc`.
//! Feature stages: `stem` (32 / 2), `s1` ... `s4` (reductions 4 ... 32).
//!
//! ## Initialisation
//!
//! timm's `_init_weights`: convolutions normal with std `sqrt(2 / fan_out)`, `fan_out = k * k
//! * out_channels / groups`, biases 0; batch norm 1 and 0; `head.fc` normal std 0.01, bias 0;
//! and `zero_init_last`: every block's last batch norm (`conv3.bn`) starts with a zero weight
//! ([`RegNetConfig::with_zero_init_last`] turns it off).

pub mod catalogue;
mod layout;
pub use catalogue::VARIANTS;
pub use layout::{detect_layout, timm_to_torchvision, torchvision_name, torchvision_to_timm, WeightsLayout};

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use regnet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::layers::{
    Activation, AdaptiveAvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Flatten,
    Layer, Linear, SqueezeExcite, SqueezeExciteConfig,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};

/// The four numbers of a RegNet design (the paper's `w0`, `wa`, `wm`, `d`), its group width and
/// its squeeze-and-excitation ratio: timm's `RegNetCfg`, torchvision's `BlockParams.from_init_params`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegNetParams {
    /// Initial width `w0` (a multiple of 8).
    pub w0: usize,
    /// Width slope `wa`.
    pub wa: f64,
    /// Width multiplier `wm` (> 1): the ratio of successive stage widths before rounding.
    pub wm: f64,
    /// Blocks in all.
    pub depth: usize,
    /// Channels per group of the 3x3 convolutions.
    pub group_width: usize,
    /// Squeeze-and-excitation ratio to the block's input width (0: RegNetX).
    pub se_ratio: f64,
}

/// RegNetX-1.6GF (timm's `regnetx_016`, torchvision's `regnet_x_1_6gf`).
pub const REGNETX_016: RegNetParams = RegNetParams {
    w0: 80,
    wa: 34.01,
    wm: 2.25,
    depth: 18,
    group_width: 24,
    se_ratio: 0.0,
};

/// RegNetY-1.6GF (timm's `regnety_016`, torchvision's `regnet_y_1_6gf`).
pub const REGNETY_016: RegNetParams = RegNetParams {
    w0: 48,
    wa: 20.71,
    wm: 2.65,
    depth: 27,
    group_width: 24,
    se_ratio: 0.25,
};

/// One stage as the parameters generate it: its width, its number of blocks and the channels
/// per group of its 3x3 convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// Output channels of every block.
    pub width: usize,
    /// Blocks.
    pub depth: usize,
    /// Channels per group (the width is a multiple of it).
    pub group_width: usize,
}

/// The stem's width (timm's `stem_width`, torchvision's `stem_width`).
pub const STEM_WIDTH: usize = 32;

impl RegNetParams {
    /// The per-block widths before they are grouped into stages: timm's `generate_regnet`
    /// (`quant` 8), computed in f64 with ties to even as `torch.round`.
    pub fn block_widths(&self) -> Vec<usize> {
        let w0 = self.w0 as f64;
        (0..self.depth)
            .map(|j| {
                let u = w0 + self.wa * j as f64;
                let s = ((u / w0).ln() / self.wm.ln()).round_ties_even();
                ((w0 * self.wm.powf(s) / 8.0).round_ties_even() * 8.0) as usize
            })
            .collect()
    }

    /// The stages: runs of equal block widths, in order, each width then rounded to a multiple
    /// of the group width (timm's `adjust_widths_groups_comp` with bottleneck ratio 1: group
    /// width `min(group_width, width)`, width `round(width / group) * group`).
    pub fn stages(&self) -> Vec<Stage> {
        let mut stages: Vec<Stage> = Vec::new();
        for w in self.block_widths() {
            match stages.last_mut() {
                Some(last) if last.width == w => last.depth += 1,
                _ => stages.push(Stage {
                    width: w,
                    depth: 1,
                    group_width: self.group_width,
                }),
            }
        }
        for stage in &mut stages {
            let g = self.group_width.min(stage.width);
            let width = ((stage.width as f64 / g as f64).round_ties_even() as usize) * g;
            *stage = Stage {
                width,
                depth: stage.depth,
                group_width: g,
            };
        }
        stages
    }

    /// The squeeze width of a block taking `in_channels`: `round(se_ratio * in_channels)`
    /// (0: no squeeze-and-excitation).
    pub fn se_width(&self, in_channels: usize) -> usize {
        (self.se_ratio * in_channels as f64).round_ties_even() as usize
    }

    fn validate(&self) -> Result<()> {
        let ok = self.w0 > 0
            && self.w0.is_multiple_of(8)
            && self.wa >= 0.0
            && self.wm > 1.0
            && self.depth > 0
            && self.group_width > 0
            && (0.0..1.0).contains(&self.se_ratio);
        if !ok {
            return Err(Error::config(format!(
                "regnet: w0 must be a positive multiple of 8, wa >= 0, wm > 1, depth and group width positive, se_ratio in [0, 1); got {self:?}"
            )));
        }
        let stages = self.stages();
        if stages.len() != 4 || stages.iter().any(|s| s.width == 0) {
            return Err(Error::config(format!(
                "regnet: the parameters must give four stages of positive width, got {stages:?}"
            )));
        }
        Ok(())
    }
}

/// A RegNet variant: its design parameters, the input channels and the classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegNetConfig {
    /// The design.
    pub params: RegNetParams,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Start every block's last batch norm (`conv3.bn`) with a zero weight, as timm's
    /// `zero_init_last` (default true; fresh models only).
    pub zero_init_last: bool,
}

impl RegNetConfig {
    fn base(params: RegNetParams) -> Self {
        Self {
            params,
            in_channels: 3,
            num_classes: 1000,
            zero_init_last: true,
        }
    }

    /// RegNetX-1.6GF.
    pub fn regnetx_016() -> Self {
        Self::base(REGNETX_016)
    }

    /// RegNetY-1.6GF.
    pub fn regnety_016() -> Self {
        Self::base(REGNETY_016)
    }

    /// The variants of the [crate documentation](crate), in its order.
    pub fn variants() -> [Self; 2] {
        [Self::regnetx_016(), Self::regnety_016()]
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

    /// Sets timm's `zero_init_last`.
    pub fn with_zero_init_last(mut self, zero_init_last: bool) -> Self {
        self.zero_init_last = zero_init_last;
        self
    }

    /// timm's name of the variant (`regnetx_016`, `regnety_016`), `regnet` for other designs.
    pub fn name(&self) -> String {
        if self.params == REGNETX_016 {
            "regnetx_016".into()
        } else if self.params == REGNETY_016 {
            "regnety_016".into()
        } else {
            "regnet".into()
        }
    }

    /// The width of the features: the last stage's width.
    pub fn num_features(&self) -> usize {
        self.params.stages().last().map_or(STEM_WIDTH, |s| s.width)
    }

    /// Checks that the configuration describes a model.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.num_classes == 0 {
            return Err(Error::config(format!(
                "regnet: in_channels ({}) and num_classes ({}) must be positive",
                self.in_channels, self.num_classes
            )));
        }
        self.params.validate()
    }

    /// The number of trainable parameters, computed from the configuration without building
    /// the model.
    pub fn num_params(&self) -> usize {
        let bn = |c: usize| 2 * c;
        let mut total = self.in_channels * STEM_WIDTH * 9 + bn(STEM_WIDTH);
        let mut w_in = STEM_WIDTH;
        for stage in self.params.stages() {
            let w = stage.width;
            for b in 0..stage.depth {
                total += w_in * w + bn(w) + w * stage.group_width * 9 + bn(w) + w * w + bn(w);
                let se = self.params.se_width(w_in);
                if se > 0 {
                    total += w * se + se + se * w + w;
                }
                if b == 0 {
                    total += w_in * w + bn(w);
                }
                w_in = w;
            }
        }
        total + w_in * self.num_classes + self.num_classes
    }
}

impl Default for RegNetConfig {
    fn default() -> Self {
        Self::regnety_016()
    }
}

/// timm's `_init_weights` of a convolution: normal, std `sqrt(2 / (k * k * out / groups))`,
/// no bias.
fn conv(in_c: usize, out_c: usize, kernel: usize, stride: usize, groups: usize) -> Conv2dConfig {
    let fan_out = (kernel * kernel * out_c / groups) as f64;
    Conv2dConfig::new(in_c, out_c, kernel)
        .stride(stride)
        .padding(kernel / 2)
        .groups(groups)
        .no_bias()
        .init(
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_out).sqrt(),
            },
            Init::Const(0.0),
        )
}

/// timm's `ConvNormAct` under `vb` (`.conv`, `.bn`); with `zero_weight` a fresh batch norm
/// weight starts at 0 (`zero_init_last`).
fn conv_norm(
    config: Conv2dConfig,
    act: Option<Activation>,
    zero_weight: bool,
    vb: VarBuilder,
) -> Result<ConvBlock> {
    let c = config.out_channels;
    let conv = Conv2d::new(config, vb.pp("conv"))?;
    let vb = vb.pp("bn");
    if zero_weight {
        // Created first with zeros, then found by the batch norm's constructor.
        vb.get_with_hints(c, "weight", Init::Const(0.0))?;
    }
    let bn = BatchNorm2d::new(c, BatchNormConfig::default(), vb)?;
    Ok(ConvBlock::new(conv, Some(bn), act))
}

/// One bottleneck: `relu(conv3(se(conv2(conv1(x)))) + shortcut(x))`.
#[derive(Debug, Clone)]
pub struct Block {
    conv1: ConvBlock,
    conv2: ConvBlock,
    se: Option<SqueezeExcite>,
    conv3: ConvBlock,
    downsample: Option<ConvBlock>,
    name: String,
}

impl Block {
    /// A block of `stage`'s width taking `w_in` channels with `stride`, squeezing to `se`
    /// channels (0: none); variables under `vb`'s prefix (`s2.b1`).
    /// With `zero_init_last`, a fresh `conv3.bn` weight starts at 0.
    pub fn new(
        w_in: usize,
        stage: &Stage,
        stride: usize,
        se: usize,
        zero_init_last: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let w = stage.width;
        let groups = w / stage.group_width;
        let relu = Some(Activation::Relu);
        let conv1 = conv_norm(conv(w_in, w, 1, 1, 1), relu, false, vb.pp("conv1"))?;
        let conv2 = conv_norm(conv(w, w, 3, stride, groups), relu, false, vb.pp("conv2"))?;
        let se = if se > 0 {
            // timm's _init_weights: 1x1 convolutions normal(0, sqrt(2 / out)), biases 0.
            let config = SqueezeExciteConfig::new(w, se).init(
                Init::Kaiming {
                    dist: NormalOrUniform::Normal,
                    fan: FanInOut::FanOut,
                    non_linearity: NonLinearity::ReLU,
                },
                Init::Const(0.0),
            );
            Some(SqueezeExcite::new(config, vb.pp("se"))?)
        } else {
            None
        };
        let conv3 = conv_norm(conv(w, w, 1, 1, 1), None, zero_init_last, vb.pp("conv3"))?;
        let downsample = if w_in != w || stride != 1 {
            Some(conv_norm(
                conv(w_in, w, 1, stride, 1),
                None,
                false,
                vb.pp("downsample"),
            )?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            se,
            conv3,
            downsample,
            name: vb.prefix(),
        })
    }

    /// The block's variable path (`s2.b1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the block has squeeze-and-excitation.
    pub fn has_se(&self) -> bool {
        self.se.is_some()
    }

    /// Whether the shortcut is a projection (`downsample`) rather than the identity.
    pub fn has_downsample(&self) -> bool {
        self.downsample.is_some()
    }
}

impl Layer for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut out = self.conv2.forward_t(&self.conv1.forward_t(xs, train)?, train)?;
        if let Some(se) = &self.se {
            out = se.forward_t(&out, train)?;
        }
        let shortcut = match &self.downsample {
            Some(ds) => ds.forward_t(xs, train)?,
            None => xs.clone(),
        };
        // `conv3`'s batch norm, the addition and the ReLU: one op (in eval mode inside the
        // convolution's own pass).
        self.conv3.forward_add_relu(&out, &shortcut, train)
    }
}

/// A RegNet; see the [crate documentation](crate).
pub struct RegNet {
    config: RegNetConfig,
    input_type: InputType,
    name: String,
    stem: ConvBlock,
    stages: Vec<Vec<Block>>,
    widths: Vec<usize>,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl RegNet {
    /// Builds the model; variables named as timm's state dict (`stem.conv.weight`,
    /// `s1.b1.conv2.bn.running_var`, `s3.b4.se.fc1.bias`, `head.fc.weight`, ...). Fails with
    /// [`Error::Config`] on an invalid configuration.
    pub fn new(config: &RegNetConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        config.validate()?;
        let stem = conv_norm(
            conv(config.in_channels, STEM_WIDTH, 3, 2, 1),
            Some(Activation::Relu),
            false,
            vb.pp("stem"),
        )?;
        let mut w_in = STEM_WIDTH;
        let mut stages = Vec::with_capacity(4);
        let mut widths = Vec::with_capacity(4);
        for (s, stage) in config.params.stages().iter().enumerate() {
            let vb = vb.pp(format!("s{}", s + 1));
            let mut blocks = Vec::with_capacity(stage.depth);
            for b in 0..stage.depth {
                let stride = if b == 0 { 2 } else { 1 };
                let se = config.params.se_width(w_in);
                blocks.push(Block::new(
                    w_in,
                    stage,
                    stride,
                    se,
                    config.zero_init_last,
                    vb.pp(format!("b{}", b + 1)),
                )?);
                w_in = stage.width;
            }
            stages.push(blocks);
            widths.push(stage.width);
        }
        let fc = Linear::with_init(
            w_in,
            config.num_classes,
            true,
            Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
            Init::Const(0.0),
            vb.pp("head").pp("fc"),
        )?;
        Ok(Self {
            config: *config,
            input_type,
            name: config.name(),
            stem,
            stages,
            widths,
            avgpool: AdaptiveAvgPool2d::new((1, 1))?.named("head.global_pool"),
            fc,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RegNetConfig {
        &self.config
    }

    /// The blocks of the four stages (`s1` ... `s4`).
    pub fn stages(&self) -> &[Vec<Block>] {
        &self.stages
    }
}

impl Backbone for RegNet {
    fn name(&self) -> &str {
        &self.name
    }

    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: self.config.in_channels,
            min_size: (1, 1),
            fixed_size: None,
            default_size: (224, 224),
        }
    }

    /// `s4`'s output, `[N, num_features, h, w]`.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(&self.name, &self.input_spec(), &self.input_type, xs)?;
        let mut xs = self.stem.forward_t(xs, train)?;
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

    /// timm's: `stem` (reduction 2) and `s1` ... `s4` (4 ... 32).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        let mut info = vec![FeatureInfo::new("stem", STEM_WIDTH, 2)];
        for (s, &w) in self.widths.iter().enumerate() {
            info.push(FeatureInfo::new(format!("s{}", s + 1), w, 4 << s));
        }
        info
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(&self.name, &self.input_spec(), &self.input_type, xs)?;
        let mut xs = self.stem.forward_t(xs, train)?;
        let mut maps = vec![xs.clone()];
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
        "head.fc"
    }
}
