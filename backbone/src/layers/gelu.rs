//! GELU, the exact (erf) form.

use super::Layer;
use crate::Result;
use candle_core::Tensor;

/// PyTorch's `nn.GELU()` with its default `approximate='none'`:
/// `x * Φ(x) = 0.5 x (1 + erf(x / sqrt(2)))` (not the tanh approximation). candle's
/// `gelu_erf`, whose backward candle's autograd provides (`0.5 (1 + erf(x / sqrt 2)) + x φ(x)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gelu;

impl Gelu {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl Layer for Gelu {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(xs.gelu_erf()?)
    }
}
