//! Adam / AdamW as three in-place passes over each parameter on the CPU: the first moment,
//! the second moment, then the parameter itself. The tensor-op formulation allocates a dozen
//! temporaries of the parameter's size per step (seconds per step for VGG's 133M parameters);
//! these passes allocate nothing and run in parallel over chunks.
//!
//! The arithmetic is PyTorch's `_single_tensor_adam`, element by element, in the parameter's
//! dtype (f32 or f64).

use super::{run_inplace, Elem, InplacePass};
use candle_core::{CpuStorage, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// The hyper-parameters of one step of one parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
    pub bias_correction1: f64,
    pub bias_correction2: f64,
}

/// Whether the fused passes apply: every tensor on the CPU, contiguous from offset 0, of one
/// float dtype (f32/f64) and one size.
pub(crate) fn applies(tensors: &[&Tensor]) -> bool {
    let first = tensors[0];
    tensors.iter().all(|t| {
        t.device().is_cpu()
            && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
            && t.dtype() == first.dtype()
            && t.elem_count() == first.elem_count()
            && t.layout().contiguous_offsets() == Some((0, t.elem_count()))
    })
}

/// Runs the three passes; `applies(&[param, grad, m, v])` must hold.
pub(crate) fn step(param: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor, s: AdamStep) -> Result<()> {
    m.inplace_op3(
        grad,
        param,
        &Pass {
            s,
            kind: Kind::FirstMoment,
        },
    )?;
    v.inplace_op3(
        grad,
        param,
        &Pass {
            s,
            kind: Kind::SecondMoment,
        },
    )?;
    param.inplace_op3(
        m,
        v,
        &Pass {
            s,
            kind: Kind::Update,
        },
    )
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `m = lerp(m, g, 1 - beta1)`, with `g += wd * p` for (non-decoupled) Adam.
    FirstMoment,
    /// `v = beta2 * v + (1 - beta2) * g^2`, same `g`.
    SecondMoment,
    /// `p *= 1 - lr * wd` (AdamW), then `p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`.
    Update,
}

struct Pass {
    s: AdamStep,
    kind: Kind,
}

impl InplacePass for Pass {
    fn run<T: Elem>(&self, dst: &mut [T], a: &[T], b: &[T]) {
        let s = self.s;
        let c = |v: f64| T::from(v).unwrap_or_else(T::zero);
        let (beta2, wd) = (c(s.beta2), c(s.weight_decay));
        let l2 = !s.decoupled && s.weight_decay != 0.0;
        let (one_m_b1, one_m_b2) = (c(1.0 - s.beta1), c(1.0 - s.beta2));
        let step_size = c(s.lr / s.bias_correction1);
        let inv_sqrt_bc2 = c(1.0 / s.bias_correction2.sqrt());
        let eps = c(s.eps);
        let decay = c(1.0 - s.lr * s.weight_decay);
        let decay_on = s.decoupled && s.weight_decay != 0.0;
        let kind = self.kind;
        dst.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((d, a), b)| {
                // Locals, not captured references: the compiler may then keep them in
                // registers and vectorise (it cannot prove a capture does not alias `d`).
                let (beta2, wd, l2, one_m_b1, one_m_b2) = (beta2, wd, l2, one_m_b1, one_m_b2);
                let (step_size, inv_sqrt_bc2, eps, decay, decay_on) =
                    (step_size, inv_sqrt_bc2, eps, decay, decay_on);
                match kind {
                    // a = grad, b = param
                    Kind::FirstMoment => {
                        for ((m, &g), &p) in d.iter_mut().zip(a).zip(b) {
                            let g = if l2 { g + p * wd } else { g };
                            *m = *m + (g - *m) * one_m_b1;
                        }
                    }
                    Kind::SecondMoment => {
                        for ((v, &g), &p) in d.iter_mut().zip(a).zip(b) {
                            let g = if l2 { g + p * wd } else { g };
                            *v = *v * beta2 + g * g * one_m_b2;
                        }
                    }
                    // a = m, b = v
                    Kind::Update => {
                        for ((p, &m), &v) in d.iter_mut().zip(a).zip(b) {
                            let theta = if decay_on { *p * decay } else { *p };
                            let denom = v.sqrt() * inv_sqrt_bc2 + eps;
                            *p = theta - m / denom * step_size;
                        }
                    }
                }
            });
    }
}

impl InplaceOp3 for Pass {
    fn name(&self) -> &'static str {
        "fused-adam"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        l_dst: &Layout,
        a: &CpuStorage,
        l_a: &Layout,
        b: &CpuStorage,
        l_b: &Layout,
    ) -> Result<()> {
        run_inplace(self, self.name(), (dst, l_dst), &[(a, l_a), (b, l_b)])
    }
}
