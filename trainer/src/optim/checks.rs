//! Checks shared by the optimizers: hyper-parameters, state entries, gradients.

use std::collections::{HashMap, HashSet};

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

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
