//! F(4x4, 3x3): 4x4 output tiles from 6x6 input patches, 36 products (Lavin & Gray's
//! interpolation points 0, ±1, ±2 and infinity):
//!
//! ```text
//! B^T = [4  0 -5  0  1  0]    G = [ 1/4     0     0  ]    A^T = [1  1  1  1  1  0]
//!       [0 -4 -4  1  1  0]        [-1/6  -1/6  -1/6  ]          [0  1 -1  2 -2  0]
//!       [0  4 -4 -1  1  0]        [-1/6   1/6  -1/6  ]          [0  1  1  4  4  0]
//!       [0 -2 -1  2  1  0]        [ 1/24  1/12  1/6  ]          [0  1 -1  8 -8  1]
//!       [0  2 -1 -2  1  0]        [ 1/24 -1/12  1/6  ]
//!       [0  4  0 -5  0  1]        [  0     0     1   ]
//! ```
//!
//! 36 products for 16 outputs: 2.25 multiply-adds per output and input channel against F(2x2,
//! 3x3)'s 4 and the direct convolution's 9. The larger transform rounds more (its points reach
//! 2: entries up to 8 in `A^T`): about 10x F(2x2)'s error, a few 1e-6 of the outputs' scale
//! in f32 on ResNet's layers (the tests bound it). The weight's transform is computed in f64
//! and rounded once.

use super::{split_phases, tiles, InputScratch, Tiling};
use crate::conv::ConvGeometry;
use crate::Float;

/// Winograd F(4x4, 3x3).
pub(crate) struct F4;

/// `G v` for one column (or row) `v` of a 3x3 weight.
fn g_times(v: [f64; 3]) -> [f64; 6] {
    let [a, b, c] = v;
    [
        a / 4.0,
        -(a + b + c) / 6.0,
        -(a - b + c) / 6.0,
        a / 24.0 + b / 12.0 + c / 6.0,
        a / 24.0 - b / 12.0 + c / 6.0,
        c,
    ]
}

/// `B^T d` of six values (one column or row of a 6x6 patch), element by element over runs.
macro_rules! b_transpose {
    ($d0:expr, $d1:expr, $d2:expr, $d3:expr, $d4:expr, $d5:expr, $four:expr, $five:expr, $two:expr) => {{
        let (d0, d1, d2, d3, d4, d5) = ($d0, $d1, $d2, $d3, $d4, $d5);
        [
            $four * d0 - $five * d2 + d4,
            (d3 + d4) - $four * (d1 + d2),
            (d4 - d3) + $four * (d1 - d2),
            (d4 - d2) + $two * (d3 - d1),
            (d4 - d2) + $two * (d1 - d3),
            $four * d1 - $five * d3 + d5,
        ]
    }};
}

/// `A^T m` of six values, element by element.
macro_rules! a_transpose {
    ($m0:expr, $m1:expr, $m2:expr, $m3:expr, $m4:expr, $m5:expr, $two:expr, $four:expr, $eight:expr) => {{
        let (m0, m1, m2, m3, m4, m5) = ($m0, $m1, $m2, $m3, $m4, $m5);
        [
            m0 + m1 + m2 + m3 + m4,
            (m1 - m2) + $two * (m3 - m4),
            (m1 + m2) + $four * (m3 + m4),
            (m1 - m2) + $eight * (m3 - m4) + m5,
        ]
    }};
}

// The blocked layout's F(4x4) (`crate::blocked`) runs the same transforms over channel lanes.
pub(crate) use {a_transpose, b_transpose};

impl Tiling for F4 {
    const M: usize = 4;
    const POSITIONS: usize = 36;
    /// ResNet's 28x28 maps at batch 1 (49 tiles; 128 channels) ran 1.2x slower than with
    /// F(2x2), the 56x56 ones (196 tiles) 1.4x faster (`cargo bench -p convnets-kernels --
    /// winograd`, AMD Zen 4).
    const MIN_TILES: usize = 64;
    /// Widths that are not multiples of 4 compute the rest of the last tile for nothing: 14x14
    /// maps (tiles covering 16x16, batch 16) ran 1.15x slower than with F(2x2), 16x16 maps
    /// (batch 64) 1.4x faster.
    const MIN_WIDTH: usize = 16;
    const PREPARED_MIN_WIDTH: usize = 16;

    fn weight<T: Float>(g3: &[T], row: &mut [T], stride: usize) {
        let w = |r: usize, c: usize| g3[3 * r + c].to_f64();
        // G g: 6x3, column by column.
        let columns = [0, 1, 2].map(|c| g_times([w(0, c), w(1, c), w(2, c)]));
        let gg: [[f64; 3]; 6] = std::array::from_fn(|i| columns.map(|column| column[i]));
        // (G g) G^T: 6x6, row by row.
        for (i, r) in gg.into_iter().enumerate() {
            for (k, v) in g_times(r).into_iter().enumerate() {
                row[(6 * i + k) * stride] = T::from_f64(v);
            }
        }
    }

    /// `V = B^T d B` of every tile of one input plane, over all its tiles at once so that the
    /// loops run over long contiguous runs (a row of tiles is often shorter than a vector):
    /// the plane split into 4 zero-padded column phases (padded column `4 k + j` at `[j, ..,
    /// k]`), element `(i, j)` of every tile's patch gathered into the run `D[6 i + j]` (tile
    /// `ty tw + tx`; row `i` of a tile row's patches is `phase[j % 4]` from `j / 4`), then
    /// `R = B^T D` and `V = R B`, written to `dest(xi, 0, tiles)`.
    fn input_plane<'a, T: Float>(
        g: &ConvGeometry,
        plane: &[T],
        s: &mut InputScratch<T>,
        dest: impl Fn(usize, usize, usize) -> &'a mut [T],
    ) {
        let (th, tw) = tiles::<Self>(g);
        let (rows, width) = (4 * th + 2, tw + 1);
        split_phases(g, plane, s, 4, rows, width);
        let n = th * tw;
        let (two, four, five) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(5.0));
        s.rows.resize(72 * n, T::zero());
        let (d, r) = s.rows.split_at_mut(36 * n);
        for (ij, run) in d.chunks_exact_mut(n).enumerate() {
            let (i, j) = (ij / 6, ij % 6);
            for (ty, dst) in run.chunks_exact_mut(tw).enumerate() {
                dst.copy_from_slice(&s.phases[((j % 4) * rows + 4 * ty + i) * width + j / 4..][..tw]);
            }
        }
        // R = B^T D, stored `[j, a]`: R[6 j + a] = sum_i B^T[a][i] D[6 i + j].
        for (j, out) in r.chunks_exact_mut(6 * n).enumerate() {
            let dd = |i: usize| &d[(6 * i + j) * n..][..n];
            let (d0, d1, d2, d3, d4, d5) = (dd(0), dd(1), dd(2), dd(3), dd(4), dd(5));
            let (r0, rest) = out.split_at_mut(n);
            let (r1, rest) = rest.split_at_mut(n);
            let (r2, rest) = rest.split_at_mut(n);
            let (r3, rest) = rest.split_at_mut(n);
            let (r4, r5) = rest.split_at_mut(n);
            for t in 0..n {
                let v = b_transpose!(d0[t], d1[t], d2[t], d3[t], d4[t], d5[t], four, five, two);
                (r0[t], r1[t], r2[t], r3[t], r4[t], r5[t]) = (v[0], v[1], v[2], v[3], v[4], v[5]);
            }
        }
        // V = R B: V[6 a + k] = sum_j R[a][j] B^T[k][j].
        let r: &[T] = r;
        for a in 0..6 {
            let rr = |j: usize| &r[(6 * j + a) * n..][..n];
            let (c0, c1, c2, c3, c4, c5) = (rr(0), rr(1), rr(2), rr(3), rr(4), rr(5));
            let (v0, v1, v2, v3, v4, v5) = (
                dest(6 * a, 0, n),
                dest(6 * a + 1, 0, n),
                dest(6 * a + 2, 0, n),
                dest(6 * a + 3, 0, n),
                dest(6 * a + 4, 0, n),
                dest(6 * a + 5, 0, n),
            );
            for t in 0..n {
                let v = b_transpose!(c0[t], c1[t], c2[t], c3[t], c4[t], c5[t], four, five, two);
                (v0[t], v1[t], v2[t], v3[t], v4[t], v5[t]) = (v[0], v[1], v[2], v[3], v[4], v[5]);
            }
        }
    }

    /// One output plane `[oh, ow]` from its `M` values, over all its tiles at once: `S = A^T
    /// M` and `Y = S A` through `y` (`40 tiles` long), then each output row from the `Y`
    /// values of its tile row.
    fn output_plane<'a, T: Float>(
        g: &ConvGeometry,
        read: impl Fn(usize, usize, usize) -> &'a [T],
        y: &mut Vec<T>,
        plane: &mut [T],
    ) {
        let (th, tw) = tiles::<Self>(g);
        let n = th * tw;
        let (two, four, eight) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        y.resize(40 * n, T::zero());
        let (s, out) = y.split_at_mut(24 * n);
        // S = A^T M, stored `[k, r]`: S[4 k + r] = sum_i A^T[r][i] M[6 i + k].
        for (k, sk) in s.chunks_exact_mut(4 * n).enumerate() {
            let m = |i: usize| read(6 * i + k, 0, n);
            let (m0, m1, m2, m3, m4, m5) = (m(0), m(1), m(2), m(3), m(4), m(5));
            let (s0, rest) = sk.split_at_mut(n);
            let (s1, rest) = rest.split_at_mut(n);
            let (s2, s3) = rest.split_at_mut(n);
            for t in 0..n {
                let v = a_transpose!(m0[t], m1[t], m2[t], m3[t], m4[t], m5[t], two, four, eight);
                (s0[t], s1[t], s2[t], s3[t]) = (v[0], v[1], v[2], v[3]);
            }
        }
        // Y = S A: Y[4 r + c] = sum_k S[r][k] A^T[c][k].
        let s: &[T] = s;
        for (r, yr) in out.chunks_exact_mut(4 * n).enumerate() {
            let ss = |k: usize| &s[(4 * k + r) * n..][..n];
            let (c0, c1, c2, c3, c4, c5) = (ss(0), ss(1), ss(2), ss(3), ss(4), ss(5));
            let (y0, rest) = yr.split_at_mut(n);
            let (y1, rest) = rest.split_at_mut(n);
            let (y2, y3) = rest.split_at_mut(n);
            for t in 0..n {
                let v = a_transpose!(c0[t], c1[t], c2[t], c3[t], c4[t], c5[t], two, four, eight);
                (y0[t], y1[t], y2[t], y3[t]) = (v[0], v[1], v[2], v[3]);
            }
        }
        // Output row 4 ty + r, column 4 tx + c: Y[4 r + c][ty tw + tx].
        for ty in 0..th {
            for r in 0..4 {
                let oy = 4 * ty + r;
                if oy >= g.oh {
                    break;
                }
                let yc = |c: usize| &out[(4 * r + c) * n + ty * tw..][..tw];
                let (y0, y1, y2, y3) = (yc(0), yc(1), yc(2), yc(3));
                let row = &mut plane[oy * g.ow..][..g.ow];
                let mut quads = row.chunks_exact_mut(4);
                for (t, quad) in (&mut quads).enumerate() {
                    quad.copy_from_slice(&[y0[t], y1[t], y2[t], y3[t]]);
                }
                for (c, v) in quads.into_remainder().iter_mut().enumerate() {
                    *v = [y0, y1, y2][c][tw - 1];
                }
            }
        }
    }
}
