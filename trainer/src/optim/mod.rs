//! Optimizers with PyTorch's exact update rules: [`Adam`] (`torch.optim.Adam`, weight decay as
//! an L2 term added to the gradient), [`AdamW`] (`torch.optim.AdamW`, decoupled weight decay)
//! and [`Sgd`] (`torch.optim.SGD`: momentum, dampening, Nesterov, L2 weight decay), with
//! parameter groups ([`ParamGroup`], [`param_groups`]) and gradient clipping
//! ([`clip_grad_norm`]).
//!
//! Parameters are named `candle_core::Var`s, updated in place with [`Var::set`](candle_core::Var::set) (or by in-place
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

mod adam;
mod checks;
mod clip;
pub(crate) mod fused;
mod groups;
mod kind;
mod sgd;

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use crate::error::Result;

pub use adam::{Adam, AdamConfig, AdamW, AdamWConfig};
pub(crate) use checks::{check_grad, check_hyper, reject_unknown_keys, state_entry};
pub use clip::clip_grad_norm;
pub(crate) use groups::Groups;
pub use groups::{is_no_decay, param_groups, ParamGroup};
pub use kind::OptimizerKind;
pub use sgd::{Sgd, SgdConfig};

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
