//! Shapes, parameter counts (computed by hand, to the unit), the frozen prefixes, errors, and
//! the transfer-learning step (the input convolution widened).

mod common;

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use cbcnn::{
    transfer_main_weights, widen_input_conv, AutoencoderConfig, ChannelBoosted, ChannelBoostedConfig,
};
use common::{cbcnn_lenet, cbcnn_resnet18, count, lenet};

/// Four 3x3 convolutions with biases: `in -> 16 -> (pool) 4 -> (upsample) 16 -> in`.
fn autoencoder_params(c: usize) -> usize {
    (9 * c * 16 + 16) + (9 * 16 * 4 + 4) + (9 * 4 * 16 + 16) + (9 * 16 * c + c)
}

/// LeNet-5: conv1 `c -> 6` 5x5, conv2 `6 -> 16` 5x5, fc 400-120-84-classes.
fn lenet_params(c: usize, classes: usize) -> usize {
    (25 * c * 6 + 6) + (25 * 6 * 16 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * classes + classes)
}

/// ResNet-18: torchvision's 11,689,512 with 3 channels and 1000 classes, its 7x7 stem (64
/// filters, no bias) and `fc` (512 -> classes) swapped.
fn resnet18_params(c: usize, classes: usize) -> usize {
    11_689_512 - 64 * 3 * 49 + 64 * c * 49 - (512 * 1000 + 1000) + (512 * classes + classes)
}

#[test]
fn shapes_of_the_boosted_input_the_features_and_the_logits() {
    let vars = SeededVarMap::new(0);
    let model = cbcnn_lenet(1, 10, &vars).unwrap();
    let c = model.channels();
    assert_eq!((c.original, c.autoencoder, c.extractor, c.total()), (1, 4, 6, 11));
    let xs = Tensor::randn(0f32, 1., (2, 1, 32, 32), &Device::Cpu).unwrap();
    assert_eq!(model.boost(&xs).unwrap().dims(), [2, 11, 32, 32]);
    // The image's own channel comes first, unchanged.
    let first = model.boost(&xs).unwrap().narrow(1, 0, 1).unwrap();
    let diff = (first - &xs).unwrap().abs().unwrap().sum_all().unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    assert_eq!(model.forward_features(&xs, false).unwrap().dims(), [2, 16, 5, 5]);
    assert_eq!(model.forward_t(&xs, true).unwrap().dims(), [2, 10]);
    let info = model.feature_info();
    assert_eq!(info[0].module, "main.pool1");
    let stages = model.forward_stages(&xs, false).unwrap();
    assert_eq!(stages[0].dims(), [2, 6, 14, 14]);
    assert_eq!(model.head_prefix(), "main.fc3");
    assert_eq!(model.num_features(), 84);
    assert_eq!(model.input_spec().channels, 1);

    let vars = SeededVarMap::new(0);
    let model = cbcnn_resnet18(3, 7, &vars).unwrap();
    assert_eq!(model.channels().total(), 3 + 4 + 64);
    let xs = Tensor::zeros((1, 3, 64, 48), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.boost(&xs).unwrap().dims(), [1, 71, 64, 48]);
    assert_eq!(model.forward_t(&xs, false).unwrap().dims(), [1, 7]);
    assert_eq!(model.head_prefix(), "main.fc");
}

#[test]
fn parameter_counts_to_the_unit() {
    assert_eq!(autoencoder_params(1), 1_477);
    assert_eq!(AutoencoderConfig::small(1).params(), 1_477);
    assert_eq!(AutoencoderConfig::small(3).params(), 2_055);
    let vars = SeededVarMap::new(0);
    let model = cbcnn_lenet(1, 10, &vars).unwrap();
    let main = lenet_params(11, 10);
    let extractor = lenet_params(1, 10);
    assert_eq!(main, 63_206);
    assert_eq!(count(&vars, |n| n.starts_with("main.")), main);
    assert_eq!(count(&vars, |n| n.starts_with("booster.extractor.")), extractor);
    assert_eq!(
        count(&vars, |n| n.starts_with("booster.ae.")),
        autoencoder_params(1)
    );
    assert_eq!(count(&vars, |_| true), 126_389);
    assert_eq!(autoencoder_params(1) + main + extractor, 126_389);
    // Only the main network reaches an optimizer.
    let trained: usize = backbone::init::trainable_model_vars(vars.varmap(), &model)
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    assert_eq!(trained, main);
    assert_eq!(model.frozen_prefixes(), ["booster.ae", "booster.extractor"]);
    assert_eq!(model.reconstructors().len(), 1);

    let vars = SeededVarMap::new(0);
    cbcnn_resnet18(3, 1000, &vars).unwrap();
    let expected = autoencoder_params(3) + resnet18_params(3, 1000) + resnet18_params(71, 1000);
    assert_eq!(expected, 23_594_327);
    assert_eq!(count(&vars, |_| true), expected);
    assert_eq!(
        count(&vars, |n| n.starts_with("main.")),
        resnet18_params(71, 1000)
    );
}

#[test]
fn errors_name_what_disagrees() {
    // (Inputs of another shape or dtype: every model's, `convnets/tests/contract.rs`.) The
    // autoencoder halves and doubles: odd sizes are refused by name.
    let vars = SeededVarMap::new(0);
    let model = cbcnn_resnet18(1, 10, &vars).unwrap();
    let err = model
        .forward_t(
            &Tensor::zeros((1, 1, 33, 34), DType::F32, &Device::Cpu).unwrap(),
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("H and W even") && err.contains("33"), "{err}");
    // An extractor stage past its last.
    let config = ChannelBoostedConfig {
        name: "bad".into(),
        in_channels: 1,
        autoencoder: None,
        extractor_stage: Some(5),
    };
    let build = |c: usize, vb: VarBuilder| lenet(c, 10, vb);
    let vb = SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu);
    let err = ChannelBoosted::new(&config, vb.clone(), &build, Some(&build))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no feature stage 5") && err.contains("it has 2"),
        "{err}"
    );
    // A stage without an extractor.
    let err = ChannelBoosted::new(&config, vb.clone(), &build, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("needs both a stage and a builder"), "{err}");
    // A main network that ignores the boosted channel count.
    let config = ChannelBoostedConfig {
        extractor_stage: None,
        autoencoder: Some(AutoencoderConfig::small(1)),
        ..config
    };
    let stubborn = |_: usize, vb: VarBuilder| lenet(1, 10, vb);
    let err = ChannelBoosted::new(&config, vb, &stubborn, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("takes 1 channels, expected the 5 boosted ones"),
        "{err}"
    );
}

#[test]
fn transfer_keeps_pretrained_filters_for_the_original_channels() {
    // "Pretrained" LeNet-5 weights: a LeNet with one channel, seed 5.
    let pretrained_vars = SeededVarMap::new(5);
    lenet(1, 10, pretrained_vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let tensors: std::collections::HashMap<String, Tensor> = pretrained_vars
        .varmap()
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    let vars = SeededVarMap::new(0);
    let model = cbcnn_lenet(1, 7, &vars).unwrap();
    let get = |name: &str| {
        vars.varmap().data().lock().unwrap()[name]
            .as_tensor()
            .copy()
            .unwrap()
    };
    let fresh_stem = get("main.conv1.weight");
    let ae_before = get("booster.ae.encoder.0.weight");
    let report = transfer_main_weights(vars.varmap(), tensors.clone(), "conv1.weight", "fc3").unwrap();
    assert_eq!(report.widened, Some(("main.conv1.weight".to_string(), 1, 11)));
    assert_eq!(report.kept_fresh, ["main.fc3.bias", "main.fc3.weight"]);
    assert_eq!(report.loaded.len(), 8);
    let stem = get("main.conv1.weight");
    let same = |a: &Tensor, b: &Tensor| {
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert!(same(&stem.i((.., 0..1)).unwrap(), &tensors["conv1.weight"]));
    assert!(same(
        &stem.i((.., 1..)).unwrap(),
        &fresh_stem.i((.., 1..)).unwrap()
    ));
    assert!(same(&get("main.fc1.weight"), &tensors["fc1.weight"]));
    assert!(same(&get("booster.ae.encoder.0.weight"), &ae_before));
    assert_eq!(
        model
            .forward_t(
                &Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu).unwrap(),
                false
            )
            .unwrap()
            .dims(),
        [1, 7]
    );

    // Another architecture's tensors are refused by name, and nothing changes.
    let mut wrong = tensors;
    wrong.insert(
        "layer1.0.conv1.weight".into(),
        Tensor::zeros((1, 1, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = transfer_main_weights(vars.varmap(), wrong, "conv1.weight", "fc3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer1.0.conv1.weight") && err.contains("no such variable"),
        "{err}"
    );
    let err = widen_input_conv(
        &Tensor::zeros((6, 3, 5, 5), DType::F32, &Device::Cpu).unwrap(),
        &Tensor::zeros((6, 2, 5, 5), DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("[6, 3, 5, 5]") && err.contains("[6, 2, 5, 5]"),
        "{err}"
    );
}
