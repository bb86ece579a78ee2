//! Pooling composed of differentiable candle tensor ops, for tensors on any device (the path
//! CUDA and Metal tensors take): the same outputs and gradients as the CPU kernels, with
//! autograd doing the backward passes.
//!
//! * Average and adaptive average pooling are separable linear maps, `Y = A_h · X · A_wᵀ`, with
//!   `A[o, i] = 1 / d(o)` for the input positions `i` of window `o` and 0 elsewhere: PyTorch's
//!   divisor is a product of one factor per dimension (the window clipped to the padded input
//!   with `count_include_pad`, the real elements of the window without it, or the adaptive
//!   window's size). Two matmuls with small constant matrices built on the host.
//! * Max pooling gathers the window taps with `index_select` along the width, keeps one tap per
//!   output (the selection is computed without gradient), then does the same along the height.
//!   Each stage keeps the first tap holding the maximum, or the last NaN when there is one:
//!   together, the first maximum of the window in row-major order or its last NaN, the element
//!   the CPU kernel's scan (`val > max || val.is_nan()`) ends on. The output is the sum of the
//!   taps masked with `where_cond`, so the gradient reaches exactly the kept element.
//!
//! Tap indices outside the input (padding, or a `ceil_mode` window past it) are clamped to
//! the input's first or last element: that element belongs to the same window (windows are
//! never empty), so a clamped tap never changes a window's maximum, NaN or the element the
//! gradient goes to, and no padded tensor is needed.

use super::Pool2dParams;
use crate::ops::conv_cpu::kernel_err;
use candle_core::{DType, Device, Result, Tensor};
use kernels::pool::{adaptive_windows, windows, Window};

/// Max pooling of an `(N, C, H, W)` `f32` / `f64` tensor whose `out` size is the (checked)
/// output size of `p`.
pub(super) fn max_pool2d(xs: &Tensor, p: &Pool2dParams, out: (usize, usize)) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    // `index_select` needs a contiguous source on CUDA.
    let xs = xs.contiguous()?;
    let rows = max_along(
        &xs,
        3,
        &tap_indices(out.1, p.kernel.1, p.stride.1, p.padding.1, w)?,
    )?;
    max_along(
        &rows,
        2,
        &tap_indices(out.0, p.kernel.0, p.stride.0, p.padding.0, h)?,
    )
}

/// Average pooling of an `(N, C, H, W)` `f32` / `f64` tensor, as [`max_pool2d`].
pub(super) fn avg_pool2d(xs: &Tensor, p: &Pool2dParams, out: (usize, usize)) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let divisor = |r: &Window| match p.count_include_pad {
        true => r.padded_len(),
        false => r.len(),
    };
    let wh = windows(out.0, p.kernel.0, p.stride.0, p.padding.0, h).map_err(kernel_err)?;
    let ww = windows(out.1, p.kernel.1, p.stride.1, p.padding.1, w).map_err(kernel_err)?;
    separable_average(xs, &wh, &ww, divisor)
}

/// Adaptive average pooling of an `(N, C, H, W)` `f32` / `f64` tensor with a non-empty spatial
/// size to `out` (at least 1x1).
pub(super) fn adaptive_avg_pool2d(xs: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let wh = adaptive_windows(out.0, h).map_err(kernel_err)?;
    let ww = adaptive_windows(out.1, w).map_err(kernel_err)?;
    separable_average(xs, &wh, &ww, Window::len)
}

/// `A_h · X · A_wᵀ` over the last two dimensions of `xs`, `A[o, i] = 1 / divisor(o)` for `i` in
/// window `o`.
fn separable_average(
    xs: &Tensor,
    wh: &[Window],
    ww: &[Window],
    divisor: impl Fn(&Window) -> usize,
) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    let (oh, ow) = (wh.len(), ww.len());
    // Transposed averaging matrices, `(input, output)`, so both products are plain 2-d matmuls
    // of a row-major left-hand side.
    let aw_t = averaging_matrix_t(ww, w, &divisor, xs.dtype(), xs.device())?;
    let ah_t = averaging_matrix_t(wh, h, &divisor, xs.dtype(), xs.device())?;
    let rows = xs.contiguous()?.reshape((n * c * h, w))?.matmul(&aw_t)?;
    let columns = rows
        .reshape((n * c, h, ow))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n * c * ow, h))?
        .matmul(&ah_t)?;
    columns.reshape((n, c, ow, oh))?.transpose(2, 3)?.contiguous()
}

/// The `(input, windows.len())` matrix with `1 / divisor(window)` at the window's input
/// positions, in `dtype` on `device` (built on the host; empty windows give a zero column).
fn averaging_matrix_t(
    windows: &[Window],
    input: usize,
    divisor: &impl Fn(&Window) -> usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let n_out = windows.len();
    let mut a = vec![0f64; input * n_out];
    for (o, win) in windows.iter().enumerate() {
        let share = 1.0 / divisor(win).max(1) as f64;
        for i in win.start()..win.end().min(input) {
            a[i * n_out + o] = share;
        }
    }
    // Converted on the host: Metal has no f64.
    Tensor::from_vec(a, (input, n_out), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)
}

/// For each kernel tap `k`, the input index `o * stride + k - pad` of every output `o`,
/// clamped to `[0, input - 1]` (see the module docs).
pub(super) fn tap_indices(
    n_out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    input: usize,
) -> Result<Vec<Vec<u32>>> {
    let last = input.saturating_sub(1);
    (0..kernel)
        .map(|k| {
            (0..n_out)
                .map(|o| {
                    let i = (o * stride + k).saturating_sub(pad).min(last);
                    u32::try_from(i).map_err(|_| {
                        candle_core::Error::Msg(format!("max_pool2d: input size {input} exceeds u32 indices"))
                    })
                })
                .collect()
        })
        .collect()
}

/// Max pooling along `dim` of `xs` with the taps of [`tap_indices`]: per output, the first
/// tap holding the maximum, or the last NaN tap when there is one (a NaN output).
fn max_along(xs: &Tensor, dim: usize, taps: &[Vec<u32>]) -> Result<Tensor> {
    let device = xs.device();
    let values = taps
        .iter()
        .map(|idx| {
            let idx = Tensor::from_slice(idx, idx.len(), &Device::Cpu)?.to_device(device)?;
            xs.index_select(&idx, dim)
        })
        .collect::<Result<Vec<_>>>()?;
    let Some(first) = values.first() else {
        candle_core::bail!("max_pool2d: empty kernel")
    };
    if values.len() == 1 {
        return Ok(first.clone());
    }
    let keep = kept_taps(&values)?;
    let zero = first.zeros_like()?;
    let mut out: Option<Tensor> = None;
    for (v, k) in values.iter().zip(&keep) {
        let term = k.where_cond(v, &zero)?;
        out = Some(match out {
            None => term,
            Some(acc) => (acc + term)?,
        });
    }
    match out {
        Some(out) => Ok(out),
        None => candle_core::bail!("max_pool2d: empty kernel"),
    }
}

/// One `u8` mask per tap, exactly one set per output: the first tap equal to the maximum of
/// the taps, or the last NaN tap if any. Computed on detached values (no gradient).
fn kept_taps(values: &[Tensor]) -> Result<Vec<Tensor>> {
    let values: Vec<Tensor> = values.iter().map(Tensor::detach).collect();
    let Some(first) = values.first() else {
        return Ok(Vec::new());
    };
    let is_nan = values.iter().map(|v| v.ne(v)).collect::<Result<Vec<_>>>()?;
    // The maximum ignoring NaN (CUDA's `maximum` is `fmax`, which skips NaN; others may not).
    let neg_inf = Tensor::new(f64::NEG_INFINITY, &Device::Cpu)?
        .to_dtype(first.dtype())?
        .to_device(first.device())?
        .broadcast_as(first.shape())?;
    let mut max: Option<Tensor> = None;
    for (v, nan) in values.iter().zip(&is_nan) {
        let clean = nan.where_cond(&neg_inf, v)?;
        max = Some(match max {
            None => clean,
            Some(m) => m.maximum(&clean)?,
        });
    }
    let Some(max) = max else {
        return Ok(Vec::new());
    };
    // A NaN tap never equals the maximum (NaN != anything), so `hits` are non-NaN taps.
    let hits = values.iter().map(|v| v.eq(&max)).collect::<Result<Vec<_>>>()?;
    let first_hit = first_set(hits.iter())?;
    let mut last_nan = first_set(is_nan.iter().rev())?;
    last_nan.reverse();
    let mut any_nan = Tensor::zeros(first.shape(), DType::U8, first.device())?;
    for nan in &is_nan {
        any_nan = any_nan.maximum(nan)?;
    }
    first_hit
        .iter()
        .zip(&last_nan)
        .map(|(hit, nan)| any_nan.where_cond(nan, hit))
        .collect()
}

/// For `u8` masks (0 or 1) in order, the masks of the first set one per element:
/// `m_k & !(m_0 | .. | m_{k-1})`, that is `m_k > seen`.
fn first_set<'a>(masks: impl Iterator<Item = &'a Tensor>) -> Result<Vec<Tensor>> {
    let mut seen: Option<Tensor> = None;
    let mut out = Vec::new();
    for m in masks {
        let (first, now_seen) = match seen {
            None => (m.clone(), m.clone()),
            Some(s) => (m.gt(&s)?, s.maximum(m)?),
        };
        out.push(first);
        seen = Some(now_seen);
    }
    Ok(out)
}
