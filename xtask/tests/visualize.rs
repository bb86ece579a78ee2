//! `cargo xtask visualize` end to end: a LeNet-5 trained for one epoch on 512 digits, then every
//! figure for a digit, each PNG decoded; and the errors of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn digit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/catalogue/predict-235.png")
}

fn train(dir: &Path) -> String {
    let run = dir.join("lenet5");
    let out = xtask(&[
        "train",
        "lenet",
        "--epochs",
        "1",
        "--limit",
        "512",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    run.to_str().unwrap().to_string()
}

#[test]
fn visualize_lenet_writes_every_figure_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let run = train(dir.path());
    let viz = dir.path().join("viz");
    let (viz_s, digit) = (viz.to_str().unwrap(), digit());
    let digit_s = digit.to_str().unwrap();
    let out = xtask(&["visualize", "lenet", "--weights", &run, "--out", viz_s, digit_s]);
    assert!(out.status.success(), "{}", text(&out));
    let tag = "predict-235";
    for file in [
        "filters.png".to_string(),
        format!("activations-pool1-{tag}.png"),
        format!("activations-pool2-{tag}.png"),
        format!("deconv-pool1-{tag}.png"),
        format!("deconv-pool2-{tag}.png"),
        format!("guided-{tag}.png"),
        format!("occlusion-{tag}.png"),
        format!("gradcam-{tag}.png"),
    ] {
        let path = viz.join(&file);
        let image = image::open(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(image.width() >= 100 && image.height() >= 100, "{file}");
    }
    // Running again refuses to replace the files.
    let out = xtask(&["visualize", "lenet", "--weights", &run, "--out", viz_s, digit_s]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("already exists: pass --overwrite"),
        "{}",
        text(&out)
    );
    // An unknown layer names the ones there are.
    let out = xtask(&[
        "visualize",
        "lenet",
        "--weights",
        &run,
        "--out",
        viz_s,
        "--overwrite",
        "--methods",
        "deconv",
        "--layers",
        "pool9",
        digit_s,
    ]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("no layer `pool9`") && t.contains("conv1, pool1, conv2, pool2"),
        "{t}"
    );
    // An unreadable image.
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let out = xtask(&[
        "visualize",
        "lenet",
        "--weights",
        &run,
        "--out",
        viz_s,
        "--overwrite",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("broken.png"), "{}", text(&out));
}

#[test]
fn deconvnet_on_a_model_without_a_plain_chain_is_refused() {
    // Fresh seeded ResNet-18 weights written by the library (no download).
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("resnet18.safetensors");
    let vars = backbone::init::SeededVarMap::new(0);
    let _model = resnet::ResNet::new(
        &resnet::ResNetConfig::resnet18().with_classes(10),
        vars.var_builder(candle_core::DType::F32, &candle_core::Device::Cpu),
    )
    .unwrap();
    vars.varmap().save(&weights).unwrap();
    let out = xtask(&[
        "visualize",
        "resnet18",
        "--weights",
        weights.to_str().unwrap(),
        "--num-classes",
        "10",
        "--out",
        dir.path().join("viz").to_str().unwrap(),
        "--methods",
        "deconv",
        digit().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("resnet18: the deconvnet needs a plain chain"), "{t}");
}
