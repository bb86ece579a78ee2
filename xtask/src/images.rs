//! Training on images, from scratch (`train <model> --data <folder | CIFAR-10 | MNIST IDX>`) or
//! from pretrained weights (`finetune`): the one path both commands take to
//! `trainer::train::train`. `finetune` is this with weights and a frozen backbone.

use crate::args::{self, Augment, OptimArgs, OptimDefaults, RecipeArgs, RunArgs};
use crate::finetune::{at_size, check_architecture, weights_reference, PreprocessArgs};
use crate::models;
use crate::parse_device;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::ValueEnum;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trainer::checkpoint::{export, save_checkpoint};
use trainer::data::{
    Cifar10, Dataset, GrayImages, ImageFolder, Mnist, OnCorrupt, Pipeline, RandomAffine, Subset, Transform,
};
use trainer::distributed::{Collective, SingleProcess};
use trainer::train::{TrainConfig, TrainData};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    /// MNIST IDX files if the directory holds train-images-idx3-ubyte[.gz], CIFAR-10 binaries
    /// if it holds data_batch_1.bin, else an image folder.
    Auto,
    /// A folder per class of JPEG/PNG files (torchvision's ImageFolder).
    Folder,
    /// CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin).
    Cifar10,
    /// MNIST IDX files (train-images-idx3-ubyte, ..., t10k-labels-idx1-ubyte; plain or .gz).
    Mnist,
}

/// Where the images come from, for `train` and `finetune` alike.
#[derive(clap::Args)]
pub struct DataArgs {
    /// Validation images in the same format (default: CIFAR-10's and MNIST's test split, or
    /// --val-fraction of an image folder, held out).
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Fraction of the training images held out for validation when --val is not given.
    #[arg(long, default_value_t = 0.2, value_parser = args::unit_open)]
    pub val_fraction: f64,
    /// Dataset format.
    #[arg(long, value_enum, default_value_t = DataFormat::Auto)]
    pub format: DataFormat,
    /// Stop at the first unreadable image instead of skipping it.
    #[arg(long)]
    pub fail_on_corrupt: bool,
}

type Images = Arc<dyn Dataset>;

fn is_mnist(dir: &Path) -> bool {
    ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"]
        .iter()
        .any(|name| dir.join(name).is_file())
}

/// The format of `dir` (`Auto` resolved).
pub fn resolve_format(dir: &Path, format: DataFormat) -> DataFormat {
    let cifar = |d: &Path| d.join("data_batch_1.bin").is_file();
    match format {
        DataFormat::Auto if is_mnist(dir) => DataFormat::Mnist,
        DataFormat::Auto if cifar(dir) || cifar(&dir.join("cifar-10-batches-bin")) => DataFormat::Cifar10,
        DataFormat::Auto => DataFormat::Folder,
        f => f,
    }
}

/// The images of `dir` and, for CIFAR-10 and MNIST, their own test split (the validation set
/// when no `--val` is given).
fn open_dataset(dir: &Path, format: DataFormat) -> Result<(Images, Option<Images>)> {
    Ok(match resolve_format(dir, format) {
        DataFormat::Cifar10 => {
            let cifar = Cifar10::load_dir(dir)?;
            (Arc::new(cifar.train), Some(Arc::new(cifar.test)))
        }
        DataFormat::Mnist => {
            let mnist =
                Mnist::load_dir(dir).with_context(|| format!("reading MNIST from {}", dir.display()))?;
            (
                Arc::new(GrayImages::new(mnist.train, "train")?),
                Some(Arc::new(GrayImages::new(mnist.test, "test")?)),
            )
        }
        _ => (Arc::new(ImageFolder::open(dir)?), None),
    })
}

/// The training and validation images of `data` (`--val`, the dataset's own test split, or a
/// seeded split of `val_fraction`).
fn open_split(data: &Path, args: &DataArgs, seed: u64) -> Result<(Images, Images)> {
    let (all, own_val) = open_dataset(data, args.format)?;
    Ok(match (&args.val, own_val) {
        (Some(val_dir), _) => {
            let (val, val_test) = open_dataset(val_dir, args.format)
                .with_context(|| format!("reading --val {}", val_dir.display()))?;
            (all, val_test.unwrap_or(val))
        }
        (None, Some(test)) => (all, test),
        (None, None) => {
            let (train_idx, val_idx) = trainer::data::split_indices(all.len(), args.val_fraction, seed)?;
            (
                Arc::new(Subset::new(all.clone(), train_idx)?),
                Arc::new(Subset::new(all, val_idx)?),
            )
        }
    })
}

pub(crate) fn preview(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{}, ... {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// What the first few training images say about the data: their size (the first image's
/// height and width) and whether they are grey (one channel, or red = green = blue).
struct Traits {
    size: (usize, usize),
    grey: bool,
}

fn traits(train: &dyn Dataset) -> Result<Traits> {
    let mut size = None;
    let mut grey = true;
    for i in 0..train.len().min(8) {
        let image = match train.get(i) {
            Ok(sample) => sample.image,
            Err(_) => continue,
        };
        size.get_or_insert((image.height, image.width));
        if image.channels == 3 {
            let plane = image.height * image.width;
            let (r, rest) = image.data.split_at(plane);
            let (g, b) = rest.split_at(plane);
            grey &= r == g && g == b;
        } else if image.channels != 1 {
            grey = false;
        }
    }
    let size = size.context("none of the first training images could be read")?;
    Ok(Traits { size, grey })
}

/// The training transform `augment` names, from the evaluation transform `eval` (its steps
/// end with the normalisation), and what `auto` chose and why (for the log).
fn train_transform(
    augment: Augment,
    eval: &Pipeline,
    size: (usize, usize),
    interpolation: trainer::data::Interpolation,
    (mean, std): (&[f32], &[f32]),
    traits: Option<&Traits>,
) -> Result<(Pipeline, Option<String>)> {
    let with = |extra: Vec<Transform>| -> Result<Pipeline> {
        let mut steps = eval.steps().to_vec();
        let normalize = steps.pop();
        steps.extend(extra);
        steps.extend(normalize);
        Ok(Pipeline::new(steps)?)
    };
    let affine = || with(vec![Transform::RandomAffine(RandomAffine::mnist())]);
    let padded_crop = || {
        with(vec![
            Transform::RandomCrop {
                size,
                padding: (size.0.min(size.1) / 8).max(1),
            },
            Transform::RandomHorizontalFlip(0.5),
        ])
    };
    Ok(match augment {
        Augment::None => (eval.clone(), None),
        Augment::Affine => (affine()?, None),
        Augment::Flip => (with(vec![Transform::RandomHorizontalFlip(0.5)])?, None),
        Augment::CropFlip => (Pipeline::train(size, interpolation, mean, std)?, None),
        Augment::Auto => {
            let Some(t) = traits else {
                return Ok((Pipeline::train(size, interpolation, mean, std)?, None));
            };
            let (h, w) = t.size;
            if t.grey || mean.len() == 1 {
                (
                    affine()?,
                    Some(format!(
                        "augmentation auto: {} images of {h}x{w} (digits, characters, scans): a random \
                         rotation of up to 10 degrees, shift of up to 2 pixels and scale of 0.9-1.1; no \
                         flip (they are not mirror-symmetric) and no crop",
                        if t.grey {
                            "grey"
                        } else {
                            "colour images for a grey model, made grey"
                        }
                    )),
                )
            } else if h.min(w) <= 64 {
                (
                    padded_crop()?,
                    Some(format!(
                        "augmentation auto: small colour images ({h}x{w}): a random crop of the \
                         image padded by 1/8 of its side and a horizontal flip (the CIFAR recipe); no \
                         resized crop, which would keep too few of their pixels"
                    )),
                )
            } else {
                (
                    Pipeline::train(size, interpolation, mean, std)?,
                    Some(format!(
                        "augmentation auto: colour images ({h}x{w}): random resized crop (8-100% of \
                         the area) and horizontal flip"
                    )),
                )
            }
        }
    })
}

/// One training run on images (see the module docs).
pub(crate) struct ImageJob<'a> {
    /// The model name (a tagged name names its checkpoint).
    pub model: &'a str,
    /// The images.
    pub data: &'a Path,
    pub data_args: &'a DataArgs,
    /// Pretrained weights (`finetune`), or `None` for fresh ones.
    pub weights: Option<String>,
    pub pretrained: bool,
    pub freeze_backbone: bool,
    pub unfreeze_after: Option<usize>,
    pub backbone_lr_scale: f64,
    /// Passes over the training set; 0: 20, more for a small training set (at least 1,000
    /// optimizer updates), at most 100.
    pub epochs: usize,
    pub batch_size: usize,
    pub optim: &'a OptimArgs,
    pub defaults: OptimDefaults,
    pub augment: Augment,
    pub preprocess: &'a PreprocessArgs,
    pub feature_cache: bool,
    pub workers: usize,
    pub offline: bool,
    pub cache_dir: Option<PathBuf>,
    pub seed: u64,
    pub out: PathBuf,
    pub keep_checkpoints: usize,
    pub run: &'a RunArgs,
    pub recipe: &'a RecipeArgs,
    /// The augmentation tools and mixup / CutMix (`crate::recipe`).
    pub aug: &'a crate::recipe::AugmentArgs,
    pub quiet: bool,
    pub device: &'a str,
    /// The defaults of the rest: `TrainConfig::default()` or `TrainConfig::finetune()`.
    pub base: TrainConfig,
    /// `train --distributed`: the ranks and this rank's device (NCCL puts each rank on the GPU
    /// of its local rank); `None`: one process on `device`.
    pub dist: Option<(&'a dyn Collective, Device)>,
    /// `--sync-bn` (with `dist`).
    pub sync_bn: bool,
}

pub(crate) fn run_images(job: ImageJob) -> Result<()> {
    let entry = models::find(job.model)?;
    let (collective, device): (&dyn Collective, Device) = match &job.dist {
        Some((collective, device)) => (*collective, device.clone()),
        None => (&SingleProcess, parse_device(job.device)?),
    };
    trainer::distributed::local_batch(job.batch_size, collective.world_size())?;
    // The log is printed once, by rank 0.
    let main = collective.is_main();
    macro_rules! say {
        ($($arg:tt)*) => {
            if main {
                println!($($arg)*);
            }
        };
    }
    job.recipe.check_amp(&device)?;
    let (train, val) = open_split(job.data, job.data_args, job.seed)?;
    let classes = train.class_names();
    if val.class_names() != classes {
        bail!(
            "the validation set's classes ({}) differ from the training set's ({})",
            preview(&val.class_names()),
            preview(&classes)
        );
    }
    say!(
        "data: {} training and {} validation images, {} classes ({})",
        train.len(),
        val.len(),
        classes.len(),
        preview(&classes)
    );

    // The one way in: the weights (any layout the variant accepts) into fresh trainable
    // variables with a new head for the dataset's classes, or fresh weights.
    let created = convnets::create_model(
        job.model,
        &convnets::CreateOptions {
            num_classes: Some(classes.len()),
            weights: job.weights.as_deref().map(weights_reference),
            pretrained: job.pretrained,
            trainable: true,
            offline: job.offline,
            cache_dir: job.cache_dir.clone(),
            seed: job.seed,
            device: device.clone(),
            ..Default::default()
        },
    )
    .with_context(|| match &job.weights {
        Some(w) => format!("loading the weights `{w}` into {}", entry.name),
        None => format!("building {}", entry.name),
    })?;
    let traits = traits(train.as_ref()).ok();
    let mut pretrained = at_size(&created.pretrained_cfg, false);
    match &created.weights {
        Some(loaded) => {
            check_architecture(entry, &created.pretrained_cfg, &loaded.source);
            say!(
                "weights: {} ({}; {})",
                loaded.source,
                loaded.file.display(),
                loaded.info
            );
            if !loaded.info.has_aux {
                let aux: Vec<&str> = entry
                    .aux_prefixes
                    .iter()
                    .map(|p| p.trim_end_matches('.'))
                    .collect();
                say!(
                    "the weights have no auxiliary classifiers ({}): they start fresh",
                    aux.join(", ")
                );
            }
            if let Some(report) = &loaded.report {
                say!("{report}");
            }
        }
        None => {
            // From scratch: the data's own size when the model takes it (its fixed size, else
            // at least its smallest input and at most its usual one), the family's
            // normalisation, no crop at evaluation.
            let spec = created.net.input_spec();
            let size = match (spec.fixed_size, &traits) {
                (Some(fixed), _) => fixed,
                (None, Some(t)) => {
                    let lo = spec.min_size.0.max(spec.min_size.1).max(1);
                    let hi = spec.default_size.0.max(lo);
                    let side = t.size.0.min(t.size.1).clamp(lo, hi);
                    (side, side)
                }
                (None, None) => spec.default_size,
            };
            pretrained.input_size = (pretrained.input_size.0, size.0, size.1);
            pretrained.crop_pct = 1.0;
        }
    }
    let size = job.preprocess.apply(&mut pretrained)?;
    let vars = created.vars.clone().context("trainable variables")?;
    let model = created.net;
    let spec = model.input_spec();
    if !spec.accepts(&[1, spec.channels, size.0, size.1]) {
        bail!(
            "{} does not take {}x{} images: it expects {} (--img-size)",
            entry.name,
            size.0,
            size.1,
            spec.describe()
        );
    }
    let trains_backbone = !job.freeze_backbone || job.unfreeze_after.is_some();
    args::check_memory(model.as_ref(), job.batch_size, size, trains_backbone)?;
    let (mean, std) = (pretrained.mean.clone(), pretrained.std.clone());
    let interpolation = pretrained.interpolation;
    let eval_transform = Pipeline::eval(size, pretrained.crop_pct, interpolation, &mean, &std)?;
    let augment = match job.augment {
        Augment::Auto if !trains_backbone => Augment::None,
        a => a,
    };
    let (train_transform, said) = train_transform(
        augment,
        &eval_transform,
        size,
        interpolation,
        (&mean, &std),
        traits.as_ref(),
    )?;
    if let Some(said) = said {
        say!("{said}");
    }
    let train_transform = job.aug.pipeline(train_transform, &mean)?;
    let tools = job.aug.describe();
    if !tools.is_empty() {
        say!("recipe: {tools}");
    }
    let updates_per_epoch = train
        .len()
        .div_ceil(job.batch_size.max(1))
        .div_ceil(job.recipe.accum_steps);
    // `train` leaves the epochs to the data (0): 20, or enough for 1,000 updates, at most 100.
    let epochs = match job.epochs {
        0 => 20usize.max(1000usize.div_ceil(updates_per_epoch.max(1))).min(100),
        n => n,
    };
    let config = TrainConfig {
        epochs,
        batch_size: job.batch_size,
        lr: job.optim.lr(&job.defaults),
        weight_decay: job.optim.weight_decay(&job.defaults),
        optimizer: job.optim.optimizer(&job.defaults),
        schedule: job.optim.schedule(updates_per_epoch)?,
        label_smoothing: job.optim.label_smoothing,
        clip_grad_norm: job.optim.clip_grad,
        freeze_backbone: job.freeze_backbone,
        unfreeze_after: job.unfreeze_after,
        backbone_lr_scale: job.backbone_lr_scale,
        feature_cache: job.feature_cache,
        seed: job.seed,
        workers: job.workers,
        on_corrupt: if job.data_args.fail_on_corrupt {
            OnCorrupt::Fail
        } else {
            OnCorrupt::Skip
        },
        out_dir: job.out.clone(),
        keep_checkpoints: job.keep_checkpoints,
        verbose: !job.quiet,
        run: job.run.options(),
        last_batch: job.run.last_batch(),
        model_ema: job.recipe.model_ema(),
        accum_steps: job.recipe.accum_steps,
        mixup: job.aug.mixup(classes.len(), job.optim.label_smoothing)?,
        sync_bn: job.sync_bn,
        ..job.base.clone()
    };
    say!(
        "{} {} at {}x{} for {} ({}), batch {}{}{}, {}",
        if created.weights.is_some() {
            "fine-tuning"
        } else {
            "training from scratch"
        },
        entry.name,
        size.0,
        size.1,
        args::plural(config.epochs, "epoch"),
        match (config.freeze_backbone, config.unfreeze_after) {
            (true, None) => "backbone frozen".to_string(),
            (true, Some(n)) => format!("backbone frozen for {}", args::plural(n, "epoch")),
            (false, _) => "whole model".to_string(),
        },
        config.batch_size,
        if config.accum_steps > 1 {
            format!(
                " x {} accumulated (updates of {} images)",
                config.accum_steps,
                config.accum_steps * config.batch_size
            )
        } else {
            String::new()
        },
        config
            .model_ema
            .map_or(String::new(), |d| format!(", weights' EMA (decay {d})")),
        args::plural(candle_core::utils::get_num_threads(), "thread")
    );
    if collective.world_size() > 1 {
        say!(
            "data-parallel over {} ranks ({}): {} images per rank per step; validation split over \
             the ranks{}",
            collective.world_size(),
            collective.engine(),
            config.batch_size / collective.world_size(),
            if config.sync_bn {
                "; batch norm synchronised (--sync-bn)"
            } else {
                ""
            }
        );
    }
    let data = TrainData {
        train,
        val,
        train_transform,
        eval_transform,
    };
    let twin = job.recipe.mixed_precision(
        entry.name,
        model.num_classes(),
        spec.channels,
        vars.varmap(),
        &device,
    )?;
    let result = match twin {
        Some(mut amp) => trainer::train::train_mixed_precision(
            model.as_ref(),
            vars.varmap(),
            data,
            &config,
            &device,
            &mut amp,
        )?,
        None => match trainer::train::train_with(
            model.as_ref(),
            vars.varmap(),
            data,
            &config,
            &device,
            collective,
        ) {
            Ok(report) => report,
            Err(e) => return Err(crate::distributed::fail(collective, e.into())),
        },
    };
    // Rank 0 alone writes the run folder (the others trained the same weights).
    if !main {
        return Ok(());
    }
    if !result.skipped.is_empty() {
        say!(
            "skipped {}:",
            args::plural(result.skipped.len(), "unreadable image")
        );
        for (file, problem) in result.skipped.iter().take(10) {
            say!("  {file}: {problem}");
        }
    }
    let eval = &result.final_eval;
    say!(
        "validation: top-1 {:.2}%  top-5 {:.2}%  loss {:.4} on {} images",
        100.0 * eval.top1,
        100.0 * eval.top5,
        eval.loss,
        eval.count
    );
    if let Some(ema) = &result.final_ema_eval {
        say!(
            "validation of the weights' EMA: top-1 {:.2}%  top-5 {:.2}%  loss {:.4}",
            100.0 * ema.top1,
            100.0 * ema.top5,
            ema.loss
        );
    }
    say!("{}", eval.confusion.render(&classes));
    if result.cache_seconds > 0.0 {
        say!("feature cache built in {:.1}s", result.cache_seconds);
    }
    let out_config = pretrained.with_architecture(entry.name).with_label_names(classes);
    let file = export(&config.out_dir, vars.varmap(), &out_config)?;
    if let Some(ema) = &result.ema {
        save_checkpoint(&config.out_dir.join("model_ema.safetensors"), &ema.state())?;
    }
    say!(
        "{} model saved to {} (+ config.json{}); metrics, curves.png and confusion.png in {}",
        if created.weights.is_some() {
            "fine-tuned"
        } else {
            "trained"
        },
        file.display(),
        if result.ema.is_some() {
            ", model_ema.safetensors"
        } else {
            ""
        },
        config.out_dir.display()
    );
    Ok(())
}
