//! Optimizers with PyTorch's exact update rules: [`Adam`] (`torch.optim.Adam`, weight decay as
//! an L2 term added to the gradient), [`AdamW`] (`torch.optim.AdamW`, decoupled weight decay)
//! and [`Sgd`] (`torch.optim.SGD`: momentum, dampening, Nesterov, L2 weight decay), with
//! parameter groups ([`ParamGroup`], [`param_groups`]) and gradient clipping
//! ([`clip_grad_norm`]).
//!
//! Parameters are named `candle_core::Var`s, updated in place with [`Var::set`] (or by in-place
//! CPU kernels); the update is computed on detached tensors, so it records no graph. As in
//! PyTorch, a parameter without a gradient in the [`GradStore`] (it took no part in the loss)
//! is skipped entirely: no decay, no moment update, and its step count (used by the bias
//! corrections) does not advance.
//!
//! Every optimizer has one or more parameter groups, each with a learning-rate multiplier
//! (`lr_scale`) and its own weight decay: the learning rate of a group is the optimizer's base
//! rate ([`Optimizer::set_learning_rate`], which schedules drive) times its `lr_scale`, as a
//! PyTorch param group whose `lr` is kept at that ratio. [`Optimizer::add_group`] adds
//! parameters later (unfreezing a backbone) and keeps the state of the others, like PyTorch's
//! `add_param_group`.
//!
//! The state ([`Optimizer::state`]) is keyed by parameter name, so a run can be resumed
//! exactly: `exp_avg.<name>`, `exp_avg_sq.<name>`, `step.<name>` for Adam and AdamW,
//! `momentum_buffer.<name>` for SGD with momentum (present once the parameter has had a
//! gradient). [`Optimizer::load_state`] rejects a state with a missing entry, an entry of the
//! wrong shape (naming the tensor, the expected and the actual shape) or an entry for no
//! parameter, and changes nothing then.

use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, TensorId, Var};

use crate::error::{Error, Result};
use crate::fused_adam::{self, AdamStep};
pub use crate::sgd::{Sgd, SgdConfig};

/// Something that updates parameters from their gradients.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &GradStore) -> Result<()>;

    /// The current base learning rate (each group uses it times its `lr_scale`).
    fn learning_rate(&self) -> f64;

    /// Sets the base learning rate of the next steps (for schedules); each group uses
    /// `lr * lr_scale`.
    fn set_learning_rate(&mut self, lr: f64);

    /// The optimizer's state (moments, step counts, momentum buffers), keyed by parameter name,
    /// to save next to a checkpoint.
    fn state(&self) -> Result<HashMap<String, Tensor>>;

    /// Restores a state saved by [`Optimizer::state`] (resuming a run). Fails, changing
    /// nothing, when an entry is missing, has the wrong shape or belongs to no parameter.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;

    /// Adds a parameter group (as PyTorch's `add_param_group`): its parameters start with a
    /// fresh state, the other parameters keep theirs. Returns the group's index. Fails, adding
    /// nothing, on an invalid `lr_scale` or weight decay, a non-float parameter, or a name or
    /// variable the optimizer already has.
    fn add_group(&mut self, group: ParamGroup) -> Result<usize>;

    /// Sets the learning-rate multiplier of group `index` (in the order of creation); fails on
    /// an unknown index or a negative or non-finite scale.
    fn set_lr_scale(&mut self, index: usize, lr_scale: f64) -> Result<()>;

    /// Back-propagates `loss` and applies [`Optimizer::step`] with its gradients.
    fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }
}

/// Parameters that share a learning-rate multiplier and a weight decay.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// The named parameters.
    pub params: Vec<(String, Var)>,
    /// Multiplier of the optimizer's base learning rate (`>= 0`, default 1).
    pub lr_scale: f64,
    /// The group's weight decay; `None` uses the optimizer's.
    pub weight_decay: Option<f64>,
}

impl ParamGroup {
    /// A group with `lr_scale` 1 and the optimizer's weight decay.
    pub fn new(params: Vec<(String, Var)>) -> Self {
        ParamGroup {
            params,
            lr_scale: 1.0,
            weight_decay: None,
        }
    }

    /// The same group with learning-rate multiplier `lr_scale`.
    pub fn with_lr_scale(self, lr_scale: f64) -> Self {
        ParamGroup { lr_scale, ..self }
    }

    /// The same group with its own weight decay.
    pub fn with_weight_decay(self, weight_decay: f64) -> Self {
        ParamGroup {
            weight_decay: Some(weight_decay),
            ..self
        }
    }
}

/// Whether a parameter is exempt from weight decay by timm's rule
/// (`timm.optim.param_groups_weight_decay`): tensors of rank <= 1 (biases, normalisation
/// weights and biases) and any tensor named `bias` or `*.bias`.
pub fn is_no_decay(name: &str, var: &Var) -> bool {
    var.rank() <= 1 || name == "bias" || name.ends_with(".bias")
}

/// Splits `params` as timm's `param_groups_weight_decay` does: a group without weight decay
/// (`weight_decay: Some(0.0)`) for the parameters of [`is_no_decay`] (biases, batch-norm
/// weights and biases), then a group with `weight_decay` for the others. Both have `lr_scale`
/// 1; an empty group is left out, and the order of the parameters is kept within each group.
pub fn param_groups(params: Vec<(String, Var)>, weight_decay: f64) -> Vec<ParamGroup> {
    let (no_decay, decay): (Vec<_>, Vec<_>) = params.into_iter().partition(|(n, v)| is_no_decay(n, v));
    [(no_decay, 0.0), (decay, weight_decay)]
        .into_iter()
        .filter(|(params, _)| !params.is_empty())
        .map(|(params, wd)| ParamGroup::new(params).with_weight_decay(wd))
        .collect()
}

/// The settings of one parameter group inside an optimizer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupSettings {
    pub lr_scale: f64,
    pub weight_decay: f64,
}

/// The parameter groups of an optimizer and the names and variables it already has.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    pub settings: Vec<GroupSettings>,
    names: HashSet<String>,
    ids: HashSet<TensorId>,
}

fn check_scale(what: &str, field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{what}: {field} must be >= 0, got {value}"
        )))
    }
}

impl Groups {
    /// Validates `group` (scale, decay, every parameter) and registers it; returns its index
    /// and parameters. Nothing is registered on error.
    pub fn add(
        &mut self,
        what: &str,
        group: ParamGroup,
        default_weight_decay: f64,
    ) -> Result<(usize, Vec<(String, Var)>)> {
        let index = self.settings.len();
        check_scale(what, &format!("lr_scale of group {index}"), group.lr_scale)?;
        let weight_decay = group.weight_decay.unwrap_or(default_weight_decay);
        check_scale(what, &format!("weight_decay of group {index}"), weight_decay)?;
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (name, var) in &group.params {
            if !var.dtype().is_float() {
                return Err(Error::config(format!(
                    "{what}: parameter `{name}` has dtype {:?}; only floating-point parameters can be optimised",
                    var.dtype()
                )));
            }
            if self.names.contains(name) || !names.insert(name.clone()) {
                return Err(Error::config(format!(
                    "{what}: parameter name `{name}` is given twice"
                )));
            }
            let id = var.as_tensor().id();
            if self.ids.contains(&id) || !ids.insert(id) {
                return Err(Error::config(format!(
                    "{what}: parameter `{name}` is the same variable as an earlier parameter"
                )));
            }
        }
        self.names.extend(names);
        self.ids.extend(ids);
        self.settings.push(GroupSettings {
            lr_scale: group.lr_scale,
            weight_decay,
        });
        Ok((index, group.params))
    }

    /// Sets the `lr_scale` of group `index`.
    pub fn set_lr_scale(&mut self, what: &str, index: usize, lr_scale: f64) -> Result<()> {
        check_scale(what, "lr_scale", lr_scale)?;
        let count = self.settings.len();
        let group = self
            .settings
            .get_mut(index)
            .ok_or_else(|| Error::config(format!("{what}: no parameter group {index} (it has {count})")))?;
        group.lr_scale = lr_scale;
        Ok(())
    }
}

/// Checks hyper-parameters given as `(name, value, ok, what ok means)`.
pub(crate) fn check_hyper(what: &str, checks: &[(&str, f64, bool, &str)]) -> Result<()> {
    for &(field, value, ok, expected) in checks {
        if !ok {
            return Err(Error::config(format!(
                "{what}: {field} must be {expected}, got {value}"
            )));
        }
    }
    Ok(())
}

/// The entry `key` of `state`, which must have shape `dims` (the shape of parameter `name`).
pub(crate) fn state_entry(
    state: &HashMap<String, Tensor>,
    key: &str,
    name: &str,
    dims: &[usize],
) -> Result<Option<Tensor>> {
    match state.get(key) {
        Some(t) if t.dims() == dims => Ok(Some(t.clone())),
        Some(t) => Err(Error::config(format!(
            "optimizer state `{key}`: expected shape {dims:?} (the shape of parameter `{name}`), found {:?}",
            t.dims()
        ))),
        None => Ok(None),
    }
}

/// Fails on the first key of `state` (in sorted order) that is not in `known`.
pub(crate) fn reject_unknown_keys(
    what: &str,
    state: &HashMap<String, Tensor>,
    known: &HashSet<String>,
) -> Result<()> {
    let mut unknown: Vec<&String> = state.keys().filter(|k| !known.contains(*k)).collect();
    unknown.sort();
    match unknown.first() {
        Some(key) => Err(Error::config(format!(
            "optimizer state `{key}` belongs to no parameter of this {what} optimizer ({} unexpected entries)",
            unknown.len()
        ))),
        None => Ok(()),
    }
}

/// Checks that `grad` fits the parameter `name` (`var`).
pub(crate) fn check_grad(name: &str, var: &Var, grad: &Tensor) -> Result<()> {
    if grad.dims() != var.dims() || grad.dtype() != var.dtype() {
        return Err(Error::config(format!(
            "optimizer: the gradient of `{name}` is {:?} {:?} but the parameter is {:?} {:?}",
            grad.dtype(),
            grad.dims(),
            var.dtype(),
            var.dims()
        )));
    }
    Ok(())
}

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
            sum_sq += crate::fused_sgd::sum_sq(grad)?;
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

    /// An optimizer for parameter groups (see [`param_groups`]); fails as [`Adam::new`] or on
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

    /// An optimizer for parameter groups (see [`param_groups`]); fails as
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
