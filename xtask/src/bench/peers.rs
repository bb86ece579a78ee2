//! The peers of `--compare torch,ort`: PyTorch and ONNX Runtime through
//! `scripts/bench_torch.py`, run row by row.

use super::{BenchArgs, Compare, PeerRow, Row};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The repository's `scripts/bench_torch.py` (found from the working directory or the
/// crate's source location).
pub(super) fn torch_script() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("scripts/bench_torch.py"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_torch.py"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .context("scripts/bench_torch.py not found: run from the repository root")
}

/// Checks that `python` can run `peer`'s side of the benchmark.
pub(super) fn check_peer(python: &str, peer: Compare) -> Result<()> {
    let (imports, packages) = match peer {
        Compare::Torch => ("import torch, torchvision", "torch torchvision"),
        Compare::Ort => (
            "import torch, torchvision, onnx, onnxruntime",
            "torch torchvision onnx onnxruntime onnxscript",
        ),
    };
    let out = std::process::Command::new(python)
        .args(["-c", imports])
        .output()
        .with_context(|| format!("cannot run `{python}`; pass --python /path/to/python"))?;
    if !out.status.success() {
        bail!(
            "`{python}` cannot `{imports}`: install them with `{python} -m pip install {packages}`, \
             or pass --python /path/to/a/python/with/them"
        );
    }
    Ok(())
}

/// `peer`'s figures for `row` (`None` where the peer cannot run it: a model torchvision lacks,
/// training in ONNX Runtime).
pub(super) fn measure_peer(
    row: &Row,
    peer: Compare,
    args: &BenchArgs,
    script: &Path,
) -> Result<Option<PeerRow>> {
    let threads = row.threads.to_string();
    let out = std::process::Command::new(&args.python)
        .arg(script)
        .args(["--runtime", peer.name()])
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
