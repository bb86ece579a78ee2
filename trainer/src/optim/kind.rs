//! Which optimizer a run uses, as a value a configuration can hold.

use super::{Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig};
use crate::Result;

/// Which optimizer a run uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// `torch.optim.Adam` (weight decay as an L2 term).
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay).
    AdamW,
    /// `torch.optim.SGD` (weight decay as an L2 term, no dampening).
    Sgd {
        /// Momentum factor (0: plain SGD).
        momentum: f64,
        /// Nesterov momentum (needs `momentum > 0`).
        nesterov: bool,
    },
}

impl OptimizerKind {
    /// This optimizer over `groups` with base learning rate `lr` and default weight decay
    /// `weight_decay` (for the groups that set none), PyTorch's defaults otherwise. Fails on
    /// an invalid setting (see [`Adam::new`], [`Sgd::new`]).
    pub fn build(self, groups: Vec<ParamGroup>, lr: f64, weight_decay: f64) -> Result<Box<dyn Optimizer>> {
        Ok(match self {
            OptimizerKind::Adam => Box::new(Adam::with_groups(
                groups,
                AdamConfig {
                    lr,
                    weight_decay,
                    ..AdamConfig::default()
                },
            )?),
            OptimizerKind::AdamW => Box::new(AdamW::with_groups(
                groups,
                AdamWConfig {
                    lr,
                    weight_decay,
                    ..AdamWConfig::default()
                },
            )?),
            OptimizerKind::Sgd { momentum, nesterov } => Box::new(Sgd::with_groups(
                groups,
                SgdConfig {
                    lr,
                    momentum,
                    nesterov,
                    weight_decay,
                    ..SgdConfig::default()
                },
            )?),
        })
    }
}
