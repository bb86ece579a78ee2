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
    /// `x * min(max(x + 3, 0), 6) / 6` (MobileNetV3; PyTorch's `F.hardswish`, its gradient
    /// included: `x / 3 + 1/2` strictly between -3 and 3, 0 at -3 and below, 1 at 3 and
    /// above).
    HardSwish,
    /// `min(max(x + 3, 0), 6) / 6` (MobileNetV3's squeeze-and-excitation gate; PyTorch's
    /// `F.hardsigmoid`, its gradient included: `1/6` strictly between -3 and 3, 0 elsewhere,
    /// the boundaries too).
    HardSigmoid,
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
            Activation::HardSwish => {
                let out = xs.mul(&hard_clamp(xs)?)?.affine(1.0 / 6.0, 0.0)?;
                // One op for an exporter (ONNX's `HardSwish`), not five element-wise passes.
                crate::trace::record(&out, || crate::trace::TracedOp::HardSwish { input: xs.clone() });
                out
            }
            Activation::HardSigmoid => {
                let out = hard_clamp(xs)?.affine(1.0 / 6.0, 0.0)?;
                crate::trace::record(&out, || crate::trace::TracedOp::HardSigmoid { input: xs.clone() });
                out
            }
        })
    }

    fn plain(&self) -> Option<Vec<super::PlainLayer<'_>>> {
        Some(vec![super::PlainLayer::Activation(*self)])
    }
}

/// `min(max(x + 3, 0), 6)` written as `(x + 3) * inside + 6 * above` with constant masks
/// (`inside`: `-3 < x < 3`; `above`: `x >= 3`), so that autograd gives PyTorch's gradients of
/// hard-swish and hard-sigmoid, whose backward kernels take both boundaries as outside. The
/// values equal the clamp's exactly (`x + 3` is 0 at -3 and 6 at 3). Where no gradient can be
/// asked of it (in [`crate::inference_mode`], or for an input that tracks none) and while an
/// ONNX export traces the model ([`crate::trace`]), the clamp itself: the same values in two
/// passes instead of ten.
fn hard_clamp(xs: &Tensor) -> Result<Tensor> {
    if crate::trace::is_recording() || crate::is_inference_mode() || !xs.track_op() {
        return Ok(xs.affine(1.0, 3.0)?.clamp(0f32, 6f32)?);
    }
    let dtype = xs.dtype();
    let inside = xs.gt(-3f64)?.mul(&xs.lt(3f64)?)?;
    let shifted = xs.affine(1.0, 3.0)?.mul(&inside.to_dtype(dtype)?)?;
    Ok(shifted.add(&xs.ge(3f64)?.to_dtype(dtype)?.affine(6.0, 0.0)?)?)
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
