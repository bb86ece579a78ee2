//! Fine-tuning a pretrained model on a [`Dataset`]: a new head trained on a frozen backbone
//! (optionally unfrozen after some epochs, with a lower learning rate), on worker-thread data
//! loading, with per-epoch checkpoints that `resume` continues exactly, metrics as CSV/JSON,
//! curves and a confusion matrix as PNG.
//!
//! With the backbone frozen and a deterministic training transform, the features are the same
//! every epoch: [`FinetuneConfig::feature_cache`] computes them once and trains the head on
//! the cache (linear probing), which skips the backbone's forward pass after the first epoch.

use crate::checkpoint::save_varmap;
use crate::data::{Batch, DataLoader, Dataset, LastBatch, LoaderConfig, OnCorrupt, Pipeline};
use crate::fit::{check_training_data, optimizer_step, progress_bar, OptimizerKind};
use crate::loss::cross_entropy_smoothed;
use crate::metrics::{EpochMetrics, EvalMetrics, MetricsAccumulator};
use crate::optim::{param_groups, Optimizer, ParamGroup};
use crate::pretrained::{backbone_vars, forward_frozen, frozen_pre_logits, head_vars};
use crate::run::{fingerprint, LossGuard, RunDir, RunOptions, RunSettings};
use crate::schedule::Schedule;
use crate::{Error, Result};
use backbone::Backbone;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Settings of a fine-tuning run.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneConfig {
    /// Number of passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate of the head (the backbone's is `lr * backbone_lr_scale` once unfrozen).
    pub lr: f64,
    /// Weight decay, applied to weights of rank >= 2 only (not to biases and norm weights).
    pub weight_decay: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// The learning-rate schedule over the whole run, per step.
    pub schedule: Schedule,
    /// Label smoothing of the cross-entropy (0 = none).
    pub label_smoothing: f64,
    /// Clip the gradients' total L2 norm to this value.
    pub clip_grad_norm: Option<f64>,
    /// Train the head alone, the backbone frozen in eval mode.
    pub freeze_backbone: bool,
    /// With a frozen backbone: unfreeze it after this many epochs.
    pub unfreeze_after: Option<usize>,
    /// The backbone's learning rate relative to `lr` once unfrozen.
    pub backbone_lr_scale: f64,
    /// Weight of each auxiliary classifier's loss once the backbone is trained (0 = off).
    pub aux_weight: f64,
    /// With a frozen backbone and no random training transform: compute the features once and
    /// train the head on them (linear probing).
    pub feature_cache: bool,
    /// Seed of the shuffling, the random transforms and stochastic layers.
    pub seed: u64,
    /// Threads decoding and transforming images ahead of the training step (0 = on the
    /// training thread).
    pub workers: usize,
    /// What to do with an image that cannot be read.
    pub on_corrupt: OnCorrupt,
    /// Where checkpoints, metrics and plots go.
    pub out_dir: PathBuf,
    /// How many of the latest epoch checkpoints to keep (0: all).
    pub keep_checkpoints: usize,
    /// Progress bar and a line per epoch on stderr.
    pub verbose: bool,
    /// How the run folder `out_dir` is used: resume the run in it, overwrite it, accept
    /// changed settings (see [`RunDir`]).
    pub run: RunOptions,
    /// The last, partial training batch of an epoch (evaluation keeps every image).
    pub last_batch: LastBatch,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 1e-4,
            optimizer: OptimizerKind::AdamW,
            schedule: Schedule::Cosine,
            label_smoothing: 0.0,
            clip_grad_norm: None,
            freeze_backbone: true,
            unfreeze_after: None,
            backbone_lr_scale: 0.1,
            aux_weight: 0.3,
            feature_cache: true,
            seed: 42,
            workers: 2,
            on_corrupt: OnCorrupt::Skip,
            out_dir: PathBuf::from("runs/finetune"),
            keep_checkpoints: 2,
            verbose: true,
            run: RunOptions::default(),
            last_batch: LastBatch::Auto,
        }
    }
}

impl FinetuneConfig {
    /// Whether the backbone is frozen during `epoch` (1-based).
    pub fn frozen_at(&self, epoch: usize) -> bool {
        self.freeze_backbone && self.unfreeze_after.is_none_or(|n| epoch <= n)
    }

    fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(Error::config("epochs and batch size must be positive"));
        }
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        if !finite_pos(self.lr) || !finite_pos(self.backbone_lr_scale) {
            return Err(Error::config(format!(
                "need lr > 0 and backbone lr scale > 0 (lr {}, scale {})",
                self.lr, self.backbone_lr_scale
            )));
        }
        if !(self.weight_decay >= 0.0 && self.aux_weight >= 0.0) {
            return Err(Error::config(format!(
                "need weight decay >= 0 and aux weight >= 0 (got {}, {})",
                self.weight_decay, self.aux_weight
            )));
        }
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
        if self.unfreeze_after.is_some() && !self.freeze_backbone {
            return Err(Error::config(
                "--unfreeze-after needs a frozen backbone to start with (--freeze-backbone)",
            ));
        }
        Ok(())
    }
}

/// The images of a fine-tuning run and their transforms.
#[derive(Clone)]
pub struct FinetuneData {
    /// The training images.
    pub train: Arc<dyn Dataset>,
    /// The validation images (evaluated after every epoch).
    pub val: Arc<dyn Dataset>,
    /// The training transform; with no random step (and a frozen backbone) the features can
    /// be cached.
    pub train_transform: Pipeline,
    /// The evaluation transform (resize, center crop, normalise).
    pub eval_transform: Pipeline,
}

/// What a fine-tuning run did.
#[derive(Debug, Clone)]
pub struct FinetuneReport {
    /// One row per epoch run in this call (a resumed run has only the epochs it ran).
    pub epochs: Vec<EpochMetrics>,
    /// The evaluation of the final model on the validation set.
    pub final_eval: EvalMetrics,
    /// Seconds spent computing the feature cache (0 when none was used).
    pub cache_seconds: f64,
    /// Images that could not be read and were skipped: (file, problem).
    pub skipped: Vec<(String, String)>,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

/// Features of a whole dataset (backbone in eval mode) with their labels, and the row of each
/// dataset index (`None` for an image that could not be read).
struct FeatureCache {
    features: Tensor,
    labels: Tensor,
    rows: Vec<Option<u32>>,
    skipped: Vec<(String, String)>,
}

impl FeatureCache {
    /// Runs the backbone once over `dataset` (in index order, `loader`'s transform and workers).
    fn build(model: &dyn Backbone, loader: &DataLoader, device: &Device) -> Result<Self> {
        let config = LoaderConfig {
            shuffle: false,
            ..loader.config().clone()
        };
        let ordered = DataLoader::new(loader.dataset().clone(), loader.transform().clone(), config)?;
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        let mut rows = vec![None; loader.dataset().len()];
        let mut next = 0u32;
        for batch in ordered.epoch(0, device) {
            let Batch {
                images,
                labels: l,
                indices,
            } = batch?;
            features.push(frozen_pre_logits(model, &images)?);
            labels.push(l);
            for i in indices {
                if let Some(row) = rows.get_mut(i) {
                    *row = Some(next);
                }
                next += 1;
            }
        }
        if features.is_empty() {
            return Err(Error::config("the dataset has no readable image"));
        }
        Ok(Self {
            features: Tensor::cat(&features, 0)?,
            labels: Tensor::cat(&labels, 0)?,
            rows,
            skipped: ordered.skipped(),
        })
    }

    fn len(&self) -> usize {
        self.labels.dims().first().copied().unwrap_or(0)
    }

    fn bytes(&self) -> usize {
        self.features.elem_count() * self.features.dtype().size_in_bytes()
    }

    /// The batches the loader would give for `order` (dataset indices): chunks of `batch_size`,
    /// unreadable images dropped from their chunk, as [`DataLoader`] does.
    /// Each batch is gathered when the iterator reaches it, so an epoch holds one batch of
    /// features beside the cache, not a second copy of it.
    fn batches<'a>(
        &'a self,
        order: &'a [usize],
        batch_size: usize,
    ) -> impl Iterator<Item = Result<(Tensor, Tensor)>> + 'a {
        order.chunks(batch_size).filter_map(move |chunk| {
            let rows: Vec<u32> = chunk
                .iter()
                .filter_map(|&i| self.rows.get(i).copied().flatten())
                .collect();
            if rows.is_empty() {
                return None;
            }
            let gather = || -> Result<(Tensor, Tensor)> {
                let idx = Tensor::new(rows.as_slice(), self.features.device())?;
                Ok((
                    self.features.index_select(&idx, 0)?,
                    self.labels.index_select(&idx, 0)?,
                ))
            };
            Some(gather())
        })
    }
}

/// The optimizer of a phase: the head alone when frozen; head and backbone (at
/// `backbone_lr_scale`) otherwise. Weight decay spares biases and norm weights.
fn phase_optimizer(
    model: &dyn Backbone,
    varmap: &VarMap,
    config: &FinetuneConfig,
    frozen: bool,
) -> Result<Box<dyn Optimizer>> {
    let mut groups: Vec<ParamGroup> = param_groups(head_vars(varmap, model), config.weight_decay);
    if !frozen {
        for mut group in param_groups(backbone_vars(varmap, model), config.weight_decay) {
            group.lr_scale = config.backbone_lr_scale;
            groups.push(group);
        }
    }
    groups.retain(|g| !g.params.is_empty());
    config.optimizer.build(groups, config.lr, config.weight_decay)
}

fn trainable(model: &dyn Backbone, varmap: &VarMap, frozen: bool) -> Vec<Var> {
    let mut vars: Vec<Var> = head_vars(varmap, model).into_iter().map(|(_, v)| v).collect();
    if !frozen {
        vars.extend(backbone_vars(varmap, model).into_iter().map(|(_, v)| v));
    }
    vars
}

/// Running sums of one training epoch.
#[derive(Default)]
struct EpochSums {
    loss: f64,
    correct: usize,
    seen: usize,
    train_seconds: f64,
}

impl EpochSums {
    fn message(&self) -> String {
        format!(
            "loss {:.4} top-1 {:.2}% {:.0} img/s",
            self.loss / self.seen.max(1) as f64,
            100.0 * self.correct as f64 / self.seen.max(1) as f64,
            self.seen as f64 / self.train_seconds.max(1e-9)
        )
    }
}

/// One optimisation step on a batch; returns the main loss.
#[allow(clippy::too_many_arguments)]
fn train_step(
    logits: &Tensor,
    aux_logits: &[Tensor],
    labels: &Tensor,
    config: &FinetuneConfig,
    optimizer: &mut dyn Optimizer,
    vars: &[Var],
    sums: &mut EpochSums,
    started: Instant,
    check_loss: &mut dyn FnMut(f64) -> Result<()>,
) -> Result<()> {
    let main = cross_entropy_smoothed(logits, labels, config.label_smoothing)?;
    let mut total = main.clone();
    if config.aux_weight > 0.0 {
        for aux in aux_logits {
            total = (total
                + (cross_entropy_smoothed(aux, labels, config.label_smoothing)? * config.aux_weight)?)?;
        }
    }
    // Checked before the step is applied: a diverged loss never reaches the weights.
    check_loss(total.to_scalar::<f32>()? as f64)?;
    optimizer_step(&total, config.clip_grad_norm, vars, optimizer)?;
    let value = main.to_scalar::<f32>()? as f64;
    let n = labels.dim(0)?;
    sums.loss += value * n as f64;
    sums.correct += crate::loss::accuracy_count(logits, labels)?;
    sums.seen += n;
    sums.train_seconds += started.elapsed().as_secs_f64();
    Ok(())
}

/// Evaluation in eval mode over a loader (or over cached features, head only).
fn evaluate_loader(
    model: &dyn Backbone,
    loader: &DataLoader,
    cache: Option<&FeatureCache>,
    batch_size: usize,
    device: &Device,
    verbose: bool,
) -> Result<EvalMetrics> {
    let mut acc = MetricsAccumulator::new(model.num_classes());
    let bar = progress_bar(loader.num_batches(), verbose);
    bar.set_prefix("evaluating");
    match cache {
        Some(cache) => {
            let order: Vec<usize> = (0..loader.dataset().len()).collect();
            for batch in cache.batches(&order, batch_size) {
                let (features, labels) = batch?;
                let logits = backbone::inference_mode(|| model.forward_classifier(&features, false))?;
                update(&mut acc, &logits, &labels)?;
                bar.inc(1);
            }
        }
        None => {
            for batch in loader.epoch(0, device) {
                let batch = batch?;
                let logits = backbone::inference_mode(|| model.forward_t(&batch.images, false))?;
                update(&mut acc, &logits, &batch.labels)?;
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    if acc.count() == 0 {
        return Err(Error::config(
            "evaluation on no image: every validation image was unreadable",
        ));
    }
    Ok(acc.finish())
}

fn update(acc: &mut MetricsAccumulator, logits: &Tensor, labels: &Tensor) -> Result<()> {
    let n = labels.dim(0)? as f64;
    let loss = crate::loss::cross_entropy(logits, labels)?.to_scalar::<f32>()? as f64;
    acc.update(logits, labels, loss * n)
}

/// Fine-tunes `model`, whose variables live in `varmap` (already holding the pretrained
/// weights, see [`crate::pretrained::load_pretrained`]), on `train`, evaluating on `val` after
/// every epoch. Writes `epoch-NNN.safetensors` (+ optimizer state), `metrics.csv`,
/// `metrics.json`, `curves.png` and `confusion.png` to `config.out_dir`.
pub fn finetune(
    model: &dyn Backbone,
    varmap: &VarMap,
    data: FinetuneData,
    config: &FinetuneConfig,
    device: &Device,
) -> Result<FinetuneReport> {
    config.validate()?;
    let FinetuneData {
        train,
        val,
        train_transform,
        eval_transform,
    } = data;
    if train.num_classes() != model.num_classes() {
        return Err(Error::config(format!(
            "the dataset has {} classes but the model's head has {}",
            train.num_classes(),
            model.num_classes()
        )));
    }
    let mut labels = Vec::with_capacity(train.len());
    for i in 0..train.len() {
        labels.push(train.label(i)?);
    }
    let mut classes = labels.clone();
    classes.sort_unstable();
    classes.dedup();
    check_training_data(train.len(), &classes, config.batch_size, "the training images")?;
    if val.is_empty() {
        return Err(Error::config("the validation set has no image"));
    }
    let run = RunDir::open(
        &config.out_dir,
        "finetune",
        run_settings(model, &*train, &labels, &*val, &train_transform, config),
        config.epochs,
        config.run,
        config.verbose,
    )?;
    let run_start = Instant::now();
    let cacheable = config.feature_cache && !train_transform.is_random();
    let drop_train_last = config.last_batch.drop_last(train.len(), config.batch_size);
    let loader_config = |shuffle: bool| LoaderConfig {
        batch_size: config.batch_size,
        shuffle,
        seed: config.seed,
        // Only the training batches (shuffled) may drop their remainder.
        drop_last: shuffle && drop_train_last,
        workers: config.workers,
        prefetch: 2,
        on_corrupt: config.on_corrupt,
    };
    let train_loader = DataLoader::new(train.clone(), train_transform, loader_config(true))?;
    let val_loader = DataLoader::new(val.clone(), eval_transform, loader_config(false))?;
    let steps_per_epoch = train_loader.num_batches();
    let total_steps = config.epochs.checked_mul(steps_per_epoch).ok_or_else(|| {
        Error::config(format!(
            "{} epochs of {steps_per_epoch} steps are too many",
            config.epochs
        ))
    })?;

    // The optimizer of the phase the checkpoint was saved in, whose state holds exactly its
    // parameters; at the unfreezing epoch the loop below then starts the next phase's
    // optimizer afresh, as an uninterrupted run does.
    let (done, mut optimizer) = match run.restore(varmap, |epoch| {
        phase_optimizer(model, varmap, config, config.frozen_at(epoch))
    })? {
        Some(restored) => restored,
        None => (0, phase_optimizer(model, varmap, config, config.frozen_at(1))?),
    };
    let first_epoch = done + 1;
    let mut frozen = config.frozen_at(done.max(1));
    let mut history = run.history(done);
    let mut guard = LossGuard::new(&history);
    let (mut train_cache, mut val_cache): (Option<FeatureCache>, Option<FeatureCache>) = (None, None);
    let mut cache_seconds = 0.0;
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut step = (first_epoch - 1) * steps_per_epoch;
    let mut ran = Vec::new();
    for epoch in first_epoch..=config.epochs {
        let epoch_start = Instant::now();
        if frozen && !config.frozen_at(epoch) {
            frozen = false;
            train_cache = None;
            val_cache = None;
            optimizer = phase_optimizer(model, varmap, config, frozen)?;
            if config.verbose {
                eprintln!(
                    "epoch {epoch}: unfreezing the backbone (learning rate x{})",
                    config.backbone_lr_scale
                );
            }
        }
        if frozen && cacheable && train_cache.is_none() {
            let t0 = Instant::now();
            train_cache = Some(FeatureCache::build(model, &train_loader, device)?);
            val_cache = Some(FeatureCache::build(model, &val_loader, device)?);
            cache_seconds += t0.elapsed().as_secs_f64();
            for cache in [&train_cache, &val_cache].into_iter().flatten() {
                skipped.extend(cache.skipped.iter().cloned());
            }
            if config.verbose {
                let mb = train_cache.as_ref().map_or(0, |c| c.bytes()) as f64 / 1e6;
                eprintln!(
                    "feature cache: {} training images, {mb:.1} MB, built in {:.1}s (linear probing)",
                    train_cache.as_ref().map_or(0, |c| c.len()),
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        backbone::init::seed(config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let vars = trainable(model, varmap, frozen);
        let mode = match (frozen, &train_cache) {
            (true, Some(_)) => "head on cached features",
            (true, None) => "frozen backbone",
            (false, _) => "full model",
        };
        let bar = progress_bar(steps_per_epoch, config.verbose);
        bar.set_prefix(format!("epoch {epoch}/{} ({mode})", config.epochs));
        let mut sums = EpochSums::default();
        let mut lr = config.lr;
        match &train_cache {
            Some(cache) => {
                let order = train_loader.order(epoch - 1);
                for batch in cache.batches(&order, config.batch_size) {
                    let (features, labels) = batch?;
                    let t0 = Instant::now();
                    lr = config
                        .schedule
                        .lr_at(config.lr, step, total_steps, steps_per_epoch);
                    optimizer.set_learning_rate(lr);
                    let logits = model.forward_classifier(&features, true)?;
                    train_step(
                        &logits,
                        &[],
                        &labels,
                        config,
                        optimizer.as_mut(),
                        &vars,
                        &mut sums,
                        t0,
                        &mut |loss| guard.check(loss, epoch, step + 1, &run),
                    )?;
                    step += 1;
                    bar.inc(1);
                    bar.set_message(sums.message());
                }
            }
            None => {
                for batch in train_loader.epoch(epoch - 1, device) {
                    let batch = batch?;
                    let t0 = Instant::now();
                    lr = config
                        .schedule
                        .lr_at(config.lr, step, total_steps, steps_per_epoch);
                    optimizer.set_learning_rate(lr);
                    let (logits, aux) = if frozen {
                        (forward_frozen(model, &batch.images, true)?, Vec::new())
                    } else {
                        let out = model.forward_aux(&batch.images, true)?;
                        (out.logits, out.aux_logits)
                    };
                    train_step(
                        &logits,
                        &aux,
                        &batch.labels,
                        config,
                        optimizer.as_mut(),
                        &vars,
                        &mut sums,
                        t0,
                        &mut |loss| guard.check(loss, epoch, step + 1, &run),
                    )?;
                    step += 1;
                    bar.inc(1);
                    bar.set_message(sums.message());
                }
            }
        }
        bar.finish_and_clear();
        if sums.seen == 0 {
            return Err(Error::config(format!(
                "epoch {epoch} trained on no image: every training image was unreadable"
            )));
        }
        let eval = evaluate_loader(
            model,
            &val_loader,
            val_cache.as_ref(),
            config.batch_size,
            device,
            config.verbose,
        )?;
        if !eval.loss.is_finite() {
            return Err(Error::Diverged {
                epoch,
                step,
                problem: format!("the validation loss is {}; lower the learning rate", eval.loss),
                last_good: run.latest_checkpoint(),
            });
        }
        let row = EpochMetrics {
            epoch,
            train_loss: sums.loss / sums.seen as f64,
            train_top1: sums.correct as f64 / sums.seen as f64,
            val_loss: eval.loss,
            val_top1: eval.top1,
            val_top5: eval.top5,
            lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_sec: sums.seen as f64 / sums.train_seconds.max(1e-9),
            train_aux_loss: f64::NAN,
        };
        run.save_epoch(&row, varmap, optimizer.as_ref(), config.keep_checkpoints)?;
        guard.end_epoch(&row);
        if config.verbose {
            eprintln!(
                "epoch {:>3} ({mode}) train loss {:.4} top-1 {:.2}%  val loss {:.4} top-1 {:.2}% top-5 {:.2}%  lr {:.2e}  {:.0} img/s  {:.1}s",
                epoch,
                row.train_loss,
                100.0 * row.train_top1,
                row.val_loss,
                100.0 * row.val_top1,
                100.0 * row.val_top5,
                row.lr,
                row.images_per_sec,
                row.seconds
            );
        }
        history.push(row);
        ran.push(row);
        run.write_metrics(&history, None, &train.class_names(), "fine-tuning")?;
    }
    let final_eval = evaluate_loader(
        model,
        &val_loader,
        None,
        config.batch_size,
        device,
        config.verbose,
    )?;
    run.write_metrics(&history, Some(&final_eval), &train.class_names(), "fine-tuning")?;
    skipped.extend(train_loader.skipped());
    skipped.extend(val_loader.skipped());
    let mut seen = std::collections::HashSet::new();
    skipped.retain(|(file, _)| seen.insert(file.clone()));
    Ok(FinetuneReport {
        epochs: ran,
        final_eval,
        cache_seconds,
        skipped,
        seconds: run_start.elapsed().as_secs_f64(),
    })
}

/// The settings of a fine-tuning run that define it, for [`RunDir`]'s resume check.
fn run_settings(
    model: &dyn Backbone,
    train: &dyn Dataset,
    train_labels: &[usize],
    val: &dyn Dataset,
    train_transform: &Pipeline,
    config: &FinetuneConfig,
) -> RunSettings {
    let labels: Vec<u8> = train_labels
        .iter()
        .flat_map(|&l| (l as u64).to_le_bytes())
        .collect();
    let names = train.class_names().join("\n");
    [
        ("model", model.name().to_string()),
        ("classes", train.class_names().join(", ")),
        (
            "train data",
            format!(
                "{} images, fingerprint {}",
                train.len(),
                fingerprint(&[&labels, names.as_bytes()])
            ),
        ),
        ("validation data", format!("{} images", val.len())),
        ("train transform", format!("{train_transform:?}")),
        ("batch size", config.batch_size.to_string()),
        ("lr", config.lr.to_string()),
        ("weight decay", config.weight_decay.to_string()),
        ("optimizer", format!("{:?}", config.optimizer)),
        ("schedule", format!("{:?}", config.schedule)),
        ("label smoothing", config.label_smoothing.to_string()),
        ("clip grad norm", format!("{:?}", config.clip_grad_norm)),
        ("freeze backbone", config.freeze_backbone.to_string()),
        ("unfreeze after", format!("{:?}", config.unfreeze_after)),
        ("backbone lr scale", config.backbone_lr_scale.to_string()),
        ("aux weight", config.aux_weight.to_string()),
        ("seed", config.seed.to_string()),
        ("last batch", format!("{:?}", config.last_batch)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Writes the model as `dir/model.safetensors` (every variable, state-dict names) and
/// `dir/config.json` (timm's layout), so `dir` loads back as a weights reference.
pub fn export(dir: &Path, varmap: &VarMap, config: &crate::hub::PretrainedConfig) -> Result<PathBuf> {
    let file = dir.join("model.safetensors");
    save_varmap(&file, varmap)?;
    config.write(dir.join("config.json"))?;
    Ok(file)
}
