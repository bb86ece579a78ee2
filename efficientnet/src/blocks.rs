//! The blocks of EfficientNet and EfficientNetV2, with timm's variable names: conv + batch
//! norm (+ SiLU), MBConv (inverted residual with squeeze-and-excitation), FusedMBConv (timm's
//! `EdgeResidual`) and the plain conv block with a residual of EfficientNetV2's first stage
//! (timm's `ConvBnAct` with `skip`). Every block adds its input back when its input and output
//! shapes agree, its branch dropped per sample in training (stochastic depth).

use crate::round_filters;
use backbone::layers::{
    Activation, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Dropout, Layer, SqueezeExcite,
    SqueezeExciteConfig,
};
use backbone::Result;
use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};

/// torchvision's initialisation of a fresh EfficientNet convolution: `kaiming_normal_`
/// (fan out, gain `sqrt(2)`), zero bias.
fn conv(config: Conv2dConfig, vb: VarBuilder) -> Result<Conv2d> {
    Conv2d::new(config.init(kaiming_fan_out(), Init::Const(0.0)), vb)
}

/// `kaiming_normal_(mode="fan_out")`, torchvision's EfficientNet convolution initialisation.
pub(crate) fn kaiming_fan_out() -> Init {
    Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanOut,
        non_linearity: NonLinearity::ReLU,
    }
}

/// A `kernel` x `kernel` convolution padded as PyTorch's models (`kernel / 2` on every side) or,
/// with `same`, as TensorFlow's "SAME" (timm's `tf_` models: computed from the input).
pub(crate) fn spatial(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    same: bool,
) -> Conv2dConfig {
    let c = Conv2dConfig::new(in_channels, out_channels, kernel).stride(stride);
    if same {
        c.same_padding()
    } else {
        c.padding(kernel / 2)
    }
}

/// A convolution followed by batch norm and an optional activation: a [`ConvBlock`] (batch
/// norm folded into the convolution in eval mode when no gradient is needed).
pub(crate) struct ConvBn(ConvBlock);

impl ConvBn {
    pub(crate) fn new(
        config: Conv2dConfig,
        bn: BatchNormConfig,
        act: Option<Activation>,
        conv_vb: VarBuilder,
        bn_vb: VarBuilder,
    ) -> Result<Self> {
        let channels = config.out_channels;
        Ok(Self(ConvBlock::new(
            conv(config.no_bias(), conv_vb)?,
            Some(BatchNorm2d::new(channels, bn, bn_vb)?),
            act,
        )))
    }
}

impl Layer for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.0.forward_t(xs, train)
    }
}

/// What every block is built from: its channels, expansion, kernel, stride, the drop rate of
/// its residual branch, the batch norm and the padding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockArgs {
    pub in_channels: usize,
    pub out_channels: usize,
    pub expand_ratio: usize,
    pub kernel: usize,
    pub stride: usize,
    pub drop_path: f64,
    pub bn: BatchNormConfig,
    /// TensorFlow's "SAME" padding (timm's `tf_` models).
    pub same: bool,
}

impl BlockArgs {
    /// Expanded channels, `round_filters(in * expand_ratio, 8)` (timm's `make_divisible`,
    /// torchvision's `adjust_channels`).
    fn mid(&self) -> usize {
        round_filters((self.in_channels * self.expand_ratio) as f64, 8)
    }

    fn residual(&self) -> Result<Option<Residual>> {
        if self.stride == 1 && self.in_channels == self.out_channels {
            Ok(Some(Residual(Dropout::new(self.drop_path as f32)?)))
        } else {
            Ok(None)
        }
    }
}

/// The residual connection of a block, its branch dropped per sample in training
/// (probability 0: never).
struct Residual(Dropout);

impl Residual {
    fn add(&self, branch: Tensor, xs: &Tensor, train: bool) -> Result<Tensor> {
        let drop = &self.0;
        let mut h = branch;
        if train && drop.p() > 0.0 {
            // Stochastic depth: the branch of each sample is kept with probability 1 - p and
            // scaled by 1 / (1 - p): a dropout mask of shape [N, 1, 1, 1] (seeded generator).
            let ones = Tensor::ones((h.dim(0)?, 1, 1, 1), h.dtype(), h.device())?;
            let mask = drop.forward_t(&ones, true)?;
            h = h.broadcast_mul(&mask)?;
        }
        Ok((h + xs)?)
    }
}

/// Squeeze-and-excitation of `mid` channels squeezed to a quarter of the block's input
/// channels (at least 1): timm's `SqueezeExcite(rd_ratio = 0.25 / expand_ratio)` on the
/// expanded channels is `round(in / 4)`, torchvision's `max(1, in // 4)`; equal for the
/// channel counts of these networks.
fn squeeze_excite(mid: usize, in_channels: usize, vb: VarBuilder) -> Result<SqueezeExcite> {
    SqueezeExcite::new(
        SqueezeExciteConfig::new(mid, (in_channels / 4).max(1))
            .act(Activation::Silu)
            .names("conv_reduce", "conv_expand")
            .init(kaiming_fan_out(), Init::Const(0.0)),
        vb.pp("se"),
    )
}

/// An MBConv block: optional expansion, depthwise conv, squeeze-excitation, projection, and
/// the residual connection with stochastic depth.
pub(crate) struct MBConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    se: SqueezeExcite,
    project: ConvBn,
    residual: Option<Residual>,
}

impl MBConv {
    /// timm names the layers by position: with an expansion, `conv_pw`/`bn1`, `conv_dw`/`bn2`,
    /// `conv_pwl`/`bn3`; without (depthwise separable), `conv_dw`/`bn1`, `conv_pw`/`bn2`.
    pub(crate) fn new(a: BlockArgs, vb: VarBuilder) -> Result<Self> {
        let (bn, silu) = (a.bn, Some(Activation::Silu));
        let mid = a.mid();
        let dw = spatial(mid, mid, a.kernel, a.stride, a.same).groups(mid);
        let (expand, depthwise, project) = if a.expand_ratio != 1 {
            let pw = Conv2dConfig::new(a.in_channels, mid, 1);
            let expand = ConvBn::new(pw, bn, silu, vb.pp("conv_pw"), vb.pp("bn1"))?;
            let depthwise = ConvBn::new(dw, bn, silu, vb.pp("conv_dw"), vb.pp("bn2"))?;
            let pwl = Conv2dConfig::new(mid, a.out_channels, 1);
            let project = ConvBn::new(pwl, bn, None, vb.pp("conv_pwl"), vb.pp("bn3"))?;
            (Some(expand), depthwise, project)
        } else {
            let depthwise = ConvBn::new(dw, bn, silu, vb.pp("conv_dw"), vb.pp("bn1"))?;
            let pw = Conv2dConfig::new(mid, a.out_channels, 1);
            let project = ConvBn::new(pw, bn, None, vb.pp("conv_pw"), vb.pp("bn2"))?;
            (None, depthwise, project)
        };
        Ok(Self {
            expand,
            depthwise,
            se: squeeze_excite(mid, a.in_channels, vb)?,
            project,
            residual: a.residual()?,
        })
    }
}

impl Layer for MBConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = match &self.expand {
            Some(expand) => expand.forward_t(xs, train)?,
            None => xs.clone(),
        };
        h = self.depthwise.forward_t(&h, train)?;
        h = self.se.forward_t(&h, train)?;
        h = self.project.forward_t(&h, train)?;
        match &self.residual {
            Some(residual) => residual.add(h, xs, train),
            None => Ok(h),
        }
    }
}

/// A FusedMBConv block (timm's `EdgeResidual`): the expansion and the depthwise convolution
/// fused into one `kernel` x `kernel` convolution (`conv_exp`, `bn1`, SiLU), then the 1x1
/// projection (`conv_pwl`, `bn2`, no activation); no squeeze-and-excitation in the V2-S
/// networks. torchvision's `FusedMBConv` with an expansion (`block.0`, `block.1`).
pub(crate) struct FusedMBConv {
    expand: ConvBn,
    project: ConvBn,
    residual: Option<Residual>,
}

impl FusedMBConv {
    pub(crate) fn new(a: BlockArgs, vb: VarBuilder) -> Result<Self> {
        let (bn, mid) = (a.bn, a.mid());
        let exp = spatial(a.in_channels, mid, a.kernel, a.stride, a.same);
        let pwl = Conv2dConfig::new(mid, a.out_channels, 1);
        Ok(Self {
            expand: ConvBn::new(exp, bn, Some(Activation::Silu), vb.pp("conv_exp"), vb.pp("bn1"))?,
            project: ConvBn::new(pwl, bn, None, vb.pp("conv_pwl"), vb.pp("bn2"))?,
            residual: a.residual()?,
        })
    }
}

impl Layer for FusedMBConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.expand.forward_t(xs, train)?;
        let h = self.project.forward_t(&h, train)?;
        match &self.residual {
            Some(residual) => residual.add(h, xs, train),
            None => Ok(h),
        }
    }
}

/// A `kernel` x `kernel` convolution, batch norm and SiLU with a residual (timm's `ConvBnAct`
/// with `skip`: `conv`, `bn1`; torchvision's `FusedMBConv` without expansion, `block.0`).
pub(crate) struct ConvBnAct {
    conv: ConvBn,
    residual: Option<Residual>,
}

impl ConvBnAct {
    pub(crate) fn new(a: BlockArgs, vb: VarBuilder) -> Result<Self> {
        let c = spatial(a.in_channels, a.out_channels, a.kernel, a.stride, a.same);
        Ok(Self {
            conv: ConvBn::new(c, a.bn, Some(Activation::Silu), vb.pp("conv"), vb.pp("bn1"))?,
            residual: a.residual()?,
        })
    }
}

impl Layer for ConvBnAct {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.conv.forward_t(xs, train)?;
        match &self.residual {
            Some(residual) => residual.add(h, xs, train),
            None => Ok(h),
        }
    }
}

/// The stem, then every block, then `head`: both versions' `forward_features`.
pub(crate) fn forward_body<B: Layer>(
    stem: &ConvBn,
    blocks: &[B],
    head: &ConvBn,
    xs: &Tensor,
    train: bool,
) -> Result<Tensor> {
    let mut xs = stem.forward_t(xs, train)?;
    for block in blocks {
        xs = block.forward_t(&xs, train)?;
    }
    head.forward_t(&xs, train)
}

/// The stem, then the blocks, keeping the output of each block whose index is in `ends` (the
/// last block of a feature stage): both versions' `forward_stages`.
pub(crate) fn forward_stage_ends<B: Layer>(
    stem: &ConvBn,
    blocks: &[B],
    ends: &[usize],
    xs: &Tensor,
    train: bool,
) -> Result<Vec<Tensor>> {
    let mut xs = stem.forward_t(xs, train)?;
    let mut maps = Vec::with_capacity(ends.len());
    for (i, block) in blocks.iter().enumerate() {
        xs = block.forward_t(&xs, train)?;
        if ends.contains(&i) {
            maps.push(xs.clone());
        }
    }
    Ok(maps)
}
