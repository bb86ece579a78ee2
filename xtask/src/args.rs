//! Arguments shared by the commands: value parsers that check ranges when the command line is
//! parsed (clap reports the flag and the accepted range), the run-folder flags of `train` and
//! `finetune`, image sizes, thread counts and the memory check of a forward pass.

use anyhow::{bail, Context, Result};
use backbone::Backbone;
use clap::builder::RangedU64ValueParser;
use clap::ValueEnum;
use trainer::data::LastBatch;
use trainer::run::RunOptions;
use trainer::schedule::Schedule;
use trainer::train::OptimizerKind;

/// The largest epoch count a run may ask for.
pub const MAX_EPOCHS: u64 = 1_000_000;
/// The largest batch.
pub const MAX_BATCH: u64 = 1 << 20;
/// The largest image side.
pub const MAX_SIDE: usize = 16_384;

/// A `usize` in `min..=max`.
pub fn usize_in(min: u64, max: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(min..=max)
}

fn float(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number"));
    }
    Ok(v)
}

/// A finite number > 0.
pub fn positive(s: &str) -> Result<f64, String> {
    let v = float(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not > 0"))
    }
}

/// A finite number >= 0.
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v = float(s)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not >= 0"))
    }
}

/// A number in `[0, 1)`.
pub fn unit_half_open(s: &str) -> Result<f64, String> {
    let v = float(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not in [0, 1)"))
    }
}

/// A number in `[0, 1]`.
pub fn unit_closed_zero(s: &str) -> Result<f64, String> {
    let v = float(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not in [0, 1]"))
    }
}

/// A number in `(0, 1)`.
pub fn unit_open(s: &str) -> Result<f64, String> {
    let v = float(s)?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not in (0, 1)"))
    }
}

/// A crop fraction in `(0, 4]` (above 1 pads around the resized image).
pub fn crop_pct(s: &str) -> Result<f64, String> {
    let v = float(s)?;
    if v > 0.0 && v <= trainer::hub::MAX_CROP_PCT {
        Ok(v)
    } else {
        Err(format!("{v} is not in (0, {}]", trainer::hub::MAX_CROP_PCT))
    }
}

/// A number in `(0, 1]`.
pub fn unit_closed(s: &str) -> Result<f64, String> {
    let v = float(s)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not in (0, 1]"))
    }
}

/// An image size, `H` or `HxW`, each side in `1..=MAX_SIDE` (a clap value parser).
pub fn size(s: &str) -> Result<(usize, usize), String> {
    let side = |v: &str| -> Result<usize, String> {
        let n = v
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}` is not a size: expected H or HxW, e.g. 224 or 160x224"))?;
        if n == 0 || n > MAX_SIDE {
            return Err(format!("each side must be in 1..={MAX_SIDE}, got {n}"));
        }
        Ok(n)
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((side(h)?, side(w)?)),
        None => side(s).map(|n| (n, n)),
    }
}

/// What to do with an epoch's last, partial training batch.
#[derive(Clone, Copy, ValueEnum)]
pub enum LastBatchArg {
    /// Keep it unless it holds a single image (batch norm cannot train on one).
    Auto,
    /// Always keep it.
    Keep,
    /// Always drop it.
    Drop,
}

/// The run-folder flags of `train` and `finetune`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Continue the run saved in --out after its latest complete epoch (checkpoint and
    /// optimizer state), as if it had never stopped; a run stopped before its first checkpoint
    /// starts again from its beginning. Refused when the settings differ (see
    /// --allow-changes). The data counts as the same when its images have the same count,
    /// labels, class names, file names and file sizes: an image edited in place to the same
    /// size is not noticed.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Start a new run in an --out that holds another run: its files are removed first.
    #[arg(long)]
    pub overwrite: bool,
    /// With --resume: continue with settings (model, data, hyper-parameters) that differ from
    /// the saved run's; each change is printed.
    #[arg(long, requires = "resume")]
    pub allow_changes: bool,
    /// The last, partial training batch of each epoch.
    #[arg(long, value_enum, default_value_t = LastBatchArg::Auto)]
    pub last_batch: LastBatchArg,
}

impl RunArgs {
    /// The trainer's options.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            resume: self.resume,
            overwrite: self.overwrite,
            allow_changes: self.allow_changes,
        }
    }

    /// The trainer's policy.
    pub fn last_batch(&self) -> LastBatch {
        match self.last_batch {
            LastBatchArg::Auto => LastBatch::Auto,
            LastBatchArg::Keep => LastBatch::Keep,
            LastBatchArg::Drop => LastBatch::Drop,
        }
    }
}

/// `requested` threads (from `source`: `--threads` or an environment variable), capped at 4
/// per core of this machine (more only makes the threads wait for each other), with a note
/// when capped.
pub fn cap_threads(requested: usize, source: &str) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = 4 * cores;
    if requested > max {
        eprintln!(
            "note: {source} {requested} capped to {max} threads (4 x the {cores} cores of this machine)"
        );
        max
    } else {
        requested.max(1)
    }
}

/// Bytes of memory this machine has available (`MemAvailable` of /proc/meminfo), if known.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn gigabytes(bytes: f64) -> String {
    if bytes >= 1e12 {
        format!("{:.1} TB", bytes / 1e12)
    } else {
        format!("{:.1} GB", bytes / 1e9)
    }
}

/// Refuses a forward pass of `model` on `[batch, C, h, w]` images whose activations would not
/// fit in this machine's memory, before anything is allocated. The estimate scales the
/// activation memory of a summarised pass at a small size by the number of pixels (and by 3
/// when training: activations kept for the backward pass, their gradients and the step).
pub fn check_memory(model: &dyn Backbone, batch: usize, size: (usize, usize), training: bool) -> Result<()> {
    let spec = model.input_spec();
    let probe = spec
        .fixed_size
        .unwrap_or((spec.min_size.0.max(64), spec.min_size.1.max(64)));
    let pixels = |s: (usize, usize)| s.0 as f64 * s.1 as f64;
    if pixels(size) <= pixels(probe) && batch <= 64 {
        return Ok(());
    }
    let summary = backbone::summarize(
        model,
        &[1, spec.channels, probe.0, probe.1],
        &candle_core::Device::Cpu,
    )
    .with_context(|| format!("estimating the memory of {}", model.name()))?;
    let per_image = 4.0 * summary.total_memory() as f64 * pixels(size) / pixels(probe);
    let input = 4.0 * spec.channels as f64 * pixels(size);
    let need = batch as f64 * (per_image + input) * if training { 3.0 } else { 1.0 };
    if let Some(available) = available_memory() {
        if need > available as f64 {
            bail!(
                "{} on a batch of {batch} images of {}x{} would need about {} of memory for its \
                 activations{}, and this machine has {} available; use a smaller image size or batch",
                model.name(),
                size.0,
                size.1,
                gigabytes(need),
                if training { " and their gradients" } else { "" },
                gigabytes(available as f64)
            );
        }
    }
    Ok(())
}

/// `n` and `word`, in the plural unless `n` is 1: `1 epoch`, `3 epochs`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// An optimizer of `--optimizer`.
#[derive(Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    /// SGD with momentum (--momentum, --nesterov), torch.optim.SGD.
    Sgd,
    /// Adam (weight decay as an L2 penalty), torch.optim.Adam.
    Adam,
    /// AdamW (decoupled weight decay), torch.optim.AdamW.
    Adamw,
}

/// A learning-rate schedule of `--schedule`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    /// Cosine annealing to 0 over the run, per step (after the warmup).
    Cosine,
    /// Multiply the rate by --gamma every --step-epochs epochs.
    Step,
    /// The same rate throughout (after the warmup).
    Constant,
}

/// The optimisation flags of `train` and `finetune` (the defaults differ: see each command's
/// `--help`; an unset flag takes its command's default).
#[derive(clap::Args)]
pub struct OptimArgs {
    /// Learning rate (of the head, when fine-tuning).
    #[arg(long, value_parser = positive)]
    pub lr: Option<f64>,
    /// Optimizer [default: adam for train, adamw for finetune].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9, value_parser = unit_half_open)]
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay (never on biases and normalisation weights; L2 for adam and sgd, decoupled
    /// for adamw) [default: 0 for train, 1e-4 for finetune].
    #[arg(long, value_parser = non_negative)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    pub schedule: ScheduleArg,
    /// Linear warmup over this many epochs.
    #[arg(long, default_value_t = 0, value_parser = usize_in(0, MAX_EPOCHS))]
    pub warmup_epochs: usize,
    /// Step schedule: epochs between decays.
    #[arg(long, default_value_t = 30, value_parser = usize_in(1, MAX_EPOCHS))]
    pub step_epochs: usize,
    /// Step schedule: decay factor.
    #[arg(long, default_value_t = 0.1, value_parser = unit_closed)]
    pub gamma: f64,
    /// Label smoothing of the cross-entropy (and of the mixup / CutMix targets; timm's
    /// --smoothing).
    #[arg(long, alias = "smoothing", default_value_t = 0.0, value_parser = unit_half_open)]
    pub label_smoothing: f64,
    /// Clip the gradients' total L2 norm.
    #[arg(long, value_parser = positive)]
    pub clip_grad: Option<f64>,
}

/// A command's defaults for [`OptimArgs`].
pub struct OptimDefaults {
    /// Learning rate.
    pub lr: f64,
    /// Optimizer.
    pub optimizer: OptimizerArg,
    /// Weight decay.
    pub weight_decay: f64,
}

impl OptimArgs {
    /// The learning rate.
    pub fn lr(&self, defaults: &OptimDefaults) -> f64 {
        self.lr.unwrap_or(defaults.lr)
    }

    /// The weight decay.
    pub fn weight_decay(&self, defaults: &OptimDefaults) -> f64 {
        self.weight_decay.unwrap_or(defaults.weight_decay)
    }

    /// The optimizer.
    pub fn optimizer(&self, defaults: &OptimDefaults) -> OptimizerKind {
        match self.optimizer.unwrap_or(defaults.optimizer) {
            OptimizerArg::Sgd => OptimizerKind::Sgd {
                momentum: self.momentum,
                nesterov: self.nesterov,
            },
            OptimizerArg::Adam => OptimizerKind::Adam,
            OptimizerArg::Adamw => OptimizerKind::AdamW,
        }
    }

    /// The schedule, its warmup counted in steps of `steps_per_epoch`.
    pub fn schedule(&self, steps_per_epoch: usize) -> Result<Schedule> {
        let schedule = match self.schedule {
            ScheduleArg::Cosine => Schedule::Cosine,
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Step => Schedule::step(self.step_epochs, self.gamma)?,
        };
        Ok(schedule.with_warmup(self.warmup_epochs.saturating_mul(steps_per_epoch)))
    }
}

/// Training augmentation, the same vocabulary for `train` and `finetune`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Augment {
    /// What the data affords, said in the log: MNIST digits and grey images a small random
    /// rotation, shift and scale, never a flip or a crop; small colour images (at most 64
    /// pixels a side, CIFAR) a 1/8-padded random crop and a horizontal flip; larger colour
    /// images random resized crop and horizontal flip. None while only a frozen backbone's
    /// head trains (so the features can be cached).
    Auto,
    /// The evaluation transform for training too.
    None,
    /// Random rotation (+-10 degrees), shift (+-2 pixels at 32x32) and scale (0.9-1.1).
    Affine,
    /// Horizontal flips only.
    Flip,
    /// Random resized crop and horizontal flip (timm's and torchvision's training transform).
    CropFlip,
}

/// A precision of `--amp`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum AmpArg {
    /// bfloat16.
    Bf16,
    /// float16, with dynamic loss scaling.
    F16,
}

/// The recipe flags of `train` and `finetune` (timm's names).
#[derive(clap::Args)]
pub struct RecipeArgs {
    /// Keep an exponential moving average of the weights (timm's ModelEmaV3 as its train.py
    /// uses it), evaluated after every epoch beside the raw weights and saved as
    /// model_ema.safetensors.
    #[arg(long)]
    pub model_ema: bool,
    /// Decay of --model-ema.
    #[arg(long, default_value_t = trainer::ema::ModelEma::DEFAULT_DECAY, value_parser = unit_half_open)]
    pub model_ema_decay: f64,
    /// Batches whose gradients are summed before each optimizer update: the update of a batch
    /// N times larger (the schedule counts updates).
    #[arg(long, default_value_t = 1, value_parser = usize_in(1, 1 << 16))]
    pub accum_steps: usize,
    /// Mixed precision on GPUs: the forward and backward passes in bf16 or f16 (dynamic loss
    /// scaling), the weights and the optimizer in float32. Refused on the CPU (candle has no
    /// bf16 matrix product there and its f16 step is 7-8x slower than float32, see
    /// BENCHMARKS.md).
    #[arg(long, value_enum)]
    pub amp: Option<AmpArg>,
}

impl RecipeArgs {
    /// The EMA decay, when asked.
    pub fn model_ema(&self) -> Option<f64> {
        self.model_ema.then_some(self.model_ema_decay)
    }

    /// Refuses `--amp` where it is not available (the CPU).
    pub fn check_amp(&self, device: &candle_core::Device) -> Result<()> {
        let Some(amp) = self.amp else {
            return Ok(());
        };
        if device.is_cpu() {
            bail!(
                "--amp {} on the CPU is refused: candle's CPU backend has no bfloat16 matrix \
                 product, and its float16 training step was measured 7-8 times slower than float32 \
                 (LeNet-5 and ResNet-18, `cargo xtask bench --dtype`, see BENCHMARKS.md); run \
                 without --amp",
                amp.name()
            );
        }
        Ok(())
    }

    /// With `--amp`: the low-precision twin of the model `name` (`classes` classes, `channels`
    /// input channels) linked to the master variables `master` (see `trainer::amp`).
    pub fn mixed_precision(
        &self,
        name: &str,
        classes: usize,
        channels: usize,
        master: &candle_nn::VarMap,
        device: &candle_core::Device,
    ) -> Result<Option<trainer::amp::MixedPrecision>> {
        let Some(amp) = self.amp else {
            return Ok(None);
        };
        let dtype = match amp {
            AmpArg::Bf16 => candle_core::DType::BF16,
            AmpArg::F16 => candle_core::DType::F16,
        };
        let twin = convnets::create_model(
            name,
            &convnets::CreateOptions {
                num_classes: Some(classes),
                in_channels: Some(channels),
                dtype,
                device: device.clone(),
                ..Default::default()
            },
        )
        .with_context(|| format!("building the {} twin of {name}", amp.name()))?;
        let vars = twin.vars.context("the twin's variables")?;
        Ok(Some(trainer::amp::MixedPrecision::new(
            dtype,
            twin.net,
            vars.varmap(),
            master,
        )?))
    }
}

impl AmpArg {
    /// The flag's value.
    pub fn name(self) -> &'static str {
        match self {
            AmpArg::Bf16 => "bf16",
            AmpArg::F16 => "f16",
        }
    }
}
