//! Mixed precision (`--amp bf16|f16`), autocast's split of the work: the weights and the
//! optimizer in float32 (the "master" variables of the run's `VarMap`, which checkpoints,
//! evaluation and the weights' average use), the forward and backward passes in bfloat16 or
//! float16 on a twin of the model whose variables are set from the master ones before every
//! batch. The gradients come back to float32 for the optimizer; the twin's batch-norm running
//! statistics are copied back to the master's after every batch. With float16 the loss is
//! scaled by a dynamic [`GradScaler`] (PyTorch's `torch.amp.GradScaler` defaults: 2^16, halved
//! and the update skipped when a gradient is not finite, doubled after 2000 finite steps).
//!
//! Differences from autocast: every op of the twin runs in low precision (autocast keeps
//! reductions such as batch norm's in float32), and the running statistics are rounded to the
//! low precision once per batch. The loss is computed in float32 from the logits.

use crate::{Error, Result};
use backbone::Backbone;
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;

/// Dynamic loss scaling for float16 (PyTorch's `GradScaler`).
#[derive(Debug, Clone, PartialEq)]
pub struct GradScaler {
    scale: f64,
    growth_interval: usize,
    good_steps: usize,
}

impl Default for GradScaler {
    /// PyTorch's defaults: scale 65536, doubled every 2000 finite steps.
    fn default() -> Self {
        Self::new(65536.0, 2000)
    }
}

impl GradScaler {
    /// A scaler starting at `scale`, doubled after `growth_interval` finite steps in a row.
    pub fn new(scale: f64, growth_interval: usize) -> Self {
        Self {
            scale,
            growth_interval: growth_interval.max(1),
            good_steps: 0,
        }
    }

    /// The current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// After a step whose gradients were `finite` (or not: the step was skipped): backs off by
    /// half, or grows by two after `growth_interval` finite steps.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps == self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
        }
    }
}

/// The low-precision twin of a model and its link to the master variables (see the
/// [module docs](self)).
pub struct MixedPrecision {
    dtype: DType,
    model: Box<dyn Backbone>,
    /// (name, master variable, twin variable), sorted by name.
    pairs: Vec<(String, Var, Var)>,
    scaler: Option<GradScaler>,
}

impl MixedPrecision {
    /// `model`, built on `twin`'s variables in `dtype` (bfloat16, or float16 with a
    /// [`GradScaler`]), computes for the master variables `master`: both maps must hold the
    /// same names and shapes.
    pub fn new(dtype: DType, model: Box<dyn Backbone>, twin: &VarMap, master: &VarMap) -> Result<Self> {
        if !matches!(dtype, DType::BF16 | DType::F16) {
            return Err(Error::config(format!(
                "mixed precision computes in bf16 or f16, not {dtype:?}"
            )));
        }
        let lock = |m: &VarMap| {
            m.data()
                .lock()
                .map(|d| d.clone())
                .map_err(|_| Error::config("a variable map's lock is poisoned"))
        };
        let (twin, master) = (lock(twin)?, lock(master)?);
        let mut pairs = Vec::with_capacity(master.len());
        for (name, m) in &master {
            let Some(t) = twin.get(name) else {
                return Err(Error::config(format!(
                    "the low-precision twin has no variable `{name}`"
                )));
            };
            if t.shape() != m.shape() || t.dtype() != dtype {
                return Err(Error::config(format!(
                    "`{name}`: the twin's variable is {:?} {:?}, expected {dtype:?} {:?}",
                    t.dtype(),
                    t.dims(),
                    m.dims()
                )));
            }
            pairs.push((name.clone(), m.clone(), t.clone()));
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            dtype,
            model,
            pairs,
            scaler: (dtype == DType::F16).then(GradScaler::default),
        })
    }

    /// With this loss scaler instead of PyTorch's default one (float16 only: bfloat16 has
    /// float32's range and needs none).
    pub fn with_scaler(mut self, scaler: GradScaler) -> Self {
        if self.dtype == DType::F16 {
            self.scaler = Some(scaler);
        }
        self
    }

    /// The low precision.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The loss scaler (float16).
    pub fn scaler(&self) -> Option<&GradScaler> {
        self.scaler.as_ref()
    }

    /// The twin, its variables set from the master ones: call before each forward pass.
    pub fn model(&self) -> Result<&dyn Backbone> {
        for (_, master, twin) in &self.pairs {
            twin.set(&master.as_tensor().to_dtype(self.dtype)?)?;
        }
        Ok(self.model.as_ref())
    }

    /// Backward of `loss` (float32, from the twin's logits): the float32 gradients of the
    /// master variables, unscaled, and the twin's running statistics copied to the master's;
    /// `None` when a gradient is not finite (float16: the step is to be skipped, the scale
    /// halves).
    pub fn backward(&mut self, loss: &Tensor) -> Result<Option<GradStore>> {
        let scale = self.scaler.as_ref().map_or(1.0, GradScaler::scale);
        let scaled = if scale == 1.0 {
            loss.clone()
        } else {
            (loss * scale)?
        };
        let grads = scaled.backward()?;
        let mut out = GradStore::default();
        let mut finite = true;
        for (name, master, twin) in &self.pairs {
            if backbone::init::is_buffer(name) {
                master.set(&twin.as_tensor().detach().to_dtype(DType::F32)?)?;
                continue;
            }
            if let Some(g) = grads.get(twin.as_tensor()) {
                let mut g = g.to_dtype(DType::F32)?;
                if scale != 1.0 {
                    g = (g / scale)?;
                }
                if self.scaler.is_some() {
                    finite &= g.abs()?.sum_all()?.to_scalar::<f32>()?.is_finite();
                }
                out.insert(master.as_tensor(), g);
            }
        }
        if let Some(scaler) = self.scaler.as_mut() {
            scaler.update(finite);
        }
        Ok(finite.then_some(out))
    }
}
