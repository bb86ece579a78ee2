//! The CPU kernels of batch normalisation: per-channel reductions and element-wise passes
//! over contiguous `[N, C, HW]` buffers, on the rayon pool for large tensors.

use super::*;

/// Below this many elements a kernel runs on the calling thread.
pub(super) const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Elements per parallel task of the element-wise passes (rounded to whole planes).
pub(super) const CHUNK: usize = 1 << 14;

/// The element types of the kernels, with exact conversions to and from `f64`.
pub(super) trait Elem: WithDType {
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
pub(super) struct Planes {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) hw: usize,
}

impl Planes {
    /// From a layout of rank 2 or 4 with `c` channels.
    pub(super) fn new(op: &str, layout: &Layout, c: usize) -> Result<Self> {
        match *layout.dims() {
            [n, cc] if cc == c => Ok(Self { n, c, hw: 1 }),
            [n, cc, h, w] if cc == c => Ok(Self { n, c, hw: h * w }),
            ref dims => bail!("{op}: expected an [N, {c}, H, W] or [N, {c}] tensor, got shape {dims:?}"),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    /// The `hw` values of channel `ch` in batch element `i`.
    pub(super) fn plane<'a, T>(&self, data: &'a [T], i: usize, ch: usize) -> &'a [T] {
        &data[(i * self.c + ch) * self.hw..][..self.hw]
    }
}

/// The storage behind a contiguous layout of `len` elements.
pub(super) fn contiguous<'a, T>(op: &str, data: &'a [T], layout: &Layout, len: usize) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) if end - start == len => crate::ops::contiguous_elements(op, data, layout),
        _ => bail!("{op}: expected a contiguous tensor of {len} elements, got {layout:?}"),
    }
}

/// `f(channel)` for every channel, on the rayon pool when the tensor is large.
pub(super) fn per_channel_map<R: Send>(p: Planes, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if p.len() < PARALLEL_THRESHOLD || p.c == 1 {
        (0..p.c).map(f).collect()
    } else {
        (0..p.c).into_par_iter().map(f).collect()
    }
}

/// Fills `out` (a `[N, C, HW]` buffer) block by block: `f(first_plane, block)` where a block is
/// a run of whole planes, on the rayon pool when the tensor is large.
pub(super) fn for_each_block<T: Send>(out: &mut [T], p: Planes, f: impl Fn(usize, &mut [T]) + Sync) {
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
pub(super) const LANES: usize = 8;

/// Values per block of the reductions: summed in the element type within a block, in `f64`
/// across blocks.
pub(super) const BLOCK: usize = 256;

/// `(sum f(a, b).0, sum f(a, b).1)` over paired slices of equal length: eight lanes in `T`
/// within blocks of [`BLOCK`] values (vectorised, and short enough for `f32` to keep about
/// seven digits), the blocks added in `f64`.
#[inline(always)]
pub(super) fn paired_sums<T: Elem>(a: &[T], b: &[T], f: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
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
pub(super) fn moments<T: Elem>(x: &[T], p: Planes) -> Vec<(f64, f64)> {
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
pub(super) fn grad_sums<T: Elem>(x: &[T], dy: &[T], p: Planes, mean: &[f64]) -> Vec<(f64, f64)> {
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
pub(super) struct Coefs<T> {
    pub(super) mean: Vec<T>,
    /// Factor of `x - mean`.
    pub(super) q: Vec<T>,
    /// Constant term.
    pub(super) r: Vec<T>,
    /// Factor of the second tensor (`dy`), if any.
    pub(super) p: Vec<T>,
}

impl<T: Elem> Coefs<T> {
    pub(super) fn new(mean: &[f64], q: &[f64], r: &[f64], p: &[f64]) -> Self {
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
pub(super) fn affine1<T: Elem, const RELU: bool>(x: &[T], p: Planes, k: &Coefs<T>) -> Vec<T> {
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
pub(super) fn affine2<T: Elem>(x: &[T], dy: &[T], p: Planes, k: &Coefs<T>) -> Vec<T> {
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
pub(super) fn masked2<T: Elem>(y: &[T], dy: &[T], p: Planes, k: &Coefs<T>) -> Vec<T> {
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
