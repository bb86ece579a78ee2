//! Squeeze-and-excitation (Hu et al., 2018): channel attention from the globally pooled map.

use super::{Activation, Conv2d, Conv2dConfig, Layer};
use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// The hyper-parameters of a [`SqueezeExcite`] block: the squeeze width, the activation
/// between the two 1x1 convolutions, the gate, and the state-dict names of the convolutions.
///
/// The families spell the block differently and compute the same thing: timm's `SEModule`
/// (SE-ResNet, RegNet: `fc1`/`fc2`, ReLU, sigmoid), timm's EfficientNet/MobileNetV3
/// `SqueezeExcite` (`conv_reduce`/`conv_expand`; SiLU or ReLU, sigmoid or hard sigmoid),
/// torchvision's `SqueezeExcitation` (`fc1`/`fc2`).
#[derive(Debug, Clone, Copy)]
pub struct SqueezeExciteConfig {
    /// Channels of the map the block rescales.
    pub channels: usize,
    /// Channels after the first 1x1 convolution.
    pub squeeze: usize,
    /// Activation after the first convolution (default ReLU).
    pub act: Activation,
    /// Gate after the second convolution (default sigmoid).
    pub gate: Activation,
    /// Names of the reducing and the expanding convolution (default `fc1`, `fc2`).
    pub names: (&'static str, &'static str),
    /// Weight initialisation of fresh convolutions; `None`: PyTorch's default.
    pub weight_init: Option<Init>,
    /// Bias initialisation of fresh convolutions; `None`: PyTorch's default.
    pub bias_init: Option<Init>,
}

impl SqueezeExciteConfig {
    /// `channels` squeezed to `squeeze`, ReLU, sigmoid gate, convolutions `fc1` and `fc2`.
    pub fn new(channels: usize, squeeze: usize) -> Self {
        Self {
            channels,
            squeeze,
            act: Activation::Relu,
            gate: Activation::Sigmoid,
            names: ("fc1", "fc2"),
            weight_init: None,
            bias_init: None,
        }
    }

    /// Sets the activation between the convolutions.
    pub fn act(mut self, act: Activation) -> Self {
        self.act = act;
        self
    }

    /// Sets the gate.
    pub fn gate(mut self, gate: Activation) -> Self {
        self.gate = gate;
        self
    }

    /// Sets the names of the two convolutions (timm's EfficientNet: `conv_reduce`,
    /// `conv_expand`).
    pub fn names(mut self, reduce: &'static str, expand: &'static str) -> Self {
        self.names = (reduce, expand);
        self
    }

    /// Sets the initialisation of fresh convolutions.
    pub fn init(mut self, weight: Init, bias: Init) -> Self {
        self.weight_init = Some(weight);
        self.bias_init = Some(bias);
        self
    }
}

/// Squeeze-and-excitation: the global average of each channel, a 1x1 convolution down to
/// `squeeze` channels, the activation, a 1x1 convolution back up, the gate, and the input
/// scaled channel-wise by the result. Both convolutions have a bias.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    reduce: Conv2d,
    expand: Conv2d,
    act: Activation,
    gate: Activation,
}

impl SqueezeExcite {
    /// The block; its convolutions are `vb.pp(config.names.0)` and `vb.pp(config.names.1)`.
    pub fn new(config: SqueezeExciteConfig, vb: VarBuilder) -> Result<Self> {
        if config.channels == 0 || config.squeeze == 0 {
            return Err(Error::config(format!(
                "squeeze_excite: channels ({}) and squeeze ({}) must be positive",
                config.channels, config.squeeze
            )));
        }
        let conv = |cin, cout, name: &str| {
            let mut c = Conv2dConfig::new(cin, cout, 1);
            c.weight_init = config.weight_init;
            c.bias_init = config.bias_init;
            Conv2d::new(c, vb.pp(name))
        };
        Ok(Self {
            reduce: conv(config.channels, config.squeeze, config.names.0)?,
            expand: conv(config.squeeze, config.channels, config.names.1)?,
            act: config.act,
            gate: config.gate,
        })
    }
}

impl Layer for SqueezeExcite {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if xs.rank() != 4 {
            return Err(Error::input_shape("squeeze_excite", "[N, C, H, W]", xs.dims()));
        }
        let s = xs.mean_keepdim((2, 3))?;
        let s = self.act.forward_t(&self.reduce.forward_t(&s, train)?, train)?;
        let s = self.gate.forward_t(&self.expand.forward_t(&s, train)?, train)?;
        Ok(xs.broadcast_mul(&s)?)
    }
}
