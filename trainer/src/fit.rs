//! The fit loop: seeded batches, forward, cross-entropy (plus weighted auxiliary losses),
//! backward, optimizer step, a progress bar, per-epoch test accuracy and a checkpoint per
//! epoch written atomically.

use crate::checkpoint::{load_checkpoint_with, load_varmap, save_checkpoint, save_varmap};
use crate::data::{Batcher, BatcherConfig, ImageDataset, Preprocess, RandomAffine};
use crate::loss::{accuracy_count, cross_entropy};
use crate::optim::{
    param_groups, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig,
};
pub use crate::schedule::Schedule;
use crate::{Error, Result};
use backbone::weights::ReadOptions;
use backbone::Backbone;
use candle_core::Device;
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt;
use std::path::{Path, PathBuf};
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
    /// Continue from the latest `epoch-NNN.safetensors` (and its optimizer state) found in
    /// `out_dir`, as if the run had never stopped; a fresh start when there is none.
    pub resume: bool,
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
            preprocess: Preprocess::mnist(),
            augment: None,
            out_dir: PathBuf::from("runs"),
            keep_checkpoints: 3,
            verbose: true,
            resume: false,
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
    let config = BatcherConfig::new(batch_size)
        .with_shuffle(false)
        .with_preprocess(preprocess);
    let batcher = Batcher::new(data, config, device)?;
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
    for batch in batcher.epoch(0) {
        let (images, labels) = batch?;
        let n = labels.dim(0)?;
        let logits = backbone::inference_mode(|| model.forward_t(&images, false))?;
        loss_sum += cross_entropy(&logits, &labels)?.to_scalar::<f32>()? as f64 * n as f64;
        correct += accuracy_count(&logits, &labels)?;
        seen += n;
    }
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
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Trains `model`, whose trainable variables live in `varmap`, on `train`, evaluating on
/// `test` after every epoch and writing `epoch-NNN.safetensors` (every variable of
/// `varmap`, state-dict names) to `config.out_dir`.
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
    if config.lr.is_nan() || config.lr <= 0.0 || config.weight_decay < 0.0 || config.aux_weight < 0.0 {
        return Err(Error::config(format!(
            "need lr > 0, weight decay >= 0 and aux weight >= 0 (lr {}, weight decay {}, aux weight {})",
            config.lr, config.weight_decay, config.aux_weight
        )));
    }
    config.schedule.validate()?;
    let groups = param_groups(backbone::init::trainable_vars(varmap), config.weight_decay);
    let mut optimizer = config.optimizer.build(groups, config.lr, config.weight_decay)?;
    let batcher_config = BatcherConfig::new(config.batch_size)
        .with_seed(config.seed)
        .with_preprocess(config.preprocess)
        .with_augment(config.augment);
    let batcher = Batcher::new(train, batcher_config, device)?;
    let total_steps = config.epochs * batcher.num_batches();
    let run_start = Instant::now();
    let mut reports: Vec<EpochReport> = Vec::with_capacity(config.epochs);
    let first_epoch = if config.resume {
        resume(&config.out_dir, varmap, optimizer.as_mut(), config.verbose)?
    } else {
        1
    };
    if first_epoch == 1 {
        // A fresh run starts a fresh log (a resumed one appends to its own).
        let log = config.out_dir.join("log.csv");
        if log.exists() {
            std::fs::remove_file(&log).map_err(|e| Error::io(&log, e))?;
        }
    }
    let mut step = (first_epoch - 1) * batcher.num_batches();
    for epoch in first_epoch..=config.epochs {
        // Stochastic layers draw from a generator seeded per epoch, so a resumed run
        // continues exactly as an uninterrupted one.
        backbone::init::seed(config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let epoch_start = Instant::now();
        let bar = progress_bar(batcher.num_batches(), config.verbose);
        bar.set_prefix(format!("epoch {epoch}/{}", config.epochs));
        let (mut loss_sum, mut aux_sum, mut correct, mut seen) = (0.0, 0.0, 0usize, 0usize);
        let mut has_aux = false;
        let mut train_time = 0.0;
        for batch in batcher.epoch(epoch - 1) {
            let (images, labels) = batch?;
            let t0 = Instant::now();
            let lr = config
                .schedule
                .lr_at(config.lr, step, total_steps, batcher.num_batches());
            optimizer.set_learning_rate(lr);
            let out = model.forward_aux(&images, true)?;
            let main = cross_entropy(&out.logits, &labels)?;
            let mut total = main.clone();
            let mut aux_value = 0.0;
            if config.aux_weight > 0.0 && !out.aux_logits.is_empty() {
                has_aux = true;
                for aux in &out.aux_logits {
                    let aux_loss = cross_entropy(aux, &labels)?;
                    aux_value += aux_loss.to_scalar::<f32>()? as f64 / out.aux_logits.len() as f64;
                    total = (total + (aux_loss * config.aux_weight)?)?;
                }
            }
            optimizer.backward_step(&total)?;
            train_time += t0.elapsed().as_secs_f64();
            step += 1;
            let n = labels.dim(0)?;
            let main_value = main.to_scalar::<f32>()? as f64;
            if !main_value.is_finite() {
                return Err(Error::config(format!(
                    "the loss diverged at epoch {epoch}, step {step} (loss {main_value}); lower the learning rate"
                )));
            }
            loss_sum += main_value * n as f64;
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
        let (test_loss, test_accuracy) = evaluate(model, test, config.preprocess, 500, device)?;
        let checkpoint = checkpoint_path(&config.out_dir, epoch);
        // The optimizer state first: a checkpoint whose state is missing is not resumed from.
        save_checkpoint(&optimizer_path(&config.out_dir, epoch), &optimizer.state()?)?;
        save_varmap(&checkpoint, varmap)?;
        prune_checkpoints(&config.out_dir, epoch, config.keep_checkpoints);
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_aux_loss: has_aux.then(|| aux_sum / seen.max(1) as f64),
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_loss,
            test_accuracy,
            images_per_sec: seen as f64 / train_time.max(1e-9),
            seconds: epoch_start.elapsed().as_secs_f64(),
            checkpoint,
        };
        if config.verbose {
            eprintln!("{report}");
        }
        append_log(&config.out_dir, &report)?;
        plot_log(&config.out_dir)?;
        reports.push(report);
    }
    Ok(FitReport {
        epochs: reports,
        seconds: run_start.elapsed().as_secs_f64(),
    })
}

/// `dir/epoch-NNN.safetensors`.
pub fn checkpoint_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:03}.safetensors"))
}

/// `dir/epoch-NNN.optimizer.safetensors`: the optimizer state saved with a checkpoint.
pub fn optimizer_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:03}.optimizer.safetensors"))
}

/// The latest epoch of `dir` with both a checkpoint and an optimizer state.
pub fn latest_epoch(dir: &Path) -> Option<usize> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("epoch-")?
                .strip_suffix(".safetensors")?
                .parse::<usize>()
                .ok()
        })
        .filter(|&epoch| optimizer_path(dir, epoch).is_file())
        .max()
}

/// Loads the latest checkpoint and optimizer state of `dir`; returns the epoch to start at.
pub(crate) fn resume(
    dir: &Path,
    varmap: &VarMap,
    optimizer: &mut dyn Optimizer,
    verbose: bool,
) -> Result<usize> {
    let Some(epoch) = latest_epoch(dir) else {
        if verbose {
            eprintln!("nothing to resume in {}: starting from scratch", dir.display());
        }
        return Ok(1);
    };
    let checkpoint = checkpoint_path(dir, epoch);
    load_varmap(&checkpoint, varmap)?;
    let state_path = optimizer_path(dir, epoch);
    // Optimizer state is float (moments, f64 step counts) and must be finite.
    let state = load_checkpoint_with(&state_path, &Device::Cpu, &ReadOptions::float())?;
    optimizer
        .load_state(&state)
        .map_err(|e| Error::checkpoint(&state_path, format!("cannot restore the optimizer: {e}")))?;
    if verbose {
        eprintln!("resuming after epoch {epoch} from {}", checkpoint.display());
    }
    Ok(epoch + 1)
}

/// Appends one line per epoch to `dir/log.csv` (with a header when the file is new).
fn append_log(dir: &Path, r: &EpochReport) -> Result<()> {
    use std::io::Write;
    let path = dir.join("log.csv");
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let mut line = String::new();
    if new {
        line.push_str(
            "epoch,train_loss,train_aux_loss,train_accuracy,test_loss,test_accuracy,images_per_sec,seconds\n",
        );
    }
    let aux = r.train_aux_loss.map(|a| a.to_string()).unwrap_or_default();
    line.push_str(&format!(
        "{},{},{aux},{},{},{},{:.1},{:.2}\n",
        r.epoch, r.train_loss, r.train_accuracy, r.test_loss, r.test_accuracy, r.images_per_sec, r.seconds
    ));
    file.write_all(line.as_bytes()).map_err(|e| Error::io(&path, e))
}

/// Draws `dir/curves.png` (loss and accuracy per epoch) from the rows of `dir/log.csv`, the
/// epochs of earlier resumed runs included. The test split plays the validation set's part;
/// top-5 and the learning rate are not logged by this loop and are left out.
fn plot_log(dir: &Path) -> Result<()> {
    let path = dir.join("log.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut rows: Vec<crate::metrics::EpochMetrics> = Vec::new();
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let num = |i: usize| {
            cells
                .get(i)
                .and_then(|c| c.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let Some(epoch) = cells.first().and_then(|c| c.parse::<usize>().ok()) else {
            continue;
        };
        rows.retain(|r| r.epoch != epoch);
        rows.push(crate::metrics::EpochMetrics {
            epoch,
            train_loss: num(1),
            train_top1: num(3),
            val_loss: num(4),
            val_top1: num(5),
            val_top5: f64::NAN,
            lr: f64::NAN,
            images_per_sec: num(6),
            seconds: num(7),
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    crate::plot::plot_curves(&dir.join("curves.png"), &rows, "training")
}

/// Removes epoch checkpoints (and their optimizer states) older than the `keep` latest (best
/// effort: a file that cannot be removed is left in place).
pub(crate) fn prune_checkpoints(dir: &Path, epoch: usize, keep: usize) {
    if keep == 0 || epoch <= keep {
        return;
    }
    for old in [
        checkpoint_path(dir, epoch - keep),
        optimizer_path(dir, epoch - keep),
    ] {
        if old.exists() {
            let _ = std::fs::remove_file(old);
        }
    }
}
