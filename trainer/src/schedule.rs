//! Learning-rate schedules: a decay ([`Decay`]: constant, cosine, step) after an optional linear
//! warmup, evaluated per optimizer step by [`Schedule::lr_at`].
//!
//! The schedule matches PyTorch's schedulers stepped once per optimizer step (the values are
//! tested against them):
//!
//! - warmup of `W` steps: `LinearLR(start_factor = 1/W, end_factor = 1, total_iters = W - 1)`,
//!   i.e. `lr = base * (step + 1) / W` for `step < W` (the first step already trains, the last
//!   warmup step uses `base`);
//! - then the decay, through `SequentialLR(milestones = [W])`: the decay starts at its own step
//!   0 after the warmup, as torchvision's reference recipes do, so a step decay happens
//!   `W` steps later than without warmup:
//!   - constant ([`Decay::Constant`]): `base`;
//!   - cosine ([`Decay::Cosine`]): `CosineAnnealingLR(T_max = total - W, eta_min = 0)`,
//!     `lr = base * (1 + cos(pi * t / (total - W))) / 2` with `t = step - W`;
//!   - step ([`Decay::Step`]): `StepLR(step_size = step_epochs, gamma)` stepped per epoch,
//!     `lr = base * gamma^floor(floor(t / steps_per_epoch) / step_epochs)`.

use crate::error::{Error, Result};

/// How the learning rate decays after the warmup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    /// The base learning rate throughout.
    Constant,
    /// Cosine annealing per step from the base rate to zero at the end of the run
    /// (`CosineAnnealingLR`, `eta_min = 0`).
    Cosine,
    /// Multiply by `gamma` every `step_epochs` epochs (`StepLR` stepped per epoch).
    Step {
        /// Epochs between two decays (> 0).
        step_epochs: usize,
        /// The factor of each decay, in `(0, 1]`.
        gamma: f64,
    },
}

/// A learning-rate schedule: an optional linear warmup, then a [`Decay`] (see the
/// [module documentation](self) for the exact formulas and the PyTorch schedulers they match).
///
/// ```
/// use trainer::schedule::Schedule;
/// let s = Schedule::cosine().with_warmup(5);
/// assert_eq!(s.lr_at(0.1, 0, 100, 10), 0.02); // warmup: 0.1 * 1/5
/// assert_eq!(s.lr_at(0.1, 5, 100, 10), 0.1); // the cosine starts after the warmup
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The decay after the warmup.
    pub decay: Decay,
    /// Optimizer steps of linear warmup (0: none).
    pub warmup_steps: usize,
}

#[allow(non_upper_case_globals)]
impl Schedule {
    /// The same learning rate throughout, without warmup (the spelling of the former enum
    /// variant; same as [`Schedule::constant`]).
    pub const Constant: Schedule = Schedule {
        decay: Decay::Constant,
        warmup_steps: 0,
    };

    /// Cosine annealing per step to zero over the run, without warmup (the spelling of the
    /// former enum variant; same as [`Schedule::cosine`]).
    pub const Cosine: Schedule = Schedule {
        decay: Decay::Cosine,
        warmup_steps: 0,
    };
}

impl Schedule {
    /// The same learning rate throughout.
    pub fn constant() -> Self {
        Schedule::Constant
    }

    /// Cosine annealing per step from the base rate to zero over the run.
    pub fn cosine() -> Self {
        Schedule::Cosine
    }

    /// Multiply the rate by `gamma` every `step_epochs` epochs; fails unless `step_epochs > 0`
    /// and `gamma` is in `(0, 1]`.
    pub fn step(step_epochs: usize, gamma: f64) -> Result<Self> {
        let schedule = Schedule {
            decay: Decay::Step { step_epochs, gamma },
            warmup_steps: 0,
        };
        schedule.validate()?;
        Ok(schedule)
    }

    /// The same decay after `warmup_steps` steps of linear warmup.
    pub fn with_warmup(self, warmup_steps: usize) -> Self {
        Schedule { warmup_steps, ..self }
    }

    /// Checks the settings ([`Decay::Step`] needs `step_epochs > 0` and `gamma` in `(0, 1]`).
    pub fn validate(&self) -> Result<()> {
        if let Decay::Step { step_epochs, gamma } = self.decay {
            if step_epochs == 0 {
                return Err(Error::config("step schedule: step_epochs must be > 0, got 0"));
            }
            if !(gamma > 0.0 && gamma <= 1.0) {
                return Err(Error::config(format!(
                    "step schedule: gamma must be in (0, 1], got {gamma}"
                )));
            }
        }
        Ok(())
    }

    /// The learning rate to use at optimizer step `step` (0-based) of a run of `total_steps`
    /// steps with `steps_per_epoch` steps per epoch, for the base rate `base`. Steps past the
    /// end keep the last value of the cosine; a `steps_per_epoch` of 0 counts as 1.
    pub fn lr_at(&self, base: f64, step: usize, total_steps: usize, steps_per_epoch: usize) -> f64 {
        let warmup = self.warmup_steps;
        if step < warmup {
            return base * (step + 1) as f64 / warmup as f64;
        }
        let t = step - warmup;
        match self.decay {
            Decay::Constant => base,
            Decay::Cosine => {
                let span = total_steps.saturating_sub(warmup).max(1);
                let t = t.min(span) as f64 / span as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Decay::Step { step_epochs, gamma } => {
                let epoch = t / steps_per_epoch.max(1);
                let decays = epoch / step_epochs.max(1);
                base * gamma.powi(i32::try_from(decays).unwrap_or(i32::MAX))
            }
        }
    }
}

impl Default for Schedule {
    /// [`Schedule::cosine`].
    fn default() -> Self {
        Schedule::Cosine
    }
}
