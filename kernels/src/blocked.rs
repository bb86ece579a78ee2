//! A direct convolution on a blocked channel layout (NCHWc), the layout ONNX Runtime's MLAS
//! keeps between the layers of a network (`snchwc.cpp`): activations `[N, C/B, H, W, B]` with
//! `B` channels per block, `B` = the path's f32 lanes (16 for AVX-512, 8 for AVX2 and the
//! portable path); weights reordered once ([`BlockedConv::new`]) to `[Cout/B, Cin/B, kh, kw,
//! B_in, B_out]`, batch norm folded into them ([`fold_batch_norm`]); no im2col, no packing.
//!
//! Each task computes one output row of one block of output channels: a register tile of
//! [`PIXELS`] output positions x `B` channels, accumulated over input blocks, taps and the
//! `B` input channels of a block (one weight vector load, one broadcast per position and
//! fused multiply-add), then bias (folded), the residual add and the ReLU before the store.
//! Padding is handled by reading a zero-padded copy of the input. Tasks are spread over the
//! rayon pool once per layer, in `(image, channel block, row)` order.
//!
//! The micro-kernel exists per path ([`Isa`]): AVX-512 (`zmm`, FMA), AVX2 (`ymm`, FMA) and
//! portable (8-lane arrays, a multiply and an add). Sums run in the same order on every path;
//! FMA rounds once where the portable path rounds twice, so paths differ by rounding only.
//!
//! Not (yet) on the models' inference path: this is the kernel and its tests, measured
//! against the im2col / Winograd path in `cargo bench -p kernels` (see BENCHMARKS.md).

use crate::conv::output_len;
use crate::elementwise::relu_value;
use crate::isa::{isa, Isa};
use crate::{bail, checked_len, Result};
use rayon::prelude::*;

/// Output positions per register tile (12 accumulators, a weight vector and a broadcast fit
/// the 16 registers of AVX2).
pub const PIXELS: usize = 12;

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
    pub fn from_nchw(x: &[f32], [n, c, h, w]: [usize; 4], block: usize) -> Result<Self> {
        let cb = c.div_ceil(block.max(1));
        let len = checked_len(&[n, cb, h, w, block]);
        if checked_len(&[n, c, h, w]) != Some(x.len()) || block == 0 || len.is_none() {
            bail!(
                "blocked layout: {} values for [{n}, {c}, {h}, {w}] in blocks of {block}",
                x.len()
            )
        }
        let mut data = vec![0.0; len.unwrap_or(0)];
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

/// A convolution prepared for the blocked layout: weights reordered, bias (with any batch norm
/// folded), ReLU; from [`BlockedConv::new`], read through its methods.
#[derive(Debug, Clone)]
pub struct BlockedConv {
    isa: Isa,
    block: usize,
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    relu: bool,
    /// `[cout_blocks, cin_blocks, kh, kw, block (in), block (out)]`.
    weight: Vec<f32>,
    /// `[cout_blocks * block]`.
    bias: Vec<f32>,
}

impl BlockedConv {
    /// Prepares `weight` `[cout, cin, kh, kw]` (and `bias` `[cout]`) for the current path
    /// ([`isa`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        weight: &[f32],
        bias: Option<&[f32]>,
        [cout, cin, kh, kw]: [usize; 4],
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> Result<Self> {
        Self::with_isa(isa(), weight, bias, [cout, cin, kh, kw], stride, padding, relu)
    }

    /// [`BlockedConv::new`] for a given path (an available one: else the portable kernel
    /// runs, with the path's block size).
    #[allow(clippy::too_many_arguments)]
    pub fn with_isa(
        isa: Isa,
        weight: &[f32],
        bias: Option<&[f32]>,
        [cout, cin, kh, kw]: [usize; 4],
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> Result<Self> {
        let len = checked_len(&[cout, cin, kh, kw]);
        if len != Some(weight.len()) || weight.is_empty() || stride == 0 {
            bail!(
                "blocked conv: {} weights for [{cout}, {cin}, {kh}, {kw}], stride {stride}",
                weight.len()
            )
        }
        if bias.is_some_and(|b| b.len() != cout) {
            bail!("blocked conv: the bias needs {cout} values")
        }
        let block = block_size(isa);
        let (ob, ib) = (cout.div_ceil(block), cin.div_ceil(block));
        let mut w = vec![0.0; ob * ib * kh * kw * block * block];
        for o in 0..cout {
            for c in 0..cin {
                for t in 0..kh * kw {
                    let at = ((((o / block) * ib + c / block) * kh * kw + t) * block + c % block) * block
                        + o % block;
                    w[at] = weight[(o * cin + c) * kh * kw + t];
                }
            }
        }
        let mut b = vec![0.0; ob * block];
        if let Some(bias) = bias {
            b[..cout].copy_from_slice(bias);
        }
        Ok(Self {
            isa,
            block,
            cin,
            cout,
            kh,
            kw,
            stride,
            padding,
            relu,
            weight: w,
            bias: b,
        })
    }

    /// The path it runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Channels per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Input channels.
    pub fn cin(&self) -> usize {
        self.cin
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Kernel height and width.
    pub fn kernel(&self) -> (usize, usize) {
        (self.kh, self.kw)
    }

    /// Stride.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Zero padding on every side.
    pub fn padding(&self) -> usize {
        self.padding
    }

    /// Whether a ReLU follows.
    pub fn relu(&self) -> bool {
        self.relu
    }

    /// Output height and width for an `h x w` input.
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        Some((
            output_len(h, self.kh, self.padding, self.stride, 1)?,
            output_len(w, self.kw, self.padding, self.stride, 1)?,
        ))
    }

    /// `relu(conv(x) + bias + residual)` in the blocked layout (the ReLU if prepared so, the
    /// residual if given: of the output's shape).
    pub fn forward(&self, x: &Blocked, residual: Option<&Blocked>) -> Result<Blocked> {
        if !x.is_consistent() || residual.is_some_and(|r| !r.is_consistent()) {
            bail!("blocked conv: an activation whose values do not match its sizes")
        }
        if x.c != self.cin || x.block != self.block {
            bail!(
                "blocked conv: an input of {} channels in blocks of {}, expected {} in blocks of {}",
                x.c,
                x.block,
                self.cin,
                self.block
            )
        }
        let Some((oh, ow)) = self.output_size(x.h, x.w) else {
            bail!(
                "blocked conv: a {}x{} input is too small for a {}x{} kernel",
                x.h,
                x.w,
                self.kh,
                self.kw
            )
        };
        let (b, ib, ob) = (self.block, x.blocks(), self.cout.div_ceil(self.block));
        if let Some(r) = residual {
            if (r.n, r.c, r.h, r.w, r.block) != (x.n, self.cout, oh, ow, b) {
                bail!(
                    "blocked conv: a residual of [{}, {}, {}, {}] for an output of [{}, {}, {oh}, {ow}]",
                    r.n,
                    r.c,
                    r.h,
                    r.w,
                    x.n,
                    self.cout
                )
            }
        }
        // The zero-padded input, `[n, ib, ph, pw, b]` (`output_size` checked the padded sizes).
        let p = self.padding;
        let (ph, pw) = (x.h + 2 * p, x.w + 2 * p);
        let (Some(padded_len), Some(out_len)) = (
            checked_len(&[x.n, ib, ph, pw, b]),
            checked_len(&[x.n, ob, oh, ow, b]),
        ) else {
            bail!(
                "blocked conv: the padded input or the output of a [{}, {}, {}, {}] input has more values than a usize counts",
                x.n,
                x.c,
                x.h,
                x.w
            )
        };
        let padded: std::borrow::Cow<[f32]> = if p == 0 {
            std::borrow::Cow::Borrowed(&x.data)
        } else {
            let mut buf = vec![0.0; padded_len];
            buf.par_chunks_mut(ph * pw * b)
                .zip(x.data.par_chunks(x.h * x.w * b))
                .for_each(|(dst, src)| {
                    for (y, row) in src.chunks_exact(x.w * b).enumerate() {
                        dst[((y + p) * pw + p) * b..][..x.w * b].copy_from_slice(row);
                    }
                });
            std::borrow::Cow::Owned(buf)
        };
        let mut out = vec![0.0; out_len];
        let shape = Shape {
            ib,
            cin: self.cin,
            ph,
            pw,
            ow,
            b,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
        };
        let padded = &*padded;
        out.par_chunks_mut(ow * b).enumerate().for_each(|(task, row)| {
            let (image, rest) = (task / (ob * oh), task % (ob * oh));
            let (o, oy) = (rest / oh, rest % oh);
            let input = &padded[image * ib * ph * pw * b..][..ib * ph * pw * b];
            let weight = &self.weight[o * ib * self.kh * self.kw * b * b..][..ib * self.kh * self.kw * b * b];
            let bias = &self.bias[o * b..][..b];
            let res = residual.map(|r| &r.data[task * ow * b..][..ow * b]);
            run_row(self.isa, &shape, input, weight, bias, res, self.relu, oy, row);
        });
        Ok(Blocked {
            n: x.n,
            c: self.cout,
            h: oh,
            w: ow,
            block: b,
            data: out,
        })
    }
}

/// The sizes one output row's kernel needs.
struct Shape {
    ib: usize,
    /// Input channels (the last block's channels past them are zero and skipped).
    cin: usize,
    ph: usize,
    pw: usize,
    ow: usize,
    b: usize,
    kh: usize,
    kw: usize,
    stride: usize,
}

/// One output row on the path's kernel.
#[allow(clippy::too_many_arguments)]
fn run_row(
    isa: Isa,
    s: &Shape,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    res: Option<&[f32]>,
    relu: bool,
    oy: usize,
    row: &mut [f32],
) {
    // The bounds every kernel relies on, checked once per row.
    let last_in = ((s.ib - 1) * s.ph + oy * s.stride + s.kh - 1) * s.pw + (s.ow - 1) * s.stride + s.kw - 1;
    let sound = (last_in + 1) * s.b <= input.len()
        && weight.len() == s.ib * s.kh * s.kw * s.b * s.b
        && bias.len() == s.b
        && row.len() == s.ow * s.b
        && res.is_none_or(|r| r.len() == row.len());
    if !sound {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 && s.b == 16 && isa.is_available() {
            // SAFETY: the CPU has AVX-512F (checked); every read and write lies inside the
            // slices (`sound` above bounds the last input element the row reads).
            unsafe { row_avx512(s, input, weight, bias, res, relu, oy, row) };
            return;
        }
        if isa == Isa::Avx2 && s.b == 8 && isa.is_available() {
            // SAFETY: as above, with AVX2 and FMA.
            unsafe { row_avx2(s, input, weight, bias, res, relu, oy, row) };
            return;
        }
    }
    let _ = isa;
    row_portable(s, input, weight, bias, res, relu, oy, row);
}

/// The portable kernel: any block size, a multiply and an add per term, the same order of
/// sums as the vector kernels.
#[allow(clippy::too_many_arguments)]
fn row_portable(
    s: &Shape,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    res: Option<&[f32]>,
    relu: bool,
    oy: usize,
    row: &mut [f32],
) {
    let b = s.b;
    for ox0 in (0..s.ow).step_by(PIXELS) {
        let count = PIXELS.min(s.ow - ox0);
        let mut acc = [[0f32; 16]; PIXELS];
        for a in acc.iter_mut().take(count) {
            a[..b].copy_from_slice(bias);
        }
        for icb in 0..s.ib {
            for ky in 0..s.kh {
                let line = ((icb * s.ph) + oy * s.stride + ky) * s.pw;
                for kx in 0..s.kw {
                    let wt = &weight[((icb * s.kh + ky) * s.kw + kx) * b * b..][..b * b];
                    for ci in 0..b.min(s.cin - icb * b) {
                        let wv = &wt[ci * b..][..b];
                        for (p, a) in acc.iter_mut().take(count).enumerate() {
                            let xv = input[(line + (ox0 + p) * s.stride + kx) * b + ci];
                            for (a, &w) in a[..b].iter_mut().zip(wv) {
                                *a += xv * w;
                            }
                        }
                    }
                }
            }
        }
        for (p, a) in acc.iter().take(count).enumerate() {
            let dst = &mut row[(ox0 + p) * b..][..b];
            for (l, d) in dst.iter_mut().enumerate() {
                let mut v = a[l];
                if let Some(r) = res {
                    v += r[(ox0 + p) * b + l];
                }
                *d = if relu { relu_value(v) } else { v };
            }
        }
    }
}

macro_rules! vector_row {
    ($name:ident, $features:literal, $lanes:literal, $vec:ty, $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident, $add:ident, $max:ident) => {
        /// One output row with this path's vectors (`b` = lanes).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            s: &Shape,
            input: &[f32],
            weight: &[f32],
            bias: &[f32],
            res: Option<&[f32]>,
            relu: bool,
            oy: usize,
            row: &mut [f32],
        ) {
            use std::arch::x86_64::*;
            const B: usize = $lanes;
            let (ip, wp, op) = (input.as_ptr(), weight.as_ptr(), row.as_mut_ptr());
            let bias_v = $load(bias.as_ptr());
            let mut ox0 = 0;
            while ox0 < s.ow {
                let count = PIXELS.min(s.ow - ox0);
                let mut acc: [$vec; PIXELS] = [bias_v; PIXELS];
                for icb in 0..s.ib {
                    // The block's real input channels (a 3-channel image fills 3 of 16).
                    let channels = B.min(s.cin - icb * B);
                    for ky in 0..s.kh {
                        let line = ((icb * s.ph) + oy * s.stride + ky) * s.pw;
                        for kx in 0..s.kw {
                            let wt = wp.add(((icb * s.kh + ky) * s.kw + kx) * B * B);
                            let xb = ip.add((line + ox0 * s.stride + kx) * B);
                            if count == PIXELS {
                                for ci in 0..channels {
                                    let wv = $load(wt.add(ci * B));
                                    for p in 0..PIXELS {
                                        let xv = $set1(*xb.add(p * s.stride * B + ci));
                                        acc[p] = $fma(xv, wv, acc[p]);
                                    }
                                }
                            } else {
                                for ci in 0..channels {
                                    let wv = $load(wt.add(ci * B));
                                    for p in 0..count {
                                        let xv = $set1(*xb.add(p * s.stride * B + ci));
                                        acc[p] = $fma(xv, wv, acc[p]);
                                    }
                                }
                            }
                        }
                    }
                }
                let zero = $zero();
                for (p, &a) in acc.iter().enumerate().take(count) {
                    let at = (ox0 + p) * B;
                    let mut v = a;
                    if let Some(r) = res {
                        v = $add(v, $load(r.as_ptr().add(at)));
                    }
                    if relu {
                        // max(0, v): 0 where v < 0, v otherwise (NaN kept), as `relu_value`.
                        v = $max(zero, v);
                    }
                    $store(op.add(at), v);
                }
                ox0 += PIXELS;
            }
        }
    };
}

vector_row!(
    row_avx512,
    "avx512f,avx2,fma",
    16,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_max_ps
);
vector_row!(
    row_avx2,
    "avx2,fma",
    8,
    __m256,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_max_ps
);

/// Max pooling of a blocked activation with a square `kernel`, `stride` and `padding` (floor
/// mode; padding never wins), PyTorch's first maximum with NaN winning, lane by lane.
pub fn max_pool(x: &Blocked, kernel: usize, stride: usize, padding: usize) -> Result<Blocked> {
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
    let mut data = vec![0.0; len];
    data.par_chunks_mut(oh * ow * b)
        .zip(x.data.par_chunks(x.h * x.w * b))
        .for_each(|(dst, src)| {
            crate::isa::vectorized(|| {
                for oy in 0..oh {
                    let rows =
                        (oy * stride).saturating_sub(padding)..(oy * stride + kernel - padding).min(x.h);
                    for ox in 0..ow {
                        let cols =
                            (ox * stride).saturating_sub(padding)..(ox * stride + kernel - padding).min(x.w);
                        let m = &mut dst[(oy * ow + ox) * b..][..b];
                        m.fill(f32::NEG_INFINITY);
                        for iy in rows.clone() {
                            for ix in cols.clone() {
                                let v = &src[(iy * x.w + ix) * b..][..b];
                                for (m, &v) in m.iter_mut().zip(v) {
                                    if v > *m || v.is_nan() {
                                        *m = v;
                                    }
                                }
                            }
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
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
            .collect()
    }

    /// conv + bias (+ residual) (+ ReLU) by nested loops in f64.
    #[allow(clippy::too_many_arguments)]
    fn direct(
        x: &[f32],
        [n, c, h, w]: [usize; 4],
        wt: &[f32],
        [o, _, kh, kw]: [usize; 4],
        bias: &[f32],
        res: Option<&[f32]>,
        s: usize,
        p: usize,
        relu: bool,
    ) -> Vec<f64> {
        let (oh, ow) = ((h + 2 * p - kh) / s + 1, (w + 2 * p - kw) / s + 1);
        let mut out = vec![0.0; n * o * oh * ow];
        for b in 0..n {
            for oc in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = bias[oc] as f64;
                        for ic in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (iy, ix) = (
                                        (oy * s + ky) as isize - p as isize,
                                        (ox * s + kx) as isize - p as isize,
                                    );
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        sum += x[((b * c + ic) * h + iy as usize) * w + ix as usize] as f64
                                            * wt[((oc * c + ic) * kh + ky) * kw + kx] as f64;
                                    }
                                }
                            }
                        }
                        let at = ((b * o + oc) * oh + oy) * ow + ox;
                        if let Some(r) = res {
                            sum += r[at] as f64;
                        }
                        out[at] = if relu { sum.max(0.0) } else { sum };
                    }
                }
            }
        }
        out
    }

    /// Every available path against the plain loops: 3x3 (stride 1 and 2), 1x1 (stride 1
    /// and 2), 7x7 stride 2, channel counts that do not fill a block, rows longer and shorter
    /// than a tile, with and without residual and ReLU.
    #[test]
    fn blocked_convolutions_match_plain_loops_on_every_path() {
        let cases = [
            ([2, 16, 15, 30], [32, 16, 3, 3], 1, 1, true, true),
            ([1, 20, 9, 14], [24, 20, 3, 3], 2, 1, true, false),
            ([1, 32, 8, 13], [16, 32, 1, 1], 1, 0, false, true),
            ([2, 16, 10, 10], [40, 16, 1, 1], 2, 0, false, false),
            ([1, 3, 23, 29], [16, 3, 7, 7], 2, 3, true, false),
        ];
        for isa in crate::isa::available() {
            for (xd, wd, s, p, relu, with_res) in cases {
                let (x, wt, bias) = (
                    values(xd.iter().product(), 1),
                    values(wd.iter().product(), 2),
                    values(wd[0], 3),
                );
                let (oh, ow) = ((xd[2] + 2 * p - wd[2]) / s + 1, (xd[3] + 2 * p - wd[3]) / s + 1);
                let res = values(xd[0] * wd[0] * oh * ow, 4);
                let res = with_res.then_some(&res[..]);
                let expected = direct(&x, xd, &wt, wd, &bias, res, s, p, relu);
                let conv = BlockedConv::with_isa(isa, &wt, Some(&bias), wd, s, p, relu).unwrap();
                let bx = Blocked::from_nchw(&x, xd, conv.block).unwrap();
                let br = res.map(|r| Blocked::from_nchw(r, [xd[0], wd[0], oh, ow], conv.block).unwrap());
                let out = conv.forward(&bx, br.as_ref()).unwrap().to_nchw();
                let scale = expected.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
                for (i, (&a, &b)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        (a as f64 - b).abs() <= 2e-6 * scale,
                        "{isa} {xd:?} {wd:?}: {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn layouts_round_trip_and_bad_shapes_are_errors() {
        let x = values(2 * 19 * 5 * 3, 5);
        let b = Blocked::from_nchw(&x, [2, 19, 5, 3], 8).unwrap();
        assert_eq!(b.blocks(), 3);
        assert_eq!(b.to_nchw(), x);
        assert!(Blocked::from_nchw(&x, [2, 19, 5, 4], 8).is_err());
        assert!(BlockedConv::new(&[0.0; 8], None, [2, 2, 1, 1], 1, 0, false).is_err());
        let conv =
            BlockedConv::with_isa(Isa::Portable, &[1.0; 19 * 4], None, [4, 19, 1, 1], 1, 0, false).unwrap();
        assert!(conv
            .forward(&Blocked::from_nchw(&x[..30], [1, 2, 5, 3], 8).unwrap(), None)
            .is_err());
    }

    #[test]
    fn pooling_matches_plain_loops() {
        let dims = [2, 19, 11, 12];
        let mut x = values(dims.iter().product(), 6);
        x[40] = f32::NAN;
        for block in [8, 16] {
            let bx = Blocked::from_nchw(&x, dims, block).unwrap();
            let pooled = max_pool(&bx, 3, 2, 1).unwrap();
            assert_eq!((pooled.h, pooled.w), (6, 6));
            let out = pooled.to_nchw();
            for (plane, o) in x.chunks(11 * 12).zip(out.chunks(36)) {
                for oy in 0..6usize {
                    for ox in 0..6usize {
                        let mut m = f32::NEG_INFINITY;
                        for iy in (2 * oy).saturating_sub(1)..(2 * oy + 2).min(11) {
                            for ix in (2 * ox).saturating_sub(1)..(2 * ox + 2).min(12) {
                                let v = plane[iy * 12 + ix];
                                if v > m || v.is_nan() {
                                    m = v;
                                }
                            }
                        }
                        assert_eq!(o[oy * 6 + ox].to_bits(), m.to_bits());
                    }
                }
            }
            let avg = global_average(&bx).unwrap();
            for (a, plane) in avg.iter().zip(x.chunks(11 * 12)) {
                let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / 132.0;
                assert!(
                    mean.is_nan() && a.is_nan() || (*a as f64 - mean).abs() < 1e-6,
                    "{a} {mean}"
                );
            }
        }
    }

    #[test]
    fn folding_a_batch_norm_gives_the_norm_of_the_convolution() {
        let (mut w, mut b) = (vec![1.0, 2.0, 3.0, 4.0], vec![0.5, -0.5]);
        fold_batch_norm(&mut w, &mut b, &[1.0, 2.0], &[2.0, 0.5], &[0.25, 0.0]).unwrap();
        assert_eq!(w, [2.0, 4.0, 1.5, 2.0]);
        assert_eq!(b, [(0.5 - 1.0) * 2.0 + 0.25, (-0.5 - 2.0) * 0.5]);
        assert!(fold_batch_norm(&mut w, &mut b, &[1.0], &[2.0], &[0.0]).is_err());
    }
}
