//! Element-wise passes: ReLU forward and backward, a residual `relu(a + b)`, a per-channel
//! bias and its gradient (per-channel sums).
//!
//! Each pass allocates only its output and runs in chunks of [`CHUNK`] elements, on the rayon
//! pool above [`PARALLEL_THRESHOLD`] elements, each chunk compiled for the chosen ISA
//! ([`crate::isa::vectorized`]; the same bits on every path).

use crate::isa::vectorized;
use crate::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Below this many elements a pass runs on the calling thread.
pub const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Elements per parallel task.
pub const CHUNK: usize = 1 << 14;

/// `y = x < 0 ? 0 : x` (NaN stays NaN, `-inf` gives 0).
#[inline(always)]
pub fn relu_value<T: Float>(v: T) -> T {
    if v < T::zero() {
        T::zero()
    } else {
        v
    }
}

/// `out[i] = f(a[i], b[i])` (`b` as long as `a`; a one-input pass gives its input twice) in
/// chunks, on the rayon pool for large inputs. `f` works on whole chunks so that its loop
/// vectorises.
///
/// `f` is given each chunk's output (not initialised), its chunk of `a` and its chunk of `b`
/// (empty where `b` does not reach the chunk's end) and writes the first `b`-chunk-length
/// values of the output (all of them when `b` covers the chunk); the rest of the chunk is set
/// to 0.
fn map_chunks<T: Float>(a: &[T], b: &[T], f: impl Fn(&mut [MaybeUninit<T>], &[T], &[T]) + Sync) -> Vec<T> {
    let pair = |(o, x): (&mut [MaybeUninit<T>], &[T]), i: usize| {
        let y = b.get(i * CHUNK..i * CHUNK + x.len()).unwrap_or(&[]);
        vectorized(|| f(o, x, y));
        for o in &mut o[y.len()..] {
            o.write(T::zero());
        }
    };
    let fill = |out: &mut [MaybeUninit<T>]| {
        if a.len() < PARALLEL_THRESHOLD {
            out.chunks_mut(CHUNK)
                .zip(a.chunks(CHUNK))
                .enumerate()
                .for_each(|(i, oa)| pair(oa, i));
        } else {
            out.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK))
                .enumerate()
                .for_each(|(i, oa)| pair(oa, i));
        }
    };
    // SAFETY: the chunks cover the output (as long as `a`); in each, `f` writes the first
    // `y.len()` values (its contract above) and the loop after it the rest.
    unsafe { crate::written(a.len(), fill) }
}

/// `relu(x)` element by element.
pub fn relu<T: Float>(x: &[T]) -> Vec<T> {
    map_chunks(x, x, |out, x, _| {
        for (o, &v) in out.iter_mut().zip(x) {
            o.write(relu_value(v));
        }
    })
}

/// `dx = dy * (y > 0)` from a ReLU's output `y` (PyTorch's gradient: none where the input was
/// 0). `dy` shorter than `y` counts as zeros past its end.
pub fn relu_backward<T: Float>(y: &[T], dy: &[T]) -> Vec<T> {
    map_chunks(y, dy, |out, y, dy| {
        for ((o, &v), &g) in out.iter_mut().zip(y).zip(dy) {
            o.write(g * if v > T::zero() { T::one() } else { T::zero() });
        }
    })
}

/// `relu(a + b)` element by element (`b` shorter than `a` leaves the rest of the output 0).
pub fn add_relu<T: Float>(a: &[T], b: &[T]) -> Vec<T> {
    map_chunks(a, b, |o, a, b| {
        for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
            o.write(relu_value(x + y));
        }
    })
}

/// `x + b[c]` for `x` `[N, C, plane]` (`C = b.len()`); `x` unchanged when `plane` or `b` is
/// empty.
pub fn add_channel_bias<T: Float>(x: &[T], b: &[T], plane: usize) -> Vec<T> {
    let mut out = x.to_vec();
    if plane == 0 || b.is_empty() {
        return out;
    }
    let c = b.len();
    let add = |(i, p): (usize, &mut [T])| {
        let v = b[i % c];
        vectorized(|| {
            for o in p.iter_mut() {
                *o += v;
            }
        })
    };
    if out.len() < PARALLEL_THRESHOLD {
        out.chunks_mut(plane).enumerate().for_each(add);
    } else {
        out.par_chunks_mut(plane).enumerate().for_each(add);
    }
    out
}

/// `db[c] = sum over n and the plane of dy[n, c, ..]` for `dy` `[N, c, plane]`: each plane
/// summed in the element type left to right, the planes in `f64` (whole images only: values
/// past the last `c * plane` are not read).
pub fn channel_sums<T: Float>(dy: &[T], plane: usize, c: usize) -> Vec<T> {
    if plane == 0 || c == 0 {
        return vec![T::zero(); c];
    }
    // An image larger than a `usize` counts is larger than `dy`: no whole image.
    let n = plane.checked_mul(c).map_or(0, |image| dy.len() / image);
    let channel = |ch: usize| {
        let mut sum = 0f64;
        for i in 0..n {
            let start = (i * c + ch) * plane;
            let p = &dy[start..start + plane];
            sum += vectorized(|| p.iter().fold(T::zero(), |acc, &v| acc + v)).to_f64();
        }
        T::from_f64(sum)
    };
    if dy.len() < PARALLEL_THRESHOLD {
        (0..c).map(channel).collect()
    } else {
        (0..c).into_par_iter().map(channel).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_element() {
        for len in [
            0,
            1,
            7,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            PARALLEL_THRESHOLD + 3 * CHUNK + 5,
        ] {
            let y: Vec<f64> = (0..len).map(|i| i as f64 % 5.0 - 2.0).collect();
            let dy: Vec<f64> = (0..len).map(|i| i as f64).collect();
            let dx = relu_backward(&y, &dy);
            let fwd = relu(&y);
            let sum = add_relu(&y, &dy);
            for i in 0..len {
                assert_eq!(dx[i], if y[i] > 0.0 { dy[i] } else { 0.0 }, "{len} {i}");
                assert_eq!(fwd[i], y[i].max(0.0), "{len} {i}");
                assert_eq!(sum[i], (y[i] + dy[i]).max(0.0), "{len} {i}");
            }
        }
    }

    /// A second input shorter than the first: the outputs are 0 from the first chunk it does
    /// not cover whole (the outputs are written without zero-filling first, so every value
    /// must be set, the zeros included).
    #[test]
    fn a_short_second_input_leaves_zeros() {
        let len = PARALLEL_THRESHOLD + 2 * CHUNK + 9;
        for short in [0, 5, CHUNK, CHUNK + 3, len - 1] {
            let y: Vec<f32> = (0..len).map(|i| i as f32 % 7.0 + 1.0).collect();
            let dy: Vec<f32> = (0..short).map(|i| i as f32 + 0.5).collect();
            let covered = short / CHUNK * CHUNK;
            for out in [relu_backward(&y, &dy), add_relu(&y, &dy)] {
                assert_eq!(out.len(), len);
                assert!(out[..covered].iter().all(|&v| v > 0.0), "{short}");
                assert!(out[covered..].iter().all(|&v| v == 0.0), "{short}");
            }
        }
    }

    #[test]
    fn bias_and_its_gradient_match_plain_loops() {
        let (n, c, plane) = (3, 5, 7);
        let x: Vec<f32> = (0..n * c * plane).map(|i| (i % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..c).map(|i| i as f32 * 0.5).collect();
        let y = add_channel_bias(&x, &b, plane);
        for (i, (&y, &x)) in y.iter().zip(&x).enumerate() {
            assert_eq!(y, x + b[(i / plane) % c]);
        }
        let sums = channel_sums(&x, plane, c);
        for (ch, &s) in sums.iter().enumerate() {
            let expected: f32 = (0..n)
                .flat_map(|i| x[(i * c + ch) * plane..][..plane].iter())
                .sum();
            assert_eq!(s, expected);
        }
    }
}
