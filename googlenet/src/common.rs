//! Pieces shared by GoogLeNet and Inception-v3: torchvision's `BasicConv2d`, the input
//! transform of its ported weights and the strict loading that tolerates an absent auxiliary
//! head.

use backbone::layers::{
    Activation, AdaptiveAvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Dropout,
    Flatten, Layer,
};
use backbone::{Error, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// The batch-norm epsilon of both networks (TensorFlow's default, kept by torchvision's port).
pub(crate) const BN_EPS: f64 = 1e-3;

/// torchvision's `BasicConv2d`: a convolution without bias (`{prefix}.conv`), batch norm with
/// `eps = 1e-3` (`{prefix}.bn`) and ReLU. A fresh convolution weight is drawn from a normal
/// distribution of standard deviation `std` (see the crate documentation on truncation).
pub(crate) fn basic_conv(config: Conv2dConfig, std: f64, vb: VarBuilder) -> Result<ConvBlock> {
    let out_channels = config.out_channels;
    let config = config.no_bias().init(normal(std), Init::Const(0.0));
    let conv = Conv2d::new(config, vb.pp("conv"))?;
    let bn = BatchNorm2d::new(out_channels, BatchNormConfig::with_eps(BN_EPS), vb.pp("bn"))?;
    Ok(ConvBlock::new(conv, Some(bn), Some(Activation::Relu)))
}

/// A square `k`x`k` convolution with stride 1, no padding.
pub(crate) fn conv(in_channels: usize, out_channels: usize, kernel: usize) -> Conv2dConfig {
    Conv2dConfig::new(in_channels, out_channels, kernel)
}

/// torchvision's `trunc_normal_(std=std, a=-2, b=2)`, as a plain normal: the truncation points
/// lie at least 20 standard deviations away for every standard deviation used here (0.1, 0.01
/// and 0.001), so a draw beyond them has probability below 1e-88 and the two distributions are
/// the same in practice.
pub(crate) fn normal(std: f64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: std,
    }
}

/// torchvision's `transform_input`: maps an input normalised with ImageNet's mean and standard
/// deviation to one normalised with mean 0.5 and standard deviation 0.5 (what the ported
/// TensorFlow weights expect), channel by channel: `x * (std / 0.5) + (mean - 0.5) / 0.5`.
pub(crate) fn transform_input(xs: &Tensor) -> Result<Tensor> {
    const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
    const STD: [f64; 3] = [0.229, 0.224, 0.225];
    let scale: Vec<f32> = STD.iter().map(|s| (s / 0.5) as f32).collect();
    let shift: Vec<f32> = MEAN.iter().map(|m| ((m - 0.5) / 0.5) as f32).collect();
    let per_channel = |v: Vec<f32>| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, (1, 3, 1, 1), xs.device())?.to_dtype(xs.dtype())?)
    };
    Ok(xs
        .broadcast_mul(&per_channel(scale)?)?
        .broadcast_add(&per_channel(shift)?)?)
}

/// Checks the `transform_input` option against the number of input channels.
pub(crate) fn check_transform(model: &str, transform_input: bool, in_channels: usize) -> Result<()> {
    if transform_input && in_channels != 3 {
        return Err(Error::config(format!(
            "{model}: transform_input maps ImageNet's RGB normalisation and needs 3 input channels, \
             got {in_channels}"
        )));
    }
    Ok(())
}

/// Both Inceptions' pre-logits: global average pool, flatten, dropout (in training).
pub(crate) fn pooled_pre_logits(
    avgpool: &AdaptiveAvgPool2d,
    dropout: &Dropout,
    features: &Tensor,
    train: bool,
) -> Result<Tensor> {
    let xs = avgpool.forward_t(features, train)?;
    let xs = Flatten::new().forward_t(&xs, train)?;
    dropout.forward_t(&xs, train)
}
