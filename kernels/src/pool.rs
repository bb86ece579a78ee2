//! Pooling: windows, forward and backward passes of max, average and adaptive average
//! pooling on strided `f32` / `f64` buffers with PyTorch's semantics (padding, `ceil_mode`,
//! `count_include_pad`, first maximum, NaN wins), parallel over the planes for large tensors,
//! each plane compiled for the chosen ISA ([`crate::isa::vectorized`]; the same bits on every
//! path).

use crate::{bail, Float, Result};

/// Below this many inner-loop iterations a kernel runs on the calling thread: spawning rayon
/// tasks for tiny tensors costs more than it saves.
const PARALLEL_THRESHOLD: usize = 1 << 15;

/// A strided, read-only 4-d view of a buffer: `dims`, element strides, first element; from
/// [`View4::new`], which checks that it stays inside the buffer.
pub struct View4<'a, T> {
    data: &'a [T],
    start: usize,
    stride: [usize; 4],
    dims: [usize; 4],
}

impl<'a, T: Copy> View4<'a, T> {
    /// Checks that the view stays inside `data`, so indexing cannot panic (a view with no
    /// elements reads nothing, but its offsets must still be counted in a `usize`).
    pub fn new(op: &str, data: &'a [T], start: usize, dims: [usize; 4], stride: [usize; 4]) -> Result<Self> {
        let last = dims.iter().zip(stride.iter()).try_fold(start, |acc, (&d, &s)| {
            d.saturating_sub(1)
                .checked_mul(s)
                .and_then(|x| x.checked_add(acc))
        });
        let empty = dims.contains(&0);
        match last {
            Some(last) if empty || last < data.len() => {}
            _ => bail!(
                "{op}: a view of dims {dims:?}, strides {stride:?} from {start} does not fit a buffer of {} elements",
                data.len()
            ),
        }
        Ok(Self {
            data,
            start,
            stride,
            dims,
        })
    }

    /// A contiguous (row-major) view of `data`.
    pub fn contiguous(op: &str, data: &'a [T], dims: [usize; 4]) -> Result<Self> {
        let inner = dims[2].checked_mul(dims[3]);
        let outer = inner.and_then(|v| v.checked_mul(dims[1]));
        let (Some(inner), Some(outer)) = (inner, outer) else {
            bail!("{op}: a contiguous view of dims {dims:?} has more elements than a usize counts")
        };
        Self::new(op, data, 0, dims, [outer, inner, dims[3], 1])
    }

    /// `[N, C, H, W]`.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
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
    crate::isa::for_each_chunk(out, plane_len, work >= PARALLEL_THRESHOLD, f)
}

/// One dimension of a pooling window: the real input range `[start, end)` and the divisor
/// PyTorch uses with `count_include_pad` (window clipped to the padded input), from
/// [`windows`], [`adaptive_windows`] or [`Window::new`] (`start <= end`, `padded_len` at
/// least `end - start`). The kernels check that it lies inside their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: usize,
    end: usize,
    padded_len: usize,
}

impl Window {
    /// The window `[start, end)` counting `padded_len` positions with the padding.
    pub fn new(start: usize, end: usize, padded_len: usize) -> Result<Self> {
        if start > end || padded_len < end - start {
            bail!(
                "pool::Window::new: a window [{start}, {end}) of padded length {padded_len}: expected start <= end and a padded length of at least end - start"
            )
        }
        Ok(Self {
            start,
            end,
            padded_len,
        })
    }

    /// The first input position.
    pub fn start(&self) -> usize {
        self.start
    }

    /// One past the last input position.
    pub fn end(&self) -> usize {
        self.end
    }

    /// Positions of the window clipped to the padded input (the divisor with
    /// `count_include_pad`).
    pub fn padded_len(&self) -> usize {
        self.padded_len
    }

    /// Input positions, `end - start`.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the window holds no input position.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The window of output `o` (the sizes checked by [`windows`]); a window that holds no input
/// position is placed at or before the input's end.
fn window(o: usize, kernel: usize, stride: usize, pad: usize, input: usize) -> Window {
    // Padded coordinates: the padded input spans [0, input + 2 * pad).
    let ps = o * stride;
    let pe = ps + kernel;
    let start = (ps.max(pad) - pad).min(input);
    let end = pe.min(pad + input).saturating_sub(pad);
    let padded_len = pe.min(input + 2 * pad).saturating_sub(ps);
    Window {
        start,
        end: end.max(start),
        padded_len,
    }
}

/// The windows of `n_out` outputs of a pooling with `kernel`, `stride` and `pad` over
/// `input` positions (PyTorch's `pool2d` windows along one axis): an error for a zero
/// kernel or stride, or sizes whose padded coordinates overflow.
pub fn windows(n_out: usize, kernel: usize, stride: usize, pad: usize, input: usize) -> Result<Vec<Window>> {
    if kernel == 0 || stride == 0 {
        bail!("pool::windows: kernel and stride must be positive, got kernel {kernel}, stride {stride}")
    }
    let last_end = n_out
        .saturating_sub(1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(kernel));
    let padded = pad.checked_mul(2).and_then(|v| v.checked_add(input));
    if last_end.is_none() || padded.is_none() {
        bail!(
            "pool::windows: {n_out} outputs of kernel {kernel}, stride {stride}, padding {pad} over {input} positions overflow a usize"
        )
    }
    Ok((0..n_out)
        .map(|o| window(o, kernel, stride, pad, input))
        .collect())
}

/// PyTorch's adaptive windows: `floor(o * input / n_out) .. ceil((o + 1) * input / n_out)`;
/// an error when `n_out` or `input` is 0.
pub fn adaptive_windows(n_out: usize, input: usize) -> Result<Vec<Window>> {
    if n_out == 0 || input == 0 {
        bail!("pool::adaptive_windows: expected at least one output and one input position, got {n_out} outputs over {input}")
    }
    if n_out.checked_mul(input).is_none() {
        bail!("pool::adaptive_windows: {n_out} outputs over {input} positions overflow a usize")
    }
    Ok((0..n_out)
        .map(|o| {
            let start = (o * input) / n_out;
            let end = ((o + 1) * input).div_ceil(n_out);
            Window {
                start,
                end,
                padded_len: end - start,
            }
        })
        .collect())
}

/// Checks that every window of `ws` (the argument `arg` of `op`) lies inside an input of `len`
/// positions.
fn check_windows(op: &str, arg: &str, ws: &[Window], len: usize) -> Result<()> {
    if let Some((o, w)) = ws.iter().enumerate().find(|(_, w)| w.end > len) {
        bail!(
            "{op}: window {o} of {arg}, [{}, {}), lies outside an input of {len} positions",
            w.start,
            w.end
        )
    }
    Ok(())
}

/// Checks that the gradient view `g` of `op` has dims `expected`.
fn check_grad(op: &str, g: [usize; 4], expected: [usize; 4]) -> Result<()> {
    if g != expected {
        bail!("{op}: g has dims {g:?}, expected {expected:?} ([N, C] of the input, one per window)")
    }
    Ok(())
}

/// The length of a contiguous buffer of `dims`, an error when a `usize` cannot count it.
fn buffer_len(op: &str, dims: [usize; 4]) -> Result<usize> {
    match crate::checked_len(&dims) {
        Some(len) => Ok(len),
        None => bail!("{op}: an output of dims {dims:?} has more elements than a usize counts"),
    }
}

/// The elements of `dims`, saturating at `usize::MAX` (for work estimates).
fn saturating_len(dims: [usize; 4]) -> usize {
    dims.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
}

/// An estimate of the inner-loop iterations of `outputs` windows shaped like the first ones.
fn work(outputs: usize, wh: &[Window], ww: &[Window]) -> usize {
    let kh = wh.first().map_or(1, |w| w.padded_len.max(1));
    let kw = ww.first().map_or(1, |w| w.padded_len.max(1));
    outputs.saturating_mul(kh.saturating_mul(kw))
}

/// Max pooling forward: returns `(N, C, OH, OW)`, contiguous.
///
/// Inputs whose rows are contiguous (the usual case) are pooled separably: for each output row,
/// the maximum over the window's input rows, column by column along whole rows (a pass the
/// compiler vectorises), then the maximum of each window's columns of that. Other layouts scan
/// each window. Both give the window's maximum, NaN if it holds one; among equal values the
/// two may take a different one, which only shows for `0.0` against `-0.0`.
///
/// An error when a window of `wh` (`ww`) lies outside the input's height (width).
pub fn max_pool_fwd<T: Float>(x: &View4<T>, wh: &[Window], ww: &[Window]) -> Result<Vec<T>> {
    const OP: &str = "pool::max_pool_fwd";
    let [n, c, h, w] = x.dims;
    check_windows(OP, "wh", wh, h)?;
    check_windows(OP, "ww", ww, w)?;
    let plane_len = wh.len() * ww.len();
    let mut out = vec![T::zero(); buffer_len(OP, [n, c, wh.len(), ww.len()])?];
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
        return Ok(out);
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
    Ok(out)
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

/// Max pooling backward: the gradient w.r.t. the input, `(N, C, H, W)` contiguous, from the
/// output gradient `g` `(N, C, wh.len(), ww.len())`.
///
/// An error when a window lies outside the input or `g` does not have those dims.
pub fn max_pool_bwd<T: Float>(x: &View4<T>, g: &View4<T>, wh: &[Window], ww: &[Window]) -> Result<Vec<T>> {
    const OP: &str = "pool::max_pool_bwd";
    let [n, c, h, w] = x.dims;
    check_windows(OP, "wh", wh, h)?;
    check_windows(OP, "ww", ww, w)?;
    check_grad(OP, g.dims, [n, c, wh.len(), ww.len()])?;
    let plane_len = h * w;
    let mut out = vec![T::zero(); buffer_len(OP, x.dims)?];
    let work = work(saturating_len(g.dims), wh, ww);
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
    Ok(out)
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
///
/// An error when a window of `wh` (`ww`) lies outside the input's height (width).
pub fn avg_pool_fwd<T: Float>(
    x: &View4<T>,
    wh: &[Window],
    ww: &[Window],
    divisor: impl Fn(&Window, &Window) -> usize + Sync,
) -> Result<Vec<T>> {
    const OP: &str = "pool::avg_pool_fwd";
    let [n, c, h, w] = x.dims;
    check_windows(OP, "wh", wh, h)?;
    check_windows(OP, "ww", ww, w)?;
    let len = buffer_len(OP, [n, c, wh.len(), ww.len()])?;
    if x.stride[3] == 1 && pairs(wh) && pairs(ww) {
        return Ok(avg_pool_fwd_pairs(
            x,
            (wh.len(), ww.len()),
            T::from_f64(divisor(&wh[0], &ww[0]) as f64),
        ));
    }
    let plane_len = wh.len() * ww.len();
    let mut out = vec![T::zero(); len];
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
                                for &v in &row[rw.start..rw.end] {
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
        return Ok(out);
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
    Ok(out)
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
    let uniform = ww.iter().enumerate().all(|(o, rw)| {
        o.checked_mul(step).and_then(|v| v.checked_add(first.start)) == Some(rw.start) && rw.len() == len
    });
    uniform.then_some((first.start, step, len))
}

/// Average pooling backward: spreads `g / divisor` (`g` `(N, C, wh.len(), ww.len())`) over
/// each window of an `(h, w)` input.
///
/// An error when a window lies outside the input or `g` does not have those dims.
pub fn avg_pool_bwd<T: Float>(
    g: &View4<T>,
    (h, w): (usize, usize),
    wh: &[Window],
    ww: &[Window],
    divisor: impl Fn(&Window, &Window) -> usize + Sync,
) -> Result<Vec<T>> {
    const OP: &str = "pool::avg_pool_bwd";
    let [n, c, _, _] = g.dims;
    check_windows(OP, "wh", wh, h)?;
    check_windows(OP, "ww", ww, w)?;
    check_grad(OP, g.dims, [n, c, wh.len(), ww.len()])?;
    buffer_len(OP, [n, c, h, w])?;
    if pairs(wh) && pairs(ww) {
        return Ok(avg_pool_bwd_pairs(
            g,
            (h, w),
            T::from_f64(divisor(&wh[0], &ww[0]).max(1) as f64),
        ));
    }
    Ok(avg_pool_bwd_windows(g, (h, w), wh, ww, divisor))
}

/// [`avg_pool_bwd`] window by window (any windows, checked).
fn avg_pool_bwd_windows<T: Float>(
    g: &View4<T>,
    (h, w): (usize, usize),
    wh: &[Window],
    ww: &[Window],
    divisor: impl Fn(&Window, &Window) -> usize + Sync,
) -> Vec<T> {
    let [n, c, _, _] = g.dims;
    let plane_len = h * w;
    let mut out = vec![T::zero(); n * c * plane_len];
    let work = work(saturating_len(g.dims), wh, ww);
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
                    for v in &mut row[rw.start..rw.end] {
                        *v += share;
                    }
                }
            }
        }
    });
    out
}

/// Whether the windows are `[2o, 2o + 2)` for every output `o`, with no padding: 2x2 pooling
/// with stride 2 (LeNet-5's), whose windows neither overlap nor need clipping.
fn pairs(ws: &[Window]) -> bool {
    // Not `uniform_windows`, which gives a single window a step of 1.
    !ws.is_empty()
        && ws
            .iter()
            .enumerate()
            .all(|(o, w)| w.start == 2 * o && w.end == 2 * o + 2 && w.padded_len == 2)
}

/// [`avg_pool_fwd`] for [`pairs`] windows on contiguous rows: each output from the two pairs of
/// its two input rows, in the window scan's order (from zero, row by row, left to right, then
/// divided): the same bits, in one pass the compiler vectorises.
fn avg_pool_fwd_pairs<T: Float>(x: &View4<T>, (oh, ow): (usize, usize), divisor: T) -> Vec<T> {
    let [n, c, _, _] = x.dims;
    let mut out = vec![T::zero(); n * c * oh * ow];
    let work = out.len().saturating_mul(4);
    for_each_plane(&mut out, oh * ow, work, |nc, plane| {
        let base = x.plane(nc);
        for (o, out_row) in plane.chunks_exact_mut(ow).enumerate() {
            // In bounds: the windows lie inside the input, which `View4::new` checked.
            let top = &x.data[base + 2 * o * x.stride[2]..][..2 * ow];
            let bottom = &x.data[base + (2 * o + 1) * x.stride[2]..][..2 * ow];
            for ((v, a), b) in out_row
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                *v = ((((T::zero() + a[0]) + a[1]) + b[0]) + b[1]) / divisor;
            }
        }
    });
    out
}

/// [`avg_pool_bwd`] for [`pairs`] windows: each input element in a window receives its one
/// share (added to zero, as the window loop does), the others stay zero.
fn avg_pool_bwd_pairs<T: Float>(g: &View4<T>, (h, w): (usize, usize), divisor: T) -> Vec<T> {
    let [n, c, oh, ow] = g.dims;
    let mut out = vec![T::zero(); n * c * h * w];
    let work = saturating_len(g.dims).saturating_mul(4);
    for_each_plane(&mut out, h * w, work, |nc, plane| {
        let gbase = g.plane(nc);
        for (o, rows) in plane.chunks_exact_mut(2 * w).take(oh).enumerate() {
            let (top, bottom) = rows.split_at_mut(w);
            let pairs = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
            for (ox, (a, b)) in pairs.take(ow).enumerate() {
                let share = T::zero() + g.at(gbase, o, ox) / divisor;
                a[0] = share;
                a[1] = share;
                b[0] = share;
                b[1] = share;
            }
        }
    });
    out
}

/// The divisor of `avg_pool2d` for a pair of windows (saturating at `usize::MAX`).
pub fn avg_divisor(count_include_pad: bool) -> impl Fn(&Window, &Window) -> usize + Sync {
    move |rh: &Window, rw: &Window| {
        if count_include_pad {
            rh.padded_len.saturating_mul(rw.padded_len)
        } else {
            adaptive_divisor(rh, rw)
        }
    }
}

/// The divisor of `adaptive_avg_pool2d` for a pair of windows: the input positions they hold
/// (saturating at `usize::MAX`).
pub fn adaptive_divisor(rh: &Window, rw: &Window) -> usize {
    rh.len().saturating_mul(rw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2x2 / stride-2 paths give the window loops' bits, outputs and gradients, on odd and
    /// even sizes, with signed zeros, infinities and NaN among the values.
    #[test]
    fn pair_windows_match_the_window_loops_bit_for_bit() {
        for (h, w) in [(4, 4), (5, 7), (2, 3), (9, 8)] {
            let (n, c) = (2, 3);
            let mut x: Vec<f32> = (0..n * c * h * w)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
                .collect();
            x[1] = -0.0;
            x[2] = f32::INFINITY;
            x[w + 5] = f32::NAN;
            let view = View4::contiguous("test", &x, [n, c, h, w]).unwrap();
            let (wh, ww) = (
                (0..h / 2).map(|o| window(o, 2, 2, 0, h)).collect::<Vec<_>>(),
                (0..w / 2).map(|o| window(o, 2, 2, 0, w)).collect::<Vec<_>>(),
            );
            assert!(pairs(&wh) && pairs(&ww));
            let divisor = avg_divisor(true);
            let fast = avg_pool_fwd(&view, &wh, &ww, &divisor).unwrap();
            // The window scan, written out: from zero, row by row, left to right, divided.
            let (oh, ow) = (wh.len(), ww.len());
            let mut scan = vec![0.0f32; n * c * oh * ow];
            for nc in 0..n * c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = 0.0f32;
                        for iy in 2 * oy..2 * oy + 2 {
                            for ix in 2 * ox..2 * ox + 2 {
                                sum += x[(nc * h + iy) * w + ix];
                            }
                        }
                        scan[(nc * oh + oy) * ow + ox] = sum / 4.0;
                    }
                }
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&scan), "{h}x{w} forward");
            let mut g: Vec<f32> = (0..n * c * oh * ow)
                .map(|i| ((i * 13 % 17) as f32 - 8.0) / 3.0)
                .collect();
            g[0] = -0.0;
            g[1] = f32::NAN;
            let gview = View4::contiguous("test", &g, [n, c, oh, ow]).unwrap();
            let fast = avg_pool_bwd(&gview, (h, w), &wh, &ww, &divisor).unwrap();
            let windows = avg_pool_bwd_windows(&gview, (h, w), &wh, &ww, &divisor);
            assert_eq!(bits(&fast), bits(&windows), "{h}x{w} backward");
        }
    }
}
