//! Depthwise 2-d convolution: a direct CPU kernel with forward and backward passes.
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

use super::conv_cpu::contiguous;
use super::conv_geometry::{output_len, ConvGeometry, Span};
use crate::ops::{conv2d, ConvParams};
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Below this many multiply-adds a kernel runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Hyper-parameters of [`depthwise_conv2d`], PyTorch's `Conv2d` arguments (the channel
/// multiplier comes from the weight's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseParams {
    /// Zero padding (top/bottom, left/right).
    pub padding: (usize, usize),
    /// Stride (both axes).
    pub stride: usize,
    /// Dilation (both axes).
    pub dilation: usize,
}

impl DepthwiseParams {
    /// Stride 1, no padding, no dilation.
    pub fn new() -> Self {
        Self {
            padding: (0, 0),
            stride: 1,
            dilation: 1,
        }
    }

    /// Sets the same padding on both axes.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = (padding, padding);
        self
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }
}

impl Default for DepthwiseParams {
    fn default() -> Self {
        Self::new()
    }
}

/// A depthwise convolution's [`ConvGeometry`] (`groups == cin`, `cout = m * cin`), with the
/// depthwise op's own checks and messages.
impl ConvGeometry {
    fn depthwise(x: &[usize], weight: &[usize], p: DepthwiseParams) -> Result<Self> {
        let [n, c, h, w] = *x else {
            bail!("depthwise_conv2d: expected a 4-d (N, C, H, W) input, got shape {x:?}")
        };
        let (co, kh, kw) = match *weight {
            [co, 1, kh, kw] if c > 0 && co > 0 && co % c == 0 && kh > 0 && kw > 0 => (co, kh, kw),
            _ => bail!(
                "depthwise_conv2d: the weight must be [m * {c}, 1, kh, kw] (m >= 1) for an input \
                 of {c} channels, got {weight:?}"
            ),
        };
        if p.stride == 0 || p.dilation == 0 {
            bail!("depthwise_conv2d: stride and dilation must be positive, got {p:?}")
        }
        let out = |len: usize, k: usize, pad: usize| output_len(len, k, pad, p.stride, p.dilation);
        let (Some(oh), Some(ow)) = (out(h, kh, p.padding.0), out(w, kw, p.padding.1)) else {
            bail!(
                "depthwise_conv2d: input {h}x{w} is too small for a {kh}x{kw} kernel with padding \
                 {:?} and dilation {}",
                p.padding,
                p.dilation
            )
        };
        Ok(Self {
            n,
            cin: c,
            h,
            w,
            cout: co,
            groups: c,
            kh,
            kw,
            oh,
            ow,
            padding: p.padding,
            stride: p.stride,
            dilation: p.dilation,
            // Unused here: the depthwise kernels skip dead taps through their spans.
            live: kh * kw,
        })
    }

    /// Channel multiplier: output channels per input channel.
    fn m(&self) -> usize {
        self.og()
    }

    /// Multiply-adds of one depthwise pass (forward, input or weight gradient).
    fn depthwise_work(&self) -> usize {
        self.n * self.cout * self.oh * self.ow * self.kh * self.kw
    }
}

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
    let geometry = ConvGeometry::depthwise(xs.dims(), weight.dims(), p)?;
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
        groups: geometry.cin,
    };
    conv2d(&xs, weight, params)
}

// ---------------------------------------------------------------------------------------------
// Kernels.

/// Runs `f(index, chunk)` over the `len`-sized chunks of `out`, in parallel when `work` is
/// large enough.
fn for_each_chunk<T: Send>(out: &mut [T], len: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if len == 0 || out.is_empty() {
        return;
    }
    if work < PARALLEL_THRESHOLD {
        out.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        out.par_chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// `dst[o] += k * src[o * stride + offset]` for `o` in `lo..hi` (all indices valid).
#[inline(always)]
fn axpy_row<T: WithDType>(
    dst: &mut [T],
    src: &[T],
    k: T,
    (lo, hi): (usize, usize),
    stride: usize,
    first: usize,
) {
    if lo >= hi {
        return;
    }
    let dst = &mut dst[lo..hi];
    if stride == 1 {
        let src = &src[first..first + (hi - lo)];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += k * s;
        }
    } else {
        for (i, d) in dst.iter_mut().enumerate() {
            *d += k * src[first + i * stride];
        }
    }
}

/// `dst[o * stride + offset] += k * src[o]` for `o` in `lo..hi`.
#[inline(always)]
fn scatter_row<T: WithDType>(
    dst: &mut [T],
    src: &[T],
    k: T,
    (lo, hi): (usize, usize),
    stride: usize,
    first: usize,
) {
    if lo >= hi {
        return;
    }
    let src = &src[lo..hi];
    if stride == 1 {
        let dst = &mut dst[first..first + (hi - lo)];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += k * s;
        }
    } else {
        for (i, &s) in src.iter().enumerate() {
            dst[first + i * stride] += k * s;
        }
    }
}

/// `sum_o a[o] * b[o * stride + offset]` for `o` in `lo..hi`. Stride 1 accumulates in eight
/// lanes (vectorised; the order of the sum is fixed, so results are deterministic).
#[inline(always)]
fn dot_row<T: WithDType>(a: &[T], b: &[T], (lo, hi): (usize, usize), stride: usize, first: usize) -> T {
    let mut sum = T::zero();
    if lo >= hi {
        return sum;
    }
    let a = &a[lo..hi];
    if stride == 1 {
        let b = &b[first..first + (hi - lo)];
        let mut lanes = [T::zero(); 8];
        let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (a8.remainder(), b8.remainder());
        for (u, v) in a8.zip(b8) {
            for (lane, (&x, &y)) in lanes.iter_mut().zip(u.iter().zip(v)) {
                *lane += x * y;
            }
        }
        for (&u, &v) in ra.iter().zip(rb) {
            sum += u * v;
        }
        for l in lanes {
            sum += l;
        }
    } else {
        for (i, &u) in a.iter().enumerate() {
            sum += u * b[first + i * stride];
        }
    }
    sum
}

/// Index of the input element of output position `lo` (valid by construction of the range).
#[inline(always)]
fn first_input(lo: usize, stride: usize, offset: isize) -> usize {
    (lo as isize * stride as isize + offset) as usize
}

fn forward<T: WithDType>(g: &ConvGeometry, x: &[T], weight: &[T]) -> Vec<T> {
    let (co, plane_in, plane_out, k) = (g.cin * g.m(), g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    let mut out = vec![T::zero(); g.n * co * plane_out];
    for_each_chunk(&mut out, plane_out, g.depthwise_work(), |i, out| {
        let (n, oc) = (i / co, i % co);
        let ci = oc / g.m();
        let x = &x[(n * g.cin + ci) * plane_in..][..plane_in];
        let wk = &weight[oc * k..][..k];
        for ky in 0..g.kh {
            let Span {
                lo: r0,
                hi: r1,
                offset: roff,
            } = g.rows(ky);
            for kx in 0..g.kw {
                let Span {
                    lo: c0,
                    hi: c1,
                    offset: coff,
                } = g.cols(kx);
                let kv = wk[ky * g.kw + kx];
                let first = first_input(c0, g.stride, coff);
                for o in r0..r1 {
                    let ih = first_input(o, g.stride, roff);
                    axpy_row(
                        &mut out[o * g.ow..][..g.ow],
                        &x[ih * g.w..][..g.w],
                        kv,
                        (c0, c1),
                        g.stride,
                        first,
                    );
                }
            }
        }
    });
    out
}

fn input_grad<T: WithDType>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Vec<T> {
    let (co, plane_in, plane_out, k) = (g.cin * g.m(), g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    let mut out = vec![T::zero(); g.n * g.cin * plane_in];
    for_each_chunk(&mut out, plane_in, g.depthwise_work(), |i, gin| {
        let (n, ci) = (i / g.cin, i % g.cin);
        for j in 0..g.m() {
            let oc = ci * g.m() + j;
            let gout = &grad[(n * co + oc) * plane_out..][..plane_out];
            let wk = &weight[oc * k..][..k];
            for ky in 0..g.kh {
                let Span {
                    lo: r0,
                    hi: r1,
                    offset: roff,
                } = g.rows(ky);
                for kx in 0..g.kw {
                    let Span {
                        lo: c0,
                        hi: c1,
                        offset: coff,
                    } = g.cols(kx);
                    let kv = wk[ky * g.kw + kx];
                    let first = first_input(c0, g.stride, coff);
                    for o in r0..r1 {
                        let ih = first_input(o, g.stride, roff);
                        scatter_row(
                            &mut gin[ih * g.w..][..g.w],
                            &gout[o * g.ow..][..g.ow],
                            kv,
                            (c0, c1),
                            g.stride,
                            first,
                        );
                    }
                }
            }
        }
    });
    out
}

fn weight_grad<T: WithDType>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (co, plane_in, plane_out, k) = (g.cin * g.m(), g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    // One partial kernel gradient per (batch element, output channel), then a sum over the
    // batch in a fixed order.
    let mut partial = vec![T::zero(); g.n * co * k];
    for_each_chunk(&mut partial, k, g.depthwise_work(), |i, gw| {
        let (n, oc) = (i / co, i % co);
        let ci = oc / g.m();
        let x = &x[(n * g.cin + ci) * plane_in..][..plane_in];
        let gout = &grad[(n * co + oc) * plane_out..][..plane_out];
        for ky in 0..g.kh {
            let Span {
                lo: r0,
                hi: r1,
                offset: roff,
            } = g.rows(ky);
            for kx in 0..g.kw {
                let Span {
                    lo: c0,
                    hi: c1,
                    offset: coff,
                } = g.cols(kx);
                let first = first_input(c0, g.stride, coff);
                let mut sum = T::zero();
                for o in r0..r1 {
                    let ih = first_input(o, g.stride, roff);
                    sum += dot_row(
                        &gout[o * g.ow..][..g.ow],
                        &x[ih * g.w..][..g.w],
                        (c0, c1),
                        g.stride,
                        first,
                    );
                }
                gw[ky * g.kw + kx] = sum;
            }
        }
    });
    let mut out = vec![T::zero(); co * k];
    for (oc, dst) in out.chunks_mut(k).enumerate() {
        for n in 0..g.n {
            for (d, &p) in dst.iter_mut().zip(&partial[(n * co + oc) * k..][..k]) {
                *d += p;
            }
        }
    }
    out
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
    fn run<T: WithDType>(&self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let name = self.name();
        let (out, dims) = match self.pass {
            Pass::Forward => {
                let x = contiguous(name, a, la, g.input_dims())?;
                let w = contiguous(name, b, lb, g.weight_dims())?;
                (forward(g, &x, &w), g.output_dims())
            }
            Pass::InputGrad => {
                let grad = contiguous(name, a, la, g.output_dims())?;
                let w = contiguous(name, b, lb, g.weight_dims())?;
                (input_grad(g, &grad, &w), g.input_dims())
            }
            Pass::WeightGrad => {
                let x = contiguous(name, a, la, g.input_dims())?;
                let grad = contiguous(name, b, lb, g.output_dims())?;
                (weight_grad(g, &x, &grad), g.weight_dims())
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
