//! DenseNet against torchvision (fixtures from `scripts/gen_densenet_fixtures.py`): outputs
//! in eval and train mode, gradients, key names, parameter counts, legacy keys, and a few Adam
//! steps on real MNIST digits (every model's MACs: `convnets/tests/catalogue.rs`; its input and
//! weights errors: `convnets/tests/contract.rs`).

use backbone::catalogue::Variant;
use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use densenet::{remap_legacy, DenseNet, DenseNetConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use testkit::densenet_efficientnet::{
    adam_steps, assert_close, fill_vars, mnist, pattern, state, ShapeRecorder,
};
use testkit::{fixture, reference_keys};

fn build(config: &DenseNetConfig, seed: u64) -> (DenseNet, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let model = DenseNet::new(config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// DenseNet-121 with the script's weights.
fn densenet121_with_pattern() -> (DenseNet, SeededVarMap) {
    let (model, vars) = build(&DenseNetConfig::densenet121(), 0);
    fill_vars(&vars);
    (model, vars)
}

fn input() -> Tensor {
    pattern(&[2, 3, 64, 64], 1000, 1.0, 0.0)
}

fn targets() -> Tensor {
    Tensor::new(&[3u32, 997], &Device::Cpu).unwrap()
}

fn grad(vars: &SeededVarMap, grads: &candle_core::backprop::GradStore, name: &str) -> Tensor {
    let data = vars.varmap().data().lock().unwrap();
    grads.get(data[name].as_tensor()).expect("gradient").clone()
}

#[test]
fn eval_and_train_outputs_and_gradients_match_torchvision() {
    let fixture = fixture!("densenet121.safetensors");
    let (model, vars) = densenet121_with_pattern();
    let x = input();

    let logits = model.forward_t(&x, false).unwrap();
    assert_close("eval.logits", &logits, &fixture["eval.logits"], 1e-4);
    let loss = candle_nn::loss::cross_entropy(&logits, &targets()).unwrap();
    let grads = loss.backward().unwrap();
    let key = "features.conv0.weight";
    assert_close(
        "eval.grad.conv0",
        &grad(&vars, &grads, key),
        &fixture[&format!("eval.grad.{key}")],
        1e-4,
    );

    // Train mode: batch statistics, and norm5's running statistics updated like PyTorch's.
    let logits = model.forward_t(&x, true).unwrap();
    assert_close("train.logits", &logits, &fixture["train.logits"], 1e-4);
    {
        let data = vars.varmap().data().lock().unwrap();
        for stat in ["running_mean", "running_var"] {
            assert_close(
                &format!("train.norm5.{stat}"),
                data[&format!("features.norm5.{stat}")].as_tensor(),
                &fixture[&format!("train.norm5.{stat}")],
                1e-4,
            );
        }
    }
    let loss = candle_nn::loss::cross_entropy(&logits, &targets()).unwrap();
    let grads = loss.backward().unwrap();
    for key in [
        "features.norm5.weight",
        "features.norm5.bias",
        "features.denseblock4.denselayer16.conv2.weight",
    ] {
        // float32 PyTorch itself differs from float64 PyTorch by up to 4e-5 here.
        assert_close(
            &format!("train.grad.{key}"),
            &grad(&vars, &grads, key),
            &fixture[&format!("train.grad.{key}")],
            5e-4,
        );
    }
}

#[test]
fn key_names_and_shapes_match_torchvision() {
    let (_, vars) = build(&DenseNetConfig::densenet121(), 1);
    let data = vars.varmap().data().lock().unwrap();
    let mut ours: Vec<(String, Vec<usize>)> =
        data.iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect();
    ours.sort();
    let reference = reference_keys!("densenet121.keys.txt");
    assert_eq!(ours.len(), reference.len());
    for (a, b) in ours.iter().zip(&reference) {
        assert_eq!(a, b);
    }
}

#[test]
fn parameter_counts() {
    let variants = [
        (DenseNetConfig::densenet121(), "densenet121", 7_978_856, 1024),
        (DenseNetConfig::densenet161(), "densenet161", 28_681_000, 2208),
        (DenseNetConfig::densenet169(), "densenet169", 14_149_480, 1664),
        (DenseNetConfig::densenet201(), "densenet201", 20_013_928, 1920),
    ];
    for (config, name, params, features) in variants {
        let recorder = ShapeRecorder::default();
        let model = DenseNet::new(&config, recorder.var_builder()).unwrap();
        let total = recorder.trainable();
        assert_eq!(total, params, "{name}");
        assert_eq!(model.name(), name);
        assert_eq!(
            (model.num_features(), model.num_classes(), model.head_prefix()),
            (features, 1000, "classifier")
        );
        assert_eq!(model.input_spec().min_size, (29, 29));
        assert_eq!(model.input_spec().default_size, (224, 224));
    }
}

#[test]
fn configurable_classes_channels_and_dropout() {
    let config = DenseNetConfig::densenet121()
        .with_classes(7)
        .with_in_channels(1)
        .with_dropout(0.5);
    let (model, _) = build(&config, 3);
    let x = pattern(&[2, 1, 32, 40], 5, 1.0, 0.0);
    let features = model.forward_features(&x, false).unwrap();
    assert_eq!(features.dims(), [2, 1024, 1, 1]);
    assert_eq!(
        model.forward_pre_logits(&features, false).unwrap().dims(),
        [2, 1024]
    );
    let eval = model.forward_head(&features, false).unwrap();
    assert_eq!(eval.dims(), [2, 7]);
    assert_close(
        "eval is deterministic",
        &model.forward_t(&x, false).unwrap(),
        &eval,
        0.0,
    );
    // Dropout after every dense layer, in training only, from the seeded generator.
    backbone::init::seed(11);
    let a = model.forward_t(&x, true).unwrap();
    backbone::init::seed(11);
    let b = model.forward_t(&x, true).unwrap();
    backbone::init::seed(12);
    let c = model.forward_t(&x, true).unwrap();
    assert_close("same seed, same masks", &a, &b, 0.0);
    let diff = (a - c)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff > 1e-3, "other seed, other masks: {diff}");
}

/// `norm1` -> `norm.1` (the spelling of old torchvision checkpoints) for every dense-layer key.
fn to_legacy(key: &str) -> String {
    let mut key = key.to_string();
    if key.contains("denselayer") {
        for kind in ["norm", "conv"] {
            for digit in ["1", "2"] {
                key = key.replace(&format!(".{kind}{digit}."), &format!(".{kind}.{digit}."));
            }
        }
    }
    key
}

fn save(dir: &Path, name: &str, tensors: &HashMap<String, Tensor>) -> PathBuf {
    let path = dir.join(name);
    candle_core::safetensors::save(tensors, &path).unwrap();
    path
}

#[test]
fn legacy_key_spelling_loads() {
    let fixture = fixture!("densenet121.safetensors");
    let (_, vars) = densenet121_with_pattern();
    let legacy: HashMap<String, Tensor> = state(&vars)
        .into_iter()
        .map(|(k, v)| (to_legacy(&k), v))
        .collect();
    assert!(legacy.contains_key("features.denseblock3.denselayer24.norm.2.running_var"));
    assert!(legacy.contains_key("features.transition1.norm.weight"));
    let dir = tempfile::tempdir().unwrap();
    let path = save(dir.path(), "densenet121-legacy.safetensors", &legacy);
    let variant = Variant::find(densenet::VARIANTS, "densenet121").unwrap();
    let (model, info) = variant
        .load(&path, &variant.reference_options(), DType::F32, &Device::Cpu)
        .unwrap();
    assert_eq!(info.layout, "legacy torchvision (norm.1)");
    let logits = model.forward_t(&input(), false).unwrap();
    assert_close("legacy eval.logits", &logits, &fixture["eval.logits"], 1e-4);
    // remap_legacy is exactly the inverse of the renaming above.
    let back = remap_legacy(legacy);
    let mut keys: Vec<String> = back.into_keys().collect();
    let mut expected: Vec<String> = state(&vars).into_keys().collect();
    keys.sort();
    expected.sort();
    assert_eq!(keys, expected);
}

/// Six steps of Adam (PyTorch's defaults, lr 1e-3) on 16 digits. Adam's steps are bounded by the
/// learning rate whatever the gradients' scale, so the trajectory stays in the smooth regime where
/// the rounding of the matrix-product kernel a CPU picks (AVX2, AVX-512, thread count) moves the
/// losses by far less than the margin: the loss measured in training mode (batch statistics; no
/// dropout) before and after training must fall to under a quarter. (Six plain SGD steps at lr
/// 0.05, the previous version of this test, took a path that changed visibly with the thread count
/// from the third step on.)
#[test]
fn adam_on_mnist_digits_lowers_the_loss() {
    const STEPS: u64 = 6;
    let (xs, ys) = mnist(16, 32);
    let config = DenseNetConfig::densenet121().with_in_channels(1).with_classes(10);
    let (model, vars) = build(&config, 6);
    let loss = || {
        let logits = model.forward_t(&xs, true).unwrap();
        candle_nn::loss::cross_entropy(&logits, &ys).unwrap()
    };
    let (before, after, losses) = adam_steps(&vars, STEPS, 0, |_| loss());
    assert!(
        after < 0.25 * before,
        "the loss should fall: {before} before, {after} after (training losses {losses:?})"
    );
}
