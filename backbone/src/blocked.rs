//! The blocked inference path's pieces: what a model needs to run its inference passes on
//! `kernels::blocked` (ONNX Runtime's NCHWc layout kept from the first convolution to the
//! last, weights reordered once with each batch norm folded in, bias, residual add and ReLU in
//! the convolution's store). A model prepares its blocked plan once inside
//! [`crate::with_frozen_weights`] ([`crate::inference::prepared_model`], keyed by one of its
//! weights) and runs it from `forward_features` where [`enabled`] says so; the contract stays
//! candle tensors in and out.

use crate::layers::{Activation, ConvBlock};
use crate::ops::conv_cpu::kernel_err;
use crate::Result;
use candle_core::{DType, Device, Tensor};
pub use kernels::blocked::{Blocked, BlockedConv};

/// Whether a model's eval-mode pass may take the blocked path now: inside
/// [`crate::with_frozen_weights`] (its prepared weights cannot go stale), with
/// [`kernels::blocked::enabled`] (on by default where the CPU path has vectors; the
/// `CONVNETS_BLOCKED` environment variable or [`kernels::blocked::set_enabled`] switch it), and
/// not while a summary, an exporter or guided back-propagation looks at the layers one by one.
pub fn enabled() -> bool {
    crate::is_frozen()
        && kernels::blocked::enabled()
        && !crate::summary::is_recording()
        && !crate::trace::is_recording()
        && !crate::is_guided_relu()
}

/// `block` prepared for the blocked layout: its batch norm (running statistics) folded into
/// the weights and bias, its ReLU, or with `residual` the ReLU after a residual add (a block
/// with no activation of its own: the last of a residual branch). `None` where the blocked
/// kernel does not compute it: weights not `f32` on the CPU, groups or dilation other than
/// 1, TensorFlow's "same" or unequal padding, a kernel not square, an activation other than
/// ReLU, a norm of another width.
pub fn prepare_conv(block: &ConvBlock, residual: bool) -> Result<Option<BlockedConv>> {
    let conv = block.conv();
    let c = conv.config();
    let weight = conv.weight();
    let relu = match (block.activation(), residual) {
        (None, true) => true,
        (None, false) => false,
        (Some(Activation::Relu), false) => true,
        _ => return Ok(None),
    };
    if weight.dtype() != DType::F32
        || !weight.device().is_cpu()
        || c.groups != 1
        || c.dilation != 1
        || c.same
        || c.padding.0 != c.padding.1
        || c.kernel.0 != c.kernel.1
        || block.norm().is_some_and(|n| n.num_features() != c.out_channels)
    {
        return Ok(None);
    }
    let dims: [usize; 4] = weight.dims4()?.into();
    let mut w = weight.flatten_all()?.to_vec1::<f32>()?;
    let bias: Vec<f64> = match conv.bias() {
        Some(b) => b.to_dtype(DType::F64)?.to_vec1::<f64>()?,
        None => vec![0.0; dims[0]],
    };
    let bias: Vec<f32> = match block.norm() {
        Some(norm) => {
            // y = (conv + b - mean) * scale + shift = conv(w * scale) + (b - mean) * scale + shift.
            let (mean, scale, shift) = norm.eval_coefficients()?;
            let per = w.len() / dims[0].max(1);
            for (o, row) in w.chunks_exact_mut(per.max(1)).enumerate() {
                row.iter_mut().for_each(|v| *v = (*v as f64 * scale[o]) as f32);
            }
            (0..dims[0])
                .map(|o| ((bias[o] - mean[o]) * scale[o] + shift[o]) as f32)
                .collect()
        }
        None => bias.iter().map(|&b| b as f32).collect(),
    };
    Ok(Some(
        BlockedConv::new(&w, Some(&bias), dims, c.stride, c.padding.0, relu).map_err(kernel_err)?,
    ))
}

/// `xs` `[n, c, h, w]` (`f32`, on the CPU) in blocks of `block` channels, or in one block of
/// its own when it has fewer channels (an image: NHWC, read as it is by the first
/// convolution), in a buffer from `pool`.
pub fn to_blocked(xs: &Tensor, block: usize, pool: &BufferPool) -> Result<Blocked> {
    let dims: [usize; 4] = xs.dims4()?.into();
    let values = xs.flatten_all()?.to_vec1::<f32>()?;
    let block = if dims[1] < block { dims[1].max(1) } else { block };
    Ok(Blocked::from_nchw_with(&values, dims, block, |len| pool.take(len)).map_err(kernel_err)?)
}

/// `x` back to a tensor `[n, c, h, w]` on `device`.
pub fn to_tensor(x: &Blocked, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        x.to_nchw(),
        (x.n(), x.c(), x.h(), x.w()),
        device,
    )?)
}

/// A blocked convolution's pass, its output in a buffer from `pool`; errors as candle's.
pub fn conv(
    conv: &BlockedConv,
    x: &Blocked,
    residual: Option<&Blocked>,
    pool: &BufferPool,
) -> Result<Blocked> {
    Ok(conv
        .forward_with(x, residual, |len| pool.take(len))
        .map_err(kernel_err)?)
}

/// The buffers of activations a prepared model no longer needs, recycled by its next layers
/// and passes: a fresh allocation of a few MB is paid in page faults and the kernel's zeroing
/// on every pass.
#[derive(Debug, Default)]
pub struct BufferPool(std::sync::Mutex<Vec<Vec<f32>>>);

impl BufferPool {
    /// The most buffers kept.
    const KEPT: usize = 8;

    /// A buffer of `len` values' capacity or more: the smallest kept one that has it, else a
    /// new one (its contents are the caller's to overwrite).
    pub fn take(&self, len: usize) -> Vec<f32> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let best = (0..kept.len())
            .filter(|&i| kept[i].capacity() >= len)
            .min_by_key(|&i| kept[i].capacity());
        match best {
            Some(i) => kept.swap_remove(i),
            None => Vec::with_capacity(len),
        }
    }

    /// Keeps `x`'s buffer for a later [`BufferPool::take`] (the largest [`Self::KEPT`]).
    pub fn give(&self, x: Blocked) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.push(x.into_data());
        if kept.len() > Self::KEPT {
            kept.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
            kept.truncate(Self::KEPT);
        }
    }
}

/// A blocked max pool's pass (square window), its output in a buffer from `pool`; errors as
/// candle's.
pub fn max_pool(
    x: &Blocked,
    kernel: usize,
    stride: usize,
    padding: usize,
    pool: &BufferPool,
) -> Result<Blocked> {
    Ok(
        kernels::blocked::max_pool_with(x, kernel, stride, padding, |len| pool.take(len))
            .map_err(kernel_err)?,
    )
}
