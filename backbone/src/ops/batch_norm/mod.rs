//! Batch normalisation: fused CPU kernels for training (batch statistics) and eval (running
//! statistics), forward and backward, with the composite candle path as the fallback.
//!
//! The composite path ([`batch_norm_train_reference`], [`batch_norm_eval_reference`]) is
//! about seven candle passes in training (sum, subtract, square, sum, divide, scale, shift),
//! each allocating, and autograd walks back through all of them. On the CPU, in `f32` and
//! `f64`, with a contiguous `[N, C, H, W]` (or `[N, C]`) input, [`batch_norm_train`] and
//! [`batch_norm_eval`] instead run:
//!
//! * training forward: one pass computing each channel's mean and biased variance (sums of
//!   values shifted by the channel's first value, against cancellation; vectorised in the
//!   element type over blocks of 256 values, the blocks accumulated in `f64`), then one pass
//!   writing `y = (x - mean) * invstd * w + b`;
//! * training backward: one pass reducing `sum(dy)` and `sum(dy * xhat)` per channel, then one
//!   pass writing `dx = w * invstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)`
//!   (`M = N * H * W`); `dw = sum(dy * xhat)`, `db = sum(dy)`;
//! * eval forward: one pass `y = (x - running_mean) * invstd * w + b`; backward: one pass
//!   `dx = dy * w * invstd` and, only if the weight or bias needs a gradient, one reduction
//!   for `dw = sum(dy * xhat)`, `db = sum(dy)`. The running statistics are read as constants:
//!   no gradient flows into them (they are buffers, never trained; the composite path gives
//!   them gradients nobody reads).
//! * eval forward with ReLU ([`batch_norm_eval_relu`]): one pass `y = max((x - running_mean) *
//!   invstd * w + b, 0)` (NaN propagated); backward from the saved output: one pass
//!   `dx = dy * w * invstd * (y > 0)` when only the input needs a gradient, otherwise the
//!   masked gradient `dy * (y > 0)` (one pass) goes through the eval backward above.
//!
//! Every kernel runs over the channels (reductions) or blocks of planes (writes) on the rayon
//! pool, allocates only its output, and reads its inputs in place. Gradients are returned only
//! for the inputs that need them; second-order gradients are not supported. Other devices,
//! dtypes and layouts take the composite path, whose results and gradients are the same.
//!
//! This module holds the public wrappers and the dispatch; [`kernels::batch_norm`] the CPU
//! kernels, `custom_ops` the candle custom ops around them, `reference` the composite path.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use std::sync::Arc;

use super::conv_cpu::kernel_err;
use super::relu::{relu, relu_backward};

mod custom_ops;
mod reference;

use ::kernels::batch_norm::*;
use custom_ops::*;

/// The element types of the ops, with their exact widening to `f64`.
trait Elem: super::conv_cpu::Float {
    fn wide(self) -> f64 {
        ::kernels::Float::to_f64(self)
    }
}

impl Elem for f32 {}
impl Elem for f64 {}

/// The storage behind a contiguous layout of `len` elements.
fn contiguous<'a, T>(op: &str, data: &'a [T], layout: &Layout, len: usize) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) if end - start == len => crate::ops::contiguous_elements(op, data, layout),
        _ => bail!("{op}: expected a contiguous tensor of {len} elements, got {layout:?}"),
    }
}

/// The `[N, C, HW]` geometry of a layout of rank 2 or 4 with `c` channels.
fn planes(op: &str, layout: &Layout, c: usize) -> Result<Planes> {
    Planes::new(op, layout.dims(), c).map_err(kernel_err)
}
pub use reference::{batch_norm_eval_reference, batch_norm_train_reference};

/// The batch statistics of a training pass, per channel, detached, in the input's dtype.
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// The mean over `N * H * W` values.
    pub mean: Tensor,
    /// The biased variance (divided by `N * H * W`).
    pub var: Tensor,
}

/// Batch normalisation with batch statistics (training mode) of `xs` (`[N, C, H, W]` or
/// `[N, C]`), like `torch.nn.functional.batch_norm(training=True)` without the running
/// statistics: `y = (x - mean) / sqrt(var + eps) * weight + bias` with each channel's mean and
/// biased variance, `affine` being `(weight, bias)`, both `[C]`. Differentiable w.r.t. `xs`
/// and the affine parameters. Returns the output and the batch statistics (for the running
/// averages).
///
/// Fused CPU kernels in `f32` / `f64` for contiguous inputs (see the module docs), the
/// composite [`batch_norm_train_reference`] otherwise.
pub fn batch_norm_train(
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    let c = channels("batch_norm_train", xs)?;
    if !native(xs, affine, &[]) {
        return batch_norm_train_reference(xs, affine, eps);
    }
    if xs.elem_count() == 0 {
        bail!(
            "batch_norm_train: need at least one value per channel, got shape {:?}",
            xs.dims()
        )
    }
    let moments = xs.apply_op1_no_bwd(&Moments { c })?.to_vec2::<f64>()?;
    let (mean, var) = match moments.as_slice() {
        [mean, var] => (mean.clone(), var.clone()),
        _ => bail!("batch_norm_train: the moments op returned {} rows", moments.len()),
    };
    let invstd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let stats = BatchStats {
        mean: Tensor::from_vec(mean.clone(), c, xs.device())?.to_dtype(xs.dtype())?,
        var: Tensor::from_vec(var, c, xs.device())?.to_dtype(xs.dtype())?,
    };
    let norm = Norm {
        c,
        mean,
        invstd,
        batch: true,
        relu: false,
    };
    Ok((normalize(xs, affine, norm)?, stats))
}

/// Batch normalisation with running statistics (eval mode): `y = (x - running_mean) /
/// sqrt(running_var + eps) * weight + bias`. Differentiable w.r.t. `xs` and the affine
/// parameters; on the fused path the running statistics are constants (no gradient).
///
/// Fused CPU kernels in `f32` / `f64` for contiguous inputs (see the module docs), the
/// composite [`batch_norm_eval_reference`] otherwise.
pub fn batch_norm_eval(
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let c = channels("batch_norm_eval", xs)?;
    let out = if !native(xs, affine, &[running_mean, running_var]) {
        batch_norm_eval_reference(xs, affine, running_mean, running_var, eps)?
    } else {
        normalize(xs, affine, eval_norm(c, running_mean, running_var, eps, false)?)?
    };
    record_eval(&out, xs, affine, running_mean, running_var, eps, false);
    Ok(out)
}

/// Records an eval-mode batch norm's meaning for an exporter ([`crate::trace`]).
fn record_eval(
    out: &Tensor,
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
) {
    crate::trace::record(out, || crate::trace::TracedOp::BatchNorm {
        input: xs.clone(),
        affine: affine.map(|(w, b)| (w.clone(), b.clone())),
        mean: running_mean.clone(),
        var: running_var.clone(),
        eps,
        relu,
    });
}

/// `relu(batch_norm_eval(xs, ...))` in one pass (see the module docs); differentiable w.r.t.
/// `xs` and the affine parameters like [`batch_norm_eval`] followed by
/// [`super::relu`], with the same gradients (PyTorch's: none where the output is 0).
///
/// Fused CPU kernels in `f32` / `f64` for contiguous inputs, [`batch_norm_eval`] then
/// [`super::relu`] otherwise.
pub fn batch_norm_eval_relu(
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let c = channels("batch_norm_eval_relu", xs)?;
    let out = if !native(xs, affine, &[running_mean, running_var]) {
        relu(&batch_norm_eval(xs, affine, running_mean, running_var, eps)?)?
    } else {
        normalize(xs, affine, eval_norm(c, running_mean, running_var, eps, true)?)?
    };
    record_eval(&out, xs, affine, running_mean, running_var, eps, true);
    Ok(out)
}

/// The per-channel `(mean, scale, shift)` of the eval pass, `y = (x - mean) * scale + shift`
/// (`scale = weight / sqrt(running_var + eps)`, `shift = bias`), in `f64`, computed as the
/// fused kernel computes them (so that [`super::ConvEpilogue`] gives its bits).
pub fn batch_norm_eval_coefficients(
    affine: Option<(&Tensor, &Tensor)>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let c = running_mean.elem_count();
    let norm = eval_norm(c, running_mean, running_var, eps, false)?;
    let (mut scale, mut shift) = (norm.invstd, vec![0.0; c]);
    if let Some((w, b)) = affine {
        let w = w.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let b = b.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if w.len() != c || b.len() != c || norm.mean.len() != c || scale.len() != c {
            bail!("batch_norm_eval_coefficients: expected {c} values in every per-channel vector")
        }
        for (k, (&w, &b)) in w.iter().zip(&b).enumerate() {
            scale[k] *= w;
            shift[k] = b;
        }
    }
    Ok((norm.mean, scale, shift))
}

/// The eval-mode statistics of `c` channels.
fn eval_norm(c: usize, running_mean: &Tensor, running_var: &Tensor, eps: f64, relu: bool) -> Result<Norm> {
    let mean = running_mean.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let var = running_var.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let invstd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    Ok(Norm {
        c,
        mean,
        invstd,
        batch: false,
        relu,
    })
}

/// The channel count of a rank-2 or rank-4 floating-point input.
fn channels(op: &str, xs: &Tensor) -> Result<usize> {
    if !xs.dtype().is_float() {
        bail!("{op}: expected a floating-point input, got {:?}", xs.dtype())
    }
    match *xs.dims() {
        [_, c] | [_, c, _, _] => Ok(c),
        ref dims => bail!("{op}: expected an [N, C, H, W] or [N, C] input, got shape {dims:?}"),
    }
}

/// Whether the fused kernels apply: everything on the CPU, `xs` contiguous in `f32` / `f64`,
/// the per-channel tensors `[C]` (the affine ones contiguous and of `xs`'s dtype).
fn native(xs: &Tensor, affine: Option<(&Tensor, &Tensor)>, stats: &[&Tensor]) -> bool {
    let dims = xs.dims();
    let c = dims.get(1).copied().unwrap_or(0);
    let vector = |t: &Tensor| t.device().is_cpu() && t.dims() == [c];
    xs.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && matches!(dims.len(), 2 | 4)
        && xs.is_contiguous()
        && affine.is_none_or(|(w, b)| {
            [w, b]
                .iter()
                .all(|t| vector(t) && t.dtype() == xs.dtype() && t.is_contiguous())
        })
        && stats.iter().all(|t| vector(t))
}

/// Runs the forward op over `xs` (and the affine parameters).
fn normalize(xs: &Tensor, affine: Option<(&Tensor, &Tensor)>, norm: Norm) -> Result<Tensor> {
    let norm = Arc::new(norm);
    match affine {
        Some((w, b)) => xs.apply_op3(w, b, NormalizeAffine(norm)),
        None => xs.apply_op1(NormalizePlain(norm)),
    }
}
