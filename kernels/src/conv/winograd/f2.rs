//! F(2x2, 3x3): 2x2 output tiles from 4x4 input patches, 16 products.
//!
//! ```text
//! B^T = [1  0 -1  0]    G = [ 1    0    0 ]    A^T = [1  1  1  0]
//!       [0  1  1  0]        [1/2  1/2  1/2]          [0  1 -1 -1]
//!       [0 -1  1  0]        [1/2 -1/2  1/2]
//!       [0  1  0 -1]        [ 0    0    1 ]
//! ```

use super::{split_phases, tiles, InputScratch, Tiling};
use crate::conv::ConvGeometry;
use crate::Float;

/// Winograd F(2x2, 3x3).
pub(crate) struct F2;

impl Tiling for F2 {
    const M: usize = 2;
    const POSITIONS: usize = 16;
    const MIN_TILES: usize = 100;
    /// ResNet-18 training on 32x32 images (8x8 and 4x4 maps) ran at 592-606 images/s with
    /// F(2x2) on every map against 632-662 without and 684-692 with this limit.
    const MIN_WIDTH: usize = 14;
    const PREPARED_MIN_WIDTH: usize = 7;

    fn weight<T: Float>(g3: &[T], row: &mut [T], stride: usize) {
        let half = T::from_f64(0.5);
        // G g: 4x3.
        let mut gg = [T::zero(); 12];
        for c in 0..3 {
            let (a, b, d) = (g3[c], g3[3 + c], g3[6 + c]);
            gg[c] = a;
            gg[3 + c] = (a + b + d) * half;
            gg[6 + c] = (a - b + d) * half;
            gg[9 + c] = d;
        }
        // (G g) G^T: 4x4.
        for r in 0..4 {
            let (a, b, d) = (gg[3 * r], gg[3 * r + 1], gg[3 * r + 2]);
            row[(4 * r) * stride] = a;
            row[(4 * r + 1) * stride] = (a + b + d) * half;
            row[(4 * r + 2) * stride] = (a - b + d) * half;
            row[(4 * r + 3) * stride] = d;
        }
    }

    /// `V = B^T d B` of every tile of one input plane, written one tile row at a time to
    /// `dest(xi, first tile, tiles)`: the plane split into zero-padded even and odd columns,
    /// after which every step reads contiguous runs.
    fn input_plane<'a, T: Float>(
        g: &ConvGeometry,
        plane: &[T],
        s: &mut InputScratch<T>,
        dest: impl Fn(usize, usize, usize) -> &'a mut [T],
    ) {
        let (th, tw) = tiles::<Self>(g);
        let (rows, width) = (2 * th + 2, tw + 1);
        split_phases(g, plane, s, 2, rows, width);
        let (even, odd) = s.phases.split_at(rows * width);
        s.rows.resize(8 * width, T::zero());
        for ty in 0..th {
            // B^T d: the four padded rows 2 ty .. 2 ty + 3, column by column (even, then odd).
            for (half, cols) in [even, odd].into_iter().enumerate() {
                let d = |i: usize| &cols[(2 * ty + i) * width..][..width];
                let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
                let out = &mut s.rows[half * 4 * width..][..4 * width];
                let (t0, rest) = out.split_at_mut(width);
                let (t1, rest) = rest.split_at_mut(width);
                let (t2, t3) = rest.split_at_mut(width);
                for k in 0..width {
                    t0[k] = d0[k] - d2[k];
                    t1[k] = d1[k] + d2[k];
                    t2[k] = d2[k] - d1[k];
                    t3[k] = d1[k] - d3[k];
                }
            }
            // (B^T d) B: along each row, from the even (a) and odd (b) columns.
            for i in 0..4 {
                let a = &s.rows[i * width..][..width];
                let b = &s.rows[(4 + i) * width..][..width];
                let (a0, a1, b0, b1) = (&a[..tw], &a[1..], &b[..tw], &b[1..]);
                let (u0, u1, u2, u3) = (
                    dest(4 * i, ty * tw, tw),
                    dest(4 * i + 1, ty * tw, tw),
                    dest(4 * i + 2, ty * tw, tw),
                    dest(4 * i + 3, ty * tw, tw),
                );
                for t in 0..tw {
                    u0[t] = a0[t] - a1[t];
                    u1[t] = b0[t] + a1[t];
                    u2[t] = a1[t] - b0[t];
                    u3[t] = b0[t] - b1[t];
                }
            }
        }
    }

    /// One output plane `[oh, ow]` from its `M` values: `Y = A^T M A`, one tile row at a time,
    /// through `y` (`4 tw` long).
    fn output_plane<'a, T: Float>(
        g: &ConvGeometry,
        read: impl Fn(usize, usize, usize) -> &'a [T],
        y: &mut Vec<T>,
        plane: &mut [T],
    ) {
        let (th, tw) = tiles::<Self>(g);
        y.resize(4 * tw, T::zero());
        for ty in 0..th {
            let m = |xi: usize| read(xi, ty * tw, tw);
            {
                let (y00, rest) = y.split_at_mut(tw);
                let (y01, rest) = rest.split_at_mut(tw);
                let (y10, y11) = rest.split_at_mut(tw);
                let (m00, m01, m02, m03) = (m(0), m(1), m(2), m(3));
                let (m10, m11, m12, m13) = (m(4), m(5), m(6), m(7));
                let (m20, m21, m22, m23) = (m(8), m(9), m(10), m(11));
                let (m30, m31, m32, m33) = (m(12), m(13), m(14), m(15));
                for t in 0..tw {
                    // A^T M: two rows.
                    let s0 = [
                        m00[t] + m10[t] + m20[t],
                        m01[t] + m11[t] + m21[t],
                        m02[t] + m12[t] + m22[t],
                        m03[t] + m13[t] + m23[t],
                    ];
                    let s1 = [
                        m10[t] - m20[t] - m30[t],
                        m11[t] - m21[t] - m31[t],
                        m12[t] - m22[t] - m32[t],
                        m13[t] - m23[t] - m33[t],
                    ];
                    // (A^T M) A.
                    y00[t] = s0[0] + s0[1] + s0[2];
                    y01[t] = s0[1] - s0[2] - s0[3];
                    y10[t] = s1[0] + s1[1] + s1[2];
                    y11[t] = s1[1] - s1[2] - s1[3];
                }
            }
            for dy in 0..2 {
                let oy = 2 * ty + dy;
                if oy >= g.oh {
                    break;
                }
                let row = &mut plane[oy * g.ow..][..g.ow];
                let (left, right) = (&y[2 * dy * tw..][..tw], &y[(2 * dy + 1) * tw..][..tw]);
                let mut pairs = row.chunks_exact_mut(2);
                for (pair, (&l, &r)) in (&mut pairs).zip(left.iter().zip(right)) {
                    pair[0] = l;
                    pair[1] = r;
                }
                if let Some(last) = pairs.into_remainder().first_mut() {
                    *last = left[tw - 1];
                }
            }
        }
    }
}
