//! Depthwise 2-d convolution (`groups == in_channels`, MobileNet's and EfficientNet's
//! `conv_dw`): direct kernels, forward, input gradient and weight gradient, parallel over the
//! planes, each plane compiled for the chosen ISA ([`crate::isa::vectorized`]; the same bits
//! on every path).
//!
//! * Forward: `out[n, c*m + j] = sum_{ky, kx} w[c*m + j, 0, ky, kx] * x[n, c, oh*s + ky*d - p,
//!   ow*s + kx*d - p]` for a channel multiplier `m >= 1` (`out_channels = m * in_channels`),
//!   zero padding, PyTorch's semantics (cross-correlation, `groups = in_channels`): every
//!   output plane is a sum of `kh * kw` shifted, scaled copies of one input plane.
//! * Input gradient: each input plane gathers the gradients of its `m` output planes through
//!   the kernel. Weight gradient: per batch element and output channel, reduced over the batch
//!   in a fixed order (deterministic).

use crate::conv::{output_len, ConvGeometry, Span};
use crate::{bail, Float, Result};

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
pub fn geometry(x: &[usize], weight: &[usize], p: DepthwiseParams) -> Result<ConvGeometry> {
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
    let mut g = ConvGeometry {
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
        // The depthwise kernels skip dead taps through their spans; counted as the
        // convolution kernels count them, so that the geometry is theirs too.
        live: 0,
    }
    .validated("depthwise_conv2d")?;
    g.live = g.live_taps().len();
    Ok(g)
}

/// Checks that `g` is a depthwise geometry (`groups == cin`: one weight plane per output
/// channel), naming `op` in the error.
fn check_depthwise(op: &str, g: &ConvGeometry) -> Result<()> {
    if g.groups != g.cin {
        bail!(
            "{op}: a geometry of {} groups over {} input channels is not depthwise (from depthwise::geometry)",
            g.groups,
            g.cin
        )
    }
    Ok(())
}

/// The depthwise kernels' view of a [`ConvGeometry`].
trait Depthwise {
    fn m(&self) -> usize;
    fn depthwise_work(&self) -> usize;
}

impl Depthwise for ConvGeometry {
    /// Channel multiplier: output channels per input channel.
    fn m(&self) -> usize {
        self.og()
    }

    /// Multiply-adds of one depthwise pass (forward, input or weight gradient).
    fn depthwise_work(&self) -> usize {
        self.n * self.cout * self.oh * self.ow * self.kh * self.kw
    }
}

/// The outputs `[N, m * C, oh, ow]` of the depthwise convolution `g` (from [`geometry`]) of
/// `x` `[N, C, H, W]` by `weight` `[m * C, 1, kh, kw]`, both contiguous; an error when the
/// buffers do not have `g`'s sizes.
pub fn forward<T: Float>(g: &ConvGeometry, x: &[T], weight: &[T]) -> Result<Vec<T>> {
    check_depthwise("depthwise_conv2d", g)?;
    g.check_lengths(
        "depthwise_conv2d",
        x.len(),
        weight.len(),
        g.n * g.cout * g.oh * g.ow,
    )?;
    Ok(forward_impl(g, x, weight))
}

/// The input gradient `[N, C, H, W]` from the output gradient and the weight.
pub fn input_grad<T: Float>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Result<Vec<T>> {
    check_depthwise("depthwise_conv2d_input_grad", g)?;
    g.check_lengths(
        "depthwise_conv2d_input_grad",
        g.n * g.cin * g.h * g.w,
        weight.len(),
        grad.len(),
    )?;
    Ok(input_grad_impl(g, grad, weight))
}

/// The weight gradient `[m * C, 1, kh, kw]` from the input and the output gradient.
pub fn weight_grad<T: Float>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Result<Vec<T>> {
    check_depthwise("depthwise_conv2d_weight_grad", g)?;
    g.check_lengths(
        "depthwise_conv2d_weight_grad",
        x.len(),
        g.cout * g.kh * g.kw,
        grad.len(),
    )?;
    Ok(weight_grad_impl(g, x, grad))
}

// ---------------------------------------------------------------------------------------------
// Kernels.

/// Runs `f(index, chunk)` over the `len`-sized chunks of `out` (see
/// [`crate::isa::for_each_chunk`]).
fn for_each_chunk<T: Send>(out: &mut [T], len: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    crate::isa::for_each_chunk(out, len, work >= PARALLEL_THRESHOLD, f)
}

/// `dst[o] += k * src[o * stride + offset]` for `o` in `lo..hi` (all indices valid).
#[inline(always)]
fn axpy_row<T: Float>(dst: &mut [T], src: &[T], k: T, (lo, hi): (usize, usize), stride: usize, first: usize) {
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
fn scatter_row<T: Float>(
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
fn dot_row<T: Float>(a: &[T], b: &[T], (lo, hi): (usize, usize), stride: usize, first: usize) -> T {
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

fn forward_impl<T: Float>(g: &ConvGeometry, x: &[T], weight: &[T]) -> Vec<T> {
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

fn input_grad_impl<T: Float>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Vec<T> {
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

fn weight_grad_impl<T: Float>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Vec<T> {
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
