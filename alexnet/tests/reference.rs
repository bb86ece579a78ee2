//! AlexNet (torchvision's and the 2012 paper's layouts) against PyTorch (fixture from
//! `scripts/gen_alexnet_nin_fixtures.py`), the smallest input, parameter counts, key names,
//! configuration, and a few SGD steps on real MNIST digits (input and weights errors:
//! `convnets/tests/contract.rs`).

use alexnet::{AlexNet, AlexNetConfig};
use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use testkit::alexnet_nin::{
    assert_close, assert_dropout_refused, layer_shapes, pattern, sample, sgd_on_mnist, with_pattern,
};
use testkit::fixture;

/// A fresh model over a plain `VarMap` ([`testkit::alexnet_nin::fresh`]).
fn fresh(config: &AlexNetConfig) -> (AlexNet, VarMap) {
    testkit::alexnet_nin::fresh(|vb| AlexNet::new(config, vb))
}

/// A model with all-zero weights, for shape tests.
fn zeros(config: &AlexNetConfig) -> AlexNet {
    AlexNet::new(config, VarBuilder::zeros(DType::F32, &Device::Cpu)).unwrap()
}

#[test]
fn outputs_and_gradients_match_pytorch() {
    let fixture = fixture!("alexnet.safetensors");
    let targets = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
    // The input scale: 100 (Caffe's mean-subtracted 0-255 pixels) where there is LRN, which is
    // almost a constant factor on inputs of order 1 (see the generator script).
    let variants = [
        (
            "alexnet",
            AlexNetConfig::alexnet(),
            1.0,
            ["features.0.weight", "features.10.bias"],
        ),
        (
            "alexnet_2012",
            AlexNetConfig::alexnet_2012(),
            100.0,
            ["features.0.weight", "features.4.bias"],
        ),
    ];
    for (name, config, scale, feature_keys) in variants {
        let x = pattern(&[2, 3, 96, 99], 1000, scale);
        let config = config.with_classes(10).with_dropout(0.0);
        let (model, vars) = with_pattern(|vb| AlexNet::new(&config, vb));
        assert_eq!(model.name(), name);
        let eval = model.forward_t(&x, false).unwrap();
        assert_close(
            &format!("{name}.eval"),
            &eval,
            &fixture[&format!("{name}.eval")],
            1e-4,
        );
        // Train mode with dropout 0 (no batch norm here: the same function).
        let logits = model.forward_t(&x, true).unwrap();
        assert_close(
            &format!("{name}.train"),
            &logits,
            &fixture[&format!("{name}.train")],
            1e-4,
        );
        let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
        let grads = loss.backward().unwrap();
        let data = vars.data().lock().unwrap();
        let keys = feature_keys.into_iter().chain([
            "classifier.1.weight",
            "classifier.6.weight",
            "classifier.6.bias",
        ]);
        for key in keys {
            let grad = grads.get(data[key].as_tensor()).expect("gradient");
            let name = format!("{name}.grad.{key}");
            assert_close(&name, &sample(grad), &fixture[&name], 1e-4);
        }
    }
}

#[test]
fn minimum_input_size_is_pytorchs() {
    let fixture = fixture!("alexnet.safetensors");
    for config in [AlexNetConfig::alexnet(), AlexNetConfig::alexnet_2012()] {
        let model = zeros(&config.with_classes(4));
        let min = fixture[&format!("{}.min_size", model.name())]
            .to_vec1::<i64>()
            .unwrap()[0] as usize;
        assert_eq!(min, 63);
        assert_eq!(model.input_spec().min_size, (min, min));
        assert_eq!(model.input_spec().default_size, (224, 224));
        let x = Tensor::zeros((1, 3, min, min), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(model.forward_features(&x, false).unwrap().dims(), [1, 256, 1, 1]);
        assert_eq!(model.forward_t(&x, false).unwrap().dims(), [1, 4]);
    }
}

#[test]
fn parameter_counts_macs_and_key_names() {
    // torchvision's AlexNet: its published num_params.
    let config = AlexNetConfig::alexnet();
    let (model, vars) = fresh(&config);
    let data = vars.data().lock().unwrap();
    let total: usize = data.values().map(|v| v.elem_count()).sum();
    assert_eq!(total, 61_100_840);
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "classifier.1.bias",
            "classifier.1.weight",
            "classifier.4.bias",
            "classifier.4.weight",
            "classifier.6.bias",
            "classifier.6.weight",
            "features.0.bias",
            "features.0.weight",
            "features.10.bias",
            "features.10.weight",
            "features.3.bias",
            "features.3.weight",
            "features.6.bias",
            "features.6.weight",
            "features.8.bias",
            "features.8.weight",
        ]
    );
    assert_eq!(data["features.0.weight"].dims(), [64, 3, 11, 11]);
    assert_eq!(data["features.3.weight"].dims(), [192, 64, 5, 5]);
    assert_eq!(data["features.10.weight"].dims(), [256, 256, 3, 3]);
    assert_eq!(data["classifier.1.weight"].dims(), [4096, 9216]);
    assert_eq!(data["classifier.6.weight"].dims(), [1000, 4096]);
    drop(data);
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (4096, 1000, "classifier.6")
    );
    // torchvision publishes 0.714 GFLOPS (multiply-accumulates) at 224x224.
    let summary = backbone::summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(summary.total_params(), 61_100_840);
    let conv = |out: u64, k: u64, hw: u64| out * k * hw * hw;
    let macs = conv(64, 3 * 11 * 11, 55)
        + conv(192, 64 * 5 * 5, 27)
        + conv(384, 192 * 3 * 3, 13)
        + conv(256, 384 * 3 * 3, 13)
        + conv(256, 256 * 3 * 3, 13)
        + 9216 * 4096
        + 4096 * 4096
        + 4096 * 1000;
    assert_eq!(macs, 714_188_480);
    assert_eq!(summary.total_macs(), macs);

    // The 2012 layout: per layer, weights + biases.
    let config = AlexNetConfig::alexnet_2012();
    let (model, vars) = fresh(&config);
    let data = vars.data().lock().unwrap();
    let total: usize = data.values().map(|v| v.elem_count()).sum();
    let by_hand = (96 * 3 * 11 * 11 + 96)
        + (256 * 96 * 5 * 5 + 256)
        + (384 * 256 * 3 * 3 + 384)
        + (384 * 384 * 3 * 3 + 384)
        + (256 * 384 * 3 * 3 + 256)
        + (4096 * 256 * 6 * 6 + 4096)
        + (4096 * 4096 + 4096)
        + (1000 * 4096 + 1000);
    assert_eq!(by_hand, 62_378_344);
    assert_eq!(total, by_hand);
    for (key, dims) in [
        ("features.0.weight", &[96, 3, 11, 11][..]),
        ("features.4.weight", &[256, 96, 5, 5]),
        ("features.8.weight", &[384, 256, 3, 3]),
        ("features.10.weight", &[384, 384, 3, 3]),
        ("features.12.weight", &[256, 384, 3, 3]),
        ("features.12.bias", &[256]),
        ("classifier.1.weight", &[4096, 9216]),
    ] {
        assert_eq!(data[key].dims(), dims, "{key}");
    }
    assert_eq!(data.len(), 16);
    drop(data);
    assert_eq!(model.head_prefix(), "classifier.6");
    let summary = backbone::summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(summary.total_params(), by_hand);
    let macs = conv(96, 3 * 11 * 11, 55)
        + conv(256, 96 * 5 * 5, 27)
        + conv(384, 256 * 3 * 3, 13)
        + conv(384, 384 * 3 * 3, 13)
        + conv(256, 384 * 3 * 3, 13)
        + 9216 * 4096
        + 4096 * 4096
        + 4096 * 1000;
    assert_eq!(macs, 1_135_256_096);
    assert_eq!(summary.total_macs(), macs);
    // The paper's map sizes at 224x224: 55 -> 27 -> 13 -> 6, LRN before the first two pools.
    let shapes = layer_shapes(&summary);
    assert_eq!(
        shapes[..5],
        [
            ("features.0", "Conv2d", &[1, 96, 55, 55][..]),
            ("features.2", "LocalResponseNorm", &[1, 96, 55, 55]),
            ("features.3", "MaxPool2d", &[1, 96, 27, 27]),
            ("features.4", "Conv2d", &[1, 256, 27, 27]),
            ("features.6", "LocalResponseNorm", &[1, 256, 27, 27]),
        ]
    );
    assert!(shapes.contains(&("features.14", "MaxPool2d", &[1, 256, 6, 6])));
}

#[test]
fn configurable_channels_and_dropout() {
    // Other class and channel counts size the stem and the head of every model:
    // `convnets/tests/contract.rs`.
    for (config, conv1) in [
        (AlexNetConfig::alexnet(), 64),
        (AlexNetConfig::alexnet_2012(), 96),
    ] {
        let (model, vars) = fresh(&config.with_classes(7).with_in_channels(1));
        let x = Tensor::zeros((2, 1, 70, 64), DType::F32, &Device::Cpu).unwrap();
        let features = model.forward_features(&x, false).unwrap();
        assert_eq!(features.dims(), [2, 256, 1, 1]);
        let pre_logits = model.forward_pre_logits(&features, false).unwrap();
        assert_eq!(pre_logits.dims(), [2, 4096]);
        assert_eq!(model.forward_head(&features, true).unwrap().dims(), [2, 7]);
        assert_eq!(
            vars.data().lock().unwrap()["features.0.weight"].dims()[..2],
            [conv1, 1]
        );
    }
    assert_dropout_refused(|p| {
        let config = AlexNetConfig::alexnet().with_dropout(p);
        AlexNet::new(&config, VarBuilder::zeros(DType::F32, &Device::Cpu))
    });
}

#[test]
fn sgd_steps_on_mnist_lower_the_loss() {
    let config = AlexNetConfig::alexnet().with_in_channels(1).with_classes(10);
    let vars = SeededVarMap::new(3);
    let model = AlexNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let (before, after, _) = sgd_on_mnist(&model, &vars, 0.5, 4);
    assert!(
        after < before - 0.02,
        "the loss should fall: {before} before, {after} after"
    );
}
