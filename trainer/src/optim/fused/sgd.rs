//! SGD as in-place passes over each parameter on the CPU, and the sum of squares behind
//! [`crate::optim::clip_grad_norm`]. The tensor-op formulation allocates several temporaries of
//! the parameter's size per step; these passes allocate nothing and run in parallel over
//! chunks.
//!
//! Without momentum one pass updates the parameter. With momentum, one pass updates the
//! momentum buffer, a second the parameter (a pass writes one tensor: candle locks the others
//! for reading).
//!
//! The arithmetic is PyTorch's `_single_tensor_sgd`, element by element, in the parameter's
//! dtype (f32 or f64).

use super::{run_inplace, Elem, InplacePass};
use candle_core::{CpuStorage, CustomOp1, DType, InplaceOp2, InplaceOp3, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// The hyper-parameters of one step of one parameter (the group's lr and weight decay).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SgdStep {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

/// Whether the fused passes apply (see [`super::adam::applies`]).
pub(crate) fn applies(tensors: &[&Tensor]) -> bool {
    super::adam::applies(tensors)
}

/// Without momentum: `p -= lr * (g + wd * p)`; `applies(&[param, grad])` must hold.
pub(crate) fn step_plain(param: &Tensor, grad: &Tensor, s: SgdStep) -> candle_core::Result<()> {
    param.inplace_op2(grad, &Plain { s })
}

/// With momentum: updates the buffer (`first`: the parameter's first step, the buffer becomes
/// `d_p = g + wd * p`; else `buf = momentum * buf + (1 - dampening) * d_p`), then the parameter
/// (`p -= lr * (nesterov ? d_p + momentum * buf : buf)`). `applies(&[param, grad, buf])` must
/// hold.
pub(crate) fn step_momentum(
    param: &Tensor,
    grad: &Tensor,
    buf: &Tensor,
    first: bool,
    s: SgdStep,
) -> candle_core::Result<()> {
    buf.inplace_op3(grad, param, &Buffer { s, first })?;
    param.inplace_op3(grad, buf, &Update { s })
}

/// The sum of the squares of `t`'s elements, accumulated in f64 (in parallel over chunks for a
/// contiguous f32 or f64 CPU tensor; through an f64 copy otherwise).
pub(crate) fn sum_sq(t: &Tensor) -> candle_core::Result<f64> {
    let fast = t.device().is_cpu()
        && matches!(t.dtype(), DType::F32 | DType::F64)
        && t.layout().contiguous_offsets().is_some();
    if fast {
        t.apply_op1_no_bwd(&SumSq)?.to_vec1::<f64>().map(|v| v[0])
    } else {
        t.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()
    }
}

/// `T` from an f64 hyper-parameter.
fn c<T: num_traits::Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::zero)
}

/// `d_p = grad + weight_decay * param` (`grad.add(param, alpha=weight_decay)` when decaying).
#[inline]
fn d_p<T: num_traits::Float>(g: T, p: T, wd: T, decay: bool) -> T {
    if decay {
        g + p * wd
    } else {
        g
    }
}

struct Plain {
    s: SgdStep,
}

impl InplacePass for Plain {
    fn run<T: Elem>(&self, dst: &mut [T], grad: &[T], _: &[T]) {
        let (lr, wd, decay) = (
            c::<T>(self.s.lr),
            c::<T>(self.s.weight_decay),
            self.s.weight_decay != 0.0,
        );
        dst.par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(d, g)| {
                // Locals, not captured references: the compiler may then keep them in
                // registers and vectorise (it cannot prove a capture does not alias `d`).
                let (lr, wd, decay) = (lr, wd, decay);
                for (p, &g) in d.iter_mut().zip(g) {
                    *p = *p - d_p(g, *p, wd, decay) * lr;
                }
            });
    }
}

impl InplaceOp2 for Plain {
    fn name(&self) -> &'static str {
        "fused-sgd"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        l_dst: &Layout,
        g: &CpuStorage,
        l_g: &Layout,
    ) -> candle_core::Result<()> {
        run_inplace(self, self.name(), (dst, l_dst), &[(g, l_g)])
    }
}

/// Writes the momentum buffer; sources: the gradient, the parameter.
struct Buffer {
    s: SgdStep,
    first: bool,
}

impl InplacePass for Buffer {
    fn run<T: Elem>(&self, dst: &mut [T], grad: &[T], param: &[T]) {
        let (wd, decay) = (c::<T>(self.s.weight_decay), self.s.weight_decay != 0.0);
        let (momentum, one_m_damp) = (c::<T>(self.s.momentum), c::<T>(1.0 - self.s.dampening));
        let first = self.first;
        dst.par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(param.par_chunks(CHUNK))
            .for_each(|((d, g), p)| {
                let (wd, decay, momentum, one_m_damp, first) = (wd, decay, momentum, one_m_damp, first);
                for ((b, &g), &p) in d.iter_mut().zip(g).zip(p) {
                    let d_p = d_p(g, p, wd, decay);
                    // buf = clone(d_p), then buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
                    *b = if first {
                        d_p
                    } else {
                        *b * momentum + d_p * one_m_damp
                    };
                }
            });
    }
}

impl InplaceOp3 for Buffer {
    fn name(&self) -> &'static str {
        "fused-sgd-momentum"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        l_dst: &Layout,
        g: &CpuStorage,
        l_g: &Layout,
        p: &CpuStorage,
        l_p: &Layout,
    ) -> candle_core::Result<()> {
        run_inplace(self, self.name(), (dst, l_dst), &[(g, l_g), (p, l_p)])
    }
}

/// Writes the parameter from the updated buffer; sources: the gradient, the buffer.
struct Update {
    s: SgdStep,
}

impl InplacePass for Update {
    fn run<T: Elem>(&self, dst: &mut [T], grad: &[T], buf: &[T]) {
        let (wd, decay) = (c::<T>(self.s.weight_decay), self.s.weight_decay != 0.0);
        let (lr, momentum, nesterov) = (c::<T>(self.s.lr), c::<T>(self.s.momentum), self.s.nesterov);
        dst.par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(buf.par_chunks(CHUNK))
            .for_each(|((d, g), b)| {
                let (wd, decay, lr, momentum, nesterov) = (wd, decay, lr, momentum, nesterov);
                for ((p, &g), &b) in d.iter_mut().zip(g).zip(b) {
                    // grad = grad.add(buf, alpha=momentum) with Nesterov, else grad = buf
                    let step = if nesterov {
                        d_p(g, *p, wd, decay) + b * momentum
                    } else {
                        b
                    };
                    *p -= step * lr;
                }
            });
    }
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "fused-sgd-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        l_dst: &Layout,
        g: &CpuStorage,
        l_g: &Layout,
        b: &CpuStorage,
        l_b: &Layout,
    ) -> candle_core::Result<()> {
        run_inplace(self, self.name(), (dst, l_dst), &[(g, l_g), (b, l_b)])
    }
}

/// Sum of squares of a contiguous f32/f64 CPU tensor, as an f64 tensor of shape `[1]`.
struct SumSq;

/// Per-chunk partial sums in parallel, added in order: the result does not depend on the
/// thread scheduling (a resumed run must clip exactly as an uninterrupted one).
fn sum_sq_slice<T: WithDType + num_traits::Float + Send + Sync>(v: &[T]) -> f64 {
    let partial: Vec<f64> = v
        .par_chunks(CHUNK)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&x| {
                    let x = WithDType::to_f64(x);
                    x * x
                })
                .sum::<f64>()
        })
        .collect();
    partial.iter().sum()
}

impl CustomOp1 for SumSq {
    fn name(&self) -> &'static str {
        "sum-sq"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("sum-sq: the tensor must be contiguous")
        };
        let total = match s {
            CpuStorage::F32(v) => sum_sq_slice(&v[start..end]),
            CpuStorage::F64(v) => sum_sq_slice(&v[start..end]),
            _ => candle_core::bail!("sum-sq: only f32 and f64 tensors"),
        };
        Ok((CpuStorage::F64(vec![total]), Shape::from(1)))
    }
}
