//! Trust, round two: the cases a hostile round found on the surfaces added since the first
//! (bench, its peers, visualize, predict's run folders, finetune's image folders, resume),
//! each failing before its fix: a clear error naming the problem, or the sensible result;
//! never a panic, a hang or a silent result.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn xtask_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run xtask")
}

fn xtask(args: &[&str]) -> Output {
    xtask_env(args, &[])
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &Output) -> String {
    let t = text(out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    t
}

fn refused(out: &Output, words: &[&str]) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    for w in words {
        assert!(t.contains(w), "should say `{w}`: {t}");
    }
    t
}

/// A small LeNet-5 run folder (model.safetensors + config.json + checkpoints).
fn lenet_run(dir: &Path) -> PathBuf {
    let run = dir.join("lenet5");
    ok(&xtask(&[
        "train",
        "lenet",
        "--epochs",
        "1",
        "--limit",
        "256",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]));
    run
}

/// A 28x28 grey digit-like PNG.
fn digit_png(path: &Path, seed: u32) {
    image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if (8 + seed % 3..20).contains(&x) && (4..24).contains(&y) {
            255
        } else {
            (seed * 7 % 50) as u8
        }])
    })
    .save(path)
    .unwrap();
}

fn executable(path: &Path, script: &str) {
    std::fs::write(path, script).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The regression: `bench alexnet` and `bench nin` (a family and a variant of the same name)
/// failed in the row's child process. Every family's bench row runs: one variant of each (the
/// one named as the family where there is one), inference at batch 1.
#[test]
fn bench_runs_a_row_of_every_family() {
    let catalogue = convnets::catalogue();
    let mut names: Vec<&str> = Vec::new();
    for family in convnets::families() {
        let members: Vec<_> = catalogue.iter().filter(|v| v.family == family).collect();
        let pick = members
            .iter()
            .find(|v| v.name == family)
            .or_else(|| members.iter().min_by_key(|v| v.macs))
            .unwrap();
        names.push(pick.name);
    }
    assert!(names.contains(&"alexnet") && names.contains(&"nin"), "{names:?}");
    let args: Vec<&str> = ["bench"]
        .into_iter()
        .chain(names.iter().copied())
        .chain(["--batch-size", "1", "--warmup", "0", "--iters", "1"])
        .collect();
    let t = ok(&xtask(&args));
    for name in &names {
        assert!(t.contains(&format!("] {name} infer batch 1:")), "{name}: {t}");
    }
}

/// Peers that never return are stopped after --peer-timeout, peers that print nothing leave a
/// warning per missing figure (and the columns, empty): never a hang or a silent table.
#[test]
fn peers_that_hang_or_print_nothing_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hang.sh");
    executable(&hang, "#!/bin/sh\nsleep 1000\n");
    // Imports fine (`-c ...`), then hangs on the benchmark itself.
    let hang_later = dir.path().join("hang-later.sh");
    executable(
        &hang_later,
        "#!/bin/sh\nif [ \"$1\" = \"-c\" ]; then exit 0; fi\nsleep 1000\n",
    );
    let silent = dir.path().join("silent.sh");
    executable(&silent, "#!/bin/sh\nexit 0\n");
    let bench = |python: &Path, compare: &str| {
        let start = Instant::now();
        let out = xtask(&[
            "bench",
            "lenet5",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--compare",
            compare,
            "--python",
            python.to_str().unwrap(),
            "--peer-timeout",
            "1",
        ]);
        assert!(start.elapsed() < Duration::from_secs(120), "{}", text(&out));
        out
    };
    refused(&bench(&hang, "torch"), &["did not finish within 1 s"]);
    let t = ok(&bench(&hang_later, "torch"));
    assert!(
        t.contains("warning: no PyTorch lenet5 infer batch 16 figure")
            && t.contains("did not finish within 1 s"),
        "{t}"
    );
    let t = ok(&bench(&silent, "torch,ort"));
    for peer in ["PyTorch", "ONNX Runtime"] {
        assert!(
            t.contains(&format!("warning: no {peer} lenet5 infer batch 16 figure"))
                && t.contains("printed no JSON row"),
            "{peer}: {t}"
        );
    }
    assert!(
        t.contains("torch samples/s") && t.contains("ORT samples/s") && t.contains("2 peer figures missing"),
        "{t}"
    );
}

/// `bench --out` that cannot be written fails before measuring and leaves no file.
#[test]
fn bench_out_that_cannot_be_written_fails_first() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("rows.csv");
    let t = refused(
        &xtask(&["bench", "lenet5", "--iters", "1", "--out", out.to_str().unwrap()]),
        &["--out"],
    );
    assert!(!t.contains("samples/s"), "measured first: {t}");
    let t = refused(
        &xtask(&[
            "bench",
            "lenet5",
            "--iters",
            "1",
            "--out",
            dir.path().to_str().unwrap(),
        ]),
        &["is a directory"],
    );
    assert!(!t.contains("samples/s"), "measured first: {t}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

/// The environment's thread count is capped as --threads is: RAYON_NUM_THREADS=100000 used to
/// hang `train`.
#[test]
fn environment_thread_counts_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask_env(
        &[
            "train",
            "lenet",
            "--epochs",
            "1",
            "--limit",
            "128",
            "--out",
            dir.path().join("run").to_str().unwrap(),
        ],
        &[("RAYON_NUM_THREADS", "100000")],
    );
    let t = ok(&out);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(
        t.contains("RAYON_NUM_THREADS 100000 capped to")
            && t.contains(&format!("batch 64, {} threads", 4 * cores)),
        "{t}"
    );
}

/// A negative number reaches the flag's range check, not clap's advice to write `-- -1`.
#[test]
fn negative_numbers_are_checked_as_values() {
    let t = text(&xtask(&["train", "lenet", "--lr", "-1"]));
    assert!(t.contains("-1 is not > 0") && !t.contains("-- -1"), "{t}");
    let t = text(&xtask(&[
        "finetune",
        "lenet",
        "--weights",
        "w",
        "--data",
        "d",
        "--epochs",
        "-3",
    ]));
    assert!(t.contains("--epochs") && !t.contains("-- -3"), "{t}");
}

/// A two-class folder whose every image of one class is unreadable: refused once the
/// unreadable files are dropped (with the feature cache and without), naming them; it used to
/// train on the one class left and report 100%.
#[test]
fn finetune_refuses_what_unreadable_files_leave_as_one_class() {
    let dir = tempfile::tempdir().unwrap();
    let run = lenet_run(dir.path());
    let data = dir.path().join("data");
    for class in ["good", "broken"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
    }
    for i in 0..12 {
        digit_png(&data.join("good").join(format!("{i}.png")), i);
        std::fs::write(data.join("broken").join(format!("{i}.png")), b"not a png").unwrap();
    }
    for extra in [&[][..], &["--train-backbone"][..]] {
        let out_dir = dir.path().join(format!("ft{}", extra.len()));
        let args: Vec<&str> = [
            "finetune",
            "lenet",
            "--weights",
            run.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--quiet",
            "--out",
            out_dir.to_str().unwrap(),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
        let t = refused(
            &xtask(&args),
            &["one class only (`good`)", "could not be read", "0.png"],
        );
        assert!(!t.contains("100.00%"), "{t}");
        assert!(!out_dir.join("model.safetensors").exists());
    }
}

/// predict's run folders: a config.json that is a directory is an error; one without a
/// pretrained_cfg keeps LeNet's own preprocessing (one grey 32x32 channel) instead of assuming
/// ImageNet's; absurd stds are refused, under the flag's name when they come from a flag.
#[test]
fn predict_reads_run_folders_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let run = lenet_run(dir.path());
    let png = dir.path().join("digit.png");
    digit_png(&png, 0);
    let predict = |weights: &Path, extra: &[&str]| {
        let args: Vec<&str> = ["predict", "lenet", "--weights", weights.to_str().unwrap()]
            .into_iter()
            .chain(extra.iter().copied())
            .chain([png.to_str().unwrap()])
            .collect();
        xtask(&args)
    };
    let folder = |name: &str, config: Option<&str>| -> PathBuf {
        let f = dir.path().join(name);
        std::fs::create_dir_all(&f).unwrap();
        std::fs::copy(run.join("model.safetensors"), f.join("model.safetensors")).unwrap();
        match config {
            Some(text) => std::fs::write(f.join("config.json"), text).unwrap(),
            None => std::fs::create_dir(f.join("config.json")).unwrap(),
        }
        f
    };
    refused(
        &predict(&folder("dir-config", None), &[]),
        &["config.json", "not a regular file"],
    );
    let labels: Vec<String> = (0..10).map(|d| format!("\"d{d}\"")).collect();
    let bare = folder(
        "bare-config",
        Some(&format!(
            r#"{{"architecture": "lenet5", "num_classes": 10, "label_names": [{}]}}"#,
            labels.join(",")
        )),
    );
    let t = ok(&predict(&bare, &[]));
    assert!(t.contains("gives no input_size") && t.contains("%  d"), "{t}");
    assert!(!t.contains("adapted"), "{t}");
    let tiny_std = folder(
        "tiny-std",
        Some(
            r#"{"architecture": "lenet5", "num_classes": 10,
            "pretrained_cfg": {"input_size": [1, 32, 32], "mean": [0.1307], "std": [1e-30]}}"#,
        ),
    );
    refused(&predict(&tiny_std, &[]), &["pretrained_cfg.std", "outside"]);
    let t = refused(&predict(&run, &["--std", "1e-30"]), &["--std", "outside"]);
    assert!(!t.contains("pretrained_cfg"), "{t}");
    let t = refused(
        &predict(&run, &["--mean", "0.1,0.2"]),
        &["--mean: 2 value(s) for 1 input channel(s)"],
    );
    assert!(!t.contains("pretrained_cfg"), "{t}");
}

/// visualize names each image's figures apart: two `same.png` in different folders, and file
/// names in other scripts (`猫.png`, `犬.png`), which all became `gradcam-_.png`.
#[test]
fn visualize_never_overwrites_its_own_figures() {
    let dir = tempfile::tempdir().unwrap();
    let run = lenet_run(dir.path());
    let mut images = Vec::new();
    for (i, rel) in ["a/same.png", "b/same.png", "猫.png", "犬.png"]
        .iter()
        .enumerate()
    {
        let path = dir.path().join("img").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        digit_png(&path, i as u32);
        images.push(path);
    }
    let out_dir = dir.path().join("V");
    let args: Vec<&str> = [
        "visualize",
        "lenet",
        "--weights",
        run.to_str().unwrap(),
        "--methods",
        "gradcam",
        "--out",
        out_dir.to_str().unwrap(),
    ]
    .into_iter()
    .chain(images.iter().map(|p| p.to_str().unwrap()))
    .collect();
    ok(&xtask(&args));
    let mut written: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            "gradcam-same-1.png",
            "gradcam-same-2.png",
            "gradcam-犬.png",
            "gradcam-猫.png"
        ]
    );
}

/// visualize loads what predict and finetune load: a GoogLeNet file with its auxiliary heads
/// (torchvision's layout) used to be refused (`aux1.conv.bn.bias: present in the file but not
/// used`).
#[test]
fn visualize_takes_a_googlenet_file_with_auxiliary_heads() {
    use backbone::catalogue::ModelOptions;
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("googlenet.safetensors");
    let vars = backbone::init::SeededVarMap::new(0);
    let variant = convnets::find_model("googlenet").unwrap();
    variant
        .create(
            &ModelOptions {
                num_classes: 10,
                in_channels: 3,
                aux_logits: true,
            },
            vars.var_builder(candle_core::DType::F32, &candle_core::Device::Cpu),
        )
        .unwrap();
    vars.varmap().save(&weights).unwrap();
    let keys = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    assert!(keys.contains_key("aux1.conv.bn.bias"));
    let png = dir.path().join("x.png");
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 128]))
        .save(&png)
        .unwrap();
    ok(&xtask(&[
        "visualize",
        "googlenet",
        "--weights",
        weights.to_str().unwrap(),
        "--num-classes",
        "10",
        "--methods",
        "gradcam",
        "--out",
        dir.path().join("V").to_str().unwrap(),
        png.to_str().unwrap(),
    ]));
    assert!(dir.path().join("V/gradcam-x.png").is_file());
}

/// --quiet keeps warnings: a corrupt latest checkpoint set aside on --resume is said.
#[test]
fn quiet_keeps_the_warning_of_a_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let args: Vec<&str> = [
            "train",
            "lenet",
            "--limit",
            "128",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
        xtask(&args)
    };
    ok(&train(&["--epochs", "2"]));
    let latest = run.join("epoch-002.safetensors");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() / 2]).unwrap();
    let t = ok(&train(&["--epochs", "3", "--resume"]));
    assert!(
        t.contains("warning: epoch 2 cannot be resumed") && t.contains(".corrupt"),
        "{t}"
    );
    assert!(run.join("epoch-002.safetensors.corrupt").is_file());
}

/// Run files and other outputs are created as File::create would (the umask's mode), not 0600.
#[cfg(unix)]
#[test]
fn outputs_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = lenet_run(dir.path());
    let plain = dir.path().join("plain");
    std::fs::File::create(&plain).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let expected = mode(&plain);
    for file in [
        "model.safetensors",
        "config.json",
        "metrics.csv",
        "metrics.json",
        "curves.png",
        "run.json",
        "epoch-001.safetensors",
    ] {
        assert_eq!(mode(&run.join(file)), expected, "{file}");
    }
}

/// Resume notices an image replaced by another of a different size under the same name (the
/// data fingerprint covered the labels and class names only).
#[test]
fn resume_notices_replaced_images() {
    let dir = tempfile::tempdir().unwrap();
    let run = lenet_run(dir.path());
    let data = dir.path().join("data");
    for class in ["a", "b"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..6 {
            digit_png(&data.join(class).join(format!("{i}.png")), i + class.len() as u32);
        }
    }
    let out_dir = dir.path().join("ft");
    let finetune = |epochs: &str, extra: &[&str]| {
        let args: Vec<&str> = [
            "finetune",
            "lenet",
            "--weights",
            run.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            epochs,
            "--batch-size",
            "4",
            "--quiet",
            "--out",
            out_dir.to_str().unwrap(),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
        xtask(&args)
    };
    ok(&finetune("1", &[]));
    image::GrayImage::from_fn(40, 40, |x, _| image::Luma([x as u8]))
        .save(data.join("a").join("0.png"))
        .unwrap();
    refused(&finetune("2", &["--resume"]), &["train files", "--allow-changes"]);
}

/// The new round's own finds: an --out that is a file (train, visualize), an image size the
/// model cannot take (refused before an image is decoded to 16384x16384), a --val that does
/// not exist (named as --val).
#[test]
fn places_and_sizes_are_checked_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let run = lenet_run(dir.path());
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let png = dir.path().join("d.png");
    digit_png(&png, 1);
    let (run_s, file_s, png_s) = (
        run.to_str().unwrap(),
        file.to_str().unwrap(),
        png.to_str().unwrap(),
    );
    refused(
        &xtask(&[
            "train", "lenet", "--epochs", "1", "--limit", "128", "--out", file_s,
        ]),
        &["it is not a folder", "--out"],
    );
    refused(
        &xtask(&["visualize", "lenet", "--weights", run_s, "--out", file_s, png_s]),
        &["is not a folder"],
    );
    refused(
        &xtask(&[
            "predict",
            "lenet",
            "--weights",
            run_s,
            "--img-size",
            "16384",
            png_s,
        ]),
        &["does not take 16384x16384 images"],
    );
    refused(
        &xtask(&[
            "finetune",
            "lenet",
            "--weights",
            run_s,
            "--data",
            dir.path().to_str().unwrap(),
            "--val",
            "/nonexistent",
        ]),
        &["--val /nonexistent"],
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}
