//! Custom ops with forward and backward passes where candle's are missing or wrong.
//!
//! The CPU compute itself is the [`kernels`] crate's (slices, shapes, the rayon pool, the ISA
//! chosen at run time); this module holds the candle side: dispatch by device and dtype,
//! layouts gathered into slices, autograd, the composite fallbacks.
//!
//! # Pooling
//!
//! candle 0.11's built-in pooling is not usable for training:
//!
//! * `Tensor::max_pool2d`'s backward scales every gradient by `1 / (kh * kw)` when the kernel
//!   equals the stride, and has no backward at all for overlapping windows (3x3, stride 2);
//! * `Tensor::avg_pool2d`'s backward upsamples the gradient to the input size with nearest
//!   neighbour interpolation, which is wrong as soon as the windows do not tile the input
//!   exactly (odd sizes), and refuses overlapping windows;
//! * neither supports padding nor `ceil_mode`, and there is no adaptive pooling.
//!
//! [`max_pool2d`], [`avg_pool2d`] and [`adaptive_avg_pool2d`] follow
//! `torch.nn.functional.max_pool2d`, `avg_pool2d` and `adaptive_avg_pool2d` (PyTorch's CPU
//! kernels, `aten/src/ATen/native/cpu/MaxPoolKernel.cpp`, `AvgPoolKernel.cpp` and
//! `AdaptiveAvgPoolKernel.cpp`), forward and backward; [`Pool2dParams`] and
//! [`pool_output_size`] describe the configuration and PyTorch's output-size rule. They are
//! candle custom ops (`CustomOp1` for the forward passes, custom ops for the backward passes
//! too), so they take part in candle's autograd.
//!
//! ## Devices and dtypes
//!
//! On the CPU the pooling kernels run in `f32` and `f64`, parallel over `N * C` for large
//! tensors. Tensors on another device (CUDA, Metal) never leave it: they take
//! [`max_pool2d_reference`], [`avg_pool2d_reference`] and [`adaptive_avg_pool2d_reference`],
//! the same poolings composed of differentiable candle tensor ops, with the same outputs and
//! gradients (ties and NaN routed as the CPU kernels do) and candle's autograd for the
//! backward pass. Average pooling is two matmuls with constant averaging matrices (PyTorch's
//! divisor is a product of one factor per dimension); max pooling gathers the window taps with
//! `index_select`, width then height, and keeps one per output with `where_cond` masks computed
//! without gradient. `f16` and `bf16` inputs are converted to `f32` (on their device), pooled,
//! and converted back (the conversions are differentiable). Other dtypes are refused with an
//! error.
//!
//! # Convolution
//!
//! [`conv2d`] is candle's forward convolution with our own backward pass (candle's fails on
//! non-square inputs with stride 2 and computes the input gradient with a slow kernel)
//! everywhere but on the CPU in `f32` / `f64`, where it runs [`conv2d_cpu`]: im2col + gemm in
//! the tensors' NCHW order, forward, weight and input gradients as custom ops, parallel over
//! the batch. [`conv2d_reference`] is the candle path on any device.
//!
//! # Depthwise convolution
//!
//! [`depthwise_conv2d`] is a direct CPU kernel (forward, input and weight gradients, parallel
//! over the planes) for `groups == in_channels` convolutions, which candle runs as one
//! convolution per channel; other devices and dtypes fall back to [`conv2d`].
//!
//! # Batch normalisation
//!
//! [`batch_norm_train`] (batch statistics) and [`batch_norm_eval`] (running statistics) are
//! fused CPU kernels in `f32` / `f64`: two passes per direction instead of the composite
//! path's seven forward and about fifteen backward passes, parallel over the channels.
//! Other devices, dtypes and layouts take the composite candle path
//! ([`batch_norm_train_reference`], [`batch_norm_eval_reference`]). [`batch_norm_eval_relu`]
//! is the eval pass with a ReLU in the same pass (and its backward in one pass for the input).
//!
//! # ReLU
//!
//! [`relu`]: one pass forward, one pass backward from the saved output (PyTorch's gradient,
//! zero where the input is exactly 0), on the CPU in `f32` / `f64`; [`relu_reference`], the
//! composite form, elsewhere.
//!
//! # Convolution + batch norm (+ ReLU) in eval mode
//!
//! [`conv2d_cpu_fused`] runs [`conv2d_cpu`]'s forward kernel with a per-output-channel epilogue
//! ([`ConvEpilogue`]: the convolution's bias, batch norm with running statistics, ReLU) applied
//! to each tile of the output while it is still in the cache: the batch norm (and ReLU) passes
//! disappear. No gradient: [`crate::layers::ConvBlock`] uses it only when none is needed.
//!
//! # Local response normalisation
//!
//! [`local_response_norm`] is PyTorch's `local_response_norm`, composed of differentiable
//! candle ops (any device, autograd for free).

/// Matches the CPU storages of an op's arguments, which must all be `f32` or all `f64`: binds
/// each one's data to a name and evaluates `$body` once per type (a generic call, usually);
/// any other combination is an error naming the op and the dtypes. `$body` is a `Result`.
macro_rules! float_storages {
    ($op:expr, ($($s:ident => $v:ident),+), $body:expr) => {
        match ($($s,)+) {
            ($(candle_core::CpuStorage::F32($v),)+) => $body,
            ($(candle_core::CpuStorage::F64($v),)+) => $body,
            _ => Err(crate::ops::dtype_err(
                $op,
                &[$(candle_core::backend::BackendStorage::dtype($s)),+],
            )),
        }
    };
}

/// The elements of a CPU buffer behind a contiguous `layout` (an error naming `op` for any
/// other layout, or one that does not fit the buffer).
fn contiguous_elements<'a, T>(
    op: &str,
    data: &'a [T],
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => match data.get(start..end) {
            Some(slice) => Ok(slice),
            None => candle_core::bail!(
                "{op}: layout {layout:?} does not fit a buffer of {} elements",
                data.len()
            ),
        },
        None => candle_core::bail!("{op}: expected a contiguous tensor, got {layout:?}"),
    }
}

/// The error of an op given storages of other dtypes than all `f32` or all `f64`.
fn dtype_err(op: &str, dtypes: &[candle_core::DType]) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "{op}: unsupported dtypes {dtypes:?}, expected all f32 or all f64"
    ))
}

mod batch_norm;
mod bias;
mod conv;
pub(crate) mod conv_cpu;
mod depthwise;
mod lrn;
mod pool;
mod relu;

pub use batch_norm::{
    batch_norm_eval, batch_norm_eval_coefficients, batch_norm_eval_reference, batch_norm_eval_relu,
    batch_norm_train, batch_norm_train_reference, BatchStats,
};
pub use bias::{add_channel_bias, add_channel_bias_reference};
pub use conv::{conv2d, conv2d_reference, ConvBackward, ConvParams};
pub use conv_cpu::{
    conv2d_cpu, conv2d_cpu_bias_relu, conv2d_cpu_fused, conv2d_cpu_fused_residual,
    supports as conv2d_cpu_supports, ConvEpilogue,
};
pub use depthwise::{depthwise_conv2d, DepthwiseParams};
pub use lrn::local_response_norm;
pub use pool::{
    adaptive_avg_pool2d, adaptive_avg_pool2d_reference, avg_pool2d, avg_pool2d_reference, max_pool2d,
    max_pool2d_reference, pool_output_size, Pool2dParams,
};
pub use relu::{add_relu, relu, relu_reference};
