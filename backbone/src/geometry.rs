//! Spatial arithmetic of a stack of convolutions and poolings: the smallest input a model
//! accepts, for [`InputSpec::min_size`](crate::InputSpec); and [`build_stack`], which turns a
//! paper's layer table of plain convolutions, ReLUs, LRNs and poolings (AlexNet's, ZFNet's and
//! NiN's `features`) into layers and that smallest input.

use crate::layers::{
    Activation, AvgPool2d, Conv2d, Conv2dConfig, ConvBlock, Dropout, LocalResponseNorm, MaxPool2d,
    PoolConfig, Sequential,
};
use crate::ops::{pool_output_size, Pool2dParams};
use crate::{Error, FeatureInfo, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// One row of a plain convolutional stack's layer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A convolution with a bias.
    Conv {
        /// Output channels.
        out: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
    },
    /// ReLU.
    Relu,
    /// `nn.LocalResponseNorm(5, 1e-4, 0.75, 2)` (AlexNet's and ZFNet's).
    Lrn,
    /// Max pooling with the stack's pooling configuration.
    MaxPool,
    /// Average pooling with the stack's pooling configuration.
    AvgPool,
    /// The stack's dropout.
    Dropout,
}

/// A [`Step::Conv`].
pub const fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> Step {
    Step::Conv {
        out,
        kernel,
        stride,
        padding,
    }
}

/// A stack built by [`build_stack`].
pub struct Stack {
    /// The layers, named `<prefix>.<row>` as in the reference state dict.
    pub layers: Sequential,
    /// Channels of the last convolution's output.
    pub out_channels: usize,
    /// The smallest square input side every layer accepts.
    pub min_size: usize,
    /// The feature stages: each pooling's output, and the last layer's output when the stack
    /// does not end with a pooling.
    pub stages: Stages,
}

/// Feature stages tapped from a [`Sequential`]: the positions of the layers whose outputs are
/// stages, with their descriptions.
#[derive(Debug, Clone, Default)]
pub struct Stages(Vec<(usize, FeatureInfo)>);

impl Stages {
    /// No stage yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Taps the output of layer `position` as the next stage.
    pub fn push(&mut self, position: usize, info: FeatureInfo) {
        self.0.push((position, info));
    }

    /// How many stages.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stages' descriptions (a model's `feature_info`).
    pub fn info(&self) -> Vec<FeatureInfo> {
        self.0.iter().map(|(_, info)| info.clone()).collect()
    }

    /// Runs `layers` and returns the stages' maps (a model's `forward_stages`).
    pub fn forward(&self, layers: &Sequential, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let at: Vec<usize> = self.0.iter().map(|(i, _)| *i).collect();
        Ok(layers.forward_collect(xs, train, &at)?.1)
    }
}

/// Builds the layers of `steps` from `in_channels`, row `i`'s variables under `vb.pp(i)` and
/// its name `<prefix>.<i>` (the prefix is `vb`'s), every pooling with `pool`; `model` begins
/// the error when no input size survives the layers.
pub fn build_stack(
    model: &str,
    steps: &[Step],
    in_channels: usize,
    pool: PoolConfig,
    dropout: Dropout,
    vb: VarBuilder,
) -> Result<Stack> {
    let mut layers = Sequential::new();
    let mut geometry = Vec::new();
    let mut channels = in_channels;
    let mut stages = Stages::new();
    let mut reduction = 1;
    for (i, step) in steps.iter().enumerate() {
        let key = format!("{}.{i}", vb.prefix());
        match *step {
            Step::Conv {
                out,
                kernel,
                stride,
                padding,
            } => {
                let cfg = Conv2dConfig::new(channels, out, kernel)
                    .stride(stride)
                    .padding(padding);
                let conv = Conv2d::new(cfg, vb.pp(i.to_string()))?;
                // A convolution followed by a ReLU runs as one block (one fused op).
                match steps.get(i + 1) == Some(&Step::Relu) {
                    true => layers.push(ConvBlock::new(conv, None, Some(Activation::Relu))),
                    false => layers.push(conv),
                }
                geometry.push(Geometry::Conv {
                    kernel,
                    stride,
                    padding,
                });
                channels = out;
                reduction *= stride;
            }
            // Already in the convolution's block.
            Step::Relu if i > 0 && matches!(steps[i - 1], Step::Conv { .. }) => {}
            Step::Relu => layers.push(Activation::Relu),
            Step::Lrn => layers.push(LocalResponseNorm::new(5, 1e-4, 0.75, 2.0)?.named(key)),
            Step::MaxPool | Step::AvgPool => {
                if *step == Step::MaxPool {
                    layers.push(MaxPool2d::new(pool)?.named(key.clone()));
                } else {
                    layers.push(AvgPool2d::new(pool)?.named(key.clone()));
                }
                geometry.push(Geometry::Pool(pool.params()));
                reduction *= pool.params().stride.0;
                stages.push(layers.len() - 1, FeatureInfo::new(key, channels, reduction));
            }
            Step::Dropout => layers.push(dropout),
        }
    }
    if !matches!(steps.last(), Some(Step::MaxPool | Step::AvgPool)) && !layers.is_empty() {
        let last = format!("{}.{}", vb.prefix(), steps.len() - 1);
        stages.push(layers.len() - 1, FeatureInfo::new(last, channels, reduction));
    }
    Ok(Stack {
        layers,
        out_channels: channels,
        min_size: min_input_size(model, &geometry)?,
        stages,
    })
}

/// The spatial arithmetic of one square layer, to compute the smallest accepted input.
#[derive(Debug, Clone, Copy)]
pub enum Geometry {
    /// A convolution: `(input + 2 padding - kernel) / stride + 1`, none when the padded input
    /// is smaller than the kernel.
    Conv {
        /// Kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
    },
    /// A pooling (its first, height, parameters), with PyTorch's output size.
    Pool(Pool2dParams),
}

impl Geometry {
    /// The output side of the layer for an input side `input`, or `None` when the input is
    /// too small.
    pub fn output(&self, input: usize) -> Option<usize> {
        match *self {
            Geometry::Conv {
                kernel,
                stride,
                padding,
            } => (input + 2 * padding).checked_sub(kernel).map(|n| n / stride + 1),
            Geometry::Pool(p) => pool_output_size(input, p.kernel.0, p.stride.0, p.padding.0, p.ceil_mode),
        }
    }
}

/// The smallest square side that survives every layer (the layers are square, so it is the
/// minimum height and width alike). The error, when no side up to 4096 survives, begins with
/// `model`: "`model`: no input size up to 4096 survives the layers".
pub fn min_input_size(model: &str, layers: &[Geometry]) -> Result<usize> {
    (1..=4096)
        .find(|&n| layers.iter().try_fold(n, |n, g| g.output(n)).is_some())
        .ok_or_else(|| Error::config(format!("{model}: no input size up to 4096 survives the layers")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::PoolConfig;

    #[test]
    fn min_input_size_of_convolutions_and_poolings() {
        let conv = |kernel, stride, padding| Geometry::Conv {
            kernel,
            stride,
            padding,
        };
        // No layers: any side.
        assert_eq!(min_input_size("m", &[]).unwrap(), 1);
        // 11x11 stride 4, then a 3x3 stride-2 pooling (floor mode): 11 + 4 * 2 = 19.
        let floor = PoolConfig::new(3).stride(2).params();
        assert_eq!(
            min_input_size("m", &[conv(11, 4, 0), Geometry::Pool(floor)]).unwrap(),
            19
        );
        // Padding 2 lets the 5x5 kernel take a 1x1 input.
        assert_eq!(conv(5, 1, 2).output(1), Some(1));
        assert_eq!(conv(5, 1, 0).output(4), None);
        // A kernel no input up to 4096 can fill.
        let err = min_input_size("Net", &[conv(5000, 1, 0)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("Net: no input size up to 4096 survives the layers"),
            "{err}"
        );
    }
}
