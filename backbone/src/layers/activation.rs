//! Element-wise activations and flatten.

use super::Layer;
use crate::{ops, Error, Result};
use candle_core::Tensor;

/// An element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)` (MobileNet, EfficientNet in torchvision's older code).
    Relu6,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// `x * sigmoid(x)` (EfficientNet).
    Silu,
}

impl Layer for Activation {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(match self {
            // PyTorch's gradient (none where the input is exactly 0; candle's relu passes it),
            // one pass each way on the CPU: see `ops::relu`.
            Activation::Relu => ops::relu(xs)?,
            Activation::Relu6 => xs.clamp(0f32, 6f32)?,
            Activation::Tanh => xs.tanh()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(xs)?,
            Activation::Silu => xs.silu()?,
        })
    }

    fn plain(&self) -> Option<Vec<super::PlainLayer<'_>>> {
        Some(vec![super::PlainLayer::Activation(*self)])
    }
}

/// Flattens every dimension from `start_dim` on: `[N, C, H, W]` -> `[N, C*H*W]` (PyTorch's
/// `nn.Flatten()` with its default `start_dim = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flatten {
    start_dim: usize,
}

impl Default for Flatten {
    fn default() -> Self {
        Self { start_dim: 1 }
    }
}

impl Flatten {
    /// Flatten from dimension 1.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for Flatten {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        if xs.rank() <= self.start_dim {
            return Err(Error::input_shape(
                "flatten",
                format!("a tensor of rank > {}", self.start_dim),
                xs.dims(),
            ));
        }
        Ok(xs.flatten_from(self.start_dim)?)
    }
}
