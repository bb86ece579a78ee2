//! 2-d pooling with PyTorch's exact semantics and correct gradients: see the [`ops`](crate::ops)
//! module docs.

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Tensor, WithDType,
};
use rayon::prelude::*;

/// Below this many inner-loop iterations a kernel runs on the calling thread: spawning rayon
/// tasks for tiny tensors costs more than it saves.
const PARALLEL_THRESHOLD: usize = 1 << 15;

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
    let (h, w) = check_input("max_pool2d", xs)?;
    p.validate()?;
    let out = output_size_or_err("max_pool2d", p, (h, w))?;
    on_cpu_float(xs, |xs| xs.apply_op1(MaxPool2dOp { p: *p, out }))
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
    let (h, w) = check_input("avg_pool2d", xs)?;
    p.validate()?;
    let out = output_size_or_err("avg_pool2d", p, (h, w))?;
    on_cpu_float(xs, |xs| xs.apply_op1(AvgPool2dOp { p: *p, out }))
}

/// 2-d adaptive average pooling of an `(N, C, H, W)` tensor to `out = (oh, ow)`, like
/// `torch.nn.functional.adaptive_avg_pool2d`.
///
/// Output row `i` averages input rows `floor(i * H / oh) .. ceil((i + 1) * H / oh)` (and the
/// same for columns): windows may overlap and differ in size, and `out` may exceed the input
/// size. The backward pass spreads each output gradient evenly over its window.
/// The input may be non-contiguous. See the [`ops`](crate::ops) docs for devices and dtypes.
pub fn adaptive_avg_pool2d(xs: &Tensor, out: (usize, usize)) -> Result<Tensor> {
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
    on_cpu_float(xs, |xs| xs.apply_op1(AdaptiveAvgPool2dOp { out }))
}

// ---------------------------------------------------------------------------------------------
// Checks and the device / dtype fallback.

fn check_input(op: &str, xs: &Tensor) -> Result<(usize, usize)> {
    match *xs.dims() {
        [_, _, h, w] => Ok((h, w)),
        ref dims => bail!("{op}: expected a 4-d (N, C, H, W) input, got shape {dims:?}"),
    }
}

fn output_size_or_err(op: &str, p: &Pool2dParams, (h, w): (usize, usize)) -> Result<(usize, usize)> {
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

/// Runs `f` on a CPU, f32-or-f64 version of `xs` and brings the result back to `xs`'s
/// device and dtype. Every conversion is differentiable.
fn on_cpu_float(xs: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let dtype = xs.dtype();
    let work_dtype = match dtype {
        DType::F32 | DType::F64 => dtype,
        DType::F16 | DType::BF16 => DType::F32,
        other => bail!("pool2d: unsupported dtype {other:?}, expected f32, f64, f16 or bf16"),
    };
    let device = xs.device().clone();
    let x = if device.is_cpu() {
        xs.clone()
    } else {
        xs.to_device(&Device::Cpu)?
    };
    let x = if work_dtype == dtype {
        x
    } else {
        x.to_dtype(work_dtype)?
    };
    let y = f(&x)?;
    let y = if work_dtype == dtype {
        y
    } else {
        y.to_dtype(dtype)?
    };
    if device.is_cpu() {
        Ok(y)
    } else {
        y.to_device(&device)
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels.

/// The element types the kernels run in.
trait Float: WithDType {
    const NEG_INFINITY: Self;
    fn is_nan(self) -> bool;
}

impl Float for f32 {
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Float for f64 {
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// A strided, read-only 4-d view of a CPU buffer, as described by a candle [`Layout`].
struct View4<'a, T> {
    data: &'a [T],
    start: usize,
    stride: [usize; 4],
    dims: [usize; 4],
}

impl<'a, T: Copy> View4<'a, T> {
    /// Checks that the layout is 4-d and stays inside `data`, so indexing cannot panic.
    fn new(op: &str, data: &'a [T], layout: &Layout) -> Result<Self> {
        let (dims, stride) = match (layout.dims(), layout.stride()) {
            (&[a, b, c, d], &[sa, sb, sc, sd]) => ([a, b, c, d], [sa, sb, sc, sd]),
            (dims, _) => bail!("{op}: expected a 4-d tensor, got shape {dims:?}"),
        };
        let start = layout.start_offset();
        if dims.iter().all(|&d| d > 0) {
            let last = dims.iter().zip(stride.iter()).try_fold(start, |acc, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| x.checked_add(acc))
            });
            match last {
                Some(last) if last < data.len() => {}
                _ => bail!(
                    "{op}: layout {layout:?} does not fit a buffer of {} elements",
                    data.len()
                ),
            }
        }
        Ok(Self {
            data,
            start,
            stride,
            dims,
        })
    }

    /// The offset of plane `nc` (batch-major index over N * C).
    fn plane(&self, nc: usize) -> usize {
        let c = self.dims[1];
        self.start + (nc / c) * self.stride[0] + (nc % c) * self.stride[1]
    }

    fn at(&self, plane: usize, h: usize, w: usize) -> T {
        self.data[plane + h * self.stride[2] + w * self.stride[3]]
    }
}

/// Runs `f(plane_index, plane)` over the consecutive `plane_len`-sized chunks of `out`, in
/// parallel when `work` (total inner-loop iterations) is large enough.
fn for_each_plane<T: Send>(out: &mut [T], plane_len: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if plane_len == 0 || out.is_empty() {
        return;
    }
    if work < PARALLEL_THRESHOLD {
        out.chunks_mut(plane_len).enumerate().for_each(|(i, p)| f(i, p));
    } else {
        out.par_chunks_mut(plane_len)
            .enumerate()
            .for_each(|(i, p)| f(i, p));
    }
}

/// One dimension of a pooling window: the real input range `[start, end)` and the divisor
/// PyTorch uses with `count_include_pad` (window clipped to the padded input).
#[derive(Clone, Copy)]
struct Window {
    start: usize,
    end: usize,
    padded_len: usize,
}

fn window(o: usize, kernel: usize, stride: usize, pad: usize, input: usize) -> Window {
    // Padded coordinates: the padded input spans [0, input + 2 * pad).
    let ps = o * stride;
    let pe = ps + kernel;
    let start = ps.max(pad) - pad;
    let end = pe.min(pad + input).saturating_sub(pad);
    let padded_len = pe.min(input + 2 * pad).saturating_sub(ps);
    Window {
        start,
        end: end.max(start),
        padded_len,
    }
}

fn windows(n_out: usize, kernel: usize, stride: usize, pad: usize, input: usize) -> Vec<Window> {
    (0..n_out)
        .map(|o| window(o, kernel, stride, pad, input))
        .collect()
}

/// PyTorch's adaptive windows: `floor(o * input / n_out) .. ceil((o + 1) * input / n_out)`.
fn adaptive_windows(n_out: usize, input: usize) -> Vec<Window> {
    (0..n_out)
        .map(|o| {
            let start = (o * input) / n_out;
            let end = ((o + 1) * input).div_ceil(n_out);
            Window {
                start,
                end,
                padded_len: end - start,
            }
        })
        .collect()
}

/// An estimate of the inner-loop iterations of `outputs` windows shaped like the first ones.
fn work(outputs: usize, wh: &[Window], ww: &[Window]) -> usize {
    let kh = wh.first().map_or(1, |w| w.padded_len.max(1));
    let kw = ww.first().map_or(1, |w| w.padded_len.max(1));
    outputs.saturating_mul(kh * kw)
}

/// Max pooling forward: returns `(N, C, OH, OW)`, contiguous.
///
/// Inputs whose rows are contiguous (the usual case) are pooled separably: for each output row,
/// the maximum over the window's input rows, column by column along whole rows (a pass the
/// compiler vectorises), then the maximum of each window's columns of that. Other layouts scan
/// each window. Both give the window's maximum, NaN if it holds one; among equal values the
/// two may take a different one, which only shows for `0.0` against `-0.0`.
fn max_pool_fwd<T: Float>(x: &View4<T>, wh: &[Window], ww: &[Window]) -> Vec<T> {
    let [n, c, _, w] = x.dims;
    let plane_len = wh.len() * ww.len();
    let mut out = vec![T::zero(); n * c * plane_len];
    let work = work(out.len(), wh, ww);
    if x.stride[3] == 1 && !ww.is_empty() {
        for_each_plane(&mut out, plane_len, work, |nc, plane| {
            let base = x.plane(nc);
            let mut column_max = vec![T::NEG_INFINITY; w];
            for (out_row, rh) in plane.chunks_exact_mut(ww.len()).zip(wh) {
                column_maxima(x, base, rh, &mut column_max);
                for (o, rw) in out_row.iter_mut().zip(ww) {
                    *o = window_max(&column_max, rw);
                }
            }
        });
        return out;
    }
    for_each_plane(&mut out, plane_len, work, |nc, plane| {
        let base = x.plane(nc);
        for (oh, rh) in wh.iter().enumerate() {
            for (ow, rw) in ww.iter().enumerate() {
                let (_, maxval) = argmax(x, base, rh, rw);
                plane[oh * ww.len() + ow] = maxval;
            }
        }
    });
    out
}

/// The running maximum of a scan after seeing `v`: `v` when it is larger than `m` or NaN,
/// the test of [`argmax`] (and of PyTorch's kernel).
#[inline(always)]
fn take_max<T: Float>(m: T, v: T) -> T {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

/// The first maximum of a window (NaN wins), scanning row-major like PyTorch's CPU kernel:
/// returns its `(h, w)` and its value. An empty window (impossible for valid params) returns
/// `-inf` at its start.
fn argmax<T: Float>(x: &View4<T>, base: usize, rh: &Window, rw: &Window) -> ((usize, usize), T) {
    let mut maxval = T::NEG_INFINITY;
    let mut maxidx = (rh.start, rw.start);
    for ih in rh.start..rh.end {
        for iw in rw.start..rw.end {
            let val = x.at(base, ih, iw);
            if val > maxval || val.is_nan() {
                maxval = val;
                maxidx = (ih, iw);
            }
        }
    }
    (maxidx, maxval)
}

/// Max pooling backward: the gradient w.r.t. the input, `(N, C, H, W)` contiguous.
fn max_pool_bwd<T: Float>(x: &View4<T>, g: &View4<T>, wh: &[Window], ww: &[Window]) -> Vec<T> {
    let [n, c, h, w] = x.dims;
    let plane_len = h * w;
    let mut out = vec![T::zero(); n * c * plane_len];
    let work = work(n * c * wh.len() * ww.len(), wh, ww);
    let rows_contiguous = x.stride[3] == 1;
    for_each_plane(&mut out, plane_len, work, |nc, plane| {
        let xbase = x.plane(nc);
        let gbase = g.plane(nc);
        let mut column_max = vec![T::NEG_INFINITY; if rows_contiguous { w } else { 0 }];
        for (oh, rh) in wh.iter().enumerate() {
            if rows_contiguous {
                column_maxima(x, xbase, rh, &mut column_max);
            }
            for (ow, rw) in ww.iter().enumerate() {
                if rh.start >= rh.end || rw.start >= rw.end {
                    continue;
                }
                let (ih, iw) = match rows_contiguous {
                    // The window's maximum from the column maxima, then the first position
                    // holding it: where `argmax` stops moving. NaN windows take the scan.
                    true => match window_max(&column_max, rw) {
                        m if m.is_nan() => argmax(x, xbase, rh, rw).0,
                        m => first_position_of(x, xbase, rh, rw, m),
                    },
                    false => argmax(x, xbase, rh, rw).0,
                };
                plane[ih * w + iw] += g.at(gbase, oh, ow);
            }
        }
    });
    out
}

/// `column_max[iw]` = the maximum (as [`take_max`] scans) of column `iw` over the input rows
/// `rh` of the plane at `base`, whose rows are contiguous; `-inf` for an empty `rh`.
fn column_maxima<T: Float>(x: &View4<T>, base: usize, rh: &Window, column_max: &mut [T]) {
    column_max.fill(T::NEG_INFINITY);
    for ih in rh.start..rh.end {
        // In bounds: `View4::new` checked that the whole view fits the buffer.
        let row = &x.data[base + ih * x.stride[2]..][..column_max.len()];
        for (m, &v) in column_max.iter_mut().zip(row) {
            *m = take_max(*m, v);
        }
    }
}

/// The maximum of the column maxima in the window's columns `rw`.
fn window_max<T: Float>(column_max: &[T], rw: &Window) -> T {
    column_max[rw.start..rw.end]
        .iter()
        .fold(T::NEG_INFINITY, |m, &v| take_max(m, v))
}

/// The first position, in row-major order, of the window `(rh, rw)` of the plane at `base`
/// (rows contiguous) whose value equals `m`, its (non-NaN) maximum: [`argmax`]'s answer, since
/// `argmax` moves only to strictly larger values.
fn first_position_of<T: Float>(x: &View4<T>, base: usize, rh: &Window, rw: &Window, m: T) -> (usize, usize) {
    for ih in rh.start..rh.end {
        let row = &x.data[base + ih * x.stride[2] + rw.start..][..rw.end - rw.start];
        if let Some(j) = row.iter().position(|&v| v == m) {
            return (ih, rw.start + j);
        }
    }
    (rh.start, rw.start)
}

/// Average pooling forward (also adaptive pooling, whose windows carry their own divisor).
fn avg_pool_fwd<T: Float>(
    x: &View4<T>,
    wh: &[Window],
    ww: &[Window],
    divisor: impl Fn(&Window, &Window) -> usize + Sync,
) -> Vec<T> {
    let [n, c, _, w] = x.dims;
    let plane_len = wh.len() * ww.len();
    let mut out = vec![T::zero(); n * c * plane_len];
    let work = work(out.len(), wh, ww);
    let empty = |rh: &Window, rw: &Window| rh.start >= rh.end || rw.start >= rw.end;
    if x.stride[3] == 1 && !ww.is_empty() {
        // Rows are contiguous: sum each output row's windows input row by input row, from
        // slices. Each window still adds its elements in row-major order, from zero, then
        // divides: the same sums and quotients, bit for bit, as the window scan below.
        // The divisors, the same for every plane; 1 for empty windows (whose sum stays 0).
        let divisors: Vec<T> = wh
            .iter()
            .flat_map(|rh| ww.iter().map(move |rw| (rh, rw)))
            .map(|(rh, rw)| match empty(rh, rw) {
                true => T::one(),
                false => T::from_f64(divisor(rh, rw) as f64),
            })
            .collect();
        let uniform = uniform_windows(ww);
        for_each_plane(&mut out, plane_len, work, |nc, plane| {
            let base = x.plane(nc);
            let rows = plane
                .chunks_exact_mut(ww.len())
                .zip(divisors.chunks_exact(ww.len()));
            for ((out_row, divisors), rh) in rows.zip(wh) {
                for ih in rh.start..rh.end {
                    // In bounds: `View4::new` checked that the whole view fits the buffer.
                    let row = &x.data[base + ih * x.stride[2]..][..w];
                    match uniform {
                        // Windows `first + ow * step .. + len`: tap by tap along the row.
                        Some((first, step, len)) => {
                            for kx in 0..len {
                                let taps = row[first + kx..].iter().step_by(step);
                                for (sum, &v) in out_row.iter_mut().zip(taps) {
                                    *sum += v;
                                }
                            }
                        }
                        None => {
                            for (sum, rw) in out_row.iter_mut().zip(ww) {
                                for &v in &row[rw.start..rw.end.max(rw.start)] {
                                    *sum += v;
                                }
                            }
                        }
                    }
                }
                for (sum, &d) in out_row.iter_mut().zip(divisors) {
                    *sum /= d;
                }
            }
        });
        return out;
    }
    for_each_plane(&mut out, plane_len, work, |nc, plane| {
        let base = x.plane(nc);
        for (oh, rh) in wh.iter().enumerate() {
            for (ow, rw) in ww.iter().enumerate() {
                if empty(rh, rw) {
                    continue;
                }
                let mut sum = T::zero();
                for ih in rh.start..rh.end {
                    for iw in rw.start..rw.end {
                        sum += x.at(base, ih, iw);
                    }
                }
                plane[oh * ww.len() + ow] = sum / T::from_f64(divisor(rh, rw) as f64);
            }
        }
    });
    out
}

/// `(first, step, len)` when every window is `first + o * step .. first + o * step + len`
/// (`len >= 1`; no padding reaches the input, or none clips a window): their taps are then
/// strided runs along an input row.
fn uniform_windows(ww: &[Window]) -> Option<(usize, usize, usize)> {
    let first = ww.first()?;
    let len = first.end.checked_sub(first.start).filter(|&l| l > 0)?;
    let step = match ww.get(1) {
        Some(second) => second.start.checked_sub(first.start).filter(|&s| s > 0)?,
        None => 1,
    };
    let uniform = ww
        .iter()
        .enumerate()
        .all(|(o, rw)| rw.start == first.start + o * step && rw.end == rw.start + len);
    uniform.then_some((first.start, step, len))
}

/// Average pooling backward: spreads `g / divisor` over each window of an `(h, w)` input.
fn avg_pool_bwd<T: Float>(
    g: &View4<T>,
    (h, w): (usize, usize),
    wh: &[Window],
    ww: &[Window],
    divisor: impl Fn(&Window, &Window) -> usize + Sync,
) -> Vec<T> {
    let [n, c, _, _] = g.dims;
    let plane_len = h * w;
    let mut out = vec![T::zero(); n * c * plane_len];
    let work = work(n * c * wh.len() * ww.len(), wh, ww);
    for_each_plane(&mut out, plane_len, work, |nc, plane| {
        let gbase = g.plane(nc);
        let mut shares = vec![T::zero(); ww.len()];
        for (oh, rh) in wh.iter().enumerate() {
            for (ow, (share, rw)) in shares.iter_mut().zip(ww).enumerate() {
                *share = g.at(gbase, oh, ow) / T::from_f64(divisor(rh, rw).max(1) as f64);
            }
            // Input row by input row: each input element still receives its shares in the
            // order of the windows, (oh, ow), as a window-by-window loop gives them.
            for ih in rh.start..rh.end {
                let row = &mut plane[ih * w..][..w];
                for (&share, rw) in shares.iter().zip(ww) {
                    for v in &mut row[rw.start..rw.end.max(rw.start)] {
                        *v += share;
                    }
                }
            }
        }
    });
    out
}

/// The divisor of `avg_pool2d` for a pair of windows.
fn avg_divisor(count_include_pad: bool) -> impl Fn(&Window, &Window) -> usize + Sync {
    move |rh: &Window, rw: &Window| {
        if count_include_pad {
            rh.padded_len * rw.padded_len
        } else {
            (rh.end - rh.start) * (rw.end - rw.start)
        }
    }
}

fn adaptive_divisor(rh: &Window, rw: &Window) -> usize {
    (rh.end - rh.start) * (rw.end - rw.start)
}

fn check_grad_dims(op: &str, g: &Layout, expected: [usize; 4]) -> Result<()> {
    if g.dims() != expected {
        bail!(
            "{op}: gradient of shape {:?} does not match the output shape {expected:?}",
            g.dims()
        )
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Custom ops.

/// Max pooling forward; backward via [`MaxPool2dBackward`].
struct MaxPool2dOp {
    p: Pool2dParams,
    out: (usize, usize),
}

impl MaxPool2dOp {
    fn windows(&self, (h, w): (usize, usize)) -> (Vec<Window>, Vec<Window>) {
        let p = &self.p;
        (
            windows(self.out.0, p.kernel.0, p.stride.0, p.padding.0, h),
            windows(self.out.1, p.kernel.1, p.stride.1, p.padding.1, w),
        )
    }
}

impl CustomOp1 for MaxPool2dOp {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(op: &MaxPool2dOp, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let x = View4::new(op.name(), data, l)?;
            let [n, c, h, w] = x.dims;
            let (wh, ww) = op.windows((h, w));
            let out = max_pool_fwd(&x, &wh, &ww);
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.out.0, op.out.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = arg.apply_op2_no_bwd(
            grad_res,
            &MaxPool2dBackward {
                fwd: MaxPool2dOp {
                    p: self.p,
                    out: self.out,
                },
            },
        )?;
        Ok(Some(g))
    }
}

/// Max pooling backward, a custom op on `(input, grad_output)` that recomputes the argmax of
/// each window and returns the gradient w.r.t. the input.
struct MaxPool2dBackward {
    fwd: MaxPool2dOp,
}

impl CustomOp2 for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "max_pool2d_backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(
            op: &MaxPool2dBackward,
            x: &[T],
            l1: &Layout,
            g: &[T],
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let x = View4::new(op.name(), x, l1)?;
            let [n, c, h, w] = x.dims;
            check_grad_dims(op.name(), l2, [n, c, op.fwd.out.0, op.fwd.out.1])?;
            let g = View4::new(op.name(), g, l2)?;
            let (wh, ww) = op.fwd.windows((h, w));
            let out = max_pool_bwd(&x, &g, &wh, &ww);
            Ok((T::to_cpu_storage_owned(out), Shape::from((n, c, h, w))))
        }
        float_storages!(self.name(), (s1 => x, s2 => g), run(self, x, l1, g, l2))
    }
}

/// Average pooling forward; backward via [`AvgPool2dBackward`].
struct AvgPool2dOp {
    p: Pool2dParams,
    out: (usize, usize),
}

impl AvgPool2dOp {
    fn windows(&self, (h, w): (usize, usize)) -> (Vec<Window>, Vec<Window>) {
        MaxPool2dOp {
            p: self.p,
            out: self.out,
        }
        .windows((h, w))
    }
}

impl CustomOp1 for AvgPool2dOp {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(op: &AvgPool2dOp, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let x = View4::new(op.name(), data, l)?;
            let [n, c, h, w] = x.dims;
            let (wh, ww) = op.windows((h, w));
            let out = avg_pool_fwd(&x, &wh, &ww, avg_divisor(op.p.count_include_pad));
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.out.0, op.out.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        let op = AvgPool2dBackward {
            fwd: AvgPool2dOp {
                p: self.p,
                out: self.out,
            },
            input: (h, w),
        };
        Ok(Some(grad_res.apply_op1_no_bwd(&op)?))
    }
}

/// Average pooling backward, a custom op on `grad_output` returning the gradient w.r.t. an
/// input of spatial size `input`.
struct AvgPool2dBackward {
    fwd: AvgPool2dOp,
    input: (usize, usize),
}

impl CustomOp1 for AvgPool2dBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d_backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(op: &AvgPool2dBackward, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let g = View4::new(op.name(), data, l)?;
            let [n, c, _, _] = g.dims;
            check_grad_dims(op.name(), l, [n, c, op.fwd.out.0, op.fwd.out.1])?;
            let (wh, ww) = op.fwd.windows(op.input);
            let out = avg_pool_bwd(&g, op.input, &wh, &ww, avg_divisor(op.fwd.p.count_include_pad));
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.input.0, op.input.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }
}

/// Adaptive average pooling forward; backward via [`AdaptiveAvgPool2dBackward`].
struct AdaptiveAvgPool2dOp {
    out: (usize, usize),
}

impl CustomOp1 for AdaptiveAvgPool2dOp {
    fn name(&self) -> &'static str {
        "adaptive_avg_pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(op: &AdaptiveAvgPool2dOp, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let x = View4::new(op.name(), data, l)?;
            let [n, c, h, w] = x.dims;
            if h == 0 || w == 0 {
                bail!(
                    "{}: input must have a non-empty spatial size, got {:?}",
                    op.name(),
                    x.dims
                )
            }
            let wh = adaptive_windows(op.out.0, h);
            let ww = adaptive_windows(op.out.1, w);
            let out = avg_pool_fwd(&x, &wh, &ww, adaptive_divisor);
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.out.0, op.out.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        let op = AdaptiveAvgPool2dBackward {
            out: self.out,
            input: (h, w),
        };
        Ok(Some(grad_res.apply_op1_no_bwd(&op)?))
    }
}

/// Adaptive average pooling backward, a custom op on `grad_output`.
struct AdaptiveAvgPool2dBackward {
    out: (usize, usize),
    input: (usize, usize),
}

impl CustomOp1 for AdaptiveAvgPool2dBackward {
    fn name(&self) -> &'static str {
        "adaptive_avg_pool2d_backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(
            op: &AdaptiveAvgPool2dBackward,
            data: &[T],
            l: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let g = View4::new(op.name(), data, l)?;
            let [n, c, _, _] = g.dims;
            check_grad_dims(op.name(), l, [n, c, op.out.0, op.out.1])?;
            let wh = adaptive_windows(op.out.0, op.input.0);
            let ww = adaptive_windows(op.out.1, op.input.1);
            let out = avg_pool_bwd(&g, op.input, &wh, &ww, adaptive_divisor);
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.input.0, op.input.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force of PyTorch's rule with plain integer arithmetic.
    fn reference(i: usize, k: usize, s: usize, p: usize, ceil: bool) -> Option<usize> {
        if k == 0 || s == 0 || p > k / 2 || i == 0 {
            return None;
        }
        let padded = (i + 2 * p) as i64;
        let span = padded - k as i64;
        let mut out = if ceil {
            // ceil(span / s) + 1 for span >= -(s-1)
            if span < -(s as i64 - 1) {
                return None;
            }
            (span + s as i64 - 1).div_euclid(s as i64) + 1
        } else {
            if span < 0 {
                return None;
            }
            span / s as i64 + 1
        };
        if ceil && (out - 1) * s as i64 >= (i + p) as i64 {
            out -= 1;
        }
        (out >= 1).then_some(out as usize)
    }

    #[test]
    fn output_size_matches_rule_and_min_input() {
        for k in 1..6 {
            for s in 1..5 {
                for p in 0..=k / 2 {
                    for ceil in [false, true] {
                        for i in 0..20 {
                            assert_eq!(
                                pool_output_size(i, k, s, p, ceil),
                                reference(i, k, s, p, ceil),
                                "{i} {k} {s} {p} {ceil}"
                            );
                        }
                        let params = Pool2dParams {
                            stride: (s, s),
                            padding: (p, p),
                            ceil_mode: ceil,
                            ..Pool2dParams::new((k, k))
                        };
                        let (m, _) = params.min_input_size();
                        assert!(
                            pool_output_size(m, k, s, p, ceil).is_some(),
                            "{k} {s} {p} {ceil} min {m}"
                        );
                        if m > 1 {
                            assert!(
                                pool_output_size(m - 1, k, s, p, ceil).is_none(),
                                "{k} {s} {p} {ceil} min {m}"
                            );
                        }
                    }
                }
            }
        }
        // PyTorch examples: 7 with k3 s2 p1 ceil -> 4; 6 with k2 s2 ceil -> 3; 5 k2 s2 ceil -> 3.
        assert_eq!(pool_output_size(7, 3, 2, 1, true), Some(4));
        assert_eq!(pool_output_size(5, 2, 2, 0, true), Some(3));
        assert_eq!(pool_output_size(5, 2, 2, 0, false), Some(2));
        // Last window would start in the right padding: dropped.
        assert_eq!(pool_output_size(4, 2, 2, 1, true), Some(3));
        assert_eq!(pool_output_size(2, 3, 3, 1, true), Some(1));
        assert_eq!(pool_output_size(5, 3, 2, 2, false), None);
        assert_eq!(pool_output_size(5, 0, 2, 0, false), None);
        assert_eq!(pool_output_size(5, 2, 0, 0, false), None);
    }

    #[test]
    fn windows_stay_inside_input_and_are_never_empty() {
        for k in 1..6 {
            for s in 1..5 {
                for p in 0..=k / 2 {
                    for ceil in [false, true] {
                        for i in 1..15 {
                            let Some(o) = pool_output_size(i, k, s, p, ceil) else {
                                continue;
                            };
                            for win in windows(o, k, s, p, i) {
                                assert!(win.start < win.end && win.end <= i);
                                assert!(win.padded_len >= win.end - win.start && win.padded_len <= k);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn view_rejects_layouts_outside_the_buffer() {
        let data = [0f32; 10];
        let layout = Layout::contiguous((1, 1, 3, 4));
        assert!(View4::new("t", &data, &layout).is_err());
        let layout = Layout::contiguous((1, 1, 2, 5));
        assert!(View4::new("t", &data, &layout).is_ok());
        let layout = Layout::contiguous((2, 5));
        assert!(View4::new("t", &data, &layout).is_err());
    }
}
