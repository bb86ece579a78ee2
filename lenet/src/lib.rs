//! # LeNet-5
//!
//! Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, *Gradient-based learning applied to document
//! recognition*, Proc. IEEE 86(11), 1998.
//!
//! Input `[N, 1, 32, 32]` (28x28 MNIST digits padded by 2 on each side, as in the paper);
//! **61,706 parameters** with one input channel and ten classes.
//!
//! | # | layer  | key     | kernel / size  | output      | parameters |
//! |---|--------|---------|----------------|-------------|-----------:|
//! | 1 | conv   | `conv1` | 6 @ 5x5        | 6 x 28 x 28 |        156 |
//! | 2 | pool   | `pool1` | 2x2 stride 2   | 6 x 14 x 14 |          - |
//! | 3 | conv   | `conv2` | 16 @ 5x5       | 16 x 10 x 10|      2,416 |
//! | 4 | pool   | `pool2` | 2x2 stride 2   | 16 x 5 x 5  |          - |
//! | 5 | fc     | `fc1`   | 400 -> 120     | 120         |     48,120 |
//! | 6 | fc     | `fc2`   | 120 -> 84      | 84          |     10,164 |
//! | 7 | fc     | `fc3`   | 84 -> classes  | 10          |        850 |
//!
//! The paper's C5 is a 5x5 convolution over a 5x5 map, i.e. a fully connected layer; it is
//! `fc1` here, as in the PyTorch code this project's notes start from, with the same 48,120
//! parameters. The seeds disagree on the details, so both are selectable:
//! [`LeNetConfig::lenet5`] uses ReLU and average pooling (the default, the layer table of
//! the notes), [`LeNetConfig::lenet5_tanh`] the paper's tanh squashing with average
//! subsampling, [`LeNetConfig::lenet5_max`] ReLU with max pooling.
//!
//! The features entering the head are the 84 outputs of `fc2` (after its activation); the
//! head is `fc3`.

pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use lenet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::layers::{
    Activation, AvgPool2d, Conv2d, Conv2dConfig, ConvBlock, Flatten, Layer, Linear, MaxPool2d, PoolConfig,
};
use backbone::{check_input, Backbone, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// The pooling of the two subsampling layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// 2x2 average pooling, stride 2 (the paper's subsampling, without its trainable scale).
    Average,
    /// 2x2 max pooling, stride 2.
    Max,
}

/// A LeNet-5 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeNetConfig {
    /// Input channels (1 for MNIST).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Activation after every layer but the last.
    pub activation: Activation,
    /// Pooling after each convolution.
    pub pooling: Pooling,
}

impl LeNetConfig {
    /// ReLU and average pooling (the default).
    pub fn lenet5() -> Self {
        Self {
            in_channels: 1,
            num_classes: 10,
            activation: Activation::Relu,
            pooling: Pooling::Average,
        }
    }

    /// The paper's tanh with average subsampling.
    pub fn lenet5_tanh() -> Self {
        Self {
            activation: Activation::Tanh,
            ..Self::lenet5()
        }
    }

    /// ReLU with max pooling.
    pub fn lenet5_max() -> Self {
        Self {
            pooling: Pooling::Max,
            ..Self::lenet5()
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
}

impl Default for LeNetConfig {
    fn default() -> Self {
        Self::lenet5()
    }
}

/// LeNet-5; see the [crate documentation](crate).
pub struct LeNet {
    config: LeNetConfig,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    name: &'static str,
    conv1: ConvBlock,
    pool1: Box<dyn Layer>,
    conv2: ConvBlock,
    pool2: Box<dyn Layer>,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

const FEATURES: usize = 84;

impl LeNet {
    /// Builds the model; variables `conv1`, `conv2`, `fc1`, `fc2`, `fc3` (`.weight`, `.bias`).
    pub fn new(config: &LeNetConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        let pool = |name: &str| -> Result<Box<dyn Layer>> {
            let cfg = PoolConfig::new(2);
            Ok(match config.pooling {
                Pooling::Average => Box::new(AvgPool2d::new(cfg)?.named(name)),
                Pooling::Max => Box::new(MaxPool2d::new(cfg)?.named(name)),
            })
        };
        // Each convolution with its activation: one op for a ReLU (`ConvBlock` without norm).
        let conv_act = |conv| ConvBlock::new(conv, None, Some(config.activation));
        let name = match (config.activation, config.pooling) {
            (Activation::Tanh, _) => "lenet5_tanh",
            (_, Pooling::Max) => "lenet5_max",
            _ => "lenet5",
        };
        Ok(Self {
            input_type,
            config: *config,
            name,
            conv1: conv_act(Conv2d::new(
                Conv2dConfig::new(config.in_channels, 6, 5),
                vb.pp("conv1"),
            )?),
            pool1: pool("pool1")?,
            conv2: conv_act(Conv2d::new(Conv2dConfig::new(6, 16, 5), vb.pp("conv2"))?),
            pool2: pool("pool2")?,
            fc1: Linear::new(16 * 5 * 5, 120, vb.pp("fc1"))?,
            fc2: Linear::new(120, FEATURES, vb.pp("fc2"))?,
            fc3: Linear::new(FEATURES, config.num_classes, vb.pp("fc3"))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LeNetConfig {
        &self.config
    }
}

impl Backbone for LeNet {
    fn name(&self) -> &str {
        self.name
    }

    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: self.config.in_channels,
            min_size: (32, 32),
            fixed_size: Some((32, 32)),
            default_size: (32, 32),
        }
    }

    /// `[N, 16, 5, 5]`: the second convolution's map after its pooling.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_stages(xs, train)?.remove(1))
    }

    /// Flatten, `fc1` and `fc2` with their activations: the 84 features entering `fc3`.
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let act = self.config.activation;
        let xs = Flatten::new().forward_t(features, train)?;
        let xs = act.forward_t(&self.fc1.forward_t(&xs, train)?, train)?;
        act.forward_t(&self.fc2.forward_t(&xs, train)?, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.fc3.forward_t(pre_logits, train)
    }

    /// `pool1` (6 channels, 14x14) and `pool2` (16 channels, 5x5).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        vec![FeatureInfo::new("pool1", 6, 2), FeatureInfo::new("pool2", 16, 4)]
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(self.name, &self.input_spec(), &self.input_type, xs)?;
        let xs = self.conv1.forward_t(xs, train)?;
        let pool1 = self.pool1.forward_t(&xs, train)?;
        let xs = self.conv2.forward_t(&pool1, train)?;
        let pool2 = self.pool2.forward_t(&xs, train)?;
        Ok(vec![pool1, pool2])
    }

    fn num_features(&self) -> usize {
        FEATURES
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn head_prefix(&self) -> &str {
        "fc3"
    }

    /// `conv1` (with its activation), `pool1`, `conv2`, `pool2`.
    fn plain_features(&self) -> Option<Vec<backbone::layers::PlainLayer<'_>>> {
        let mut out = Vec::new();
        for layer in [&self.conv1 as &dyn Layer, &self.pool1, &self.conv2, &self.pool2] {
            out.extend(layer.plain()?);
        }
        Some(out)
    }
}
