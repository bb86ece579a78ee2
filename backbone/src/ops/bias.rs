//! A per-channel bias added to an `[N, C, H, W]` map, with a one-pass backward.
//!
//! `out.broadcast_add(&b.reshape((1, C, 1, 1)))` is one pass forward, but candle's backward of
//! the broadcast sums the gradient over dimensions 0, 2 and 3 with its generic strided
//! reduction, on one thread: in a LeNet-5 training step that reduction was 30% of the time.
//! [`add_channel_bias`] instead, on the CPU in `f32` / `f64` for a contiguous map:
//!
//! * forward: one pass over each `(n, c)` plane adding `b[c]`;
//! * backward: `dx = dy` (no pass: the gradient tensor itself), and `db[c]` = the sum of `dy`
//!   over the `N` planes of channel `c`, channels in parallel, each plane summed in `f64`.
//!
//! Other devices, dtypes and layouts run [`add_channel_bias_reference`], the broadcast add.

use super::contiguous_elements;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use kernels::elementwise;

/// `xs + bias[c]` for `xs` `[N, C, H, W]` and `bias` `[C]`, differentiable in both (see the
/// module docs); any device and dtype.
pub fn add_channel_bias(xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, c, _, _) = xs.dims4()?;
    if bias.dims() != [c] {
        bail!(
            "add_channel_bias: the bias must have shape [{c}] for an input of shape {:?}, got {:?}",
            xs.dims(),
            bias.dims()
        );
    }
    let native =
        |t: &Tensor| t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64) && t.is_contiguous();
    let out = if !(native(xs) && native(bias) && xs.dtype() == bias.dtype()) {
        add_channel_bias_reference(xs, bias)?
    } else if xs.track_op() || bias.track_op() {
        xs.apply_op2(bias, ChannelBias)?
    } else {
        xs.apply_op2_no_bwd(bias, &ChannelBias)?
    };
    crate::trace::record(&out, || crate::trace::TracedOp::ChannelBias {
        input: xs.clone(),
        bias: bias.clone(),
    });
    Ok(out)
}

/// The broadcast form of [`add_channel_bias`] (any device and dtype).
pub fn add_channel_bias_reference(xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let c = bias.elem_count();
    xs.broadcast_add(&bias.reshape((1, c, 1, 1))?)
}

/// Plane size and channel count of a `[N, C, H, W]` layout.
fn plane_dims(op: &str, layout: &Layout) -> Result<(usize, usize)> {
    match *layout.dims() {
        [_, c, h, w] => Ok((h * w, c)),
        ref dims => bail!("{op}: expected a [N, C, H, W] input, got {dims:?}"),
    }
}

/// The forward op (input, bias); its backward returns the gradient itself for the input and
/// runs [`ChannelBiasGrad`] for the bias.
struct ChannelBias;

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "add_channel_bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (plane, c) = plane_dims(self.name(), l1)?;
        if l2.shape().elem_count() != c {
            bail!(
                "{}: {} bias values for {c} channels",
                self.name(),
                l2.shape().elem_count()
            );
        }
        let out = float_storages!(self.name(), (s1 => x, s2 => b), {
            let (x, b) = (contiguous_elements(self.name(), x, l1)?, contiguous_elements(self.name(), b, l2)?);
            let y = elementwise::add_channel_bias(x, b, plane);
            Ok(WithDType::to_cpu_storage_owned(y))
        })?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = xs.track_op().then(|| grad.clone());
        let db = if bias.track_op() {
            Some(channel_sums(grad, bias.elem_count())?)
        } else {
            None
        };
        Ok((dx, db))
    }
}

/// The per-channel sums `[C]` of a gradient `[N, C, H, W]` with `channels` channels, without
/// autograd: the gradient of a per-channel bias.
pub(super) fn channel_sums(grad: &Tensor, channels: usize) -> Result<Tensor> {
    grad.contiguous()?.apply_op1_no_bwd(&ChannelBiasGrad { channels })
}

/// `dy` `[N, C, H, W]` -> its per-channel sum `[C]`.
struct ChannelBiasGrad {
    channels: usize,
}

impl candle_core::CustomOp1 for ChannelBiasGrad {
    fn name(&self) -> &'static str {
        "add_channel_bias_grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (plane, c) = plane_dims(self.name(), l)?;
        if c != self.channels {
            bail!(
                "{}: {c} channels in the gradient, {} in the bias",
                self.name(),
                self.channels
            );
        }
        let out = float_storages!(self.name(), (s => v), {
            let sums = elementwise::channel_sums(contiguous_elements(self.name(), v, l)?, plane, c);
            Ok(WithDType::to_cpu_storage_owned(sums))
        })?;
        Ok((out, Shape::from(c)))
    }
}
