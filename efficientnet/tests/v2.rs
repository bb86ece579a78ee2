//! EfficientNetV2 against timm and torchvision (fixtures from
//! `scripts/gen_efficientnet_fixtures.py v2`): full-size `efficientnetv2_rw_s`,
//! `tf_efficientnetv2_s` (TensorFlow "SAME" padding) and `efficientnet_v2_s` (torchvision's)
//! in eval and train mode, gradients, running statistics, key names of both layouts,
//! parameter counts, timm's feature info, MACs, torchvision's layout through the catalogue and
//! a few Adam steps on MNIST digits.

use backbone::catalogue::Variant;
use backbone::init::SeededVarMap;
use backbone::weights::Weights;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use efficientnet::{
    detect_layout, v2_timm_to_torchvision, EfficientNetV2, EfficientNetV2Config, WeightsLayout,
};
use std::collections::HashMap;
use std::path::Path;
use testkit::alexnet_nin::save;
use testkit::densenet_efficientnet::{
    adam_steps, assert_close, fill_vars, mnist, pattern, state, ShapeRecorder,
};
use testkit::{fixture, reference_keys};

/// The fixture's prefix, the configuration and the catalogue name of each network.
fn networks() -> [(&'static str, EfficientNetV2Config); 3] {
    [
        ("rw", EfficientNetV2Config::rw_s()),
        ("tf", EfficientNetV2Config::tf_s()),
        ("tv", EfficientNetV2Config::s()),
    ]
}

fn build(config: &EfficientNetV2Config, seed: u64) -> (EfficientNetV2, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let model = EfficientNetV2::new(config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// Without dropout and stochastic depth, as the fixture's models.
fn reference(config: EfficientNetV2Config) -> EfficientNetV2Config {
    config.with_dropout(0.0).with_drop_path(0.0)
}

/// The fixture's weights (`fill`).
fn filled(config: EfficientNetV2Config) -> (EfficientNetV2, SeededVarMap) {
    let (model, vars) = build(&reference(config), 0);
    fill_vars(&vars);
    (model, vars)
}

/// The same network over float64 copies of `vars` whose batch norms are calibrated, as the
/// script's eval pass: one train-mode pass on the input with momentum 1 (running statistics :=
/// the batch's mean and unbiased variance). With `fill`'s running statistics the eval pass is
/// chaotic (float32 PyTorch differs from float64 PyTorch by 40-75% in the logits); calibrated
/// and in float64 it is exact far below the tolerance. Returns the model and its variables.
fn calibrated_f64(config: EfficientNetV2Config, vars: &SeededVarMap) -> (EfficientNetV2, SeededVarMap) {
    let vars64 = SeededVarMap::new(0);
    let vb = vars64.var_builder(DType::F64, &Device::Cpu);
    let mut momentum_one = reference(config);
    momentum_one.batch_norm.momentum = 1.0;
    let calibrate = EfficientNetV2::new(&momentum_one, vb.clone()).unwrap();
    {
        let source = state(vars);
        let data = vars64.varmap().data().lock().unwrap();
        for (name, var) in data.iter() {
            var.set(&source[name].to_dtype(DType::F64).unwrap()).unwrap();
        }
    }
    calibrate
        .forward_t(&input().to_dtype(DType::F64).unwrap(), true)
        .unwrap();
    let model = EfficientNetV2::new(&reference(config), vb).unwrap();
    (model, vars64)
}

fn input() -> Tensor {
    pattern(&[2, 3, 64, 64], 1000, 1.0, 0.0)
}

fn targets() -> Tensor {
    Tensor::new(&[3u32, 997], &Device::Cpu).unwrap()
}

/// max |ours - torch| / max |torch|.
fn relative_error(ours: &Tensor, reference: &Tensor) -> f32 {
    let diff = (ours - reference).unwrap().abs().unwrap().max_all().unwrap();
    let scale = reference.abs().unwrap().max_all().unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap()
}

/// Train-mode gradients compared, with their tolerances: through some 60 batch norms over a
/// batch of two, the early layers' gradients are ill-conditioned (as MobileNetV2's: float32
/// PyTorch differs from float64 PyTorch by several 1e-3 there), the last layers' are not.
const GRADS: [(&str, f32); 7] = [
    ("conv_stem.weight", 2e-2),
    ("blocks.0.0.bn1.weight", 2e-2),
    ("blocks.1.0.bn2.weight", 2e-2),
    ("blocks.3.0.conv_dw.weight", 2e-2),
    ("blocks.5.14.se.conv_reduce.bias", 1e-3),
    ("bn2.weight", 5e-4),
    ("classifier.bias", 5e-4),
];

#[test]
fn full_size_v2_networks_match_timm_in_eval_and_train_mode() {
    let fixture = fixture!("efficientnetv2.safetensors");
    let x = input();
    for (prefix, config) in networks() {
        let (model, vars) = filled(config);
        let (model64, _) = calibrated_f64(config, &vars);
        let x64 = x.to_dtype(DType::F64).unwrap();
        let name = model.name().to_string();
        for (mode, train) in [("eval", false), ("train", true)] {
            let logits = if train {
                model.forward_t(&x, train).unwrap()
            } else {
                let logits = model64.forward_t(&x64, false).unwrap();
                logits.to_dtype(DType::F32).unwrap()
            };
            let key = format!("{prefix}.{mode}.logits");
            eprintln!(
                "{name} {mode}: relative error {:e}",
                relative_error(&logits, &fixture[&key])
            );
            assert_close(&format!("{name} {key}"), &logits, &fixture[&key], 1e-4);
            if train {
                let grads = candle_nn::loss::cross_entropy(&logits, &targets())
                    .unwrap()
                    .backward()
                    .unwrap();
                let data = vars.varmap().data().lock().unwrap();
                for (param, tol) in GRADS {
                    let key = format!("{prefix}.train.grad.{param}");
                    let grad = grads.get(data[param].as_tensor()).expect("gradient");
                    eprintln!(
                        "{name} {key}: relative error {:e}",
                        relative_error(grad, &fixture[&key])
                    );
                    assert_close(&format!("{name} {key}"), grad, &fixture[&key], tol);
                }
                for stat in ["running_mean", "running_var"] {
                    let key = format!("{prefix}.train.bn2.{stat}");
                    let ours = data[&format!("bn2.{stat}")].as_tensor();
                    assert_close(&format!("{name} {key}"), ours, &fixture[&key], 1e-4);
                }
            } else {
                let features = model64.forward_features(&x64, false).unwrap();
                let features = features.to_dtype(DType::F32).unwrap();
                let key = format!("{prefix}.eval.features");
                assert_close(&format!("{name} {key}"), &features, &fixture[&key], 1e-4);
                // Folded (inference mode) and unfolded layers agree in float64.
                let inference = backbone::inference_mode(|| model64.forward_t(&x64, false)).unwrap();
                let inference = inference.to_dtype(DType::F32).unwrap();
                assert_close(&format!("{name} inference mode"), &inference, &logits, 1e-6);
            }
        }
    }
}

fn sorted_shapes(tensors: &HashMap<String, Tensor>) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    v.sort();
    v
}

fn zero_state(config: &EfficientNetV2Config) -> HashMap<String, Tensor> {
    let recorder = ShapeRecorder::default();
    EfficientNetV2::new(config, recorder.var_builder()).unwrap();
    recorder
        .shapes()
        .into_iter()
        .map(|(k, shape)| (k, Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()))
        .collect()
}

#[test]
fn key_names_and_shapes_match_timm_and_torchvision() {
    let keys = [
        reference_keys!("efficientnetv2_rw_s.timm.keys.txt"),
        reference_keys!("tf_efficientnetv2_s.timm.keys.txt"),
        reference_keys!("efficientnet_v2_s.timm.keys.txt"),
    ];
    for ((_, config), timm) in networks().iter().zip(keys) {
        assert_eq!(sorted_shapes(&zero_state(config)), timm, "{}", config.name());
    }
    let tv = v2_timm_to_torchvision(zero_state(&EfficientNetV2Config::s()), &EfficientNetV2Config::s());
    assert_eq!(
        sorted_shapes(&tv),
        reference_keys!("efficientnet_v2_s.torchvision.keys.txt")
    );
    assert_eq!(detect_layout(tv.keys()), WeightsLayout::Torchvision);
}

/// A file through the catalogue's reader of `efficientnet_v2_s` (layout detected and
/// remapped), built without dropout and drop path, in `dtype`.
fn load_with(path: &Path, dtype: DType) -> backbone::Result<EfficientNetV2> {
    let variant = Variant::find(efficientnet::VARIANTS, "efficientnet_v2_s")?;
    let (tensors, _) = variant.read_weights(path, None)?;
    Weights::from_tensors(tensors, Some(path.to_path_buf())).build(dtype, &Device::Cpu, true, |vb| {
        EfficientNetV2::new(&reference(EfficientNetV2Config::s()), vb)
    })
}

#[test]
fn torchvisions_layout_loads_into_efficientnet_v2_s_and_gives_torchvisions_outputs() {
    let fixture = fixture!("efficientnetv2.safetensors");
    let (_, vars) = filled(EfficientNetV2Config::s());
    let (_, vars64) = calibrated_f64(EfficientNetV2Config::s(), &vars);
    // Float64 tensors in the files: eval mode reads them as they are, train mode as float32.
    let timm_state = state(&vars64);
    let tv_state = v2_timm_to_torchvision(timm_state.clone(), &EfficientNetV2Config::s());
    let dir = tempfile::tempdir().unwrap();
    let x = input();
    for (layout, tensors) in [
        (WeightsLayout::Timm, timm_state),
        (WeightsLayout::Torchvision, tv_state),
    ] {
        assert_eq!(detect_layout(tensors.keys()), layout);
        let path = save(dir.path(), &format!("{layout:?}.safetensors"), &tensors);
        for (mode, train) in [("eval", false), ("train", true)] {
            // Eval mode in float64 (see `calibrated_f64`).
            let dtype = if train { DType::F32 } else { DType::F64 };
            let model = load_with(&path, dtype).unwrap();
            let logits = model.forward_t(&x.to_dtype(dtype).unwrap(), train).unwrap();
            let logits = logits.to_dtype(DType::F32).unwrap();
            let key = format!("tv.{mode}.logits");
            assert_close(&format!("{layout:?} {key}"), &logits, &fixture[&key], 1e-4);
        }
    }
    // The `tf_` variant accepts timm's layout only.
    let tf = Variant::find(efficientnet::VARIANTS, "tf_efficientnetv2_s").unwrap();
    assert!(tf.layouts.iter().all(|l| l.name != "torchvision"));
}

#[test]
fn parameter_counts_equal_timms_and_torchvisions() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/efficientnetv2.params.txt"
    ))
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    for (line, (_, config)) in lines.iter().zip(networks()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let recorder = ShapeRecorder::default();
        let model = EfficientNetV2::new(&config, recorder.var_builder()).unwrap();
        assert_eq!(model.name(), fields[0]);
        assert_eq!(recorder.trainable().to_string(), fields[1], "{}: timm", fields[0]);
        if fields[2] != "-" {
            assert_eq!(
                recorder.trainable().to_string(),
                fields[2],
                "{}: torchvision",
                fields[0]
            );
        }
        let variant = Variant::find(efficientnet::VARIANTS, fields[0]).unwrap();
        assert_eq!(
            variant.params as usize,
            recorder.trainable(),
            "{}: catalogue",
            fields[0]
        );
        assert_eq!(model.head_prefix(), "classifier");
    }
    assert_eq!(lines[0], "efficientnetv2_rw_s 23941296 -");
    assert_eq!(lines[2], "efficientnet_v2_s 21458488 21458488");
}

#[test]
fn feature_info_is_timms_and_features_only_gives_the_stage_maps() {
    let files = [
        include_str!("fixtures/efficientnetv2_rw_s.feature_info.txt"),
        include_str!("fixtures/tf_efficientnetv2_s.feature_info.txt"),
        include_str!("fixtures/efficientnet_v2_s.feature_info.txt"),
    ];
    for ((_, config), text) in networks().into_iter().zip(files) {
        let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
        let model = EfficientNetV2::new(&config, vb).unwrap();
        let ours: Vec<String> = model
            .feature_info()
            .iter()
            .map(|f| format!("{} {} {}", f.module, f.channels, f.reduction))
            .collect();
        assert_eq!(ours, text.lines().collect::<Vec<_>>(), "{}", config.name());
        let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
        let maps = model.forward_stages(&x, false).unwrap();
        let dims: Vec<Vec<usize>> = maps.iter().map(|m| m.dims().to_vec()).collect();
        let last = config.stages()[5].out_channels;
        assert_eq!(
            dims,
            [
                [1, 24, 32, 32],
                [1, 48, 16, 16],
                [1, 64, 8, 8],
                [1, 160, 4, 4],
                [1, last, 2, 2]
            ]
        );
    }
}

#[test]
fn summary_counts_every_parameter_and_the_catalogues_macs() {
    let (mut found, mut expected) = (Vec::new(), Vec::new());
    for name in ["efficientnetv2_rw_s", "tf_efficientnetv2_s", "efficientnet_v2_s"] {
        let variant = Variant::find(efficientnet::VARIANTS, name).unwrap();
        let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
        let model = variant.create(&variant.reference_options(), vb).unwrap();
        let (h, w) = model.input_spec().default_size;
        let summary = backbone::summarize(&*model, &[1, 3, h, w], &Device::Cpu).unwrap();
        eprintln!(
            "{name} at {h}: {} params, {} MACs",
            summary.total_params(),
            summary.total_macs()
        );
        found.push((summary.total_params() as u64, summary.total_macs()));
        expected.push((variant.params, variant.macs));
    }
    assert_eq!(found, expected);
}

/// Fifteen steps of Adam (lr 1e-3) on 16 digits with the default dropout and stochastic depth
/// (0.2 each), "SAME" padding on 32x32 inputs: the loss measured before and after in training
/// mode with the same masks must fall to under a quarter (as EfficientNet-B0's test).
#[test]
fn adam_on_mnist_digits_lowers_the_loss() {
    let (xs, ys) = mnist(16, 32);
    let config = EfficientNetV2Config::tf_s().with_in_channels(1).with_classes(10);
    let (model, vars) = build(&config, 8);
    let loss = |seed: u64| {
        backbone::init::seed(seed);
        let logits = model.forward_t(&xs, true).unwrap();
        candle_nn::loss::cross_entropy(&logits, &ys).unwrap()
    };
    let (before, after, losses) = adam_steps(&vars, 15, 1234, loss);
    assert!(
        after < 0.25 * before,
        "the loss should fall: {before} before, {after} after (training losses {losses:?})"
    );
}
