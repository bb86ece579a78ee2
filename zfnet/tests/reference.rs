//! ZFNet against an equivalent PyTorch module (fixture from
//! `scripts/gen_alexnet_nin_fixtures.py`), parameter count and map sizes computed by hand,
//! key names, the smallest input, configuration, and a few SGD steps on real MNIST digits (input
//! and weights errors: `convnets/tests/contract.rs`).

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use testkit::alexnet_nin::{
    assert_close, assert_dropout_refused, layer_shapes, pattern, sample, sgd_on_mnist, with_pattern,
};
use testkit::fixture;
use zfnet::{ZfNet, ZfNetConfig};

/// A fresh model over a plain `VarMap` ([`testkit::alexnet_nin::fresh`]).
fn fresh(config: &ZfNetConfig) -> (ZfNet, VarMap) {
    testkit::alexnet_nin::fresh(|vb| ZfNet::new(config, vb))
}

/// A model with all-zero weights, for shape tests.
fn zeros(config: &ZfNetConfig) -> ZfNet {
    ZfNet::new(config, VarBuilder::zeros(DType::F32, &Device::Cpu)).unwrap()
}

#[test]
fn outputs_and_gradients_match_pytorch() {
    let fixture = fixture!("zfnet.safetensors");
    // Inputs of Caffe's scale (mean-subtracted 0-255 pixels): on inputs of order 1, LRN is
    // almost a constant factor (see the generator script).
    let x = pattern(&[2, 3, 70, 67], 1000, 100.0);
    let targets = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
    let config = ZfNetConfig::zfnet().with_classes(10).with_dropout(0.0);
    let (model, vars) = with_pattern(|vb| ZfNet::new(&config, vb));
    assert_eq!(model.name(), "zfnet");
    let eval = model.forward_t(&x, false).unwrap();
    assert_close("zfnet.eval", &eval, &fixture["zfnet.eval"], 1e-4);
    // Train mode with dropout 0 (no batch norm here: the same function).
    let logits = model.forward_t(&x, true).unwrap();
    assert_close("zfnet.train", &logits, &fixture["zfnet.train"], 1e-4);
    let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let data = vars.data().lock().unwrap();
    for key in [
        "features.0.weight",
        "features.4.bias",
        "features.12.weight",
        "classifier.1.weight",
        "classifier.6.weight",
        "classifier.6.bias",
    ] {
        let grad = grads.get(data[key].as_tensor()).expect("gradient");
        let name = format!("zfnet.grad.{key}");
        assert_close(&name, &sample(grad), &fixture[&name], 1e-4);
    }
}

#[test]
fn minimum_input_size_is_pytorchs() {
    let fixture = fixture!("zfnet.safetensors");
    let model = zeros(&ZfNetConfig::zfnet().with_classes(4));
    let min = fixture["zfnet.min_size"].to_vec1::<i64>().unwrap()[0] as usize;
    assert_eq!(min, 47);
    assert_eq!(model.input_spec().min_size, (min, min));
    assert_eq!(model.input_spec().default_size, (224, 224));
    let x = Tensor::zeros((1, 3, min, min), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.forward_features(&x, false).unwrap().dims(), [1, 256, 1, 1]);
    assert_eq!(model.forward_t(&x, false).unwrap().dims(), [1, 4]);
}

#[test]
fn parameter_count_map_sizes_and_key_names() {
    let (model, vars) = fresh(&ZfNetConfig::zfnet());
    let data = vars.data().lock().unwrap();
    let total: usize = data.values().map(|v| v.elem_count()).sum();
    // Per layer, weights + biases.
    let by_hand = (96 * 3 * 7 * 7 + 96)
        + (256 * 96 * 5 * 5 + 256)
        + (384 * 256 * 3 * 3 + 384)
        + (384 * 384 * 3 * 3 + 384)
        + (256 * 384 * 3 * 3 + 256)
        + (4096 * 256 * 6 * 6 + 4096)
        + (4096 * 4096 + 4096)
        + (1000 * 4096 + 1000);
    assert_eq!(by_hand, 62_357_608);
    assert_eq!(total, by_hand);
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
            "features.12.bias",
            "features.12.weight",
            "features.4.bias",
            "features.4.weight",
            "features.8.bias",
            "features.8.weight",
        ]
    );
    for (key, dims) in [
        ("features.0.weight", &[96, 3, 7, 7][..]),
        ("features.4.weight", &[256, 96, 5, 5]),
        ("features.8.weight", &[384, 256, 3, 3]),
        ("features.10.weight", &[384, 384, 3, 3]),
        ("features.12.weight", &[256, 384, 3, 3]),
        ("classifier.1.weight", &[4096, 9216]),
        ("classifier.6.weight", &[1000, 4096]),
        ("classifier.6.bias", &[1000]),
    ] {
        assert_eq!(data[key].dims(), dims, "{key}");
    }
    drop(data);
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (4096, 1000, "classifier.6")
    );

    // The paper's map sizes at 224x224: 110 -> 55 -> 26 -> 13 -> 6.
    let summary = backbone::summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(summary.total_params(), by_hand);
    let conv = |out: u64, k: u64, hw: u64| out * k * hw * hw;
    let macs = conv(96, 3 * 7 * 7, 110)
        + conv(256, 96 * 5 * 5, 26)
        + conv(384, 256 * 3 * 3, 13)
        + conv(384, 384 * 3 * 3, 13)
        + conv(256, 384 * 3 * 3, 13)
        + 9216 * 4096
        + 4096 * 4096
        + 4096 * 1000;
    assert_eq!(macs, 1_168_032_896);
    assert_eq!(summary.total_macs(), macs);
    let shapes = layer_shapes(&summary);
    assert_eq!(
        shapes[..10],
        [
            ("features.0", "Conv2d", &[1, 96, 110, 110][..]),
            ("features.2", "MaxPool2d", &[1, 96, 55, 55]),
            ("features.3", "LocalResponseNorm", &[1, 96, 55, 55]),
            ("features.4", "Conv2d", &[1, 256, 26, 26]),
            ("features.6", "MaxPool2d", &[1, 256, 13, 13]),
            ("features.7", "LocalResponseNorm", &[1, 256, 13, 13]),
            ("features.8", "Conv2d", &[1, 384, 13, 13]),
            ("features.10", "Conv2d", &[1, 384, 13, 13]),
            ("features.12", "Conv2d", &[1, 256, 13, 13]),
            ("features.14", "MaxPool2d", &[1, 256, 6, 6]),
        ]
    );
}

#[test]
fn configurable_channels_and_dropout() {
    // Other class and channel counts size the stem and the head of every model:
    // `convnets/tests/contract.rs`.
    let (model, vars) = fresh(&ZfNetConfig::zfnet().with_classes(7).with_in_channels(1));
    let x = Tensor::zeros((2, 1, 50, 61), DType::F32, &Device::Cpu).unwrap();
    let features = model.forward_features(&x, false).unwrap();
    assert_eq!(features.dims(), [2, 256, 1, 1]);
    let pre_logits = model.forward_pre_logits(&features, false).unwrap();
    assert_eq!(pre_logits.dims(), [2, 4096]);
    assert_eq!(model.forward_head(&features, true).unwrap().dims(), [2, 7]);
    assert_eq!(
        vars.data().lock().unwrap()["features.0.weight"].dims(),
        [96, 1, 7, 7]
    );
    assert_dropout_refused(|p| {
        let config = ZfNetConfig::zfnet().with_dropout(p);
        ZfNet::new(&config, VarBuilder::zeros(DType::F32, &Device::Cpu))
    });
}

#[test]
fn sgd_steps_on_mnist_lower_the_loss() {
    let config = ZfNetConfig::zfnet().with_in_channels(1).with_classes(10);
    let vars = SeededVarMap::new(3);
    let model = ZfNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let (before, after, _) = sgd_on_mnist(&model, &vars, 0.5, 4);
    assert!(
        after < before - 0.02,
        "the loss should fall: {before} before, {after} after"
    );
}
