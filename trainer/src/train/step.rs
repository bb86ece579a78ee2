//! The pieces of the loop: the optimisation step, the evaluation, the optimizer of a phase and
//! the progress bars.

use super::cache::FeatureCache;
use super::config::TrainConfig;
use super::Accumulation;
use crate::data::DataLoader;
use crate::distributed::{Collective, SingleProcess};
use crate::loss::{accuracy_count, cross_entropy, cross_entropy_smoothed, soft_target_cross_entropy};
use crate::metrics::{EvalMetrics, MetricsAccumulator};
use crate::optim::{clip_grad_norm, param_groups, Optimizer, ParamGroup};
use crate::pretrained::{backbone_vars, head_vars};
use crate::{Error, Result};
use backbone::Backbone;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Instant;

/// A progress bar of `len` steps with ETA on stderr, hidden unless `verbose`.
pub(crate) fn progress_bar(len: usize, verbose: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len as u64),
        if verbose {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// The value of a scalar loss of any float dtype (f32, or f64 for a float64 model), as f64.
fn scalar(loss: &Tensor) -> Result<f64> {
    Ok(loss.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// The dtype the model computes in: that of its floating-point variables, which must all have
/// one (f32, or f64 for a float64 model; an error names two that differ). The training loop
/// gives its batches this dtype. F32 for a map without floating-point variables.
pub(crate) fn model_dtype(varmap: &VarMap) -> Result<DType> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::config("the variables' lock is poisoned"))?;
    let mut floats: Vec<(&String, DType)> = data
        .iter()
        .map(|(name, var)| (name, var.dtype()))
        .filter(|(_, dtype)| dtype.is_float())
        .collect();
    floats.sort_by(|a, b| a.0.cmp(b.0));
    let Some(&(first, dtype)) = floats.first() else {
        return Ok(DType::F32);
    };
    match floats.iter().find(|(_, d)| *d != dtype) {
        Some((name, other)) => Err(Error::config(format!(
            "the model's variables have more than one dtype (`{first}` is {dtype:?}, `{name}` \
             {other:?}): the training loop computes in one"
        ))),
        None => Ok(dtype),
    }
}

/// Refuses data a classifier cannot be trained on: no image, a single class, fewer images than
/// one batch.
pub(crate) fn check_training_data(
    len: usize,
    classes: &[usize],
    batch_size: usize,
    what: &str,
) -> Result<()> {
    if len == 0 {
        return Err(Error::config(format!("{what}: no training image")));
    }
    if classes.len() < 2 {
        return Err(Error::config(format!(
            "{what}: every training image has the same label ({}): a classifier needs at least two classes",
            classes.first().map_or(String::from("none"), |c| c.to_string())
        )));
    }
    if len < batch_size {
        return Err(Error::config(format!(
            "{what}: {len} training images, fewer than one batch of {batch_size}; lower the batch size"
        )));
    }
    Ok(())
}

/// The optimizer of a phase: the head alone when frozen; otherwise every trainable variable,
/// the backbone's at `backbone_lr_scale` (one group per decay class when the scale is 1).
/// Weight decay spares biases and norm weights.
pub(super) fn phase_optimizer(
    model: &dyn Backbone,
    varmap: &VarMap,
    config: &TrainConfig,
    frozen: bool,
) -> Result<Box<dyn Optimizer>> {
    let mut groups: Vec<ParamGroup> = if !frozen && config.backbone_lr_scale == 1.0 {
        param_groups(
            backbone::init::trainable_model_vars(varmap, model),
            config.weight_decay,
        )
    } else {
        param_groups(head_vars(varmap, model), config.weight_decay)
    };
    if !frozen && config.backbone_lr_scale != 1.0 {
        for mut group in param_groups(backbone_vars(varmap, model), config.weight_decay) {
            group.lr_scale = config.backbone_lr_scale;
            groups.push(group);
        }
    }
    groups.retain(|g| !g.params.is_empty());
    config.optimizer.build(groups, config.lr, config.weight_decay)
}

/// The variables a phase trains.
pub(super) fn trainable(model: &dyn Backbone, varmap: &VarMap, frozen: bool) -> Vec<Var> {
    let vars = if frozen {
        head_vars(varmap, model)
    } else {
        backbone::init::trainable_model_vars(varmap, model)
    };
    vars.into_iter().map(|(_, v)| v).collect()
}

/// Running sums of one training epoch.
#[derive(Default)]
pub(super) struct EpochSums {
    pub(super) loss: f64,
    pub(super) aux: Option<f64>,
    pub(super) correct: usize,
    pub(super) seen: usize,
    pub(super) train_seconds: f64,
    /// The labels the epoch trained on (after unreadable images were skipped).
    pub(super) classes: std::collections::BTreeSet<u32>,
}

impl EpochSums {
    pub(super) fn message(&self) -> String {
        let n = self.seen.max(1) as f64;
        let mut msg = format!("loss {:.4}", self.loss / n);
        if let Some(aux) = self.aux {
            msg.push_str(&format!(" aux {:.4}", aux / n));
        }
        msg.push_str(&format!(
            " top-1 {:.2}% {:.0} img/s",
            100.0 * self.correct as f64 / n,
            self.seen as f64 / self.train_seconds.max(1e-9)
        ));
        msg
    }
}

/// One optimizer update with `grads`: passed to `after_backward` (data-parallel runs average
/// the gradients there, DDP's hook), clipped, stepped.
pub(crate) fn apply_update(
    mut grads: GradStore,
    config: &TrainConfig,
    optimizer: &mut dyn Optimizer,
    vars: &[Var],
    after_backward: &mut dyn FnMut(&mut GradStore) -> Result<()>,
) -> Result<()> {
    after_backward(&mut grads)?;
    if let Some(max) = config.clip_grad_norm {
        clip_grad_norm(&mut grads, vars, max)?;
    }
    optimizer.step(&grads)
}

/// One training batch: cross-entropy of the main head plus `aux_weight` times each auxiliary
/// head's, checked by `check_loss` before anything is applied, back-propagated, then (without
/// accumulation, or when `update` ends a group of `accum_steps` batches) clipped and stepped
/// (with `amp`, back-propagated through the low-precision twin; the update's gradients passed
/// to `after_backward` first);
/// the sums are updated. With `soft` targets (mixup / CutMix), the losses are soft-target
/// cross-entropies against them (top-1 still counts the unmixed labels). Returns whether the
/// optimizer stepped.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_step(
    logits: &Tensor,
    aux_logits: &[Tensor],
    labels: &Tensor,
    soft: Option<&Tensor>,
    config: &TrainConfig,
    optimizer: &mut dyn Optimizer,
    vars: &[Var],
    accumulated: &mut Accumulation,
    update: bool,
    amp: Option<&mut crate::amp::MixedPrecision>,
    sums: &mut EpochSums,
    started: Instant,
    check_loss: &mut dyn FnMut(f64) -> Result<()>,
    after_backward: &mut dyn FnMut(&mut GradStore) -> Result<()>,
) -> Result<bool> {
    let ce = |logits: &Tensor| -> Result<Tensor> {
        if let Some(soft) = soft {
            soft_target_cross_entropy(logits, soft)
        } else if config.label_smoothing == 0.0 {
            cross_entropy(logits, labels)
        } else {
            cross_entropy_smoothed(logits, labels, config.label_smoothing)
        }
    };
    let main = ce(logits)?;
    let mut total = main.clone();
    let n = labels.dim(0)?;
    if config.aux_weight > 0.0 && !aux_logits.is_empty() {
        let mut aux_mean = 0.0;
        for aux in aux_logits {
            let aux_loss = ce(aux)?;
            aux_mean += scalar(&aux_loss)? / aux_logits.len() as f64;
            total = (total + (aux_loss * config.aux_weight)?)?;
        }
        *sums.aux.get_or_insert(0.0) += aux_mean * n as f64;
    }
    // Checked before the step is applied: a diverged loss never reaches the weights.
    check_loss(scalar(&total)?)?;
    // Mixed precision: the twin's gradients in float32, `None` when float16 overflowed (the
    // batch then adds nothing).
    let grads = match amp {
        Some(amp) => amp.backward(&total)?,
        None => Some(total.backward()?),
    };
    let stepped = match (grads, config.accum_steps) {
        (Some(grads), 1) => {
            apply_update(grads, config, optimizer, vars, after_backward)?;
            true
        }
        (None, 1) => false,
        (grads, _) => {
            if let Some(grads) = grads {
                accumulated.add(&grads, vars, n)?;
            }
            match accumulated.take_if(update)? {
                Some(grads) => {
                    apply_update(grads, config, optimizer, vars, after_backward)?;
                    true
                }
                None => false,
            }
        }
    };
    sums.loss += scalar(&main)? * n as f64;
    sums.correct += accuracy_count(logits, labels)?;
    sums.classes
        .extend(labels.to_dtype(candle_core::DType::U32)?.to_vec1::<u32>()?);
    sums.seen += n;
    sums.train_seconds += started.elapsed().as_secs_f64();
    Ok(stepped)
}

/// Loss, top-1, top-5 and confusion matrix of `model` in eval mode over `loader`'s images (in
/// its order), with a progress bar on stderr when `verbose`.
pub fn evaluate(
    model: &dyn Backbone,
    loader: &DataLoader,
    device: &Device,
    verbose: bool,
) -> Result<EvalMetrics> {
    evaluate_with(model, loader, None, device, verbose, &SingleProcess)
}

/// [`evaluate`], or over cached features (head only); with several ranks, each evaluates its
/// part of `loader`'s images ([`DataLoader::with_eval_shard`]) and the sums are reduced over
/// the ranks, so every rank gets the metrics of every image counted once.
pub(super) fn evaluate_with(
    model: &dyn Backbone,
    loader: &DataLoader,
    cache: Option<&FeatureCache>,
    device: &Device,
    verbose: bool,
    collective: &dyn Collective,
) -> Result<EvalMetrics> {
    let mut acc = MetricsAccumulator::new(model.num_classes());
    let bar = progress_bar(loader.num_batches(), verbose);
    bar.set_prefix("evaluating");
    let mut update = |logits: &Tensor, labels: &Tensor| -> Result<()> {
        let n = labels.dim(0)? as f64;
        let loss = scalar(&cross_entropy(logits, labels)?)?;
        acc.update(logits, labels, loss * n)?;
        bar.inc(1);
        Ok(())
    };
    // The weights do not change during the pass: the convolutions prepare their transformed
    // weights on the first batch and reuse them on the others.
    backbone::with_frozen_weights(|| -> Result<()> {
        match cache {
            Some(cache) => {
                let order: Vec<usize> = (0..loader.dataset().len()).collect();
                for batch in cache.batches(&order, loader.config().batch_size) {
                    let (features, labels) = batch?;
                    update(&model.forward_classifier(&features, false)?, &labels)?;
                }
            }
            None => {
                for batch in loader.epoch(0, device) {
                    let batch = batch?;
                    update(&model.forward_t(&batch.images, false)?, &batch.labels)?;
                }
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    if collective.world_size() > 1 {
        acc.all_reduce(|values| collective.all_reduce_sum_f64(values))?;
    }
    if acc.count() == 0 {
        return Err(Error::config(
            "evaluation on no image: every validation image was unreadable",
        ));
    }
    Ok(acc.finish())
}
