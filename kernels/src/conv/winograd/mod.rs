//! Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2015): the forward pass of a 3x3, stride-1 convolution as `n^2` products of
//! `[Cout, Cin] x [Cin, tiles]` instead of one `[Cout, 9 Cin] x [9 Cin, positions]`, in two
//! tilings: F(2x2, 3x3) ([`f2`], 16 products, 2.25x fewer multiply-adds than the direct
//! convolution) and F(4x4, 3x3) ([`f4`], 36 products, 4x fewer).
//!
//! The output is cut into `m x m` tiles; tile `(ty, tx)` reads the `n x n` input patch
//! (`n = m + 2`) at rows `m ty - ph ..`, columns `m tx - pw ..` (zeros outside the input). The
//! weight of each `(cout, cin)` pair becomes `U = G g G^T`, each patch `V = B^T d B` (`n x n`
//! each), and the tile's outputs are `A^T (sum_cin U . V) A`: for each of the `n^2` positions
//! `xi` of the transforms, `M_xi [Cout, tiles] = U_xi [Cout, Cin] x V_xi [Cin, tiles]`, a plain
//! matrix product.
//!
//! The transforms are written over whole rows of tiles so that they vectorise: the input
//! planes are first split into `m` zero-padded column phases ([`split_phases`]), after which
//! every transform step reads contiguous runs; they run compiled for the kernels' ISA path
//! ([`crate::isa::vectorized`]; additions and multiplications only, the same bits on every
//! path). The results differ from the direct convolution's by rounding only (the tests bound
//! them: F(4x4)'s larger transforms round about ten times more than F(2x2)'s).
//!
//! Used by [`super::forward_impl`] for 3x3, stride-1, undilated, ungrouped convolutions of at
//! least [`MIN_CHANNELS`] input and output channels whose nine taps are all live ([`choose`]
//! says which tiling, if any, from the outputs' width and the tiles per run of images).
//! F(4x4) only runs in inference passes (`kernels::conv::forward_inference`, which `backbone`
//! runs inside its `inference_mode`): a training pass
//! takes F(2x2), whose rounding is close to the direct convolution's, because a forward output
//! rounded differently can turn a max pool's choice between two nearly equal values and send a
//! gradient elsewhere (VGG-11's first-layer weight gradient on torchvision's fixture moved by
//! 2e-3 of its scale with F(4x4) in the forward pass, 2e-6 with F(2x2)); in inference such a
//! turn moves the output by the difference of the two values only. The input gradient of such
//! a convolution is computed the same way ([`input_grad`]: the forward convolution of the output
//! gradient by the transposed, flipped weight, F(2x2)) where that convolution qualifies; the
//! weight gradient stays im2col's.
//!
//! A weight can be transformed once and reused ([`prepare_weight`], [`forward_prepared`]; what
//! `backbone::with_frozen_weights` does for models whose weights will not change): the tile
//! limits, which weigh the per-call transform against the products it saves, then no longer
//! apply ([`prepared_choice`]: F(4x4) from 16 wide, F(2x2) from 7 wide), and the same tiling
//! gives the same bits either way.
//!
//! [`set_winograd`] (initially [`ENV_VAR`], `CONVNETS_KERNELS_WINOGRAD`) limits the choice, for
//! comparisons: `f2` (F(2x2) only, as before F(4x4) existed) or `off` (im2col for every
//! convolution); unset or anything else: both tilings.

mod f2;
mod f4;
#[cfg(test)]
mod tests;

use super::*;
use f2::F2;
use f4::F4;
pub(crate) use f4::{a_transpose, b_transpose};
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that sets the initial [`Winograd`]: `f2`, `off`, or unset for both.
pub const ENV_VAR: &str = "CONVNETS_KERNELS_WINOGRAD";

/// Fewer input or output channels than this: the transforms cost more than the products save.
pub(crate) const MIN_CHANNELS: usize = 16;

/// The size of a block's transformed inputs (`n^2 * Cin * tiles` values): whole images are
/// grouped into blocks up to this size, so that small late-stage maps still give the products
/// enough columns.
const BLOCK_BYTES: usize = 1 << 21;

/// F(4x4, 3x3)'s `U = G g G^T` of one `(cout, cin)` pair's nine taps `g3` (computed in f64,
/// rounded once), position `xi` written to `row[xi * stride]`: for the blocked layout's
/// Winograd (`crate::blocked`).
pub(crate) fn f4_weight<T: Float>(g3: &[T], row: &mut [T], stride: usize) {
    <F4 as Tiling>::weight(g3, row, stride)
}

/// One of the tilings F(m x m, 3x3): its sizes and its three transforms.
pub(crate) trait Tiling {
    /// The output tile's side `m`.
    const M: usize;
    /// The transforms' positions, `(m + 2)^2`: the number of products.
    const POSITIONS: usize;
    /// Fewer tiles per run of images than this: the weight's transform (written and read
    /// once per pass, `POSITIONS / 9` of the weight) costs more than the products save.
    const MIN_TILES: usize;
    /// Narrower outputs than this: the transforms' rows (`ow / m` tiles) are too short to
    /// vectorise, and the transforms cost more than the products save.
    const MIN_WIDTH: usize;
    /// [`Tiling::MIN_WIDTH`] for a weight prepared once ([`prepared_choice`]).
    const PREPARED_MIN_WIDTH: usize;
    /// `U = G g G^T` of one `(cout, cin)` pair's nine taps `g3`, position `xi` written to
    /// `row[xi * stride]`.
    fn weight<T: Float>(g3: &[T], row: &mut [T], stride: usize);
    /// `V = B^T d B` of every tile of one input plane, written in runs of consecutive tiles
    /// to `dest(xi, first tile, tiles)`.
    fn input_plane<'a, T: Float>(
        g: &ConvGeometry,
        plane: &[T],
        s: &mut InputScratch<T>,
        dest: impl Fn(usize, usize, usize) -> &'a mut [T],
    );
    /// One output plane `[oh, ow]` from its `M` values (`read(xi, first tile, len)` gives
    /// `M_xi` of `len` consecutive tiles of the plane): `Y = A^T M A`, through `y`.
    fn output_plane<'a, T: Float>(
        g: &ConvGeometry,
        read: impl Fn(usize, usize, usize) -> &'a [T],
        y: &mut Vec<T>,
        plane: &mut [T],
    );
}

/// Which tiling runs a convolution (and which one a [`PreparedWeight`] was transformed for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    /// F(2x2, 3x3): 16 products.
    F2,
    /// F(4x4, 3x3): 36 products.
    F4,
}

impl Choice {
    /// `F(2x2, 3x3)` or `F(4x4, 3x3)`.
    pub fn name(self) -> &'static str {
        match self {
            Choice::F2 => "F(2x2, 3x3)",
            Choice::F4 => "F(4x4, 3x3)",
        }
    }

    /// The values of the transform of one `(cout, cin)` pair's nine taps (16 or 36).
    pub fn positions(self) -> usize {
        match self {
            Choice::F2 => F2::POSITIONS,
            Choice::F4 => F4::POSITIONS,
        }
    }
}

/// Which Winograd tilings the convolutions may use ([`set_winograd`]; initially from
/// [`ENV_VAR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winograd {
    /// F(4x4, 3x3) where it qualifies, else F(2x2, 3x3) where that does (the default).
    Both,
    /// F(2x2, 3x3) only.
    F2Only,
    /// Neither: im2col for every convolution.
    Off,
}

impl Winograd {
    fn code(self) -> u8 {
        match self {
            Winograd::Both => 1,
            Winograd::F2Only => 2,
            Winograd::Off => 3,
        }
    }
}

/// The current [`Winograd`] setting's code; 0 until the first read of [`ENV_VAR`].
static ALLOWED: AtomicU8 = AtomicU8::new(0);

/// The tilings the convolutions may use now: what [`set_winograd`] last set, else what
/// [`ENV_VAR`] says (`f2`, `off`; unset or anything else: [`Winograd::Both`]).
pub fn winograd() -> Winograd {
    match ALLOWED.load(Ordering::Relaxed) {
        1 => Winograd::Both,
        2 => Winograd::F2Only,
        3 => Winograd::Off,
        _ => {
            let from_env = match std::env::var(ENV_VAR).as_deref() {
                Ok("f2") => Winograd::F2Only,
                Ok("off") => Winograd::Off,
                _ => Winograd::Both,
            };
            // A concurrent `set_winograd` wins over the environment.
            let _ = ALLOWED.compare_exchange(0, from_env.code(), Ordering::Relaxed, Ordering::Relaxed);
            winograd()
        }
    }
}

/// Makes the convolutions use `allowed` from now on (all threads); returns the previous
/// setting. Results differ by rounding only (see the module docs), and so does the kept-columns
/// choice of training passes ([`super::Columns::wanted`]): change it between passes, not
/// between a forward pass and its backward pass.
pub fn set_winograd(allowed: Winograd) -> Winograd {
    let previous = winograd();
    ALLOWED.store(allowed.code(), Ordering::Relaxed);
    previous
}

/// Whether [`forward`] computes this convolution in a training pass (F(2x2) only).
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    choose(g, false).is_some()
}

/// The tiling that runs `g`, if any: in an `inference` pass F(4x4) where it qualifies, else
/// F(2x2) where it does.
pub(crate) fn choose(g: &ConvGeometry, inference: bool) -> Option<Choice> {
    choose_among(g, winograd(), inference)
}

/// Whether `g` has the shape Winograd's tilings compute: 3x3, stride 1, undilated,
/// ungrouped, every tap live, at least [`MIN_CHANNELS`] each way, outputs at least 2x2.
fn shaped(g: &ConvGeometry) -> bool {
    g.kh == 3
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

fn choose_among(g: &ConvGeometry, allowed: Winograd, inference: bool) -> Option<Choice> {
    if !shaped(g) || allowed == Winograd::Off {
        return None;
    }
    if inference && allowed == Winograd::Both && qualifies::<F4>(g) {
        Some(Choice::F4)
    } else if qualifies::<F2>(g) {
        Some(Choice::F2)
    } else {
        None
    }
}

/// The tiling an inference pass of `g` takes when its weight is prepared once
/// ([`prepare_weight`]) rather than transformed on every call: the tile limits
/// ([`Tiling::MIN_TILES`]), which weigh the weight's transform against the products it saves,
/// no longer apply; the width limits ([`Tiling::PREPARED_MIN_WIDTH`]) do. `None`: no tiling
/// (the convolution runs as [`super::forward_inference`] does).
pub fn prepared_choice(g: &ConvGeometry) -> Option<Choice> {
    prepared_choice_among(g, winograd())
}

fn prepared_choice_among(g: &ConvGeometry, allowed: Winograd) -> Option<Choice> {
    if !shaped(g) || allowed == Winograd::Off {
        None
    } else if allowed == Winograd::Both && g.ow >= F4::PREPARED_MIN_WIDTH {
        Some(Choice::F4)
    } else if g.ow >= F2::PREPARED_MIN_WIDTH {
        Some(Choice::F2)
    } else {
        None
    }
}

/// A convolution's weight transformed once for Winograd's tiling `choice` (`U = G g G^T` of
/// every `(cout, cin)` pair, `[positions, Cout, Cin]`), for inference passes that reuse it
/// ([`forward_prepared`]): what ONNX Runtime does to its weights when a session is created.
/// It holds `positions / 9` times the weight's values (16/9 for F(2x2), 4 for F(4x4)).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedWeight<T> {
    choice: Choice,
    cout: usize,
    cin: usize,
    u: Vec<T>,
}

impl<T> PreparedWeight<T> {
    /// The tiling it was transformed for.
    pub fn choice(&self) -> Choice {
        self.choice
    }

    /// Its values (`positions * Cout * Cin`).
    pub fn len(&self) -> usize {
        self.u.len()
    }

    /// Whether it holds no values (never: a prepared weight has at least 16 x 16 pairs).
    pub fn is_empty(&self) -> bool {
        self.u.is_empty()
    }
}

/// Transforms `weight` `[Cout, Cin, 3, 3]` of the convolution `g` for `choice`. Errors when the
/// weight does not have `g`'s sizes or `g` is not a convolution Winograd computes (3x3,
/// stride 1, undilated, ungrouped, at least 16 channels each way, every tap live).
pub fn prepare_weight<T: Float>(g: &ConvGeometry, weight: &[T], choice: Choice) -> Result<PreparedWeight<T>> {
    g.check_lengths(
        "winograd prepare",
        g.n * g.image_in(),
        weight.len(),
        g.n * g.image_out(),
    )?;
    if !shaped(g) {
        bail!(
            "winograd prepare: a {}x{} convolution of stride {}, dilation {}, {} groups, {} -> {} channels, output {}x{} is not one {} computes",
            g.kh,
            g.kw,
            g.stride,
            g.dilation,
            g.groups,
            g.cin,
            g.cout,
            g.oh,
            g.ow,
            choice.name()
        )
    }
    let parallel = rayon::current_num_threads() > 1 && g.cout * g.cin * 9 >= PARALLEL_THRESHOLD;
    let u = match choice {
        Choice::F2 => transform_weight::<F2, T>(g, weight, parallel),
        Choice::F4 => transform_weight::<F4, T>(g, weight, parallel),
    };
    Ok(PreparedWeight {
        choice,
        cout: g.cout,
        cin: g.cin,
        u,
    })
}

/// The forward pass of `g` (an inference pass: see [`super::forward_inference`]) with its
/// weight prepared by [`prepare_weight`], each image's outputs followed by the epilogue. The
/// same bits as [`super::forward_inference`] where that takes the same tiling. Errors when the
/// buffers do not have `g`'s sizes, the epilogue has not one value per output channel, or the
/// prepared weight is not one of `g`'s (other channels, or `g` not a Winograd convolution).
pub fn forward_prepared<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    prepared: &PreparedWeight<T>,
    epilogue: Option<&Epilogue<T>>,
) -> Result<Vec<T>> {
    let expected = prepared.choice.positions() * g.cout * g.cin;
    if !shaped(g) || (prepared.cout, prepared.cin, prepared.u.len()) != (g.cout, g.cin, expected) {
        bail!(
            "conv2d forward: a weight prepared for {} of {} -> {} channels ({} values) does not fit a {}x{} convolution of stride {} from {} to {} channels",
            prepared.choice.name(),
            prepared.cin,
            prepared.cout,
            prepared.u.len(),
            g.kh,
            g.kw,
            g.stride,
            g.cin,
            g.cout
        )
    }
    g.check_lengths("conv2d forward", x.len(), g.cout * g.cin * 9, g.n * g.image_out())?;
    if let Some(e) = epilogue {
        e.check("conv2d forward", g.cout)?;
        e.check_residual("conv2d forward", g)?;
    }
    Ok(match prepared.choice {
        Choice::F2 => forward_transformed::<F2, T>(g, x, &prepared.u, epilogue),
        Choice::F4 => forward_transformed::<F4, T>(g, x, &prepared.u, epilogue),
    })
}

/// Whether `W`'s width and tile limits admit `g` (its shape already checked).
fn qualifies<W: Tiling>(g: &ConvGeometry) -> bool {
    let (th, tw) = tiles::<W>(g);
    let images = match g.plan() {
        Plan::Images { per_thread } => per_thread,
        Plan::Serial | Plan::Inside { .. } => g.n,
    };
    images * th * tw >= W::MIN_TILES && g.ow >= W::MIN_WIDTH
}

/// Tile rows and columns of one image.
fn tiles<W: Tiling>(g: &ConvGeometry) -> (usize, usize) {
    (g.oh.div_ceil(W::M), g.ow.div_ceil(W::M))
}

/// The forward pass of the convolutions [`choose`] takes: the outputs `[N, Cout, oh, ow]`
/// from the inputs and the weight `[Cout, Cin, 3, 3]`, each image's outputs followed by the
/// epilogue. (Callers check [`choose`]; a convolution it refuses runs F(2x2) here.)
pub(crate) fn forward<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    epilogue: Option<&Epilogue<T>>,
    inference: bool,
) -> Vec<T> {
    match choose(g, inference) {
        Some(Choice::F4) => forward_with::<F4, T>(g, x, weight, epilogue),
        _ => forward_with::<F2, T>(g, x, weight, epilogue),
    }
}

/// [`forward`] with the tiling `W`.
fn forward_with<W: Tiling, T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    epilogue: Option<&Epilogue<T>>,
) -> Vec<T> {
    let u = transform_weight::<W, T>(g, weight, !matches!(g.plan(), Plan::Serial));
    forward_transformed::<W, T>(g, x, &u, epilogue)
}

/// [`forward_with`] from the transformed weight `u` ([`transform_weight`]'s).
fn forward_transformed<W: Tiling, T: Float>(
    g: &ConvGeometry,
    x: &[T],
    u: &[T],
    epilogue: Option<&Epilogue<T>>,
) -> Vec<T> {
    let plan = g.plan();
    let mut out = vec![T::zero(); g.n * g.image_out()];
    let bound = epilogue.map(|e| e.bound_to(&out));
    let epilogue = bound.as_deref();
    over_images(
        plan,
        x,
        g.image_in(),
        &mut out,
        g.image_out(),
        |_, x, out, inner| forward_run::<W, T>(g, x, u, out, inner.rows, epilogue),
    );
    out
}

/// The input gradient `[N, Cin, H, W]` of a 3x3, stride-1, undilated, ungrouped convolution
/// `g` as Winograd's forward pass, with no column matrix and no col2im: the convolution of the
/// output gradient by the weight transposed to `[Cin, Cout]` and flipped in both axes, padded
/// by `2 - padding` (oneDNN's backward-data). `None` when that convolution is not one
/// [`applies`] takes (the caller then runs im2col's adjoint).
pub(crate) fn input_grad<T: Float>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Option<Vec<T>> {
    let adjoint = adjoint(g)?;
    if !applies(&adjoint) {
        return None;
    }
    Some(forward(&adjoint, grad, &flip(g, weight), None, false))
}

/// The convolution whose forward pass is `g`'s input gradient, if it has `g`'s input size.
pub(crate) fn adjoint(g: &ConvGeometry) -> Option<ConvGeometry> {
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
    ((adjoint.oh, adjoint.ow) == (g.h, g.w)).then_some(adjoint)
}

/// The weight `[Cout, Cin, 3, 3]` transposed to `[Cin, Cout]` and flipped in both axes.
pub(crate) fn flip<T: Float>(g: &ConvGeometry, weight: &[T]) -> Vec<T> {
    let (cin, cout) = (g.cin, g.cout);
    let mut flipped = vec![T::zero(); weight.len()];
    for (o, taps) in weight.chunks_exact(9).enumerate() {
        let (co, ci) = (o / cin, o % cin);
        let to = &mut flipped[(ci * cout + co) * 9..][..9];
        for (t, &v) in taps.iter().enumerate() {
            to[8 - t] = v;
        }
    }
    flipped
}

/// `U_xi [Cout, Cin]` for the positions `xi` of `W`'s transform, as `[positions, Cout, Cin]`.
fn transform_weight<W: Tiling, T: Float>(g: &ConvGeometry, weight: &[T], parallel: bool) -> Vec<T> {
    let (cout, cin, positions) = (g.cout, g.cin, W::POSITIONS);
    let mut u = vec![T::zero(); positions * cout * cin];
    let u_ptr = SyncPtr(u.as_mut_ptr());
    // One output channel: its `Cin` transforms through `row` (`[positions, Cin]`, reused),
    // then written to `positions` contiguous runs.
    let one = |row: &mut Vec<T>, o: usize| {
        for (i, g3) in weight[o * cin * 9..][..cin * 9].chunks_exact(9).enumerate() {
            W::weight(g3, &mut row[i..], cin);
        }
        for (xi, values) in row.chunks_exact(cin).enumerate() {
            // SAFETY: output channel `o` writes only `U[xi, o, ..]`, inside `u` (`positions *
            // Cout * Cin` long), which no other output channel writes.
            unsafe {
                std::ptr::copy_nonoverlapping(values.as_ptr(), u_ptr.get().add((xi * cout + o) * cin), cin);
            }
        }
    };
    if parallel {
        (0..cout)
            .into_par_iter()
            .for_each_init(|| vec![T::zero(); positions * cin], one);
    } else {
        let mut row = vec![T::zero(); positions * cin];
        (0..cout).for_each(|o| one(&mut row, o));
    }
    u
}

/// Buffers of one run, reused from block to block, and from one run to the next on the same
/// thread ([`Buffers::take`]): allocating and zero-filling `V` and `M` on every call (up to
/// 4 MiB each) was about 2% of a ResNet inference pass at batch 1 in `memset` alone.
#[derive(Default)]
struct Buffers<T> {
    /// `V`: `[positions, Cin, cols]`.
    v: Vec<T>,
    /// `M`: `[positions, Cout, cols]`.
    m: Vec<T>,
}

impl<T: Float> Buffers<T> {
    /// The buffers this thread kept from its last run ([`crate::scratch`]).
    fn take() -> Self {
        crate::scratch::take()
    }

    /// Keeps the buffers for this thread's next run, unless they are large.
    fn put_back(self) {
        let bytes = (self.v.capacity() + self.m.capacity()) * std::mem::size_of::<T>();
        crate::scratch::put_back(self, bytes);
    }
}

/// The forward pass of a run of images (`x` `[images, Cin, H, W]`), in blocks of whole images.
fn forward_run<W: Tiling, T: Float>(
    g: &ConvGeometry,
    x: &[T],
    u: &[T],
    out: &mut [T],
    parallel: bool,
    epilogue: Option<&Epilogue<T>>,
) {
    let (th, tw) = tiles::<W>(g);
    let per_image = th * tw;
    let images = out.len() / g.image_out();
    let block =
        (BLOCK_BYTES / (W::POSITIONS * g.cin * per_image * std::mem::size_of::<T>())).clamp(1, images.max(1));
    let mut buffers = Buffers::<T>::take();
    for first in (0..images).step_by(block) {
        let last = (first + block).min(images);
        let x = &x[first * g.image_in()..last * g.image_in()];
        let out = &mut out[first * g.image_out()..last * g.image_out()];
        forward_block::<W, T>(g, (x, u), out, parallel, epilogue, &mut buffers);
    }
    buffers.put_back();
}

/// One block of images: transform the inputs, the products, transform the outputs (each
/// output plane followed by the epilogue while it is in the cache).
fn forward_block<W: Tiling, T: Float>(
    g: &ConvGeometry,
    (x, u): (&[T], &[T]),
    out: &mut [T],
    parallel: bool,
    epilogue: Option<&Epilogue<T>>,
    buffers: &mut Buffers<T>,
) {
    let (th, tw) = tiles::<W>(g);
    let images = x.len() / g.image_in();
    let cols = images * th * tw;
    let (cin, cout, positions) = (g.cin, g.cout, W::POSITIONS);
    let Buffers { v, m } = buffers;
    // Grown, never shrunk nor cleared: the input transforms write every element of `V`, the
    // products every element of `M`, before anything reads them.
    let v = crate::scratch::grown(v, positions * cin * cols);
    let m = crate::scratch::grown(m, positions * cout * cols);
    // V: one input plane at a time (plane `i` is image `i / Cin`, channel `i % Cin`).
    let plane_in = g.plane_in();
    let v_ptr = SyncPtr(v.as_mut_ptr());
    let input_plane = |scratch: &mut InputScratch<T>, i: usize| {
        let (image, c) = (i / cin, i % cin);
        let plane = &x[i * plane_in..][..plane_in];
        // SAFETY: plane `(image, c)` writes only the elements `V[xi, c, image * th * tw ..
        // (image + 1) * th * tw]` (tile `t` of the plane at `.. + t`, `len` tiles from `t` at a
        // time, each run handed out once), which no other plane writes; all lie inside `v`
        // (`positions * Cin * cols` long), which outlives the calls.
        let dest = |xi: usize, t: usize, len: usize| unsafe {
            let at = (xi * cin + c) * cols + image * th * tw + t;
            std::slice::from_raw_parts_mut(v_ptr.get().add(at), len)
        };
        crate::isa::vectorized(|| W::input_plane(g, plane, scratch, dest));
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
        crate::isa::vectorized(|| W::output_plane(g, read, y, plane));
        if let Some(e) = epilogue {
            e.map(c, plane);
        }
    };
    // The transform's scratch, reused from plane to plane.
    if parallel {
        out.par_chunks_mut(g.plane_out())
            .enumerate()
            .for_each_init(Vec::new, output_plane);
    } else {
        let mut y = Vec::new();
        out.chunks_mut(g.plane_out())
            .enumerate()
            .for_each(|plane| output_plane(&mut y, plane));
    }
}

/// An input plane's scratch, reused from plane to plane: one zero-padded row, the plane's
/// column phases and the transform's intermediate rows.
pub(crate) struct InputScratch<T> {
    /// One padded input row, `m * width` long.
    padded: Vec<T>,
    /// `[m, rows, width]`: padded column `m k + j` of padded row `r` at `[j, r, k]`.
    phases: Vec<T>,
    /// The transform's intermediate values (each tiling's own layout).
    rows: Vec<T>,
}

impl<T> InputScratch<T> {
    fn new() -> Self {
        Self {
            padded: Vec::new(),
            phases: Vec::new(),
            rows: Vec::new(),
        }
    }
}

/// Splits one input plane, zero-padded to `rows` rows of `m * width` columns (padded row `r` is
/// input row `r - ph`, padded column `j` input column `j - pw`), into its `m` column phases
/// `s.phases`. The tilings' sizes make a padded row hold the whole input row: `m * tw >= ow =
/// w + 2 pw - 2`, so `pw + w <= m (tw + 1)`.
fn split_phases<T: Float>(
    g: &ConvGeometry,
    plane: &[T],
    s: &mut InputScratch<T>,
    m: usize,
    rows: usize,
    width: usize,
) {
    let (ph, pw) = g.padding;
    s.phases.clear();
    s.phases.resize(m * rows * width, T::zero());
    s.padded.clear();
    s.padded.resize(m * width, T::zero());
    for r in ph..(g.h + ph).min(rows) {
        s.padded[pw..pw + g.w].copy_from_slice(&plane[(r - ph) * g.w..][..g.w]);
        for (k, group) in s.padded.chunks_exact(m).enumerate() {
            for (j, &v) in group.iter().enumerate() {
                s.phases[(j * rows + r) * width + k] = v;
            }
        }
    }
}
