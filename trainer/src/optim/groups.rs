//! Parameter groups: a learning-rate multiplier and a weight decay shared by parameters.

use std::collections::HashSet;

use candle_core::{TensorId, Var};

use crate::error::{Error, Result};

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
