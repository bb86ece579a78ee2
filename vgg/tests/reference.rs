//! VGG against torchvision (fixtures from `scripts/gen_vgg_fixtures.py`): logits in eval and
//! train mode, batch-norm running statistics, gradients, the state-dict keys and shapes of all
//! eight variants, parameter counts, configurable classes and channels, the head's input check
//! (every model's input errors: `convnets/tests/contract.rs`).

mod common;

use backbone::init::SeededVarMap;
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{assert_close, hashed, is_buffer, model_with_fill, variable_shapes};
use std::collections::{BTreeMap, HashMap};
use vgg::{Depth, Vgg, VggConfig};

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vgg.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// Eval logits, train logits (batch statistics, no dropout), running statistics after the
/// train pass and cross-entropy gradients, against torchvision with the script's weights.
fn check_against_torchvision(config: VggConfig) {
    let fixture = fixture();
    let name = config.name();
    let config = config.with_classes(10).with_dropout(0.0);
    let (model, varmap) = model_with_fill(&config).unwrap();
    assert_eq!(model.name(), name);
    let expected = |key: &str| &fixture[&format!("{name}.{key}")];
    // The script picks an input whose classifier pre-activations keep clear of zero (see
    // `pick_input` there).
    let index = expected("input_index").to_vec1::<i64>().unwrap()[0] as usize;
    let x = hashed(&[2, 3, 64, 64], index, 1.0, 0.0);

    let logits = model.forward_t(&x, false).unwrap();
    assert_close(
        &format!("{name}.eval.logits"),
        &logits,
        expected("eval.logits"),
        1e-4,
    );

    let logits = model.forward_t(&x, true).unwrap();
    assert_close(
        &format!("{name}.train.logits"),
        &logits,
        expected("train.logits"),
        1e-4,
    );

    let data = varmap.data().lock().unwrap();
    let mut stats = 0;
    for (key, reference) in fixture.iter() {
        let Some(rest) = key.strip_prefix(&format!("{name}.running_")) else {
            continue;
        };
        // `mean.features.1` -> `features.1.running_mean`
        let (stat, layer) = rest.split_once('.').unwrap();
        let var = &data[&format!("{layer}.running_{stat}")];
        assert_close(key, var.as_tensor(), reference, 1e-5);
        stats += 1;
    }
    assert_eq!(
        stats,
        if config.batch_norm { 4 } else { 0 },
        "{name}: running statistics"
    );

    let targets = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let grad = |key: &str| grads.get(data[key].as_tensor()).expect("gradient").clone();
    assert_close(
        &format!("{name}.grad.features.0.weight"),
        &grad("features.0.weight"),
        expected("grad.features.0.weight"),
        1e-4,
    );
    assert_close(
        &format!("{name}.grad.classifier.6.weight[:, :128]"),
        &grad("classifier.6.weight").narrow(1, 0, 128).unwrap(),
        expected("grad.classifier.6.weight"),
        1e-4,
    );
    assert_close(
        &format!("{name}.grad.classifier.6.bias"),
        &grad("classifier.6.bias"),
        expected("grad.classifier.6.bias"),
        1e-4,
    );
}

#[test]
fn vgg11_matches_torchvision() {
    check_against_torchvision(VggConfig::vgg11());
}

#[test]
fn vgg11_bn_matches_torchvision() {
    check_against_torchvision(VggConfig::vgg11_bn());
}

#[test]
fn vgg16_matches_torchvision() {
    check_against_torchvision(VggConfig::vgg16());
}

/// torchvision's state-dict keys and shapes (without `num_batches_tracked`), by variant.
fn torchvision_keys() -> BTreeMap<String, BTreeMap<String, Vec<usize>>> {
    let text = include_str!("fixtures/torchvision_keys.txt");
    let mut out: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let dims = fields[2].split(',').map(|d| d.parse().unwrap()).collect();
        out.entry(fields[0].into())
            .or_default()
            .insert(fields[1].into(), dims);
    }
    out
}

#[test]
fn keys_shapes_and_parameter_counts_equal_torchvision() {
    let reference = torchvision_keys();
    let counts = [
        ("vgg11", 132_863_336),
        ("vgg11_bn", 132_868_840),
        ("vgg13", 133_047_848),
        ("vgg13_bn", 133_053_736),
        ("vgg16", 138_357_544),
        ("vgg16_bn", 138_365_992),
        ("vgg19", 143_667_240),
        ("vgg19_bn", 143_678_248),
    ];
    assert_eq!(VggConfig::all().map(|c| c.name()), counts.map(|c| c.0));
    for (config, (name, count)) in VggConfig::all().into_iter().zip(counts) {
        let shapes = variable_shapes(&config);
        assert_eq!(&shapes, &reference[name], "{name}: keys and shapes");
        let params: usize = shapes
            .iter()
            .filter(|(k, _)| !is_buffer(k))
            .map(|(_, d)| d.iter().product::<usize>())
            .sum();
        assert_eq!(params, count, "{name}: parameters");
    }
    // The paper's configurations and torchvision's indices.
    let vgg16 = variable_shapes(&VggConfig::vgg16());
    let convs: Vec<usize> = (0..31)
        .filter(|i| vgg16.contains_key(&format!("features.{i}.weight")))
        .collect();
    assert_eq!(convs, [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]);
    let depths = [Depth::Vgg11, Depth::Vgg13, Depth::Vgg16, Depth::Vgg19];
    assert_eq!(depths.map(Depth::paper_column), ['A', 'B', 'D', 'E']);
    assert_eq!(depths.map(Depth::weight_layers), [11, 13, 16, 19]);
}

#[test]
fn configurable_classes_channels_and_input_sizes() {
    let config = VggConfig::vgg11_bn().with_classes(7).with_in_channels(1);
    let shapes = variable_shapes(&config);
    assert_eq!(shapes["features.0.weight"], [64, 1, 3, 3]);
    assert_eq!(shapes["classifier.6.weight"], [7, 4096]);
    assert_eq!(shapes["classifier.6.bias"], [7]);
    let model = Vgg::new(&config, VarBuilder::zeros(DType::F32, &Device::Cpu)).unwrap();
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (4096, 7, "classifier.6")
    );
    assert_eq!(model.input_spec().describe(), "[N, 1, H>=32, W>=32]");
    assert_eq!(model.input_spec().default_size, (224, 224));
    for ((h, w), features) in [((32, 32), [1, 1]), ((40, 72), [1, 2]), ((64, 64), [2, 2])] {
        let x = Tensor::zeros((2, 1, h, w), DType::F32, &Device::Cpu).unwrap();
        let f = model.forward_features(&x, false).unwrap();
        assert_eq!(f.dims(), [2, 512, features[0], features[1]], "{h}x{w}");
        assert_eq!(model.forward_pre_logits(&f, false).unwrap().dims(), [2, 4096]);
        assert_eq!(model.forward_head(&f, true).unwrap().dims(), [2, 7]);
        assert_eq!(model.forward_t(&x, true).unwrap().dims(), [2, 7]);
    }
}

/// What the plain networks' head adds to every model's input checks
/// (`convnets/tests/contract.rs`): features of another width are refused by name.
#[test]
fn the_head_refuses_features_of_another_width() {
    let model = Vgg::new(&VggConfig::vgg11(), VarBuilder::zeros(DType::F32, &Device::Cpu)).unwrap();
    // Features of the wrong width entering the head.
    let features = Tensor::zeros((1, 256, 7, 7), DType::F32, &Device::Cpu).unwrap();
    let msg = model.forward_head(&features, false).unwrap_err().to_string();
    assert!(
        msg.contains("vgg11 head") && msg.contains("[N, 512, H>=1, W>=1]"),
        "{msg}"
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let vb = || VarBuilder::zeros(DType::F32, &Device::Cpu);
    for config in [
        VggConfig::vgg11().with_dropout(1.0),
        VggConfig::vgg11().with_dropout(-0.1),
    ] {
        match Vgg::new(&config, vb()) {
            Err(Error::Config(msg)) => assert!(!msg.is_empty()),
            other => panic!(
                "{config:?}: expected a configuration error, got {:?}",
                other.err()
            ),
        }
    }
}

#[test]
fn fresh_weights_follow_torchvision_init() {
    // VGG-11-BN with few classes still has the 25,088 x 4,096 classifier.0 (102M normals):
    // check its statistics on the full tensor, with candle's (optimised) reductions.
    let vars = SeededVarMap::new(0);
    let config = VggConfig::vgg11_bn().with_classes(10);
    Vgg::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let data = vars.varmap().data().lock().unwrap();
    let stats = |key: &str| {
        let t = data[key].as_tensor().flatten_all().unwrap();
        let n = t.elem_count() as f64;
        let mean = t.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64 / n;
        let sq = t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64 / n;
        (mean, (sq - mean * mean).sqrt())
    };
    // kaiming_normal_(mode="fan_out", nonlinearity="relu"): std sqrt(2 / (out * 3 * 3)).
    for (key, out) in [("features.0.weight", 64.0), ("features.25.weight", 512.0)] {
        let (mean, std) = stats(key);
        let expected = (2.0f64 / (out * 9.0)).sqrt();
        assert!(mean.abs() < 0.1 * expected, "{key}: mean {mean}");
        assert!(
            (std / expected - 1.0).abs() < 0.05,
            "{key}: std {std}, expected {expected}"
        );
    }
    for key in [
        "classifier.0.weight",
        "classifier.3.weight",
        "classifier.6.weight",
    ] {
        let (mean, std) = stats(key);
        assert!(mean.abs() < 1e-3, "{key}: mean {mean}");
        assert!((std / 0.01 - 1.0).abs() < 0.05, "{key}: std {std}");
    }
    for (key, value) in [
        ("features.0.bias", 0.0),
        ("features.1.weight", 1.0),
        ("features.1.bias", 0.0),
        ("features.1.running_mean", 0.0),
        ("features.1.running_var", 1.0),
        ("classifier.0.bias", 0.0),
        ("classifier.6.bias", 0.0),
    ] {
        let v = data[key].as_tensor().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|&x| x == value), "{key}: {v:?}");
    }
}
