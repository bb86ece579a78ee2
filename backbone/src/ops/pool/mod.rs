//! 2-d pooling with PyTorch's exact semantics and correct gradients: see the [`ops`](crate::ops)
//! module docs.
//!
//! This module holds the configuration, the output-size rule and the public wrappers, which
//! send CPU tensors to the custom ops (`custom_ops`, around the CPU kernels of `kernels`) and
//! other tensors to `device`, the same poolings composed of candle tensor ops.

mod custom_ops;
mod device;
#[cfg(test)]
mod tests;

use candle_core::{bail, DType, Result, Tensor};
use custom_ops::{AdaptiveAvgPool2dOp, AvgPool2dOp, MaxPool2dOp};

/// The configuration of a 2-d max or average pooling, as in `torch.nn.MaxPool2d` /
/// `torch.nn.AvgPool2d` (without dilation). Pairs are `(height, width)`.
///
/// Build one with [`Pool2dParams::new`] (PyTorch's defaults) and the struct-update syntax, or
/// spell out every field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pool2dParams {
    /// The window size; both values must be at least 1.
    pub kernel: (usize, usize),
    /// The step between windows; both values must be at least 1 (PyTorch's default is the
    /// kernel size).
    pub stride: (usize, usize),
    /// Implicit padding on both sides of each spatial dimension; at most half the kernel, as
    /// PyTorch requires. Max pooling pads with `-inf`, average pooling with zeros.
    pub padding: (usize, usize),
    /// Use `ceil` instead of `floor` to compute the output size, so a last partial window is
    /// kept (as long as it starts inside the input or the left padding).
    pub ceil_mode: bool,
    /// Average pooling only: whether the zero padding counts in the divisor. PyTorch's default
    /// is `true`. Ignored by max pooling.
    pub count_include_pad: bool,
}

impl Pool2dParams {
    /// PyTorch's defaults for a `kernel`: stride = kernel, no padding, floor mode,
    /// `count_include_pad = true`.
    pub fn new(kernel: (usize, usize)) -> Self {
        Self {
            kernel,
            stride: kernel,
            padding: (0, 0),
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Checks the configuration itself (independently of any input): kernel and stride at
    /// least 1, padding at most half the kernel (PyTorch's `pool2d_shape_check`).
    pub fn validate(&self) -> Result<()> {
        let Self {
            kernel,
            stride,
            padding,
            ..
        } = *self;
        if kernel.0 == 0 || kernel.1 == 0 {
            bail!("pool2d: kernel size must be at least 1, got {kernel:?}")
        }
        if stride.0 == 0 || stride.1 == 0 {
            bail!("pool2d: stride must be at least 1, got {stride:?}")
        }
        if padding.0 > kernel.0 / 2 || padding.1 > kernel.1 / 2 {
            bail!("pool2d: padding {padding:?} must be at most half of the kernel size {kernel:?}")
        }
        Ok(())
    }

    /// The output `(height, width)` for an input of spatial size `(h, w)`, or `None` when the
    /// configuration is invalid or the input too small (see [`pool_output_size`]).
    pub fn output_size(&self, (h, w): (usize, usize)) -> Option<(usize, usize)> {
        let oh = pool_output_size(h, self.kernel.0, self.stride.0, self.padding.0, self.ceil_mode)?;
        let ow = pool_output_size(w, self.kernel.1, self.stride.1, self.padding.1, self.ceil_mode)?;
        Some((oh, ow))
    }

    /// The smallest input `(height, width)` this (valid) configuration accepts: the smallest
    /// sizes for which [`Pool2dParams::output_size`] is `Some`.
    pub fn min_input_size(&self) -> (usize, usize) {
        let min = |k: usize, s: usize, p: usize| {
            // Floor mode needs `input + 2p >= k`; ceil mode also keeps a window that overhangs
            // the padded input by less than a stride.
            let slack = if self.ceil_mode { s.saturating_sub(1) } else { 0 };
            k.saturating_sub(p.saturating_mul(2)).saturating_sub(slack).max(1)
        };
        (
            min(self.kernel.0, self.stride.0, self.padding.0),
            min(self.kernel.1, self.stride.1, self.padding.1),
        )
    }
}

/// The output size of a pooling along one dimension, with PyTorch's exact rule
/// (`pooling_output_shape` in `aten/src/ATen/native/Pool.h`, dilation 1):
///
/// `out = floor((input + 2 * padding - kernel + (ceil_mode ? stride - 1 : 0)) / stride) + 1`,
/// and in ceil mode the last window must start inside the input or its left padding
/// (`(out - 1) * stride < input + padding`), else `out` is decremented.
///
/// Returns `None` when PyTorch would raise: `kernel` or `stride` is 0, `padding > kernel / 2`,
/// the input is empty, or the output would be smaller than 1.
pub fn pool_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || padding > kernel / 2 || input == 0 {
        return None;
    }
    let (i, k, s, p) = (input as i128, kernel as i128, stride as i128, padding as i128);
    let numerator = i + 2 * p - k + if ceil_mode { s - 1 } else { 0 };
    let mut out = numerator.div_euclid(s) + 1;
    if ceil_mode && (out - 1) * s >= i + p {
        out -= 1;
    }
    if out < 1 {
        return None;
    }
    usize::try_from(out).ok()
}

/// 2-d max pooling of an `(N, C, H, W)` tensor, like `torch.nn.functional.max_pool2d` (no
/// dilation).
///
/// Padding acts as `-inf`: padded positions never win. Within a window the maximum is found
/// scanning row by row, keeping the FIRST maximum, except that a NaN always wins
/// (`val > max || val.is_nan()`, as PyTorch's CPU kernel). The backward pass routes each
/// output gradient to that element, accumulating where windows overlap, which is exactly
/// PyTorch's gradient (ties included).
///
/// The input may be non-contiguous. See the [`ops`](crate::ops) docs for devices and dtypes.
pub fn max_pool2d(xs: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    let out = checked_output_size("max_pool2d", xs, p)?;
    let ys = match xs.device().is_cpu() {
        true => in_float(xs, |xs| xs.apply_op1(MaxPool2dOp { p: *p, out }))?,
        false => in_float(xs, |xs| device::max_pool2d(xs, p, out))?,
    };
    crate::trace::record(&ys, || crate::trace::TracedOp::MaxPool {
        input: xs.clone(),
        params: *p,
    });
    Ok(ys)
}

/// [`max_pool2d`] composed of differentiable candle tensor ops, on any device: the path that
/// CUDA and Metal tensors take (usable on the CPU too, where it is slower than the kernels).
/// Same outputs and gradients, ties and NaN included.
pub fn max_pool2d_reference(xs: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    let out = checked_output_size("max_pool2d", xs, p)?;
    in_float(xs, |xs| device::max_pool2d(xs, p, out))
}

/// 2-d average pooling of an `(N, C, H, W)` tensor, like `torch.nn.functional.avg_pool2d`
/// (no `divisor_override`).
///
/// Each output is the sum of the real input elements of its window divided by:
///
/// * with `count_include_pad`, the window size clipped to the padded input,
///   `(min(start + k, H + pad) - start)` per dimension with `start` in unpadded coordinates
///   (possibly negative): padding counts, the `ceil_mode` overhang past the padding does not;
/// * without it, the number of real input elements in the window.
///
/// The backward pass spreads each output gradient over its window with the same divisor.
/// The input may be non-contiguous. See the [`ops`](crate::ops) docs for devices and dtypes.
pub fn avg_pool2d(xs: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    let out = checked_output_size("avg_pool2d", xs, p)?;
    let ys = match xs.device().is_cpu() {
        true => in_float(xs, |xs| xs.apply_op1(AvgPool2dOp { p: *p, out }))?,
        false => in_float(xs, |xs| device::avg_pool2d(xs, p, out))?,
    };
    crate::trace::record(&ys, || crate::trace::TracedOp::AvgPool {
        input: xs.clone(),
        params: *p,
    });
    Ok(ys)
}

/// [`avg_pool2d`] composed of differentiable candle tensor ops (two matmuls with constant
/// averaging matrices), on any device: the path that CUDA and Metal tensors take.
pub fn avg_pool2d_reference(xs: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    let out = checked_output_size("avg_pool2d", xs, p)?;
    in_float(xs, |xs| device::avg_pool2d(xs, p, out))
}

/// 2-d adaptive average pooling of an `(N, C, H, W)` tensor to `out = (oh, ow)`, like
/// `torch.nn.functional.adaptive_avg_pool2d`.
///
/// Output row `i` averages input rows `floor(i * H / oh) .. ceil((i + 1) * H / oh)` (and the
/// same for columns): windows may overlap and differ in size, and `out` may exceed the input
/// size. The backward pass spreads each output gradient evenly over its window.
/// The input may be non-contiguous. See the [`ops`](crate::ops) docs for devices and dtypes.
pub fn adaptive_avg_pool2d(xs: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    check_adaptive(xs, out)?;
    let ys = match xs.device().is_cpu() {
        true => in_float(xs, |xs| xs.apply_op1(AdaptiveAvgPool2dOp { out }))?,
        false => in_float(xs, |xs| device::adaptive_avg_pool2d(xs, out))?,
    };
    crate::trace::record(&ys, || crate::trace::TracedOp::AdaptiveAvgPool {
        input: xs.clone(),
        out,
    });
    Ok(ys)
}

/// [`adaptive_avg_pool2d`] composed of differentiable candle tensor ops (two matmuls with
/// constant averaging matrices), on any device: the path that CUDA and Metal tensors take.
pub fn adaptive_avg_pool2d_reference(xs: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    check_adaptive(xs, out)?;
    in_float(xs, |xs| device::adaptive_avg_pool2d(xs, out))
}

// ---------------------------------------------------------------------------------------------
// Checks and dtypes.

/// Checks an adaptive pooling's input and output size.
fn check_adaptive(xs: &Tensor, out: (usize, usize)) -> Result<()> {
    let (h, w) = check_input("adaptive_avg_pool2d", xs)?;
    if out.0 == 0 || out.1 == 0 {
        bail!("adaptive_avg_pool2d: output size must be at least 1x1, got {out:?}")
    }
    if h == 0 || w == 0 {
        bail!(
            "adaptive_avg_pool2d: input must have a non-empty spatial size, got {:?}",
            xs.dims()
        )
    }
    Ok(())
}

fn check_input(op: &str, xs: &Tensor) -> Result<(usize, usize)> {
    match *xs.dims() {
        [_, _, h, w] => Ok((h, w)),
        ref dims => bail!("{op}: expected a 4-d (N, C, H, W) input, got shape {dims:?}"),
    }
}

/// Checks a max or average pooling's input and configuration: its output size.
fn checked_output_size(op: &str, xs: &Tensor, p: &Pool2dParams) -> Result<(usize, usize)> {
    let (h, w) = check_input(op, xs)?;
    p.validate()?;
    match p.output_size((h, w)) {
        Some(out) => Ok(out),
        None => {
            let (mh, mw) = p.min_input_size();
            bail!(
                "{op}: input of spatial size {h}x{w} is too small for kernel {:?}, stride {:?}, \
                 padding {:?}, ceil_mode {} (the output would be empty; need at least {mh}x{mw})",
                p.kernel,
                p.stride,
                p.padding,
                p.ceil_mode
            )
        }
    }
}

/// Runs `f` on an `f32`-or-`f64` version of `xs` (`f16` and `bf16` are converted to `f32`
/// and the result back, on `xs`'s device; the conversions are differentiable). Other dtypes
/// are an error.
fn in_float(xs: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    match xs.dtype() {
        DType::F32 | DType::F64 => f(xs),
        DType::F16 | DType::BF16 => f(&xs.to_dtype(DType::F32)?)?.to_dtype(xs.dtype()),
        other => bail!("pool2d: unsupported dtype {other:?}, expected f32, f64, f16 or bf16"),
    }
}
