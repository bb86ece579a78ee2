//! The tiles and the forward / input-gradient / weight-gradient drivers.

use super::*;

// ---------------------------------------------------------------------------------------------
// The three passes over a run of images, tile by tile.

/// A block of work: several whole images (small ones) or a band of output rows of one image
/// (large ones), sized so that its column matrices take about [`BAND_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tile {
    /// Images, relative to the run.
    pub(crate) images: Range<usize>,
    /// Output rows.
    pub(crate) rows: Range<usize>,
}

impl Tile {
    /// Columns of the tile's matrices.
    pub(crate) fn cols(&self, g: &ConvGeometry) -> usize {
        self.images.len() * self.rows.len() * g.ow
    }

    /// One whole image.
    pub(crate) fn single_image(&self, g: &ConvGeometry) -> bool {
        self.images.len() == 1 && self.rows == (0..g.oh)
    }
}

impl ConvGeometry {
    /// The tiles of a run of `images` images: blocks of whole images when an image's column
    /// matrices take at most half of [`BAND_BYTES`] (so that the gemms see the columns of
    /// several small images and go through the weight once for all of them), bands of output
    /// rows of one image otherwise (at least one row per band; whole images for pointwise
    /// convolutions, whose columns are the input planes).
    pub(crate) fn tiles<T>(&self, images: usize) -> Vec<Tile> {
        let row_bytes = (self.groups * self.k() * self.ow * std::mem::size_of::<T>()).max(1);
        let image_bytes = row_bytes * self.oh;
        // A pointwise convolution with enough positions per image multiplies each image's
        // planes in place: blocking images would copy them into columns and back.
        let wide_pointwise = self.pointwise() && self.plane_out() >= POINTWISE_WIDE;
        if image_bytes * 2 <= BAND_BYTES && !wide_pointwise {
            let per_tile = BAND_BYTES / image_bytes;
            (0..images)
                .step_by(per_tile)
                .map(|b| Tile {
                    images: b..(b + per_tile).min(images),
                    rows: 0..self.oh,
                })
                .collect()
        } else {
            // Pointwise convolutions of large images read their columns in place: no bands.
            let rows = if self.pointwise() {
                self.oh
            } else {
                (BAND_BYTES / row_bytes).clamp(1, self.oh)
            };
            (0..images)
                .flat_map(|b| {
                    (0..self.oh).step_by(rows).map(move |r| Tile {
                        images: b..b + 1,
                        rows: r..(r + rows).min(self.oh),
                    })
                })
                .collect()
        }
    }
}

/// Output positions per image from which a pointwise convolution's tiles are single images
/// (products read the input planes in place) rather than blocks of images.
pub(crate) const POINTWISE_WIDE: usize = 256;

/// Buffers reused from one tile to the next, and from one run to the next on the same thread
/// ([`crate::scratch`]; grown, not zero-filled again): the column matrices, the phase-split
/// planes, and the outputs (or output gradients) of a block of images as one matrix.
#[derive(Default)]
pub(crate) struct Scratch<T> {
    pub(crate) col: Vec<T>,
    pub(crate) split: Vec<T>,
    pub(crate) batched: Vec<T>,
}

impl<T: Float> Scratch<T> {
    /// The buffers this thread kept from its last run.
    pub(crate) fn take() -> Self {
        crate::scratch::take()
    }

    /// Keeps the buffers for this thread's next run, unless they are large.
    pub(crate) fn put_back(self) {
        let values = self.col.capacity() + self.split.capacity() + self.batched.capacity();
        crate::scratch::put_back(self, values * std::mem::size_of::<T>());
    }
}

/// The outputs `[images, Cout, oh * ow]` of a run of images from their inputs and the weight
/// rows `[Cout, K]`, each tile followed by the epilogue if any.
pub(crate) fn forward_run<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    out: &mut [T],
    inner: Inner,
    epilogue: Option<&Epilogue<T>>,
    keep: Option<(&Columns, usize)>,
) {
    let (og, k, p) = (g.og(), g.k(), g.plane_out());
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let layout = PlaneLayout::new(g);
    let mut scratch = Scratch::take();
    let Scratch { col, split, batched } = &mut scratch;
    let mut split_for = None;
    let tables = TapTables::new(g);
    for tile in g.tiles::<T>(out.len() / image_out) {
        let x = &x[tile.images.start * image_in..tile.images.end * image_in];
        let out = &mut out[tile.images.start * image_out..tile.images.end * image_out];
        if g.pointwise() && tile.single_image(g) {
            // The input planes are the columns.
            for group in 0..g.groups {
                let (dst, lhs, rhs) = (
                    &mut out[group * og * p..],
                    &w[group * og * k..],
                    &x[group * k * p..],
                );
                matmul(
                    (og, p, k),
                    dst,
                    (p, 1),
                    false,
                    lhs,
                    (k, 1),
                    rhs,
                    (p, 1),
                    inner.gemm,
                );
            }
            if let Some(e) = epilogue {
                e.apply(g, out, &tile.rows);
            }
            continue;
        }
        let n = tile.cols(g);
        fill_columns(
            g,
            (&layout, tables.as_ref()),
            x,
            &tile,
            (split, &mut split_for),
            col,
            inner.rows,
        );
        let single = tile.images.len() == 1;
        if !single {
            crate::scratch::grown(batched, g.cout * n);
        }
        for group in 0..g.groups {
            // out_g [og, n] = W_g [og, K] x col_g [K, n]: straight into the output for one
            // image, into the block's matrix for several.
            let (dst, dst_rs) = if single {
                (&mut out[group * og * p + tile.rows.start * g.ow..], p)
            } else {
                (&mut batched[group * og * n..], n)
            };
            let (lhs, rhs) = (&w[group * og * k..], &col[group * k * n..]);
            matmul(
                (og, n, k),
                dst,
                (dst_rs, 1),
                false,
                lhs,
                (k, 1),
                rhs,
                (n, 1),
                inner.gemm,
            );
        }
        if !single {
            scatter_images(batched, g.cout, p, out);
        }
        if let Some(e) = epilogue {
            e.apply(g, out, &tile.rows);
        }
        if let Some((columns, first)) = keep {
            col.truncate(g.groups * k * n);
            columns.keep(first, &tile, std::mem::take(col));
        }
    }
    scratch.put_back();
}

/// The column matrices `[groups * K, tile.cols()]` of `tile` as `col` (resized): through the
/// tap tables for whole images of small maps ([`TapTables`]), else row by row from the
/// (phase-split, kept in `split` for the next bands of the same images) input planes.
fn fill_columns<T: Float>(
    g: &ConvGeometry,
    (layout, tables): (&PlaneLayout, Option<&TapTables>),
    x: &[T],
    tile: &Tile,
    (split, split_for): (&mut Vec<T>, &mut Option<Range<usize>>),
    col: &mut Vec<T>,
    parallel: bool,
) {
    match tables.filter(|_| tile.rows == (0..g.oh)) {
        Some(tables) => im2col_tables(g, tables, x, tile, col, parallel),
        None => {
            let planes = tile_planes(layout, x, tile, split, split_for, parallel);
            let col = crate::scratch::grown(col, g.groups * g.k() * tile.cols(g));
            im2col(g, layout, planes, tile, col, parallel);
        }
    }
}

/// Output positions per band below which [`forward_bands`] is not used: narrower gemms lose
/// more than the gemm's own threading does.
pub(crate) const BAND_MIN_POSITIONS: usize = 256;

/// The phase-split input planes of [`forward_bands`], kept per thread apart from the bands'
/// own [`Scratch`] (a band may run on the calling thread).
#[derive(Default)]
struct BandPlanes<T>(Vec<T>);

/// The forward pass of one image (fewer images than threads) split into bands of output rows
/// computed in parallel, each with its own im2col and a serial gemm written straight into its
/// rows of the output: the gemm crate's own threading barely helps thin matrices (the 7x7
/// stem of a batch-1 ResNet, `[64, 147] x [147, 12544]`, ran no faster on 2 threads than on
/// 1). Each output is the same sum as in [`forward_run`], so the results are the same bits.
pub(crate) fn forward_bands<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    out: &mut [T],
    threads: usize,
    epilogue: Option<&Epilogue<T>>,
) {
    let (og, k, p) = (g.og(), g.k(), g.plane_out());
    let layout = PlaneLayout::new(g);
    let mut split = crate::scratch::take::<BandPlanes<T>>();
    let planes = split_input(&layout, x, &mut split.0, true);
    let row_bytes = (g.groups * k * g.ow * std::mem::size_of::<T>()).max(1);
    let rows = g.oh.div_ceil(threads).min((BAND_BYTES / row_bytes).max(1));
    let bands: Vec<Range<usize>> = (0..g.oh).step_by(rows).map(|r| r..(r + rows).min(g.oh)).collect();
    assert!(out.len() >= g.image_out(), "forward_bands: output out of bounds");
    let out_ptr = SyncPtr(out.as_mut_ptr());
    bands.par_iter().for_each(|rows| {
        let tile = Tile {
            images: 0..1,
            rows: rows.clone(),
        };
        let n = tile.cols(g);
        let mut scratch = Scratch::<T>::take();
        // The columns `[groups * K, n]` and their row stride: the input planes themselves
        // (from the band's first position) for a pointwise convolution.
        let (cols, cols_rs, start): (&[T], usize, usize) = if g.pointwise() {
            (x, p, rows.start * g.ow)
        } else {
            let col = crate::scratch::grown(&mut scratch.col, g.groups * k * n);
            im2col(g, &layout, planes, &tile, col, false);
            (col, n, 0)
        };
        for group in 0..g.groups {
            // SAFETY: the band's rows of the group's output planes, `og x n` values with row
            // stride `p` from `(group * og, rows.start)`, lie inside `out` (one whole image,
            // checked above); the bands' rows are disjoint, so no other band reads or writes
            // them, and `out` is borrowed mutably for the whole call.
            unsafe {
                matmul_to(
                    (og, n, k),
                    SyncPtr(out_ptr.get().add(group * og * p + rows.start * g.ow)),
                    (p, 1),
                    false,
                    &w[group * og * k..],
                    (k, 1),
                    &cols[group * k * cols_rs + start..],
                    (cols_rs, 1),
                    Parallelism::None,
                )
            };
        }
        if let Some(e) = epilogue {
            for c in 0..g.cout {
                // SAFETY: the band's rows of output plane `c`, inside `out` and written by the
                // products above; no other band touches them (as above).
                let values = unsafe {
                    std::slice::from_raw_parts_mut(out_ptr.get().add(c * p + rows.start * g.ow), n)
                };
                e.map(c, values);
            }
        }
        scratch.put_back();
    });
    let bytes = split.0.capacity() * std::mem::size_of::<T>();
    crate::scratch::put_back(split, bytes);
}

/// The input gradients `[images, Cin, H * W]` (zero on entry) of a run of images from their
/// output gradients.
pub(crate) fn input_grad_run<T: Float>(g: &ConvGeometry, grad: &[T], w: &[T], dx: &mut [T], inner: Inner) {
    let (og, k, p) = (g.og(), g.k(), g.plane_out());
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let layout = PlaneLayout::new(g);
    let mut scratch = Scratch::take();
    let Scratch { col, split, batched } = &mut scratch;
    let tables = TapTables::new(g);
    for tile in g.tiles::<T>(dx.len() / image_in) {
        let images = tile.images.len();
        let grad = &grad[tile.images.start * image_out..tile.images.end * image_out];
        let dx = &mut dx[tile.images.start * image_in..tile.images.end * image_in];
        if g.pointwise() && tile.single_image(g) {
            // The columns are the input planes: the product lands in the input gradient.
            for group in 0..g.groups {
                let (dst, lhs, rhs) = (
                    &mut dx[group * k * p..],
                    &w[group * og * k..],
                    &grad[group * og * p..],
                );
                matmul(
                    (k, p, og),
                    dst,
                    (p, 1),
                    false,
                    lhs,
                    (1, k),
                    rhs,
                    (p, 1),
                    inner.gemm,
                );
            }
            continue;
        }
        let n = tile.cols(g);
        // The output gradient as `[Cout, n]` rows `grad_rs` apart, from `grad_start`.
        let (grad, grad_rs, grad_start): (&[T], _, _) = if images == 1 {
            (grad, p, tile.rows.start * g.ow)
        } else {
            crate::scratch::grown(batched, g.cout * n);
            gather_images(grad, g.cout, p, batched);
            (batched, n, 0)
        };
        let col = crate::scratch::grown(col, g.groups * k * n);
        for group in 0..g.groups {
            // col_g [K, n] = W_g^T [K, og] x grad_g [og, n].
            let (lhs, rhs) = (&w[group * og * k..], &grad[group * og * grad_rs + grad_start..]);
            matmul(
                (k, n, og),
                &mut col[group * k * n..],
                (n, 1),
                false,
                lhs,
                (1, k),
                rhs,
                (grad_rs, 1),
                inner.gemm,
            );
        }
        if let Some(tables) = tables.as_ref().filter(|_| tile.rows == (0..g.oh)) {
            col2im_tables(g, tables, col, &tile, dx, inner.rows);
            continue;
        }
        if layout.phases == 1 {
            col2im(g, &layout, col, &tile, dx, inner.rows);
            continue;
        }
        // Split planes accumulate over the bands of an image, then go back to the input
        // gradient once its last band is in.
        if tile.rows.start == 0 {
            split.clear();
            split.resize(images * g.cin * layout.plane_len(), T::zero());
        }
        col2im(g, &layout, col, &tile, split, inner.rows);
        if tile.rows.end == g.oh {
            let (plane_len, plane_in) = (layout.plane_len(), g.plane_in());
            if inner.rows {
                split
                    .par_chunks(plane_len)
                    .zip(dx.par_chunks_mut(plane_in))
                    .for_each(|(src, dst)| layout.merge(src, dst));
            } else {
                split
                    .chunks(plane_len)
                    .zip(dx.chunks_mut(plane_in))
                    .for_each(|(src, dst)| layout.merge(src, dst));
            }
        }
    }
    scratch.put_back();
}

/// The weight gradient `[Cout, K]` of a run of images.
pub(crate) fn weight_grad_run<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    grad: &[T],
    inner: Inner,
    kept: Option<(&Columns, usize)>,
) -> Vec<T> {
    let (og, k, p) = (g.og(), g.k(), g.plane_out());
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let layout = PlaneLayout::new(g);
    let mut scratch = Scratch::take();
    let Scratch { col, split, batched } = &mut scratch;
    let mut dw = vec![T::zero(); g.cout * k];
    let mut split_for = None;
    let tables = TapTables::new(g);
    for (i, tile) in g.tiles::<T>(x.len() / image_in).into_iter().enumerate() {
        let images = tile.images.len();
        let x = &x[tile.images.start * image_in..tile.images.end * image_in];
        let grad = &grad[tile.images.start * image_out..tile.images.end * image_out];
        // The columns `[groups * K, n]`: the input planes themselves for a pointwise
        // convolution of one whole image.
        let n = tile.cols(g);
        let taken = kept.and_then(|(columns, first)| columns.take::<T>(first, &tile, g.groups * k * n));
        let (cols, n): (&[T], usize) = if g.pointwise() && tile.single_image(g) {
            (x, p)
        } else if let Some(taken) = &taken {
            (taken, n)
        } else {
            fill_columns(
                g,
                (&layout, tables.as_ref()),
                x,
                &tile,
                (split, &mut split_for),
                col,
                inner.rows,
            );
            (col, n)
        };
        let (grad, grad_rs, grad_start): (&[T], _, _) = if images == 1 {
            (grad, p, tile.rows.start * g.ow)
        } else {
            crate::scratch::grown(batched, g.cout * n);
            gather_images(grad, g.cout, p, batched);
            (batched, n, 0)
        };
        for group in 0..g.groups {
            // dW_g [og, K] (+)= grad_g [og, n] x col_g^T [n, K].
            let (lhs, rhs) = (&grad[group * og * grad_rs + grad_start..], &cols[group * k * n..]);
            matmul(
                (og, k, n),
                &mut dw[group * og * k..],
                (k, 1),
                i > 0,
                lhs,
                (grad_rs, 1),
                rhs,
                (1, n),
                inner.gemm,
            );
        }
    }
    scratch.put_back();
    dw
}

// ---------------------------------------------------------------------------------------------
// The three passes over the batch.

/// Runs `f(first image of the run, run of inputs, run of outputs)` over runs of images as the
/// plan says.
pub(crate) fn over_images<T: Float>(
    plan: Plan,
    input: &[T],
    input_len: usize,
    out: &mut [T],
    out_len: usize,
    f: impl Fn(usize, &[T], &mut [T], Inner) + Sync,
) {
    let inner = plan.inner();
    match plan {
        Plan::Images { per_thread } => out
            .par_chunks_mut(per_thread * out_len)
            .zip(input.par_chunks(per_thread * input_len))
            .enumerate()
            .for_each(|(run, (o, i))| f(run * per_thread, i, o, inner)),
        Plan::Serial | Plan::Inside { .. } => f(0, input, out, inner),
    }
}

/// The weight `[Cout, Cin/g * kh * kw]` restricted to the live taps, `[Cout, K]`
/// ([`ConvGeometry::live_taps`]): the weight itself when every tap is live.
pub(crate) fn live_weight<'a, T: Float>(g: &ConvGeometry, weight: &'a [T]) -> Cow<'a, [T]> {
    if g.all_live() {
        return Cow::Borrowed(weight);
    }
    let (live, taps) = (g.live_taps(), g.kh * g.kw);
    // One exact-size extend per row: collecting a `flat_map` (no size hint) grew the vector by
    // doubling (3.8% of a ResNet-18 training step at 32x32 in `perf`: its 1x1 maps keep 1 tap of 9).
    let mut restricted = Vec::with_capacity(weight.len() / taps.max(1) * live.len());
    for row in weight.chunks_exact(taps) {
        restricted.extend(live.iter().map(|&t| row[t]));
    }
    Cow::Owned(restricted)
}

/// The inverse of [`live_weight`] for a weight gradient: zeros at the dead taps.
pub(crate) fn full_weight_grad<T: Float>(g: &ConvGeometry, live_grad: Vec<T>) -> Vec<T> {
    if g.all_live() {
        return live_grad;
    }
    let (live, taps) = (g.live_taps(), g.kh * g.kw);
    let mut full = vec![T::zero(); g.cout * g.cg() * taps];
    if live.is_empty() {
        // Every tap reads padding only (a 1x1 input, 1x1 kernel, padding 1, stride 2).
        return full;
    }
    for (dst, src) in full
        .chunks_exact_mut(taps)
        .zip(live_grad.chunks_exact(live.len()))
    {
        for (&t, &v) in live.iter().zip(src) {
            dst[t] = v;
        }
    }
    full
}

/// The outputs `[N, Cout, oh, ow]` of the convolution `g` of `x` `[N, Cin, H, W]` by `weight`
/// `[Cout, Cin/groups, kh, kw]` (both contiguous, of `g`'s sizes: [`ConvGeometry::check_lengths`]),
/// each tile followed by `epilogue`; `keep`: where a training pass keeps its column matrices
/// for [`weight_grad`]; `inference`: no gradient will be asked of this pass (Winograd F(4x4)
/// may run, see [`super::winograd`]).
pub(crate) fn forward_impl<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    epilogue: Option<&Epilogue<T>>,
    keep: Option<&Columns>,
    inference: bool,
) -> Vec<T> {
    if super::winograd::choose(g, inference).is_some() {
        return super::winograd::forward(g, x, weight, epilogue, inference);
    }
    let weight = &*live_weight(g, weight);
    let mut out = vec![T::zero(); g.n * g.image_out()];
    let bound = epilogue.map(|e| e.bound_to(&out));
    let epilogue = bound.as_deref();
    if let Plan::Inside { threads } = g.plan() {
        if g.plane_out() >= BAND_MIN_POSITIONS * threads {
            let images = x
                .chunks_exact(g.image_in())
                .zip(out.chunks_exact_mut(g.image_out()));
            for (x, out) in images {
                forward_bands(g, x, weight, out, threads, epilogue);
            }
            return out;
        }
    }
    over_images(
        g.plan(),
        x,
        g.image_in(),
        &mut out,
        g.image_out(),
        |first, x, out, inner| forward_run(g, x, weight, out, inner, epilogue, keep.map(|k| (k, first))),
    );
    out
}

/// Output positions per image from which a small map's input gradient is the adjoint's
/// forward pass (see [`input_grad_impl`]).
const ADJOINT_MIN_POSITIONS: usize = 16;

/// The input gradient `[N, Cin, H, W]` from the output gradient and the weight.
pub(crate) fn input_grad_impl<T: Float>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Vec<T> {
    if let Some(dx) = super::winograd::input_grad(g, grad, weight) {
        return dx;
    }
    // Small maps (the tap tables' im2col, whole images) with at least 4x4 positions: the
    // forward pass of the output gradient by the transposed, flipped weight (im2col of the
    // output gradient, one product, no col2im). ResNet-18's 8x8 and 4x4 convolutions at batch
    // 64 took 0.85-0.92 of col2im's time; on 2x2 and 1x1 maps, where the flipped copy of the
    // weight is as large as the work, 1.0-2.0 of it (alternated, per layer).
    let adjoint = super::winograd::adjoint(g)
        .filter(|a| g.plane_out() >= ADJOINT_MIN_POSITIONS && g.all_live() && TapTables::fit(a));
    if let Some(adjoint) = adjoint {
        return forward_impl(
            &adjoint,
            grad,
            &super::winograd::flip(g, weight),
            None,
            None,
            false,
        );
    }
    input_grad_columns(g, grad, weight)
}

/// [`input_grad_impl`] by im2col's adjoint: `W_g^T x grad_g`, then col2im.
pub(crate) fn input_grad_columns<T: Float>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Vec<T> {
    let weight = &*live_weight(g, weight);
    let mut dx = vec![T::zero(); g.n * g.image_in()];
    over_images(
        g.plan(),
        grad,
        g.image_out(),
        &mut dx,
        g.image_in(),
        |_, grad, dx, inner| input_grad_run(g, grad, weight, dx, inner),
    );
    dx
}

/// The weight gradient `[Cout, Cin/groups, kh, kw]` from the input and the output gradient
/// (from the forward pass's kept columns where `kept` has them: the same bits).
pub(crate) fn weight_grad_impl<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    grad: &[T],
    kept: Option<&Columns>,
) -> Vec<T> {
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let plan = g.plan();
    let inner = plan.inner();
    let dw = match plan {
        Plan::Images { per_thread } => {
            // One partial sum per run of images, added in a fixed order.
            let partials: Vec<Vec<T>> = x
                .par_chunks(per_thread * image_in)
                .zip(grad.par_chunks(per_thread * image_out))
                .enumerate()
                .map(|(run, (x, grad))| {
                    weight_grad_run(g, x, grad, inner, kept.map(|c| (c, run * per_thread)))
                })
                .collect();
            let mut parts = partials.into_iter();
            let mut dw = parts.next().unwrap_or_else(|| vec![T::zero(); g.cout * g.k()]);
            for part in parts {
                for (d, v) in dw.iter_mut().zip(part) {
                    *d += v;
                }
            }
            dw
        }
        Plan::Serial | Plan::Inside { .. } => weight_grad_run(g, x, grad, inner, kept.map(|c| (c, 0))),
    };
    full_weight_grad(g, dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (image, output row) pair is in exactly one tile, bands or blocks alike.
    #[test]
    fn tiles_cover_every_output_row_once() {
        let p = |padding, stride| ConvParams {
            padding,
            stride,
            dilation: 1,
            groups: 1,
        };
        let shapes = [
            ([7, 64, 56, 56], [64, 64, 3, 3], p(1, 1)),
            ([5, 256, 40, 41], [8, 256, 1, 1], p(0, 1)),
            ([9, 512, 2, 2], [512, 512, 3, 3], p(1, 1)),
            ([3, 3, 224, 224], [64, 3, 7, 7], p(3, 2)),
            ([1, 1, 1, 1], [1, 1, 1, 1], p(0, 1)),
        ];
        for (x, w, params) in shapes {
            let g = ConvGeometry::new(&x, &w, params).unwrap();
            for images in [1, 2, 5, g.n] {
                let mut seen = vec![0; images * g.oh];
                for tile in g.tiles::<f32>(images) {
                    assert!(tile.images.len() == 1 || tile.rows == (0..g.oh), "{tile:?}");
                    for b in tile.images.clone() {
                        for r in tile.rows.clone() {
                            seen[b * g.oh + r] += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "{x:?} {w:?} {images}");
            }
        }
    }

    #[test]
    fn serial_plans_stay_serial_inside() {
        let inner = Plan::Serial.inner();
        assert!(!inner.rows);
        assert!(matches!(inner.gemm, gemm::Parallelism::None));
        assert!(Plan::Inside { threads: 2 }.inner().rows);
    }
}
