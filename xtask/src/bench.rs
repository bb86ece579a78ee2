//! `cargo xtask bench`: throughput and memory of the models, optionally side by side with
//! PyTorch.
//!
//! One row per (model, mode, batch size). Columns follow timm's `benchmark.py`: samples per
//! second, step time (median, min, max), the forward / backward / optimizer split of a
//! training step, parameters (millions), GMACs per image and peak memory. The device is
//! synchronised before every clock read.

use crate::models::{self, ModelEntry};
use anyhow::{bail, Context, Result};
use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use trainer::loss::cross_entropy;
use trainer::optim::{Adam, AdamConfig, Optimizer};

/// What to measure.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Eval-mode forward passes in `backbone::inference_mode` (batch norm folded into the
    /// convolutions).
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
}

/// A fixed set of rows.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// The rows BENCHMARKS.md reports: LeNet-5 at batch 256 (32x32), ResNet-18 training at
    /// batch 64 on 32x32 and inference at batch 1 and 16 on 224x224, ResNet-50 inference at
    /// batch 1 and training at batch 8 on 224x224, VGG-11 training at batch 8 on 224x224.
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
                ("resnet50", Mode::Train, 8, 224),
                ("vgg11", Mode::Train, 8, 224),
            ],
        }
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Variants (`resnet50`), families (`resnet`) or `all`.
    #[arg(required_unless_present = "suite")]
    models: Vec<String>,
    /// Run a fixed set of rows instead (each with its own mode, batch and image size).
    #[arg(long, value_enum, conflicts_with_all = ["mode", "batch_size", "img_size", "grid"])]
    suite: Option<Suite>,
    /// infer, train or both [default: infer; both with --grid].
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Batch sizes, comma separated (e.g. 1,16,64) [default: 1 for a family or `all`, 16 for
    /// named variants].
    #[arg(long, value_delimiter = ',', value_parser = crate::args::usize_in(1, crate::args::MAX_BATCH))]
    batch_size: Vec<usize>,
    /// The full grid: inference and training at batch 1 and 16 (unless --mode / --batch-size
    /// say otherwise).
    #[arg(long)]
    grid: bool,
    /// Internal: measure the one planned row in this process and print it as JSON (the parent
    /// runs each row in its own process, so each row reports its own peak memory).
    #[arg(long, hide = true)]
    row_json: bool,
    /// Image height and width (default: each model's usual size: 224 for ImageNet models,
    /// 32 for LeNet-5, 299 for Inception-v3).
    #[arg(long, value_parser = crate::args::usize_in(1, crate::args::MAX_SIDE as u64))]
    img_size: Option<usize>,
    /// Untimed steps before measuring.
    #[arg(long, default_value_t = 2, value_parser = crate::args::usize_in(0, 100_000))]
    warmup: usize,
    /// Timed steps (at least).
    #[arg(long, default_value_t = 10, value_parser = crate::args::usize_in(1, 100_000))]
    iters: usize,
    /// Keep timing until this many seconds have passed too.
    #[arg(long, default_value_t = 0.0, value_parser = crate::args::non_negative)]
    min_time: f64,
    /// CPU threads (candle's and, with --compare torch, PyTorch's). Default: physical cores;
    /// at most 4 per core.
    #[arg(long, value_parser = crate::args::usize_in(1, 1 << 20))]
    threads: Option<usize>,
    /// Device: cpu, cuda, cuda:N or metal (GPUs need xtask built with the matching feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Write the rows to this file: JSON lines (`.jsonl`/`.json`) or CSV (`.csv`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// An earlier `--out` file: print the ratio of each row's samples/s to the matching row.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Measure the same rows with PyTorch too, alternating with ours.
    #[arg(long, value_enum)]
    compare: Option<Compare>,
    /// The Python with torch and torchvision for --compare torch.
    #[arg(long, default_value = "python3")]
    python: String,
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

/// One measured row (timm `benchmark.py` field names where they exist).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub model: String,
    pub mode: String,
    pub device: String,
    pub dtype: String,
    pub batch_size: usize,
    pub img_size: usize,
    pub samples_per_sec: f64,
    /// Median step time, ms.
    pub step_time: f64,
    pub step_time_min: f64,
    pub step_time_max: f64,
    /// Median forward / backward / optimizer time of a training step, ms.
    pub fwd_time: Option<f64>,
    pub bwd_time: Option<f64>,
    pub opt_time: Option<f64>,
    /// Parameters, millions.
    pub param_count: f64,
    /// Multiply-accumulates per image, billions.
    pub gmacs: f64,
    /// Peak memory of the row, MB: process RSS on CPU; none on GPU (candle does not report
    /// device memory).
    pub peak_mem_mb: Option<f64>,
    pub threads: usize,
    /// PyTorch's figures for the same row, with --compare torch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch: Option<TorchRow>,
}

/// What `scripts/bench_torch.py` prints for a row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TorchRow {
    pub samples_per_sec: f64,
    pub step_time: f64,
    pub fwd_time: Option<f64>,
    pub bwd_time: Option<f64>,
    pub opt_time: Option<f64>,
    pub peak_mem_mb: Option<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Resets the process's peak RSS (Linux `clear_refs`), best effort.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak RSS since the last reset, MB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

fn default_img_size(model: &dyn Backbone) -> usize {
    let spec = model.input_spec();
    let (h, _) = spec.fixed_size.unwrap_or(spec.default_size);
    h
}

struct Timings {
    steps: Vec<f64>,
    fwd: Vec<f64>,
    bwd: Vec<f64>,
    opt: Vec<f64>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Times `warmup + iters` steps (more if `min_time` is not reached), with a progress bar named
/// `label` on stderr (drawn only on a terminal).
fn time_steps(
    args: &BenchArgs,
    label: &str,
    mut step: impl FnMut(&mut Timings) -> Result<()>,
) -> Result<Timings> {
    let bar = indicatif::ProgressBar::new((args.warmup + args.iters.max(1)) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps {elapsed_precise} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let mut t = Timings {
        steps: vec![],
        fwd: vec![],
        bwd: vec![],
        opt: vec![],
    };
    for _ in 0..args.warmup {
        step(&mut t)?;
        bar.inc(1);
    }
    t = Timings {
        steps: vec![],
        fwd: vec![],
        bwd: vec![],
        opt: vec![],
    };
    let start = Instant::now();
    while t.steps.len() < args.iters.max(1) || start.elapsed().as_secs_f64() < args.min_time {
        step(&mut t)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(t)
}

fn measure(
    entry: &ModelEntry,
    mode: Mode,
    batch: usize,
    img_size: Option<usize>,
    args: &BenchArgs,
    device: &Device,
) -> Result<Row> {
    let (channels, classes) = entry.reference;
    let vars = SeededVarMap::new(0);
    let model = models::build(entry, classes, channels, vars.var_builder(DType::F32, device))
        .with_context(|| format!("building {}", entry.name))?;
    let img = img_size.unwrap_or_else(|| default_img_size(model.as_ref()));
    let params: usize = backbone::init::trainable_vars(vars.varmap())
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    crate::args::check_memory(model.as_ref(), batch, (img, img), mode != Mode::Infer)?;
    let macs = backbone::summarize(model.as_ref(), &[1, channels, img, img], device)
        .with_context(|| format!("{} at {img}x{img}", entry.name))?
        .total_macs();
    let xs = Tensor::randn(0f32, 1f32, (batch, channels, img, img), device)?;
    let labels: Vec<u32> = (0..batch).map(|i| (i % classes) as u32).collect();
    let labels = Tensor::from_vec(labels, batch, device)?;
    reset_peak_rss();
    let label = format!(
        "{} {} batch {batch} {img}x{img}",
        entry.name,
        if mode == Mode::Infer { "infer" } else { "train" }
    );
    let timings = match mode {
        Mode::Infer => time_steps(args, &label, |t| {
            let start = Instant::now();
            // As `torch.inference_mode()` in scripts/bench_torch.py: no gradient will be asked.
            let out = backbone::inference_mode(|| model.forward_t(&xs, false))?;
            device.synchronize()?;
            drop(out);
            t.steps.push(ms(start));
            Ok(())
        })?,
        _ => {
            let mut opt = Adam::new(
                backbone::init::trainable_vars(vars.varmap()),
                AdamConfig::default(),
            )?;
            time_steps(args, &label, |t| {
                let start = Instant::now();
                let out = model.forward_aux(&xs, true)?;
                let mut loss = cross_entropy(&out.logits, &labels)?;
                for aux in &out.aux_logits {
                    loss = (loss + (cross_entropy(aux, &labels)? * 0.3)?)?;
                }
                device.synchronize()?;
                let fwd = Instant::now();
                let grads = loss.backward()?;
                device.synchronize()?;
                let bwd = Instant::now();
                opt.step(&grads)?;
                device.synchronize()?;
                t.fwd.push((fwd - start).as_secs_f64() * 1e3);
                t.bwd.push((bwd - fwd).as_secs_f64() * 1e3);
                t.opt.push(ms(bwd));
                t.steps.push(ms(start));
                Ok(())
            })?
        }
    };
    let peak = if matches!(device, Device::Cpu) {
        peak_rss_mb()
    } else {
        None
    };
    let Timings {
        mut steps,
        mut fwd,
        mut bwd,
        mut opt,
    } = timings;
    let step = median(&mut steps);
    let split = |v: &mut Vec<f64>| (!v.is_empty()).then(|| median(v));
    Ok(Row {
        model: entry.name.to_string(),
        mode: if mode == Mode::Infer { "infer" } else { "train" }.to_string(),
        device: device_name(device),
        dtype: "float32".into(),
        batch_size: batch,
        img_size: img,
        samples_per_sec: batch as f64 * 1e3 / step,
        step_time: step,
        step_time_min: steps[0],
        step_time_max: steps[steps.len() - 1],
        fwd_time: split(&mut fwd),
        bwd_time: split(&mut bwd),
        opt_time: split(&mut opt),
        param_count: params as f64 / 1e6,
        gmacs: macs as f64 / 1e9,
        peak_mem_mb: peak,
        threads: candle_core::utils::get_num_threads(),
        torch: None,
    })
}

/// The repository's `scripts/bench_torch.py` (found from the working directory or the
/// crate's source location).
fn torch_script() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("scripts/bench_torch.py"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_torch.py"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .context("scripts/bench_torch.py not found: run from the repository root")
}

fn check_torch(python: &str) -> Result<()> {
    let out = std::process::Command::new(python)
        .args(["-c", "import torch, torchvision"])
        .output()
        .with_context(|| format!("cannot run `{python}`; pass --python /path/to/python"))?;
    if !out.status.success() {
        bail!(
            "`{python}` cannot import torch and torchvision: install them with \
             `{python} -m pip install torch torchvision`, or pass --python /path/to/a/python/with/torch"
        );
    }
    Ok(())
}

fn measure_torch(row: &Row, args: &BenchArgs, script: &Path) -> Result<Option<TorchRow>> {
    let threads = row.threads.to_string();
    let out = std::process::Command::new(&args.python)
        .arg(script)
        .args(["--model", &row.model, "--mode", &row.mode])
        .args([
            "--batch-size",
            &row.batch_size.to_string(),
            "--img-size",
            &row.img_size.to_string(),
        ])
        .args([
            "--warmup",
            &args.warmup.to_string(),
            "--iters",
            &args.iters.to_string(),
        ])
        .args([
            "--min-time",
            &args.min_time.to_string(),
            "--threads",
            &threads,
            "--device",
            &row.device,
        ])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed for {}: {}",
            script.display(),
            row.model,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("null");
    let value: serde_json::Value = serde_json::from_str(line).context("reading bench_torch.py's output")?;
    if value.get("unsupported").is_some() || value.is_null() {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_value(value).context("reading bench_torch.py's output")?,
    ))
}

fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "csv") {
        let mut reader = text.lines();
        let header: Vec<&str> = reader.next().unwrap_or_default().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(m), Some(mode), Some(d), Some(b), Some(i), Some(s)) = (
            col("model"),
            col("mode"),
            col("device"),
            col("batch_size"),
            col("img_size"),
            col("samples_per_sec"),
        ) else {
            bail!("{}: not a bench CSV (missing columns)", path.display());
        };
        reader
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                let num = |k: usize| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
                Ok(Row {
                    model: f.get(m).unwrap_or(&"").to_string(),
                    mode: f.get(mode).unwrap_or(&"").to_string(),
                    device: f.get(d).unwrap_or(&"").to_string(),
                    dtype: "float32".into(),
                    batch_size: num(b) as usize,
                    img_size: num(i) as usize,
                    samples_per_sec: num(s),
                    step_time: f64::NAN,
                    step_time_min: f64::NAN,
                    step_time_max: f64::NAN,
                    fwd_time: None,
                    bwd_time: None,
                    opt_time: None,
                    param_count: f64::NAN,
                    gmacs: f64::NAN,
                    peak_mem_mb: None,
                    threads: 0,
                    torch: None,
                })
            })
            .collect()
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(n, l)| {
                serde_json::from_str(l).with_context(|| format!("{}: line {}", path.display(), n + 1))
            })
            .collect()
    }
}

fn write_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "csv") {
        text.push_str(
            "model,mode,device,dtype,batch_size,img_size,samples_per_sec,step_time,step_time_min,\
             step_time_max,fwd_time,bwd_time,opt_time,param_count,gmacs,peak_mem_mb,threads,\
             torch_samples_per_sec,torch_peak_mem_mb\n",
        );
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        for r in rows {
            text.push_str(&format!(
                "{},{},{},{},{},{},{:.2},{:.3},{:.3},{:.3},{},{},{},{:.6},{:.4},{},{},{},{}\n",
                r.model,
                r.mode,
                r.device,
                r.dtype,
                r.batch_size,
                r.img_size,
                r.samples_per_sec,
                r.step_time,
                r.step_time_min,
                r.step_time_max,
                opt(r.fwd_time),
                opt(r.bwd_time),
                opt(r.opt_time),
                r.param_count,
                r.gmacs,
                opt(r.peak_mem_mb),
                r.threads,
                opt(r.torch.as_ref().map(|t| t.samples_per_sec)),
                opt(r.torch.as_ref().and_then(|t| t.peak_mem_mb)),
            ));
        }
    } else {
        for r in rows {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn print_table(rows: &[Row], baseline: &HashMap<(String, String, String, usize, usize), f64>) {
    let compare = rows.iter().any(|r| r.torch.is_some());
    let mut header = vec![
        "model",
        "mode",
        "device",
        "batch",
        "img",
        "samples/s",
        "step ms (min-max)",
        "fwd/bwd/opt ms",
        "params M",
        "GMACs",
        "peak MB",
    ];
    if compare {
        header.extend(["torch samples/s", "ours/torch", "torch peak MB"]);
    }
    if !baseline.is_empty() {
        header.push("vs baseline");
    }
    let opt = |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.model.clone(),
                r.mode.clone(),
                r.device.clone(),
                r.batch_size.to_string(),
                r.img_size.to_string(),
                format!("{:.1}", r.samples_per_sec),
                format!(
                    "{:.2} ({:.2}-{:.2})",
                    r.step_time, r.step_time_min, r.step_time_max
                ),
                match (r.fwd_time, r.bwd_time, r.opt_time) {
                    (Some(f), Some(b), Some(o)) => format!("{f:.1}/{b:.1}/{o:.1}"),
                    _ => "-".into(),
                },
                format!("{:.3}", r.param_count),
                format!("{:.4}", r.gmacs),
                opt(r.peak_mem_mb, 0),
            ];
            if compare {
                let t = r.torch.as_ref();
                cells.push(opt(t.map(|t| t.samples_per_sec), 1));
                cells.push(opt(t.map(|t| r.samples_per_sec / t.samples_per_sec), 2));
                cells.push(opt(t.and_then(|t| t.peak_mem_mb), 0));
            }
            if !baseline.is_empty() {
                let key = (
                    r.model.clone(),
                    r.mode.clone(),
                    r.device.clone(),
                    r.batch_size,
                    r.img_size,
                );
                cells.push(opt(baseline.get(&key).map(|b| r.samples_per_sec / b), 2));
            }
            cells
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    for row in table {
        println!("{}", line(row));
    }
}

/// Runs the benchmark.
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
        .args(["--min-time", &args.min_time.to_string(), "--device", &args.device]);
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

pub fn run(args: BenchArgs, device: Device) -> Result<()> {
    if args.row_json {
        let plan = plan(&args)?;
        let [(entry, mode, batch, img)] = plan.as_slice() else {
            bail!("--row-json measures exactly one row, the plan has {}", plan.len());
        };
        let row = measure(entry, *mode, *batch, *img, &args, &device)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let script = match args.compare {
        Some(Compare::Torch) => {
            check_torch(&args.python)?;
            Some(torch_script()?)
        }
        None => None,
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
    eprintln!(
        "{}, each in its own process ({} warmup + {} timed steps)",
        crate::args::plural(plan.len(), "row"),
        args.warmup,
        args.iters
    );
    let mut rows = Vec::new();
    let total = plan.len();
    for (i, (entry, mode, batch, img)) in plan.into_iter().enumerate() {
        let mut row = measure_in_child(entry, mode, batch, img, &args)?;
        if let Some(script) = &script {
            row.torch = measure_torch(&row, &args, script)?;
        }
        eprintln!(
            "[{}/{total}] {} {} batch {}: {:.1} samples/s, peak {:.0} MB{}",
            i + 1,
            row.model,
            row.mode,
            row.batch_size,
            row.samples_per_sec,
            row.peak_mem_mb.unwrap_or(f64::NAN),
            row.torch
                .as_ref()
                .map(|t| format!(" (torch {:.1})", t.samples_per_sec))
                .unwrap_or_default()
        );
        rows.push(row);
        // Every row reaches --out as soon as it is measured.
        if let Some(path) = &args.out {
            write_rows(path, &rows)?;
        }
    }
    print_table(&rows, &baseline);
    if let Some(path) = &args.out {
        println!("rows written to {}", path.display());
    }
    Ok(())
}
