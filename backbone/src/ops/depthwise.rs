//! Depthwise 2-d convolution: the direct CPU kernels of [`kernels::depthwise`] as candle
//! custom ops, forward and backward.
//!
//! candle 0.11 runs a grouped convolution as one convolution per group, one after the other,
//! and [`crate::ops::conv2d`]'s backward loops over the groups too. A depthwise convolution
//! (`groups == in_channels`, MobileNet's and EfficientNet's `conv_dw`) has as many groups as
//! channels (up to 3,840 in EfficientNet-B7), so that path runs thousands of tiny im2col +
//! gemm calls per layer. [`depthwise_conv2d`] computes the same thing directly: every output
//! plane is a sum of `kh * kw` shifted, scaled copies of one input plane, with the planes
//! spread over the rayon thread pool.
//!
//! * Forward: `out[n, c*m + j] = sum_{ky, kx} w[c*m + j, 0, ky, kx] * x[n, c, oh*s + ky*d - p,
//!   ow*s + kx*d - p]` for a channel multiplier `m >= 1` (`out_channels = m * in_channels`),
//!   zero padding, PyTorch's semantics (cross-correlation, `groups = in_channels`).
//! * Backward: two more custom ops, the input gradient (each input plane gathers the
//!   gradients of its `m` output planes through the kernel) and the weight gradient (per batch
//!   element and output channel, reduced over the batch in a fixed order, so results are
//!   deterministic). Second-order gradients are not supported.
//!
//! The kernels run on the CPU in `f32` and `f64` and read their inputs through the candle
//! [`Layout`] (non-contiguous inputs are gathered first). Tensors on another device or of
//! another dtype take the previous path, candle's grouped convolution through
//! [`crate::ops::conv2d`], so results and gradients are the same everywhere.

use super::conv_cpu::{contiguous, kernel_err, Float};
use crate::ops::{conv2d, ConvParams};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use kernels::conv::ConvGeometry;
use kernels::depthwise::{forward, input_grad, weight_grad};

pub use kernels::depthwise::DepthwiseParams;

/// `xs` `[N, C, H, W]` convolved with `weight` `[m * C, 1, kh, kw]`, each input channel by
/// its own `m` filters, as PyTorch's `F.conv2d(xs, weight, stride=s, padding=p, dilation=d,
/// groups=C)`; differentiable w.r.t. both arguments.
///
/// On the CPU in `f32` / `f64` this runs direct kernels, parallel over the `N * C * m` output
/// planes: every output plane is a sum of `kh * kw` shifted, scaled copies of one input plane
/// (no im2col, no per-channel convolution calls). The backward pass is two more kernels, the
/// input gradient and the weight gradient (reduced over the batch in a fixed order, so results
/// are deterministic); second-order gradients are not supported. Inputs may be
/// non-contiguous. On other devices or dtypes it falls back to [`crate::ops::conv2d`]
/// (candle's grouped convolution, padding explicitly when the two axes differ).
pub fn depthwise_conv2d(xs: &Tensor, weight: &Tensor, p: DepthwiseParams) -> Result<Tensor> {
    let out = depthwise_any(xs, weight, p)?;
    crate::trace::record(&out, || crate::trace::TracedOp::Conv {
        input: xs.clone(),
        weight: weight.clone(),
        bias: None,
        stride: (p.stride, p.stride),
        padding: p.padding,
        dilation: (p.dilation, p.dilation),
        groups: xs.dim(1).unwrap_or(1),
        relu: false,
    });
    Ok(out)
}

/// [`depthwise_conv2d`] on the path the tensors take.
fn depthwise_any(xs: &Tensor, weight: &Tensor, p: DepthwiseParams) -> Result<Tensor> {
    let geometry = kernels::depthwise::geometry(xs.dims(), weight.dims(), p).map_err(kernel_err)?;
    let native = xs.device().is_cpu()
        && weight.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == xs.dtype();
    if native {
        return xs.apply_op2(weight, DepthwiseConv2d { geometry });
    }
    let (xs, padding) = if p.padding.0 == p.padding.1 {
        (xs.clone(), p.padding.0)
    } else {
        let padded =
            xs.pad_with_zeros(2, p.padding.0, p.padding.0)?
                .pad_with_zeros(3, p.padding.1, p.padding.1)?;
        (padded, 0)
    };
    let params = ConvParams {
        padding,
        stride: p.stride,
        dilation: p.dilation,
        groups: geometry.cin(),
    };
    conv2d(&xs, weight, params)
}

// ---------------------------------------------------------------------------------------------
// Custom ops.

/// Which of the three passes a [`DepthwiseOp`] computes, with the dims of its two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// (input, weight) -> output.
    Forward,
    /// (output gradient, weight) -> input gradient.
    InputGrad,
    /// (input, output gradient) -> weight gradient.
    WeightGrad,
}

/// One pass of the depthwise convolution as a candle custom op.
#[derive(Debug, Clone, Copy)]
struct DepthwiseOp {
    geometry: ConvGeometry,
    pass: Pass,
}

/// The forward op, whose backward runs the two gradient ops.
#[derive(Debug, Clone, Copy)]
struct DepthwiseConv2d {
    geometry: ConvGeometry,
}

impl DepthwiseOp {
    fn run<T: Float>(&self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let name = self.name();
        let (out, dims) = match self.pass {
            Pass::Forward => {
                let x = contiguous(name, a, la, g.input_dims())?;
                let w = contiguous(name, b, lb, g.weight_dims())?;
                (forward(g, &x, &w).map_err(kernel_err)?, g.output_dims())
            }
            Pass::InputGrad => {
                let grad = contiguous(name, a, la, g.output_dims())?;
                let w = contiguous(name, b, lb, g.weight_dims())?;
                (input_grad(g, &grad, &w).map_err(kernel_err)?, g.input_dims())
            }
            Pass::WeightGrad => {
                let x = contiguous(name, a, la, g.input_dims())?;
                let grad = contiguous(name, b, lb, g.output_dims())?;
                (weight_grad(g, &x, &grad).map_err(kernel_err)?, g.weight_dims())
            }
        };
        Ok((T::to_cpu_storage_owned(out), Shape::from(dims.to_vec())))
    }
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "depthwise_conv2d",
            Pass::InputGrad => "depthwise_conv2d_input_grad",
            Pass::WeightGrad => "depthwise_conv2d_weight_grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name(), (s1 => a, s2 => b), self.run(a, l1, b, l2))
    }
}

impl CustomOp2 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "depthwise_conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        DepthwiseOp {
            geometry: self.geometry,
            pass: Pass::Forward,
        }
        .cpu_fwd(s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = |pass| DepthwiseOp {
            geometry: self.geometry,
            pass,
        };
        let grad_x = if xs.track_op() {
            Some(grad.apply_op2_no_bwd(weight, &op(Pass::InputGrad))?)
        } else {
            None
        };
        let grad_w = if weight.track_op() {
            Some(xs.apply_op2_no_bwd(grad, &op(Pass::WeightGrad))?)
        } else {
            None
        };
        Ok((grad_x, grad_w))
    }
}
