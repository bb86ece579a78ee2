//! Optimizers with PyTorch's exact update rules: [`Adam`] (`torch.optim.Adam`, weight decay as
//! an L2 term added to the gradient) and [`AdamW`] (`torch.optim.AdamW`, decoupled weight decay).
//!
//! Parameters are named `candle_core::Var`s, updated in place with [`Var::set`]; the update is
//! computed on detached tensors, so it records no graph. As in PyTorch, a parameter without a
//! gradient in the [`GradStore`] (it took no part in the loss) is skipped entirely: no decay, no
//! moment update, and its step count (used by the bias corrections) does not advance.

use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{Error, Result};
use crate::fused_adam::{self, AdamStep};

/// Something that updates parameters from their gradients.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &GradStore) -> Result<()>;

    /// The current learning rate.
    fn learning_rate(&self) -> f64;

    /// Sets the learning rate of the next steps (for schedules).
    fn set_learning_rate(&mut self, lr: f64);

    /// The optimizer's state (moments, step counts), to save next to a checkpoint.
    fn state(&self) -> Result<HashMap<String, Tensor>>;

    /// Restores a state saved by [`Optimizer::state`] (resuming a run).
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;

    /// Back-propagates `loss` and applies [`Optimizer::step`] with its gradients.
    fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }
}

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
    /// L2 penalty: `weight_decay * p` is added to the gradient (default `0`).
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
    /// Decoupled weight decay: each step first does `p *= 1 - lr * weight_decay` (default `0.01`).
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
    params: Vec<Param>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
}

impl AdamCore {
    fn new(
        what: &str,
        named_vars: Vec<(String, Var)>,
        [lr, beta1, beta2, eps, weight_decay]: [f64; 5],
        decoupled: bool,
    ) -> Result<Self> {
        let checks = [
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
        ];
        for (field, value, ok, expected) in checks {
            if !ok {
                return Err(Error::config(format!(
                    "{what}: {field} must be {expected}, got {value}"
                )));
            }
        }
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        let mut params = Vec::with_capacity(named_vars.len());
        for (name, var) in named_vars {
            if !var.dtype().is_float() {
                return Err(Error::config(format!(
                    "{what}: parameter `{name}` has dtype {:?}; only floating-point parameters can be optimised",
                    var.dtype()
                )));
            }
            if !names.insert(name.clone()) {
                return Err(Error::config(format!(
                    "{what}: parameter name `{name}` is given twice"
                )));
            }
            if !ids.insert(var.as_tensor().id()) {
                return Err(Error::config(format!(
                    "{what}: parameter `{name}` is the same variable as an earlier parameter"
                )));
            }
            let m = var.as_tensor().zeros_like()?;
            let v = var.as_tensor().zeros_like()?;
            params.push(Param {
                name,
                var,
                m,
                v,
                step: 0,
            });
        }
        Ok(AdamCore {
            params,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        })
    }

    /// One step, following `torch.optim.adam._single_tensor_adam` (amsgrad, maximize off).
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let (lr, beta1, beta2, eps, wd) = (self.lr, self.beta1, self.beta2, self.eps, self.weight_decay);
        for param in &mut self.params {
            let Some(grad) = grads.get(param.var.as_tensor()) else {
                continue;
            };
            if grad.dims() != param.var.dims() || grad.dtype() != param.var.dtype() {
                return Err(Error::config(format!(
                    "optimizer: the gradient of `{}` is {:?} {:?} but the parameter is {:?} {:?}",
                    param.name,
                    grad.dtype(),
                    grad.dims(),
                    param.var.dtype(),
                    param.var.dims()
                )));
            }
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
            if fused_adam::applies(&[param.var.as_tensor(), grad, &param.m, &param.v]) {
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
    /// shape, and nothing changes unless all are.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let get = |key: String, dims: &[usize]| -> Result<Tensor> {
            match state.get(&key) {
                Some(t) if t.dims() == dims => Ok(t.clone()),
                Some(t) => Err(Error::config(format!(
                    "optimizer state `{key}`: expected shape {dims:?}, found {:?}",
                    t.dims()
                ))),
                None => Err(Error::config(format!("optimizer state `{key}` is missing"))),
            }
        };
        let mut restored = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let (dtype, device) = (p.var.dtype(), p.var.device());
            let m = get(format!("exp_avg.{}", p.name), p.var.dims())?
                .to_dtype(dtype)?
                .to_device(device)?;
            let v = get(format!("exp_avg_sq.{}", p.name), p.var.dims())?
                .to_dtype(dtype)?
                .to_device(device)?;
            let step = get(format!("step.{}", p.name), &[1])?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?[0];
            if !(step >= 0.0 && step.fract() == 0.0) {
                return Err(Error::config(format!(
                    "optimizer state `step.{}`: bad step count {step}",
                    p.name
                )));
            }
            restored.push((m, v, step as u64));
        }
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
/// use trainer::optim::{Adam, AdamConfig, Optimizer};
/// let varmap = candle_nn::VarMap::new();
/// // ... build a model whose variables go into `varmap` ...
/// let mut opt = Adam::new(backbone::init::trainable_vars(&varmap), AdamConfig::default())?;
/// # let loss = candle_core::Tensor::new(0f32, &candle_core::Device::Cpu)?;
/// opt.backward_step(&loss)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Adam {
    core: AdamCore,
}

impl Adam {
    /// An optimizer for the named parameters. Fails on an invalid configuration (negative lr or
    /// weight decay, beta outside `[0, 1)`, ...), a non-float parameter, a name given twice or a
    /// variable given twice.
    pub fn new(params: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = config;
        let core = AdamCore::new("Adam", params, [lr, beta1, beta2, eps, weight_decay], false)?;
        Ok(Adam { core })
    }

    /// The current hyper-parameters (with the current learning rate).
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

    /// The names of the parameters, in the order given.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.core.names()
    }

    /// How many updates parameter `name` has received (steps where it had no gradient do not
    /// count), or `None` for an unknown name.
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.core.step_count(name)
    }
}

impl Optimizer for Adam {
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
}

/// AdamW as `torch.optim.AdamW` (no amsgrad): each step first shrinks the parameter,
/// `p *= 1 - lr * weight_decay`, then applies the Adam update with the raw gradient.
#[derive(Debug)]
pub struct AdamW {
    core: AdamCore,
}

impl AdamW {
    /// An optimizer for the named parameters; fails as [`Adam::new`].
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = config;
        let core = AdamCore::new("AdamW", params, [lr, beta1, beta2, eps, weight_decay], true)?;
        Ok(AdamW { core })
    }

    /// The current hyper-parameters (with the current learning rate).
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

    /// The names of the parameters, in the order given.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.core.names()
    }

    /// How many updates parameter `name` has received (steps where it had no gradient do not
    /// count), or `None` for an unknown name.
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.core.step_count(name)
    }
}

impl Optimizer for AdamW {
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
}
