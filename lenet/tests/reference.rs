//! LeNet-5 against PyTorch (fixture from `scripts/gen_lenet_fixtures.py`), parameter counts,
//! key names and seeded initialisation (input and weights errors: `convnets/tests/contract.rs`).

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use lenet::{LeNet, LeNetConfig};
use std::collections::HashMap;

/// `scale * sin(0.37 * i + index)`, the generator script's `pattern`.
fn pattern(shape: &[usize], index: f64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| (scale * (0.37 * i as f64 + index).sin()) as f32)
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lenet5.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// The model with the script's weights, as trainable variables.
fn model_with_pattern(config: LeNetConfig) -> (LeNet, SeededVarMap) {
    let vars = SeededVarMap::new(0);
    let model = LeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let data = vars.varmap().data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (j, name) in names.into_iter().enumerate() {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let fan_in = if dims.len() > 1 {
            dims[1..].iter().product::<usize>()
        } else {
            10
        };
        var.set(&pattern(&dims, j as f64, 1.0 / (fan_in as f64).sqrt()))
            .unwrap();
    }
    drop(data);
    (model, vars)
}

fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, rel: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= rel * scale, "{name}[{i}]: ours {x}, PyTorch {y}");
    }
}

#[test]
fn logits_and_gradients_match_pytorch() {
    let fixture = fixture();
    let x = pattern(&[3, 1, 32, 32], 0.5, 1.0);
    let targets = Tensor::new(&[3u32, 7, 1], &Device::Cpu).unwrap();
    let variants = [
        ("lenet5", LeNetConfig::lenet5()),
        ("lenet5_tanh", LeNetConfig::lenet5_tanh()),
        ("lenet5_max", LeNetConfig::lenet5_max()),
    ];
    for (name, config) in variants {
        let (model, vars) = model_with_pattern(config);
        assert_eq!(model.name(), name);
        let logits = model.forward_t(&x, false).unwrap();
        assert_close(
            &format!("{name}.logits"),
            &logits,
            &fixture[&format!("{name}.logits")],
            1e-5,
        );
        let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
        let grads = loss.backward().unwrap();
        let data = vars.varmap().data().lock().unwrap();
        for key in ["conv1.weight", "conv2.bias", "fc3.weight"] {
            let grad = grads.get(data[key].as_tensor()).expect("gradient");
            assert_close(
                &format!("{name}.grad.{key}"),
                grad,
                &fixture[&format!("{name}.grad.{key}")],
                1e-4,
            );
        }
    }
}

#[test]
fn parameter_count_and_key_names() {
    let vars = SeededVarMap::new(1);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let data = vars.varmap().data().lock().unwrap();
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "conv1.bias",
            "conv1.weight",
            "conv2.bias",
            "conv2.weight",
            "fc1.bias",
            "fc1.weight",
            "fc2.bias",
            "fc2.weight",
            "fc3.bias",
            "fc3.weight"
        ]
    );
    let total: usize = data.values().map(|v| v.elem_count()).sum();
    assert_eq!(total, 61_706);
    assert_eq!(data["conv1.weight"].dims(), [6, 1, 5, 5]);
    assert_eq!(data["fc1.weight"].dims(), [120, 400]);
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (84, 10, "fc3")
    );
}

#[test]
fn configurable_classes_and_channels() {
    let vars = SeededVarMap::new(1);
    let config = LeNetConfig::lenet5().with_classes(7).with_in_channels(3);
    let model = LeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.forward_t(&x, true).unwrap().dims(), [2, 7]);
    let features = model.forward_features(&x, false).unwrap();
    assert_eq!(features.dims(), [2, 16, 5, 5]);
    assert_eq!(
        model.forward_pre_logits(&features, false).unwrap().dims(),
        [2, 84]
    );
    assert_eq!(model.forward_head(&features, false).unwrap().dims(), [2, 7]);
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let weights = |seed| {
        let vars = SeededVarMap::new(seed);
        LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
        let data = vars.varmap().data().lock().unwrap();
        data["conv1.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(weights(3), weights(3));
    assert_ne!(weights(3), weights(4));
    // PyTorch's default init: uniform in +-1/sqrt(fan_in) = +-0.2 for conv1.
    assert!(weights(3).iter().all(|w| w.abs() <= 0.2));
}
