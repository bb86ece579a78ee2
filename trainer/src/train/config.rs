//! The settings of a training run: [`TrainConfig`] (from scratch or fine-tuning).

use crate::data::{LastBatch, Mixup, OnCorrupt};
use crate::optim::OptimizerKind;
use crate::run::RunOptions;
use crate::schedule::Schedule;
use crate::{Error, Result};
use std::path::PathBuf;

/// Settings of a training run. [`TrainConfig::default`] trains every layer from scratch (the
/// MNIST recipe); [`TrainConfig::finetune`] trains a new head on a frozen pretrained backbone.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Number of passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Images per evaluation batch (`None`: `batch_size`).
    pub eval_batch_size: Option<usize>,
    /// Learning rate (of the head, when the backbone has its own: `lr * backbone_lr_scale`).
    pub lr: f64,
    /// Weight decay (L2 for Adam and SGD, decoupled for AdamW), not applied to biases and
    /// normalisation parameters ([`crate::optim::param_groups`]).
    pub weight_decay: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// The learning-rate schedule over the whole run, per step.
    pub schedule: Schedule,
    /// Label smoothing of the cross-entropy (0 = none).
    pub label_smoothing: f64,
    /// Clip the gradients' total L2 norm to this value.
    pub clip_grad_norm: Option<f64>,
    /// Weight of each auxiliary classifier's loss in the total loss while the backbone trains
    /// (0 switches them off).
    pub aux_weight: f64,
    /// Train the head alone, the backbone frozen in eval mode.
    pub freeze_backbone: bool,
    /// With a frozen backbone: unfreeze it after this many epochs.
    pub unfreeze_after: Option<usize>,
    /// The backbone's learning rate relative to `lr` when the head is told apart from it (after
    /// unfreezing); 1 trains every layer alike.
    pub backbone_lr_scale: f64,
    /// With a frozen backbone and no random training transform: compute the features once and
    /// train the head on them (linear probing).
    pub feature_cache: bool,
    /// Seed of the shuffling, the random transforms and stochastic layers (weights are seeded
    /// by the caller's [`backbone::init::SeededVarMap`]).
    pub seed: u64,
    /// Threads decoding and transforming images ahead of the training step (0 = on the
    /// training thread).
    pub workers: usize,
    /// What to do with an image that cannot be read.
    pub on_corrupt: OnCorrupt,
    /// The run folder: checkpoints, metrics and plots (see [`crate::run::RunDir`]).
    pub out_dir: PathBuf,
    /// How many of the latest epoch checkpoints to keep (0: all).
    pub keep_checkpoints: usize,
    /// Progress bars and a line per epoch on stderr.
    pub verbose: bool,
    /// How the run folder `out_dir` is used: resume the run in it (as if it had never
    /// stopped), overwrite it, accept changed settings.
    pub run: RunOptions,
    /// The last, partial training batch of an epoch (evaluation keeps every image).
    pub last_batch: LastBatch,
    /// Keep an exponential moving average of the weights with this decay
    /// ([`crate::ema::ModelEma`], timm's `--model-ema-decay`), evaluated after every epoch
    /// beside the raw weights and saved with each checkpoint.
    pub model_ema: Option<f64>,
    /// Batches whose gradients are summed before one optimizer update (timm's
    /// `--accum-steps`): the update of a batch `accum_steps` times larger (see
    /// [`crate::train`]). The learning-rate schedule counts updates.
    pub accum_steps: usize,
    /// Mixup / CutMix of the training batches (timm's `--mixup`, `--cutmix`): the loss is then
    /// the soft-target cross-entropy of the mixed targets (which carry the label smoothing;
    /// `label_smoothing` applies without mixup). Each batch draws from its own generator keyed by
    /// the seed (mixed with the rank in a data-parallel run), epoch and batch
    /// ([`crate::data::batch_rng`]). Turns the feature cache off.
    pub mixup: Option<Mixup>,
    /// In a data-parallel run, every batch norm in training mode normalises with the statistics
    /// of the global batch, all ranks together (PyTorch's `SyncBatchNorm`,
    /// [`backbone::layers::sync_batch_norm`]), instead of each rank's own (DDP's default). No
    /// effect with one process.
    pub sync_bn: bool,
}

impl Default for TrainConfig {
    /// Every layer trained from scratch: 15 epochs of 64 images, Adam at 1e-3 with a cosine
    /// schedule, auxiliary losses weighted 0.3, batches made on the training thread.
    fn default() -> Self {
        Self {
            epochs: 15,
            batch_size: 64,
            eval_batch_size: None,
            lr: 1e-3,
            weight_decay: 0.0,
            optimizer: OptimizerKind::Adam,
            schedule: Schedule::Cosine,
            label_smoothing: 0.0,
            clip_grad_norm: None,
            aux_weight: 0.3,
            freeze_backbone: false,
            unfreeze_after: None,
            backbone_lr_scale: 1.0,
            feature_cache: false,
            seed: 42,
            workers: 0,
            on_corrupt: OnCorrupt::Skip,
            out_dir: PathBuf::from("runs"),
            keep_checkpoints: 3,
            verbose: true,
            run: RunOptions::default(),
            last_batch: LastBatch::Auto,
            model_ema: None,
            accum_steps: 1,
            mixup: None,
            sync_bn: false,
        }
    }
}

impl TrainConfig {
    /// Fine-tuning a pretrained model: 10 epochs of 32 images, AdamW at 1e-3 (weight decay
    /// 1e-4), the backbone frozen (its features cached when the transform allows), at 0.1 x the
    /// learning rate once unfrozen, two loader threads.
    pub fn finetune() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            weight_decay: 1e-4,
            optimizer: OptimizerKind::AdamW,
            freeze_backbone: true,
            backbone_lr_scale: 0.1,
            feature_cache: true,
            workers: 2,
            out_dir: PathBuf::from("runs/finetune"),
            keep_checkpoints: 2,
            ..Self::default()
        }
    }

    /// Whether the backbone is frozen during `epoch` (1-based).
    pub fn frozen_at(&self, epoch: usize) -> bool {
        self.freeze_backbone && self.unfreeze_after.is_none_or(|n| epoch <= n)
    }

    /// The evaluation batch size.
    pub fn eval_batch(&self) -> usize {
        self.eval_batch_size.unwrap_or(self.batch_size)
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == Some(0) {
            return Err(Error::config("epochs and batch sizes must be positive"));
        }
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        if !finite_pos(self.lr) || !finite_pos(self.backbone_lr_scale) {
            return Err(Error::config(format!(
                "need lr > 0 and backbone lr scale > 0 (lr {}, scale {})",
                self.lr, self.backbone_lr_scale
            )));
        }
        let finite_nonneg = |x: f64| x.is_finite() && x >= 0.0;
        if !(finite_nonneg(self.weight_decay) && finite_nonneg(self.aux_weight)) {
            return Err(Error::config(format!(
                "need weight decay >= 0 and aux weight >= 0 (got {}, {})",
                self.weight_decay, self.aux_weight
            )));
        }
        self.schedule.validate()?;
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(Error::config(format!(
                "label smoothing must be in [0, 1), got {}",
                self.label_smoothing
            )));
        }
        if let Some(max) = self.clip_grad_norm {
            if !finite_pos(max) {
                return Err(Error::config(format!(
                    "gradient clipping needs a norm > 0, got {max}"
                )));
            }
        }
        if self.accum_steps == 0 {
            return Err(Error::config("accumulation needs at least one batch per update"));
        }
        if let Some(decay) = self.model_ema {
            if !(0.0..1.0).contains(&decay) {
                return Err(Error::config(format!(
                    "the EMA decay must be in [0, 1), got {decay}"
                )));
            }
        }
        if let Some(mixup) = &self.mixup {
            mixup.validate()?;
        }
        if self.unfreeze_after.is_some() && !self.freeze_backbone {
            return Err(Error::config(
                "--unfreeze-after needs a frozen backbone to start with (--freeze-backbone)",
            ));
        }
        Ok(())
    }
}
