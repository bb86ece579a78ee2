//! `cargo xtask bench`: throughput and memory of the models, optionally side by side with
//! PyTorch and ONNX Runtime.
//!
//! One row per (model, mode, batch size). Columns follow timm's `benchmark.py`: samples per
//! second, step time (median, min, max), the forward / backward / optimizer split of a
//! training step, parameters (millions), GMACs per image and peak memory. The device is
//! synchronised before every clock read.
//!
//! - [`measure`]: one row in this process (model built, steps timed, peak memory);
//! - [`rows`]: the row record, its CSV / JSON-lines files and the printed table;
//! - [`peers`]: PyTorch and ONNX Runtime for `--compare torch,ort` (`scripts/bench_torch.py`);
//! - [`peak`]: the machine's FMA peak, measured at the start, and each row's share of it;
//! - here: the flags, the plan of rows, one child process per row.

mod measure;
mod peak;
mod peers;
mod rows;

use crate::models::{self, ModelEntry};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::ValueEnum;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use measure::measure;
use peers::{check_peer, measure_peer, torch_script};
use rows::{print_table, read_rows, write_rows};
pub use rows::{PeerRow, Row};

/// What to measure.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Eval-mode forward passes in `backbone::with_frozen_weights` (inference mode: batch norm
    /// folded into the convolutions; Winograd weights transformed once, in the first warm-up
    /// step; ResNet on the blocked layout unless CONVNETS_BLOCKED=off).
    Infer,
    /// Training steps: forward, cross-entropy, backward, Adam step.
    Train,
    /// Both.
    Both,
}

/// Another framework to measure in the same run.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    /// PyTorch (+ torchvision) through `scripts/bench_torch.py`.
    Torch,
    /// ONNX Runtime on the torchvision model exported to ONNX (inference rows only), through
    /// `scripts/bench_torch.py --runtime ort`.
    Ort,
}

impl Compare {
    /// The name `scripts/bench_torch.py --runtime` takes.
    fn name(self) -> &'static str {
        match self {
            Compare::Torch => "torch",
            Compare::Ort => "ort",
        }
    }

    /// The name of its columns in the table.
    fn label(self) -> &'static str {
        match self {
            Compare::Torch => "PyTorch",
            Compare::Ort => "ONNX Runtime",
        }
    }
}

/// A fixed set of rows.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// The rows BENCHMARKS.md reports: LeNet-5 at batch 256 (32x32), ResNet-18 training at
    /// batch 64 on 32x32 and inference at batch 1 and 16 on 224x224, ResNet-50 inference at
    /// batch 1 and 16 and training at batch 8 on 224x224, VGG-11 training at batch 8 on 224x224;
    /// then, without a goal yet, inference at batch 1 of EfficientNet-B0, DenseNet-121 and
    /// VGG-16 and of the depthwise-heavy MobileNetV3-Large, EfficientNetV2-S (at its 384x384)
    /// and ConvNeXt-Tiny, on 224x224 (torchvision's variants, so that `--compare` exports the
    /// same model).
    Reference,
}

impl Suite {
    /// (model, mode, batch, image size) of each row.
    fn rows(self) -> Vec<(&'static str, Mode, usize, usize)> {
        match self {
            Suite::Reference => vec![
                ("lenet5", Mode::Train, 256, 32),
                ("lenet5", Mode::Infer, 256, 32),
                ("resnet18", Mode::Train, 64, 32),
                ("resnet18", Mode::Infer, 1, 224),
                ("resnet18", Mode::Infer, 16, 224),
                ("resnet50", Mode::Infer, 1, 224),
                ("resnet50", Mode::Infer, 16, 224),
                ("resnet50", Mode::Train, 8, 224),
                ("vgg11", Mode::Train, 8, 224),
                ("efficientnet_b0", Mode::Infer, 1, 224),
                ("densenet121", Mode::Infer, 1, 224),
                ("vgg16", Mode::Infer, 1, 224),
                ("mobilenet_v3_large", Mode::Infer, 1, 224),
                ("efficientnet_v2_s", Mode::Infer, 1, 384),
                ("convnext_tiny", Mode::Infer, 1, 224),
            ],
        }
    }
}

/// A dtype of `--dtype`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchDtype {
    /// float32.
    Float32,
    /// bfloat16.
    Bfloat16,
    /// float16.
    Float16,
}

impl BenchDtype {
    /// candle's dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            BenchDtype::Float32 => candle_core::DType::F32,
            BenchDtype::Bfloat16 => candle_core::DType::BF16,
            BenchDtype::Float16 => candle_core::DType::F16,
        }
    }

    /// The name in rows (PyTorch's).
    pub fn name(self) -> &'static str {
        match self {
            BenchDtype::Float32 => "float32",
            BenchDtype::Bfloat16 => "bfloat16",
            BenchDtype::Float16 => "float16",
        }
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Variants (`resnet50`), families (`resnet`) or `all`.
    #[arg(required_unless_present = "suite")]
    pub(super) models: Vec<String>,
    /// Run a fixed set of rows instead (each with its own mode, batch and image size).
    #[arg(long, value_enum, conflicts_with_all = ["mode", "batch_size", "img_size", "grid"])]
    pub(super) suite: Option<Suite>,
    /// infer, train or both [default: infer; both with --grid].
    #[arg(long, value_enum)]
    pub(super) mode: Option<Mode>,
    /// Batch sizes, comma separated (e.g. 1,16,64) [default: 1 for a family or `all`, 16 for
    /// named variants].
    #[arg(long, value_delimiter = ',', value_parser = crate::args::usize_in(1, crate::args::MAX_BATCH))]
    pub(super) batch_size: Vec<usize>,
    /// The full grid: inference and training at batch 1 and 16 (unless --mode / --batch-size
    /// say otherwise).
    #[arg(long)]
    pub(super) grid: bool,
    /// Internal: measure the one planned row in this process and print it as JSON (the parent
    /// runs each row in its own process, so each row reports its own peak memory).
    #[arg(long, hide = true)]
    pub(super) row_json: bool,
    /// Image height and width (default: each model's usual size: 224 for ImageNet models,
    /// 32 for LeNet-5, 299 for Inception-v3).
    #[arg(long, value_parser = crate::args::usize_in(1, crate::args::MAX_SIDE as u64))]
    pub(super) img_size: Option<usize>,
    /// Untimed steps before measuring.
    #[arg(long, default_value_t = 2, value_parser = crate::args::usize_in(0, 100_000))]
    pub(super) warmup: usize,
    /// Timed steps (at least).
    #[arg(long, default_value_t = 10, value_parser = crate::args::usize_in(1, 100_000))]
    pub(super) iters: usize,
    /// Keep timing until this many seconds have passed too.
    #[arg(long, default_value_t = 0.0, value_parser = crate::args::non_negative)]
    pub(super) min_time: f64,
    /// CPU threads (candle's and, with --compare, the peers'). Default: physical cores;
    /// at most 4 per core.
    #[arg(long, value_parser = crate::args::usize_in(1, 1 << 20))]
    pub(super) threads: Option<usize>,
    /// Device: cpu, cuda, cuda:N or metal (GPUs need xtask built with the matching feature).
    #[arg(long, default_value = "cpu")]
    pub(super) device: String,
    /// The weights' and activations' dtype: float32, or bfloat16 / float16 (the model built
    /// in that dtype, the loss in float32; what mixed precision's forward and backward cost).
    #[arg(long, value_enum, default_value_t = BenchDtype::Float32)]
    pub(super) dtype: BenchDtype,
    /// Write the rows to this file: JSON lines (`.jsonl`/`.json`) or CSV (`.csv`).
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// An earlier `--out` file: print the ratio of each row's samples/s to the matching row.
    #[arg(long)]
    pub(super) baseline: Option<PathBuf>,
    /// Measure the same rows with PyTorch and / or ONNX Runtime too (comma separated), each row
    /// right after ours.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(super) compare: Vec<Compare>,
    /// The Python with torch and torchvision (and onnxruntime for ort) for --compare.
    #[arg(long, default_value = "python3")]
    pub(super) python: String,
    /// Seconds a peer may take for one row before it is stopped (its column stays empty, with
    /// a warning).
    #[arg(long, default_value_t = 1800.0, value_parser = crate::args::positive)]
    pub(super) peer_timeout: f64,
    /// Which ONNX file `--compare ort` times: torchvision's export of the model, or ours
    /// (`cargo xtask export`'s, of the same variant with seeded weights at the row's size).
    #[arg(long, value_enum, default_value = "torchvision")]
    pub(super) ort_model: OrtModel,
}

/// The file ONNX Runtime runs for `--compare ort`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrtModel {
    /// torchvision's model exported by `torch.onnx.export` (in `scripts/bench_torch.py`).
    Torchvision,
    /// Our model exported by `convnets::onnx` (seeded weights: timings do not depend on them).
    Ours,
}

impl BenchArgs {
    /// The thread count to pin before candle starts its pools.
    pub fn threads(&self) -> Option<usize> {
        self.threads
    }

    /// The `--device` argument.
    pub fn device(&self) -> &str {
        &self.device
    }
}

/// The rows of a run: (variant, mode, batch, image size).
type Plan = Vec<(&'static ModelEntry, Mode, usize, Option<usize>)>;

fn plan(args: &BenchArgs) -> Result<Plan> {
    if let Some(suite) = args.suite {
        return suite
            .rows()
            .into_iter()
            .map(|(name, mode, batch, img)| Ok((models::find(name)?, mode, batch, Some(img))))
            .collect();
    }
    let grouped = args.models.iter().any(|m| {
        m.eq_ignore_ascii_case("all") || convnets::families().iter().any(|f| f.eq_ignore_ascii_case(m))
    });
    let modes: &[Mode] = match args
        .mode
        .unwrap_or(if args.grid { Mode::Both } else { Mode::Infer })
    {
        Mode::Both => &[Mode::Infer, Mode::Train],
        Mode::Infer => &[Mode::Infer],
        Mode::Train => &[Mode::Train],
    };
    let batches = match (&args.batch_size[..], args.grid, grouped) {
        ([], true, _) => vec![1, 16],
        ([], false, true) => vec![1],
        ([], false, false) => vec![16],
        (given, _, _) => given.to_vec(),
    };
    let mut plan = Vec::new();
    for entry in models::select(&args.models)? {
        for &mode in modes {
            for &batch in &batches {
                plan.push((entry, mode, batch, args.img_size));
            }
        }
    }
    Ok(plan)
}

/// Measures one row in a child process (`--row-json`), so the row's peak memory is its own.
fn measure_in_child(
    entry: &ModelEntry,
    mode: Mode,
    batch: usize,
    img: Option<usize>,
    args: &BenchArgs,
) -> Result<Row> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let mode_name = if mode == Mode::Infer { "infer" } else { "train" };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", entry.name, "--row-json", "--mode", mode_name])
        .args(["--batch-size", &batch.to_string()])
        .args([
            "--warmup",
            &args.warmup.to_string(),
            "--iters",
            &args.iters.to_string(),
        ])
        .args(["--min-time", &args.min_time.to_string(), "--device", &args.device])
        .args(["--dtype", args.dtype.name()]);
    if let Some(img) = img {
        cmd.args(["--img-size", &img.to_string()]);
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the row of {}", entry.name))?;
    if !out.status.success() {
        bail!(
            "measuring {} {mode_name} batch {batch} failed ({})",
            entry.name,
            out.status
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading the row of {}: `{line}`", entry.name))
}

/// Runs the benchmark.
pub fn run(args: BenchArgs, device: Device) -> Result<()> {
    if args.row_json {
        // The parent names one variant: a name that is also a family's (alexnet, nin) means
        // the variant here.
        let ([name], [batch], Some(mode)) = (&args.models[..], &args.batch_size[..], args.mode) else {
            bail!("--row-json measures exactly one row: one variant, one --batch-size, one --mode");
        };
        let mode = match mode {
            Mode::Both => bail!("--row-json measures one mode: infer or train"),
            m => m,
        };
        let row = measure(models::find(name)?, mode, *batch, args.img_size, &args, &device)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let script = if args.compare.is_empty() {
        None
    } else {
        for &peer in &args.compare {
            check_peer(&args.python, peer, Duration::from_secs_f64(args.peer_timeout))?;
        }
        Some(torch_script()?)
    };

    let baseline: HashMap<_, _> = match &args.baseline {
        Some(path) => read_rows(path)?
            .into_iter()
            .map(|r| {
                (
                    (r.model, r.mode, r.device, r.batch_size, r.img_size),
                    r.samples_per_sec,
                )
            })
            .collect(),
        None => HashMap::new(),
    };
    let plan = plan(&args)?;
    // A place that cannot take the rows fails now, not after the measurements.
    if let Some(path) = &args.out {
        backbone::io::check_writable(path).with_context(|| format!("--out {}", path.display()))?;
    }
    // The run's thread count as pinned (capped) in main, not the raw --threads.
    let environment = peak::Environment::measure(candle_core::utils::get_num_threads());
    println!("{}", environment.describe());
    eprintln!(
        "{}, each in its own process ({} warmup + {} timed steps)",
        crate::args::plural(plan.len(), "row"),
        args.warmup,
        args.iters
    );
    let mut rows = Vec::new();
    // The peers' figures that failed, hung or were not printed: each a warning when it happens
    // and again under the table.
    let mut missing = Vec::new();
    let total = plan.len();
    for (i, (entry, mode, batch, img)) in plan.into_iter().enumerate() {
        let mut row = measure_in_child(entry, mode, batch, img, &args)?;
        environment.annotate(&mut row);
        if let Some(script) = &script {
            for &peer in &args.compare {
                let figures = match measure_peer(&row, peer, &args, script) {
                    Ok(figures) => figures,
                    Err(e) => {
                        let what = format!(
                            "{} {} {} batch {}",
                            peer.label(),
                            row.model,
                            row.mode,
                            row.batch_size
                        );
                        eprintln!("warning: no {what} figure: {}", crate::report(&e));
                        missing.push(format!("{what}: {}", crate::report(&e)));
                        None
                    }
                };
                match peer {
                    Compare::Torch => row.torch = figures,
                    Compare::Ort => row.ort = figures,
                }
            }
        }
        eprintln!(
            "[{}/{total}] {} {} batch {}: {:.1} samples/s, peak {:.0} MB{}",
            i + 1,
            row.model,
            row.mode,
            row.batch_size,
            row.samples_per_sec,
            row.peak_mem_mb.unwrap_or(f64::NAN),
            [("torch", &row.torch), ("ORT", &row.ort)]
                .iter()
                .filter_map(|(name, t)| t.as_ref().map(|t| format!(" ({name} {:.1})", t.samples_per_sec)))
                .collect::<String>()
        );
        rows.push(row);
        // Every row reaches --out as soon as it is measured.
        if let Some(path) = &args.out {
            write_rows(path, &rows)?;
        }
    }
    print_table(&rows, &baseline, &args.compare);
    if !missing.is_empty() {
        eprintln!(
            "warning: {} missing from the table (a peer failed, hung or printed no row):",
            crate::args::plural(missing.len(), "peer figure")
        );
        for m in &missing {
            eprintln!("  {m}");
        }
    }
    if let Some(path) = &args.out {
        println!("rows written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Mode, Suite};

    /// Every row of the reference suite names a catalogue variant at a size it takes, once.
    #[test]
    fn reference_rows_are_catalogue_variants() {
        let rows = Suite::Reference.rows();
        for (i, (model, mode, batch, size)) in rows.iter().enumerate() {
            let variant = convnets::find_model(model).unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(variant.name, *model, "rows name variants, not aliases");
            assert!(*batch >= 1 && *size >= 32, "{model}: batch {batch}, size {size}");
            let repeated = rows[..i]
                .iter()
                .any(|(m, o, b, s)| m == model && o == mode && b == batch && s == size);
            assert!(!repeated, "{model} batch {batch} at {size} twice");
        }
        let infer_b1 = |m: &str| rows.iter().any(|r| r.0 == m && r.1 == Mode::Infer && r.2 == 1);
        for model in ["mobilenet_v3_large", "efficientnet_v2_s", "convnext_tiny"] {
            assert!(infer_b1(model), "{model} inference at batch 1 (issue 28)");
        }
    }
}
