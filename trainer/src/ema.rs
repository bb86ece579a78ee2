//! An exponential moving average of a model's weights: timm's `ModelEmaV3` as its `train.py`
//! uses it (`--model-ema`, `--model-ema-decay`, default 0.9998).
//!
//! After each optimizer update `num_updates` (1-based) every floating-point variable of the
//! model, parameters and buffers alike (batch norm's running statistics: timm averages the
//! whole `state_dict`), moves towards the model's:
//! `ema = lerp(ema, model, 1 - d)` with `d = 0` at the first update (the average starts as a
//! copy of the weights after one step: timm's `get_decay(step)` is 0 while `step - 1 <= 0`) and
//! `d = decay` afterwards. The interpolation is torch's `lerp` (`ema + w * (model - ema)` for
//! `w < 0.5`, `model - (1 - w) * (model - ema)` otherwise), in the variables' own dtype.
//! timm's decay warmup (`--model-ema-warmup`) is not implemented.
//!
//! ```no_run
//! # fn demo(varmap: &candle_nn::VarMap) -> trainer::Result<()> {
//! let mut ema = trainer::ema::ModelEma::new(varmap, 0.9998)?;
//! for step in 1..=100 {
//!     // ... optimizer.step(&grads)? ...
//!     ema.update(varmap, step)?;
//! }
//! let accuracy = ema.with_weights(varmap, || Ok(0.0 /* evaluate the model */))?;
//! # Ok(()) }
//! ```

use crate::{Error, Result};
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The moving average of every variable of a [`VarMap`] (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ModelEma {
    decay: f64,
    ema: BTreeMap<String, Tensor>,
}

/// The variables of `varmap`, by name, sorted.
fn variables(varmap: &VarMap) -> Result<BTreeMap<String, Var>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::config("the variable map's lock is poisoned"))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

impl ModelEma {
    /// timm `train.py`'s `--model-ema-decay` default.
    pub const DEFAULT_DECAY: f64 = 0.9998;

    /// An average starting as a copy of `varmap`'s variables; `decay` in `[0, 1)`.
    pub fn new(varmap: &VarMap, decay: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            return Err(Error::config(format!(
                "the EMA decay must be in [0, 1), got {decay}"
            )));
        }
        let mut ema = BTreeMap::new();
        for (name, var) in variables(varmap)? {
            ema.insert(name, var.as_tensor().detach().copy()?);
        }
        Ok(Self { decay, ema })
    }

    /// The decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The decay applied at update `step` (1-based): 0 at the first (timm's
    /// `get_decay(step)`), `decay` afterwards.
    pub fn decay_at(&self, step: usize) -> f64 {
        if step <= 1 {
            0.0
        } else {
            self.decay
        }
    }

    /// Moves the average towards `varmap`'s variables after optimizer update `step`
    /// (1-based; timm's `update(model, step=num_updates)`). A variable the average does not
    /// hold, or of another shape, is an error naming it.
    pub fn update(&mut self, varmap: &VarMap, step: usize) -> Result<()> {
        let weight = 1.0 - self.decay_at(step);
        for (name, var) in variables(varmap)? {
            let Some(ema) = self.ema.get_mut(&name) else {
                return Err(Error::config(format!(
                    "the model has a variable `{name}` the weights' moving average does not hold"
                )));
            };
            let model = var.as_tensor().detach();
            if model.shape() != ema.shape() {
                return Err(Error::config(format!(
                    "`{name}`: the moving average has shape {:?}, the model {:?}",
                    ema.dims(),
                    model.dims()
                )));
            }
            *ema = if !model.dtype().is_float() {
                model.copy()?
            } else if weight < 0.5 {
                // torch.lerp: self + w * (end - self), end - (1 - w) * (end - self) for w >= 0.5.
                (&*ema + ((&model - &*ema)? * weight)?)?
            } else {
                (&model - ((&model - &*ema)? * (1.0 - weight))?)?
            };
        }
        Ok(())
    }

    /// The averaged tensors, by variable name.
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.ema
    }

    /// The averaged tensors as a checkpoint holds them.
    pub fn state(&self) -> HashMap<String, Tensor> {
        self.ema.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Replaces the average by `state` (read from `path`, named in errors): the same names,
    /// shapes and dtypes as the average it replaces.
    pub fn load_state(&mut self, state: HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let mut loaded = BTreeMap::new();
        for (name, ours) in &self.ema {
            let Some(theirs) = state.get(name) else {
                return Err(Error::checkpoint(
                    path,
                    format!("the moving average has no tensor `{name}`"),
                ));
            };
            if theirs.shape() != ours.shape() {
                return Err(Error::checkpoint(
                    path,
                    format!(
                        "`{name}` has shape {:?}, expected {:?}",
                        theirs.dims(),
                        ours.dims()
                    ),
                ));
            }
            loaded.insert(
                name.clone(),
                theirs.to_dtype(ours.dtype())?.to_device(ours.device())?,
            );
        }
        if let Some(extra) = state.keys().find(|k| !self.ema.contains_key(*k)) {
            return Err(Error::checkpoint(
                path,
                format!("`{extra}` is not a variable of the model"),
            ));
        }
        self.ema = loaded;
        Ok(())
    }

    /// Runs `f` with the averaged weights in `varmap`'s variables, then puts the model's own
    /// weights back (also when `f` fails): the EMA model evaluated by the same network.
    pub fn with_weights<T>(&self, varmap: &VarMap, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let vars = variables(varmap)?;
        let mut saved = Vec::with_capacity(vars.len());
        for (name, var) in &vars {
            if let Some(ema) = self.ema.get(name) {
                saved.push((var.clone(), var.as_tensor().detach().copy()?));
                var.set(ema)?;
            }
        }
        let result = f();
        for (var, own) in saved {
            var.set(&own)?;
        }
        result
    }
}
