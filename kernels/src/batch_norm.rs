//! Batch normalisation: per-channel reductions and element-wise passes over contiguous
//! `[N, C, HW]` buffers, on the rayon pool for large tensors, each block compiled for the
//! chosen ISA ([`crate::isa::vectorized`]; the same bits on every path).
//!
//! * training forward: [`moments`] (each channel's mean and biased variance: sums of values
//!   shifted by the channel's first value, against cancellation; vectorised in the element
//!   type over blocks of 256 values, the blocks accumulated in `f64`), then [`affine1`];
//! * training backward: [`grad_sums`] (`sum(dy)`, `sum(dy * (x - mean))`), then [`affine2`];
//! * eval: [`affine1`] (with ReLU: `RELU`), its input gradient [`affine1`] or, after a ReLU,
//!   [`masked2`].

use crate::elementwise::relu_value;
use crate::isa::vectorized;
use crate::{bail, Float, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Below this many elements a kernel runs on the calling thread.
pub const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Floatents per parallel task of the element-wise passes (rounded to whole planes).
pub const CHUNK: usize = 1 << 14;

/// The geometry of a contiguous `[N, C, HW]` buffer, from [`Planes::new`] (so its length
/// fits a `usize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planes {
    n: usize,
    c: usize,
    hw: usize,
}

impl Planes {
    /// From the dims (rank 2 or 4) of a tensor with `c` channels.
    pub fn new(op: &str, dims: &[usize], c: usize) -> Result<Self> {
        let (n, hw) = match *dims {
            [n, cc] if cc == c => (n, Some(1)),
            [n, cc, h, w] if cc == c => (n, h.checked_mul(w)),
            ref dims => bail!("{op}: expected an [N, {c}, H, W] or [N, {c}] tensor, got shape {dims:?}"),
        };
        let fits = |hw: usize| crate::checked_len(&[n, c, hw]).is_some();
        match hw.filter(|&hw| fits(hw)) {
            Some(hw) => Ok(Self { n, c, hw }),
            None => bail!("{op}: a tensor of shape {dims:?} has more values than a usize counts"),
        }
    }

    /// Batch elements.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Channels.
    pub fn c(&self) -> usize {
        self.c
    }

    /// Values per plane (`H * W`, 1 for an `[N, C]` tensor).
    pub fn hw(&self) -> usize {
        self.hw
    }

    /// Whether the buffer has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values of the buffer.
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    /// Checks that the buffer `arg` of `op` has `len` values, [`Planes::len`].
    pub fn check(&self, op: &str, arg: &str, len: usize) -> Result<()> {
        if len != self.len() {
            bail!(
                "{op}: {arg} has {len} values, expected {} ([N, C, HW] = [{}, {}, {}])",
                self.len(),
                self.n,
                self.c,
                self.hw
            )
        }
        Ok(())
    }

    /// The `hw` values of channel `ch` in batch element `i` of `data` (a buffer of
    /// [`Planes::len`] values).
    pub fn plane<'a, T>(&self, data: &'a [T], i: usize, ch: usize) -> Result<&'a [T]> {
        self.check("batch_norm::Planes::plane", "data", data.len())?;
        if i >= self.n || ch >= self.c {
            bail!(
                "batch_norm::Planes::plane: plane ({i}, {ch}) is outside [N, C] = [{}, {}]",
                self.n,
                self.c
            )
        }
        Ok(self.plane_at(data, i, ch))
    }

    /// [`Planes::plane`] for a checked buffer and indices.
    fn plane_at<'a, T>(&self, data: &'a [T], i: usize, ch: usize) -> &'a [T] {
        &data[(i * self.c + ch) * self.hw..][..self.hw]
    }
}

/// Checks that each per-channel vector `(name, len)` of `op` has one value per channel.
fn per_channel(op: &str, c: usize, vectors: &[(&str, usize)]) -> Result<()> {
    for &(name, len) in vectors {
        if len != c {
            bail!("{op}: {name} has {len} values, expected {c} (one per channel)")
        }
    }
    Ok(())
}

/// `f(channel)` for every channel, on the rayon pool when the tensor is large.
pub(crate) fn per_channel_map<R: Send>(p: Planes, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if p.len() < PARALLEL_THRESHOLD || p.c == 1 {
        (0..p.c).map(|c| vectorized(|| f(c))).collect()
    } else {
        (0..p.c).into_par_iter().map(|c| vectorized(|| f(c))).collect()
    }
}

/// A new `[N, C, HW]` tensor of [`Planes::len`] values, `out[i] = f(a[i], b[i])` with `f =
/// per_channel(c)` in plane `(n, c)` (`a`, `b` of `p.len()` values each; a one-input pass gives
/// its input twice and ignores the second). Block by block (runs of whole planes), on the rayon
/// pool when the tensor is large; the output is written without zero-filling it first.
fn planes_map<T: Float, F: Fn(T, T) -> T>(
    a: &[T],
    b: &[T],
    p: Planes,
    per_channel: impl Fn(usize) -> F + Sync,
) -> Vec<T> {
    let block = |first: usize, block: &mut [MaybeUninit<T>]| {
        for (j, o) in block.chunks_mut(p.hw).enumerate() {
            let at = (first + j) * p.hw;
            let (ap, bp) = (&a[at..][..o.len()], &b[at..][..o.len()]);
            let f = per_channel((first + j) % p.c);
            for ((o, &x), &y) in o.iter_mut().zip(ap).zip(bp) {
                o.write(f(x, y));
            }
        }
    };
    let fill = |out: &mut [MaybeUninit<T>]| {
        if out.is_empty() || p.hw == 0 {
            return;
        }
        let planes = (CHUNK / p.hw).max(1);
        let len = planes * p.hw;
        if out.len() < PARALLEL_THRESHOLD {
            out.chunks_mut(len)
                .enumerate()
                .for_each(|(i, out)| vectorized(|| block(i * planes, out)));
        } else {
            out.par_chunks_mut(len)
                .enumerate()
                .for_each(|(i, out)| vectorized(|| block(i * planes, out)));
        }
    };
    // SAFETY: the blocks cover the output (nothing to write when it is empty or its planes
    // are), every plane of a block is written whole: it is zipped with slices of `a` and `b`
    // exactly its length (a panic if an input is shorter, which leaves an empty vector).
    unsafe { crate::written(p.len(), fill) }
}

/// Lanes of the vectorised reductions (the summation order is fixed: results are
/// deterministic whatever the thread count).
pub const LANES: usize = 8;

/// Values per block of the reductions: summed in the element type within a block, in `f64`
/// across blocks.
pub const BLOCK: usize = 256;

/// `(sum f(a, b).0, sum f(a, b).1)` over paired slices of equal length: eight lanes in `T`
/// within blocks of [`BLOCK`] values (vectorised, and short enough for `f32` to keep about
/// seven digits), the blocks added in `f64`. Slices of different lengths are an error.
pub fn paired_sums<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> (T, T)) -> Result<(f64, f64)> {
    if a.len() != b.len() {
        bail!(
            "batch_norm::paired_sums: a has {} values and b {}, expected equal lengths",
            a.len(),
            b.len()
        )
    }
    Ok(block_sums(a, b, f))
}

/// [`paired_sums`] of slices of equal length.
#[inline(always)]
fn block_sums<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
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
        s0 += l0.iter().map(|v| v.to_f64()).sum::<f64>();
        s1 += l1.iter().map(|v| v.to_f64()).sum::<f64>();
    }
    (s0, s1)
}

/// Per channel: `(mean, biased variance)` of `x` (a buffer of [`Planes::len`] values, at
/// least one per channel), one pass, shifted by the channel's first value so that a large
/// mean does not cancel the variance away.
pub fn moments<T: Float>(x: &[T], p: Planes) -> Result<Vec<(f64, f64)>> {
    const OP: &str = "batch_norm::moments";
    p.check(OP, "x", x.len())?;
    if p.c > 0 && p.n * p.hw == 0 {
        bail!(
            "{OP}: need at least one value per channel, got [N, C, HW] = [{}, {}, {}]",
            p.n,
            p.c,
            p.hw
        )
    }
    let count = (p.n * p.hw) as f64;
    Ok(per_channel_map(p, |ch| {
        let shift = p.plane_at(x, 0, ch)[0];
        let (mut s, mut ss) = (0f64, 0f64);
        for i in 0..p.n {
            let plane = p.plane_at(x, i, ch);
            let (a, b) = block_sums(plane, plane, |v, _| {
                let d = v - shift;
                (d, d * d)
            });
            s += a;
            ss += b;
        }
        let mean_d = s / count;
        let var = (ss / count - mean_d * mean_d).max(0.0);
        (shift.to_f64() + mean_d, var)
    }))
}

/// Per channel: `(sum(dy), sum(dy * (x - mean)))` (`x` and `dy` of [`Planes::len`] values,
/// `mean` of one per channel).
pub fn grad_sums<T: Float>(x: &[T], dy: &[T], p: Planes, mean: &[f64]) -> Result<Vec<(f64, f64)>> {
    const OP: &str = "batch_norm::grad_sums";
    p.check(OP, "x", x.len())?;
    p.check(OP, "dy", dy.len())?;
    per_channel(OP, p.c, &[("mean", mean.len())])?;
    Ok(per_channel_map(p, |ch| {
        let m = T::from_f64(mean[ch]);
        let (mut s, mut sx) = (0f64, 0f64);
        for i in 0..p.n {
            let (dy, x) = (p.plane_at(dy, i, ch), p.plane_at(x, i, ch));
            let (a, b) = block_sums(dy, x, |g, v| (g, g * (v - m)));
            s += a;
            sx += b;
        }
        (s, sx)
    }))
}

/// Per-channel coefficients of an element-wise pass, in the element type: each vector one
/// value per channel, or empty where the pass does not read it (each pass checks those it
/// reads against its [`Planes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Coefs<T> {
    mean: Vec<T>,
    /// Factor of `x - mean`.
    q: Vec<T>,
    /// Constant term.
    r: Vec<T>,
    /// Factor of the second tensor (`dy`), if any.
    p: Vec<T>,
}

impl<T: Float> Coefs<T> {
    /// `mean`, `q` (factor of `x - mean`), `r` (constant term) and `p` (factor of the second
    /// tensor), rounded to `T`; the vectors that are not empty must have the same length.
    pub fn new(mean: &[f64], q: &[f64], r: &[f64], p: &[f64]) -> Result<Self> {
        let lengths = [mean.len(), q.len(), r.len(), p.len()];
        let c = lengths.iter().copied().max().unwrap_or(0);
        if lengths.iter().any(|&l| l != 0 && l != c) {
            bail!(
                "batch_norm::Coefs::new: mean, q, r, p have {lengths:?} values, expected {c} (one per channel) or none"
            )
        }
        let cast = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect();
        Ok(Self {
            mean: cast(mean),
            q: cast(q),
            r: cast(r),
            p: cast(p),
        })
    }
}

/// `out = (x - mean[c]) * q[c] + r[c]`, then `max(out, 0)` (NaN kept) with `RELU` (`x` of
/// [`Planes::len`] values; `mean`, `q`, `r` of one per channel).
pub fn affine1<T: Float, const RELU: bool>(x: &[T], p: Planes, k: &Coefs<T>) -> Result<Vec<T>> {
    const OP: &str = "batch_norm::affine1";
    p.check(OP, "x", x.len())?;
    per_channel(
        OP,
        p.c,
        &[("mean", k.mean.len()), ("q", k.q.len()), ("r", k.r.len())],
    )?;
    Ok(planes_map(x, x, p, |ch| {
        let (m, q, r) = (k.mean[ch], k.q[ch], k.r[ch]);
        move |v, _| {
            let y = (v - m) * q + r;
            if RELU {
                relu_value(y)
            } else {
                y
            }
        }
    }))
}

/// `out = dy * p[c] + (x - mean[c]) * q[c] + r[c]` (`x`, `dy` of [`Planes::len`] values;
/// every coefficient of one per channel).
pub fn affine2<T: Float>(x: &[T], dy: &[T], p: Planes, k: &Coefs<T>) -> Result<Vec<T>> {
    const OP: &str = "batch_norm::affine2";
    p.check(OP, "x", x.len())?;
    p.check(OP, "dy", dy.len())?;
    let lengths = [
        ("mean", k.mean.len()),
        ("q", k.q.len()),
        ("r", k.r.len()),
        ("p", k.p.len()),
    ];
    per_channel(OP, p.c, &lengths)?;
    Ok(planes_map(x, dy, p, |ch| {
        let (m, q, r, a) = (k.mean[ch], k.q[ch], k.r[ch], k.p[ch]);
        move |v, g| g * a + (v - m) * q + r
    }))
}

/// `out = dy * p[c] * (y > 0)`: the input gradient of the eval pass with ReLU, from its
/// output `y` (`y`, `dy` of [`Planes::len`] values; `p` of one per channel).
pub fn masked2<T: Float>(y: &[T], dy: &[T], p: Planes, k: &Coefs<T>) -> Result<Vec<T>> {
    const OP: &str = "batch_norm::masked2";
    p.check(OP, "y", y.len())?;
    p.check(OP, "dy", dy.len())?;
    per_channel(OP, p.c, &[("p", k.p.len())])?;
    Ok(planes_map(y, dy, p, |ch| {
        let a = k.p[ch];
        move |v, g| g * a * if v > T::zero() { T::one() } else { T::zero() }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_survive_a_large_mean() {
        // Variance 2/3 around a mean of 1e4: the shifted sums keep it to f64 precision.
        let x: Vec<f64> = (0..300).map(|i| 1e4 + (i % 3) as f64 - 1.0).collect();
        let p = Planes { n: 3, c: 1, hw: 100 };
        let (mean, var) = moments(&x, p).unwrap()[0];
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
            )
            .unwrap();
            let out = affine1::<_, false>(&x, p, &k).unwrap();
            for (i, &o) in out.iter().enumerate() {
                let ch = (i / hw) % c;
                assert_eq!(o, (i as f64 - ch as f64) * 2.0 + 1.0, "{n} {c} {hw} {i}");
            }
        }
    }
}
