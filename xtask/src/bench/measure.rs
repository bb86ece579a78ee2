//! One row measured in this process: the model built with seeded weights, warm-up and timed
//! steps (inference, or forward / backward / Adam step), peak memory.

use super::{BenchArgs, Mode, Row};
use crate::models::{self, ModelEntry};
use anyhow::{Context, Result};
use backbone::Backbone;
use candle_core::{Device, Tensor};
use std::time::Instant;
use trainer::loss::cross_entropy;
use trainer::optim::{Adam, AdamConfig, Optimizer};

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

pub(super) fn measure(
    entry: &ModelEntry,
    mode: Mode,
    batch: usize,
    img_size: Option<usize>,
    args: &BenchArgs,
    device: &Device,
) -> Result<Row> {
    let (channels, classes) = entry.reference;
    let dtype = args.dtype.dtype();
    let (model, vars) = models::build_with_dtype(entry, classes, channels, 0, dtype, device)
        .with_context(|| format!("building {}", entry.name))?;
    let img = img_size.unwrap_or_else(|| default_img_size(model.as_ref()));
    let params: usize = backbone::init::trainable_vars(vars.varmap())
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    crate::args::check_memory(model.as_ref(), batch, (img, img), mode != Mode::Infer)?;
    // The layer table runs a float32 pass: a float32 copy of the model counts the MACs.
    let float32 = match dtype {
        candle_core::DType::F32 => None,
        _ => Some(models::build(entry, classes, channels, 0, device)?.0),
    };
    let macs = backbone::summarize(
        float32.as_deref().unwrap_or(model.as_ref()),
        &[1, channels, img, img],
        device,
    )
    .with_context(|| format!("{} at {img}x{img}", entry.name))?
    .total_macs();
    drop(float32);
    let xs = Tensor::randn(0f32, 1f32, (batch, channels, img, img), device)?.to_dtype(dtype)?;
    let labels: Vec<u32> = (0..batch).map(|i| (i % classes) as u32).collect();
    let labels = Tensor::from_vec(labels, batch, device)?;
    reset_peak_rss();
    let label = format!(
        "{} {} batch {batch} {img}x{img}",
        entry.name,
        if mode == Mode::Infer { "infer" } else { "train" }
    );
    let timings = match mode {
        // As `torch.inference_mode()` in scripts/bench_torch.py (no gradient will be asked),
        // with the weights frozen as in an ONNX Runtime session: the convolutions prepare
        // their transformed weights in the first (warm-up) step and reuse them.
        Mode::Infer => backbone::with_frozen_weights(|| {
            time_steps(args, &label, |t| {
                let start = Instant::now();
                let out = model.forward_t(&xs, false)?;
                device.synchronize()?;
                drop(out);
                t.steps.push(ms(start));
                Ok(())
            })
        })?,
        _ => {
            let mut opt = Adam::new(
                backbone::init::trainable_vars(vars.varmap()),
                AdamConfig::default(),
            )?;
            time_steps(args, &label, |t| {
                let start = Instant::now();
                let out = model.forward_aux(&xs, true)?;
                // The loss in float32 (as autocast computes it).
                let f32 = |t: &Tensor| t.to_dtype(candle_core::DType::F32);
                let mut loss = cross_entropy(&f32(&out.logits)?, &labels)?;
                for aux in &out.aux_logits {
                    loss = (loss + (cross_entropy(&f32(aux)?, &labels)? * 0.3)?)?;
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
        dtype: args.dtype.name().into(),
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
        ort: None,
        gflops: None,
        peak_share: None,
    })
}
