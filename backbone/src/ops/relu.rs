//! ReLU as one CPU pass each way.
//!
//! The layer's previous form, `x * (x > 0)` while autograd tracks `x` (candle's own `relu`
//! passes the gradient where `x == 0`, PyTorch's does not), costs three passes and two
//! temporaries forward (compare, convert, multiply) and keeps the mask alive for backward.
//! [`relu`] instead runs, on the CPU in `f32` / `f64` for a contiguous input:
//!
//! * forward: one pass `y = x < 0 ? 0 : x` (NaN propagates and `-inf` gives 0, as with
//!   `torch.relu`; the composite form gives NaN for `-inf`);
//! * backward: one pass `dx = dy * (y > 0)` from the saved output, PyTorch's
//!   `threshold_backward` (no gradient where the input is exactly 0). The mask multiplies,
//!   as the composite form does, so the results are the same bits (a NaN input gets a zero
//!   gradient, as in the composite form; PyTorch passes the gradient through a NaN).
//!
//! Both passes are [`kernels::elementwise`]'s: they allocate only their output and run in
//! chunks on the rayon pool for large inputs. Other devices, dtypes and layouts run
//! [`relu_reference`], the composite form.

use super::contiguous_elements;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use kernels::elementwise;

/// `max(x, 0)` with PyTorch's gradient (zero where `x <= 0`), NaN propagated: one pass
/// forward, one pass backward from the saved output, on the CPU in `f32` / `f64` for
/// contiguous inputs ([`relu_reference`] otherwise). Any shape, dtype and device.
pub fn relu(xs: &Tensor) -> Result<Tensor> {
    let out = relu_any(xs)?;
    crate::trace::record(&out, || crate::trace::TracedOp::Relu { input: xs.clone() });
    Ok(out)
}

/// [`relu`] on the path the tensor takes.
fn relu_any(xs: &Tensor) -> Result<Tensor> {
    if crate::is_guided_relu() && xs.track_op() {
        return xs.apply_op1(Relu { guided: true });
    }
    if !native(xs) {
        return relu_reference(xs);
    }
    if xs.track_op() {
        xs.apply_op1(Relu { guided: false })
    } else {
        xs.apply_op1_no_bwd(&Relu { guided: false })
    }
}

/// The composite form of [`relu`] (any device and dtype): `x * (x > 0)` while autograd
/// tracks `x` (PyTorch's gradient), candle's `relu` otherwise (which maps NaN to 0).
pub fn relu_reference(xs: &Tensor) -> Result<Tensor> {
    if xs.track_op() {
        xs.mul(&xs.gt(0f64)?.to_dtype(xs.dtype())?)
    } else {
        xs.relu()
    }
}

/// Whether the kernels apply: a contiguous CPU tensor in `f32` / `f64`.
fn native(xs: &Tensor) -> bool {
    xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) && xs.is_contiguous()
}

/// The forward op; its backward runs [`ReluBackward`] on the saved output, or, `guided`, passes
/// only positive gradients where the output is positive (guided backpropagation, see
/// [`crate::guided`]): `dx = max(dy, 0) * (y > 0)`.
struct Relu {
    guided: bool,
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        if self.guided {
            "guided_relu"
        } else {
            "relu"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_storages!(self.name(), (s => v), {
            let y = elementwise::relu(contiguous_elements(self.name(), v, l)?);
            Ok(WithDType::to_cpu_storage_owned(y))
        })?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if self.guided {
            let mask = res.gt(0f64)?.to_dtype(grad.dtype())?;
            return Ok(Some(grad.relu()?.mul(&mask)?));
        }
        relu_backward(res, grad).map(Some)
    }
}

/// `relu(a + b)` as one differentiable op (a residual block's sum and activation): one pass
/// each way on the CPU (`f32` / `f64`, same shapes), and the sum itself is not kept alive
/// for the backward pass. Both inputs get the masked gradient `dy * (y > 0)`. The same bits
/// as `relu(&(a + b)?)`, which runs everywhere else.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = add_relu_any(a, b)?;
    crate::trace::record(&out, || crate::trace::TracedOp::AddRelu {
        a: a.clone(),
        b: b.clone(),
    });
    Ok(out)
}

/// [`add_relu`] on the path the tensors take.
fn add_relu_any(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if crate::is_guided_relu() {
        return relu(&(a + b)?);
    }
    if a.dims() == b.dims() && a.dtype() == b.dtype() && native(a) && native(b) {
        a.apply_op2(b, AddRelu)
    } else {
        relu(&(a + b)?)
    }
}

/// `(a, b) -> relu(a + b)`.
struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add_relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: kernels::Float>(op: &str, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<Vec<T>> {
            let (a, b) = (contiguous_elements(op, a, la)?, contiguous_elements(op, b, lb)?);
            if a.len() != b.len() {
                bail!("{op}: {} and {} elements", a.len(), b.len())
            }
            Ok(elementwise::add_relu(a, b))
        }
        let out = float_storages!(self.name(), (s1 => a, s2 => b), {
            let y = run(self.name(), a, l1, b, l2)?;
            Ok(WithDType::to_cpu_storage_owned(y))
        })?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let masked = relu_backward(res, grad)?;
        Ok((
            a.track_op().then(|| masked.clone()),
            b.track_op().then_some(masked),
        ))
    }
}

/// `dy * (y > 0)` for an output `y` of [`relu`] (or of any op ending in a ReLU) and its
/// gradient `dy` (made contiguous first: the gradient of a sum is a broadcast), without
/// autograd. CPU `f32` / `f64` through the kernel, the composite form elsewhere.
pub(super) fn relu_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    if native(y) && dy.dtype() == y.dtype() && dy.device().is_cpu() {
        y.apply_op2_no_bwd(&dy.contiguous()?, &ReluBackward)
    } else {
        dy.mul(&y.gt(0f64)?.to_dtype(dy.dtype())?)
    }
}

/// `(y, dy) -> dy * (y > 0)`.
struct ReluBackward;

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "relu_backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            bail!(
                "{}: gradient of shape {:?} for an output of shape {:?}",
                self.name(),
                l2.dims(),
                l1.dims()
            )
        }
        let name = self.name();
        let out = float_storages!(name, (s1 => y, s2 => g), {
            let (y, g) = (contiguous_elements(name, y, l1)?, contiguous_elements(name, g, l2)?);
            let dx = elementwise::relu_backward(y, g);
            Ok(WithDType::to_cpu_storage_owned(dx))
        })?;
        Ok((out, l1.shape().clone()))
    }
}
