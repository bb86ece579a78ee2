//! A CPU 2-d convolution (im2col + gemm, Winograd F(2x2, 3x3)): forward, input-gradient and
//! weight-gradient passes on NCHW slices, parallel on the rayon pool.
//!
//! candle 0.11's CPU `conv2d` copies the whole input to NHWC serially, re-lays out the kernel
//! serially and builds its im2col tiles element by element with strided writes: most of a
//! training step goes there rather than into the matrix product. These kernels work in the
//! tensors' own NCHW order:
//!
//! * **Forward**: im2col into a reusable buffer, the column matrix `[Cin/g * kh * kw, oh * ow]`
//!   of each group, then one gemm per group, `W_g [Cout/g, K] x col_g [K, oh * ow]`, written
//!   straight into the output. A 1x1 convolution with stride 1 and no padding needs no
//!   im2col: the input planes are the column matrix.
//!   3x3, stride-1 convolutions with at least 16 channels each way and enough output tiles
//!   run Winograd F(2x2, 3x3) instead (`winograd`: 16 products of `[Cout, Cin] x [Cin,
//!   tiles]`, 2.25x fewer multiply-adds; equal to the direct convolution up to rounding), and
//!   in inference passes ([`forward_inference`]) F(4x4, 3x3) on maps at least 16 wide (36
//!   products, 4x fewer); with the weight transformed once ([`prepare_weight`],
//!   [`forward_prepared`]) also on the small maps of batch-1 inference.
//! * **Weight gradient**: `dW_g = sum_n grad_g [Cout/g, oh * ow] x col_g^T`, the images split
//!   into one contiguous run per thread, each accumulating its own partial sum, the partial
//!   sums added in a fixed order (results do not depend on scheduling).
//! * **Input gradient**, only when the input takes part in autograd (never for the image
//!   batch): for 3x3 stride-1 convolutions, Winograd's forward pass of the output gradient by
//!   the transposed, flipped weight (`winograd::input_grad`, no column matrix), through
//!   Winograd where it qualifies and through im2col (no col2im) on small maps of at least
//!   4x4 positions; otherwise `col_grad_g = W_g^T x grad_g` then col2im, a scatter-add of the
//!   columns into the input gradient (stride, padding and dilation included).
//!
//! im2col builds each row of a column matrix with one contiguous copy per output row (zeros
//! for the padding); on maps at most 16 wide (whole images), where those copies are a few
//! values each, it gathers each plane through per-tap index tables instead (`tables`), and
//! col2im scatters the same way. With a stride `s > 1` and at least `s^2` kernel taps, the input planes
//! are first split into `s` column phases ([`PlaneLayout`]) so that the copies stay contiguous
//! (col2im likewise adds into split planes, merged at the end); other strided convolutions
//! gather.
//!
//! The work goes in tiles ([`Tile`]) of about [`BAND_BYTES`] of column matrices: a band of
//! output rows of a large image, so that the columns are still in the core's cache when the
//! gemm reads them (and the buffer stays small however large the image); or a block of whole
//! small images side by side (columns `(image, oy, ox)`), so that the gemms are wide enough
//! and go through the weight once per block rather than once per image: ResNet's last stages
//! on small inputs have 1 to 16 output positions per image. A block's outputs (and output
//! gradients) go through a `[Cout, images * oh * ow]` matrix, one copy each way.
//!
//! The images are spread over the rayon pool (one run of images per thread, gemm serial)
//! when there are at least as many images as threads, otherwise the work is parallel inside
//! each image (im2col / col2im rows and the gemm's own rayon parallelism). Tiny convolutions
//! run on the calling thread. The gemm is the `gemm` crate's, the one candle's matmul uses.
//!
//! Kernel taps that read only padding at every output position ([`ConvGeometry::live_taps`]: all
//! but the centre of a 3x3 kernel on a 1x1 map, as in ResNet's last stage on 32x32 images) are
//! left out of the column matrices and the products (the weight's live columns are gathered,
//! a copy the size of the weight, only for such convolutions), their weight gradient is 0.
//!
//! The rows of a column matrix are ordered `(c, ky, kx)` within each group, PyTorch's order:
//! the weight `[Cout, Cin/g, kh, kw]` is the `[Cout, K]` matrix as it is, with no re-layout
//! on any pass. (An earlier `(ky, kx, c)` order, candle's, needed a transposed copy of the
//! weight on every forward and input-gradient pass and of the weight gradient: 12% of a
//! ResNet-18 inference at batch 1.)
//!
//! [`forward`] takes an optional per-output-channel epilogue ([`ConvEpilogue`]: bias,
//! eval-mode batch norm, ReLU; [`Epilogue::with_residual`]: a residual tensor added before the
//! ReLU, ResNet's block output) applied to each tile's outputs right after its gemm (each
//! Winograd output plane right after its transform), while they are in the cache, instead of
//! as separate passes over the whole output. The epilogue is the same arithmetic, in the same
//! order, as the bias addition, the batch norm eval pass, the residual addition and the ReLU it
//! replaces: the results are the same bits.
//!
//! Scratch buffers (column matrices, phase-split planes, Winograd's transforms) are kept per
//! thread from one call to the next (`crate::scratch`) and only grown: not allocated and
//! zero-filled on every call.
//!
//! Groups run as a loop of gemms inside the kernels (no per-group tensors); padding is
//! symmetric (pad explicitly for asymmetric padding); kernels may be rectangular; inputs may
//! be non-contiguous (the caller gathers them). `f32` and `f64` only. Second-order
//! gradients are not supported.

use crate::elementwise::relu_value;
use crate::{bail, Float, Result};
use ::gemm::Parallelism;
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

mod columns;
mod driver;
mod epilogue;
mod geometry;
mod im2col;
mod params;
mod product;
mod tables;
mod winograd;

pub use columns::Columns;
pub(crate) use driver::*;
pub use epilogue::Epilogue;
pub(crate) use geometry::*;
pub use geometry::{output_len, ConvGeometry, Plan};
pub(crate) use im2col::*;
pub use params::ConvParams;
pub(crate) use product::*;
pub(crate) use tables::*;
pub(crate) use winograd::{a_transpose, b_transpose, f4_weight};
pub use winograd::{
    forward_prepared, prepare_weight, prepared_choice, set_winograd, winograd, Choice as WinogradTiling,
    PreparedWeight, Winograd, ENV_VAR as WINOGRAD_ENV_VAR,
};

/// Below this many multiply-adds a pass runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 18;

/// The size of a tile's column matrices ([`Tile`]): im2col fills them a block of small images
/// or a band of output rows of a large image at a time, small enough to stay in the cache
/// (L2 / L3) until the gemm reads them (2 MiB measured best on a 2-core EPYC, with the AVX2
/// kernels and again with the AVX-512 ones on Zen 5, against 0.5 and 1 MiB).
const BAND_BYTES: usize = 1 << 21;

/// A per-output-channel map applied to a convolution's output inside [`forward`]:
/// `y = ((acc + bias) - mean) * scale + shift`, then `max(y, 0)` (NaN kept) with `relu`.
/// Vectors have one value per output channel; they are used in the element type (batch
/// norm's eval coefficients computed as its fused kernel computes them give its bits).
/// `mean`, `scale` and `shift` all empty: no batch norm (`y = acc + bias`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConvEpilogue {
    /// Added first (the convolution's bias); `None`: nothing added.
    pub bias: Option<Vec<f64>>,
    /// Subtracted next (a batch norm's running mean).
    pub mean: Vec<f64>,
    /// Then multiplied (`weight / sqrt(running_var + eps)`).
    pub scale: Vec<f64>,
    /// Then added (the batch norm's bias).
    pub shift: Vec<f64>,
    /// Then a ReLU.
    pub relu: bool,
}

impl ConvEpilogue {
    /// Checks that every vector has one value per output channel (`mean`, `scale` and
    /// `shift` may all be empty: no batch norm), naming `op` in the error.
    pub fn check(&self, op: &str, cout: usize) -> Result<()> {
        let lengths = [
            self.mean.len(),
            self.scale.len(),
            self.shift.len(),
            self.bias.as_ref().map_or(cout, Vec::len),
        ];
        let no_norm = self.mean.is_empty() && self.scale.is_empty() && self.shift.is_empty();
        if lengths
            .iter()
            .enumerate()
            .any(|(i, &l)| l != cout && !(no_norm && i < 3))
        {
            bail!(
                "{op}: the epilogue needs {cout} values per vector (mean, scale, shift, bias; the first three may all be empty), got {lengths:?}"
            )
        }
        Ok(())
    }
}

impl ConvGeometry {
    /// Checks that buffers of these lengths hold the input, the weight and the output (or
    /// output gradient) of this convolution, naming `op` in the error.
    pub fn check_lengths(&self, op: &str, x: usize, weight: usize, out: usize) -> Result<()> {
        let expected = [
            self.n * self.image_in(),
            self.cout * self.cg() * self.kh * self.kw,
            self.n * self.image_out(),
        ];
        if [x, weight, out] != expected {
            bail!(
                "{op}: buffers of {:?} values for input {:?}, weight {:?}, output {:?} ({expected:?} values)",
                [x, weight, out],
                self.input_dims(),
                self.weight_dims(),
                self.output_dims()
            )
        }
        Ok(())
    }
}

/// The outputs `[N, Cout, oh, ow]` of the convolution `g` of `x` `[N, Cin, H, W]` by `weight`
/// `[Cout, Cin/groups, kh, kw]` (contiguous, row-major), each output tile followed by
/// `epilogue` while it is in the cache; `keep`: where a training pass keeps its column
/// matrices for [`weight_grad`] (see [`Columns`]). Errors when the buffers do not have `g`'s
/// sizes or the epilogue has not one value per output channel.
pub fn forward<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    epilogue: Option<&Epilogue<T>>,
    keep: Option<&Columns>,
) -> Result<Vec<T>> {
    check_forward(g, x, weight, epilogue)?;
    Ok(forward_impl(g, x, weight, epilogue, keep, false))
}

/// Checks a forward pass's buffers against `g`'s sizes and its epilogue against `Cout`.
fn check_forward<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    epilogue: Option<&Epilogue<T>>,
) -> Result<()> {
    g.check_lengths("conv2d forward", x.len(), weight.len(), g.n * g.image_out())?;
    if let Some(e) = epilogue {
        e.check("conv2d forward", g.cout)?;
        e.check_residual("conv2d forward", g)?;
    }
    Ok(())
}

/// [`forward`] for a pass no gradient will be asked of (inference: eval-mode layers outside
/// autograd). It may take algorithms whose rounding differs more from the direct
/// convolution's: Winograd F(4x4, 3x3) for 3x3 stride-1 layers on maps at least 16 wide (4x
/// fewer multiply-adds than the direct convolution, against F(2x2)'s 2.25x; within about 1e-5
/// of the outputs' scale in f32), which [`forward`] does not take (see the `winograd` module:
/// in training a differently rounded output can turn a max pool's choice and move a gradient).
pub fn forward_inference<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    epilogue: Option<&Epilogue<T>>,
) -> Result<Vec<T>> {
    check_forward(g, x, weight, epilogue)?;
    Ok(forward_impl(g, x, weight, epilogue, None, true))
}

/// The input gradient `[N, Cin, H, W]` from the output gradient `[N, Cout, oh, ow]` and the
/// weight (the adjoint of [`forward`] without epilogue).
pub fn input_grad<T: Float>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Result<Vec<T>> {
    check_input_grad(g, grad, weight)?;
    Ok(input_grad_impl(g, grad, weight))
}

/// Checks an input-gradient pass's buffers against `g`'s sizes.
fn check_input_grad<T>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Result<()> {
    g.check_lengths(
        "conv2d input gradient",
        g.n * g.image_in(),
        weight.len(),
        grad.len(),
    )
}

/// [`input_grad`] by im2col's adjoint (`W^T x grad`, then col2im) whatever the convolution:
/// what [`input_grad`] runs where Winograd does not apply, public so that tests and benches
/// can set the two side by side.
pub fn input_grad_im2col<T: Float>(g: &ConvGeometry, grad: &[T], weight: &[T]) -> Result<Vec<T>> {
    check_input_grad(g, grad, weight)?;
    Ok(input_grad_columns(g, grad, weight))
}

/// The weight gradient `[Cout, Cin/groups, kh, kw]` from the input and the output gradient,
/// from the forward pass's kept columns where `kept` has them (the same bits either way).
pub fn weight_grad<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    grad: &[T],
    kept: Option<&Columns>,
) -> Result<Vec<T>> {
    let weight = g.cout * g.cg() * g.kh * g.kw;
    g.check_lengths("conv2d weight gradient", x.len(), weight, grad.len())?;
    Ok(weight_grad_impl(g, x, grad, kept))
}
