//! Gradient clipping by total norm.

use std::collections::HashSet;

use candle_core::backprop::GradStore;
use candle_core::Var;

use crate::error::{Error, Result};

/// Scales the gradients of `params` in place so that their total L2 norm is at most `max_norm`,
/// as `torch.nn.utils.clip_grad_norm_(params, max_norm)`: the total norm is the L2 norm of all
/// the gradients together, and when `max_norm / (total + 1e-6) < 1` every gradient is
/// multiplied by that coefficient. Returns the total norm before clipping. Parameters without a
/// gradient are ignored, a variable given twice counts once.
///
/// Fails with [`Error::Config`] when `max_norm` is not a positive finite number, and when the
/// total norm is not finite (an inf or NaN gradient; PyTorch's `error_if_nonfinite=True`),
/// leaving the gradients unchanged.
pub fn clip_grad_norm(grads: &mut GradStore, params: &[Var], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::config(format!(
            "clip_grad_norm: max_norm must be a positive number, got {max_norm}"
        )));
    }
    let mut seen = HashSet::new();
    let mut present = Vec::new();
    let mut sum_sq = 0.0f64;
    for var in params {
        if !seen.insert(var.as_tensor().id()) {
            continue;
        }
        if let Some(grad) = grads.get(var.as_tensor()) {
            sum_sq += super::fused::sgd::sum_sq(grad)?;
            present.push(var);
        }
    }
    let total = sum_sq.sqrt();
    if !total.is_finite() {
        return Err(Error::config(format!(
            "clip_grad_norm: the gradients are not finite (total norm {total}); lower the learning rate"
        )));
    }
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        for var in present {
            if let Some(grad) = grads.get(var.as_tensor()) {
                let scaled = grad.affine(coef, 0.0)?;
                grads.insert(var.as_tensor(), scaled);
            }
        }
    }
    Ok(total)
}
