//! The row record: CSV (the `csv` crate) or JSON-lines files, and the printed table
//! (comfy-table).

use anyhow::{Context, Result};
use comfy_table::{presets, CellAlignment, Table};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

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
    pub torch: Option<PeerRow>,
    /// ONNX Runtime's figures for the same row (the torchvision model exported to ONNX), with
    /// --compare ort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ort: Option<PeerRow>,
    /// GFLOP/s of the row (2 per multiply-accumulate, a training step counting three passes),
    /// filled by the parent process (`peak.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// `gflops` over the FMA peak measured at the start of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_share: Option<f64>,
}

/// What `scripts/bench_torch.py` prints for a row (PyTorch or ONNX Runtime).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerRow {
    pub samples_per_sec: f64,
    pub step_time: f64,
    pub fwd_time: Option<f64>,
    pub bwd_time: Option<f64>,
    pub opt_time: Option<f64>,
    pub peak_mem_mb: Option<f64>,
}

/// A row as a CSV line: [`Row`] flattened (PyTorch's figures as two columns), missing values
/// empty.
#[derive(Debug, Serialize, Deserialize)]
struct CsvRow {
    model: String,
    mode: String,
    device: String,
    #[serde(default = "float32")]
    dtype: String,
    batch_size: usize,
    img_size: usize,
    samples_per_sec: f64,
    #[serde(default)]
    step_time: Option<f64>,
    #[serde(default)]
    step_time_min: Option<f64>,
    #[serde(default)]
    step_time_max: Option<f64>,
    #[serde(default)]
    fwd_time: Option<f64>,
    #[serde(default)]
    bwd_time: Option<f64>,
    #[serde(default)]
    opt_time: Option<f64>,
    #[serde(default)]
    param_count: Option<f64>,
    #[serde(default)]
    gmacs: Option<f64>,
    #[serde(default)]
    peak_mem_mb: Option<f64>,
    #[serde(default)]
    threads: usize,
    #[serde(default)]
    torch_samples_per_sec: Option<f64>,
    #[serde(default)]
    torch_peak_mem_mb: Option<f64>,
    #[serde(default)]
    ort_samples_per_sec: Option<f64>,
    #[serde(default)]
    ort_peak_mem_mb: Option<f64>,
    #[serde(default)]
    gflops: Option<f64>,
    #[serde(default)]
    peak_share: Option<f64>,
}

/// A peer's row from its two CSV columns.
fn peer(samples_per_sec: Option<f64>, peak_mem_mb: Option<f64>) -> Option<PeerRow> {
    samples_per_sec.map(|samples_per_sec| PeerRow {
        samples_per_sec,
        step_time: f64::NAN,
        fwd_time: None,
        bwd_time: None,
        opt_time: None,
        peak_mem_mb,
    })
}

fn float32() -> String {
    "float32".into()
}

impl From<&Row> for CsvRow {
    fn from(r: &Row) -> Self {
        let finite = |v: f64| v.is_finite().then_some(v);
        CsvRow {
            model: r.model.clone(),
            mode: r.mode.clone(),
            device: r.device.clone(),
            dtype: r.dtype.clone(),
            batch_size: r.batch_size,
            img_size: r.img_size,
            samples_per_sec: r.samples_per_sec,
            step_time: finite(r.step_time),
            step_time_min: finite(r.step_time_min),
            step_time_max: finite(r.step_time_max),
            fwd_time: r.fwd_time,
            bwd_time: r.bwd_time,
            opt_time: r.opt_time,
            param_count: finite(r.param_count),
            gmacs: finite(r.gmacs),
            peak_mem_mb: r.peak_mem_mb,
            threads: r.threads,
            torch_samples_per_sec: r.torch.as_ref().map(|t| t.samples_per_sec),
            torch_peak_mem_mb: r.torch.as_ref().and_then(|t| t.peak_mem_mb),
            ort_samples_per_sec: r.ort.as_ref().map(|t| t.samples_per_sec),
            ort_peak_mem_mb: r.ort.as_ref().and_then(|t| t.peak_mem_mb),
            gflops: r.gflops,
            peak_share: r.peak_share,
        }
    }
}

impl From<CsvRow> for Row {
    fn from(c: CsvRow) -> Self {
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        Row {
            model: c.model,
            mode: c.mode,
            device: c.device,
            dtype: c.dtype,
            batch_size: c.batch_size,
            img_size: c.img_size,
            samples_per_sec: c.samples_per_sec,
            step_time: nan(c.step_time),
            step_time_min: nan(c.step_time_min),
            step_time_max: nan(c.step_time_max),
            fwd_time: c.fwd_time,
            bwd_time: c.bwd_time,
            opt_time: c.opt_time,
            param_count: nan(c.param_count),
            gmacs: nan(c.gmacs),
            peak_mem_mb: c.peak_mem_mb,
            threads: c.threads,
            torch: peer(c.torch_samples_per_sec, c.torch_peak_mem_mb),
            ort: peer(c.ort_samples_per_sec, c.ort_peak_mem_mb),
            gflops: c.gflops,
            peak_share: c.peak_share,
        }
    }
}

fn is_csv(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "csv")
}

/// The rows of an earlier `--out` file: CSV (by its extension) or JSON lines.
pub(super) fn read_rows(path: &Path) -> Result<Vec<Row>> {
    if is_csv(path) {
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        return reader
            .deserialize::<CsvRow>()
            .enumerate()
            .map(|(n, row)| {
                row.map(Row::from)
                    .with_context(|| format!("{}: row {} is not a bench row", path.display(), n + 1))
            })
            .collect();
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l).with_context(|| {
                format!(
                    "{}: line {} is not a bench row (a `bench --out` file: JSON lines, or CSV by its extension)",
                    path.display(),
                    n + 1
                )
            })
        })
        .collect()
}

/// Writes `rows` to `path`: CSV (by its extension) or JSON lines.
pub(super) fn write_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let bytes = if is_csv(path) {
        let mut writer = csv::Writer::from_writer(Vec::new());
        for r in rows {
            writer.serialize(CsvRow::from(r))?;
        }
        writer.into_inner().context("writing CSV")?
    } else {
        let mut text = String::new();
        for r in rows {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        text.into_bytes()
    };
    backbone::io::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Prints the rows as a table, with the columns of each peer asked for (`-` where it gave no
/// figure) and the ratio to `baseline`'s samples/s when given.
pub(super) fn print_table(
    rows: &[Row],
    baseline: &HashMap<(String, String, String, usize, usize), f64>,
    compare: &[super::Compare],
) {
    let torch = compare.contains(&super::Compare::Torch);
    let ort = compare.contains(&super::Compare::Ort);
    let gflops = rows.iter().any(|r| r.gflops.is_some());
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
    if gflops {
        header.extend(["GFLOP/s", "of peak"]);
    }
    if torch {
        header.extend(["torch samples/s", "ours/torch", "torch peak MB"]);
    }
    if ort {
        header.extend(["ORT samples/s", "ours/ORT", "ORT peak MB"]);
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
            if gflops {
                cells.push(opt(r.gflops, 0));
                cells.push(opt(r.peak_share.map(|s| 100.0 * s), 0) + "%");
            }
            for (shown, peer) in [(torch, &r.torch), (ort, &r.ort)] {
                if shown {
                    let t = peer.as_ref();
                    cells.push(opt(t.map(|t| t.samples_per_sec), 1));
                    cells.push(opt(t.map(|t| r.samples_per_sec / t.samples_per_sec), 2));
                    cells.push(opt(t.and_then(|t| t.peak_mem_mb), 0));
                }
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
    let mut out = Table::new();
    out.load_preset(presets::ASCII_BORDERS_ONLY_CONDENSED)
        .set_header(header);
    for row in table {
        out.add_row(row);
    }
    // The model, mode and device read left to right; numbers line up on the right.
    for i in 3..out.column_count() {
        if let Some(column) = out.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("{out}");
}
