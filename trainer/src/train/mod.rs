//! The training loop, one for every job: a model trained from scratch (the MNIST main job:
//! [`TrainData::mnist`] with [`TrainConfig::default`]) or fine-tuned from pretrained weights
//! ([`TrainConfig::finetune`]: a new head on a frozen backbone, optionally unfrozen after some
//! epochs at a lower learning rate), on [`DataLoader`] batches of any [`Dataset`].
//!
//! Each epoch: seeded batches (worker threads optional), forward, cross-entropy (plus weighted
//! auxiliary losses), a loss guard, backward, clipping, the optimizer step, a progress bar with
//! ETA, evaluation, then the run folder's checkpoint, optimizer state and metrics record
//! ([`RunDir`]), from which `metrics.csv`, `metrics.json`, `curves.png` and `confusion.png` are
//! rebuilt; `resume` continues exactly.
//!
//! Recipe tools: [`TrainConfig::accum_steps`] sums the gradients of several batches into one
//! update ([`Accumulation`]); [`TrainConfig::model_ema`] keeps the weights' moving average
//! ([`crate::ema::ModelEma`]), evaluated every epoch and saved with each checkpoint;
//! [`train_mixed_precision`] runs the passes on a low-precision twin ([`crate::amp`]).
//!
//! The model computes in its variables' dtype: f32, or f64 (a model built on
//! `var_builder(DType::F64, ..)`, e.g. to compare runs that f32 rounding would part): the
//! batches are converted to it, the losses and metrics read back as f64, and the checkpoints,
//! optimizer state and moving average keep it (the run folder records `dtype` when not f32).
//!
//! With the backbone frozen and a deterministic training transform, the features are the same
//! every epoch: [`TrainConfig::feature_cache`] computes them once and trains the head on the
//! cache (linear probing), which skips the backbone's forward pass after the first epoch.

mod accumulate;
mod cache;
mod config;
mod ranks;
mod step;

pub use crate::optim::OptimizerKind;
pub use accumulate::Accumulation;
pub use config::TrainConfig;
pub use step::evaluate;

use crate::amp::MixedPrecision;
use crate::data::{
    DataLoader, Dataset, GrayImages, ImageDataset, LoaderConfig, Pipeline, Preprocess, RandomAffine,
};
use crate::distributed::{self, Collective, SingleProcess};
use crate::ema::ModelEma;
use crate::metrics::{EpochMetrics, EvalMetrics};
use crate::pretrained::forward_frozen;
use crate::run::{checkpoint_path, fingerprint, LossGuard, RunDir, RunSettings};
use crate::{Error, Result};
use backbone::Backbone;
use cache::FeatureCache;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use step::{
    apply_update, check_training_data, evaluate_with, model_dtype, phase_optimizer, progress_bar, train_step,
    trainable, EpochSums,
};

/// The images of a run and their transforms.
#[derive(Clone)]
pub struct TrainData {
    /// The training images.
    pub train: Arc<dyn Dataset>,
    /// The validation (test) images, evaluated after every epoch.
    pub val: Arc<dyn Dataset>,
    /// The training transform; with no random step (and a frozen backbone) the features can
    /// be cached.
    pub train_transform: Pipeline,
    /// The evaluation transform.
    pub eval_transform: Pipeline,
}

impl TrainData {
    /// MNIST-like grey digits (classes `"0"`..): `preprocess` (pad, resize, normalise) for
    /// both sets, `augment` for the training images only.
    pub fn mnist(
        train: ImageDataset,
        test: ImageDataset,
        preprocess: Preprocess,
        augment: Option<RandomAffine>,
    ) -> Result<TrainData> {
        Ok(TrainData {
            train: Arc::new(GrayImages::new(train, "train")?),
            val: Arc::new(GrayImages::new(test, "test")?),
            train_transform: preprocess.pipeline(augment)?,
            eval_transform: preprocess.pipeline(None)?,
        })
    }

    /// An image folder (a folder per class, torchvision's ImageFolder) split by a seeded
    /// shuffle into training and validation images (`val_fraction` held out, as `xtask
    /// finetune` does), both through `transform` (e.g. `Pipeline::eval_config` of a model's
    /// data config at its training size: no random step, so a frozen backbone's features are
    /// computed once).
    pub fn image_folder(
        root: impl AsRef<std::path::Path>,
        val_fraction: f64,
        seed: u64,
        transform: Pipeline,
    ) -> Result<TrainData> {
        let all: Arc<dyn Dataset> = Arc::new(crate::data::ImageFolder::open(root)?);
        let (train, val) = crate::data::split_indices(all.len(), val_fraction, seed)?;
        Ok(TrainData {
            train: Arc::new(crate::data::Subset::new(all.clone(), train)?),
            val: Arc::new(crate::data::Subset::new(all, val)?),
            train_transform: transform.clone(),
            eval_transform: transform,
        })
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// One row per epoch run in this call (a resumed run has only the epochs it ran).
    pub epochs: Vec<EpochMetrics>,
    /// The evaluation of the final model on the validation set.
    pub final_eval: EvalMetrics,
    /// The run folder.
    pub out_dir: PathBuf,
    /// Seconds spent computing the feature cache (0 when none was used).
    pub cache_seconds: f64,
    /// Images that could not be read and were skipped: (file, problem).
    pub skipped: Vec<(String, String)>,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// The weights' moving average at the end ([`TrainConfig::model_ema`]).
    pub ema: Option<ModelEma>,
    /// The evaluation of the moving average at the end.
    pub final_ema_eval: Option<EvalMetrics>,
}

impl TrainReport {
    /// The last epoch run.
    pub fn last(&self) -> Option<&EpochMetrics> {
        self.epochs.last()
    }

    /// The checkpoint of `epoch` in the run folder.
    pub fn checkpoint(&self, epoch: usize) -> PathBuf {
        checkpoint_path(&self.out_dir, epoch)
    }

    /// Mean training throughput over the epochs run, images per second.
    pub fn images_per_sec(&self) -> f64 {
        let n = self.epochs.len().max(1) as f64;
        self.epochs.iter().map(|e| e.images_per_sec).sum::<f64>() / n
    }
}

/// Trains `model`, whose variables live in `varmap` (fresh, or holding pretrained weights, see
/// [`crate::pretrained::load_pretrained`]), on `data.train`, evaluating on `data.val` after every
/// epoch, in the run folder `config.out_dir` (see the [module docs](self)).
pub fn train(
    model: &dyn Backbone,
    varmap: &VarMap,
    data: TrainData,
    config: &TrainConfig,
    device: &Device,
) -> Result<TrainReport> {
    run_loop(model, varmap, data, config, device, None, &SingleProcess)
}

/// [`train`] as one rank of a data-parallel run over `collective`'s processes (see
/// [`crate::distributed`]): every rank calls it with the same model, data and configuration;
/// `config.batch_size` is the global batch, split evenly over the ranks; rank 0 alone writes the
/// run folder and prints the log. With [`SingleProcess`], [`train`].
pub fn train_with(
    model: &dyn Backbone,
    varmap: &VarMap,
    data: TrainData,
    config: &TrainConfig,
    device: &Device,
    collective: &dyn Collective,
) -> Result<TrainReport> {
    run_loop(model, varmap, data, config, device, None, collective)
}

/// [`train`] in mixed precision: the forward and backward passes on `amp`'s low-precision
/// twin of `model`, the weights (`varmap`), the optimizer, the evaluation and the checkpoints
/// in float32 (see [`crate::amp`]). Every layer trains (no frozen backbone).
pub fn train_mixed_precision(
    model: &dyn Backbone,
    varmap: &VarMap,
    data: TrainData,
    config: &TrainConfig,
    device: &Device,
    amp: &mut MixedPrecision,
) -> Result<TrainReport> {
    if config.freeze_backbone {
        return Err(Error::config(
            "mixed precision trains every layer: it does not run with a frozen backbone",
        ));
    }
    run_loop(model, varmap, data, config, device, Some(amp), &SingleProcess)
}

/// [`run_epochs`], inside [`backbone::layers::sync_batch_norm`] over the ranks with
/// `config.sync_bn` and more than one rank.
fn run_loop(
    model: &dyn Backbone,
    varmap: &VarMap,
    data: TrainData,
    config: &TrainConfig,
    device: &Device,
    amp: Option<&mut MixedPrecision>,
    collective: &dyn Collective,
) -> Result<TrainReport> {
    if !config.sync_bn || collective.world_size() == 1 {
        return run_epochs(model, varmap, data, config, device, amp, collective);
    }
    let group = collective.batch_norm_sync().ok_or_else(|| {
        Error::config(format!(
            "--sync-bn: the {} engine has no batch-norm group yet: train with MPI (`--features \
             mpi`) or without --sync-bn",
            collective.engine()
        ))
    })?;
    backbone::layers::sync_batch_norm(group, || {
        run_epochs(model, varmap, data, config, device, amp, collective)
    })
}

fn run_epochs(
    model: &dyn Backbone,
    varmap: &VarMap,
    data: TrainData,
    config: &TrainConfig,
    device: &Device,
    mut amp: Option<&mut MixedPrecision>,
    collective: &dyn Collective,
) -> Result<TrainReport> {
    config.validate()?;
    let (rank, world) = (collective.rank(), collective.world_size());
    let local_batch = distributed::local_batch(config.batch_size, world)?;
    let main = collective.is_main();
    if amp.is_some() && world > 1 {
        // A float16 step that overflows is skipped on its rank alone: the ranks would part.
        return Err(Error::config(
            "mixed precision does not run data-parallel yet: train on one process or in float32",
        ));
    }
    // The batches take the dtype of the model's variables (f32, or f64 for a float64 model).
    let dtype = model_dtype(varmap)?;
    if amp.is_some() && dtype != candle_core::DType::F32 {
        return Err(Error::config(format!(
            "mixed precision keeps float32 master weights: the model's are {dtype:?}"
        )));
    }
    let verbose = config.verbose && main;
    if main {
        unpatched_autograd_notice();
    }
    let TrainData {
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
    // Rank 0 alone opens (and writes) the run folder; the others learn whether it could.
    let run = distributed::agree(
        collective,
        "opening the run folder",
        if main {
            let mut settings = run_settings(
                model,
                &*train,
                &labels,
                &*val,
                &train_transform,
                &eval_transform,
                config,
            );
            // Recorded only when used, so the runs saved before them resume as they were.
            if let Some(amp) = amp.as_deref() {
                settings.insert("mixed precision".to_string(), format!("{:?}", amp.dtype()));
            }
            if dtype != candle_core::DType::F32 {
                settings.insert("dtype".into(), format!("{dtype:?}"));
            }
            // Another world size is another run (the shards, batch norm's batches):
            // refused on resume unless --allow-changes.
            if world > 1 {
                settings.insert("world size".into(), world.to_string());
            }
            if config.sync_bn {
                settings.insert("sync batch norm".into(), "true".into());
            }
            RunDir::open(
                &config.out_dir,
                "train",
                settings,
                config.epochs,
                config.run,
                verbose,
            )
        } else {
            Ok(RunDir::follower(
                &config.out_dir,
                "train",
                config.epochs,
                config.run,
            ))
        },
    )?;
    let run_start = Instant::now();
    // Mixed batches change every epoch, and the cache holds the images of one order (one
    // process only): no feature cache then.
    let cacheable =
        config.feature_cache && !train_transform.is_random() && config.mixup.is_none() && world == 1;
    let loader_config = |batch_size: usize, shuffle: bool| LoaderConfig {
        batch_size,
        shuffle,
        seed: config.seed,
        // Only the training batches (shuffled) may drop their remainder.
        drop_last: shuffle
            && config
                .last_batch
                .drop_last(distributed::shard_len(train.len(), world), local_batch),
        workers: config.workers,
        prefetch: 2,
        on_corrupt: config.on_corrupt,
    };
    let train_loader = DataLoader::new(train.clone(), train_transform, loader_config(local_batch, true))?
        .with_shard(rank, world)?
        .with_dtype(dtype)?;
    // Validation: each rank its part of the images, no padding; the metrics' sums are reduced
    // (every image counted once, as one process counts them).
    let mut val_loader = DataLoader::new(
        val.clone(),
        eval_transform,
        loader_config(config.eval_batch(), false),
    )?
    .with_dtype(dtype)?;
    if world > 1 {
        val_loader = val_loader.with_eval_shard(rank, world)?;
    }
    let batches_per_epoch = train_loader.num_batches();
    // One optimizer update per `accum_steps` batches, the epoch's last group possibly shorter
    // (timm's train.py): the schedule counts updates.
    let steps_per_epoch = batches_per_epoch.div_ceil(config.accum_steps);
    let total_steps = config.epochs.checked_mul(steps_per_epoch).ok_or_else(|| {
        Error::config(format!(
            "{} epochs of {steps_per_epoch} steps are too many",
            config.epochs
        ))
    })?;

    // The optimizer of the phase the checkpoint was saved in, whose state holds exactly its
    // parameters; at the unfreezing epoch the loop below then starts the next phase's
    // optimizer afresh, as an uninterrupted run does.
    // (With several ranks, every rank starts from rank 0's weights, epoch and optimizer state.)
    let (done, mut optimizer, mut history) = ranks::start(collective, &run, model, varmap, config)?;
    let first_epoch = done + 1;
    let mut ema = match config.model_ema {
        Some(decay) => {
            let mut ema = ModelEma::new(varmap, decay)?;
            if done > 0 {
                run.restore_ema(done, &mut ema)?;
            }
            Some(ema)
        }
        None => None,
    };
    let mut frozen = config.frozen_at(done.max(1));
    let mut guard = LossGuard::new(&history, model.num_classes());
    let (mut train_cache, mut val_cache): (Option<FeatureCache>, Option<FeatureCache>) = (None, None);
    let mut cache_seconds = 0.0;
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut step = (first_epoch - 1) * steps_per_epoch;
    let mut ran = Vec::new();
    let mut last_eval = None;
    for epoch in first_epoch..=config.epochs {
        let epoch_start = Instant::now();
        if frozen && !config.frozen_at(epoch) {
            frozen = false;
            train_cache = None;
            val_cache = None;
            optimizer = phase_optimizer(model, varmap, config, frozen)?;
            if verbose {
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
            if verbose {
                let mb = train_cache.as_ref().map_or(0, |c| c.bytes()) as f64 / 1e6;
                eprintln!(
                    "feature cache: {} training images, {mb:.1} MB, built in {:.1}s (linear probing)",
                    train_cache.as_ref().map_or(0, |c| c.len()),
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        // Stochastic layers draw from a generator seeded per epoch, so a resumed run
        // continues exactly as an uninterrupted one.
        // (Each rank its own stream; rank 0's is a single process's.)
        backbone::init::seed(
            config.seed
                ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (rank as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let vars = trainable(model, varmap, frozen);
        let mode = match (config.freeze_backbone, frozen, &train_cache) {
            (false, _, _) => "",
            (true, true, Some(_)) => " (head on cached features)",
            (true, true, None) => " (frozen backbone)",
            (true, false, _) => " (full model)",
        };
        let bar = progress_bar(batches_per_epoch, verbose);
        bar.set_prefix(format!("epoch {epoch}/{}{mode}", config.epochs));
        let mut sums = EpochSums::default();
        let mut lr = config.lr;
        // The batches: cached features (the head alone trains on them) or loaded images.
        // (The loader computes its own order; the cache is read in the same one.)
        let order: Vec<usize>;
        let batches: Box<dyn Iterator<Item = Result<(Tensor, Tensor)>>> = match &train_cache {
            Some(cache) => {
                order = train_loader.order(epoch - 1);
                Box::new(cache.batches(&order, local_batch))
            }
            None => Box::new(
                train_loader
                    .epoch(epoch - 1, device)
                    .map(|batch| batch.map(|b| (b.images, b.labels))),
            ),
        };
        // The gradients of the batches of the current update (accumulation).
        let mut accumulated = Accumulation::default();
        for (index, batch) in batches.enumerate() {
            let (inputs, labels) = batch?;
            let t0 = Instant::now();
            // Recipe: mixup / CutMix of the batch, drawn from the batch's own generator.
            let (inputs, soft) = match &config.mixup {
                Some(mixup) if train_cache.is_none() => {
                    // (Each rank its own draws; rank 0's are a single process's.)
                    let rng = crate::data::batch_rng(
                        config.seed ^ (rank as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
                        epoch - 1,
                        index,
                    );
                    let (mixed, soft) =
                        mixup.apply_tensors(&inputs, &labels, &mut crate::data::RngDraws(rng))?;
                    (mixed, Some(soft))
                }
                _ => (inputs, None),
            };
            if index % config.accum_steps == 0 {
                lr = config
                    .schedule
                    .lr_at(config.lr, step, total_steps, steps_per_epoch);
                optimizer.set_learning_rate(lr);
            }
            let (logits, aux) = match (train_cache.is_some(), frozen) {
                _ if amp.is_some() => {
                    let amp = amp.as_deref().ok_or_else(|| Error::config("no twin"))?;
                    let out = amp.model()?.forward_aux(&inputs.to_dtype(amp.dtype())?, true)?;
                    let f32 = |t: &Tensor| t.to_dtype(candle_core::DType::F32);
                    let aux = out
                        .aux_logits
                        .iter()
                        .map(f32)
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    (f32(&out.logits)?, aux)
                }
                (true, _) => (model.forward_classifier(&inputs, true)?, Vec::new()),
                (false, true) => (forward_frozen(model, &inputs, true)?, Vec::new()),
                (false, false) => {
                    let out = model.forward_aux(&inputs, true)?;
                    (out.logits, out.aux_logits)
                }
            };
            let updated = train_step(
                &logits,
                &aux,
                &labels,
                soft.as_ref(),
                config,
                optimizer.as_mut(),
                &vars,
                &mut accumulated,
                (index + 1) % config.accum_steps == 0,
                amp.as_deref_mut(),
                &mut sums,
                t0,
                // Every rank checks the mean loss over the ranks: they stop together.
                &mut |loss| {
                    let mut mean = [loss];
                    distributed::all_reduce_mean_f64(collective, &mut mean)?;
                    guard.check(mean[0], epoch, step + 1, &run)
                },
                // DDP's hook: the gradients averaged over the ranks before clipping and the step.
                &mut |grads| {
                    distributed::average_gradients(collective, grads, &vars, distributed::BUCKET_BYTES)
                },
            )?;
            if updated {
                step += 1;
                if let Some(ema) = ema.as_mut() {
                    ema.update(varmap, step)?;
                }
            }
            bar.inc(1);
            bar.set_message(sums.message());
        }
        // The epoch's last, shorter group of batches: its update (timm's train.py too).
        if let Some(grads) = accumulated.take()? {
            apply_update(grads, config, optimizer.as_mut(), &vars, &mut |grads| {
                distributed::average_gradients(collective, grads, &vars, distributed::BUCKET_BYTES)
            })?;
            step += 1;
            if let Some(ema) = ema.as_mut() {
                ema.update(varmap, step)?;
            }
        }
        bar.finish_and_clear();
        ranks::reduce_sums(collective, &mut sums, model.num_classes())?;
        // Rank 0's buffers (batch norm's running statistics) everywhere: every rank evaluates
        // the model rank 0 saves.
        distributed::broadcast_varmap(collective, varmap)?;
        if sums.seen == 0 {
            return Err(Error::config(format!(
                "epoch {epoch} trained on no image: every training image was unreadable"
            )));
        }
        // The check before the run started counted the unreadable images too: refuse (before
        // anything is saved) when those skipped leave a single class.
        if sums.classes.len() < 2 {
            let mut unreadable = train_loader.skipped();
            unreadable.extend(train_cache.iter().flat_map(|c| c.skipped.iter().cloned()));
            let class = sums.classes.first().map_or(0, |&c| c as usize);
            let shown: Vec<String> = unreadable
                .iter()
                .take(5)
                .map(|(file, problem)| format!("{file} ({problem})"))
                .collect();
            return Err(Error::config(format!(
                "epoch {epoch} trained on one class only (`{}`): {} of the training images could \
                 not be read and were skipped ({}{}), leaving no image of any other class; a \
                 classifier needs at least two",
                train
                    .class_names()
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string()),
                unreadable.len(),
                shown.join("; "),
                if unreadable.len() > shown.len() {
                    "; ..."
                } else {
                    ""
                }
            )));
        }
        let evaluate = || {
            evaluate_with(
                model,
                &val_loader,
                val_cache.as_ref(),
                device,
                verbose,
                collective,
            )
        };
        let eval = evaluate()?;
        if !eval.loss.is_finite() {
            return Err(Error::Diverged {
                epoch,
                step,
                problem: format!("the validation loss is {}; lower the learning rate", eval.loss),
                last_good: run.latest_checkpoint(),
            });
        }
        let ema_eval = match &ema {
            Some(ema) => Some(ema.with_weights(varmap, evaluate)?),
            None => None,
        };
        let seen = sums.seen as f64;
        let row = EpochMetrics {
            epoch,
            train_loss: sums.loss / seen,
            train_top1: sums.correct as f64 / seen,
            val_loss: eval.loss,
            val_top1: eval.top1,
            val_top5: eval.top5,
            lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_sec: seen / sums.train_seconds.max(1e-9),
            train_aux_loss: sums.aux.map_or(f64::NAN, |aux| aux / seen),
            val_ema_loss: ema_eval.as_ref().map_or(f64::NAN, |e| e.loss),
            val_ema_top1: ema_eval.as_ref().map_or(f64::NAN, |e| e.top1),
        };
        run.save_epoch(
            &row,
            varmap,
            optimizer.as_ref(),
            ema.as_ref(),
            config.keep_checkpoints,
        )?;
        guard.end_epoch(&row);
        if verbose {
            let aux = sums
                .aux
                .map_or(String::new(), |_| format!(" (aux {:.4})", row.train_aux_loss));
            let ema = ema_eval.as_ref().map_or(String::new(), |e| {
                format!("  EMA val loss {:.4} top-1 {:.2}%", e.loss, 100.0 * e.top1)
            });
            eprintln!(
                "epoch {:>3}{mode} train loss {:.4}{aux} top-1 {:.2}%  val loss {:.4} top-1 {:.2}% top-5 {:.2}%{ema}  lr {:.2e}  {:.0} img/s  {:.1}s",
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
        last_eval = val_cache.is_none().then_some(eval);
        run.write_metrics(&history, None, &train.class_names(), "training")?;
    }
    // The final model's evaluation (the full model, never cached features), with its confusion
    // matrix: the last epoch's when it evaluated the full model.
    let final_eval = match last_eval {
        Some(eval) => eval,
        None => evaluate_with(model, &val_loader, None, device, verbose, collective)?,
    };
    run.write_metrics(&history, Some(&final_eval), &train.class_names(), "training")?;
    let final_ema_eval = match &ema {
        Some(ema) => Some(ema.with_weights(varmap, || {
            evaluate_with(model, &val_loader, None, device, verbose, collective)
        })?),
        None => None,
    };
    skipped.extend(train_loader.skipped());
    skipped.extend(val_loader.skipped());
    let mut seen = std::collections::HashSet::new();
    skipped.retain(|(file, _)| seen.insert(file.clone()));
    Ok(TrainReport {
        epochs: ran,
        final_eval,
        out_dir: config.out_dir.clone(),
        cache_seconds,
        skipped,
        seconds: run_start.elapsed().as_secs_f64(),
        ema,
        final_ema_eval,
    })
}

/// A fingerprint of where each training image comes from ([`Dataset::describe`]: the file of
/// an image folder) and, for files, their sizes: an image replaced by another of a different
/// size is a change of data on resume. Images edited in place to the same size are not seen
/// (reading every image to hash it would cost a pass over the data).
fn files_fingerprint(train: &dyn Dataset) -> String {
    let mut described = Vec::new();
    for i in 0..train.len() {
        let what = train.describe(i);
        let path = std::path::Path::new(&what);
        let (name, size) = match std::fs::metadata(path) {
            // The class folder and the file name: the same data reached by another path
            // (`./images`, `/home/me/images`) is the same data.
            Ok(m) => {
                let tail: Vec<_> = path.components().rev().take(2).collect();
                let tail: std::path::PathBuf = tail.into_iter().rev().collect();
                (tail.to_string_lossy().into_owned(), m.len())
            }
            Err(_) => (what, u64::MAX),
        };
        described.extend_from_slice(name.as_bytes());
        described.push(0);
        described.extend_from_slice(&size.to_le_bytes());
    }
    fingerprint(&[&described])
}

/// The settings of a run that define it, for [`RunDir`]'s resume check.
fn run_settings(
    model: &dyn Backbone,
    train: &dyn Dataset,
    train_labels: &[usize],
    val: &dyn Dataset,
    train_transform: &Pipeline,
    eval_transform: &Pipeline,
    config: &TrainConfig,
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
        ("train files", files_fingerprint(train)),
        ("validation data", format!("{} images", val.len())),
        ("train transform", format!("{train_transform:?}")),
        ("eval transform", format!("{eval_transform:?}")),
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
    // The recipe tools are recorded only when on, so the runs saved before them resume as
    // they were.
    .chain(config.model_ema.map(|d| ("model ema", format!("{d:?}"))))
    .chain((config.accum_steps != 1).then(|| ("accumulation steps", config.accum_steps.to_string())))
    .chain(config.mixup.as_ref().map(|m| ("mixup", format!("{m:?}"))))
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Says once per process, on stderr, when training runs on the published candle-core autograd
/// instead of the workspace's patched one, and what it costs.
fn unpatched_autograd_notice() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !backbone::patched_autograd() {
            eprintln!(
                "note: training on the published candle-core autograd, which adds every first \
                 gradient to a zero-filled tensor: about 20% slower steps and up to 40% more peak \
                 memory (ResNet-50 8.3-8.7 instead of 10.0-10.4 images/s, VGG-11 4.1 instead of \
                 2.9 GB). The fix (huggingface/candle#3822, #3578) is in this project's \
                 third_party/candle-core: add `[patch.crates-io] candle-core = {{ path = ... }}` \
                 to your Cargo.toml (see its PATCH.md)."
            );
        }
    });
}
