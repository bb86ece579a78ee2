//! The recipe flags of `train` (timm's names): listed by `--help`, a run with them on, and
//! clear errors for bad values.

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
fn train_help_lists_the_recipe_tools() {
    for command in ["train", "finetune"] {
        let out = xtask(&[command, "--help"]);
        assert!(out.status.success());
        let stdout = text(&out.stdout);
        for flag in [
            "--aa",
            "--reprob",
            "--remode",
            "--recount",
            "--scale",
            "--ratio",
            "--hflip",
            "--vflip",
            "--color-jitter",
            "--mixup",
            "--cutmix",
            "--cutmix-minmax",
            "--mixup-prob",
            "--mixup-switch-prob",
            "--mixup-mode",
            "rand-m9-mstd0.5",
        ] {
            assert!(stdout.contains(flag), "{command} --help should list {flag}");
        }
    }
}

#[test]
fn train_runs_with_the_recipe_tools_on() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = xtask(&[
        "train",
        "lenet",
        "--limit",
        "128",
        "--epochs",
        "1",
        "--aa",
        "rand-m9-mstd0.5",
        "--reprob",
        "0.25",
        "--vflip",
        "0.1",
        "--mixup",
        "0.2",
        "--cutmix",
        "1.0",
        "--mixup-mode",
        "elem",
        "--smoothing",
        "0.1",
        "--quiet",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("recipe: --aa rand-m9-mstd0.5"), "{stdout}");
    assert!(stdout.contains("mixup 0.2 / cutmix 1"), "{stdout}");
    assert!(stdout.contains("final test accuracy"), "{stdout}");
}

#[test]
fn bad_recipe_values_are_clear_errors() {
    let run = |extra: &[&str]| {
        let mut args = vec!["train", "lenet", "--limit", "64", "--epochs", "1", "--quiet"];
        args.extend_from_slice(extra);
        let out = xtask(&args);
        assert!(!out.status.success(), "{extra:?} should fail");
        text(&out.stderr)
    };
    let err = run(&["--aa", "rand-x3"]);
    assert!(
        err.contains("--aa `rand-x3`") && err.contains("unknown section"),
        "{err}"
    );
    let err = run(&["--aa", "augmix"]);
    assert!(err.contains("expected rand-<options>"), "{err}");
    // The digits' transform has no random resized crop for --scale to set.
    let err = run(&["--scale", "0.5", "1.0"]);
    assert!(
        err.contains("--scale and --ratio set the random resized crop"),
        "{err}"
    );
    let err = run(&["--reprob", "1.5"]);
    assert!(err.contains("1.5 is not in [0, 1]"), "{err}");
    let err = run(&["--cutmix-minmax", "0.8", "0.2"]);
    assert!(err.contains("--cutmix-minmax"), "{err}");
}
