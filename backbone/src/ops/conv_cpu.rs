//! A CPU 2-d convolution (im2col + gemm) with forward and backward passes as candle custom ops.
//!
//! candle 0.11's CPU `conv2d` copies the whole input to NHWC serially, re-lays out the kernel
//! serially and builds its im2col tiles element by element with strided writes: most of a
//! training step goes there rather than into the matrix product. [`conv2d_cpu`] works in the
//! tensors' own NCHW order:
//!
//! * **Forward**: im2col into a reusable buffer, the column matrix `[Cin/g * kh * kw, oh * ow]`
//!   of each group, then one gemm per group, `W_g [Cout/g, K] x col_g [K, oh * ow]`, written
//!   straight into the output. A 1x1 convolution with stride 1 and no padding needs no
//!   im2col: the input planes are the column matrix.
//! * **Weight gradient**: `dW_g = sum_n grad_g [Cout/g, oh * ow] x col_g^T`, the images split
//!   into one contiguous run per thread, each accumulating its own partial sum, the partial
//!   sums added in a fixed order (results do not depend on scheduling).
//! * **Input gradient**, only when the input takes part in autograd (never for the image
//!   batch): `col_grad_g = W_g^T x grad_g` then col2im, a scatter-add of the columns into the
//!   input gradient (stride, padding and dilation included).
//!
//! im2col builds each row of a column matrix with one contiguous copy per output row (zeros
//! for the padding). With a stride `s > 1` and at least `s^2` kernel taps, the input planes
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
//! Kernel taps that read only padding at every output position ([`Geometry::live_taps`]: all
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
//! [`conv2d_cpu_fused`] is the forward pass alone (no gradient) with a per-output-channel
//! epilogue ([`ConvEpilogue`]: bias, eval-mode batch norm, ReLU) applied to each tile's
//! outputs right after its gemm, while they are in the cache, instead of as separate passes
//! over the whole output. The epilogue is the same arithmetic, in the same order, as the bias
//! addition, [`super::batch_norm_eval`] and [`super::relu`] it replaces: the results are the
//! same bits.
//!
//! Groups run as a loop of gemms inside the kernels (no per-group tensors); padding is
//! symmetric (pad explicitly for asymmetric padding); kernels may be rectangular; inputs may
//! be non-contiguous (they are gathered through their [`Layout`]). `f32` and `f64` only:
//! [`crate::ops::conv2d`] sends other dtypes and devices to candle's convolution. Second-order
//! gradients are not supported.

use super::conv::ConvParams;
use super::relu::relu_value;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use gemm::Parallelism;
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

/// Below this many multiply-adds a pass runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 18;

/// The size of a tile's column matrices ([`Tile`]): im2col fills them a block of small images
/// or a band of output rows of a large image at a time, small enough to stay in the cache
/// (L2 / L3) until the gemm reads them (2 MiB measured best on a 2-core AVX2 EPYC).
const BAND_BYTES: usize = 1 << 21;

/// `xs` `[N, Cin, H, W]` convolved with `weight` `[Cout, Cin/groups, kh, kw]` on the CPU in
/// `f32` or `f64` (PyTorch's `F.conv2d` semantics: cross-correlation, symmetric zero padding);
/// differentiable w.r.t. both arguments, with no input gradient computed for an input outside
/// autograd. See the [module documentation](self).
///
/// Errors on tensors that are not on the CPU, not `f32` / `f64`, of different dtypes, or of
/// inconsistent shapes.
pub fn conv2d_cpu(xs: &Tensor, weight: &Tensor, p: ConvParams) -> Result<Tensor> {
    let geometry = checked_geometry("conv2d_cpu", xs, weight, p)?;
    xs.apply_op2(
        weight,
        ConvCpu {
            geometry,
            pass: Pass::Forward,
        },
    )
}

/// A per-output-channel map applied to a convolution's output inside [`conv2d_cpu_fused`]:
/// `y = ((acc + bias) - mean) * scale + shift`, then `max(y, 0)` (NaN kept) with `relu`.
/// Vectors have one value per output channel; they are used in the tensors' dtype (the
/// values of [`super::batch_norm_eval_coefficients`] give [`super::batch_norm_eval`]'s bits).
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

/// [`conv2d_cpu`]'s forward pass followed by `epilogue` on each output tile, right after its
/// gemm while it is in the cache, as one op **without gradient**: the result takes no part in
/// autograd whatever its inputs. For eval-mode inference (conv + batch norm + ReLU in one pass
/// over the output; the same bits as the separate bias addition, [`super::batch_norm_eval`]
/// and [`super::relu`] given [`super::batch_norm_eval_coefficients`]'s values).
///
/// Errors like [`conv2d_cpu`], and when an epilogue vector does not have one value per output
/// channel.
pub fn conv2d_cpu_fused(
    xs: &Tensor,
    weight: &Tensor,
    p: ConvParams,
    epilogue: &ConvEpilogue,
) -> Result<Tensor> {
    let geometry = checked_geometry("conv2d_cpu_fused", xs, weight, p)?;
    let e = epilogue;
    let lengths = [
        e.mean.len(),
        e.scale.len(),
        e.shift.len(),
        e.bias.as_ref().map_or(geometry.cout, Vec::len),
    ];
    let no_norm = e.mean.is_empty() && e.scale.is_empty() && e.shift.is_empty();
    if lengths
        .iter()
        .enumerate()
        .any(|(i, &l)| l != geometry.cout && !(no_norm && i < 3))
    {
        bail!(
            "conv2d_cpu_fused: the epilogue needs {} values per vector (mean, scale, shift, bias; the first three may all be empty), got {lengths:?}",
            geometry.cout
        )
    }
    xs.apply_op2_no_bwd(
        weight,
        &ConvCpuFused {
            geometry,
            epilogue: epilogue.clone(),
        },
    )
}

/// `relu(conv2d(xs, weight) + bias)` on the CPU as one differentiable op: the bias and the
/// ReLU are applied to each output tile right after its gemm ([`ConvEpilogue`]), and only the
/// input and the activated output stay alive for the backward pass (the separate ops keep the
/// convolution's output and the biased output as well: two more activation-sized tensors per
/// layer, as PyTorch's in-place ReLU does not). The backward pass masks the output gradient
/// with `output > 0` once, then computes the bias gradient (per-channel sums) and the input
/// and weight gradients of [`conv2d_cpu`] from it. Values and gradients are the same bits as
/// [`conv2d_cpu`], [`super::add_channel_bias`] and [`super::relu`] in sequence.
///
/// Errors like [`conv2d_cpu`], and when `bias` is not a vector of `Cout` values of the same
/// dtype on the CPU.
pub fn conv2d_cpu_bias_relu(xs: &Tensor, weight: &Tensor, bias: &Tensor, p: ConvParams) -> Result<Tensor> {
    let geometry = checked_geometry("conv2d_cpu_bias_relu", xs, weight, p)?;
    if bias.dims() != [geometry.cout] || bias.dtype() != xs.dtype() || !bias.device().is_cpu() {
        bail!(
            "conv2d_cpu_bias_relu: expected a {:?} CPU bias of shape [{}], got {:?} {:?} of shape {:?}",
            xs.dtype(),
            geometry.cout,
            bias.device().location(),
            bias.dtype(),
            bias.dims()
        )
    }
    xs.apply_op3(weight, bias, ConvCpuBiasRelu { geometry })
}

/// The geometry of a convolution of `xs` by `weight` for the op `op`, after checking that the
/// CPU kernels handle them ([`supports`]).
fn checked_geometry(op: &str, xs: &Tensor, weight: &Tensor, p: ConvParams) -> Result<Geometry> {
    if !supports(xs, weight) {
        bail!(
            "{op}: expected CPU tensors, both f32 or both f64, got {:?} {:?} and {:?} {:?}",
            xs.device().location(),
            xs.dtype(),
            weight.device().location(),
            weight.dtype()
        )
    }
    Geometry::new(xs.dims(), weight.dims(), p)
}

/// Whether [`conv2d_cpu`] handles these tensors: both on the CPU, both `f32` or both `f64`.
pub fn supports(xs: &Tensor, weight: &Tensor) -> bool {
    xs.device().is_cpu()
        && weight.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == xs.dtype()
}

// ---------------------------------------------------------------------------------------------
// Geometry.

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    groups: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    padding: usize,
    stride: usize,
    dilation: usize,
    /// How many kernel taps are live ([`Geometry::live_taps`]).
    live: usize,
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], p: ConvParams) -> Result<Self> {
        let [n, cin, h, w] = *x else {
            bail!("conv2d: expected a 4-d (N, C, H, W) input, got shape {x:?}")
        };
        let [cout, cg, kh, kw] = *weight else {
            bail!("conv2d: expected a 4-d (Cout, Cin/groups, kh, kw) weight, got shape {weight:?}")
        };
        if p.stride == 0 || p.dilation == 0 || p.groups == 0 {
            bail!("conv2d: stride, dilation and groups must be positive, got {p:?}")
        }
        if cin == 0 || cout == 0 || h == 0 || w == 0 || kh == 0 || kw == 0 {
            bail!("conv2d: channels, sizes and kernel must be positive: input {x:?}, weight {weight:?}")
        }
        if !cin.is_multiple_of(p.groups) || !cout.is_multiple_of(p.groups) || cg * p.groups != cin {
            bail!(
                "conv2d: a weight {weight:?} with {} groups does not fit an input of {cin} channels",
                p.groups
            )
        }
        let out = |len: usize, k: usize| {
            (len + 2 * p.padding)
                .checked_sub(p.dilation * (k - 1) + 1)
                .map(|v| v / p.stride + 1)
        };
        let (Some(oh), Some(ow)) = (out(h, kh), out(w, kw)) else {
            bail!(
                "conv2d: input {h}x{w} is too small for a {kh}x{kw} kernel with padding {} and \
                 dilation {}",
                p.padding,
                p.dilation
            )
        };
        let mut g = Self {
            n,
            cin,
            h,
            w,
            cout,
            groups: p.groups,
            kh,
            kw,
            oh,
            ow,
            padding: p.padding,
            stride: p.stride,
            dilation: p.dilation,
            live: kh * kw,
        };
        g.live = g.live_taps().len();
        Ok(g)
    }

    /// The kernel taps `ky * kw + kx` that read the input at some output position. The
    /// others only ever multiply padding (all but the centre tap of a 3x3 convolution of a
    /// 1x1 map, ResNet's last stage on 32x32 images): they are left out of the column
    /// matrices, of the weight's rows and of the products, and their weight gradient is 0.
    fn live_taps(&self) -> Vec<usize> {
        let (rows, cols) = self.spans();
        (0..self.kh * self.kw)
            .filter(|&t| {
                let (r, c) = (rows[t / self.kw], cols[t % self.kw]);
                r.lo < r.hi && c.lo < c.hi
            })
            .collect()
    }

    /// Whether every kernel tap is live (the weight is then used as it is).
    fn all_live(&self) -> bool {
        self.live == self.kh * self.kw
    }

    /// Input channels per group.
    fn cg(&self) -> usize {
        self.cin / self.groups
    }

    /// Output channels per group.
    fn og(&self) -> usize {
        self.cout / self.groups
    }

    /// Rows of a group's column matrix (the gemms' inner dimension): input channels times
    /// live taps.
    fn k(&self) -> usize {
        self.cg() * self.live
    }

    fn plane_in(&self) -> usize {
        self.h * self.w
    }

    fn plane_out(&self) -> usize {
        self.oh * self.ow
    }

    fn image_in(&self) -> usize {
        self.cin * self.plane_in()
    }

    fn image_out(&self) -> usize {
        self.cout * self.plane_out()
    }

    /// A 1x1 convolution with stride 1 and no padding: the input planes are the columns.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }

    /// Whether im2col / col2im work on planes split into column phases (see [`PlaneLayout`]):
    /// strided convolutions whose kernel has at least `stride^2` taps.
    fn phased(&self) -> bool {
        self.stride > 1 && self.kh * self.kw >= self.stride * self.stride
    }

    fn input_dims(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }

    fn weight_dims(&self) -> [usize; 4] {
        [self.cout, self.cg(), self.kh, self.kw]
    }

    fn output_dims(&self) -> [usize; 4] {
        [self.n, self.cout, self.oh, self.ow]
    }

    /// Multiply-adds of one pass (forward, input or weight gradient).
    fn work(&self) -> usize {
        self.n * self.image_out() * self.k()
    }

    /// Output rows reached by kernel row `ky` and the input row of output row 0.
    fn rows(&self, ky: usize) -> Span {
        Span::new(
            self.oh,
            self.h,
            self.stride,
            (ky * self.dilation) as isize - self.padding as isize,
        )
    }

    /// Output columns reached by kernel column `kx` and the input column of output column 0.
    fn cols(&self, kx: usize) -> Span {
        Span::new(
            self.ow,
            self.w,
            self.stride,
            (kx * self.dilation) as isize - self.padding as isize,
        )
    }

    /// The output spans of every kernel row and of every kernel column.
    fn spans(&self) -> (Vec<Span>, Vec<Span>) {
        (
            (0..self.kh).map(|ky| self.rows(ky)).collect(),
            (0..self.kw).map(|kx| self.cols(kx)).collect(),
        )
    }

    /// How a pass spreads over the thread pool.
    fn plan(&self) -> Plan {
        let threads = rayon::current_num_threads();
        if threads <= 1 || self.work() < PARALLEL_THRESHOLD {
            Plan::Serial
        } else if self.n >= threads && (self.n.is_multiple_of(threads) || self.n >= 4 * threads) {
            Plan::Images {
                per_thread: self.n.div_ceil(threads),
            }
        } else {
            Plan::Inside { threads }
        }
    }
}

/// The output positions `o` in `[lo, hi)` whose input position `o * stride + offset` lies
/// inside the input (`lo == hi` when there are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    lo: usize,
    hi: usize,
    offset: isize,
}

impl Span {
    fn new(output: usize, input: usize, stride: usize, offset: isize) -> Self {
        let s = stride as isize;
        // o >= ceil(-offset / s)
        let lo = if offset >= 0 { 0 } else { (-offset + s - 1) / s };
        // o <= floor((input - 1 - offset) / s)
        let last = input as isize - 1 - offset;
        let hi = if last < 0 { 0 } else { last / s + 1 };
        let lo = (lo as usize).min(output);
        let hi = (hi as usize).min(output).max(lo);
        Self { lo, hi, offset }
    }

    /// The input position of output position `o` (valid for `o` in `lo..hi`).
    #[inline(always)]
    fn input(&self, o: usize, stride: usize) -> usize {
        (o as isize * stride as isize + self.offset) as usize
    }
}

/// How a pass spreads over the thread pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Everything on the calling thread.
    Serial,
    /// Runs of `per_thread` images in parallel, each run serial inside.
    Images { per_thread: usize },
    /// Images one after the other, each parallel inside over `threads` threads.
    Inside { threads: usize },
}

impl Plan {
    /// The parallelism of the work inside one image.
    fn inner(self) -> Inner {
        match self {
            Plan::Serial | Plan::Images { .. } => Inner {
                gemm: Parallelism::None,
                rows: false,
            },
            Plan::Inside { threads } => Inner {
                gemm: Parallelism::Rayon(threads),
                rows: true,
            },
        }
    }
}

/// The parallelism inside one image: the gemm's, and whether the im2col / col2im rows are
/// spread over the pool.
#[derive(Debug, Clone, Copy)]
struct Inner {
    gemm: Parallelism,
    rows: bool,
}

// ---------------------------------------------------------------------------------------------
// Matrix product.

/// The element types of the kernels: those `gemm::gemm` multiplies (it panics on others).
trait Float: WithDType {}

impl Float for f32 {}
impl Float for f64 {}

/// Elements spanned by a `rows x cols` matrix with strides `(rs, cs)`.
fn span_of(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst = lhs x rhs` (or `dst += lhs x rhs` when `accumulate`), an `m x k` by `k x n` product,
/// each matrix given by a slice starting at its first element and its (row, column) strides.
///
/// Panics if a matrix does not fit its slice.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    parallelism: Parallelism,
) {
    assert!(
        span_of(m, n, dst_strides) <= dst.len(),
        "matmul: destination out of bounds"
    );
    assert!(
        span_of(m, k, lhs_strides) <= lhs.len(),
        "matmul: lhs out of bounds"
    );
    assert!(
        span_of(k, n, rhs_strides) <= rhs.len(),
        "matmul: rhs out of bounds"
    );
    assert!(
        [dst_strides, lhs_strides, rhs_strides]
            .iter()
            .all(|&(r, c)| r <= isize::MAX as usize && c <= isize::MAX as usize),
        "matmul: strides overflow"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_strides.0 + j * dst_strides.1] = T::zero();
                }
            }
        }
        return;
    }
    let alpha = if accumulate { T::one() } else { T::zero() };
    // SAFETY: the three matrices lie inside their slices (checked above: the last element of
    // each is at `span_of - 1 < len`); `dst` is borrowed mutably, so it aliases neither input;
    // `T: Float` is f32 or f64, types `gemm::gemm` supports. gemm
    // computes `dst = alpha * dst + beta * lhs * rhs`, reading `dst` only when `read_dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides.1 as isize,
            dst_strides.0 as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1 as isize,
            lhs_strides.0 as isize,
            rhs.as_ptr(),
            rhs_strides.1 as isize,
            rhs_strides.0 as isize,
            alpha,
            T::one(),
            false,
            false,
            false,
            parallelism,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// im2col / col2im.

/// The input planes of one image (or their gradients) as im2col / col2im read and write them.
///
/// With a stride `s > 1` the columns an output row reads are `s` apart. When the kernel has
/// at least `s * s` taps ([`Geometry::phased`]), the planes are first split into `s` column
/// phases (phase `ph` holds the columns `ph, ph + s, ph + 2s, ...`, `ceil(W / s)` of them), so
/// that every kernel tap reads (or writes) contiguous runs again; the split is one pass over
/// the input, the taps are `kh * kw / s^2` passes.
#[derive(Debug, Clone, Copy)]
struct PlaneLayout {
    h: usize,
    w: usize,
    stride: usize,
    /// 1 (the planes as they are) or `stride` (split into column phases).
    phases: usize,
    /// Length of a stored row: `w`, or `ceil(w / stride)` when split.
    row_len: usize,
}

impl PlaneLayout {
    fn new(g: &Geometry) -> Self {
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
    fn plane_len(&self) -> usize {
        self.phases * self.h * self.row_len
    }

    /// Where input column `ix` of row `iy` is stored in a plane, and the step between it and
    /// column `ix + stride`.
    #[inline(always)]
    fn locate(&self, iy: usize, ix: usize) -> (usize, usize) {
        if self.phases == 1 {
            (iy * self.w + ix, self.stride)
        } else {
            let (phase, j) = (ix % self.phases, ix / self.phases);
            ((phase * self.h + iy) * self.row_len + j, 1)
        }
    }

    /// Copies a plane `[H, W]` into `dst` (`plane_len` elements), split into its phases.
    fn split<T: Float>(&self, plane: &[T], dst: &mut [T]) {
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
    fn merge<T: Float>(&self, src: &[T], plane: &mut [T]) {
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
fn im2col_row<T: Float>(
    g: &Geometry,
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
fn col2im_row<T: Float>(
    g: &Geometry,
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
fn split_input<'a, T: Float>(
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

/// The column matrices of a tile, `[groups * K, tile.cols()]`, rows ordered `(group, ky, kx,
/// c)`, columns `(image, oy, ox)`, from the input `planes` of the tile's images (see
/// [`split_input`]).
fn im2col<T: Float>(
    g: &Geometry,
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
fn col2im<T: Float>(
    g: &Geometry,
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
fn gather_images<T: Float>(per_image: &[T], channels: usize, p: usize, batched: &mut [T]) {
    let images = per_image.len() / (channels * p);
    for (image, planes) in per_image.chunks_exact(channels * p).enumerate() {
        for (c, plane) in planes.chunks_exact(p).enumerate() {
            batched[(c * images + image) * p..][..p].copy_from_slice(plane);
        }
    }
}

/// The inverse of [`gather_images`].
fn scatter_images<T: Float>(batched: &[T], channels: usize, p: usize, per_image: &mut [T]) {
    let images = per_image.len() / (channels * p);
    for (image, planes) in per_image.chunks_exact_mut(channels * p).enumerate() {
        for (c, plane) in planes.chunks_exact_mut(p).enumerate() {
            plane.copy_from_slice(&batched[(c * images + image) * p..][..p]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The three passes over a run of images, tile by tile.

/// A block of work: several whole images (small ones) or a band of output rows of one image
/// (large ones), sized so that its column matrices take about [`BAND_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tile {
    /// Images, relative to the run.
    images: Range<usize>,
    /// Output rows.
    rows: Range<usize>,
}

impl Tile {
    /// Columns of the tile's matrices.
    fn cols(&self, g: &Geometry) -> usize {
        self.images.len() * self.rows.len() * g.ow
    }

    /// One whole image.
    fn single_image(&self, g: &Geometry) -> bool {
        self.images.len() == 1 && self.rows == (0..g.oh)
    }
}

impl Geometry {
    /// The tiles of a run of `images` images: blocks of whole images when an image's column
    /// matrices take at most half of [`BAND_BYTES`] (so that the gemms see the columns of
    /// several small images and go through the weight once for all of them), bands of output
    /// rows of one image otherwise (at least one row per band; whole images for pointwise
    /// convolutions, whose columns are the input planes).
    fn tiles<T>(&self, images: usize) -> Vec<Tile> {
        let row_bytes = (self.groups * self.k() * self.ow * std::mem::size_of::<T>()).max(1);
        let image_bytes = row_bytes * self.oh;
        if image_bytes * 2 <= BAND_BYTES {
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

/// Buffers reused from one tile to the next: the column matrices, the phase-split planes,
/// and the outputs (or output gradients) of a block of images as one matrix.
struct Scratch<T> {
    col: Vec<T>,
    split: Vec<T>,
    batched: Vec<T>,
}

impl<T> Scratch<T> {
    fn new() -> Self {
        Self {
            col: Vec::new(),
            split: Vec::new(),
            batched: Vec::new(),
        }
    }
}

/// The outputs `[images, Cout, oh * ow]` of a run of images from their inputs and the weight
/// rows `[Cout, K]`, each tile followed by the epilogue if any.
fn forward_run<T: Float>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    out: &mut [T],
    inner: Inner,
    epilogue: Option<&Epilogue<T>>,
) {
    let (og, k, p) = (g.og(), g.k(), g.plane_out());
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let layout = PlaneLayout::new(g);
    let Scratch { col, split, batched } = &mut Scratch::new();
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
        let planes = split_input(&layout, x, split, inner.rows);
        col.resize(g.groups * k * n, T::zero());
        im2col(g, &layout, planes, &tile, col, inner.rows);
        let single = tile.images.len() == 1;
        if !single {
            batched.resize(g.cout * n, T::zero());
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
    }
}

/// Output positions per band below which [`forward_bands`] is not used: narrower gemms lose
/// more than the gemm's own threading does.
const BAND_MIN_POSITIONS: usize = 256;

/// The forward pass of one image (fewer images than threads) split into bands of output rows
/// computed in parallel, each with its own im2col and a serial gemm into a band buffer, then
/// copied into the output: the gemm crate's own threading barely helps thin matrices (the
/// 7x7 stem of a batch-1 ResNet, `[64, 147] x [147, 12544]`, ran no faster on 2 threads than
/// on 1). Each output is the same sum as in [`forward_run`], so the results are the same bits.
fn forward_bands<T: Float>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    out: &mut [T],
    threads: usize,
    epilogue: Option<&Epilogue<T>>,
) {
    let (og, k, p) = (g.og(), g.k(), g.plane_out());
    let layout = PlaneLayout::new(g);
    let mut split = Vec::new();
    let planes = split_input(&layout, x, &mut split, true);
    let row_bytes = (g.groups * k * g.ow * std::mem::size_of::<T>()).max(1);
    let rows = g.oh.div_ceil(threads).min((BAND_BYTES / row_bytes).max(1));
    let bands: Vec<Range<usize>> = (0..g.oh).step_by(rows).map(|r| r..(r + rows).min(g.oh)).collect();
    let computed: Vec<Vec<T>> = bands
        .par_iter()
        .map(|rows| {
            let tile = Tile {
                images: 0..1,
                rows: rows.clone(),
            };
            let n = tile.cols(g);
            let mut col = Vec::new();
            // The columns `[groups * K, n]` and their row stride: the input planes themselves
            // (from the band's first position) for a pointwise convolution.
            let (cols, cols_rs, start): (&[T], usize, usize) = if g.pointwise() {
                (x, p, rows.start * g.ow)
            } else {
                col.resize(g.groups * k * n, T::zero());
                im2col(g, &layout, planes, &tile, &mut col, false);
                (&col, n, 0)
            };
            let mut band = vec![T::zero(); g.cout * n];
            for group in 0..g.groups {
                matmul(
                    (og, n, k),
                    &mut band[group * og * n..],
                    (n, 1),
                    false,
                    &w[group * og * k..],
                    (k, 1),
                    &cols[group * k * cols_rs + start..],
                    (cols_rs, 1),
                    Parallelism::None,
                );
            }
            if let Some(e) = epilogue {
                for (c, values) in band.chunks_exact_mut(n).enumerate() {
                    e.map(c, values);
                }
            }
            band
        })
        .collect();
    for (rows, band) in bands.iter().zip(computed) {
        let n = rows.len() * g.ow;
        for (plane, values) in out.chunks_exact_mut(p).zip(band.chunks_exact(n)) {
            plane[rows.start * g.ow..rows.end * g.ow].copy_from_slice(values);
        }
    }
}

/// [`ConvEpilogue`] in the element type.
struct Epilogue<T> {
    /// Empty without a bias.
    bias: Vec<T>,
    mean: Vec<T>,
    scale: Vec<T>,
    shift: Vec<T>,
    relu: bool,
}

impl<T: Float> Epilogue<T> {
    fn new(e: &ConvEpilogue) -> Self {
        let cast = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect();
        Self {
            bias: e.bias.as_deref().map_or_else(Vec::new, cast),
            mean: cast(&e.mean),
            scale: cast(&e.scale),
            shift: cast(&e.shift),
            relu: e.relu,
        }
    }

    /// Maps output rows `rows` of every channel of the images in `out` (whole images).
    fn apply(&self, g: &Geometry, out: &mut [T], rows: &Range<usize>) {
        let span = rows.start * g.ow..rows.end * g.ow;
        for image in out.chunks_exact_mut(g.image_out()) {
            for (c, plane) in image.chunks_exact_mut(g.plane_out()).enumerate() {
                if let Some(values) = plane.get_mut(span.clone()) {
                    self.map(c, values);
                }
            }
        }
    }

    /// The same operations, in the same order, as the bias addition, the batch norm eval
    /// kernel and the ReLU kernel.
    #[inline(always)]
    fn map(&self, c: usize, values: &mut [T]) {
        if self.mean.is_empty() {
            // No batch norm: the bias addition and the ReLU kernel.
            match (self.bias.get(c).copied(), self.relu) {
                (None, false) => {}
                (None, true) => values.iter_mut().for_each(|v| *v = relu_value(*v)),
                (Some(b), false) => values.iter_mut().for_each(|v| *v += b),
                (Some(b), true) => values.iter_mut().for_each(|v| *v = relu_value(*v + b)),
            }
            return;
        }
        let (Some(&m), Some(&q), Some(&r)) = (self.mean.get(c), self.scale.get(c), self.shift.get(c)) else {
            return;
        };
        match (self.bias.get(c).copied(), self.relu) {
            (None, false) => values.iter_mut().for_each(|v| *v = (*v - m) * q + r),
            (None, true) => values.iter_mut().for_each(|v| *v = relu_value((*v - m) * q + r)),
            (Some(b), false) => values.iter_mut().for_each(|v| *v = (*v + b - m) * q + r),
            (Some(b), true) => values
                .iter_mut()
                .for_each(|v| *v = relu_value((*v + b - m) * q + r)),
        }
    }
}

/// The input gradients `[images, Cin, H * W]` (zero on entry) of a run of images from their
/// output gradients.
fn input_grad_run<T: Float>(g: &Geometry, grad: &[T], w: &[T], dx: &mut [T], inner: Inner) {
    let (og, k, p) = (g.og(), g.k(), g.plane_out());
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let layout = PlaneLayout::new(g);
    let Scratch { col, split, batched } = &mut Scratch::new();
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
            batched.resize(g.cout * n, T::zero());
            gather_images(grad, g.cout, p, batched);
            (batched, n, 0)
        };
        col.resize(g.groups * k * n, T::zero());
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
}

/// The weight gradient `[Cout, K]` of a run of images.
fn weight_grad_run<T: Float>(g: &Geometry, x: &[T], grad: &[T], inner: Inner) -> Vec<T> {
    let (og, k, p) = (g.og(), g.k(), g.plane_out());
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let layout = PlaneLayout::new(g);
    let Scratch { col, split, batched } = &mut Scratch::new();
    let mut dw = vec![T::zero(); g.cout * k];
    for (i, tile) in g.tiles::<T>(x.len() / image_in).into_iter().enumerate() {
        let images = tile.images.len();
        let x = &x[tile.images.start * image_in..tile.images.end * image_in];
        let grad = &grad[tile.images.start * image_out..tile.images.end * image_out];
        // The columns `[groups * K, n]`: the input planes themselves for a pointwise
        // convolution of one whole image.
        let (cols, n): (&[T], usize) = if g.pointwise() && tile.single_image(g) {
            (x, p)
        } else {
            let n = tile.cols(g);
            let planes = split_input(&layout, x, split, inner.rows);
            col.resize(g.groups * k * n, T::zero());
            im2col(g, &layout, planes, &tile, col, inner.rows);
            (col, n)
        };
        let (grad, grad_rs, grad_start): (&[T], _, _) = if images == 1 {
            (grad, p, tile.rows.start * g.ow)
        } else {
            batched.resize(g.cout * n, T::zero());
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
    dw
}

// ---------------------------------------------------------------------------------------------
// The three passes over the batch.

/// Runs `f(run of inputs, run of outputs)` over runs of images as the plan says.
fn over_images<T: Float>(
    plan: Plan,
    input: &[T],
    input_len: usize,
    out: &mut [T],
    out_len: usize,
    f: impl Fn(&[T], &mut [T], Inner) + Sync,
) {
    let inner = plan.inner();
    match plan {
        Plan::Images { per_thread } => out
            .par_chunks_mut(per_thread * out_len)
            .zip(input.par_chunks(per_thread * input_len))
            .for_each(|(o, i)| f(i, o, inner)),
        Plan::Serial | Plan::Inside { .. } => f(input, out, inner),
    }
}

/// The weight `[Cout, Cin/g * kh * kw]` restricted to the live taps, `[Cout, K]`
/// ([`Geometry::live_taps`]): the weight itself when every tap is live.
fn live_weight<'a, T: Float>(g: &Geometry, weight: &'a [T]) -> Cow<'a, [T]> {
    if g.all_live() {
        return Cow::Borrowed(weight);
    }
    let (live, taps) = (g.live_taps(), g.kh * g.kw);
    let rows = weight.chunks_exact(taps);
    Cow::Owned(rows.flat_map(|row| live.iter().map(move |&t| row[t])).collect())
}

/// The inverse of [`live_weight`] for a weight gradient: zeros at the dead taps.
fn full_weight_grad<T: Float>(g: &Geometry, live_grad: Vec<T>) -> Vec<T> {
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

fn forward<T: Float>(g: &Geometry, x: &[T], weight: &[T], epilogue: Option<&Epilogue<T>>) -> Vec<T> {
    let weight = &*live_weight(g, weight);
    let mut out = vec![T::zero(); g.n * g.image_out()];
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
        |x, out, inner| forward_run(g, x, weight, out, inner, epilogue),
    );
    out
}

fn input_grad<T: Float>(g: &Geometry, grad: &[T], weight: &[T]) -> Vec<T> {
    let weight = &*live_weight(g, weight);
    let mut dx = vec![T::zero(); g.n * g.image_in()];
    over_images(
        g.plan(),
        grad,
        g.image_out(),
        &mut dx,
        g.image_in(),
        |grad, dx, inner| input_grad_run(g, grad, weight, dx, inner),
    );
    dx
}

fn weight_grad<T: Float>(g: &Geometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let plan = g.plan();
    let inner = plan.inner();
    let dw = match plan {
        Plan::Images { per_thread } => {
            // One partial sum per run of images, added in a fixed order.
            let partials: Vec<Vec<T>> = x
                .par_chunks(per_thread * image_in)
                .zip(grad.par_chunks(per_thread * image_out))
                .map(|(x, grad)| weight_grad_run(g, x, grad, inner))
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
        Plan::Serial | Plan::Inside { .. } => weight_grad_run(g, x, grad, inner),
    };
    full_weight_grad(g, dw)
}

// ---------------------------------------------------------------------------------------------
// Custom ops.

/// The elements of a CPU buffer seen through `layout` as a contiguous row-major slice:
/// borrowed when the layout is already contiguous, gathered otherwise. Checks the dims and
/// that the layout stays inside the buffer, so indexing cannot panic.
pub(super) fn contiguous<'a, T: Copy>(
    op: &str,
    data: &'a [T],
    layout: &Layout,
    dims: [usize; 4],
) -> Result<Cow<'a, [T]>> {
    if layout.dims() != dims {
        bail!(
            "{op}: expected a tensor of shape {dims:?}, got {:?}",
            layout.dims()
        )
    }
    let count: usize = dims.iter().product();
    if let Some((start, end)) = layout.contiguous_offsets() {
        return match data.get(start..end) {
            Some(slice) => Ok(Cow::Borrowed(slice)),
            None => bail!(
                "{op}: layout {layout:?} does not fit a buffer of {} elements",
                data.len()
            ),
        };
    }
    let &[s0, s1, s2, s3] = layout.stride() else {
        bail!("{op}: expected a 4-d layout, got {layout:?}")
    };
    let start = layout.start_offset();
    if count > 0 {
        let last = dims.iter().zip([s0, s1, s2, s3]).try_fold(start, |acc, (&d, s)| {
            (d - 1).checked_mul(s).and_then(|x| x.checked_add(acc))
        });
        match last {
            Some(last) if last < data.len() => {}
            _ => bail!(
                "{op}: layout {layout:?} does not fit a buffer of {} elements",
                data.len()
            ),
        }
    }
    let mut out = Vec::with_capacity(count);
    for a in 0..dims[0] {
        for b in 0..dims[1] {
            for c in 0..dims[2] {
                let row = start + a * s0 + b * s1 + c * s2;
                if s3 == 1 {
                    out.extend_from_slice(&data[row..row + dims[3]]);
                } else if s3 == 0 {
                    // A broadcast row (the gradient of a sum, for instance).
                    out.extend(std::iter::repeat_n(data[row], dims[3]));
                } else {
                    out.extend((0..dims[3]).map(|d| data[row + d * s3]));
                }
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// Which pass a [`ConvCpu`] op computes, by its two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// (input, weight) -> output; its backward runs the other two.
    Forward,
    /// (output gradient, weight) -> input gradient.
    InputGrad,
    /// (input, output gradient) -> weight gradient.
    WeightGrad,
}

/// One pass of the convolution as a candle custom op.
#[derive(Debug, Clone, Copy)]
struct ConvCpu {
    geometry: Geometry,
    pass: Pass,
}

impl ConvCpu {
    fn run<T: Float>(&self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let name = self.name();
        let (out, dims) = match self.pass {
            Pass::Forward => return forward_storage(g, name, (a, la), (b, lb), None),
            Pass::InputGrad => {
                let grad = contiguous(name, a, la, g.output_dims())?;
                let w = contiguous(name, b, lb, g.weight_dims())?;
                (input_grad(g, &grad, &w), g.input_dims())
            }
            Pass::WeightGrad => {
                let x = contiguous(name, a, la, g.input_dims())?;
                let grad = contiguous(name, b, lb, g.output_dims())?;
                (weight_grad(g, &x, &grad), g.weight_dims())
            }
        };
        Ok((T::to_cpu_storage_owned(out), Shape::from(dims.to_vec())))
    }
}

impl CustomOp2 for ConvCpu {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "conv2d_cpu",
            Pass::InputGrad => "conv2d_cpu_input_grad",
            Pass::WeightGrad => "conv2d_cpu_weight_grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name(), (s1 => a, s2 => b), self.run(a, l1, b, l2))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if self.pass != Pass::Forward {
            bail!("{}: second-order gradients are not supported", self.name())
        }
        conv_grads(self.geometry, xs, weight, grad)
    }
}

/// The input and weight gradients of a convolution from its output gradient, each only for
/// an argument that takes part in autograd (never the input gradient of the image batch).
fn conv_grads(
    geometry: Geometry,
    xs: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let op = |pass| ConvCpu { geometry, pass };
    let grad_x = match xs.track_op() {
        true => Some(grad.apply_op2_no_bwd(weight, &op(Pass::InputGrad))?),
        false => None,
    };
    let grad_w = match weight.track_op() {
        true => Some(xs.apply_op2_no_bwd(grad, &op(Pass::WeightGrad))?),
        false => None,
    };
    Ok((grad_x, grad_w))
}

/// The forward pass of `geometry` on CPU input and weight buffers seen through their layouts,
/// with an optional epilogue, as a custom op's result.
fn forward_storage<T: Float>(
    g: &Geometry,
    name: &str,
    (x, lx): (&[T], &Layout),
    (w, lw): (&[T], &Layout),
    epilogue: Option<&Epilogue<T>>,
) -> Result<(CpuStorage, Shape)> {
    let x = contiguous(name, x, lx, g.input_dims())?;
    let w = contiguous(name, w, lw, g.weight_dims())?;
    let out = forward(g, &x, &w, epilogue);
    Ok((
        T::to_cpu_storage_owned(out),
        Shape::from(g.output_dims().to_vec()),
    ))
}

/// The forward pass with an epilogue, without backward.
struct ConvCpuFused {
    geometry: Geometry,
    epilogue: ConvEpilogue,
}

impl ConvCpuFused {
    fn run<T: Float>(&self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<(CpuStorage, Shape)> {
        let epilogue = Epilogue::new(&self.epilogue);
        forward_storage(&self.geometry, self.name(), (a, la), (b, lb), Some(&epilogue))
    }
}

impl CustomOp2 for ConvCpuFused {
    fn name(&self) -> &'static str {
        "conv2d_cpu_fused"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name(), (s1 => a, s2 => b), self.run(a, l1, b, l2))
    }
}

/// [`conv2d_cpu_bias_relu`] as a candle custom op: (input, weight, bias) -> output.
struct ConvCpuBiasRelu {
    geometry: Geometry,
}

impl ConvCpuBiasRelu {
    fn run<T: Float>(
        &self,
        (x, lx): (&[T], &Layout),
        (w, lw): (&[T], &Layout),
        (b, lb): (&[T], &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let name = self.name();
        let bias: Vec<T> = match lb.dims() {
            [c] if *c == g.cout => (0..g.cout)
                .map(|i| b.get(lb.start_offset() + i * lb.stride()[0]).copied())
                .collect::<Option<_>>(),
            _ => None,
        }
        .ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{name}: expected a bias of {} values, layout {lb:?}",
                g.cout
            ))
        })?;
        let epilogue = Epilogue {
            bias,
            mean: Vec::new(),
            scale: Vec::new(),
            shift: Vec::new(),
            relu: true,
        };
        forward_storage(g, name, (x, lx), (w, lw), Some(&epilogue))
    }
}

impl CustomOp3 for ConvCpuBiasRelu {
    fn name(&self) -> &'static str {
        "conv2d_cpu_bias_relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name(), (s1 => a, s2 => b, s3 => c), self.run((a, l1), (b, l2), (c, l3)))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The gradient before the ReLU, once for all three arguments.
        let grad = super::relu::relu_backward(res, grad)?;
        let (grad_x, grad_w) = conv_grads(self.geometry, xs, weight, &grad)?;
        let grad_b = match bias.track_op() {
            true => Some(super::bias::channel_sums(&grad, self.geometry.cout)?),
            false => None,
        };
        Ok((grad_x, grad_w, grad_b))
    }
}

#[cfg(test)]
mod tests {
    use super::{ConvParams, Geometry, Plan, Span};

    #[test]
    fn spans_cover_exactly_the_input() {
        for input in 1..9 {
            for stride in 1..4 {
                for offset in -5isize..5 {
                    let output = 12;
                    let span = Span::new(output, input, stride, offset);
                    for o in 0..output {
                        let i = o as isize * stride as isize + offset;
                        let inside = (0..input as isize).contains(&i);
                        assert_eq!(
                            inside,
                            (span.lo..span.hi).contains(&o),
                            "{input} {stride} {offset} {o}"
                        );
                    }
                }
            }
        }
    }

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
            let g = Geometry::new(&x, &w, params).unwrap();
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
