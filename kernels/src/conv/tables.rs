//! im2col and col2im of small maps through tap tables.
//!
//! [`im2col`] and [`col2im`] move one output row of one kernel tap at a time: a contiguous
//! copy (or add) with the padding filled around it. On the small maps of a batch of small
//! images (ResNet's stages on 32x32 images are 8x8 to 1x1) a row is a few values, and the
//! calls around them (`memcpy`, `memset`, the spans) cost more than the values: on ResNet-18's
//! 64 -> 64 3x3 convolution of 8x8 maps at batch 64, im2col and its copies took 40% of the
//! forward pass. For maps at most [`TABLE_MAX_WIDTH`] wide, [`TapTables`] instead lists, for
//! every live tap, the input position each output position of an image reads; im2col then
//! gathers a whole plane per tap and col2im scatters it back, one value at a time, from a copy
//! of the plane shifted by one whose first element stands for the padding.
//!
//! The columns are the same values in the same places as [`im2col`]'s, and col2im adds each
//! input position's values in the same order (tap by tap, in the live taps' order): the
//! results are the same bits (tested against the row-by-row functions).

use super::*;
use std::mem::MaybeUninit;

/// Output widths up to this go through [`TapTables`] (whole-image tiles only).
pub(crate) const TABLE_MAX_WIDTH: usize = 16;

/// Table entries (live taps times output positions) above which no tables are built.
const MAX_ENTRIES: usize = 1 << 16;

/// For each live tap `i`, the input position `iy * W + ix + 1` that output position `j` of
/// an image reads, at `index[i * positions + j]`; `0` where it reads the padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TapTables {
    index: Vec<u32>,
    positions: usize,
    /// The input plane's size: no entry is above it.
    plane_in: usize,
}

impl TapTables {
    /// The tables of `g`, or `None` when its maps are too wide (or too large) for them.
    pub(crate) fn new(g: &ConvGeometry) -> Option<Self> {
        if !Self::fit(g) {
            return None;
        }
        let (live, positions) = (g.live_taps(), g.plane_out());
        let entries = live.len() * positions;
        let (ph, pw) = g.padding;
        let mut index = Vec::with_capacity(entries);
        for &tap in &live {
            let (ky, kx) = (tap / g.kw, tap % g.kw);
            for oy in 0..g.oh {
                let iy = (oy * g.stride + ky * g.dilation)
                    .checked_sub(ph)
                    .filter(|&iy| iy < g.h);
                for ox in 0..g.ow {
                    let ix = (ox * g.stride + kx * g.dilation)
                        .checked_sub(pw)
                        .filter(|&ix| ix < g.w);
                    let at = match (iy, ix) {
                        // Below `plane_in < u32::MAX` (checked above).
                        (Some(iy), Some(ix)) => (iy * g.w + ix + 1) as u32,
                        _ => 0,
                    };
                    index.push(at);
                }
            }
        }
        Some(Self {
            index,
            positions,
            plane_in: g.plane_in(),
        })
    }

    /// Whether `g` has tables (what [`TapTables::new`] checks before building them).
    pub(crate) fn fit(g: &ConvGeometry) -> bool {
        let entries = g.live.checked_mul(g.plane_out());
        g.ow <= TABLE_MAX_WIDTH
            && entries.is_some_and(|e| e <= MAX_ENTRIES)
            && g.plane_in() < u32::MAX as usize
    }

    fn taps(&self) -> usize {
        self.index.len() / self.positions.max(1)
    }

    fn tap(&self, i: usize) -> &[u32] {
        &self.index[i * self.positions..][..self.positions]
    }
}

/// `ext = [0, plane...]`: the plane shifted by one behind a zero for the padding.
fn shifted<T: Float>(ext: &mut Vec<T>, plane: &[T]) {
    ext.clear();
    ext.push(T::zero());
    ext.extend_from_slice(plane);
}

/// [`im2col`] of a tile of whole images through `tables`: the column matrices `[groups * K,
/// tile.cols()]` (rows `(channel, live tap)`, columns `(image, oy, ox)`) from the tile's input
/// planes `x` (`[images, Cin, H * W]`, not phase-split), written into `col` (its contents
/// replaced, its length set) without zero-filling it first: the forward pass of a training
/// step hands each tile's columns over to the weight gradient ([`Columns`]) and starts the
/// next tile from an empty vector, and filling 2 MiB with zeros before every tile's gather
/// was a tenth of the forward pass of ResNet-18's 8x8 convolutions at batch 64.
pub(crate) fn im2col_tables<T: Float>(
    g: &ConvGeometry,
    tables: &TapTables,
    x: &[T],
    tile: &Tile,
    col: &mut Vec<T>,
    parallel: bool,
) {
    let (taps, p, plane_in, len) = (tables.taps(), tables.positions, g.plane_in(), tile.cols(g));
    let total = g.cin * taps * len;
    col.clear();
    col.reserve(total);
    assert_eq!(
        tables.plane_in, plane_in,
        "im2col_tables: tables of another geometry"
    );
    let fill = |ext: &mut Vec<T>, (channel, rows): (usize, &mut [MaybeUninit<T>])| {
        for image in 0..tile.images.len() {
            shifted(ext, &x[(image * g.cin + channel) * plane_in..][..plane_in]);
            for (i, row) in rows.chunks_exact_mut(len).enumerate() {
                for (d, &at) in row[image * p..][..p].iter_mut().zip(tables.tap(i)) {
                    // SAFETY: `ext` is `plane_in + 1` long (`shifted` of a `plane_in` slice)
                    // and no entry of the tables is above `plane_in` (`TapTables::new`: `iy <
                    // H`, `ix < W`; the tables are `g`'s, checked above). Unchecked, the gather
                    // vectorises: LeNet-5's second convolution (batch 256) ran its forward pass
                    // in 1.4-1.6 ms against 2.2 ms with the bounds check (alternated).
                    d.write(unsafe { *ext.get_unchecked(at as usize) });
                }
            }
        }
    };
    let spare = &mut col.spare_capacity_mut()[..total];
    let per_channel = (taps * len).max(1);
    if parallel {
        spare
            .par_chunks_mut(per_channel)
            .enumerate()
            .for_each_init(Vec::new, fill);
    } else {
        let mut ext = Vec::new();
        spare
            .chunks_mut(per_channel)
            .enumerate()
            .for_each(|rows| fill(&mut ext, rows));
    }
    // SAFETY: `reserve` made room for `total` values and every one of the first `total` was
    // written above: the `Cin` chunks of `taps * len` cover them, each chunk's `taps` rows of
    // `len = images * p` values are written image by image, `p` values each (the zip with a
    // tap's table, which has `p` entries). `T` is f32 or f64: no destructor, any bits valid.
    unsafe { col.set_len(total) };
}

/// [`col2im`] of a tile of whole images through `tables`: adds the column matrices `col`
/// into the input-gradient planes `planes` (`[images, Cin, H * W]`, not phase-split).
pub(crate) fn col2im_tables<T: Float>(
    g: &ConvGeometry,
    tables: &TapTables,
    col: &[T],
    tile: &Tile,
    planes: &mut [T],
    parallel: bool,
) {
    let (taps, p, len) = (tables.taps(), tables.positions, tile.cols(g));
    assert_eq!(
        tables.plane_in,
        g.plane_in(),
        "col2im_tables: tables of another geometry"
    );
    let add = |ext: &mut Vec<T>, (index, plane): (usize, &mut [T])| {
        let (image, channel) = (index / g.cin, index % g.cin);
        assert_eq!(plane.len(), tables.plane_in, "col2im_tables: a partial plane");
        shifted(ext, plane);
        for i in 0..taps {
            let row = &col[(channel * taps + i) * len + image * p..][..p];
            // The padding's values land in `ext[0]`, never read.
            for (&v, &at) in row.iter().zip(tables.tap(i)) {
                // SAFETY: `ext` is `plane_in + 1` long (`shifted` of a whole plane, checked
                // above) and no entry of the tables is above `plane_in` (as in `im2col_tables`).
                unsafe { *ext.get_unchecked_mut(at as usize) += v };
            }
        }
        plane.copy_from_slice(&ext[1..]);
    };
    let plane_in = g.plane_in().max(1);
    if parallel {
        planes
            .par_chunks_mut(plane_in)
            .enumerate()
            .for_each_init(Vec::new, add);
    } else {
        let mut ext = Vec::new();
        planes
            .chunks_mut(plane_in)
            .enumerate()
            .for_each(|plane| add(&mut ext, plane));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables give the row-by-row functions' columns and input gradients, bit for bit,
    /// over strides, paddings (some wider than the kernel reaches: dead taps), dilations,
    /// groups, rectangular kernels and 1x1 maps, serial and parallel.
    #[test]
    fn tables_match_the_row_by_row_functions() {
        let p = |padding, stride, dilation, groups| ConvParams {
            padding,
            stride,
            dilation,
            groups,
        };
        let shapes = [
            ([3, 4, 8, 8], [5, 4, 3, 3], p(1, 1, 1, 1)),
            ([2, 3, 7, 9], [4, 3, 3, 3], p(1, 2, 1, 1)),
            ([2, 2, 11, 10], [3, 2, 3, 3], p(0, 3, 1, 1)),
            ([3, 2, 9, 9], [2, 2, 3, 3], p(2, 1, 2, 1)),
            ([2, 4, 6, 7], [6, 2, 3, 2], p(1, 2, 1, 2)),
            ([3, 3, 11, 13], [4, 3, 7, 7], p(3, 2, 1, 1)),
            ([2, 4, 1, 1], [3, 4, 3, 3], p(1, 1, 1, 1)),
            ([2, 3, 2, 2], [4, 3, 3, 3], p(1, 2, 1, 1)),
            ([2, 3, 2, 2], [4, 3, 3, 3], p(1, 1, 1, 1)),
            ([3, 4, 5, 4], [5, 4, 1, 1], p(0, 2, 1, 1)),
            ([3, 2, 1, 1], [2, 2, 1, 1], p(1, 2, 1, 1)),
        ];
        for (x_dims, w_dims, params) in shapes {
            let g = ConvGeometry::new(&x_dims, &w_dims, params).unwrap();
            let tables = TapTables::new(&g).unwrap();
            let layout = PlaneLayout::new(&g);
            let tile = Tile {
                images: 0..g.n,
                rows: 0..g.oh,
            };
            let x: Vec<f32> = (0..g.n * g.image_in()).map(|i| (i as f32 * 0.37).sin()).collect();
            let cols = g.groups * g.k() * tile.cols(&g);
            let mut split = Vec::new();
            let planes = split_input(&layout, &x, &mut split, false);
            let mut rows = vec![f32::NAN; cols];
            im2col(&g, &layout, planes, &tile, &mut rows, false);
            let grad: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.61).cos()).collect();
            let mut by_rows = vec![0.0f32; g.n * g.image_in()];
            let mut split = vec![0.0f32; g.n * g.cin * layout.plane_len()];
            col2im(&g, &layout, &grad, &tile, &mut split, false);
            for (src, dst) in split
                .chunks(layout.plane_len())
                .zip(by_rows.chunks_mut(g.plane_in()))
            {
                layout.merge(src, dst);
            }
            for parallel in [false, true] {
                let mut by_tables = vec![f32::NAN; 3];
                im2col_tables(&g, &tables, &x, &tile, &mut by_tables, parallel);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&by_tables),
                    bits(&rows),
                    "im2col {x_dims:?} {w_dims:?} {params:?}"
                );
                let mut dx = vec![0.0f32; g.n * g.image_in()];
                col2im_tables(&g, &tables, &grad, &tile, &mut dx, parallel);
                assert_eq!(
                    bits(&dx),
                    bits(&by_rows),
                    "col2im {x_dims:?} {w_dims:?} {params:?}"
                );
            }
        }
    }

    #[test]
    fn wide_maps_have_no_tables() {
        let p = ConvParams {
            padding: 1,
            stride: 1,
            dilation: 1,
            groups: 1,
        };
        let g = ConvGeometry::new(&[1, 2, 17, 17], &[2, 2, 3, 3], p).unwrap();
        assert_eq!(TapTables::new(&g), None);
        let g = ConvGeometry::new(&[1, 2, 16, 16], &[2, 2, 3, 3], p).unwrap();
        assert!(TapTables::new(&g).is_some());
    }
}
