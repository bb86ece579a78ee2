//! The command line, run as users run it.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn summary_lenet_prints_the_seed_table() {
    let out = xtask(&["summary", "lenet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start_matches(['|', ' ']).starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row"))
    };
    // (name, output shape, params, memory, MACs) as in the seed's LeNet-5 table.
    for (name, shape, params, memory, macs) in [
        ("conv1", "[1, 6, 28, 28]", "156", "4,704", "117,600"),
        ("pool1", "[1, 6, 14, 14]", "0", "1,176", "0"),
        ("conv2", "[1, 16, 10, 10]", "2,416", "1,600", "240,000"),
        ("pool2", "[1, 16, 5, 5]", "0", "400", "0"),
        ("fc1", "[1, 120]", "48,120", "120", "48,000"),
        ("fc2", "[1, 84]", "10,164", "84", "10,080"),
        ("fc3", "[1, 10]", "850", "10", "840"),
    ] {
        let line = row(name);
        for cell in [shape, params, memory, macs] {
            assert!(line.contains(cell), "`{line}` should contain {cell}");
        }
    }
    assert!(stdout.contains("Total params:        61,706"), "{stdout}");
    assert!(stdout.contains("Total MACs:          416,520"), "{stdout}");
}

#[test]
fn unknown_model_lists_the_valid_names() {
    for sub in ["summary", "train"] {
        let out = xtask(&[sub, "lenet7"]);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(stderr.contains("unknown model `lenet7`"), "{stderr}");
        for name in ["lenet5", "lenet5_tanh", "lenet5_max"] {
            assert!(stderr.contains(name), "{stderr}");
        }
    }
}

/// A run's folder given where a model name goes: the error says to pass it with --weights
/// and names the model its config.json records.
#[test]
fn a_path_given_as_the_model_points_to_weights() {
    let dir = std::env::temp_dir().join(format!("xtask-path-hint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"architecture": "lenet5_max"}"#).unwrap();
    let path = dir.to_string_lossy().to_string();
    let out = xtask(&["summary", &path]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("lenet5_max --weights {path}")),
        "{stderr}"
    );
    assert!(!stderr.contains("lenet5_tanh"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_explains_the_train_flags() {
    let out = xtask(&["train", "--help"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for flag in [
        "--data-dir",
        "--epochs",
        "--batch-size",
        "--lr",
        "--seed",
        "--out",
        "--augment",
    ] {
        assert!(stdout.contains(flag), "--help should explain {flag}");
    }
}

fn write_idx(dir: &Path, name: &str, header: &[u32], payload: &[u8]) {
    let mut bytes: Vec<u8> = header.iter().flat_map(|v| v.to_be_bytes()).collect();
    bytes.extend_from_slice(payload);
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A tiny MNIST-shaped dataset: digit `k` is a bar at row 2k.
fn write_dataset(dir: &Path, train: usize, test: usize) {
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let mut images = vec![0u8; n * 28 * 28];
        for (i, &label) in labels.iter().enumerate() {
            let row = 2 + 2 * label as usize;
            images[i * 784 + row * 28 + 4..i * 784 + row * 28 + 24].fill(255);
        }
        write_idx(
            dir,
            &format!("{prefix}-images-idx3-ubyte"),
            &[2051, n as u32, 28, 28],
            &images,
        );
        write_idx(
            dir,
            &format!("{prefix}-labels-idx1-ubyte"),
            &[2049, n as u32],
            &labels,
        );
    }
}

#[test]
fn train_on_a_data_dir_saves_a_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 200, 50);
    let out_dir = tempfile::tempdir().unwrap();
    let out = xtask(&[
        "train",
        "lenet",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--augment",
        "none",
        "--quiet",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let checkpoint = out_dir.path().join("epoch-002.safetensors");
    assert!(
        stdout.contains(&format!("checkpoint saved to {}", checkpoint.display())),
        "{stdout}"
    );
    assert!(stdout.contains("final test accuracy"), "{stdout}");
    let tensors = candle_core::safetensors::load(&checkpoint, &candle_core::Device::Cpu).unwrap();
    assert_eq!(tensors["conv1.weight"].dims(), [6, 1, 5, 5]);
}

#[test]
fn a_truncated_dataset_is_reported_with_its_path() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 20, 10);
    let images = data.path().join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 100]).unwrap();
    let out = xtask(&[
        "train",
        "lenet",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("train-images-idx3-ubyte") && stderr.contains("truncated"),
        "{stderr}"
    );
}

#[test]
fn sync_bn_needs_distributed() {
    let help = text(&xtask(&["train", "--help"]).stdout);
    assert!(help.contains("--sync-bn"), "{help}");
    let out = xtask(&["train", "lenet", "--sync-bn", "--epochs", "1"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--sync-bn") && stderr.contains("needs --distributed"),
        "{stderr}"
    );
}

#[test]
fn a_gpu_without_its_feature_says_how_to_build() {
    let out = xtask(&["train", "lenet", "--device", "cuda", "--epochs", "1"]);
    if cfg!(feature = "cuda") {
        return;
    }
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--features cuda"), "{stderr}");
    let out = xtask(&["train", "lenet", "--device", "tpu"]);
    assert!(text(&out.stderr).contains("unknown device `tpu`"));
}

#[test]
fn bench_runs_with_tiny_settings_and_reads_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    let jsonl = dir.path().join("rows.jsonl");
    let args = [
        "bench",
        "lenet5",
        "--mode",
        "both",
        "--batch-size",
        "2,3",
        "--warmup",
        "1",
        "--iters",
        "2",
    ];
    let out = xtask(&[&args[..], &["--out", csv.to_str().unwrap()]].concat());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for needle in ["samples/s", "fwd/bwd/opt ms", "lenet5", "infer", "train", "0.062"] {
        assert!(stdout.contains(needle), "{needle} missing from\n{stdout}");
    }
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        rows.lines().count(),
        1 + 4,
        "header + (infer, train) x (2, 3):\n{rows}"
    );
    // JSON lines, then a run against that baseline prints the ratio column.
    let out = xtask(&[&args[..], &["--out", jsonl.to_str().unwrap()]].concat());
    assert!(out.status.success());
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&jsonl).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["model"], "lenet5");
    assert!(first["samples_per_sec"].as_f64().unwrap() > 0.0);
    let out = xtask(&[&args[..], &["--baseline", csv.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("vs baseline"));
}

#[test]
fn bench_compare_without_torch_says_how_to_install_it() {
    let out = xtask(&[
        "bench",
        "lenet5",
        "--compare",
        "torch",
        "--python",
        "/nonexistent/python3",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--python"), "{}", text(&out.stderr));
    // A Python that cannot import the peer's packages: the error says which to install.
    let out = xtask(&["bench", "lenet5", "--compare", "torch,ort", "--python", "false"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("pip install") && err.contains("torch"), "{err}");
    let out = xtask(&["bench", "lenet5", "--compare", "ort", "--python", "false"]);
    let err = text(&out.stderr);
    assert!(err.contains("onnxruntime"), "{err}");
    let out = xtask(&["bench", "resnet9000"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("valid names"));
}

/// A LeNet-5 run folder at `out`: one epoch on 256 digits.
fn train_small_lenet(out: &str) {
    let train = xtask(&[
        "train", "lenet", "--limit", "256", "--epochs", "1", "--quiet", "--out", out,
    ]);
    assert!(train.status.success(), "{}", text(&train.stderr));
}

/// `train` leaves a run folder that `predict` takes as `--weights`: its latest checkpoint and
/// the config.json train writes (one grey channel, 10 digit labels), for a grey PNG.
#[test]
fn train_then_predict_from_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lenet");
    let out_s = out.to_str().unwrap();
    train_small_lenet(out_s);
    assert!(out.join("config.json").is_file() && out.join("model.safetensors").is_file());
    let png = dir.path().join("digit.png");
    image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if (8..20).contains(&x) && (4..24).contains(&y) {
            255
        } else {
            0
        }])
    })
    .save(&png)
    .unwrap();
    let predict = xtask(&["predict", "lenet", "--weights", out_s, png.to_str().unwrap()]);
    assert!(predict.status.success(), "{}", text(&predict.stderr));
    let stdout = text(&predict.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains('%')).collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    for row in rows {
        let label = row.split_whitespace().last().unwrap();
        assert!(
            label.len() == 1 && label.chars().all(|c| c.is_ascii_digit()),
            "{row}"
        );
    }
}

/// One vocabulary: the same flags for the same things in every subcommand, `<MODEL>` as the
/// positional, `cargo xtask` in the usage, `--version`, switches as switches.
#[test]
fn every_subcommand_speaks_the_same_flags() {
    for (sub, flags) in [
        (
            "train",
            &[
                "--img-size",
                "--batch-size",
                "--epochs",
                "--lr",
                "--seed",
                "--out",
                "--resume",
                "--overwrite",
                "--device",
                "--workers",
            ][..],
        ),
        (
            "finetune",
            &[
                "--img-size",
                "--batch-size",
                "--epochs",
                "--lr",
                "--seed",
                "--out",
                "--resume",
                "--overwrite",
                "--device",
                "--workers",
                "--train-backbone",
            ],
        ),
        ("predict", &["--img-size", "--weights", "--device"]),
        (
            "visualize",
            &[
                "--img-size",
                "--weights",
                "--device",
                "--batch-size",
                "--overwrite",
            ],
        ),
        ("summary", &["--img-size", "--batch-size"]),
        ("bench", &["--img-size", "--batch-size", "--device"]),
    ] {
        let out = xtask(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}");
        let help = text(&out.stdout);
        assert!(
            help.contains(&format!("Usage: cargo xtask {sub}")),
            "{sub}: {help}"
        );
        for flag in flags {
            assert!(help.contains(flag), "{sub} --help should list {flag}");
        }
        if sub != "bench" {
            assert!(help.contains("<MODEL>"), "{sub}: {help}");
        }
    }
    let version = xtask(&["--version"]);
    assert!(version.status.success() && text(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    // The old spellings still work.
    let out = xtask(&["summary", "lenet", "--input-size", "32", "--batch", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Plurals.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let train = xtask(&[
        "train",
        "lenet",
        "--limit",
        "256",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stdout = text(&train.stdout);
    assert!(
        stdout.contains(", 1 epoch,") && stdout.contains("after 1 epoch in"),
        "{stdout}"
    );
}

/// `train` takes every optimizer, schedule, warmup, label smoothing and clipping `finetune`
/// takes.
#[test]
fn train_takes_the_finetune_optimisation_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sgd");
    let train = xtask(&[
        "train",
        "lenet",
        "--limit",
        "256",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--optimizer",
        "sgd",
        "--momentum",
        "0.9",
        "--nesterov",
        "--lr",
        "0.05",
        "--schedule",
        "step",
        "--step-epochs",
        "1",
        "--gamma",
        "0.5",
        "--warmup-epochs",
        "1",
        "--label-smoothing",
        "0.1",
        "--clip-grad",
        "1.0",
        "--weight-decay",
        "1e-4",
    ]);
    assert!(train.status.success(), "{}", text(&train.stderr));
    let run = std::fs::read_to_string(out.join("run.json")).unwrap();
    for setting in [
        "Sgd",
        "nesterov: true",
        "Step",
        "\"label smoothing\": \"0.1\"",
        "Some(1.0)",
    ] {
        assert!(run.contains(setting), "{setting}: {run}");
    }
}

/// `bench <family>` measures each variant at inference, batch 1, each row in its own process
/// (its own peak memory), and writes every row to --out as it goes.
#[test]
fn bench_a_family_runs_one_row_per_variant_at_batch_one() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    let out = xtask(&[
        "bench",
        "lenet",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("3 rows, each in its own process")
            && stderr.contains("[3/3] lenet5_max infer batch 1"),
        "{stderr}"
    );
    let rows = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = rows.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{rows}");
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!((cells[1], cells[4]), ("infer", "1"), "{line}");
        assert!(cells[15].parse::<f64>().unwrap() > 0.0, "peak memory: {line}");
    }
}

/// The paper's transfer-learning step from the command line: a trained LeNet-5's run folder as
/// a channel-boosted LeNet's main network (its input convolution widened from 1 to 11
/// channels) and frozen extractor, whose weights come out of training bit-identical.
#[test]
fn a_boosted_network_starts_from_a_trained_run() {
    let dir = tempfile::tempdir().unwrap();
    let lenet = dir.path().join("lenet");
    let lenet_s = lenet.to_str().unwrap();
    train_small_lenet(lenet_s);
    let boosted = dir.path().join("boosted");
    let out = xtask(&[
        "train",
        "cbcnn_lenet",
        "--limit",
        "256",
        "--epochs",
        "1",
        "--ae-epochs",
        "1",
        "--quiet",
        "--main-weights",
        lenet_s,
        "--extractor-weights",
        lenet_s,
        "--out",
        boosted.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("main.conv1.weight widened from 1 to 11 input channels"),
        "{stdout}"
    );
    assert!(stdout.contains("frozen extractor: 10 tensors"), "{stdout}");
    let load = |path: &Path| candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let (source, trained) = (
        load(&lenet.join("model.safetensors")),
        load(&boosted.join("model.safetensors")),
    );
    let values = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for name in ["conv1.weight", "conv2.bias", "fc1.weight"] {
        assert_eq!(
            values(&source[name]),
            values(&trained[&format!("booster.extractor.{name}")]),
            "{name}"
        );
    }
    // A plain model has no parts to load.
    let out = xtask(&["train", "lenet", "--main-weights", lenet_s, "--epochs", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("channel-boosted"),
        "{}",
        text(&out.stderr)
    );
}

/// `n` colour images of `side` pixels a class (class 0 reddish, class 1 bluish, with seeded
/// noise), as PNGs in `root/<class>/`.
fn colour_folder(root: &Path, n: usize, side: u32) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for (class, tint) in [("red", [200u8, 40, 40]), ("blue", [40u8, 40, 200])] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(side, side, |_, _| {
                image::Rgb(tint.map(|c| c.saturating_add(rng.random_range(0..50))))
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

/// Any model from scratch on an image folder, with the recipe tools of issue 26 on together
/// (the weights' moving average, mixup, TrivialAugment, gradient accumulation): one epoch of
/// ResNet-18 through the command line.
#[test]
fn train_resnet18_from_scratch_on_a_folder_with_ema_mixup_trivial_augment_and_accumulation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("images");
    colour_folder(&data, 8, 32);
    let out_dir = dir.path().join("run");
    let out = xtask(&[
        "train",
        "resnet18",
        "--data",
        data.to_str().unwrap(),
        "--model-ema",
        "--mixup",
        "0.2",
        "--aa",
        "trivial",
        "--accum-steps",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for needle in [
        "training from scratch resnet18 at 32x32",
        "x 2 accumulated (updates of 8 images)",
        "weights' EMA (decay 0.9998)",
        "augmentation auto: small colour images (32x32)",
        "validation of the weights' EMA: top-1",
        "recipe: --aa trivial, mixup 0.2 / cutmix 0 (p=1, switch 0.5)",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
    let load =
        |name: &str| candle_core::safetensors::load(out_dir.join(name), &candle_core::Device::Cpu).unwrap();
    let (model, ema) = (load("model.safetensors"), load("model_ema.safetensors"));
    let mut names: Vec<_> = model.keys().collect();
    let mut ema_names: Vec<_> = ema.keys().collect();
    names.sort();
    ema_names.sort();
    assert_eq!(
        names, ema_names,
        "the average holds every variable, buffers included"
    );
    assert!(model.contains_key("fc.weight") && model["fc.weight"].dims() == [2, 512]);
    let config = std::fs::read_to_string(out_dir.join("config.json")).unwrap();
    assert!(
        config.contains("\"blue\"") && config.contains("resnet18"),
        "{config}"
    );
    let csv = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "val_ema_top1").unwrap();
    assert!(row[column].parse::<f64>().is_ok(), "{csv}");

    // Mixed precision on the CPU is refused with the reason.
    let amp = xtask(&["train", "lenet", "--amp", "bf16", "--epochs", "1"]);
    assert!(!amp.status.success());
    assert!(
        text(&amp.stderr).contains("--amp bf16 on the CPU"),
        "{}",
        text(&amp.stderr)
    );
}
