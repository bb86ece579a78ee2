//! Network in Network (ImageNet and CIFAR layouts) against equivalent PyTorch modules (fixture
//! from `scripts/gen_alexnet_nin_fixtures.py`), parameter counts and map sizes computed by
//! hand, key names, the smallest inputs, configuration, and a few SGD steps on real MNIST digits
//! (input and weights errors: `convnets/tests/contract.rs`).

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nin::{Nin, NinConfig};
use testkit::alexnet_nin::{
    assert_close, assert_dropout_refused, layer_shapes, pattern, sample, sgd_on_mnist, with_pattern,
};
use testkit::fixture;

/// A fresh model over a plain `VarMap` ([`testkit::alexnet_nin::fresh`]).
fn fresh(config: &NinConfig) -> (Nin, VarMap) {
    testkit::alexnet_nin::fresh(|vb| Nin::new(config, vb))
}

/// A model with all-zero weights, for shape tests.
fn zeros(config: &NinConfig) -> Nin {
    Nin::new(config, VarBuilder::zeros(DType::F32, &Device::Cpu)).unwrap()
}

#[test]
fn outputs_and_gradients_match_pytorch() {
    let fixture = fixture!("nin.safetensors");
    let targets = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
    let variants = [
        (
            "nin",
            NinConfig::nin(),
            (75, 71),
            ["features.9.bias", "features.24.weight"],
        ),
        (
            "nin_cifar",
            NinConfig::nin_cifar(),
            (32, 29),
            ["features.10.bias", "features.18.weight"],
        ),
    ];
    for (name, config, (h, w), feature_keys) in variants {
        let x = pattern(&[2, 3, h, w], 1000, 1.0);
        let config = config.with_classes(10).with_dropout(0.0);
        let (model, vars) = with_pattern(|vb| Nin::new(&config, vb));
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
        let keys = ["features.0.weight"]
            .into_iter()
            .chain(feature_keys)
            .chain(["classifier.0.weight", "classifier.0.bias"]);
        for key in keys {
            let grad = grads.get(data[key].as_tensor()).expect("gradient");
            let name = format!("{name}.grad.{key}");
            assert_close(&name, &sample(grad), &fixture[&name], 1e-4);
        }
    }
}

#[test]
fn minimum_input_size_is_pytorchs() {
    let fixture = fixture!("nin.safetensors");
    for (config, expected, default) in [(NinConfig::nin(), 39, 224), (NinConfig::nin_cifar(), 4, 32)] {
        let model = zeros(&config.with_classes(4));
        let min = fixture[&format!("{}.min_size", model.name())]
            .to_vec1::<i64>()
            .unwrap()[0] as usize;
        assert_eq!(min, expected);
        assert_eq!(model.input_spec().min_size, (min, min));
        assert_eq!(model.input_spec().default_size, (default, default));
        let x = Tensor::zeros((1, 3, min, min), DType::F32, &Device::Cpu).unwrap();
        let features = model.forward_features(&x, false).unwrap();
        assert_eq!(features.dims(), [1, model.num_features(), 1, 1]);
        assert_eq!(model.forward_t(&x, false).unwrap().dims(), [1, 4]);
    }
}

#[test]
fn parameter_counts_map_sizes_and_key_names() {
    // ImageNet: per layer, weights + biases.
    let (model, vars) = fresh(&NinConfig::nin());
    let data = vars.data().lock().unwrap();
    let total: usize = data.values().map(|v| v.elem_count()).sum();
    let by_hand = (96 * 3 * 11 * 11 + 96)
        + 2 * (96 * 96 + 96)
        + (256 * 96 * 5 * 5 + 256)
        + 2 * (256 * 256 + 256)
        + (384 * 256 * 3 * 3 + 384)
        + 2 * (384 * 384 + 384)
        + (1024 * 384 * 3 * 3 + 1024)
        + (1024 * 1024 + 1024)
        + (1000 * 1024 + 1000);
    assert_eq!(by_hand, 7_595_176);
    assert_eq!(total, by_hand);
    let mut keys: Vec<String> = data.keys().filter(|k| k.ends_with(".weight")).cloned().collect();
    keys.sort_by_key(|k| {
        let index = k.split('.').nth(1).and_then(|i| i.parse::<usize>().ok());
        (k.starts_with("classifier"), index)
    });
    assert_eq!(
        keys,
        [0, 2, 4, 7, 9, 11, 14, 16, 18, 22, 24]
            .map(|i| format!("features.{i}.weight"))
            .into_iter()
            .chain(["classifier.0.weight".to_string()])
            .collect::<Vec<_>>()
    );
    assert_eq!(data.len(), 24);
    for (key, dims) in [
        ("features.0.weight", &[96, 3, 11, 11][..]),
        ("features.2.weight", &[96, 96, 1, 1]),
        ("features.7.weight", &[256, 96, 5, 5]),
        ("features.22.weight", &[1024, 384, 3, 3]),
        ("features.24.bias", &[1024]),
        ("classifier.0.weight", &[1000, 1024, 1, 1]),
        ("classifier.0.bias", &[1000]),
    ] {
        assert_eq!(data[key].dims(), dims, "{key}");
    }
    drop(data);
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (1024, 1000, "classifier.0")
    );
    let summary = backbone::summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(summary.total_params(), by_hand);
    let conv = |out: u64, k: u64, hw: u64| out * k * hw * hw;
    let macs = conv(96, 3 * 11 * 11, 54)
        + 2 * conv(96, 96, 54)
        + conv(256, 96 * 5 * 5, 27)
        + 2 * conv(256, 256, 27)
        + conv(384, 256 * 3 * 3, 13)
        + 2 * conv(384, 384, 13)
        + conv(1024, 384 * 3 * 3, 6)
        + conv(1024, 1024, 6)
        + conv(1000, 1024, 6);
    assert_eq!(macs, 1_100_188_800);
    assert_eq!(summary.total_macs(), macs);
    // Caffe's map sizes: 54 -> 27 -> 13 -> 6, then the global average.
    let shapes = layer_shapes(&summary);
    for expected in [
        ("features.0", "Conv2d", &[1, 96, 54, 54][..]),
        ("features.6", "MaxPool2d", &[1, 96, 27, 27]),
        ("features.13", "MaxPool2d", &[1, 256, 13, 13]),
        ("features.20", "MaxPool2d", &[1, 384, 6, 6]),
        ("features.24", "Conv2d", &[1, 1024, 6, 6]),
        ("classifier.0", "Conv2d", &[1, 1000, 6, 6]),
        ("classifier.2", "AdaptiveAvgPool2d", &[1, 1000, 1, 1]),
    ] {
        assert!(shapes.contains(&expected), "{expected:?} not in {shapes:?}");
    }

    // CIFAR.
    let (model, vars) = fresh(&NinConfig::nin_cifar());
    let data = vars.data().lock().unwrap();
    let total: usize = data.values().map(|v| v.elem_count()).sum();
    let by_hand = (192 * 3 * 5 * 5 + 192)
        + (160 * 192 + 160)
        + (96 * 160 + 96)
        + (192 * 96 * 5 * 5 + 192)
        + 2 * (192 * 192 + 192)
        + (192 * 192 * 3 * 3 + 192)
        + (192 * 192 + 192)
        + (10 * 192 + 10);
    assert_eq!(by_hand, 966_986);
    assert_eq!(total, by_hand);
    for (key, dims) in [
        ("features.0.weight", &[192, 3, 5, 5][..]),
        ("features.2.weight", &[160, 192, 1, 1]),
        ("features.4.weight", &[96, 160, 1, 1]),
        ("features.8.weight", &[192, 96, 5, 5]),
        ("features.16.weight", &[192, 192, 3, 3]),
        ("features.18.weight", &[192, 192, 1, 1]),
        ("classifier.0.weight", &[10, 192, 1, 1]),
    ] {
        assert_eq!(data[key].dims(), dims, "{key}");
    }
    assert_eq!(data.len(), 18);
    drop(data);
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (192, 10, "classifier.0")
    );
    let summary = backbone::summarize(&model, &[1, 3, 32, 32], &Device::Cpu).unwrap();
    assert_eq!(summary.total_params(), by_hand);
    let macs = conv(192, 3 * 5 * 5, 32)
        + conv(160, 192, 32)
        + conv(96, 160, 32)
        + conv(192, 96 * 5 * 5, 16)
        + 2 * conv(192, 192, 16)
        + conv(192, 192 * 3 * 3, 8)
        + conv(192, 192, 8)
        + conv(10, 192, 8);
    assert_eq!(macs, 222_486_528);
    assert_eq!(summary.total_macs(), macs);
    // 32 -> 16 -> 8 (the ceil-mode average pooling), then the global 8x8 average.
    let shapes = layer_shapes(&summary);
    for expected in [
        ("features.6", "MaxPool2d", &[1, 96, 16, 16][..]),
        ("features.14", "AvgPool2d", &[1, 192, 8, 8]),
        ("classifier.0", "Conv2d", &[1, 10, 8, 8]),
        ("classifier.2", "AdaptiveAvgPool2d", &[1, 10, 1, 1]),
    ] {
        assert!(shapes.contains(&expected), "{expected:?} not in {shapes:?}");
    }
}

#[test]
fn configurable_channels_and_dropout() {
    // Other class and channel counts size the stem and the head of every model:
    // `convnets/tests/contract.rs`.
    for (config, size, features, maps) in [
        (NinConfig::nin(), (70, 90), 1024, (1, 2)),
        (NinConfig::nin_cifar(), (28, 20), 192, (7, 5)),
    ] {
        let (model, vars) = fresh(&config.with_classes(7).with_in_channels(1));
        let x = Tensor::zeros((2, 1, size.0, size.1), DType::F32, &Device::Cpu).unwrap();
        let f = model.forward_features(&x, false).unwrap();
        assert_eq!(f.dims(), [2, features, maps.0, maps.1]);
        assert_eq!(model.num_features(), features);
        assert_eq!(model.forward_head(&f, true).unwrap().dims(), [2, 7]);
        assert_eq!(
            model.class_maps(&x, false).unwrap().dims(),
            [2, 7, maps.0, maps.1]
        );
        let data = vars.data().lock().unwrap();
        assert_eq!(data["classifier.0.weight"].dims(), [7, features, 1, 1]);
    }
    assert_dropout_refused(|p| {
        let config = NinConfig::nin_cifar().with_dropout(p);
        Nin::new(&config, VarBuilder::zeros(DType::F32, &Device::Cpu))
    });
}

#[test]
fn sgd_steps_on_mnist_lower_the_loss() {
    let config = NinConfig::nin().with_in_channels(1).with_classes(10);
    let vars = SeededVarMap::new(3);
    let model = Nin::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let (before, after, losses) = sgd_on_mnist(&model, &vars, 1.0, 5);
    // NiN learns slowly from PyTorch's default initialisation (PyTorch's own module does the
    // same): the signal shrinks through twelve ReLU convolutions and the class maps pass a
    // ReLU, so the logits start near 0 and only the live maps get a gradient.
    assert!(
        after < before - 0.005,
        "the loss should fall: {before} before, {after} after (training losses {losses:?})"
    );
}
