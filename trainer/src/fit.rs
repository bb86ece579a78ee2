//! The fit loop: seeded batches, forward, cross-entropy (plus weighted auxiliary losses),
//! backward, optimizer step, a progress bar, per-epoch test accuracy and a checkpoint per
//! epoch written atomically.

use crate::data::{Batcher, BatcherConfig, ImageDataset, LastBatch, Preprocess, RandomAffine};
use crate::loss::{accuracy_count, cross_entropy, cross_entropy_smoothed};
use crate::metrics::EpochMetrics;
use crate::optim::{
    clip_grad_norm, param_groups, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig,
};
pub use crate::run::{checkpoint_path, latest_epoch, optimizer_path};
use crate::run::{fingerprint, LossGuard, RunDir, RunOptions, RunSettings};
pub use crate::schedule::Schedule;
use crate::{Error, Result};
use backbone::Backbone;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

/// Which optimizer [`fit`] uses.
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

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Number of passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Weight decay (L2 for Adam and SGD, decoupled for AdamW), not applied to biases and
    /// normalisation parameters ([`crate::optim::param_groups`]).
    pub weight_decay: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Seed of the shuffling and of stochastic layers (weights are seeded by the caller's
    /// [`backbone::init::SeededVarMap`]).
    pub seed: u64,
    /// Weight of each auxiliary classifier's loss in the total loss (0 switches them off).
    pub aux_weight: f64,
    /// Label smoothing of the cross-entropy (0 = none).
    pub label_smoothing: f64,
    /// Clip the gradients' total L2 norm to this value.
    pub clip_grad_norm: Option<f64>,
    /// Padding and normalisation of the images.
    pub preprocess: Preprocess,
    /// Random augmentation of the training images (never of the test images).
    pub augment: Option<RandomAffine>,
    /// Where checkpoints go (`epoch-001.safetensors`, ...), created if needed.
    pub out_dir: PathBuf,
    /// How many of the latest epoch checkpoints to keep (0: all).
    pub keep_checkpoints: usize,
    /// Whether to draw a progress bar and print a line per epoch (on stderr).
    pub verbose: bool,
    /// How the run folder `out_dir` is used: resume the run in it (as if it had never
    /// stopped), overwrite it, accept changed settings (see [`RunDir`]).
    pub run: RunOptions,
    /// The last, partial batch of an epoch.
    pub last_batch: LastBatch,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 15,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 0.0,
            optimizer: OptimizerKind::Adam,
            schedule: Schedule::Cosine,
            seed: 42,
            aux_weight: 0.3,
            label_smoothing: 0.0,
            clip_grad_norm: None,
            preprocess: Preprocess::mnist(),
            augment: None,
            out_dir: PathBuf::from("runs"),
            keep_checkpoints: 3,
            verbose: true,
            run: RunOptions::default(),
            last_batch: LastBatch::Auto,
        }
    }
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean main-head cross-entropy over the training images.
    pub train_loss: f64,
    /// Mean auxiliary cross-entropy (average over the auxiliary heads), if the model has any.
    pub train_aux_loss: Option<f64>,
    /// Training accuracy of the main head (on the fly, in training mode).
    pub train_accuracy: f64,
    /// Mean cross-entropy on the test set (eval mode).
    pub test_loss: f64,
    /// Accuracy on the test set (eval mode).
    pub test_accuracy: f64,
    /// Training throughput (forward, backward, step), images per second.
    pub images_per_sec: f64,
    /// Wall time of the epoch including evaluation and checkpoint, seconds.
    pub seconds: f64,
    /// The checkpoint written after this epoch.
    pub checkpoint: PathBuf,
}

impl fmt::Display for EpochReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {:>3}  train loss {:.4}", self.epoch, self.train_loss)?;
        if let Some(aux) = self.train_aux_loss {
            write!(f, " (aux {aux:.4})")?;
        }
        write!(
            f,
            " acc {:.2}%  test loss {:.4} acc {:.2}%  {:.0} img/s  {:.1}s",
            100.0 * self.train_accuracy,
            self.test_loss,
            100.0 * self.test_accuracy,
            self.images_per_sec,
            self.seconds
        )
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport {
    /// One report per epoch.
    pub epochs: Vec<EpochReport>,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
}

impl FitReport {
    /// The last epoch's report.
    pub fn last(&self) -> Option<&EpochReport> {
        self.epochs.last()
    }

    /// Training images per second over the whole run.
    pub fn images_per_sec(&self) -> f64 {
        let n = self.epochs.len().max(1) as f64;
        self.epochs.iter().map(|e| e.images_per_sec).sum::<f64>() / n
    }
}

/// Mean loss and accuracy of `model` in eval mode over a dataset.
pub fn evaluate(
    model: &dyn Backbone,
    data: &ImageDataset,
    preprocess: Preprocess,
    batch_size: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    evaluate_shown(model, data, preprocess, batch_size, device, false)
}

/// [`evaluate`] with a progress bar on stderr when `verbose`.
fn evaluate_shown(
    model: &dyn Backbone,
    data: &ImageDataset,
    preprocess: Preprocess,
    batch_size: usize,
    device: &Device,
    verbose: bool,
) -> Result<(f64, f64)> {
    let config = BatcherConfig::new(batch_size)
        .with_shuffle(false)
        .with_preprocess(preprocess);
    let batcher = Batcher::new(data, config, device)?;
    let bar = progress_bar(batcher.num_batches(), verbose);
    bar.set_prefix("evaluating");
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
    for batch in batcher.epoch(0) {
        let (images, labels) = batch?;
        let n = labels.dim(0)?;
        let logits = backbone::inference_mode(|| model.forward_t(&images, false))?;
        loss_sum += cross_entropy(&logits, &labels)?.to_scalar::<f32>()? as f64 * n as f64;
        correct += accuracy_count(&logits, &labels)?;
        seen += n;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if seen == 0 {
        return Err(Error::config("evaluation on an empty dataset"));
    }
    Ok((loss_sum / seen as f64, correct as f64 / seen as f64))
}

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

/// The optimisation step of both training loops: back-propagates `total`, clips the gradients
/// of `vars` to a total L2 norm of `clip` (if any) and applies the optimizer.
pub(crate) fn optimizer_step(
    total: &Tensor,
    clip: Option<f64>,
    vars: &[Var],
    optimizer: &mut dyn Optimizer,
) -> Result<()> {
    let mut grads = total.backward()?;
    if let Some(max) = clip {
        clip_grad_norm(&mut grads, vars, max)?;
    }
    optimizer.step(&grads)
}

/// The settings of a training run that define it, for [`RunDir`]'s resume check.
fn run_settings(
    model: &dyn Backbone,
    train: &ImageDataset,
    test: &ImageDataset,
    config: &FitConfig,
) -> RunSettings {
    let data = |d: &ImageDataset| {
        format!(
            "{} images of {}x{}, {} classes, fingerprint {}",
            d.len(),
            d.rows,
            d.cols,
            d.num_classes,
            fingerprint(&[&d.images, &d.labels])
        )
    };
    [
        ("model", model.name().to_string()),
        ("classes", model.num_classes().to_string()),
        ("train data", data(train)),
        ("test data", data(test)),
        ("batch size", config.batch_size.to_string()),
        ("lr", config.lr.to_string()),
        ("weight decay", config.weight_decay.to_string()),
        ("optimizer", format!("{:?}", config.optimizer)),
        ("schedule", format!("{:?}", config.schedule)),
        ("seed", config.seed.to_string()),
        ("aux weight", config.aux_weight.to_string()),
        ("label smoothing", config.label_smoothing.to_string()),
        ("clip grad norm", format!("{:?}", config.clip_grad_norm)),
        ("preprocess", format!("{:?}", config.preprocess)),
        ("augment", format!("{:?}", config.augment)),
        ("last batch", format!("{:?}", config.last_batch)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
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

/// Trains `model`, whose trainable variables live in `varmap`, on `train`, evaluating on
/// `test` after every epoch. `config.out_dir` is a run folder ([`RunDir`]): per epoch a
/// checkpoint (`epoch-NNN.safetensors`, every variable of `varmap`, state-dict names), the
/// optimizer state and a metrics record; `metrics.csv`, `metrics.json` and `curves.png`.
pub fn fit(
    model: &dyn Backbone,
    varmap: &VarMap,
    train: &ImageDataset,
    test: &ImageDataset,
    config: &FitConfig,
    device: &Device,
) -> Result<FitReport> {
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(Error::config("epochs and batch size must be positive"));
    }
    let finite_at_least = |x: f64, min: f64| x.is_finite() && x >= min;
    if !(finite_at_least(config.lr, f64::MIN_POSITIVE)
        && finite_at_least(config.weight_decay, 0.0)
        && finite_at_least(config.aux_weight, 0.0))
    {
        return Err(Error::config(format!(
            "need a finite lr > 0, weight decay >= 0 and aux weight >= 0 (lr {}, weight decay {}, aux weight {})",
            config.lr, config.weight_decay, config.aux_weight
        )));
    }
    config.schedule.validate()?;
    if !(0.0..1.0).contains(&config.label_smoothing)
        || config.clip_grad_norm.is_some_and(|m| !(m.is_finite() && m > 0.0))
    {
        return Err(Error::config(format!(
            "need label smoothing in [0, 1) and a clipping norm > 0 (got {}, {:?})",
            config.label_smoothing, config.clip_grad_norm
        )));
    }
    let mut classes: Vec<usize> = train.labels.iter().map(|&l| l as usize).collect();
    classes.sort_unstable();
    classes.dedup();
    check_training_data(train.len(), &classes, config.batch_size, "the training set")?;
    if test.is_empty() {
        return Err(Error::config("the test set has no image"));
    }
    let build_optimizer = || {
        let groups = param_groups(backbone::init::trainable_vars(varmap), config.weight_decay);
        config.optimizer.build(groups, config.lr, config.weight_decay)
    };
    let batcher_config = BatcherConfig::new(config.batch_size)
        .with_seed(config.seed)
        .with_preprocess(config.preprocess)
        .with_augment(config.augment)
        .with_drop_last(config.last_batch.drop_last(train.len(), config.batch_size));
    let batcher = Batcher::new(train, batcher_config, device)?;
    let steps_per_epoch = batcher.num_batches();
    let total_steps = config.epochs.checked_mul(steps_per_epoch).ok_or_else(|| {
        Error::config(format!(
            "{} epochs of {steps_per_epoch} steps are too many",
            config.epochs
        ))
    })?;
    let run = RunDir::open(
        &config.out_dir,
        "train",
        run_settings(model, train, test, config),
        config.epochs,
        config.run,
        config.verbose,
    )?;
    let (done, mut optimizer) = match run.restore(varmap, |_| build_optimizer())? {
        Some(restored) => restored,
        None => (0, build_optimizer()?),
    };
    let mut history = run.history(done);
    let mut guard = LossGuard::new(&history);
    let vars: Vec<Var> = backbone::init::trainable_vars(varmap)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let run_start = Instant::now();
    let mut reports: Vec<EpochReport> = Vec::new();
    let mut step = done * steps_per_epoch;
    for epoch in done + 1..=config.epochs {
        // Stochastic layers draw from a generator seeded per epoch, so a resumed run
        // continues exactly as an uninterrupted one.
        backbone::init::seed(config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let epoch_start = Instant::now();
        let bar = progress_bar(steps_per_epoch, config.verbose);
        bar.set_prefix(format!("epoch {epoch}/{}", config.epochs));
        let (mut loss_sum, mut aux_sum, mut correct, mut seen) = (0.0, 0.0, 0usize, 0usize);
        let mut has_aux = false;
        let mut train_time = 0.0;
        let mut lr = config.lr;
        for batch in batcher.epoch(epoch - 1) {
            let (images, labels) = batch?;
            let t0 = Instant::now();
            lr = config
                .schedule
                .lr_at(config.lr, step, total_steps, steps_per_epoch);
            optimizer.set_learning_rate(lr);
            let out = model.forward_aux(&images, true)?;
            let ce = |logits: &Tensor| -> Result<Tensor> {
                if config.label_smoothing == 0.0 {
                    cross_entropy(logits, &labels)
                } else {
                    cross_entropy_smoothed(logits, &labels, config.label_smoothing)
                }
            };
            let main = ce(&out.logits)?;
            let mut total = main.clone();
            let mut aux_value = 0.0;
            if config.aux_weight > 0.0 && !out.aux_logits.is_empty() {
                has_aux = true;
                for aux in &out.aux_logits {
                    let aux_loss = ce(aux)?;
                    aux_value += aux_loss.to_scalar::<f32>()? as f64 / out.aux_logits.len() as f64;
                    total = (total + (aux_loss * config.aux_weight)?)?;
                }
            }
            step += 1;
            // Checked before the step is applied: a diverged loss never reaches the weights.
            guard.check(total.to_scalar::<f32>()? as f64, epoch, step, &run)?;
            optimizer_step(&total, config.clip_grad_norm, &vars, optimizer.as_mut())?;
            train_time += t0.elapsed().as_secs_f64();
            let n = labels.dim(0)?;
            loss_sum += main.to_scalar::<f32>()? as f64 * n as f64;
            aux_sum += aux_value * n as f64;
            correct += accuracy_count(&out.logits, &labels)?;
            seen += n;
            bar.inc(1);
            let mut msg = format!("loss {:.4}", loss_sum / seen as f64);
            if has_aux {
                msg.push_str(&format!(" aux {:.4}", aux_sum / seen as f64));
            }
            msg.push_str(&format!(
                " acc {:.2}% {:.0} img/s",
                100.0 * correct as f64 / seen as f64,
                seen as f64 / train_time.max(1e-9)
            ));
            bar.set_message(msg);
        }
        bar.finish_and_clear();
        let (test_loss, test_accuracy) =
            evaluate_shown(model, test, config.preprocess, 500, device, config.verbose)?;
        if !test_loss.is_finite() {
            return Err(Error::Diverged {
                epoch,
                step,
                problem: format!("the test loss is {test_loss}; lower the learning rate"),
                last_good: run.latest_checkpoint(),
            });
        }
        let row = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_top1: correct as f64 / seen.max(1) as f64,
            val_loss: test_loss,
            val_top1: test_accuracy,
            val_top5: f64::NAN,
            lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_sec: seen as f64 / train_time.max(1e-9),
            train_aux_loss: if has_aux {
                aux_sum / seen.max(1) as f64
            } else {
                f64::NAN
            },
        };
        let checkpoint = run.save_epoch(&row, varmap, optimizer.as_ref(), config.keep_checkpoints)?;
        guard.end_epoch(&row);
        history.push(row);
        run.write_metrics(&history, None, &[], "training")?;
        let report = EpochReport {
            epoch,
            train_loss: row.train_loss,
            train_aux_loss: has_aux.then_some(row.train_aux_loss),
            train_accuracy: row.train_top1,
            test_loss,
            test_accuracy,
            images_per_sec: row.images_per_sec,
            seconds: row.seconds,
            checkpoint,
        };
        if config.verbose {
            eprintln!("{report}");
        }
        reports.push(report);
    }
    Ok(FitReport {
        epochs: reports,
        seconds: run_start.elapsed().as_secs_f64(),
    })
}
