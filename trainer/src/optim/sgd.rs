//! Stochastic gradient descent as `torch.optim.SGD`: momentum, dampening, Nesterov momentum and
//! weight decay as an L2 term added to the gradient, with parameter groups.
//!
//! Per parameter with a gradient `g` (PyTorch's `_single_tensor_sgd`, `maximize` off):
//!
//! ```text
//! d_p = g + weight_decay * p                   (weight_decay != 0)
//! if momentum != 0:
//!     buf = d_p                                (the parameter's first step)
//!     buf = momentum * buf + (1 - dampening) * d_p   (later steps)
//!     d_p = d_p + momentum * buf if nesterov else buf
//! p -= lr * d_p
//! ```
//!
//! with the group's `lr` (base rate times `lr_scale`) and weight decay. On the CPU, contiguous
//! f32 and f64 parameters are updated in place by parallel passes (`optim::fused::sgd`); other devices
//! and dtypes use tensor operations; both give the same results (tested).

use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::fused::sgd::{self as fused_sgd, SgdStep};
use super::{check_grad, check_hyper, reject_unknown_keys, state_entry, Groups, Optimizer, ParamGroup};
use crate::error::{Error, Result};

/// Hyper-parameters of [`Sgd`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (default `1e-3`, as `torch.optim.SGD` since PyTorch 2.2).
    pub lr: f64,
    /// Momentum factor (default `0`: plain SGD, no state).
    pub momentum: f64,
    /// Dampening of the momentum: the gradient enters the buffer times `1 - dampening`
    /// (default `0`).
    pub dampening: f64,
    /// Nesterov momentum (default off); needs `momentum > 0` and `dampening == 0`.
    pub nesterov: bool,
    /// L2 penalty: `weight_decay * p` is added to the gradient (default `0`); the default of
    /// the groups that do not set their own.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// One parameter and its momentum buffer.
#[derive(Debug)]
struct Param {
    name: String,
    var: Var,
    /// Index of its group.
    group: usize,
    /// `momentum_buffer`: `None` until the first step with a gradient (and without momentum).
    buf: Option<Tensor>,
}

/// SGD as `torch.optim.SGD` (see the [module documentation](crate::optim) for the update).
///
/// ```no_run
/// # fn main() -> trainer::Result<()> {
/// use trainer::optim::{param_groups, Optimizer, Sgd, SgdConfig};
/// let varmap = candle_nn::VarMap::new();
/// // ... build a model whose variables go into `varmap` ...
/// let params = backbone::init::trainable_vars(&varmap);
/// let config = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1e-4, ..SgdConfig::default() };
/// // No weight decay on biases and batch-norm parameters.
/// let mut opt = Sgd::with_groups(param_groups(params, config.weight_decay), config)?;
/// # let loss = candle_core::Tensor::new(0f32, &candle_core::Device::Cpu)?;
/// opt.backward_step(&loss)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sgd {
    params: Vec<Param>,
    groups: Groups,
    config: SgdConfig,
    /// Whether the in-place CPU kernels may be used (always, except in tests of the plain path).
    fused: bool,
}

impl Sgd {
    /// An optimizer for the named parameters (one group). Fails on an invalid configuration
    /// (negative or non-finite lr, momentum or weight decay, non-finite dampening, Nesterov
    /// without momentum or with dampening), a non-float parameter, a name given twice or a
    /// variable given twice.
    pub fn new(params: Vec<(String, Var)>, config: SgdConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params)], config)
    }

    /// An optimizer for parameter groups (see [`crate::optim::param_groups`]); fails as
    /// [`Sgd::new`] or on a group with a negative or non-finite `lr_scale` or weight decay.
    pub fn with_groups(groups: Vec<ParamGroup>, config: SgdConfig) -> Result<Self> {
        let SgdConfig {
            lr,
            momentum,
            dampening,
            nesterov,
            weight_decay,
        } = config;
        check_hyper(
            "SGD",
            &[
                ("lr", lr, lr.is_finite() && lr >= 0.0, ">= 0"),
                (
                    "momentum",
                    momentum,
                    momentum.is_finite() && momentum >= 0.0,
                    ">= 0",
                ),
                ("dampening", dampening, dampening.is_finite(), "finite"),
                (
                    "weight_decay",
                    weight_decay,
                    weight_decay.is_finite() && weight_decay >= 0.0,
                    ">= 0",
                ),
            ],
        )?;
        if nesterov && (momentum <= 0.0 || dampening != 0.0) {
            return Err(Error::config(format!(
                "SGD: Nesterov momentum requires a momentum > 0 and zero dampening (momentum {momentum}, dampening {dampening})"
            )));
        }
        let mut sgd = Sgd {
            params: Vec::new(),
            groups: Groups::default(),
            config,
            fused: true,
        };
        for group in groups {
            sgd.add_group(group)?;
        }
        Ok(sgd)
    }

    /// The current hyper-parameters (with the current base learning rate and the default
    /// weight decay).
    pub fn config(&self) -> SgdConfig {
        self.config
    }

    /// The names of the parameters, in the order given (groups in order of creation).
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// A copy of the momentum buffer of parameter `name`: `None` for an unknown name, without
    /// momentum, or before the parameter's first update.
    pub fn momentum_buffer(&self, name: &str) -> Result<Option<Tensor>> {
        match self
            .params
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.buf.as_ref())
        {
            Some(buf) => Ok(Some(buf.copy()?)),
            None => Ok(None),
        }
    }

    /// Forces the plain tensor path (for tests comparing it with the fused CPU kernels).
    #[cfg(test)]
    pub(crate) fn set_fused(&mut self, fused: bool) {
        self.fused = fused;
    }

    /// The tensor-op update of one parameter (and of its momentum buffer).
    fn plain_step(param: &mut Param, grad: &Tensor, s: SgdStep) -> Result<()> {
        let theta = param.var.as_tensor().detach();
        let mut d_p = grad.detach();
        if s.weight_decay != 0.0 {
            // grad = grad.add(param, alpha=weight_decay)
            d_p = (&d_p + theta.affine(s.weight_decay, 0.0)?)?;
        }
        if s.momentum != 0.0 {
            let buf = match &param.buf {
                // buf = torch.clone(grad).detach()
                None => d_p.copy()?,
                // buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                Some(buf) => (buf.affine(s.momentum, 0.0)? + d_p.affine(1.0 - s.dampening, 0.0)?)?,
            };
            d_p = if s.nesterov {
                // grad = grad.add(buf, alpha=momentum)
                (&d_p + buf.affine(s.momentum, 0.0)?)?
            } else {
                buf.clone()
            };
            param.buf = Some(buf);
        }
        // param.add_(grad, alpha=-lr)
        param.var.set(&(theta - d_p.affine(s.lr, 0.0)?)?)?;
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let SgdConfig {
            lr,
            momentum,
            dampening,
            nesterov,
            ..
        } = self.config;
        for param in &mut self.params {
            let Some(grad) = grads.get(param.var.as_tensor()) else {
                continue;
            };
            check_grad(&param.name, &param.var, grad)?;
            let group = self.groups.settings[param.group];
            let s = SgdStep {
                lr: lr * group.lr_scale,
                momentum,
                dampening,
                nesterov,
                weight_decay: group.weight_decay,
            };
            let var = param.var.as_tensor();
            if !self.fused {
                Self::plain_step(param, grad, s)?;
            } else if momentum == 0.0 {
                if fused_sgd::applies(&[var, grad]) {
                    fused_sgd::step_plain(var, grad, s)?;
                } else {
                    Self::plain_step(param, grad, s)?;
                }
            } else {
                let (buf, first) = match &param.buf {
                    Some(buf) => (buf.clone(), false),
                    None => (var.zeros_like()?, true),
                };
                if fused_sgd::applies(&[var, grad, &buf]) {
                    fused_sgd::step_momentum(var, grad, &buf, first, s)?;
                    param.buf = Some(buf);
                } else {
                    Self::plain_step(param, grad, s)?;
                }
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The momentum buffers, by `momentum_buffer.<name>`, of the parameters that have one
    /// (none without momentum).
    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut state = HashMap::with_capacity(self.params.len());
        for p in &self.params {
            if let Some(buf) = &p.buf {
                // A copy: the fused step updates the buffer in place.
                state.insert(format!("momentum_buffer.{}", p.name), buf.copy()?);
            }
        }
        Ok(state)
    }

    /// Restores the momentum buffers; a parameter without an entry has not been updated yet
    /// (its next step starts its buffer). Fails, changing nothing, on an entry of the wrong
    /// shape, an entry for no parameter, or any entry when the momentum is 0.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let mut known = HashSet::new();
        let mut restored = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let key = format!("momentum_buffer.{}", p.name);
            let buf = match state_entry(state, &key, &p.name, p.var.dims())? {
                Some(t) => Some(t.to_dtype(p.var.dtype())?.to_device(p.var.device())?),
                None => None,
            };
            if self.config.momentum != 0.0 {
                known.insert(key);
            }
            restored.push(buf);
        }
        reject_unknown_keys("SGD", state, &known)?;
        for (p, buf) in self.params.iter_mut().zip(restored) {
            p.buf = buf;
        }
        Ok(())
    }

    fn add_group(&mut self, group: ParamGroup) -> Result<usize> {
        let (index, params) = self.groups.add("SGD", group, self.config.weight_decay)?;
        self.params.extend(params.into_iter().map(|(name, var)| Param {
            name,
            var,
            group: index,
            buf: None,
        }));
        Ok(index)
    }

    fn set_lr_scale(&mut self, index: usize, lr_scale: f64) -> Result<()> {
        self.groups.set_lr_scale("SGD", index, lr_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// A few steps of SGD on two parameters (groups: decay on `w` only, lr_scale 0.5 on `b`),
    /// `b` without gradient at the first step; returns the parameters and `w`'s buffer.
    fn run(config: SgdConfig, fused: bool, dtype: DType) -> Vec<f64> {
        let dev = Device::Cpu;
        // More elements than a parallel chunk of the fused kernels.
        let w = Tensor::arange(0f64, 50_000.0, &dev)
            .unwrap()
            .affine(4e-5, -1.0)
            .unwrap();
        let w = Var::from_tensor(&w.reshape((5, 10_000)).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let b = Tensor::new(&[0.3f64, -0.7, 1.1, 0.2, -0.4], &dev).unwrap();
        let b = Var::from_tensor(&b.to_dtype(dtype).unwrap()).unwrap();
        let groups = crate::optim::param_groups(vec![("w".into(), w.clone()), ("b".into(), b.clone())], 0.1)
            .into_iter()
            .map(|g| {
                if g.params[0].0 == "b" {
                    g.with_lr_scale(0.5)
                } else {
                    g
                }
            })
            .collect();
        let mut opt = Sgd::with_groups(groups, config).unwrap();
        opt.set_fused(fused);
        for k in 0..4 {
            let mut loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            if k > 0 {
                let wb = b.as_tensor().unsqueeze(0).unwrap().matmul(w.as_tensor()).unwrap();
                loss = (loss + wb.sqr().unwrap().sum_all().unwrap()).unwrap();
            }
            opt.backward_step(&loss).unwrap();
        }
        let mut out = Vec::new();
        let mut tensors = vec![w.as_tensor().clone(), b.as_tensor().clone()];
        tensors.extend(opt.momentum_buffer("w").unwrap());
        for t in tensors {
            out.extend(
                t.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap(),
            );
        }
        out
    }

    #[test]
    fn fused_and_plain_paths_agree() {
        let configs = [
            SgdConfig {
                lr: 0.05,
                ..SgdConfig::default()
            },
            SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 0.1,
                ..SgdConfig::default()
            },
            SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.1,
                ..SgdConfig::default()
            },
            SgdConfig {
                lr: 0.05,
                momentum: 0.8,
                dampening: 0.3,
                ..SgdConfig::default()
            },
        ];
        for config in configs {
            for (dtype, tol) in [(DType::F64, 1e-14), (DType::F32, 1e-6)] {
                let (fused, plain) = (run(config, true, dtype), run(config, false, dtype));
                assert_eq!(fused.len(), plain.len());
                for (f, p) in fused.iter().zip(&plain) {
                    assert!(
                        (f - p).abs() <= tol * p.abs().max(1.0),
                        "{config:?} {dtype:?}: {f} vs {p}"
                    );
                }
            }
        }
    }
}
