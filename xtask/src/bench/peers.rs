//! The peers of `--compare torch,ort`: PyTorch and ONNX Runtime through
//! `scripts/bench_torch.py`, run row by row.

use super::{BenchArgs, Compare, PeerRow, Row};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

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

/// The longest `python -c "import torch, ..."` may take (a cold import of torch takes
/// seconds), unless `--peer-timeout` is shorter.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(300);

/// Checks that `python` can run `peer`'s side of the benchmark, within `limit` (at most
/// [`IMPORT_TIMEOUT`]).
pub(super) fn check_peer(python: &str, peer: Compare, limit: Duration) -> Result<()> {
    let (imports, packages) = match peer {
        Compare::Torch => ("import torch, torchvision", "torch torchvision"),
        Compare::Ort => (
            "import torch, torchvision, onnx, onnxruntime",
            "torch torchvision onnx onnxruntime onnxscript",
        ),
    };
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-c", imports]);
    let out = output_within(cmd, limit.min(IMPORT_TIMEOUT))
        .with_context(|| format!("cannot run `{python} -c \"{imports}\"`; pass --python /path/to/python"))?;
    if !out.status.success() {
        bail!(
            "`{python}` cannot `{imports}`: install them with `{python} -m pip install {packages}`, \
             or pass --python /path/to/a/python/with/them"
        );
    }
    Ok(())
}

/// Runs `cmd` with its output captured, killed after `limit` (an error saying so).
pub(super) fn output_within(mut cmd: std::process::Command, limit: Duration) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{program}`"))?;
    // Read both pipes on threads, so a child filling one cannot block on it while we wait.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for `{program}`"))?
        {
            break status;
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{program}` did not finish within {} s and was stopped (--peer-timeout sets the limit)",
                limit.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let join = |t: std::thread::JoinHandle<Vec<u8>>| t.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

/// `peer`'s figures for `row`: `Ok(None)` where the peer cannot run it (a model torchvision
/// lacks, training in ONNX Runtime: the reason is printed), an error when the peer failed,
/// hung past `--peer-timeout` or printed no row.
pub(super) fn measure_peer(
    row: &Row,
    peer: Compare,
    args: &BenchArgs,
    script: &Path,
) -> Result<Option<PeerRow>> {
    let threads = row.threads.to_string();
    let mut cmd = std::process::Command::new(&args.python);
    cmd.arg(script)
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
        ]);
    // Kept until the peer has run.
    let _ours = if peer == Compare::Ort && args.ort_model == super::OrtModel::Ours {
        let (dir, file, channels) = export_ours(row)?;
        cmd.arg("--onnx")
            .arg(&file)
            .args(["--channels", &channels.to_string()]);
        Some(dir)
    } else {
        None
    };
    let out = output_within(cmd, Duration::from_secs_f64(args.peer_timeout))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last_words = || {
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        match lines.len() {
            0 => "it printed nothing on stderr".to_string(),
            n => lines[n.saturating_sub(3)..].join(" | "),
        }
    };
    if !out.status.success() {
        bail!(
            "{} exited with {}: {}",
            script.display(),
            out.status,
            last_words()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        bail!(
            "{} printed no JSON row (stdout: {} bytes; {})",
            script.display(),
            stdout.len(),
            last_words()
        );
    };
    let value: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("reading {}'s row `{line}`", script.display()))?;
    if let Some(why) = value.get("unsupported") {
        eprintln!(
            "note: no {} figure for {} {} batch {}: {}",
            peer.label(),
            row.model,
            row.mode,
            row.batch_size,
            why.as_str().map_or_else(|| why.to_string(), str::to_string)
        );
        return Ok(None);
    }
    Ok(Some(serde_json::from_value(value).with_context(|| {
        format!("reading {}'s row `{line}`", script.display())
    })?))
}

/// `row`'s variant with seeded weights, exported by `convnets::onnx` at the row's image size
/// into a temporary folder: (the folder, the file, the input channels).
fn export_ours(row: &Row) -> Result<(tempfile::TempDir, PathBuf, usize)> {
    let model = convnets::create_model(&row.model, &convnets::CreateOptions::default())?;
    let options = convnets::onnx::ExportOptions {
        input_size: Some((row.img_size, row.img_size)),
        ..Default::default()
    };
    let proto = convnets::onnx::export(model.net.as_ref(), &options)
        .with_context(|| format!("exporting {} to ONNX", row.model))?;
    let dir = tempfile::Builder::new().prefix("bench-ours-").tempdir()?;
    let file = dir.path().join("model.onnx");
    convnets::onnx::save(&proto, &file)?;
    Ok((dir, file, model.input_spec().channels))
}
