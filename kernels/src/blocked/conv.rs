//! A direct convolution on the blocked layout, as MLAS's NCHWc kernels
//! (`SconvKernelAvx512F.S`): no im2col, no packing; weights reordered once
//! ([`BlockedConv::new`]) into groups of up to [`GROUP`] output blocks,
//! `[group][cin_blocks][kh][kw][B_in][blocks in the group][B_out]`.
//!
//! The register tile is one group's output blocks x [`PIXELS`] output positions (AVX-512: 4 x
//! 16 channels x 6 positions, 24 accumulators; AVX2: 4 x 8 x 3): per input channel of a tap,
//! one load per output block and one broadcast per position feed `blocks x positions` fused
//! multiply-adds. The positions of a tile run along the image's rows and wrap to the next row,
//! so that small maps (7x7) fill the tile too.
//!
//! Weights stay in cache by chunks of input blocks (about [`CHUNK_BYTES`] of a group's
//! weights): a task runs every tile of its positions through one chunk, keeping the partial
//! sums in the output, before the next chunk; bias (folded batch norm), residual add and ReLU
//! are applied by the last chunk before its store. Work is split once per layer into tasks
//! of (group, run of positions over the batch's images), spread over the rayon pool in one
//! parallel region. While a chunk runs, its tiles fetch the next chunk's weights into L2, a
//! share each. Padding is read from a zero-padded copy of the input (kept per thread; only
//! its border is zeroed); an input of fewer channels than a block may come in one narrow block
//! of its own (an image's 3 channels: NHWC), read as it is. The output is written without
//! zero-filling first, into a buffer the caller may recycle ([`BlockedConv::forward_with`]).
//!
//! 3x3 stride-1 convolutions take Winograd F(4x4, 3x3) on the same layout instead
//! (`blocked/winograd.rs`) from [`WINOGRAD_MIN_TILES`] output tiles per call.
//!
//! Sums run in the same order on every path (bias, then input blocks, taps and the channels
//! of a block in order; chunking keeps that order): FMA rounds once where the portable path
//! rounds twice, so paths differ by rounding only.

use super::winograd::BlockedWinograd;
use super::{block_size, Blocked};
use crate::conv::output_len;
use crate::isa::{isa, Isa};
use crate::{bail, checked_len, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output positions per register tile, the most over the paths (AVX-512: 6, AVX2 and the
/// portable path: 3).
pub const PIXELS: usize = 6;

/// Output blocks per group (the register tile's other side).
pub const GROUP: usize = 4;

/// About the bytes of a group's weights one chunk of input blocks keeps in cache.
pub const CHUNK_BYTES: usize = 128 << 10;

/// The channel counts (input and output) for which a 3x3, stride-1, padding-1 convolution is
/// also prepared for Winograd F(4x4, 3x3) (`blocked/winograd.rs`; the transformed weight is
/// 4x the weight).
pub const WINOGRAD_CHANNELS: std::ops::RangeInclusive<usize> = 16..=512;

/// The narrowest input that takes Winograd F(4x4, 3x3): narrower maps compute much of their
/// last tiles for nothing (a 7-wide map computes 8).
pub const WINOGRAD_MIN_WIDTH: usize = 7;

/// The fewest 4x4 output tiles per call that take Winograd F(4x4, 3x3): each task reads the
/// whole transformed weight, which fewer tiles do not pay for (ResNet-18's 3x3 convolutions,
/// Intel Xeon, 2 threads: at batch 1, 56x56 and 28x28 maps (196 and 49 tiles) 1.7x faster
/// than the direct kernel, 7x7 maps of 512 channels (4 tiles) 2x slower; at batch 16, 14x14
/// and 7x7 maps (256 and 64 tiles) 1.3-1.7x faster).
pub const WINOGRAD_MIN_TILES: usize = 48;

/// The positions of a tile on a path.
fn pixels(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 6,
        Isa::Avx2 | Isa::Portable => 3,
    }
}

/// A convolution prepared for the blocked layout: weights reordered, bias (with any batch norm
/// folded), ReLU; from [`BlockedConv::new`], read through its methods.
#[derive(Debug, Clone)]
pub struct BlockedConv {
    isa: Isa,
    block: usize,
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    relu: bool,
    /// Per group of up to [`GROUP`] output blocks, `[cin_blocks, kh, kw, block (in), blocks
    /// in the group, block (out)]`; group `g` starts at `g * GROUP * cin_blocks * kh * kw *
    /// block * block`.
    weight: Vec<f32>,
    /// `[cout_blocks * block]`.
    bias: Vec<f32>,
    /// The same convolution for Winograd F(4x4, 3x3), where its shape allows
    /// ([`WINOGRAD_CHANNELS`]); prepared by the first call that takes it
    /// ([`WINOGRAD_MIN_TILES`]), so that a model run only at batch 1 does not hold the
    /// transformed weights of its small maps.
    winograd: Option<LazyWinograd>,
}

impl BlockedConv {
    /// Prepares `weight` `[cout, cin, kh, kw]` (and `bias` `[cout]`) for the current path
    /// ([`isa`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        weight: &[f32],
        bias: Option<&[f32]>,
        [cout, cin, kh, kw]: [usize; 4],
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> Result<Self> {
        Self::with_isa(isa(), weight, bias, [cout, cin, kh, kw], stride, padding, relu)
    }

    /// [`BlockedConv::new`] for a given path (an available one: else the portable kernel
    /// runs, with the path's block size).
    #[allow(clippy::too_many_arguments)]
    pub fn with_isa(
        isa: Isa,
        weight: &[f32],
        bias: Option<&[f32]>,
        [cout, cin, kh, kw]: [usize; 4],
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> Result<Self> {
        let len = checked_len(&[cout, cin, kh, kw]);
        if len != Some(weight.len()) || weight.is_empty() || stride == 0 {
            bail!(
                "blocked conv: {} weights for [{cout}, {cin}, {kh}, {kw}], stride {stride}",
                weight.len()
            )
        }
        if bias.is_some_and(|b| b.len() != cout) {
            bail!("blocked conv: the bias needs {cout} values")
        }
        let block = block_size(isa);
        let (ob, ib, taps) = (cout.div_ceil(block), cin.div_ceil(block), kh * kw);
        let Some(wlen) = checked_len(&[ob, ib, taps, block, block]) else {
            bail!("blocked conv: [{cout}, {cin}, {kh}, {kw}] has more values than a usize counts")
        };
        let mut w = vec![0.0; wlen];
        for o in 0..cout {
            let (ob_i, lane_o) = (o / block, o % block);
            let (group, in_group) = (ob_i / GROUP, ob_i % GROUP);
            let gb = GROUP.min(ob - group * GROUP);
            let base = group * GROUP * ib * taps * block * block;
            for c in 0..cin {
                for t in 0..taps {
                    let at = base
                        + (((c / block * taps + t) * block + c % block) * gb + in_group) * block
                        + lane_o;
                    w[at] = weight[(o * cin + c) * taps + t];
                }
            }
        }
        let mut b = vec![0.0; ob * block];
        if let Some(bias) = bias {
            b[..cout].copy_from_slice(bias);
        }
        let winograd = ([kh, kw, stride, padding] == [3, 3, 1, 1]
            && WINOGRAD_CHANNELS.contains(&cin)
            && WINOGRAD_CHANNELS.contains(&cout))
        .then(|| LazyWinograd {
            weight: weight.to_vec(),
            prepared: std::sync::OnceLock::new(),
        });
        Ok(Self {
            isa,
            block,
            cin,
            cout,
            kh,
            kw,
            stride,
            padding,
            relu,
            weight: w,
            bias: b,
            winograd,
        })
    }

    /// The path it runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Channels per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Input channels.
    pub fn cin(&self) -> usize {
        self.cin
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Kernel height and width.
    pub fn kernel(&self) -> (usize, usize) {
        (self.kh, self.kw)
    }

    /// Stride.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Zero padding on every side.
    pub fn padding(&self) -> usize {
        self.padding
    }

    /// Whether it may take Winograd F(4x4, 3x3) (see [`WINOGRAD_MIN_TILES`]).
    pub fn has_winograd(&self) -> bool {
        self.winograd.is_some()
    }

    /// Whether a ReLU follows.
    pub fn relu(&self) -> bool {
        self.relu
    }

    /// Output height and width for an `h x w` input.
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        Some((
            output_len(h, self.kh, self.padding, self.stride, 1)?,
            output_len(w, self.kw, self.padding, self.stride, 1)?,
        ))
    }

    /// `relu(conv(x) + bias + residual)` in the blocked layout (the ReLU if prepared so, the
    /// residual if given: of the output's shape).
    pub fn forward(&self, x: &Blocked, residual: Option<&Blocked>) -> Result<Blocked> {
        self.forward_with(x, residual, Vec::with_capacity)
    }

    /// [`BlockedConv::forward`] with the output's values in a buffer from `alloc(len)` (its
    /// contents do not matter: every value is written), so that a caller can recycle the
    /// buffers of activations it no longer needs ([`Blocked::into_data`]).
    pub fn forward_with(
        &self,
        x: &Blocked,
        residual: Option<&Blocked>,
        alloc: impl FnOnce(usize) -> Vec<f32>,
    ) -> Result<Blocked> {
        if !x.is_consistent() || residual.is_some_and(|r| !r.is_consistent()) {
            bail!("blocked conv: an activation whose values do not match its sizes")
        }
        // The input in the convolution's blocks, or fewer channels than a block in one block of
        // their own (an image's 3 channels: NHWC), read as they are.
        let narrow = x.block == x.c && x.c < self.block;
        if x.c != self.cin || (x.block != self.block && !narrow) {
            bail!(
                "blocked conv: an input of {} channels in blocks of {}, expected {} in blocks of {} (or in one block of their own)",
                x.c,
                x.block,
                self.cin,
                self.block
            )
        }
        let Some((oh, ow)) = self.output_size(x.h, x.w) else {
            bail!(
                "blocked conv: a {}x{} input is too small for a {}x{} kernel",
                x.h,
                x.w,
                self.kh,
                self.kw
            )
        };
        if let Some(lazy) = &self.winograd {
            let tiles = x.n * x.h.div_ceil(4) * x.w.div_ceil(4);
            if x.w >= WINOGRAD_MIN_WIDTH && tiles >= WINOGRAD_MIN_TILES && x.block == self.block {
                let prepared = lazy.prepared.get_or_init(|| {
                    BlockedWinograd::new(
                        self.isa,
                        &lazy.weight,
                        &self.bias,
                        [self.cout, self.cin],
                        self.relu,
                    )
                    .ok()
                });
                if let Some(wino) = prepared {
                    return wino.forward_with(x, residual, alloc);
                }
            }
        }
        let (b, bin, ib, ob) = (self.block, x.block, x.blocks(), self.cout.div_ceil(self.block));
        if let Some(r) = residual {
            if (r.n, r.c, r.h, r.w, r.block) != (x.n, self.cout, oh, ow, b) {
                bail!(
                    "blocked conv: a residual of [{}, {}, {}, {}] for an output of [{}, {}, {oh}, {ow}]",
                    r.n,
                    r.c,
                    r.h,
                    r.w,
                    x.n,
                    self.cout
                )
            }
        }
        // The zero-padded input, `[n, ib, ph, pw, b]` (`output_size` checked the padded sizes).
        let p = self.padding;
        let (ph, pw) = (x.h + 2 * p, x.w + 2 * p);
        let (Some(padded_len), Some(out_len)) = (
            checked_len(&[x.n, ib, ph, pw, bin]),
            checked_len(&[x.n, ob, oh, ow, b]),
        ) else {
            bail!(
                "blocked conv: the padded input or the output of a [{}, {}, {}, {}] input has more values than a usize counts",
                x.n,
                x.c,
                x.h,
                x.w
            )
        };
        let layer = Layer {
            isa: self.isa,
            b,
            bin,
            ib,
            ob,
            cin: self.cin,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            ph,
            pw,
            oh,
            ow,
            relu: self.relu,
            chunk: (CHUNK_BYTES / (GROUP * self.kh * self.kw * b * b * 4)).clamp(1, ib),
            pixels: pixels(self.isa),
        };
        let run = |padded: &[f32], out: &mut [MaybeUninit<f32>]| {
            let residual = residual.map(|r| &r.data[..]);
            layer.run(padded, &self.weight, &self.bias, residual, x.n, out)
        };
        // SAFETY: `Layer::run` writes every output value (each position of each output block of
        // each image, by the first chunk of input blocks).
        let out = unsafe {
            crate::written_in(alloc(out_len), out_len, |out| match p {
                0 => run(&x.data, out),
                _ => with_padded(x, (p, p), (ph, pw), padded_len, |padded| run(padded, out)),
            })
        };
        Ok(Blocked {
            n: x.n,
            c: self.cout,
            h: oh,
            w: ow,
            block: b,
            data: out,
        })
    }
}

/// The zero-padded copy of a convolution's input, kept per thread between calls.
#[derive(Default)]
struct PaddedInput(Vec<f32>);

/// `f` of `x` zero-padded: `[n, blocks, ph, pw, block]` (`len` values) with `x` at row `top`,
/// column `left`, in a buffer kept per thread between calls.
pub(super) fn with_padded<R>(
    x: &Blocked,
    (top, left): (usize, usize),
    (ph, pw): (usize, usize),
    len: usize,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    let mut kept = crate::scratch::take::<PaddedInput>().0;
    let padded = crate::scratch::grown(&mut kept, len);
    pad(&x.data, padded, (x.h, x.w), (top, left), (ph, pw), x.block);
    let result = f(padded);
    let bytes = kept.len() * 4;
    crate::scratch::put_back(PaddedInput(kept), bytes);
    result
}

/// `x` `[planes, h, w, b]` into `dst` `[planes, ph, pw, b]` at row `top`, column `left`, zeros
/// around it (only those are written besides `x`'s values: `dst` may hold an earlier call's).
fn pad(
    x: &[f32],
    dst: &mut [f32],
    (h, w): (usize, usize),
    (top, left): (usize, usize),
    (ph, pw): (usize, usize),
    b: usize,
) {
    dst.par_chunks_mut(ph * pw * b)
        .zip(x.par_chunks(h * w * b))
        .for_each(|(dst, src)| {
            dst[..top * pw * b].fill(0.0);
            dst[(top + h) * pw * b..].fill(0.0);
            for (y, row) in src.chunks_exact(w * b).enumerate() {
                let line = &mut dst[(y + top) * pw * b..][..pw * b];
                line[..left * b].fill(0.0);
                line[left * b..][..w * b].copy_from_slice(row);
                line[(left + w) * b..].fill(0.0);
            }
        });
}

/// A convolution's Winograd form, prepared on first use from its weights `[cout, cin, 3, 3]`.
#[derive(Debug, Clone)]
struct LazyWinograd {
    weight: Vec<f32>,
    prepared: std::sync::OnceLock<Option<BlockedWinograd>>,
}

/// The sizes of one layer's run, checked against its buffers in [`Layer::run`].
struct Layer {
    isa: Isa,
    b: usize,
    /// Channels per input block (`b`, or the input's channels when fewer than a block).
    bin: usize,
    ib: usize,
    ob: usize,
    /// Input channels (the last block's channels past them are zero and skipped).
    cin: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    /// The padded input's height and width.
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
    relu: bool,
    /// Input blocks per chunk.
    chunk: usize,
    /// Positions per tile.
    pixels: usize,
}

/// A pointer the tasks of one layer share; each task writes its own positions of its own
/// output blocks only.
#[derive(Clone, Copy)]
pub(super) struct Shared<T>(pub(super) T);
// SAFETY: the tasks of `Layer::run` read the inputs and write disjoint parts of the output.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl Layer {
    /// Every task of the layer; `input` padded `[n, ib, ph, pw, b]`, `out`'s first values (and
    /// `residual`) `[n, ob, oh, ow, b]`, every one of them written.
    fn run(
        &self,
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        residual: Option<&[f32]>,
        n: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        let b = self.b;
        let (plane_in, plane_out) = (self.ph * self.pw * self.bin, self.oh * self.ow * b);
        let sound = input.len() == n * self.ib * plane_in
            && out.len() >= n * self.ob * plane_out
            && weight.len() == self.ob * self.ib * self.kh * self.kw * b * b
            && bias.len() == self.ob * b
            && residual.is_none_or(|r| r.len() == n * self.ob * plane_out)
            && (self.oh - 1) * self.stride + self.kh <= self.ph
            && (self.ow - 1) * self.stride + self.kw <= self.pw
            && self.pixels <= PIXELS
            && (1..=16).contains(&b)
            && (self.bin == b || (self.ib == 1 && self.cin == self.bin && self.bin < b));
        assert!(sound, "blocked conv: buffers that do not match the layer");
        if n * self.ob * plane_out == 0 {
            return;
        }
        let positions = self.oh * self.ow;
        let tiles = positions.div_ceil(self.pixels);
        let groups = self.ob.div_ceil(GROUP);
        // Runs of tiles over the batch (image-major): enough tasks for two per thread.
        let threads = rayon::current_num_threads().max(1);
        let runs = (2 * threads).div_ceil(groups).clamp(1, n * tiles);
        let per_run = (n * tiles).div_ceil(runs);
        let (ip, wp, bp) = (
            Shared(input.as_ptr()),
            Shared(weight.as_ptr()),
            Shared(bias.as_ptr()),
        );
        let rp = Shared(residual.map(|r| r.as_ptr()));
        let op = Shared(out.as_mut_ptr().cast::<f32>());
        (0..groups * runs).into_par_iter().for_each(move |task| {
            let (group, run) = (task / runs, task % runs);
            let tiles_of_run = run * per_run..((run + 1) * per_run).min(n * tiles);
            // SAFETY: `sound` above bounds every read and write of the tiles (positions below
            // `oh * ow`, taps inside the padded input, blocks below `ob`); tasks write
            // disjoint (group, position) parts of the output.
            unsafe {
                let _ = (&ip, &wp, &bp, &rp, &op);
                self.run_task(ip.0, wp.0, bp.0, rp.0, op.0, group, tiles_of_run)
            }
        });
    }

    /// One task: the tiles `tiles` (numbered over the batch, image-major) of one group, chunk
    /// by chunk of input blocks.
    ///
    /// # Safety
    /// The pointers hold the buffers [`Layer::run`] checked; no other task writes this
    /// group's blocks at these positions.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_task(
        &self,
        input: *const f32,
        weight: *const f32,
        bias: *const f32,
        residual: Option<*const f32>,
        out: *mut f32,
        group: usize,
        tiles: std::ops::Range<usize>,
    ) {
        let b = self.b;
        let positions = self.oh * self.ow;
        let per_image = positions.div_ceil(self.pixels);
        let (plane_in, plane_out) = (self.ph * self.pw * self.bin, self.oh * self.ow * b);
        let gb = GROUP.min(self.ob - group * GROUP);
        let taps = self.kh * self.kw;
        let gweight = weight.add(group * GROUP * self.ib * taps * b * b);
        let per_block = taps * b * gb * b;
        for ic0 in (0..self.ib).step_by(self.chunk) {
            let ic1 = (ic0 + self.chunk).min(self.ib);
            // The next chunk's weights, fetched into L2 a share per tile while this chunk runs
            // (at batch 1 a chunk serves few tiles: waiting for it from memory cost more than
            // its products).
            let next = (
                ic1 * per_block,
                ((ic1 + self.chunk).min(self.ib) - ic1) * per_block,
            );
            let shares = tiles.len().max(1);
            for (k, t) in tiles.clone().enumerate() {
                if next.1 > 0 {
                    let (lo, hi) = (next.1 * k / shares, next.1 * (k + 1) / shares);
                    prefetch_l2(gweight.add(next.0 + lo), hi - lo);
                }
                let (image, first_pos) = (t / per_image, (t % per_image) * self.pixels);
                let count = self.pixels.min(positions - first_pos);
                let mut x_off = [0usize; PIXELS];
                let mut o_off = [0usize; PIXELS];
                for (p, (x, o)) in x_off.iter_mut().zip(&mut o_off).enumerate().take(self.pixels) {
                    // Positions past the last one repeat it (computed, not stored).
                    let pos = first_pos + p.min(count - 1);
                    let (oy, ox) = (pos / self.ow, pos % self.ow);
                    *x = (oy * self.stride * self.pw + ox * self.stride) * self.bin;
                    *o = pos * b;
                }
                let obase = (image * self.ob + group * GROUP) * plane_out;
                let tile = Tile {
                    input: input.add(image * self.ib * plane_in),
                    x_off,
                    weight: gweight,
                    ic: ic0..ic1,
                    cin: self.cin,
                    taps,
                    kw: self.kw,
                    pw: self.pw,
                    bin: self.bin,
                    plane_in,
                    bias: bias.add(group * GROUP * b),
                    out: out.add(obase),
                    residual: residual.map(|r| r.add(obase)),
                    o_off,
                    plane_out,
                    count,
                    first: ic0 == 0,
                    last: ic1 == self.ib,
                    relu: self.relu,
                };
                tile.run(self.isa, b, gb);
            }
        }
    }
}

/// Asks for the `len` values at `p` to be brought into L2 (a hint: no effect on results).
///
/// # Safety
/// `p..p + len` lies inside one allocation.
#[inline]
unsafe fn prefetch_l2(p: *const f32, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        // One request per 64-byte line.
        for line in (0..len).step_by(16) {
            _mm_prefetch::<_MM_HINT_T1>(p.add(line).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// One register tile's work for one chunk of input blocks.
struct Tile {
    /// The image's padded input.
    input: *const f32,
    /// Per position, where its window starts in a block's plane of the padded input.
    x_off: [usize; PIXELS],
    /// The group's weights.
    weight: *const f32,
    /// The chunk of input blocks.
    ic: std::ops::Range<usize>,
    cin: usize,
    taps: usize,
    kw: usize,
    pw: usize,
    /// Channels per input block.
    bin: usize,
    /// Values per input block plane (padded).
    plane_in: usize,
    /// The group's bias.
    bias: *const f32,
    /// The image's output (and residual) at the group's first block.
    out: *mut f32,
    residual: Option<*const f32>,
    /// Per position, its place in a block's output plane.
    o_off: [usize; PIXELS],
    /// Values per output block plane.
    plane_out: usize,
    /// Positions stored (the others repeat the last).
    count: usize,
    /// The first chunk starts from the bias, the others from the partial sums in the output.
    first: bool,
    /// The last chunk adds the residual, applies the ReLU.
    last: bool,
    relu: bool,
}

impl Tile {
    /// Runs on the path's kernel, `b` channels per block, `gb` blocks in the group.
    ///
    /// # Safety
    /// As [`Layer::run_task`].
    unsafe fn run(&self, isa: Isa, b: usize, gb: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            // The path's kernels, by the group's blocks (1 to `GROUP`).
            let kernels: Option<[unsafe fn(&Tile); GROUP]> = match (isa, b) {
                (Isa::Avx512, 16) if isa.is_available() => Some([
                    tile_avx512::<1>,
                    tile_avx512::<2>,
                    tile_avx512::<3>,
                    tile_avx512::<4>,
                ]),
                (Isa::Avx2, 8) if isa.is_available() => {
                    Some([tile_avx2::<1>, tile_avx2::<2>, tile_avx2::<3>, tile_avx2::<4>])
                }
                _ => None,
            };
            if let Some(kernels) = kernels {
                // SAFETY: the CPU has the path's features (checked above); the caller's
                // contract bounds the tile's reads and writes.
                kernels[gb.clamp(1, GROUP) - 1](self);
                return;
            }
        }
        let _ = isa;
        self.portable(b, gb);
    }

    /// Channels of input block `icb` that are real (a 3-channel image fills 3 of 16).
    fn channels(&self, icb: usize, b: usize) -> usize {
        b.min(self.cin - icb * b)
    }

    /// The portable kernel: any block size, a multiply and an add per term, the same order of
    /// sums as the vector kernels.
    ///
    /// # Safety
    /// As [`Layer::run_task`].
    unsafe fn portable(&self, b: usize, gb: usize) {
        let mut acc = [[[0f32; 16]; PIXELS]; GROUP];
        for (g, acc) in acc.iter_mut().enumerate().take(gb) {
            for (p, a) in acc.iter_mut().enumerate().take(self.count) {
                for (l, a) in a.iter_mut().enumerate().take(b) {
                    *a = if self.first {
                        *self.bias.add(g * b + l)
                    } else {
                        *self.out.add(g * self.plane_out + self.o_off[p] + l)
                    };
                }
            }
        }
        for icb in self.ic.clone() {
            let channels = self.channels(icb, b);
            for t in 0..self.taps {
                let (ky, kx) = (t / self.kw, t % self.kw);
                let x = self
                    .input
                    .add(icb * self.plane_in + (ky * self.pw + kx) * self.bin);
                let w = self.weight.add((icb * self.taps + t) * b * gb * b);
                for ci in 0..channels {
                    for (g, acc) in acc.iter_mut().enumerate().take(gb) {
                        let wv = w.add((ci * gb + g) * b);
                        for (p, a) in acc.iter_mut().enumerate().take(self.count) {
                            let xv = *x.add(self.x_off[p] + ci);
                            for (l, a) in a.iter_mut().enumerate().take(b) {
                                *a += xv * *wv.add(l);
                            }
                        }
                    }
                }
            }
        }
        for (g, acc) in acc.iter().enumerate().take(gb) {
            for (p, a) in acc.iter().enumerate().take(self.count) {
                let at = g * self.plane_out + self.o_off[p];
                for (l, &a) in a.iter().enumerate().take(b) {
                    let mut v = a;
                    if self.last {
                        if let Some(r) = self.residual {
                            v += *r.add(at + l);
                        }
                        if self.relu {
                            v = crate::elementwise::relu_value(v);
                        }
                    }
                    *self.out.add(at + l) = v;
                }
            }
        }
    }
}

macro_rules! vector_tile {
    ($name:ident, $features:literal, $lanes:literal, $pixels:literal, $vec:ty, $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident, $add:ident, $max:ident) => {
        /// One tile with this path's vectors (`b` = lanes, `G` blocks in the group).
        ///
        /// # Safety
        /// As [`Layer::run_task`], and the CPU has the path's features.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const G: usize>(t: &Tile) {
            use std::arch::x86_64::*;
            const B: usize = $lanes;
            const P: usize = $pixels;
            let mut acc: [[$vec; P]; G] = [[$zero(); P]; G];
            for (g, acc) in acc.iter_mut().enumerate() {
                for (p, a) in acc.iter_mut().enumerate() {
                    *a = if t.first {
                        $load(t.bias.add(g * B))
                    } else {
                        $load(t.out.add(g * t.plane_out + t.o_off[p]))
                    };
                }
            }
            for icb in t.ic.clone() {
                let channels = t.channels(icb, B);
                let xb = t.input.add(icb * t.plane_in);
                let mut w = t.weight.add(icb * t.taps * B * G * B);
                for ky in 0..t.taps / t.kw {
                    for kx in 0..t.kw {
                        let x = xb.add((ky * t.pw + kx) * t.bin);
                        let xs: [*const f32; P] = std::array::from_fn(|p| x.add(t.x_off[p]));
                        for ci in 0..channels {
                            let wv: [$vec; G] = std::array::from_fn(|g| $load(w.add((ci * G + g) * B)));
                            for p in 0..P {
                                let xv = $set1(*xs[p].add(ci));
                                for g in 0..G {
                                    acc[g][p] = $fma(xv, wv[g], acc[g][p]);
                                }
                            }
                        }
                        w = w.add(B * G * B);
                    }
                }
            }
            let zero = $zero();
            for (g, acc) in acc.iter().enumerate() {
                for (p, &a) in acc.iter().enumerate().take(t.count) {
                    let at = g * t.plane_out + t.o_off[p];
                    let mut v = a;
                    if t.last {
                        if let Some(r) = t.residual {
                            v = $add(v, $load(r.add(at)));
                        }
                        if t.relu {
                            // max(0, v): 0 where v < 0, v otherwise (NaN kept), as `relu_value`.
                            v = $max(zero, v);
                        }
                    }
                    $store(t.out.add(at), v);
                }
            }
        }
    };
}

vector_tile!(
    tile_avx512,
    "avx512f,avx2,fma",
    16,
    6,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_max_ps
);
vector_tile!(
    tile_avx2,
    "avx2,fma",
    8,
    3,
    __m256,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_max_ps
);
