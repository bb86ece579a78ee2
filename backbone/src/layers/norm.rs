//! Batch normalisation.

use super::Layer;
use crate::ops::{self, BatchStats};
use crate::summary::{self, LayerRecord};
use crate::{Error, Result};
use candle_core::{Tensor, Var};
use candle_nn::{Init, VarBuilder};

/// The hyper-parameters of a [`BatchNorm2d`], PyTorch's defaults by [`Default`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance (`1e-5`; GoogLeNet and Inception use `1e-3`).
    pub eps: f64,
    /// Weight of the new batch statistics in the running averages (`0.1`).
    pub momentum: f64,
    /// Whether the layer has a learnable scale and shift.
    pub affine: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
        }
    }
}

impl BatchNormConfig {
    /// PyTorch's defaults with another `eps`.
    pub fn with_eps(eps: f64) -> Self {
        Self {
            eps,
            ..Self::default()
        }
    }
}

/// PyTorch's `nn.BatchNorm2d` (and `BatchNorm1d` on `[N, C]` inputs).
///
/// Training mode normalises with the batch statistics (biased variance) and updates the
/// running statistics in place like PyTorch: `running = (1 - momentum) * running + momentum *
/// batch`, with the unbiased variance. Eval mode uses the running statistics. State-dict
/// keys: `weight`, `bias`, `running_mean`, `running_var` (PyTorch's `num_batches_tracked` is
/// ignored on load: it only matters when `momentum` is `None`).
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    running_mean: Var,
    running_var: Var,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    num_features: usize,
    config: BatchNormConfig,
    name: String,
}

impl BatchNorm2d {
    /// Builds the layer over `num_features` channels.
    pub fn new(num_features: usize, config: BatchNormConfig, vb: VarBuilder) -> Result<Self> {
        if num_features == 0 || config.eps < 0.0 || !(0.0..=1.0).contains(&config.momentum) {
            return Err(Error::config(format!(
                "batch norm: need num_features > 0, eps >= 0, momentum in [0, 1]: {num_features}, {config:?}"
            )));
        }
        let running_mean = vb.get_with_hints(num_features, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(num_features, "running_var", Init::Const(1.0))?;
        let (weight, bias) = if config.affine {
            (
                Some(vb.get_with_hints(num_features, "weight", Init::Const(1.0))?),
                Some(vb.get_with_hints(num_features, "bias", Init::Const(0.0))?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            weight,
            bias,
            num_features,
            config,
            name: vb.prefix(),
        })
    }

    /// The running mean.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// The scale, if affine.
    pub fn weight(&self) -> Option<&Tensor> {
        self.weight.as_ref()
    }

    /// The shift, if affine.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormConfig {
        &self.config
    }

    /// The affine parameters, if any.
    fn affine(&self) -> Option<(&Tensor, &Tensor)> {
        self.weight.as_ref().zip(self.bias.as_ref())
    }

    /// Checks the input's shape (and, in training, that every channel has more than one
    /// value); returns the number of values per channel.
    fn check(&self, xs: &Tensor, train: bool) -> Result<usize> {
        let dims = xs.dims();
        let rank = dims.len();
        if !(rank == 2 || rank == 4) || dims[1] != self.num_features {
            let expected = format!("[N, {}, H, W] or [N, {}]", self.num_features, self.num_features);
            return Err(Error::input_shape(&self.name, expected, dims));
        }
        let count = dims
            .iter()
            .enumerate()
            .filter(|&(d, _)| d != 1)
            .map(|(_, &n)| n)
            .product();
        if train && count < 2 {
            return Err(Error::input_shape(
                &self.name,
                "more than one value per channel in training (batch statistics)",
                dims,
            ));
        }
        Ok(count)
    }

    /// `running = (1 - momentum) * running + momentum * batch`, with the unbiased variance.
    fn update_running_stats(&self, stats: &BatchStats, count: usize) -> Result<()> {
        let m = self.config.momentum;
        let batch_var = (&stats.var * (count as f64 / (count - 1) as f64))?;
        let new_mean = ((self.running_mean.as_tensor() * (1.0 - m))? + (&stats.mean * m)?)?;
        let new_var = ((self.running_var.as_tensor() * (1.0 - m))? + (batch_var * m)?)?;
        self.running_mean
            .set(&new_mean.to_dtype(self.running_mean.dtype())?)?;
        self.running_var
            .set(&new_var.to_dtype(self.running_var.dtype())?)?;
        Ok(())
    }

    /// [`Layer::forward_t`] through the composite candle ops
    /// ([`ops::batch_norm_train_reference`], [`ops::batch_norm_eval_reference`]) on any device:
    /// the reference the fused kernels are tested against. Updates the running statistics in
    /// training mode like `forward_t`; records nothing in a summary.
    pub fn forward_reference(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let count = self.check(xs, train)?;
        if train {
            let (out, stats) = ops::batch_norm_train_reference(xs, self.affine(), self.config.eps)?;
            self.update_running_stats(&stats, count)?;
            Ok(out)
        } else {
            Ok(ops::batch_norm_eval_reference(
                xs,
                self.affine(),
                self.running_mean.as_tensor(),
                self.running_var.as_tensor(),
                self.config.eps,
            )?)
        }
    }
}

impl BatchNorm2d {
    /// `relu(self.forward_t(xs, train))`; in eval mode one fused pass
    /// ([`ops::batch_norm_eval_relu`]) with the same output and gradients (PyTorch's ReLU
    /// gradient, none where the output is 0), in training the layer then [`ops::relu`].
    pub fn forward_relu(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if train || crate::is_guided_relu() {
            return Ok(ops::relu(&self.forward_t(xs, train)?)?);
        }
        self.check(xs, false)?;
        let out = ops::batch_norm_eval_relu(
            xs,
            self.affine(),
            self.running_mean.as_tensor(),
            self.running_var.as_tensor(),
            self.config.eps,
        )?;
        self.record(xs.dims(), out.dims());
        crate::trace::name_output(&out, &self.name);
        Ok(out)
    }

    /// The number of channels.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Whether the affine parameters take part in autograd.
    pub fn tracks_gradients(&self) -> bool {
        self.affine().is_some_and(|(w, b)| w.track_op() || b.track_op())
    }

    /// The eval-mode map `y = (x - mean) * scale + shift` per channel, `(mean, scale, shift)`
    /// in `f64` ([`ops::batch_norm_eval_coefficients`]), read now from the running statistics
    /// and the affine parameters.
    pub fn eval_coefficients(&self) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        Ok(ops::batch_norm_eval_coefficients(
            self.affine(),
            self.running_mean.as_tensor(),
            self.running_var.as_tensor(),
            self.config.eps,
        )?)
    }

    /// Reports the layer to a running summary.
    pub(crate) fn record(&self, input: &[usize], output: &[usize]) {
        summary::record(|| {
            let affine = if self.config.affine { self.num_features } else { 0 };
            LayerRecord {
                name: self.name.clone(),
                kind: "BatchNorm2d".into(),
                input: input.to_vec(),
                output: output.to_vec(),
                params: 2 * affine,
                weights: affine,
                macs: 0,
            }
        });
    }
}

impl Layer for BatchNorm2d {
    /// Fused CPU kernels in `f32` / `f64` for contiguous inputs ([`ops::batch_norm_train`],
    /// [`ops::batch_norm_eval`]), the composite candle path otherwise.
    ///
    /// Inside [`super::sync_batch_norm`] with a group of more than one process, training mode
    /// normalises with the group's global batch statistics (see [`super::sync_bn`]).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if train && super::batch_norm_group().is_some_and(|g| g.world_size() > 1) {
            self.check(xs, false)?;
            let (out, stats, count) =
                super::sync_bn::batch_norm_train_synced(xs, self.affine(), self.config.eps)?;
            self.update_running_stats(&stats, count)?;
            self.record(xs.dims(), out.dims());
            crate::trace::name_output(&out, &self.name);
            return Ok(out);
        }
        let count = self.check(xs, train)?;
        let out = if train {
            let (out, stats) = ops::batch_norm_train(xs, self.affine(), self.config.eps)?;
            self.update_running_stats(&stats, count)?;
            out
        } else {
            ops::batch_norm_eval(
                xs,
                self.affine(),
                self.running_mean.as_tensor(),
                self.running_var.as_tensor(),
                self.config.eps,
            )?
        };
        self.record(xs.dims(), out.dims());
        crate::trace::name_output(&out, &self.name);
        Ok(out)
    }
}
