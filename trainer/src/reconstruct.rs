//! The reconstruction phase that runs before a model with [`Backbone::reconstructors`] trains
//! (a channel-boosted network's autoencoder): each reconstructor's variables, and only
//! those, train on the mean squared error between its reconstruction and its input, the
//! training images as the model sees them (the training transform, labels unused).
//!
//! This is not a second classification loop: it has no labels, head, evaluation by accuracy or
//! run folder. The classification that follows is [`crate::train::train`], with the
//! reconstructors frozen by the model's [`Backbone::frozen_prefixes`].

use crate::data::{DataLoader, LoaderConfig};
use crate::optim::{param_groups, OptimizerKind};
use crate::train::TrainData;
use crate::{Error, Result};
use backbone::{Backbone, Reconstructor};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::time::Instant;

/// How a reconstructor trains.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconstructionConfig {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed of the batch order and the random transforms.
    pub seed: u64,
    /// A line per epoch on stderr.
    pub verbose: bool,
}

impl Default for ReconstructionConfig {
    /// 3 epochs of batches of 64 with Adam at 1e-3, seed 0, quiet.
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
            verbose: false,
        }
    }
}

/// What a reconstruction phase did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconstructionReport {
    /// The reconstructor's name.
    pub name: String,
    /// Its variables trained (tensors, elements).
    pub trained: (usize, usize),
    /// Mean squared error on the validation images before training.
    pub val_before: f64,
    /// Mean training error of each epoch.
    pub train_losses: Vec<f64>,
    /// Mean squared error on the validation images after training.
    pub val_after: f64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Mean squared reconstruction error of `learner` on every image of `loader`, in eval mode.
fn mean_error(learner: &dyn Reconstructor, loader: &DataLoader, device: &Device) -> Result<f64> {
    let (mut sum, mut seen) = (0.0, 0usize);
    for batch in loader.epoch(0, device) {
        let images = batch?.images;
        let n = images.dim(0)?;
        let out = backbone::inference_mode(|| learner.reconstruct(&images, false))?;
        sum += mse(&out, &images)?.to_scalar::<f32>()? as f64 * n as f64;
        seen += n;
    }
    Ok(sum / seen.max(1) as f64)
}

fn mse(prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok((prediction - target)?.sqr()?.mean_all()?)
}

/// Trains `learner` (a part of `model`, whose variables live in `varmap` under its
/// [`Reconstructor::var_prefix`]) on reconstructing `data.train`'s images, with Adam; the
/// other variables are untouched. Errors: no variable under the prefix, a non-finite loss.
pub fn train_reconstructor(
    learner: &dyn Reconstructor,
    varmap: &VarMap,
    data: &TrainData,
    config: &ReconstructionConfig,
    device: &Device,
) -> Result<ReconstructionReport> {
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(Error::config(format!(
            "a reconstruction phase needs at least one epoch and one image per batch, got {} and {}",
            config.epochs, config.batch_size
        )));
    }
    let start = Instant::now();
    let vars: Vec<(String, candle_core::Var)> = backbone::init::trainable_vars(varmap)
        .into_iter()
        .filter(|(name, _)| backbone::init::is_under(name, learner.var_prefix()))
        .collect();
    if vars.is_empty() {
        return Err(Error::config(format!(
            "{}: no trainable variable under `{}`",
            learner.name(),
            learner.var_prefix()
        )));
    }
    let trained = (vars.len(), vars.iter().map(|(_, v)| v.elem_count()).sum());
    let loader = |batch_size: usize, shuffle: bool, transform| {
        DataLoader::new(
            if shuffle {
                data.train.clone()
            } else {
                data.val.clone()
            },
            transform,
            LoaderConfig {
                shuffle,
                seed: config.seed,
                ..LoaderConfig::new(batch_size)
            },
        )
    };
    let train_loader = loader(config.batch_size, true, data.train_transform.clone())?;
    let val_loader = loader(500, false, data.eval_transform.clone())?;
    let val_before = mean_error(learner, &val_loader, device)?;
    let mut optimizer = OptimizerKind::Adam.build(param_groups(vars, 0.0), config.lr, 0.0)?;
    let mut train_losses = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        let (mut sum, mut seen) = (0.0, 0usize);
        for batch in train_loader.epoch(epoch, device) {
            let images = batch?.images;
            let n = images.dim(0)?;
            let loss = mse(&learner.reconstruct(&images, true)?, &images)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Err(Error::config(format!(
                    "{}: the reconstruction loss is {value} at epoch {}; lower the learning rate",
                    learner.name(),
                    epoch + 1
                )));
            }
            optimizer.backward_step(&loss)?;
            sum += value * n as f64;
            seen += n;
        }
        let mean = sum / seen.max(1) as f64;
        if config.verbose {
            eprintln!(
                "{} epoch {}/{}: reconstruction loss {mean:.4}",
                learner.name(),
                epoch + 1,
                config.epochs
            );
        }
        train_losses.push(mean);
    }
    let val_after = mean_error(learner, &val_loader, device)?;
    Ok(ReconstructionReport {
        name: learner.name().to_string(),
        trained,
        val_before,
        train_losses,
        val_after,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Trains every reconstructor of `model` in turn ([`train_reconstructor`]); nothing for a
/// model without any.
pub fn pretrain_reconstructors(
    model: &dyn Backbone,
    varmap: &VarMap,
    data: &TrainData,
    config: &ReconstructionConfig,
    device: &Device,
) -> Result<Vec<ReconstructionReport>> {
    model
        .reconstructors()
        .into_iter()
        .map(|learner| train_reconstructor(learner, varmap, data, config, device))
        .collect()
}
