//! Hostile command lines: out-of-range numbers are refused when parsed, inputs too big for
//! memory are refused before anything is allocated, absurd thread counts are capped, and the
//! run folder of another run is never clobbered. Each case checks its message and that the
//! process exits with an error status (never a panic or an abort).

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run xtask")
}

fn refused(args: &[&str], expected: &[&str]) {
    let out = xtask(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(if stderr.contains("For more information") {
            2
        } else {
            1
        }),
        "{args:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    for word in expected {
        assert!(stderr.contains(word), "{args:?} should say `{word}`: {stderr}");
    }
}

#[test]
fn numbers_out_of_range_are_refused_when_parsed() {
    for (args, words) in [
        (
            &["train", "lenet", "--epochs", "18446744073709551615"][..],
            &["--epochs", "1..=1000000"][..],
        ),
        (&["train", "lenet", "--epochs", "0"], &["--epochs"]),
        (&["train", "lenet", "--batch-size", "0"], &["--batch-size"]),
        (&["train", "lenet", "--limit", "0"], &["--limit"]),
        (&["train", "lenet", "--lr=-1"], &["--lr", "not > 0"]),
        (
            &["train", "lenet", "--lr", "nan"],
            &["--lr", "not a finite number"],
        ),
        (&["train", "lenet", "--weight-decay=-0.1"], &["--weight-decay"]),
        (
            &["train", "resnet18", "--img-size", "100000"],
            &["--img-size", "1..=16384"],
        ),
        (&["train", "resnet18", "--img-size", "0x32"], &["--img-size"]),
        (&["summary", "lenet", "--batch", "0"], &["--batch"]),
        (
            &["summary", "resnet18", "--img-size", "abc"],
            &["--img-size", "not a size"],
        ),
        (&["bench", "lenet", "--threads", "0"], &["--threads"]),
        (&["bench", "lenet", "--batch-size", "16,0"], &["--batch-size"]),
        (
            &["predict", "lenet", "--weights", "w", "--top-k", "0", "a.png"],
            &["--top-k"],
        ),
        (
            &[
                "finetune",
                "resnet18",
                "--weights",
                "w",
                "--data",
                "d",
                "--val-fraction",
                "1",
            ],
            &["--val-fraction", "(0, 1)"],
        ),
        (
            &[
                "finetune",
                "resnet18",
                "--weights",
                "w",
                "--data",
                "d",
                "--label-smoothing",
                "1",
            ],
            &["--label-smoothing"],
        ),
        (
            &[
                "finetune",
                "resnet18",
                "--weights",
                "w",
                "--data",
                "d",
                "--workers",
                "100000",
            ],
            &["--workers"],
        ),
        (&["train", "lenet", "--allow-changes"], &["--resume"]),
        (&["train", "lenet", "--resume", "--overwrite"], &["--overwrite"]),
    ] {
        refused(args, words);
    }
}

#[test]
fn inputs_too_big_for_memory_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    refused(
        &["train", "resnet18", "--img-size", "16000", "--out", out],
        &[
            "resnet18",
            "16000x16000",
            "TB of memory",
            "smaller image size or batch",
        ],
    );
    refused(
        &["summary", "vgg16", "--input-size", "16000", "--batch", "64"],
        &["vgg16", "TB of memory"],
    );
    refused(
        &["bench", "resnet18", "--img-size", "16000", "--iters", "1"],
        &["TB of memory"],
    );
}

#[test]
fn thread_counts_are_capped_with_a_note() {
    let out = xtask(&[
        "bench",
        "lenet5",
        "--threads",
        "100000",
        "--iters",
        "1",
        "--warmup",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("--threads 100000 capped to"), "{stderr}");
}

#[test]
fn train_refuses_to_clobber_a_run_and_resumes_only_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let base = ["train", "lenet", "--limit", "256", "--quiet", "--out", out];
    let args =
        |extra: &[&'static str]| -> Vec<&str> { base.iter().copied().chain(extra.iter().copied()).collect() };
    refused(&args(&["--epochs", "1", "--resume"]), &["nothing to resume"]);
    let first = xtask(&args(&["--epochs", "1"]));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    refused(
        &args(&["--epochs", "1"]),
        &["another run's checkpoints", "--overwrite", "--resume"],
    );
    refused(&args(&["--epochs", "1", "--resume"]), &["has finished"]);
    refused(
        &args(&["--epochs", "2", "--resume", "--lr", "0.01"]),
        &["lr: 0.001 -> 0.01", "--allow-changes"],
    );
    let resumed = xtask(&args(&["--epochs", "2", "--resume"]));
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let overwritten = xtask(&args(&["--epochs", "1", "--overwrite"]));
    assert!(
        overwritten.status.success(),
        "{}",
        String::from_utf8_lossy(&overwritten.stderr)
    );
    let csv = std::fs::read_to_string(dir.path().join("run/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
}

/// Weights whose values are finite but overflow in the forward pass: predict refuses the
/// non-finite logits instead of printing `NaN%`.
#[test]
fn predict_refuses_non_finite_logits() {
    use candle_core::{DType, Device, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let vars = backbone::init::SeededVarMap::new(0);
    lenet::LeNet::new(
        &lenet::LeNetConfig::lenet5(),
        vars.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    let tensors: std::collections::HashMap<String, Tensor> = vars
        .varmap()
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), (v.as_tensor().ones_like().unwrap() * 1e30).unwrap()))
        .collect();
    let weights = dir.path().join("huge.safetensors");
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let png = dir.path().join("digit.png");
    image::GrayImage::from_fn(28, 28, |x, _| image::Luma([(x * 9) as u8]))
        .save(&png)
        .unwrap();
    let out = xtask(&[
        "predict",
        "lenet",
        "--weights",
        weights.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("non-finite logit") && !String::from_utf8_lossy(&out.stdout).contains("NaN"),
        "{stderr}"
    );
}
