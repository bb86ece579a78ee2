//! The CPU 2-d convolution as candle custom ops: forward, input gradient and weight gradient
//! of [`kernels::conv`] (im2col + gemm in the tensors' NCHW order, Winograd F(2x2, 3x3) for
//! 3x3 stride-1 forward passes, the column matrices kept for the weight gradient; see that
//! module's documentation), with the tensors' layouts gathered into contiguous buffers here.
//!
//! [`conv2d_cpu_fused`] is the forward pass alone (no gradient) with a per-output-channel
//! epilogue ([`ConvEpilogue`]: bias, eval-mode batch norm, ReLU) applied to each tile's
//! outputs right after its gemm, while they are in the cache, instead of as separate passes
//! over the whole output. The epilogue is the same arithmetic, in the same order, as the bias
//! addition, [`super::batch_norm_eval`] and [`super::relu`] it replaces: the results are the
//! same bits. Second-order gradients are not supported.

use super::ConvParams;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use kernels::conv::{Columns, ConvGeometry, Epilogue, PreparedWeight};
use std::borrow::Cow;
use std::sync::Arc;

pub use kernels::conv::ConvEpilogue;

mod prepared;

pub(crate) use prepared::PreparedWeights;
use prepared::{Prepared, PreparedSlot};

/// The element types of the CPU ops: the kernels' and candle's.
pub(super) trait Float: kernels::Float + WithDType {
    /// A prepared weight of this type, if `p` is one.
    fn prepared(p: &Prepared) -> Option<&PreparedWeight<Self>>;
    /// `p` as either type's.
    fn wrap_prepared(p: PreparedWeight<Self>) -> Prepared;
}

impl Float for f32 {
    fn prepared(p: &Prepared) -> Option<&PreparedWeight<f32>> {
        match p {
            Prepared::F32(p) => Some(p),
            Prepared::F64(_) => None,
        }
    }

    fn wrap_prepared(p: PreparedWeight<f32>) -> Prepared {
        Prepared::F32(p)
    }
}

impl Float for f64 {
    fn prepared(p: &Prepared) -> Option<&PreparedWeight<f64>> {
        match p {
            Prepared::F64(p) => Some(p),
            Prepared::F32(_) => None,
        }
    }

    fn wrap_prepared(p: PreparedWeight<f64>) -> Prepared {
        Prepared::F64(p)
    }
}

/// The slot of `weight`'s prepared transform for `g`, when the op is built inside
/// [`crate::with_frozen_weights`] and `g` takes a Winograd tiling with a prepared weight.
fn prepared_slot(g: &ConvGeometry, weight: &Tensor) -> Option<Arc<PreparedSlot>> {
    let choice = kernels::conv::prepared_choice(g)?;
    crate::inference::with_prepared(|p| p.slot(weight, choice)).flatten()
}

/// A kernels error as a candle error (the message kept).
pub(crate) fn kernel_err(e: kernels::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// `xs` `[N, Cin, H, W]` convolved with `weight` `[Cout, Cin/groups, kh, kw]` on the CPU in
/// `f32` or `f64` (PyTorch's `F.conv2d` semantics: cross-correlation, symmetric zero padding);
/// differentiable w.r.t. both arguments, with no input gradient computed for an input outside
/// autograd. See the [module documentation](crate::ops) (Convolution).
///
/// Errors on tensors that are not on the CPU, not `f32` / `f64`, of different dtypes, or of
/// inconsistent shapes.
pub fn conv2d_cpu(xs: &Tensor, weight: &Tensor, p: ConvParams) -> Result<Tensor> {
    let geometry = checked_geometry("conv2d_cpu", xs, weight, p)?;
    let out = xs.apply_op2(
        weight,
        ConvCpu {
            geometry,
            pass: Pass::Forward,
            columns: kept_columns(&geometry, weight),
            inference: crate::is_inference_mode(),
            prepared: prepared_slot(&geometry, weight),
        },
    )?;
    super::conv::record_conv(&out, xs, weight, None, p, false);
    Ok(out)
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
    let op = ConvCpuFused::new("conv2d_cpu_fused", xs, weight, p, epilogue)?;
    let out = xs.apply_op2_no_bwd(weight, &op)?;
    crate::trace::record(&out, || crate::trace::TracedOp::ConvEpilogue {
        input: xs.clone(),
        weight: weight.clone(),
        params: p,
        epilogue: epilogue.clone(),
    });
    Ok(out)
}

/// [`conv2d_cpu_fused`] followed by the addition of `residual` (a tensor of the output's shape,
/// dtype and device) before the epilogue's ReLU, in the same pass: `relu(bn(conv(xs)) +
/// residual)`, a ResNet block's output (the last convolution's batch norm, the shortcut, the
/// ReLU) without the separate pass of [`super::add_relu`] over the block's output. The same
/// bits as [`conv2d_cpu_fused`] without the ReLU followed by [`super::add_relu`]. No
/// gradient; not recorded for exporters (inside [`crate::trace::record_ops`] use the separate
/// ops).
///
/// Errors like [`conv2d_cpu_fused`], and when `residual` is not of the output's shape and
/// dtype.
pub fn conv2d_cpu_fused_residual(
    xs: &Tensor,
    weight: &Tensor,
    residual: &Tensor,
    p: ConvParams,
    epilogue: &ConvEpilogue,
) -> Result<Tensor> {
    const OP: &str = "conv2d_cpu_fused_residual";
    let op = ConvCpuFused::new(OP, xs, weight, p, epilogue)?;
    let geometry = op.geometry;
    if residual.dims() != geometry.output_dims()
        || residual.dtype() != xs.dtype()
        || !residual.device().is_cpu()
    {
        bail!(
            "{OP}: expected a residual {:?} {:?} on the CPU (the output's), got {:?} {:?} on {:?}",
            geometry.output_dims(),
            xs.dtype(),
            residual.dims(),
            residual.dtype(),
            residual.device().location()
        )
    }
    xs.apply_op3_no_bwd(weight, residual, &op)
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
    if bias.dims() != [geometry.cout()] || bias.dtype() != xs.dtype() || !bias.device().is_cpu() {
        bail!(
            "conv2d_cpu_bias_relu: expected a {:?} CPU bias of shape [{}], got {:?} {:?} of shape {:?}",
            xs.dtype(),
            geometry.cout(),
            bias.device().location(),
            bias.dtype(),
            bias.dims()
        )
    }
    let op = ConvCpuBiasRelu {
        geometry,
        inference: crate::is_inference_mode(),
        prepared: prepared_slot(&geometry, weight),
        columns: kept_columns(&geometry, weight),
    };
    let out = xs.apply_op3(weight, bias, op)?;
    super::conv::record_conv(&out, xs, weight, Some(bias), p, true);
    Ok(out)
}

/// Where a training convolution keeps its column matrices for the weight gradient, if it
/// does ([`Columns::wanted`]).
fn kept_columns(g: &ConvGeometry, weight: &Tensor) -> Option<Arc<Columns>> {
    Columns::wanted(g, weight.track_op(), weight.dtype().size_in_bytes())
        .then(|| Arc::new(Columns::default()))
}

/// The geometry of a convolution of `xs` by `weight` for the op `op`, after checking that the
/// CPU kernels handle them ([`supports`]).
fn checked_geometry(op: &str, xs: &Tensor, weight: &Tensor, p: ConvParams) -> Result<ConvGeometry> {
    if !supports(xs, weight) {
        bail!(
            "{op}: expected CPU tensors, both f32 or both f64, got {:?} {:?} and {:?} {:?}",
            xs.device().location(),
            xs.dtype(),
            weight.device().location(),
            weight.dtype()
        )
    }
    ConvGeometry::new(xs.dims(), weight.dims(), p).map_err(kernel_err)
}

/// Whether [`conv2d_cpu`] handles these tensors: both on the CPU, both `f32` or both `f64`.
pub fn supports(xs: &Tensor, weight: &Tensor) -> bool {
    xs.device().is_cpu()
        && weight.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == xs.dtype()
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
#[derive(Debug, Clone)]
struct ConvCpu {
    geometry: ConvGeometry,
    pass: Pass,
    /// The forward pass's column matrices, kept for the weight gradient (see [`Columns`]).
    columns: Option<Arc<Columns>>,
    /// Built inside [`crate::inference_mode`]: the kernels' inference pass ([`ForwardPass`]).
    inference: bool,
    /// Built inside [`crate::with_frozen_weights`]: where its weight's transform is kept.
    prepared: Option<Arc<PreparedSlot>>,
}

impl ConvCpu {
    fn run<T: Float>(&self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let name = self.name();
        let (out, dims) = match self.pass {
            Pass::Forward => {
                let pass = ForwardPass::of(self.inference, self.prepared.as_deref(), self.columns.as_deref());
                return forward_storage(g, name, (a, la), (b, lb), None, pass);
            }
            Pass::InputGrad => {
                let grad = contiguous(name, a, la, g.output_dims())?;
                let w = contiguous(name, b, lb, g.weight_dims())?;
                (
                    kernels::conv::input_grad(g, &grad, &w).map_err(kernel_err)?,
                    g.input_dims(),
                )
            }
            Pass::WeightGrad => {
                let x = contiguous(name, a, la, g.input_dims())?;
                let grad = contiguous(name, b, lb, g.output_dims())?;
                (
                    kernels::conv::weight_grad(g, &x, &grad, self.columns.as_deref()).map_err(kernel_err)?,
                    g.weight_dims(),
                )
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
        conv_grads(self.geometry, self.columns.clone(), xs, weight, grad)
    }
}

/// The input and weight gradients of a convolution from its output gradient, each only for
/// an argument that takes part in autograd (never the input gradient of the image batch).
fn conv_grads(
    geometry: ConvGeometry,
    columns: Option<Arc<Columns>>,
    xs: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let grad_x = match xs.track_op() {
        true => {
            let op = ConvCpu {
                geometry,
                pass: Pass::InputGrad,
                columns: None,
                inference: false,
                prepared: None,
            };
            Some(grad.apply_op2_no_bwd(weight, &op)?)
        }
        false => None,
    };
    let grad_w = match weight.track_op() {
        true => {
            let op = ConvCpu {
                geometry,
                pass: Pass::WeightGrad,
                columns,
                inference: false,
                prepared: None,
            };
            Some(xs.apply_op2_no_bwd(grad, &op)?)
        }
        false => None,
    };
    Ok((grad_x, grad_w))
}

/// What a forward pass is for. Only an op built inside [`crate::inference_mode`] takes the
/// inference pass: outside it, the same model gives the same bits whether its weights are
/// variables or constants and whether its batch norm is folded (the fused op) or not.
#[derive(Clone, Copy)]
enum ForwardPass<'a> {
    /// No gradient will be asked of it (inside [`crate::inference_mode`]): the kernels may
    /// round more ([`kernels::conv::forward_inference`]: Winograd F(4x4)); with the weight's
    /// prepared transform inside [`crate::with_frozen_weights`].
    Inference(Option<&'a PreparedSlot>),
    /// Its gradients may be asked for; the column matrices kept here for the weight gradient.
    Training(Option<&'a Columns>),
}

impl<'a> ForwardPass<'a> {
    /// The inference pass for an op built inside [`crate::inference_mode`], else the training
    /// pass keeping its columns in `keep`.
    fn of(inference: bool, prepared: Option<&'a PreparedSlot>, keep: Option<&'a Columns>) -> Self {
        match inference {
            true => ForwardPass::Inference(prepared),
            false => ForwardPass::Training(keep),
        }
    }
}

/// The forward pass of `geometry` on CPU input and weight buffers seen through their layouts,
/// with an optional epilogue, as a custom op's result.
fn forward_storage<T: Float>(
    g: &ConvGeometry,
    name: &str,
    (x, lx): (&[T], &Layout),
    (w, lw): (&[T], &Layout),
    epilogue: Option<&Epilogue<T>>,
    pass: ForwardPass,
) -> Result<(CpuStorage, Shape)> {
    let x = contiguous(name, x, lx, g.input_dims())?;
    let w = contiguous(name, w, lw, g.weight_dims())?;
    let out = match pass {
        ForwardPass::Inference(Some(slot)) => slot
            .get_or_prepare(|| kernels::conv::prepare_weight(g, &w, slot.choice()))
            .and_then(|prepared| kernels::conv::forward_prepared(g, &x, &prepared, epilogue)),
        ForwardPass::Inference(None) => kernels::conv::forward_inference(g, &x, &w, epilogue),
        ForwardPass::Training(keep) => kernels::conv::forward(g, &x, &w, epilogue, keep),
    }
    .map_err(kernel_err)?;
    Ok((
        T::to_cpu_storage_owned(out),
        Shape::from(g.output_dims().to_vec()),
    ))
}

/// The forward pass with an epilogue, without backward.
struct ConvCpuFused {
    geometry: ConvGeometry,
    epilogue: ConvEpilogue,
    /// Built inside [`crate::inference_mode`]: the kernels' inference pass ([`ForwardPass`]).
    inference: bool,
    /// Built inside [`crate::with_frozen_weights`]: where its weight's transform is kept.
    prepared: Option<Arc<PreparedSlot>>,
}

impl ConvCpuFused {
    /// The op for `xs` and `weight` (checked, errors naming `op`), built where it runs:
    /// inside inference mode or not, with its weight's prepared slot if any.
    fn new(op: &str, xs: &Tensor, weight: &Tensor, p: ConvParams, epilogue: &ConvEpilogue) -> Result<Self> {
        let geometry = checked_geometry(op, xs, weight, p)?;
        epilogue.check(op, geometry.cout()).map_err(kernel_err)?;
        Ok(Self {
            geometry,
            epilogue: epilogue.clone(),
            inference: crate::is_inference_mode(),
            prepared: prepared_slot(&geometry, weight),
        })
    }

    fn run<T: Float>(&self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run_with(
            "conv2d_cpu_fused",
            (a, la),
            (b, lb),
            Epilogue::new(&self.epilogue),
        )
    }

    /// [`ConvCpuFused::run`] with the residual `(r, lr)` added before the ReLU.
    fn run_residual<T: Float>(
        &self,
        (a, la): (&[T], &Layout),
        (b, lb): (&[T], &Layout),
        (r, lr): (&[T], &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        const NAME: &str = "conv2d_cpu_fused_residual";
        let residual = contiguous(NAME, r, lr, self.geometry.output_dims())?;
        self.run_with(
            NAME,
            (a, la),
            (b, lb),
            Epilogue::new(&self.epilogue).with_residual(&residual),
        )
    }

    fn run_with<T: Float>(
        &self,
        name: &str,
        (a, la): (&[T], &Layout),
        (b, lb): (&[T], &Layout),
        epilogue: Epilogue<'_, T>,
    ) -> Result<(CpuStorage, Shape)> {
        forward_storage(
            &self.geometry,
            name,
            (a, la),
            (b, lb),
            Some(&epilogue),
            ForwardPass::of(self.inference, self.prepared.as_deref(), None),
        )
    }
}

/// With a residual: (input, weight, residual) -> output.
impl CustomOp3 for ConvCpuFused {
    fn name(&self) -> &'static str {
        "conv2d_cpu_fused_residual"
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
        float_storages!(
            CustomOp3::name(self),
            (s1 => a, s2 => b, s3 => c),
            self.run_residual((a, l1), (b, l2), (c, l3))
        )
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
        float_storages!(CustomOp2::name(self), (s1 => a, s2 => b), self.run(a, l1, b, l2))
    }
}

/// [`conv2d_cpu_bias_relu`] as a candle custom op: (input, weight, bias) -> output.
struct ConvCpuBiasRelu {
    geometry: ConvGeometry,
    /// Built inside [`crate::inference_mode`]: the kernels' inference pass ([`ForwardPass`]).
    inference: bool,
    /// Built inside [`crate::with_frozen_weights`]: where its weight's transform is kept.
    prepared: Option<Arc<PreparedSlot>>,
    /// The forward pass's column matrices, kept for the weight gradient (see [`Columns`]).
    columns: Option<Arc<Columns>>,
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
            [c] if *c == g.cout() => (0..g.cout())
                .map(|i| b.get(lb.start_offset() + i * lb.stride()[0]).copied())
                .collect::<Option<_>>(),
            _ => None,
        }
        .ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{name}: expected a bias of {} values, layout {lb:?}",
                g.cout()
            ))
        })?;
        let mut epilogue = Epilogue::new(&ConvEpilogue {
            relu: true,
            ..ConvEpilogue::default()
        });
        epilogue.bias = bias;
        let pass = ForwardPass::of(self.inference, self.prepared.as_deref(), self.columns.as_deref());
        forward_storage(g, name, (x, lx), (w, lw), Some(&epilogue), pass)
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
        let (grad_x, grad_w) = conv_grads(self.geometry, self.columns.clone(), xs, weight, &grad)?;
        let grad_b = match bias.track_op() {
            true => Some(super::bias::channel_sums(&grad, self.geometry.cout())?),
            false => None,
        };
        Ok((grad_x, grad_w, grad_b))
    }
}
