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

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType,
};
use rayon::prelude::*;
use std::sync::Arc;

use super::relu::{relu, relu_backward, relu_value};

/// Below this many elements a kernel runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Elements per parallel task of the element-wise passes (rounded to whole planes).
const CHUNK: usize = 1 << 14;

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
    if !native(xs, affine, &[running_mean, running_var]) {
        return batch_norm_eval_reference(xs, affine, running_mean, running_var, eps);
    }
    normalize(xs, affine, eval_norm(c, running_mean, running_var, eps, false)?)
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
    if !native(xs, affine, &[running_mean, running_var]) {
        return relu(&batch_norm_eval(xs, affine, running_mean, running_var, eps)?);
    }
    normalize(xs, affine, eval_norm(c, running_mean, running_var, eps, true)?)
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

/// The composite candle version of [`batch_norm_train`] (any device and dtype): the test
/// reference and the fallback.
pub fn batch_norm_train_reference(
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    channels("batch_norm_train", xs)?;
    let dims = xs.dims();
    let reduce: Vec<usize> = (0..dims.len()).filter(|&d| d != 1).collect();
    let count: usize = reduce.iter().map(|&d| dims[d]).product();
    let mean = (xs.sum_keepdim(reduce.as_slice())? / count as f64)?;
    let centered = xs.broadcast_sub(&mean)?;
    let var = (centered.sqr()?.sum_keepdim(reduce.as_slice())? / count as f64)?;
    let normed = centered.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let stats = BatchStats {
        mean: mean.detach().flatten_all()?,
        var: var.detach().flatten_all()?,
    };
    let out = match affine {
        Some((w, b)) => normed
            .broadcast_mul(&per_channel(w, dims)?)?
            .broadcast_add(&per_channel(b, dims)?)?,
        None => normed,
    };
    Ok((out, stats))
}

/// The composite candle version of [`batch_norm_eval`] (any device and dtype; gradients also
/// reach the running statistics): the test reference and the fallback.
pub fn batch_norm_eval_reference(
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    channels("batch_norm_eval", xs)?;
    let inv_std = (running_var + eps)?.sqrt()?.recip()?;
    let (scale, shift) = match affine {
        Some((w, b)) => {
            let scale = w.mul(&inv_std)?;
            let shift = b.sub(&running_mean.mul(&scale)?)?;
            (scale, shift)
        }
        None => (inv_std.clone(), running_mean.mul(&inv_std)?.neg()?),
    };
    xs.broadcast_mul(&per_channel(&scale, xs.dims())?)?
        .broadcast_add(&per_channel(&shift, xs.dims())?)
}

/// `[1, C, 1, 1]` (or `[1, C]`) view of a per-channel vector for broadcasting against `dims`.
fn per_channel(t: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let mut shape = vec![1; dims.len()];
    shape[1] = dims[1];
    t.reshape(shape)
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

// ---------------------------------------------------------------------------------------------
// Kernels.

/// The element types of the kernels, with exact conversions to and from `f64`.
trait Elem: WithDType {
    fn wide(self) -> f64;
    fn narrow(v: f64) -> Self;
}

impl Elem for f32 {
    #[inline(always)]
    fn wide(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn narrow(v: f64) -> Self {
        v as f32
    }
}

impl Elem for f64 {
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
    #[inline(always)]
    fn narrow(v: f64) -> Self {
        v
    }
}

/// The geometry of a contiguous `[N, C, HW]` buffer.
#[derive(Debug, Clone, Copy)]
struct Planes {
    n: usize,
    c: usize,
    hw: usize,
}

impl Planes {
    /// From a layout of rank 2 or 4 with `c` channels.
    fn new(op: &str, layout: &Layout, c: usize) -> Result<Self> {
        match *layout.dims() {
            [n, cc] if cc == c => Ok(Self { n, c, hw: 1 }),
            [n, cc, h, w] if cc == c => Ok(Self { n, c, hw: h * w }),
            ref dims => bail!("{op}: expected an [N, {c}, H, W] or [N, {c}] tensor, got shape {dims:?}"),
        }
    }

    fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    /// The `hw` values of channel `ch` in batch element `i`.
    fn plane<'a, T>(&self, data: &'a [T], i: usize, ch: usize) -> &'a [T] {
        &data[(i * self.c + ch) * self.hw..][..self.hw]
    }
}

/// The storage behind a contiguous layout of `len` elements.
fn contiguous<'a, T>(op: &str, data: &'a [T], layout: &Layout, len: usize) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) if end - start == len => super::contiguous_elements(op, data, layout),
        _ => bail!("{op}: expected a contiguous tensor of {len} elements, got {layout:?}"),
    }
}

/// `f(channel)` for every channel, on the rayon pool when the tensor is large.
fn per_channel_map<R: Send>(p: Planes, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if p.len() < PARALLEL_THRESHOLD || p.c == 1 {
        (0..p.c).map(f).collect()
    } else {
        (0..p.c).into_par_iter().map(f).collect()
    }
}

/// Fills `out` (a `[N, C, HW]` buffer) block by block: `f(first_plane, block)` where a block is
/// a run of whole planes, on the rayon pool when the tensor is large.
fn for_each_block<T: Send>(out: &mut [T], p: Planes, f: impl Fn(usize, &mut [T]) + Sync) {
    if out.is_empty() || p.hw == 0 {
        return;
    }
    let planes = (CHUNK / p.hw).max(1);
    let len = planes * p.hw;
    if out.len() < PARALLEL_THRESHOLD {
        out.chunks_mut(len)
            .enumerate()
            .for_each(|(i, block)| f(i * planes, block));
    } else {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, block)| f(i * planes, block));
    }
}

/// Lanes of the vectorised reductions (the summation order is fixed: results are
/// deterministic whatever the thread count).
const LANES: usize = 8;

/// Values per block of the reductions: summed in the element type within a block, in `f64`
/// across blocks.
const BLOCK: usize = 256;

/// `(sum f(a, b).0, sum f(a, b).1)` over paired slices of equal length: eight lanes in `T`
/// within blocks of [`BLOCK`] values (vectorised, and short enough for `f32` to keep about
/// seven digits), the blocks added in `f64`.
#[inline(always)]
fn paired_sums<T: Elem>(a: &[T], b: &[T], f: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
    let (mut s0, mut s1) = (0f64, 0f64);
    for (ab, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let (mut l0, mut l1) = ([T::zero(); LANES], [T::zero(); LANES]);
        let (ac, bc) = (ab.chunks_exact(LANES), bb.chunks_exact(LANES));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (u, v) in ac.zip(bc) {
            for (((l0, l1), &u), &v) in l0.iter_mut().zip(l1.iter_mut()).zip(u).zip(v) {
                let (x0, x1) = f(u, v);
                *l0 += x0;
                *l1 += x1;
            }
        }
        for (((l0, l1), &u), &v) in l0.iter_mut().zip(l1.iter_mut()).zip(ar).zip(br) {
            let (x0, x1) = f(u, v);
            *l0 += x0;
            *l1 += x1;
        }
        s0 += l0.iter().map(|v| v.wide()).sum::<f64>();
        s1 += l1.iter().map(|v| v.wide()).sum::<f64>();
    }
    (s0, s1)
}

/// Per channel: `(mean, biased variance)`, one pass, shifted by the channel's first value so
/// that a large mean does not cancel the variance away.
fn moments<T: Elem>(x: &[T], p: Planes) -> Vec<(f64, f64)> {
    let count = (p.n * p.hw) as f64;
    per_channel_map(p, |ch| {
        let shift = p.plane(x, 0, ch).first().copied().unwrap_or(T::zero());
        let (mut s, mut ss) = (0f64, 0f64);
        for i in 0..p.n {
            let plane = p.plane(x, i, ch);
            let (a, b) = paired_sums(plane, plane, |v, _| {
                let d = v - shift;
                (d, d * d)
            });
            s += a;
            ss += b;
        }
        let mean_d = s / count;
        let var = (ss / count - mean_d * mean_d).max(0.0);
        (shift.wide() + mean_d, var)
    })
}

/// Per channel: `(sum(dy), sum(dy * (x - mean)))`.
fn grad_sums<T: Elem>(x: &[T], dy: &[T], p: Planes, mean: &[f64]) -> Vec<(f64, f64)> {
    per_channel_map(p, |ch| {
        let m = T::narrow(mean[ch]);
        let (mut s, mut sx) = (0f64, 0f64);
        for i in 0..p.n {
            let (a, b) = paired_sums(p.plane(dy, i, ch), p.plane(x, i, ch), |g, v| (g, g * (v - m)));
            s += a;
            sx += b;
        }
        (s, sx)
    })
}

/// Per-channel coefficients of an element-wise pass, in the element type.
struct Coefs<T> {
    mean: Vec<T>,
    /// Factor of `x - mean`.
    q: Vec<T>,
    /// Constant term.
    r: Vec<T>,
    /// Factor of the second tensor (`dy`), if any.
    p: Vec<T>,
}

impl<T: Elem> Coefs<T> {
    fn new(mean: &[f64], q: &[f64], r: &[f64], p: &[f64]) -> Self {
        let cast = |v: &[f64]| v.iter().map(|&v| T::narrow(v)).collect();
        Self {
            mean: cast(mean),
            q: cast(q),
            r: cast(r),
            p: cast(p),
        }
    }
}

/// `out = (x - mean[c]) * q[c] + r[c]`, then `max(out, 0)` (NaN kept) with `RELU`.
fn affine1<T: Elem, const RELU: bool>(x: &[T], p: Planes, k: &Coefs<T>) -> Vec<T> {
    let mut out = vec![T::zero(); p.len()];
    for_each_block(&mut out, p, |first, block| {
        let xs = &x[first * p.hw..][..block.len()];
        for (j, (o, xp)) in block.chunks_mut(p.hw).zip(xs.chunks(p.hw)).enumerate() {
            let ch = (first + j) % p.c;
            let (m, q, r) = (k.mean[ch], k.q[ch], k.r[ch]);
            for (o, &v) in o.iter_mut().zip(xp) {
                let y = (v - m) * q + r;
                *o = if RELU { relu_value(y) } else { y };
            }
        }
    });
    out
}

/// `out = dy * p[c] + (x - mean[c]) * q[c] + r[c]`.
fn affine2<T: Elem>(x: &[T], dy: &[T], p: Planes, k: &Coefs<T>) -> Vec<T> {
    let mut out = vec![T::zero(); p.len()];
    for_each_block(&mut out, p, |first, block| {
        let xs = &x[first * p.hw..][..block.len()];
        let gs = &dy[first * p.hw..][..block.len()];
        let planes = block.chunks_mut(p.hw).zip(xs.chunks(p.hw)).zip(gs.chunks(p.hw));
        for (j, ((o, xp), gp)) in planes.enumerate() {
            let ch = (first + j) % p.c;
            let (m, q, r, a) = (k.mean[ch], k.q[ch], k.r[ch], k.p[ch]);
            for ((o, &v), &g) in o.iter_mut().zip(xp).zip(gp) {
                *o = g * a + (v - m) * q + r;
            }
        }
    });
    out
}

/// `out = dy * p[c] * (y > 0)`: the input gradient of the eval pass with ReLU, from its
/// output `y`.
fn masked2<T: Elem>(y: &[T], dy: &[T], p: Planes, k: &Coefs<T>) -> Vec<T> {
    let mut out = vec![T::zero(); p.len()];
    for_each_block(&mut out, p, |first, block| {
        let ys = &y[first * p.hw..][..block.len()];
        let gs = &dy[first * p.hw..][..block.len()];
        let planes = block.chunks_mut(p.hw).zip(ys.chunks(p.hw)).zip(gs.chunks(p.hw));
        for (j, ((o, yp), gp)) in planes.enumerate() {
            let a = k.p[(first + j) % p.c];
            for ((o, &v), &g) in o.iter_mut().zip(yp).zip(gp) {
                *o = g * a * if v > T::zero() { T::one() } else { T::zero() };
            }
        }
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Custom ops.

/// Per-channel `(mean, biased variance)` of `x` as a `[2, C]` f64 tensor.
struct Moments {
    c: usize,
}

impl CustomOp1 for Moments {
    fn name(&self) -> &'static str {
        "batch_norm_moments"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Elem>(op: &Moments, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let p = Planes::new(op.name(), l, op.c)?;
            let x = contiguous(op.name(), data, l, p.len())?;
            let (mean, var): (Vec<f64>, Vec<f64>) = moments(x, p).into_iter().unzip();
            Ok((CpuStorage::F64([mean, var].concat()), Shape::from((2, op.c))))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }
}

/// Per-channel `(sum(dy), sum(dy * (x - mean)))` of `(x, dy)` as a `[2, C]` f64 tensor.
struct GradSums {
    mean: Vec<f64>,
}

impl CustomOp2 for GradSums {
    fn name(&self) -> &'static str {
        "batch_norm_grad_sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Elem>(
            op: &GradSums,
            x: &[T],
            l1: &Layout,
            dy: &[T],
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let c = op.mean.len();
            let p = Planes::new(op.name(), l1, c)?;
            if l2.dims() != l1.dims() {
                bail!(
                    "{}: gradient of shape {:?} for an input of shape {:?}",
                    op.name(),
                    l2.dims(),
                    l1.dims()
                )
            }
            let x = contiguous(op.name(), x, l1, p.len())?;
            let dy = contiguous(op.name(), dy, l2, p.len())?;
            let (s, sx): (Vec<f64>, Vec<f64>) = grad_sums(x, dy, p, &op.mean).into_iter().unzip();
            Ok((CpuStorage::F64([s, sx].concat()), Shape::from((2, c))))
        }
        float_storages!(self.name(), (s1 => x, s2 => g), run(self, x, l1, g, l2))
    }
}

/// What a [`ChannelAffine`] pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `(a - mean) * q + r` (one argument), `b * p + (a - mean) * q + r` (two).
    Plain,
    /// `max((a - mean) * q + r, 0)` (one argument).
    Relu,
    /// `b * p * (a > 0)` (two arguments).
    Masked,
}

/// An element-wise per-channel pass (see [`Form`]), coefficients in `f64`.
struct ChannelAffine {
    name: &'static str,
    c: usize,
    mean: Vec<f64>,
    q: Vec<f64>,
    r: Vec<f64>,
    p: Vec<f64>,
    form: Form,
}

impl ChannelAffine {
    fn coefs<T: Elem>(&self) -> Coefs<T> {
        Coefs::new(&self.mean, &self.q, &self.r, &self.p)
    }

    fn run1<T: Elem>(&self, a: &[T], la: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = Planes::new(self.name, la, self.c)?;
        let a = contiguous(self.name, a, la, p.len())?;
        let out = match self.form {
            Form::Relu => affine1::<T, true>(a, p, &self.coefs()),
            Form::Plain | Form::Masked => affine1::<T, false>(a, p, &self.coefs()),
        };
        Ok((T::to_cpu_storage_owned(out), la.shape().clone()))
    }

    fn run2<T: Elem>(&self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = Planes::new(self.name, la, self.c)?;
        if lb.dims() != la.dims() {
            bail!("{}: shapes {:?} and {:?} differ", self.name, la.dims(), lb.dims())
        }
        let a = contiguous(self.name, a, la, p.len())?;
        let b = contiguous(self.name, b, lb, p.len())?;
        let out = match self.form {
            Form::Masked => masked2(a, b, p, &self.coefs()),
            Form::Plain | Form::Relu => affine2(a, b, p, &self.coefs()),
        };
        Ok((T::to_cpu_storage_owned(out), la.shape().clone()))
    }
}

impl CustomOp1 for ChannelAffine {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name, (s => v), self.run1(v, l))
    }
}

impl CustomOp2 for ChannelAffine {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name, (s1 => a, s2 => b), self.run2(a, l1, b, l2))
    }
}

/// The statistics a forward op normalises with, captured for its backward pass.
#[derive(Debug)]
struct Norm {
    c: usize,
    mean: Vec<f64>,
    invstd: Vec<f64>,
    /// Batch statistics (training: the gradient flows through them) or running statistics
    /// (eval: constants).
    batch: bool,
    /// A ReLU after the normalisation.
    relu: bool,
}

impl Norm {
    fn name(&self) -> &'static str {
        match (self.batch, self.relu) {
            (true, false) => "batch_norm_train",
            (true, true) => "batch_norm_train_relu",
            (false, false) => "batch_norm_eval",
            (false, true) => "batch_norm_eval_relu",
        }
    }

    /// The forward pass with optional `[C]` weight and bias.
    fn forward<T: Elem>(
        &self,
        x: &[T],
        l: &Layout,
        affine: Option<(&[T], &Layout, &[T], &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (mut scale, mut shift) = (self.invstd.clone(), vec![0.0; self.c]);
        if let Some((w, lw, b, lb)) = affine {
            let w = contiguous(name, w, lw, self.c)?;
            let b = contiguous(name, b, lb, self.c)?;
            for (k, (&w, &b)) in w.iter().zip(b).enumerate() {
                scale[k] *= w.wide();
                shift[k] = b.wide();
            }
        }
        ChannelAffine {
            name,
            c: self.c,
            mean: self.mean.clone(),
            q: scale,
            r: shift,
            p: Vec::new(),
            form: if self.relu { Form::Relu } else { Form::Plain },
        }
        .run1(x, l)
    }

    /// Gradients w.r.t. `x`, the weight and the bias (each only if it needs one), from the
    /// output `y` (read with a ReLU only) and its gradient.
    fn backward(
        &self,
        x: &Tensor,
        affine: Option<(&Tensor, &Tensor)>,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = self.c;
        let need_x = x.track_op();
        let (need_w, need_b) = affine.map_or((false, false), |(w, b)| (w.track_op(), b.track_op()));
        if !(need_x || need_w || need_b) {
            return Ok((None, None, None));
        }
        let weight = match affine {
            Some((w, _)) => w.to_dtype(DType::F64)?.to_vec1::<f64>()?,
            None => vec![1.0; c],
        };
        let scale: Vec<f64> = weight.iter().zip(&self.invstd).map(|(w, s)| w * s).collect();
        if self.relu && !self.batch && !(need_w || need_b) {
            // Constant statistics, only the input: dx = dy * w * invstd * (y > 0), one pass.
            let op = ChannelAffine {
                name: "batch_norm_eval_relu_input_grad",
                c,
                mean: Vec::new(),
                q: Vec::new(),
                r: Vec::new(),
                p: scale,
                form: Form::Masked,
            };
            return Ok((Some(y.apply_op2_no_bwd(&grad.contiguous()?, &op)?), None, None));
        }
        // The gradient of the normalisation's output: through the ReLU's mask first if any.
        let dy = if self.relu {
            relu_backward(y, grad)?
        } else {
            grad.contiguous()?
        };
        // sum(dy) and sum(dy * xhat) per channel, when something needs them.
        let sums = if need_w || need_b || (need_x && self.batch) {
            let sums = x
                .apply_op2_no_bwd(
                    &dy,
                    &GradSums {
                        mean: self.mean.clone(),
                    },
                )?
                .to_vec2::<f64>()?;
            match sums.as_slice() {
                [s, sx] => {
                    let sxhat: Vec<f64> = sx.iter().zip(&self.invstd).map(|(v, s)| v * s).collect();
                    Some((s.clone(), sxhat))
                }
                _ => bail!(
                    "{}: the gradient sums op returned {} rows",
                    self.name(),
                    sums.len()
                ),
            }
        } else {
            None
        };
        let dx = match (&sums, need_x) {
            (_, false) => None,
            (Some((sdy, sdxhat)), true) if self.batch => {
                // dx = w * invstd * (dy - sum(dy) / M - (x - mean) * invstd * sum(dy * xhat) / M)
                let count = (x.elem_count() / c.max(1)) as f64;
                let q = (0..c)
                    .map(|k| -scale[k] * self.invstd[k] * sdxhat[k] / count)
                    .collect();
                let r = (0..c).map(|k| -scale[k] * sdy[k] / count).collect();
                let op = ChannelAffine {
                    name: "batch_norm_train_input_grad",
                    c,
                    mean: self.mean.clone(),
                    q,
                    r,
                    p: scale,
                    form: Form::Plain,
                };
                Some(x.apply_op2_no_bwd(&dy, &op)?)
            }
            _ => {
                // Constant statistics: dx = dy * w * invstd.
                let op = ChannelAffine {
                    name: "batch_norm_eval_input_grad",
                    c,
                    mean: vec![0.0; c],
                    q: scale,
                    r: vec![0.0; c],
                    p: Vec::new(),
                    form: Form::Plain,
                };
                Some(dy.apply_op1_no_bwd(&op)?)
            }
        };
        let vector = |v: &[f64]| Tensor::from_vec(v.to_vec(), c, x.device())?.to_dtype(x.dtype());
        let (dw, db) = match &sums {
            Some((sdy, sdxhat)) => (
                need_w.then(|| vector(sdxhat)).transpose()?,
                need_b.then(|| vector(sdy)).transpose()?,
            ),
            None => (None, None),
        };
        Ok((dx, dw, db))
    }
}

/// The forward op without affine parameters.
struct NormalizePlain(Arc<Norm>);

impl CustomOp1 for NormalizePlain {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name(), (s => v), self.0.forward(v, l, None))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.0.backward(x, None, res, grad)?.0)
    }
}

/// The forward op over `(x, weight, bias)`.
struct NormalizeAffine(Arc<Norm>);

impl CustomOp3 for NormalizeAffine {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name(), (s1 => x, s2 => w, s3 => b), {
            self.0.forward(x, l1, Some((w, l2, b, l3)))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.0.backward(x, Some((w, b)), res, grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_survive_a_large_mean() {
        // Variance 2/3 around a mean of 1e4: the shifted sums keep it to f64 precision.
        let x: Vec<f64> = (0..300).map(|i| 1e4 + (i % 3) as f64 - 1.0).collect();
        let p = Planes { n: 3, c: 1, hw: 100 };
        let (mean, var) = moments(&x, p)[0];
        assert!((mean - 1e4).abs() < 1e-9, "{mean}");
        assert!((var - 2.0 / 3.0).abs() < 1e-9, "{var}");
    }

    #[test]
    fn blocks_cover_whole_planes() {
        for (n, c, hw) in [(1, 1, 1), (3, 5, 7), (2, 64, 1), (1, 2, CHUNK + 3), (40, 7, 300)] {
            let p = Planes { n, c, hw };
            let x: Vec<f64> = (0..p.len()).map(|i| i as f64).collect();
            let k = Coefs::<f64>::new(
                &(0..c).map(|k| k as f64).collect::<Vec<_>>(),
                &vec![2.0; c],
                &vec![1.0; c],
                &[],
            );
            let out = affine1::<_, false>(&x, p, &k);
            for (i, &o) in out.iter().enumerate() {
                let ch = (i / hw) % c;
                assert_eq!(o, (i as f64 - ch as f64) * 2.0 + 1.0, "{n} {c} {hw} {i}");
            }
        }
    }
}
