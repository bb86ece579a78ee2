//! `cargo xtask finetune` and `cargo xtask predict`: pretrained weights (a file or a Hugging
//! Face hub id) into a model with a new head, trained on an image folder; top-5 predictions of
//! a model on image files.

use crate::args::{self, Augment, RecipeArgs, RunArgs};
use crate::images::{run_images, DataArgs, ImageJob};
use crate::models::{self, ModelEntry};
use crate::parse_device;
use anyhow::{bail, Context, Result};
use backbone::Backbone;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use trainer::data::{Image, Interpolation, Pipeline};
use trainer::hub::{check_normalisation, Normalisation, PretrainedConfig};
use trainer::train::TrainConfig;

#[derive(clap::Args)]
pub struct FinetuneArgs {
    /// Model name (`cargo xtask models` lists them), e.g. resnet18, or a published checkpoint,
    /// e.g. resnet50.a1_in1k.
    model: String,
    /// Pretrained weights: a .safetensors file, a directory holding model.safetensors (and
    /// config.json), or a Hugging Face hub id such as timm/resnet18.a1_in1k[@revision]
    /// (default: the checkpoint a tagged model name names, e.g. resnet50.a1_in1k).
    #[arg(long)]
    weights: Option<String>,
    /// Training images: a folder per class, a CIFAR-10 directory or MNIST IDX files.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    data_args: DataArgs,
    /// Train the whole model from the first epoch (default: the backbone frozen, batch-norm
    /// statistics kept and no dropout, and only a new head trains).
    #[arg(long, conflicts_with = "unfreeze_after")]
    train_backbone: bool,
    /// Unfreeze the backbone after this many epochs.
    #[arg(long, value_parser = args::usize_in(0, args::MAX_EPOCHS))]
    unfreeze_after: Option<usize>,
    /// The backbone's learning rate relative to --lr [default: 0.1 once unfrozen by
    /// --unfreeze-after; 1 with --train-backbone: every layer at one rate, as timm's and
    /// torchvision's fine-tuning recipes, which a backbone far from its new data needs].
    #[arg(long, value_parser = args::positive)]
    backbone_lr_scale: Option<f64>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10, value_parser = args::usize_in(1, args::MAX_EPOCHS))]
    epochs: usize,
    /// Images per optimizer step.
    #[arg(long, default_value_t = 32, value_parser = args::usize_in(1, args::MAX_BATCH))]
    batch_size: usize,
    #[command(flatten)]
    optim: args::OptimArgs,
    /// Training augmentation.
    #[arg(long, value_enum, default_value_t = Augment::Auto)]
    augment: Augment,
    #[command(flatten)]
    preprocess: PreprocessArgs,
    /// Do not cache the frozen backbone's features (recompute them every epoch).
    #[arg(long)]
    no_feature_cache: bool,
    /// Threads decoding images ahead of the training step (0: on the training thread).
    #[arg(long, default_value_t = 2, value_parser = args::usize_in(0, 256))]
    workers: usize,
    /// Never touch the network: hub weights must be in the local Hugging Face cache (also
    /// HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// The Hugging Face hub cache (default: HF_HUB_CACHE, else $HF_HOME/hub, else
    /// ~/.cache/huggingface/hub).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Seed of the new head, the shuffling, the split and the augmentation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory (default: runs/finetune-<arch>): checkpoints, metrics, plots, and
    /// model.safetensors + config.json at the end.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    recipe: RecipeArgs,
    #[command(flatten)]
    aug: crate::recipe::AugmentArgs,
    /// No progress bar, no per-epoch lines.
    #[arg(long)]
    quiet: bool,
    /// Device: cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
pub struct PredictArgs {
    #[command(flatten)]
    source: WeightsSource,
    /// Image files (JPEG or PNG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5, value_parser = args::usize_in(1, 1_000_000))]
    top_k: usize,
}

/// `--weights` as the library takes it: a training run's folder (no model.safetensors yet)
/// is its latest complete epoch's checkpoint (the config.json `train` writes lies beside it);
/// anything else (a file, a directory holding model.safetensors, a hub id) as written.
pub(crate) fn weights_reference(weights: &str) -> String {
    let dir = Path::new(weights);
    match trainer::run::latest_epoch(dir) {
        Some(epoch) if dir.is_dir() && !dir.join(trainer::hub::WEIGHTS_FILE).exists() => {
            trainer::run::checkpoint_path(dir, epoch)
                .to_string_lossy()
                .into_owned()
        }
        _ => weights.to_string(),
    }
}

/// The evaluation settings of `config` (timm's `resolve_data_config`: the test size and crop
/// with `use_test_size`, else the training ones) as a config without test fields, ready for
/// the flags' overrides.
pub(crate) fn at_size(config: &PretrainedConfig, use_test_size: bool) -> PretrainedConfig {
    let data = config.data_config(use_test_size);
    PretrainedConfig {
        input_size: data.input_size,
        crop_pct: data.crop_pct,
        test_input_size: None,
        test_crop_pct: None,
        ..config.clone()
    }
}

/// Weights come from `--weights` or from the checkpoint a tagged model name names.
fn require_weights(entry: &ModelEntry, model: &str, weights: Option<&str>) -> Result<()> {
    if weights.is_none() && convnets::find_checkpoint(model)?.1.is_none() {
        bail!(
            "{}: give --weights (a file, a directory or a hub id), or a published checkpoint's name{}",
            entry.name,
            match entry.pretrained.first() {
                Some(p) => format!(" such as {}.{}", entry.name, p.tag),
                None => String::new(),
            }
        );
    }
    Ok(())
}

pub(crate) fn check_architecture(entry: &ModelEntry, config: &PretrainedConfig, source: &str) {
    if let Some(arch) = &config.architecture {
        let ours = entry.name.to_ascii_lowercase();
        let theirs = arch.to_ascii_lowercase();
        if !(theirs == ours || entry.aliases.iter().any(|a| a.eq_ignore_ascii_case(&theirs))) {
            eprintln!(
                "note: {source}'s config.json names the architecture `{arch}`, building `{}`",
                entry.name
            );
        }
    }
}

/// Overrides of the preprocessing the weights' config.json describes.
#[derive(clap::Args)]
pub struct PreprocessArgs {
    /// Input height and width, e.g. 224 or 160x224 (default: config.json's input_size).
    #[arg(long, value_parser = args::size)]
    pub(crate) img_size: Option<(usize, usize)>,
    /// Per-channel normalisation mean, comma-separated (default: config.json's mean).
    #[arg(long, value_delimiter = ',')]
    pub(crate) mean: Option<Vec<f32>>,
    /// Per-channel normalisation standard deviation (default: config.json's std).
    #[arg(long, value_delimiter = ',')]
    pub(crate) std: Option<Vec<f32>>,
    /// Center-crop fraction: images are resized to size / crop_pct, then cropped (default:
    /// config.json's crop_pct).
    #[arg(long, value_parser = args::crop_pct)]
    pub(crate) crop_pct: Option<f64>,
    /// Resize interpolation: bilinear, bicubic or nearest (default: config.json's).
    #[arg(long)]
    pub(crate) interpolation: Option<String>,
}

impl PreprocessArgs {
    /// `config` with the overrides applied and checked; the input size to use.
    pub(crate) fn apply(&self, config: &mut PretrainedConfig) -> Result<(usize, usize)> {
        let size = match self.img_size {
            Some(size) => size,
            None => (config.input_size.1, config.input_size.2),
        };
        if size.0 == 0 || size.1 == 0 {
            bail!("the image size must be positive, got {}x{}", size.0, size.1);
        }
        config.input_size = (config.input_size.0, size.0, size.1);
        // The flags' own values are checked under their names (config.json's under its fields).
        let channels = config.input_size.0;
        for (flag, kind, values) in [
            ("--mean", Normalisation::Mean, &self.mean),
            ("--std", Normalisation::Std, &self.std),
        ] {
            if let Some(values) = values {
                check_normalisation(flag, kind, values, channels).map_err(anyhow::Error::msg)?;
            }
        }
        if let Some(mean) = &self.mean {
            config.mean = mean.clone();
        }
        if let Some(std) = &self.std {
            config.std = std.clone();
        }
        if let Some(crop_pct) = self.crop_pct {
            config.crop_pct = crop_pct;
        }
        if let Some(name) = &self.interpolation {
            config.interpolation = Interpolation::from_name(name).with_context(|| {
                format!("unknown interpolation `{name}`; use bilinear, bicubic or nearest")
            })?;
        }
        config.validate().context("the preprocessing settings")?;
        Ok(size)
    }
}

pub fn run_finetune(args: FinetuneArgs) -> Result<()> {
    let entry = models::find(&args.model)?;
    require_weights(entry, &args.model, args.weights.as_deref())?;
    run_images(ImageJob {
        model: &args.model,
        data: &args.data,
        data_args: &args.data_args,
        weights: args.weights.clone(),
        pretrained: true,
        freeze_backbone: !args.train_backbone,
        unfreeze_after: args.unfreeze_after,
        backbone_lr_scale: args
            .backbone_lr_scale
            .unwrap_or(if args.train_backbone { 1.0 } else { 0.1 }),
        epochs: args.epochs,
        batch_size: args.batch_size,
        optim: &args.optim,
        defaults: args::OptimDefaults {
            lr: 1e-3,
            optimizer: args::OptimizerArg::Adamw,
            weight_decay: 1e-4,
        },
        augment: args.augment,
        preprocess: &args.preprocess,
        feature_cache: !args.no_feature_cache,
        workers: args.workers,
        offline: args.offline,
        cache_dir: args.cache_dir.clone(),
        seed: args.seed,
        out: args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(format!("finetune-{}", entry.name))),
        keep_checkpoints: TrainConfig::finetune().keep_checkpoints,
        run: &args.run,
        recipe: &args.recipe,
        aug: &args.aug,
        quiet: args.quiet,
        device: &args.device,
        dist: None,
        sync_bn: false,
        base: TrainConfig::finetune(),
    })
}

/// The label of class `i`: the config's names, ImageNet-1k's for a 1000-class head, else
/// `class i`.
pub(crate) fn label(config: &PretrainedConfig, classes: usize, i: usize) -> String {
    if let Some(name) = config.label_names.as_ref().and_then(|n| n.get(i)) {
        return name.clone();
    }
    if classes == 1000 {
        if let Some(name) = trainer::imagenet::imagenet_classes().get(i) {
            return (*name).to_string();
        }
    }
    format!("class {i}")
}

/// Where `predict` and `visualize` take a model from: the variant (a tagged name such as
/// `resnet50.a1_in1k` names its checkpoint), `--weights`, the hub settings, `--num-classes`,
/// the preprocessing flags and the device.
#[derive(clap::Args)]
pub(crate) struct WeightsSource {
    /// Model name (`cargo xtask models` lists them), e.g. resnet18, or a published checkpoint,
    /// e.g. resnet50.a1_in1k (its hub weights unless --weights is given).
    model: String,
    /// Weights: a .safetensors file, a directory with model.safetensors + config.json (a
    /// training run's folder), or a Hugging Face hub id (default: the checkpoint a tagged
    /// model name names).
    #[arg(long)]
    weights: Option<String>,
    /// Number of classes of the head (default: config.json's, else the variant's); another
    /// count than the file's gives a fresh classifier.
    #[arg(long, value_parser = args::usize_in(1, 1_000_000))]
    num_classes: Option<usize>,
    /// Prepare images at the weights' training size and crop instead of their test size and
    /// test crop (timm's --use-train-size; the default, as timm's inference, uses the test
    /// size where the weights define one).
    #[arg(long)]
    use_train_size: bool,
    #[command(flatten)]
    preprocess: PreprocessArgs,
    /// Never touch the network.
    #[arg(long)]
    offline: bool,
    /// The Hugging Face hub cache.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Device: cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// A model ready for inference, with how its images are prepared.
pub(crate) struct InferenceModel {
    pub model: convnets::Model,
    /// The weights' config.json (or the checkpoint's, or the catalogue's preprocessing) at the
    /// evaluation size, after the flags.
    pub config: PretrainedConfig,
    /// The head's class count.
    pub classes: usize,
    /// The evaluation transform (timm's: resize, centre crop, normalise).
    pub transform: Pipeline,
    pub device: Device,
}

impl InferenceModel {
    /// The input convolution's weight as the model uses it (adapted to its channels), read
    /// again from the weights file; `None` without one.
    pub fn stem(&self) -> Result<Option<Tensor>> {
        let Some(weights) = &self.model.weights else {
            return Ok(None);
        };
        let variant = self.model.variant;
        let (tensors, _) = variant.read_weights(&weights.file, Some(self.model.input_spec().channels))?;
        Ok(tensors.get(variant.stem).cloned())
    }
}

/// Builds the model through `convnets::create_model` (the one way in: any layout the variant
/// accepts; with its auxiliary heads when `aux_logits` and the file has them) and the
/// evaluation transform; refuses a batch of `batch` images the machine's memory cannot hold.
pub(crate) fn load_for_inference(
    source: &WeightsSource,
    aux_logits: bool,
    batch: usize,
) -> Result<InferenceModel> {
    let entry = models::find(&source.model)?;
    require_weights(entry, &source.model, source.weights.as_deref())?;
    let device = parse_device(&source.device)?;
    let model = convnets::create_model(
        &source.model,
        &convnets::CreateOptions {
            num_classes: source.num_classes,
            aux_logits,
            weights: source.weights.as_deref().map(weights_reference),
            pretrained: true,
            offline: source.offline,
            cache_dir: source.cache_dir.clone(),
            device: device.clone(),
            ..Default::default()
        },
    )
    .with_context(|| {
        format!(
            "loading {} as {}",
            source.weights.as_deref().unwrap_or(&source.model),
            entry.name
        )
    })?;
    let loaded = model.weights.as_ref().context("pretrained weights")?;
    check_architecture(entry, &model.pretrained_cfg, &loaded.source);
    eprintln!("weights: {} ({})", loaded.file.display(), loaded.info);
    let classes = model.num_classes();
    let mut config = at_size(&model.pretrained_cfg, !source.use_train_size);
    let size = source.preprocess.apply(&mut config)?;
    let spec = model.net.input_spec();
    if !spec.accepts(&[1, spec.channels, size.0, size.1]) {
        bail!(
            "{} does not take {}x{} images: it expects {} (--img-size, or config.json's input_size)",
            entry.name,
            size.0,
            size.1,
            spec.describe()
        );
    }
    args::check_memory(model.net.as_ref(), batch, size, false)?;
    let transform = Pipeline::eval(
        size,
        config.crop_pct,
        config.interpolation,
        &config.mean,
        &config.std,
    )?;
    Ok(InferenceModel {
        model,
        config,
        classes,
        transform,
        device,
    })
}

pub fn run_predict(args: PredictArgs) -> Result<()> {
    let InferenceModel {
        model,
        config,
        classes,
        transform,
        device,
        ..
    } = load_for_inference(&args.source, true, 1)?;
    let k = args.top_k.clamp(1, classes);
    let mut failures = 0;
    // The weights do not change between the images: the convolutions prepare their
    // transformed weights for the first and reuse them (each image printed as it is done).
    backbone::with_frozen_weights(|| {
        for path in &args.images {
            match predict_one(model.net.as_ref(), &transform, path, &device) {
                Ok(probs) => {
                    println!("{}:", path.display());
                    for (i, p) in trainer::metrics::top_k(&probs, k) {
                        println!("  {:>6.2}%  {}", 100.0 * p, label(&config, classes, i));
                    }
                }
                Err(e) => {
                    failures += 1;
                    // The error names the file already when it is about reading it.
                    let message = crate::report(&e);
                    let name = path.display().to_string();
                    if message.contains(&name) {
                        eprintln!("{message}");
                    } else {
                        eprintln!("{name}: {message}");
                    }
                }
            }
        }
    });
    if failures > 0 {
        bail!(
            "{failures} of {} images could not be classified",
            args.images.len()
        );
    }
    Ok(())
}

fn predict_one(model: &dyn Backbone, transform: &Pipeline, path: &Path, device: &Device) -> Result<Vec<f32>> {
    let image = Image::open(path)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let image = transform.apply(image, &mut rng)?;
    let xs = Tensor::from_vec(image.data, (1, image.channels, image.height, image.width), device)?;
    let logits = backbone::inference_mode(|| model.forward_t(&xs, false))?;
    let row = logits.squeeze(0)?.to_vec1::<f32>()?;
    if let Some(i) = row.iter().position(|v| !v.is_finite()) {
        bail!(
            "{} gave a non-finite logit ({} for class {i}): the weights hold NaN or infinite values, or overflow on this input",
            model.name(),
            row[i]
        );
    }
    Ok(trainer::metrics::softmax(&row))
}
