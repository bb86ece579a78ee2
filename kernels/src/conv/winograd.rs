//! Winograd F(2x2, 3x3): the forward pass of a 3x3, stride-1 convolution with 16 products of
//! `[Cout, Cin] x [Cin, tiles]` instead of one `[Cout, 9 Cin] x [9 Cin, positions]`, 2.25x fewer
//! multiply-adds (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
//!
//! The output is cut into 2x2 tiles; tile `(ty, tx)` reads the 4x4 input patch at rows
//! `2 ty - ph ..`, columns `2 tx - pw ..` (zeros outside the input). With
//!
//! ```text
//! B^T = [1  0 -1  0]    G = [ 1    0    0 ]    A^T = [1  1  1  0]
//!       [0  1  1  0]        [1/2  1/2  1/2]          [0  1 -1 -1]
//!       [0 -1  1  0]        [1/2 -1/2  1/2]
//!       [0  1  0 -1]        [ 0    0    1 ]
//! ```
//!
//! the weight of each `(cout, cin)` pair becomes `U = G g G^T`, each patch `V = B^T d B`
//! (4x4 each), and the tile's 2x2 outputs are `A^T (sum_cin U . V) A`: for each of the 16
//! positions `xi` of the 4x4 transforms, `M_xi [Cout, tiles] = U_xi [Cout, Cin] x V_xi [Cin,
//! tiles]`, a plain matrix product.
//!
//! The transforms are written over whole rows of tiles so that they vectorise: the input
//! planes are first split into zero-padded even and odd columns, after which every transform
//! step reads contiguous runs. The results differ from the direct convolution's by rounding
//! only (a few units in the last place of f32 for ResNet's layers; the tests bound them).
//!
//! Used by [`super::kernels::forward`] for 3x3, stride-1, undilated, ungrouped convolutions of
//! at least [`MIN_CHANNELS`] input and output channels whose nine taps are all live, with at
//! least [`MIN_TILES`] tiles per run of images and outputs at least [`MIN_WIDTH`] wide, in
//! training as in inference. The input gradient of such a convolution is computed the same
//! way ([`input_grad`]: the forward convolution of the output gradient by the transposed,
//! flipped weight) where that convolution qualifies; the weight gradient stays im2col's.

use super::*;

/// Fewer input or output channels than this: the transforms cost more than the products save.
pub(crate) const MIN_CHANNELS: usize = 16;

/// The size of a block's transformed inputs (`16 * Cin * tiles` values): whole images are
/// grouped into blocks up to this size, so that small late-stage maps still give the 16
/// products enough columns.
const BLOCK_BYTES: usize = 1 << 21;

/// Fewer tiles per run of images than this: the weight's transform (written and read once
/// per pass, 16/9 of the weight) costs more than the products save.
const MIN_TILES: usize = 100;

/// Narrower outputs than this: the transforms' rows (half the output width) are too short to
/// vectorise, and the transforms cost more than the products save (ResNet-18 training on
/// 32x32 images, 8x8 and 4x4 maps, ran at 592-606 images/s with them against 632-662 without
/// and 684-692 with this limit).
const MIN_WIDTH: usize = 14;

/// Whether [`forward`] computes this convolution.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    let (th, tw) = tiles(g);
    let images = match g.plan() {
        Plan::Images { per_thread } => per_thread,
        Plan::Serial | Plan::Inside { .. } => g.n,
    };
    images * th * tw >= MIN_TILES
        && g.ow >= MIN_WIDTH
        && g.kh == 3
        && g.kw == 3
        && g.stride == 1
        && g.dilation == 1
        && g.groups == 1
        && g.all_live()
        && g.cin >= MIN_CHANNELS
        && g.cout >= MIN_CHANNELS
        && g.oh >= 2
        && g.ow >= 2
}

/// Tile rows and columns of one image.
fn tiles(g: &ConvGeometry) -> (usize, usize) {
    (g.oh.div_ceil(2), g.ow.div_ceil(2))
}

/// The forward pass of [`applies`]' convolutions: the outputs `[N, Cout, oh, ow]` from the
/// inputs and the weight `[Cout, Cin, 3, 3]`, each image's outputs followed by the epilogue.
pub(crate) fn forward<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    epilogue: Option<&Epilogue<T>>,
) -> Vec<T> {
    let plan = g.plan();
    let u = transform_weight(g, weight, !matches!(plan, Plan::Serial));
    let mut out = vec![T::zero(); g.n * g.image_out()];
    over_images(
        plan,
        x,
        g.image_in(),
        &mut out,
        g.image_out(),
        |_, x, out, inner| forward_run(g, x, &u, out, inner.rows, epilogue),
    );
    out
}

/// The input gradient `[N, Cin, H, W]` of a 3x3, stride-1, undilated, ungrouped convolution
/// `g` as Winograd's forward pass, with no column matrix and no col2im: the convolution of the
/// output gradient by the weight transposed to `[Cin, Cout]` and flipped in both axes, padded
/// by `2 - padding` (oneDNN's backward-data). `None` when that convolution is not one
/// [`applies`] takes (the caller then runs im2col's adjoint).
pub(crate) fn input_grad<T: Float>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Option<Vec<T>> {
    let (ph, pw) = g.padding;
    let shaped = g.kh == 3 && g.kw == 3 && g.stride == 1 && g.dilation == 1 && g.groups == 1;
    if !shaped || ph != pw || ph > 2 {
        return None;
    }
    let p = ConvParams {
        padding: 2 - ph,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    let adjoint = ConvGeometry::new(&[g.n, g.cout, g.oh, g.ow], &[g.cin, g.cout, 3, 3], p).ok()?;
    if !applies(&adjoint) || (adjoint.oh, adjoint.ow) != (g.h, g.w) {
        return None;
    }
    let (cin, cout) = (g.cin, g.cout);
    let mut flipped = vec![T::zero(); weight.len()];
    for (o, taps) in weight.chunks_exact(9).enumerate() {
        let (co, ci) = (o / cin, o % cin);
        let to = &mut flipped[(ci * cout + co) * 9..][..9];
        for (t, &v) in taps.iter().enumerate() {
            to[8 - t] = v;
        }
    }
    Some(forward(&adjoint, grad, &flipped, None))
}

/// `U_xi [Cout, Cin]` for the 16 positions `xi` of the 4x4 transform, as `[16, Cout, Cin]`.
fn transform_weight<T: Float>(g: &ConvGeometry, weight: &[T], parallel: bool) -> Vec<T> {
    let (cout, cin) = (g.cout, g.cin);
    let half = T::from_f64(0.5);
    let mut u = vec![T::zero(); 16 * cout * cin];
    let u_ptr = SyncPtr(u.as_mut_ptr());
    // One output channel: its `Cin` transforms through `row` (`[16, Cin]`, reused), then
    // written to 16 contiguous runs.
    let one = |row: &mut Vec<T>, o: usize| {
        for (i, g3) in weight[o * cin * 9..][..cin * 9].chunks_exact(9).enumerate() {
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
                row[(4 * r) * cin + i] = a;
                row[(4 * r + 1) * cin + i] = (a + b + d) * half;
                row[(4 * r + 2) * cin + i] = (a - b + d) * half;
                row[(4 * r + 3) * cin + i] = d;
            }
        }
        for (xi, values) in row.chunks_exact(cin).enumerate() {
            // SAFETY: output channel `o` writes only `U[xi, o, ..]`, inside `u` (`16 * Cout *
            // Cin` long), which no other output channel writes.
            unsafe {
                std::ptr::copy_nonoverlapping(values.as_ptr(), u_ptr.get().add((xi * cout + o) * cin), cin);
            }
        }
    };
    if parallel {
        (0..cout)
            .into_par_iter()
            .for_each_init(|| vec![T::zero(); 16 * cin], one);
    } else {
        let mut row = vec![T::zero(); 16 * cin];
        (0..cout).for_each(|o| one(&mut row, o));
    }
    u
}

/// Buffers of one run, reused from block to block.
struct Buffers<T> {
    /// `V`: `[16, Cin, cols]`.
    v: Vec<T>,
    /// `M`: `[16, Cout, cols]`.
    m: Vec<T>,
}

/// The forward pass of a run of images (`x` `[images, Cin, H, W]`), in blocks of whole images.
fn forward_run<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    u: &[T],
    out: &mut [T],
    parallel: bool,
    epilogue: Option<&Epilogue<T>>,
) {
    let (th, tw) = tiles(g);
    let per_image = th * tw;
    let images = out.len() / g.image_out();
    let block = (BLOCK_BYTES / (16 * g.cin * per_image * std::mem::size_of::<T>())).clamp(1, images.max(1));
    let mut buffers = Buffers {
        v: Vec::new(),
        m: Vec::new(),
    };
    for first in (0..images).step_by(block) {
        let last = (first + block).min(images);
        let x = &x[first * g.image_in()..last * g.image_in()];
        let out = &mut out[first * g.image_out()..last * g.image_out()];
        forward_block(g, x, u, out, parallel, &mut buffers);
        if let Some(e) = epilogue {
            if parallel {
                out.par_chunks_mut(g.plane_out())
                    .enumerate()
                    .for_each(|(i, plane)| e.map(i % g.cout, plane));
            } else {
                e.apply(g, out, &(0..g.oh));
            }
        }
    }
}

/// One block of images: transform the inputs, 16 products, transform the outputs.
fn forward_block<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    u: &[T],
    out: &mut [T],
    parallel: bool,
    buffers: &mut Buffers<T>,
) {
    let (th, tw) = tiles(g);
    let images = x.len() / g.image_in();
    let cols = images * th * tw;
    let (cin, cout) = (g.cin, g.cout);
    let Buffers { v, m } = buffers;
    v.resize(16 * cin * cols, T::zero());
    m.resize(16 * cout * cols, T::zero());
    // V: one input plane at a time (plane `i` is image `i / Cin`, channel `i % Cin`).
    let plane_in = g.plane_in();
    let v_ptr = SyncPtr(v.as_mut_ptr());
    let input_plane = |scratch: &mut InputScratch<T>, i: usize| {
        let (image, c) = (i / cin, i % cin);
        let plane = &x[i * plane_in..][..plane_in];
        // SAFETY: plane `(image, c)` writes only the elements `V[xi, c, image * th * tw ..
        // (image + 1) * th * tw]` (tile `t` of the plane at `.. + t`, `len` tiles from `t` at a
        // time, each run handed out once), which no other plane writes; all lie inside `v`
        // (`16 * Cin * cols` long), which outlives the calls.
        let dest = |xi: usize, t: usize, len: usize| unsafe {
            let at = (xi * cin + c) * cols + image * th * tw + t;
            std::slice::from_raw_parts_mut(v_ptr.get().add(at), len)
        };
        transform_input_plane(g, plane, scratch, dest);
    };
    let scratch = InputScratch::new;
    if parallel {
        (0..images * cin)
            .into_par_iter()
            .for_each_init(scratch, input_plane);
    } else {
        let mut scratch = scratch();
        (0..images * cin).for_each(|i| input_plane(&mut scratch, i));
    }
    // M_xi = U_xi x V_xi.
    let product = |(xi, m): (usize, &mut [T])| {
        matmul(
            (cout, cols, cin),
            m,
            (cols, 1),
            false,
            &u[xi * cout * cin..][..cout * cin],
            (cin, 1),
            &v[xi * cin * cols..][..cin * cols],
            (cols, 1),
            Parallelism::None,
        )
    };
    if parallel {
        m.par_chunks_mut(cout * cols).enumerate().for_each(product);
    } else {
        m.chunks_mut(cout * cols).enumerate().for_each(product);
    }
    // The outputs, one output plane at a time.
    let m: &[T] = m;
    let output_plane = |y: &mut Vec<T>, (i, plane): (usize, &mut [T])| {
        let (image, c) = (i / cout, i % cout);
        let read = |xi: usize, t: usize, len: usize| -> &[T] {
            &m[(xi * cout + c) * cols + image * th * tw + t..][..len]
        };
        transform_output_plane(g, read, y, plane);
    };
    // One tile row's outputs, `[4, tw]`, reused from plane to plane.
    let scratch = || vec![T::zero(); 4 * tw];
    if parallel {
        out.par_chunks_mut(g.plane_out())
            .enumerate()
            .for_each_init(scratch, output_plane);
    } else {
        let mut y = scratch();
        out.chunks_mut(g.plane_out())
            .enumerate()
            .for_each(|plane| output_plane(&mut y, plane));
    }
}

/// Rows of an input plane split into zero-padded even and odd columns, and the transform's
/// intermediate rows.
struct InputScratch<T> {
    /// One padded input row, `2 (tw + 1)` long.
    padded: Vec<T>,
    /// `[2 th + 2, tw + 1]`: padded column `2k` of each padded row.
    even: Vec<T>,
    /// The same for padded column `2k + 1`.
    odd: Vec<T>,
    /// `B^T d` of one tile row: 4 rows each of even and odd columns, `[8, tw + 1]`.
    rows: Vec<T>,
}

impl<T> InputScratch<T> {
    fn new() -> Self {
        Self {
            padded: Vec::new(),
            even: Vec::new(),
            odd: Vec::new(),
            rows: Vec::new(),
        }
    }
}

/// `V = B^T d B` of every tile of one input plane, written one tile row at a time to
/// `dest(xi, first tile, tiles)`.
fn transform_input_plane<'a, T: Float>(
    g: &ConvGeometry,
    plane: &[T],
    s: &mut InputScratch<T>,
    dest: impl Fn(usize, usize, usize) -> &'a mut [T],
) {
    let (th, tw) = tiles(g);
    let (ph, pw) = g.padding;
    let (rows, width) = (2 * th + 2, tw + 1);
    s.even.clear();
    s.even.resize(rows * width, T::zero());
    s.odd.clear();
    s.odd.resize(rows * width, T::zero());
    // Padded row `r` is input row `r - ph`, padded column `j` input column `j - pw`; `2 tw >=
    // ow = w + 2 pw - 2`, so a padded row (`2 tw + 2` long) holds the whole input row.
    s.padded.clear();
    s.padded.resize(2 * width, T::zero());
    for r in ph..(g.h + ph).min(rows) {
        s.padded[pw..pw + g.w].copy_from_slice(&plane[(r - ph) * g.w..][..g.w]);
        let (even, odd) = (
            &mut s.even[r * width..][..width],
            &mut s.odd[r * width..][..width],
        );
        for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(s.padded.chunks_exact(2)) {
            *e = pair[0];
            *o = pair[1];
        }
    }
    s.rows.resize(8 * width, T::zero());
    for ty in 0..th {
        // B^T d: the four padded rows 2 ty .. 2 ty + 3, column by column (even, then odd).
        for (half, cols) in [&s.even, &s.odd].into_iter().enumerate() {
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

/// One output plane `[oh, ow]` from its `M` values: `read(xi, first tile, len)` gives `M_xi`
/// of `len` consecutive tiles of the plane. `Y = A^T M A`, one tile row at a time, through `y`
/// (`4 tw` long).
fn transform_output_plane<'a, T: Float>(
    g: &ConvGeometry,
    read: impl Fn(usize, usize, usize) -> &'a [T],
    y: &mut [T],
    plane: &mut [T],
) {
    let (th, tw) = tiles(g);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct convolution by nested loops (f64), then the epilogue's map.
    fn direct(g: &ConvGeometry, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; g.n * g.image_out()];
        for b in 0..g.n {
            for o in 0..g.cout {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut sum = 0.0;
                        for c in 0..g.cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy + ky) as isize - g.padding.0 as isize;
                                    let ix = (ox + kx) as isize - g.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xv = x[((b * g.cin + c) * g.h + iy as usize) * g.w + ix as usize];
                                    sum += w[((o * g.cin + c) * 3 + ky) * 3 + kx] * xv;
                                }
                            }
                        }
                        out[((b * g.cout + o) * g.oh + oy) * g.ow + ox] = sum;
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f64 / 1001.5) - 1.0)
            .collect()
    }

    /// Winograd's outputs equal a direct convolution's up to rounding, for odd and even
    /// output sizes, paddings 0 to 2, one image or a block of several, serial and parallel,
    /// in f64 and f32, with and without an epilogue (bias, batch norm, ReLU).
    #[test]
    fn winograd_equals_the_direct_convolution() {
        let shapes: [([usize; 4], usize, usize); 6] = [
            ([1, 16, 20, 21], 16, 1),
            ([1, 16, 23, 22], 24, 0),
            ([1, 17, 21, 19], 16, 2),
            ([6, 16, 9, 9], 16, 1),
            ([2, 32, 30, 31], 20, 1),
            ([3, 16, 2, 41], 16, 1),
        ];
        for (x_dims, cout, padding) in shapes {
            let p = ConvParams {
                padding,
                stride: 1,
                dilation: 1,
                groups: 1,
            };
            let g = ConvGeometry::new(&x_dims, &[cout, x_dims[1], 3, 3], p).unwrap();
            let x = values(g.n * g.image_in(), 1);
            let w = values(g.cout * g.cin * 9, 2);
            let expected = direct(&g, &x, &w);
            let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let epilogue = Epilogue::<f64>::new(&ConvEpilogue {
                bias: Some(values(cout, 3)),
                mean: values(cout, 4),
                scale: values(cout, 5),
                shift: values(cout, 6),
                relu: true,
            });
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let what = format!("{x_dims:?} -> {cout}, padding {padding}, {threads} threads");
                    let ours = forward(&g, &x, &w, None);
                    for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-13 * scale,
                            "{what}: f64 output {i}: {a} vs {b}"
                        );
                    }
                    let (x32, w32): (Vec<f32>, Vec<f32>) = (
                        x.iter().map(|&v| v as f32).collect(),
                        w.iter().map(|&v| v as f32).collect(),
                    );
                    let ours = forward(&g, &x32, &w32, None);
                    for (i, (&a, b)) in ours.iter().zip(&expected).enumerate() {
                        assert!(
                            (a as f64 - b).abs() <= 2e-6 * scale,
                            "{what}: f32 output {i}: {a} vs {b}"
                        );
                    }
                    // The epilogue: the same map as after the direct convolution.
                    let ours = forward(&g, &x, &w, Some(&epilogue));
                    let mut mapped = expected.clone();
                    for (i, plane) in mapped.chunks_exact_mut(g.plane_out()).enumerate() {
                        epilogue.map(i % g.cout, plane);
                    }
                    for (i, (a, b)) in ours.iter().zip(&mapped).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-12 * scale,
                            "{what}: epilogue output {i}: {a} vs {b}"
                        );
                    }
                });
            }
        }
    }

    /// The input gradient by nested loops (f64): the adjoint of [`direct`].
    fn direct_input_grad(g: &ConvGeometry, grad: &[f64], w: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; g.n * g.image_in()];
        for b in 0..g.n {
            for o in 0..g.cout {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let dy = grad[((b * g.cout + o) * g.oh + oy) * g.ow + ox];
                        for c in 0..g.cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy + ky) as isize - g.padding.0 as isize;
                                    let ix = (ox + kx) as isize - g.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let at = ((b * g.cin + c) * g.h + iy as usize) * g.w + ix as usize;
                                    dx[at] += w[((o * g.cin + c) * 3 + ky) * 3 + kx] * dy;
                                }
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    /// The input gradient through Winograd's forward pass (transposed, flipped weight) equals
    /// the direct adjoint up to rounding, for paddings 0 to 2, one image or several, channels
    /// in and out unequal, serial and parallel, f64 and f32; shapes the adjoint convolution
    /// does not qualify for are left to im2col (`None`).
    #[test]
    fn winograd_input_gradient_equals_the_direct_adjoint() {
        let shapes: [([usize; 4], usize, usize); 5] = [
            ([1, 16, 20, 21], 24, 1),
            ([1, 20, 23, 22], 16, 0),
            ([1, 17, 21, 19], 16, 2),
            ([2, 32, 30, 31], 20, 1),
            ([6, 16, 16, 16], 16, 1),
        ];
        for (x_dims, cout, padding) in shapes {
            let p = ConvParams {
                padding,
                stride: 1,
                dilation: 1,
                groups: 1,
            };
            let g = ConvGeometry::new(&x_dims, &[cout, x_dims[1], 3, 3], p).unwrap();
            let grad = values(g.n * g.image_out(), 7);
            let w = values(g.cout * g.cin * 9, 8);
            let expected = direct_input_grad(&g, &grad, &w);
            let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let what = format!("{x_dims:?} -> {cout}, padding {padding}, {threads} threads");
                    let ours = input_grad(&g, &grad, &w).unwrap_or_else(|| panic!("{what}: not taken"));
                    for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
                        assert!((a - b).abs() <= 1e-13 * scale, "{what}: f64 dx {i}: {a} vs {b}");
                    }
                    let (grad32, w32): (Vec<f32>, Vec<f32>) = (
                        grad.iter().map(|&v| v as f32).collect(),
                        w.iter().map(|&v| v as f32).collect(),
                    );
                    let ours = input_grad(&g, &grad32, &w32).unwrap();
                    for (i, (&a, b)) in ours.iter().zip(&expected).enumerate() {
                        assert!(
                            (a as f64 - b).abs() <= 2e-6 * scale,
                            "{what}: f32 dx {i}: {a} vs {b}"
                        );
                    }
                });
            }
        }
        let q = |padding, stride, groups| ConvParams {
            padding,
            stride,
            dilation: 1,
            groups,
        };
        let taken = |x: [usize; 4], w: [usize; 4], p: ConvParams| {
            let g = ConvGeometry::new(&x, &w, p).unwrap();
            let grad = vec![0f32; g.n * g.image_out()];
            input_grad(&g, &grad, &vec![0f32; w.iter().product()]).is_some()
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            assert!(taken([1, 64, 56, 56], [64, 64, 3, 3], q(1, 1, 1)));
            assert!(!taken([1, 64, 56, 56], [64, 64, 3, 3], q(1, 2, 1)));
            assert!(!taken([1, 64, 56, 56], [64, 32, 3, 3], q(1, 1, 2)));
            assert!(!taken([1, 64, 56, 56], [8, 64, 3, 3], q(1, 1, 1)));
            assert!(!taken([1, 8, 56, 56], [64, 8, 3, 3], q(1, 1, 1)));
            assert!(!taken([1, 64, 56, 56], [64, 64, 3, 3], q(3, 1, 1)));
            assert!(!taken([1, 64, 56, 56], [64, 64, 1, 1], q(0, 1, 1)));
        });
    }

    /// Only 3x3, stride-1, undilated, ungrouped convolutions with enough channels and tiles.
    #[test]
    fn applies_to_resnet_shapes_only() {
        let p = |padding, stride, dilation, groups| ConvParams {
            padding,
            stride,
            dilation,
            groups,
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            let yes = |x: [usize; 4], w: [usize; 4], q| applies(&ConvGeometry::new(&x, &w, q).unwrap());
            assert!(yes([1, 64, 56, 56], [64, 64, 3, 3], p(1, 1, 1, 1)));
            assert!(!yes([1, 64, 56, 56], [64, 64, 3, 3], p(1, 2, 1, 1)));
            assert!(!yes([1, 64, 56, 56], [64, 64, 3, 3], p(2, 1, 2, 1)));
            assert!(!yes([1, 64, 56, 56], [64, 32, 3, 3], p(1, 1, 1, 2)));
            assert!(!yes([1, 8, 56, 56], [64, 8, 3, 3], p(1, 1, 1, 1)));
            assert!(!yes([1, 64, 56, 56], [8, 64, 3, 3], p(1, 1, 1, 1)));
            assert!(!yes([1, 64, 56, 56], [64, 64, 1, 1], p(0, 1, 1, 1)));
            assert!(!yes([1, 512, 7, 7], [512, 512, 3, 3], p(1, 1, 1, 1)));
            assert!(yes([16, 256, 14, 14], [256, 256, 3, 3], p(1, 1, 1, 1)));
            assert!(!yes([16, 512, 7, 7], [512, 512, 3, 3], p(1, 1, 1, 1)));
            // A 1x1 map: 8 of the 9 taps read only padding.
            assert!(!yes([128, 64, 1, 1], [64, 64, 3, 3], p(1, 1, 1, 1)));
        });
    }
}
