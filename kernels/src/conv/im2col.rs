//! im2col and col2im: the column matrices of a convolution and back, phase-split planes.

use super::*;

// ---------------------------------------------------------------------------------------------
// im2col / col2im.

/// The input planes of one image (or their gradients) as im2col / col2im read and write them.
///
/// With a stride `s > 1` the columns an output row reads are `s` apart. When the kernel has
/// at least `s * s` taps ([`ConvGeometry::phased`]), the planes are first split into `s` column
/// phases (phase `ph` holds the columns `ph, ph + s, ph + 2s, ...`, `ceil(W / s)` of them), so
/// that every kernel tap reads (or writes) contiguous runs again; the split is one pass over
/// the input, the taps are `kh * kw / s^2` passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlaneLayout {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) stride: usize,
    /// 1 (the planes as they are) or `stride` (split into column phases).
    pub(crate) phases: usize,
    /// Length of a stored row: `w`, or `ceil(w / stride)` when split.
    pub(crate) row_len: usize,
}

impl PlaneLayout {
    pub(crate) fn new(g: &ConvGeometry) -> Self {
        let phases = if g.phased() { g.stride } else { 1 };
        Self {
            h: g.h,
            w: g.w,
            stride: g.stride,
            phases,
            row_len: g.w.div_ceil(phases),
        }
    }

    /// Elements of one stored plane (all its phases).
    pub(crate) fn plane_len(&self) -> usize {
        self.phases * self.h * self.row_len
    }

    /// Where input column `ix` of row `iy` is stored in a plane, and the step between it and
    /// column `ix + stride`.
    #[inline(always)]
    pub(crate) fn locate(&self, iy: usize, ix: usize) -> (usize, usize) {
        if self.phases == 1 {
            (iy * self.w + ix, self.stride)
        } else {
            let (phase, j) = (ix % self.phases, ix / self.phases);
            ((phase * self.h + iy) * self.row_len + j, 1)
        }
    }

    /// Copies a plane `[H, W]` into `dst` (`plane_len` elements), split into its phases.
    pub(crate) fn split<T: Float>(&self, plane: &[T], dst: &mut [T]) {
        let (s, w) = (self.phases, self.w);
        for (phase, dst) in dst.chunks_mut(self.h * self.row_len).enumerate() {
            for (src, dst) in plane.chunks(w).zip(dst.chunks_mut(self.row_len)) {
                let src = src.get(phase..).unwrap_or(&[]);
                let n = src.len().div_ceil(s);
                for (d, &v) in dst[..n].iter_mut().zip(src.iter().step_by(s)) {
                    *d = v;
                }
                dst[n..].fill(T::zero());
            }
        }
    }

    /// Writes a split plane back as `[H, W]` (the inverse of [`PlaneLayout::split`]).
    pub(crate) fn merge<T: Float>(&self, src: &[T], plane: &mut [T]) {
        let (s, w) = (self.phases, self.w);
        for (phase, src) in src.chunks(self.h * self.row_len).enumerate() {
            for (src, dst) in src.chunks(self.row_len).zip(plane.chunks_mut(w)) {
                let dst = dst.get_mut(phase..).unwrap_or(&mut []);
                for (d, &v) in dst.iter_mut().step_by(s).zip(src) {
                    *d = v;
                }
            }
        }
    }
}

/// Fills `row` (`band.len() * ow` elements) with one input `plane` (stored as `layout` says)
/// seen through kernel tap `(ky, kx)` (whose output spans are `(g.rows(ky), g.cols(kx))`), for
/// the output rows of `band`: `row[(oy - band.start) * ow + ox] = x[oy * s + ky * d - p, ox *
/// s + kx * d - p]`, zero outside the input.
#[inline]
pub(crate) fn im2col_row<T: Float>(
    g: &ConvGeometry,
    layout: &PlaneLayout,
    plane: &[T],
    (rows, cols): (Span, Span),
    band: &Range<usize>,
    row: &mut [T],
) {
    let (s, ow) = (g.stride, g.ow);
    // The band's rows that read inside the input, relative to the band.
    let lo = rows.lo.clamp(band.start, band.end) - band.start;
    let hi = rows.hi.clamp(band.start, band.end).max(band.start + lo) - band.start;
    row[..lo * ow].fill(T::zero());
    row[hi * ow..].fill(T::zero());
    if cols.lo == cols.hi {
        row[lo * ow..hi * ow].fill(T::zero());
        return;
    }
    let first = cols.input(cols.lo, s);
    let len = cols.hi - cols.lo;
    for (i, dst) in row[lo * ow..hi * ow].chunks_exact_mut(ow).enumerate() {
        let (start, step) = layout.locate(rows.input(band.start + lo + i, s), first);
        dst[..cols.lo].fill(T::zero());
        dst[cols.hi..].fill(T::zero());
        let dst = &mut dst[cols.lo..cols.hi];
        if step == 1 {
            dst.copy_from_slice(&plane[start..start + len]);
        } else {
            let src = &plane[start..start + (len - 1) * step + 1];
            for (d, &v) in dst.iter_mut().zip(src.iter().step_by(step)) {
                *d = v;
            }
        }
    }
}

/// Adds one row of column gradients (kernel tap `(ky, kx)` with output spans `(rows, cols)`,
/// the output rows of `band`) into an input-gradient `plane` stored as `layout` says: the
/// adjoint of [`im2col_row`].
#[inline]
pub(crate) fn col2im_row<T: Float>(
    g: &ConvGeometry,
    layout: &PlaneLayout,
    row: &[T],
    (rows, cols): (Span, Span),
    band: &Range<usize>,
    plane: &mut [T],
) {
    if cols.lo == cols.hi {
        return;
    }
    let s = g.stride;
    let first = cols.input(cols.lo, s);
    let len = cols.hi - cols.lo;
    for oy in rows.lo.max(band.start)..rows.hi.min(band.end) {
        let (start, step) = layout.locate(rows.input(oy, s), first);
        let src = &row[(oy - band.start) * g.ow + cols.lo..][..len];
        if step == 1 {
            for (d, &v) in plane[start..start + len].iter_mut().zip(src) {
                *d += v;
            }
        } else {
            let dst = &mut plane[start..start + (len - 1) * step + 1];
            for (d, &v) in dst.iter_mut().step_by(step).zip(src) {
                *d += v;
            }
        }
    }
}

/// The input planes of the images of a tile as [`im2col`] reads them: `x` itself, or its
/// planes split into column phases in `split`.
pub(crate) fn split_input<'a, T: Float>(
    layout: &PlaneLayout,
    x: &'a [T],
    split: &'a mut Vec<T>,
    parallel: bool,
) -> &'a [T] {
    if layout.phases == 1 {
        return x;
    }
    let (plane_in, plane_len) = (layout.h * layout.w, layout.plane_len());
    split.resize(x.len() / plane_in * plane_len, T::zero());
    if parallel {
        x.par_chunks(plane_in)
            .zip(split.par_chunks_mut(plane_len))
            .for_each(|(src, dst)| layout.split(src, dst));
    } else {
        x.chunks(plane_in)
            .zip(split.chunks_mut(plane_len))
            .for_each(|(src, dst)| layout.split(src, dst));
    }
    split
}

/// [`split_input`] for the tiles of a run, one after the other: the split planes of the
/// tile's images are kept in `split` from the tile that split them (`split_for`) for the
/// next bands of the same image, instead of split again for every band.
pub(crate) fn tile_planes<'a, T: Float>(
    layout: &PlaneLayout,
    x: &'a [T],
    tile: &Tile,
    split: &'a mut Vec<T>,
    split_for: &mut Option<Range<usize>>,
    parallel: bool,
) -> &'a [T] {
    if layout.phases == 1 {
        return x;
    }
    if split_for.as_ref() != Some(&tile.images) {
        split_input(layout, x, split, parallel);
        *split_for = Some(tile.images.clone());
    }
    split
}

/// The column matrices of a tile, `[groups * K, tile.cols()]`, rows ordered `(group, ky, kx,
/// c)`, columns `(image, oy, ox)`, from the input `planes` of the tile's images (see
/// [`split_input`]).
pub(crate) fn im2col<T: Float>(
    g: &ConvGeometry,
    layout: &PlaneLayout,
    planes: &[T],
    tile: &Tile,
    col: &mut [T],
    parallel: bool,
) {
    let (cg, live, plane_len) = (g.cg(), g.live_taps(), layout.plane_len());
    let taps = live.len();
    let seg = tile.rows.len() * g.ow;
    let (row_spans, col_spans) = g.spans();
    let fill = |r: usize, row: &mut [T]| {
        let (group, rest) = (r / (taps * cg), r % (taps * cg));
        let (c, tap) = (rest / taps, live[rest % taps]);
        let spans = (row_spans[tap / g.kw], col_spans[tap % g.kw]);
        for (image, row) in row.chunks_exact_mut(seg).enumerate() {
            let plane = &planes[(image * g.cin + group * cg + c) * plane_len..][..plane_len];
            im2col_row(g, layout, plane, spans, &tile.rows, row);
        }
    };
    let len = tile.cols(g);
    if parallel {
        col.par_chunks_mut(len)
            .enumerate()
            .for_each(|(r, row)| fill(r, row));
    } else {
        col.chunks_mut(len).enumerate().for_each(|(r, row)| fill(r, row));
    }
}

/// Adds the column matrices of a tile back into the input-gradient `planes` of its images
/// (stored as `layout` says): the adjoint of [`im2col`].
pub(crate) fn col2im<T: Float>(
    g: &ConvGeometry,
    layout: &PlaneLayout,
    col: &[T],
    tile: &Tile,
    planes: &mut [T],
    parallel: bool,
) {
    let (cg, live, len) = (g.cg(), g.live_taps(), tile.cols(g));
    let seg = tile.rows.len() * g.ow;
    let (row_spans, col_spans) = g.spans();
    let add = |index: usize, plane: &mut [T]| {
        let (image, channel) = (index / g.cin, index % g.cin);
        let (group, c) = (channel / cg, channel % cg);
        for (i, &tap) in live.iter().enumerate() {
            let spans = (row_spans[tap / g.kw], col_spans[tap % g.kw]);
            let r = (group * cg + c) * live.len() + i;
            let row = &col[r * len + image * seg..][..seg];
            col2im_row(g, layout, row, spans, &tile.rows, plane);
        }
    };
    let plane_len = layout.plane_len();
    if parallel {
        planes
            .par_chunks_mut(plane_len)
            .enumerate()
            .for_each(|(i, plane)| add(i, plane));
    } else {
        planes
            .chunks_mut(plane_len)
            .enumerate()
            .for_each(|(i, plane)| add(i, plane));
    }
}

/// Copies the `[images, C, P]` planes of a block of images into `batched`, one `[C, images
/// * P]` matrix whose columns are `(image, position)`.
pub(crate) fn gather_images<T: Float>(per_image: &[T], channels: usize, p: usize, batched: &mut [T]) {
    let images = per_image.len() / (channels * p);
    for (image, planes) in per_image.chunks_exact(channels * p).enumerate() {
        for (c, plane) in planes.chunks_exact(p).enumerate() {
            batched[(c * images + image) * p..][..p].copy_from_slice(plane);
        }
    }
}

/// The inverse of [`gather_images`].
pub(crate) fn scatter_images<T: Float>(batched: &[T], channels: usize, p: usize, per_image: &mut [T]) {
    let images = per_image.len() / (channels * p);
    for (image, planes) in per_image.chunks_exact_mut(channels * p).enumerate() {
        for (c, plane) in planes.chunks_exact_mut(p).enumerate() {
            plane.copy_from_slice(&batched[(c * images + image) * p..][..p]);
        }
    }
}
