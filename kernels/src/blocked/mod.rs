//! The blocked channel layout (NCHWc) ONNX Runtime's MLAS keeps between the layers of a
//! network (`snchwc.cpp`): activations `[N, C/B, H, W, B]` with `B` channels per block, `B` =
//! the path's f32 lanes (16 for AVX-512, 8 for AVX2 and the portable path), and what runs on
//! it: a direct convolution with batch norm folded into its weights and the bias, residual add
//! and ReLU fused ([`conv`]), max pooling and the global average.

mod conv;
mod winograd;

pub use conv::{BlockedConv, PIXELS, WINOGRAD_CHANNELS, WINOGRAD_MIN_TILES, WINOGRAD_MIN_WIDTH};

use crate::conv::output_len;
use crate::isa::Isa;
use crate::{bail, checked_len, Result};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that sets the initial [`enabled`]: `on` or `off`.
pub const ENV_VAR: &str = "CONVNETS_BLOCKED";

/// 0 until the first read of [`ENV_VAR`], then 1 (on) or 2 (off).
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Whether the models' inference passes may run on the blocked layout now: what
/// [`set_enabled`] last set, else what [`ENV_VAR`] says (`on` / `off`), else on where the
/// path ([`crate::isa::isa`]) has vectors (AVX-512, AVX2) and off on the portable path, whose
/// blocked kernel is slower than the im2col products of the `gemm` crate.
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = match std::env::var(ENV_VAR).as_deref() {
                Ok("on" | "1") => true,
                Ok("off" | "0") => false,
                _ => crate::isa::isa() != Isa::Portable,
            };
            // A concurrent `set_enabled` wins over the environment.
            let _ = ENABLED.compare_exchange(0, if on { 1 } else { 2 }, Ordering::Relaxed, Ordering::Relaxed);
            enabled()
        }
    }
}

/// Turns the blocked inference path on or off from now on (all threads); returns the
/// previous setting. Results differ by rounding only.
pub fn set_enabled(on: bool) -> bool {
    let previous = enabled();
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
    previous
}

/// The block size of a path: its f32 lanes, 8 at least.
pub fn block_size(isa: Isa) -> usize {
    isa.f32_lanes().max(8)
}

/// An activation in the blocked layout `[n, ceil(c / block), h, w, block]`, channels past `c`
/// zero; from [`Blocked::from_nchw`] or the kernels, so that its values match its sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    block: usize,
    data: Vec<f32>,
}

impl Blocked {
    /// Batch size.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Channels (without the zero channels that fill the last block).
    pub fn c(&self) -> usize {
        self.c
    }

    /// Height.
    pub fn h(&self) -> usize {
        self.h
    }

    /// Width.
    pub fn w(&self) -> usize {
        self.w
    }

    /// Channels per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// The values, `[n, blocks, h, w, block]`.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, given up (to recycle the buffer: [`BlockedConv::forward_with`]).
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Channel blocks.
    pub fn blocks(&self) -> usize {
        self.c.div_ceil(self.block)
    }

    /// Whether `data` holds exactly the values the sizes say (always, for a `Blocked` built by
    /// this module).
    pub fn is_consistent(&self) -> bool {
        self.block > 0
            && checked_len(&[self.n, self.blocks(), self.h, self.w, self.block]) == Some(self.data.len())
    }

    /// `x` `[n, c, h, w]` (contiguous) in blocks of `block` channels.
    pub fn from_nchw(x: &[f32], dims: [usize; 4], block: usize) -> Result<Self> {
        Self::from_nchw_with(x, dims, block, Vec::with_capacity)
    }

    /// [`Blocked::from_nchw`] in a buffer from `alloc(len)` (its contents do not matter).
    pub fn from_nchw_with(
        x: &[f32],
        [n, c, h, w]: [usize; 4],
        block: usize,
        alloc: impl FnOnce(usize) -> Vec<f32>,
    ) -> Result<Self> {
        let cb = c.div_ceil(block.max(1));
        let len = checked_len(&[n, cb, h, w, block]);
        if checked_len(&[n, c, h, w]) != Some(x.len()) || block == 0 || len.is_none() {
            bail!(
                "blocked layout: {} values for [{n}, {c}, {h}, {w}] in blocks of {block}",
                x.len()
            )
        }
        let mut data = alloc(len.unwrap_or(0));
        data.clear();
        data.resize(len.unwrap_or(0), 0.0);
        let plane = h * w;
        // No channels: nothing to copy (and no chunks of zero length).
        let image_len = (c * plane).max(1);
        for (i, image) in x.chunks_exact(image_len).enumerate().take(n) {
            for (ch, values) in image.chunks_exact(plane.max(1)).enumerate() {
                let (b, lane) = (ch / block, ch % block);
                let base = (i * cb + b) * plane * block + lane;
                for (p, &v) in values.iter().enumerate() {
                    data[base + p * block] = v;
                }
            }
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            block,
            data,
        })
    }

    /// Back to `[n, c, h, w]`.
    pub fn to_nchw(&self) -> Vec<f32> {
        let (plane, cb, block) = (self.h * self.w, self.blocks(), self.block);
        let mut out = vec![0.0; self.n * self.c * plane];
        for i in 0..self.n {
            for ch in 0..self.c {
                let (b, lane) = (ch / block, ch % block);
                let base = (i * cb + b) * plane * block + lane;
                let dst = &mut out[(i * self.c + ch) * plane..][..plane];
                for (p, d) in dst.iter_mut().enumerate() {
                    *d = self.data[base + p * block];
                }
            }
        }
        out
    }
}

/// Folds an eval-mode batch norm `y = (x - mean) * scale + shift` into a convolution's weight
/// `[cout, ...]` and bias: `w' = w * scale[o]`, `b' = (b - mean) * scale + shift`.
pub fn fold_batch_norm(
    weight: &mut [f32],
    bias: &mut [f32],
    mean: &[f32],
    scale: &[f32],
    shift: &[f32],
) -> Result<()> {
    let cout = bias.len();
    if cout == 0 || !weight.len().is_multiple_of(cout) || [mean.len(), scale.len(), shift.len()] != [cout; 3]
    {
        bail!(
            "fold_batch_norm: {} weights, {cout} biases, {} / {} / {} statistics",
            weight.len(),
            mean.len(),
            scale.len(),
            shift.len()
        )
    }
    let per = weight.len() / cout;
    for (o, row) in weight.chunks_exact_mut(per).enumerate() {
        row.iter_mut().for_each(|w| *w *= scale[o]);
        bias[o] = (bias[o] - mean[o]) * scale[o] + shift[o];
    }
    Ok(())
}

/// Max pooling of a blocked activation with a square `kernel`, `stride` and `padding` (floor
/// mode; padding never wins), PyTorch's first maximum with NaN winning, lane by lane.
pub fn max_pool(x: &Blocked, kernel: usize, stride: usize, padding: usize) -> Result<Blocked> {
    max_pool_with(x, kernel, stride, padding, Vec::with_capacity)
}

/// [`max_pool`] in a buffer from `alloc(len)` (its contents do not matter).
pub fn max_pool_with(
    x: &Blocked,
    kernel: usize,
    stride: usize,
    padding: usize,
    alloc: impl FnOnce(usize) -> Vec<f32>,
) -> Result<Blocked> {
    if !x.is_consistent() || kernel == 0 || stride == 0 {
        bail!("blocked max pool: inconsistent activation, or a zero kernel or stride")
    }
    let out = |len| output_len(len, kernel, padding, stride, 1);
    let (Some(oh), Some(ow)) = (out(x.h), out(x.w)) else {
        bail!(
            "blocked max pool: a {}x{} input is too small for a {kernel}x{kernel} window",
            x.h,
            x.w
        )
    };
    if padding > kernel / 2 {
        bail!("blocked max pool: padding {padding} is more than half the window {kernel}")
    }
    let b = x.block;
    let Some(len) = checked_len(&[x.n, x.blocks(), oh, ow, b]) else {
        bail!(
            "blocked max pool: an output of [{}, {}, {oh}, {ow}] has more values than a usize counts",
            x.n,
            x.c
        )
    };
    let mut data = alloc(len);
    data.clear();
    data.resize(len, 0.0);
    let window = |at: usize, size: usize| {
        (at * stride).saturating_sub(padding)..(at * stride + kernel - padding).min(size)
    };
    data.par_chunks_mut(oh * ow * b)
        .zip(x.data.par_chunks(x.h * x.w * b))
        .for_each(|(dst, src)| {
            crate::isa::vectorized(|| {
                for (oy, dst) in dst.chunks_exact_mut(ow * b).enumerate() {
                    for (ox, m) in dst.chunks_exact_mut(b).enumerate() {
                        match b {
                            16 => pool_window::<16>(src, m, window(oy, x.h), window(ox, x.w), x.w),
                            8 => pool_window::<8>(src, m, window(oy, x.h), window(ox, x.w), x.w),
                            _ => pool_window::<1>(src, m, window(oy, x.h), window(ox, x.w), x.w),
                        }
                    }
                }
            })
        });
    Ok(Blocked {
        n: x.n,
        c: x.c,
        h: oh,
        w: ow,
        block: b,
        data,
    })
}

/// The maximum over `rows` x `cols` of `src` `[h, w, b]` (`w` columns) into `m` (`b` lanes),
/// PyTorch's first maximum with NaN winning, lane by lane; `B` lanes at a time (a select the
/// compiler vectorises), `B` = 1 for any other block size.
fn pool_window<const B: usize>(
    src: &[f32],
    m: &mut [f32],
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    w: usize,
) {
    let b = m.len();
    for (lane0, m) in m.chunks_exact_mut(B).enumerate() {
        let mut acc = [f32::NEG_INFINITY; B];
        for iy in rows.clone() {
            for ix in cols.clone() {
                let v = &src[(iy * w + ix) * b + lane0 * B..][..B];
                for (a, &v) in acc.iter_mut().zip(v) {
                    *a = if v > *a || v.is_nan() { v } else { *a };
                }
            }
        }
        m.copy_from_slice(&acc);
    }
}

/// The global average `[n, c]` of a blocked activation (positions summed in order, then
/// divided).
pub fn global_average(x: &Blocked) -> Result<Vec<f32>> {
    if !x.is_consistent() || x.block > 16 {
        bail!("blocked global average: inconsistent activation or a block over 16")
    }
    let (b, cb, plane) = (x.block, x.blocks(), x.h * x.w);
    let mut out = vec![0.0; x.n * x.c];
    for i in 0..x.n {
        for blk in 0..cb {
            let mut sums = [0f32; 16];
            let src = &x.data[(i * cb + blk) * plane * b..][..plane * b];
            for v in src.chunks_exact(b) {
                for (s, &v) in sums.iter_mut().zip(v) {
                    *s += v;
                }
            }
            for lane in 0..b.min(x.c - blk * b) {
                out[i * x.c + blk * b + lane] = sums[lane] / plane as f32;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
