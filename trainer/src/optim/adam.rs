//! Adam and AdamW with PyTorch's update rules.

use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use super::fused::adam::{self as fused_adam, AdamStep};
use super::{check_grad, check_hyper, reject_unknown_keys, state_entry, Groups, Optimizer, ParamGroup};
use crate::error::{Error, Result};

/// Hyper-parameters of [`Adam`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (default `1e-3`).
    pub lr: f64,
    /// Decay of the first-moment average (default `0.9`).
    pub beta1: f64,
    /// Decay of the second-moment average (default `0.999`).
    pub beta2: f64,
    /// Added to the denominator, after the square root (default `1e-8`).
    pub eps: f64,
    /// L2 penalty: `weight_decay * p` is added to the gradient (default `0`); the default of
    /// the groups that do not set their own.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Hyper-parameters of [`AdamW`]; the defaults are PyTorch's (note `weight_decay = 0.01`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (default `1e-3`).
    pub lr: f64,
    /// Decay of the first-moment average (default `0.9`).
    pub beta1: f64,
    /// Decay of the second-moment average (default `0.999`).
    pub beta2: f64,
    /// Added to the denominator, after the square root (default `1e-8`).
    pub eps: f64,
    /// Decoupled weight decay: each step first does `p *= 1 - lr * weight_decay` (default
    /// `0.01`); the default of the groups that do not set their own.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One parameter and its Adam state.
#[derive(Debug)]
struct Param {
    name: String,
    var: Var,
    /// Index of its group.
    group: usize,
    /// First moment (`exp_avg`).
    m: Tensor,
    /// Second moment (`exp_avg_sq`).
    v: Tensor,
    /// Number of updates this parameter received.
    step: u64,
}

/// The shared implementation of Adam and AdamW.
#[derive(Debug)]
struct AdamCore {
    what: &'static str,
    params: Vec<Param>,
    groups: Groups,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    /// Whether the in-place CPU kernels may be used (always, except in tests of the plain path).
    fused: bool,
}

impl AdamCore {
    fn new(
        what: &'static str,
        groups: Vec<ParamGroup>,
        [lr, beta1, beta2, eps, weight_decay]: [f64; 5],
        decoupled: bool,
    ) -> Result<Self> {
        check_hyper(
            what,
            &[
                ("lr", lr, lr.is_finite() && lr >= 0.0, ">= 0"),
                ("beta1", beta1, (0.0..1.0).contains(&beta1), "in [0, 1)"),
                ("beta2", beta2, (0.0..1.0).contains(&beta2), "in [0, 1)"),
                ("eps", eps, eps.is_finite() && eps >= 0.0, ">= 0"),
                (
                    "weight_decay",
                    weight_decay,
                    weight_decay.is_finite() && weight_decay >= 0.0,
                    ">= 0",
                ),
            ],
        )?;
        let mut core = AdamCore {
            what,
            params: Vec::new(),
            groups: Groups::default(),
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
            fused: true,
        };
        for group in groups {
            core.add_group(group)?;
        }
        Ok(core)
    }

    fn add_group(&mut self, group: ParamGroup) -> Result<usize> {
        let (index, params) = self.groups.add(self.what, group, self.weight_decay)?;
        let mut added = Vec::with_capacity(params.len());
        for (name, var) in params {
            let m = var.as_tensor().zeros_like()?;
            let v = var.as_tensor().zeros_like()?;
            added.push(Param {
                name,
                var,
                group: index,
                m,
                v,
                step: 0,
            });
        }
        self.params.extend(added);
        Ok(index)
    }

    /// One step, following `torch.optim.adam._single_tensor_adam` (amsgrad, maximize off).
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let (beta1, beta2, eps) = (self.beta1, self.beta2, self.eps);
        for param in &mut self.params {
            let Some(grad) = grads.get(param.var.as_tensor()) else {
                continue;
            };
            check_grad(&param.name, &param.var, grad)?;
            let group = self.groups.settings[param.group];
            let (lr, wd) = (self.lr * group.lr_scale, group.weight_decay);
            param.step += 1;
            let step = i32::try_from(param.step).unwrap_or(i32::MAX);
            let fused = AdamStep {
                beta1,
                beta2,
                eps,
                lr,
                weight_decay: wd,
                decoupled: self.decoupled,
                bias_correction1: 1.0 - beta1.powi(step),
                bias_correction2: 1.0 - beta2.powi(step),
            };
            if self.fused && fused_adam::applies(&[param.var.as_tensor(), grad, &param.m, &param.v]) {
                fused_adam::step(param.var.as_tensor(), grad, &param.m, &param.v, fused)?;
                continue;
            }
            let mut theta = param.var.as_tensor().detach();
            let mut grad = grad.detach();
            if wd != 0.0 {
                if self.decoupled {
                    // param.mul_(1 - lr * weight_decay)
                    theta = theta.affine(1.0 - lr * wd, 0.0)?;
                } else {
                    // grad = grad.add(param, alpha=weight_decay)
                    grad = (&grad + theta.affine(wd, 0.0)?)?;
                }
            }
            // exp_avg.lerp_(grad, 1 - beta1)
            let m = (&param.m + (&grad - &param.m)?.affine(1.0 - beta1, 0.0)?)?;
            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            let v = (param.v.affine(beta2, 0.0)? + grad.sqr()?.affine(1.0 - beta2, 0.0)?)?;
            let (bias_correction1, bias_correction2) = (fused.bias_correction1, fused.bias_correction2);
            let step_size = lr / bias_correction1;
            // denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps)
            let denom = v.sqrt()?.affine(1.0 / bias_correction2.sqrt(), eps)?;
            // param.addcdiv_(exp_avg, denom, value=-step_size)
            let updated = (theta - (m.div(&denom)?.affine(step_size, 0.0))?)?;
            param.var.set(&updated)?;
            param.m = m;
            param.v = v;
        }
        Ok(())
    }

    /// The moments and step counts, by `exp_avg.<name>`, `exp_avg_sq.<name>`, `step.<name>`.
    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut state = HashMap::with_capacity(3 * self.params.len());
        for p in &self.params {
            // Copies: the fused step updates the moments in place.
            state.insert(format!("exp_avg.{}", p.name), p.m.copy()?);
            state.insert(format!("exp_avg_sq.{}", p.name), p.v.copy()?);
            let step = Tensor::new(&[p.step as f64], &candle_core::Device::Cpu)?;
            state.insert(format!("step.{}", p.name), step);
        }
        Ok(state)
    }

    /// Restores what [`AdamCore::state`] saved; every parameter must be present with its
    /// shape, no entry may belong to another parameter, and nothing changes unless all is well.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let mut known = HashSet::with_capacity(3 * self.params.len());
        let mut restored = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let (dtype, device, dims) = (p.var.dtype(), p.var.device(), p.var.dims());
            let mut get = |key: String, dims: &[usize]| -> Result<Tensor> {
                let entry = state_entry(state, &key, &p.name, dims)?
                    .ok_or_else(|| Error::config(format!("optimizer state `{key}` is missing")));
                known.insert(key);
                entry
            };
            let m = get(format!("exp_avg.{}", p.name), dims)?
                .to_dtype(dtype)?
                .to_device(device)?;
            let v = get(format!("exp_avg_sq.{}", p.name), dims)?
                .to_dtype(dtype)?
                .to_device(device)?;
            let step = get(format!("step.{}", p.name), &[1])?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?[0];
            if !(step >= 0.0 && step.fract() == 0.0) {
                return Err(Error::config(format!(
                    "optimizer state `step.{}`: bad step count {step}",
                    p.name
                )));
            }
            restored.push((m, v, step as u64));
        }
        reject_unknown_keys(self.what, state, &known)?;
        for (p, (m, v, step)) in self.params.iter_mut().zip(restored) {
            (p.m, p.v, p.step) = (m, v, step);
        }
        Ok(())
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    fn step_count(&self, name: &str) -> Option<u64> {
        self.params.iter().find(|p| p.name == name).map(|p| p.step)
    }
}

/// Adam as `torch.optim.Adam` (no amsgrad): weight decay, when set, is an L2 term
/// `weight_decay * p` added to the gradient before the moments.
///
/// ```no_run
/// # fn main() -> trainer::Result<()> {
/// use trainer::optim::{param_groups, Adam, AdamConfig, Optimizer};
/// let varmap = candle_nn::VarMap::new();
/// // ... build a model whose variables go into `varmap` ...
/// let params = backbone::init::trainable_vars(&varmap);
/// // Weight decay on the weights only, not on biases and batch-norm parameters.
/// let config = AdamConfig { weight_decay: 1e-4, ..AdamConfig::default() };
/// let mut opt = Adam::with_groups(param_groups(params, 1e-4), config)?;
/// # let loss = candle_core::Tensor::new(0f32, &candle_core::Device::Cpu)?;
/// opt.backward_step(&loss)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Adam {
    core: AdamCore,
}

impl Adam {
    /// An optimizer for the named parameters (one group). Fails on an invalid configuration
    /// (negative lr or weight decay, beta outside `[0, 1)`, ...), a non-float parameter, a name
    /// given twice or a variable given twice.
    pub fn new(params: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params)], config)
    }

    /// An optimizer for parameter groups (see [`param_groups`](super::param_groups)); fails as [`Adam::new`] or on
    /// a group with a negative or non-finite `lr_scale` or weight decay.
    pub fn with_groups(groups: Vec<ParamGroup>, config: AdamConfig) -> Result<Self> {
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = config;
        let core = AdamCore::new("Adam", groups, [lr, beta1, beta2, eps, weight_decay], false)?;
        Ok(Adam { core })
    }

    /// The current hyper-parameters (with the current base learning rate and the default
    /// weight decay).
    pub fn config(&self) -> AdamConfig {
        let c = &self.core;
        AdamConfig {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
        }
    }

    /// The names of the parameters, in the order given (groups in order of creation).
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.core.names()
    }

    /// How many updates parameter `name` has received (steps where it had no gradient do not
    /// count), or `None` for an unknown name.
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.core.step_count(name)
    }

    /// Forces the plain tensor path (for tests comparing it with the fused CPU kernels).
    #[cfg(test)]
    pub(crate) fn set_fused(&mut self, fused: bool) {
        self.core.fused = fused;
    }
}

/// AdamW as `torch.optim.AdamW` (no amsgrad): each step first shrinks the parameter,
/// `p *= 1 - lr * weight_decay` (with the group's lr and weight decay), then applies the Adam
/// update with the raw gradient.
#[derive(Debug)]
pub struct AdamW {
    core: AdamCore,
}

impl AdamW {
    /// An optimizer for the named parameters (one group); fails as [`Adam::new`].
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params)], config)
    }

    /// An optimizer for parameter groups (see [`param_groups`](super::param_groups)); fails as
    /// [`Adam::with_groups`].
    pub fn with_groups(groups: Vec<ParamGroup>, config: AdamWConfig) -> Result<Self> {
        let AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = config;
        let core = AdamCore::new("AdamW", groups, [lr, beta1, beta2, eps, weight_decay], true)?;
        Ok(AdamW { core })
    }

    /// The current hyper-parameters (with the current base learning rate and the default
    /// weight decay).
    pub fn config(&self) -> AdamWConfig {
        let c = &self.core;
        AdamWConfig {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
        }
    }

    /// The names of the parameters, in the order given (groups in order of creation).
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.core.names()
    }

    /// How many updates parameter `name` has received (steps where it had no gradient do not
    /// count), or `None` for an unknown name.
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.core.step_count(name)
    }
}

macro_rules! impl_optimizer_for_adam {
    ($ty:ty) => {
        impl Optimizer for $ty {
            fn step(&mut self, grads: &GradStore) -> Result<()> {
                self.core.step(grads)
            }

            fn learning_rate(&self) -> f64 {
                self.core.lr
            }

            fn set_learning_rate(&mut self, lr: f64) {
                self.core.lr = lr;
            }

            fn state(&self) -> Result<HashMap<String, Tensor>> {
                self.core.state()
            }

            fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
                self.core.load_state(state)
            }

            fn add_group(&mut self, group: ParamGroup) -> Result<usize> {
                self.core.add_group(group)
            }

            fn set_lr_scale(&mut self, index: usize, lr_scale: f64) -> Result<()> {
                self.core
                    .groups
                    .set_lr_scale(self.core.what, index, lr_scale)
            }
        }
    };
}

impl_optimizer_for_adam!(Adam);
impl_optimizer_for_adam!(AdamW);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::param_groups;
    use candle_core::Device;

    /// Runs a few AdamW / Adam steps with groups on the fused and the plain path.
    fn run(decoupled: bool, fused: bool, dtype: DType) -> Vec<Vec<f64>> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(
            &Tensor::arange(0f64, 12.0, &dev)
                .unwrap()
                .affine(0.1, -0.5)
                .unwrap()
                .reshape((3, 4))
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let b = Var::from_tensor(
            &Tensor::new(&[0.3f64, -0.7, 1.1, 0.2], &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let groups = param_groups(vec![("w".into(), w.clone()), ("b".into(), b.clone())], 0.1);
        let groups = groups
            .into_iter()
            .map(|g| {
                if g.params[0].0 == "b" {
                    g.with_lr_scale(0.5)
                } else {
                    g
                }
            })
            .collect();
        let mut opt: Box<dyn Optimizer> = if decoupled {
            let mut o = AdamW::with_groups(groups, AdamWConfig::default()).unwrap();
            o.core.fused = fused;
            Box::new(o)
        } else {
            let mut o = Adam::with_groups(groups, AdamConfig::default()).unwrap();
            o.set_fused(fused);
            Box::new(o)
        };
        opt.set_learning_rate(0.05);
        for _ in 0..4 {
            let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap()
                + w.as_tensor()
                    .matmul(&b.as_tensor().unsqueeze(1).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap())
            .unwrap();
            opt.backward_step(&loss).unwrap();
        }
        [w, b]
            .iter()
            .map(|v| {
                v.as_tensor()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn fused_and_plain_adam_paths_agree() {
        for decoupled in [false, true] {
            for (dtype, tol) in [(DType::F64, 1e-14), (DType::F32, 1e-6)] {
                let (fused, plain) = (run(decoupled, true, dtype), run(decoupled, false, dtype));
                for (f, p) in fused.iter().flatten().zip(plain.iter().flatten()) {
                    assert!(
                        (f - p).abs() <= tol * p.abs().max(1.0),
                        "{decoupled} {dtype:?}: {f} vs {p}"
                    );
                }
            }
        }
    }
}
