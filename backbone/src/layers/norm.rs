//! Batch normalisation.

use super::Layer;
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

    /// `[1, C, 1, 1]` (or `[1, C]`) view of a per-channel vector for broadcasting.
    fn per_channel(&self, t: &Tensor, rank: usize) -> Result<Tensor> {
        let mut shape = vec![1; rank];
        shape[1] = self.num_features;
        Ok(t.reshape(shape)?)
    }
}

impl Layer for BatchNorm2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let dims = xs.dims();
        let rank = dims.len();
        if !(rank == 2 || rank == 4) || dims[1] != self.num_features {
            let expected = format!("[N, {}, H, W] or [N, {}]", self.num_features, self.num_features);
            return Err(Error::input_shape(&self.name, expected, dims));
        }
        let reduce: Vec<usize> = (0..rank).filter(|&d| d != 1).collect();
        let count: usize = reduce.iter().map(|&d| dims[d]).product();
        let out = if train {
            if count < 2 {
                return Err(Error::input_shape(
                    &self.name,
                    "more than one value per channel in training (batch statistics)",
                    dims,
                ));
            }
            let mean = (xs.sum_keepdim(reduce.as_slice())? / count as f64)?;
            let centered = xs.broadcast_sub(&mean)?;
            let var = (centered.sqr()?.sum_keepdim(reduce.as_slice())? / count as f64)?;
            let normed = centered.broadcast_div(&(var.clone() + self.config.eps)?.sqrt()?)?;
            let m = self.config.momentum;
            let batch_mean = mean.detach().flatten_all()?;
            let batch_var = (var.detach().flatten_all()? * (count as f64 / (count - 1) as f64))?;
            let new_mean = ((self.running_mean.as_tensor() * (1.0 - m))? + (batch_mean * m)?)?;
            let new_var = ((self.running_var.as_tensor() * (1.0 - m))? + (batch_var * m)?)?;
            self.running_mean
                .set(&new_mean.to_dtype(self.running_mean.dtype())?)?;
            self.running_var
                .set(&new_var.to_dtype(self.running_var.dtype())?)?;
            match (&self.weight, &self.bias) {
                (Some(w), Some(b)) => normed
                    .broadcast_mul(&self.per_channel(w, rank)?)?
                    .broadcast_add(&self.per_channel(b, rank)?)?,
                _ => normed,
            }
        } else {
            let inv_std = (self.running_var.as_tensor() + self.config.eps)?
                .sqrt()?
                .recip()?;
            let (scale, shift) = match (&self.weight, &self.bias) {
                (Some(w), Some(b)) => {
                    let scale = w.mul(&inv_std)?;
                    let shift = b.sub(&self.running_mean.as_tensor().mul(&scale)?)?;
                    (scale, shift)
                }
                _ => (
                    inv_std.clone(),
                    self.running_mean.as_tensor().mul(&inv_std)?.neg()?,
                ),
            };
            xs.broadcast_mul(&self.per_channel(&scale, rank)?)?
                .broadcast_add(&self.per_channel(&shift, rank)?)?
        };
        summary::record(|| {
            let affine = if self.config.affine { self.num_features } else { 0 };
            LayerRecord {
                name: self.name.clone(),
                kind: "BatchNorm2d".into(),
                input: dims.to_vec(),
                output: out.dims().to_vec(),
                params: 2 * affine,
                weights: affine,
                macs: 0,
            }
        });
        Ok(out)
    }
}
