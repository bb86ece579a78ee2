//! Winograd F(4x4, 3x3) on the blocked layout (oneDNN's and MLAS's layout for it): the
//! 3x3, stride-1, padding-1 convolutions of [`super::BlockedConv`] where it pays, with the same
//! transforms as the NCHW path's (`crate::conv`'s F(4x4): Lavin & Gray's points, the weight's
//! transform computed in f64 and rounded once, prepared when the convolution is).
//!
//! The batch's 4x4 output tiles are cut into runs of about [`TASK_BYTES`] of transformed
//! inputs and products, one task each, spread over the rayon pool. A task transforms each
//! tile's 6x6 input patch channel block by channel block (`V = B^T d B`, the block's channels
//! in the lanes), writes `V` as 36 matrices `[tiles, cin]`, multiplies each by its prepared
//! weight `U_xi` `[cin, cout]` (the `gemm` crate, on the task's thread), and transforms the
//! products back (`Y = A^T M A`) straight into the blocked output with the bias, the residual
//! add and the ReLU. Every output value is written once, so the output needs no zero-fill.

use super::conv::{with_padded, Shared};
use super::{block_size, Blocked};
use crate::conv::{a_transpose, b_transpose, f4_weight, matmul};
use crate::elementwise::relu_value;
use crate::isa::Isa;
use crate::{bail, checked_len, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// About the bytes of one task's transformed inputs and products (kept in cache).
pub const TASK_BYTES: usize = 1 << 20;

/// F(4x4, 3x3)'s transform positions.
const POSITIONS: usize = 36;

/// A 3x3 convolution (stride 1, padding 1) prepared for F(4x4, 3x3) on the blocked layout.
#[derive(Debug, Clone)]
pub(super) struct BlockedWinograd {
    block: usize,
    cin: usize,
    cout: usize,
    /// `U`: `[36, cin_blocks * block, cout_blocks * block]`, zero past the real channels.
    u: Vec<f32>,
    /// `[cout_blocks * block]`.
    bias: Vec<f32>,
    relu: bool,
}

/// A task's transformed inputs and products, kept per thread between calls.
#[derive(Default)]
struct TaskScratch {
    v: Vec<f32>,
    m: Vec<f32>,
}

impl BlockedWinograd {
    /// `weight` `[cout, cin, 3, 3]` (and `bias` `[cout]`, checked by the caller) for `isa`'s
    /// block size.
    pub(super) fn new(
        isa: Isa,
        weight: &[f32],
        bias: &[f32],
        [cout, cin]: [usize; 2],
        relu: bool,
    ) -> Result<Self> {
        let b = block_size(isa);
        let (cin_p, cout_p) = (cin.div_ceil(b) * b, cout.div_ceil(b) * b);
        let (Some(len), Some(_)) = (
            checked_len(&[POSITIONS, cin_p, cout_p]),
            checked_len(&[cout, cin, 9]).filter(|&l| l == weight.len()),
        ) else {
            bail!(
                "blocked Winograd: {} weights for [{cout}, {cin}, 3, 3]",
                weight.len()
            )
        };
        let mut u = vec![0.0; len];
        let stride = cin_p * cout_p;
        for o in 0..cout {
            for c in 0..cin {
                f4_weight(
                    &weight[(o * cin + c) * 9..][..9],
                    &mut u[c * cout_p + o..],
                    stride,
                );
            }
        }
        let mut padded_bias = vec![0.0; cout_p];
        padded_bias[..bias.len().min(cout)].copy_from_slice(&bias[..bias.len().min(cout)]);
        Ok(Self {
            block: b,
            cin,
            cout,
            u,
            bias: padded_bias,
            relu,
        })
    }

    /// `relu(conv(x) + bias + residual)` (the ReLU if prepared so), `x` checked by the caller
    /// (its channels and block size), the residual of the output's shape; the output in a
    /// buffer from `alloc(len)`.
    pub(super) fn forward_with(
        &self,
        x: &Blocked,
        residual: Option<&Blocked>,
        alloc: impl FnOnce(usize) -> Vec<f32>,
    ) -> Result<Blocked> {
        let b = self.block;
        let (n, h, w) = (x.n, x.h, x.w);
        let (ib, ob) = (self.cin.div_ceil(b), self.cout.div_ceil(b));
        if x.c != self.cin || x.block != b || !x.is_consistent() {
            bail!(
                "blocked Winograd: an input of {} channels in blocks of {}",
                x.c,
                x.block
            )
        }
        if residual
            .is_some_and(|r| (r.n, r.c, r.h, r.w, r.block) != (n, self.cout, h, w, b) || !r.is_consistent())
        {
            bail!("blocked Winograd: a residual not of the output's shape")
        }
        let (th, tw) = (h.div_ceil(4), w.div_ceil(4));
        // The input padded by 1 before and up to the last tile's patch after.
        let (ph, pw) = (4 * th + 2, 4 * tw + 2);
        let (Some(padded_len), Some(out_len)) =
            (checked_len(&[n, ib, ph, pw, b]), checked_len(&[n, ob, h, w, b]))
        else {
            bail!(
                "blocked Winograd: a [{n}, {}, {h}, {w}] input has more values than a usize counts",
                x.c
            )
        };
        let tiles = n * th * tw;
        let (cin_p, cout_p) = (ib * b, ob * b);
        let threads = rayon::current_num_threads().max(1);
        let per_task = (TASK_BYTES / (POSITIONS * 4 * (cin_p + cout_p)))
            .clamp(4, 64)
            .min(tiles.div_ceil(2 * threads))
            .max(1);
        let geometry = Geometry {
            ib,
            ob,
            h,
            w,
            th,
            tw,
            ph,
            pw,
        };
        let residual = residual.map(|r| &r.data[..]);
        let run = |padded: &[f32], out: &mut [MaybeUninit<f32>]| {
            assert!(
                out.len() == out_len && padded.len() == padded_len,
                "blocked Winograd: buffers that do not match the layer"
            );
            let op = Shared(out.as_mut_ptr());
            (0..tiles.div_ceil(per_task))
                .into_par_iter()
                .for_each(move |task| {
                    let first = task * per_task;
                    let count = per_task.min(tiles - first);
                    let mut s = crate::scratch::take::<TaskScratch>();
                    let _ = &op;
                    // SAFETY: `op` holds the output checked above; the tasks' tiles are disjoint.
                    crate::isa::vectorized(|| unsafe {
                        match b {
                            16 => self.task::<16>(&geometry, padded, residual, op, first, count, &mut s),
                            _ => self.task::<8>(&geometry, padded, residual, op, first, count, &mut s),
                        }
                    });
                    let bytes = (s.v.len() + s.m.len()) * 4;
                    crate::scratch::put_back(s, bytes);
                });
        };
        // SAFETY: the tasks write every output value (each position of each output block of
        // each image, by the tile that covers it).
        let out = unsafe {
            crate::written_in(alloc(out_len), out_len, |out| {
                with_padded(x, (1, 1), (ph, pw), padded_len, |padded| run(padded, out))
            })
        };
        Ok(Blocked {
            n,
            c: self.cout,
            h,
            w,
            block: b,
            data: out,
        })
    }

    /// Tiles `first..first + count` (numbered over the batch, image-major) with blocks of `B`.
    ///
    /// # Safety
    /// `out` holds the output `[n, ob, h, w, B]` of [`BlockedWinograd::forward_with`]'s
    /// checks, and no other task writes these tiles' positions.
    #[allow(clippy::too_many_arguments)]
    unsafe fn task<const B: usize>(
        &self,
        g: &Geometry,
        padded: &[f32],
        residual: Option<&[f32]>,
        out: Shared<*mut MaybeUninit<f32>>,
        first: usize,
        count: usize,
        s: &mut TaskScratch,
    ) {
        let (cin_p, cout_p) = (g.ib * B, g.ob * B);
        let v = crate::scratch::grown(&mut s.v, POSITIONS * count * cin_p);
        let (two, four, five, eight) = (2.0f32, 4.0f32, 5.0f32, 8.0f32);
        let per_image = g.th * g.tw;
        // V = B^T d B of every tile and input block: V[xi][tile][cin].
        for k in 0..count {
            let tile = first + k;
            let (image, rest) = (tile / per_image, tile % per_image);
            let (ty, tx) = (rest / g.tw, rest % g.tw);
            for icb in 0..g.ib {
                let base = ((image * g.ib + icb) * g.ph + 4 * ty) * g.pw + 4 * tx;
                let d = |i: usize, j: usize| -> &[f32; B] {
                    let at = (base + i * g.pw + j) * B;
                    (&padded[at..at + B]).try_into().unwrap_or(&[0.0; B])
                };
                // R = B^T d: R[6 a + j].
                let mut r = [[0f32; B]; POSITIONS];
                for j in 0..6 {
                    let (d0, d1, d2, d3, d4, d5) = (d(0, j), d(1, j), d(2, j), d(3, j), d(4, j), d(5, j));
                    for l in 0..B {
                        let t = b_transpose!(d0[l], d1[l], d2[l], d3[l], d4[l], d5[l], four, five, two);
                        for (a, t) in t.into_iter().enumerate() {
                            r[6 * a + j][l] = t;
                        }
                    }
                }
                // V = R B: V[6 a + c].
                for a in 0..6 {
                    let mut row = [[0f32; B]; 6];
                    let rr = &r[6 * a..6 * a + 6];
                    for l in 0..B {
                        let t = b_transpose!(
                            rr[0][l], rr[1][l], rr[2][l], rr[3][l], rr[4][l], rr[5][l], four, five, two
                        );
                        for (c, t) in t.into_iter().enumerate() {
                            row[c][l] = t;
                        }
                    }
                    for (c, row) in row.iter().enumerate() {
                        let at = ((6 * a + c) * count + k) * cin_p + icb * B;
                        v[at..at + B].copy_from_slice(row);
                    }
                }
            }
        }
        // M_xi [tiles, cout] = V_xi [tiles, cin] x U_xi [cin, cout].
        let m = crate::scratch::grown(&mut s.m, POSITIONS * count * cout_p);
        for xi in 0..POSITIONS {
            matmul(
                (count, cout_p, cin_p),
                &mut m[xi * count * cout_p..][..count * cout_p],
                (cout_p, 1),
                false,
                &v[xi * count * cin_p..][..count * cin_p],
                (cin_p, 1),
                &self.u[xi * cin_p * cout_p..][..cin_p * cout_p],
                (cout_p, 1),
                ::gemm::Parallelism::None,
            );
        }
        // Y = A^T M A + bias (+ residual) (ReLU), into the output.
        let m: &[f32] = m;
        for k in 0..count {
            let tile = first + k;
            let (image, rest) = (tile / per_image, tile % per_image);
            let (ty, tx) = (rest / g.tw, rest % g.tw);
            for ocb in 0..g.ob {
                let mm = |xi: usize| -> &[f32; B] {
                    let at = (xi * count + k) * cout_p + ocb * B;
                    (&m[at..at + B]).try_into().unwrap_or(&[0.0; B])
                };
                // S = A^T M: S[6 r + c] for rows r < 4.
                let mut sa = [[0f32; B]; 24];
                for c in 0..6 {
                    let (m0, m1, m2, m3, m4, m5) =
                        (mm(c), mm(6 + c), mm(12 + c), mm(18 + c), mm(24 + c), mm(30 + c));
                    for l in 0..B {
                        let t = a_transpose!(m0[l], m1[l], m2[l], m3[l], m4[l], m5[l], two, four, eight);
                        for (r, t) in t.into_iter().enumerate() {
                            sa[6 * r + c][l] = t;
                        }
                    }
                }
                let bias: &[f32; B] = (&self.bias[ocb * B..ocb * B + B]).try_into().unwrap_or(&[0.0; B]);
                for r in 0..4 {
                    let oy = 4 * ty + r;
                    if oy >= g.h {
                        break;
                    }
                    let ss = &sa[6 * r..6 * r + 6];
                    let mut y = [[0f32; B]; 4];
                    for l in 0..B {
                        let t = a_transpose!(
                            ss[0][l], ss[1][l], ss[2][l], ss[3][l], ss[4][l], ss[5][l], two, four, eight
                        );
                        for (c, t) in t.into_iter().enumerate() {
                            y[c][l] = t + bias[l];
                        }
                    }
                    for (c, y) in y.iter_mut().enumerate() {
                        let ox = 4 * tx + c;
                        if ox >= g.w {
                            break;
                        }
                        let at = (((image * g.ob + ocb) * g.h + oy) * g.w + ox) * B;
                        if let Some(res) = residual {
                            for (y, &a) in y.iter_mut().zip(&res[at..at + B]) {
                                *y += a;
                            }
                        }
                        if self.relu {
                            y.iter_mut().for_each(|v| *v = relu_value(*v));
                        }
                        // SAFETY: `at + B` is inside the output (`oy < h`, `ox < w`, `ocb <
                        // ob`, `image < n`: checked against the buffer in `forward_with`), and
                        // only this tile writes these values.
                        unsafe {
                            let dst = out.0.add(at).cast::<f32>();
                            std::ptr::copy_nonoverlapping(y.as_ptr(), dst, B);
                        }
                    }
                }
            }
        }
    }
}

/// The sizes of one call.
struct Geometry {
    ib: usize,
    ob: usize,
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    ph: usize,
    pw: usize,
}
