//! ConvNeXt against timm and torchvision (fixtures from `scripts/gen_convnext_fixtures.py`):
//! full-size ConvNeXt-T outputs in eval and train mode, gradients, both weight layouts, key
//! names, parameter counts of every variant in both libraries, timm's feature info, MACs,
//! loading and input errors, stochastic depth, and a few Adam steps on real MNIST digits.

use backbone::catalogue::Variant;
use backbone::init::{trainable_vars, SeededVarMap};
use backbone::weights::Weights;
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use convnext::{
    detect_layout, timm_to_torchvision, ConvNeXt, ConvNeXtConfig, StageConfig, WeightsLayout, CONVNEXT_T,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use testkit::alexnet_nin::save;
use testkit::densenet_efficientnet::{assert_close, fill_vars, mnist, pattern, state, ShapeRecorder};
use testkit::{fixture, reference_keys};

/// Tests that draw from backbone's global generator (stochastic depth) take this lock, so their
/// draws do not interleave.
static RNG: Mutex<()> = Mutex::new(());

fn build(config: &ConvNeXtConfig, seed: u64) -> (ConvNeXt, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let model = ConvNeXt::new(config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// ConvNeXt-T without stochastic depth, as the fixture's models.
fn reference_config() -> ConvNeXtConfig {
    ConvNeXtConfig::tiny().with_drop_path(0.0)
}

fn tiny_with_pattern() -> (ConvNeXt, SeededVarMap) {
    let (model, vars) = build(&reference_config(), 0);
    fill_vars(&vars);
    (model, vars)
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

const GRADS: [&str; 5] = [
    "stem.0.weight",
    "stages.1.downsample.0.weight",
    "stages.2.blocks.4.conv_dw.weight",
    "stages.3.blocks.2.gamma",
    "head.norm.weight",
];

#[test]
fn full_size_tiny_matches_timm_in_eval_and_train_mode() {
    let fixture = fixture!("convnext_tiny.safetensors");
    let (model, vars) = tiny_with_pattern();
    let x = input();
    for (mode, train) in [("eval", false), ("train", true)] {
        let logits = model.forward_t(&x, train).unwrap();
        let reference = &fixture[&format!("{mode}.logits")];
        eprintln!(
            "{mode} logits: relative error {:e}",
            relative_error(&logits, reference)
        );
        assert_close(&format!("{mode}.logits"), &logits, reference, 1e-4);
        let tv = &fixture[&format!("tv.{mode}.logits")];
        assert_close(&format!("tv.{mode}.logits"), &logits, tv, 1e-4);
        if train {
            let grads = candle_nn::loss::cross_entropy(&logits, &targets())
                .unwrap()
                .backward()
                .unwrap();
            let data = vars.varmap().data().lock().unwrap();
            for key in GRADS {
                let name = format!("train.grad.{key}");
                let grad = grads.get(data[key].as_tensor()).expect("gradient");
                eprintln!(
                    "{name}: relative error {:e}",
                    relative_error(grad, &fixture[&name])
                );
                assert_close(&name, grad, &fixture[&name], 5e-4);
            }
        } else {
            let features = model.forward_features(&x, false).unwrap();
            assert_close("eval.features", &features, &fixture["eval.features"], 1e-4);
            let inference = backbone::inference_mode(|| model.forward_t(&x, false)).unwrap();
            assert_close("inference mode", &inference, &logits, 1e-6);
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

#[test]
fn key_names_and_shapes_match_timm_and_torchvision() {
    let recorder = ShapeRecorder::default();
    ConvNeXt::new(&ConvNeXtConfig::tiny(), recorder.var_builder()).unwrap();
    let zeros: HashMap<String, Tensor> = recorder
        .shapes()
        .into_iter()
        .map(|(k, shape)| (k, Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()))
        .collect();
    assert_eq!(
        sorted_shapes(&zeros),
        reference_keys!("convnext_tiny.timm.keys.txt")
    );
    let tv = timm_to_torchvision(zeros).unwrap();
    assert_eq!(
        sorted_shapes(&tv),
        reference_keys!("convnext_tiny.torchvision.keys.txt")
    );
    assert_eq!(detect_layout(tv.keys()), WeightsLayout::Torchvision);
}

/// A file through the catalogue's loader (`convnext_tiny`: layout detected and remapped), built
/// with `config`.
fn load_with(path: &Path, config: &ConvNeXtConfig) -> backbone::Result<ConvNeXt> {
    let variant = Variant::find(convnext::VARIANTS, "convnext_tiny")?;
    let (tensors, _) = variant.read_weights(path, None)?;
    Weights::from_tensors(tensors, Some(path.to_path_buf()))
        .build(DType::F32, &Device::Cpu, true, |vb| ConvNeXt::new(config, vb))
}

#[test]
fn both_layouts_load_through_the_catalogue_and_give_timms_outputs() {
    let fixture = fixture!("convnext_tiny.safetensors");
    let (_, vars) = tiny_with_pattern();
    let timm_state = state(&vars);
    let tv_state = timm_to_torchvision(timm_state.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let x = input();
    for (layout, tensors) in [
        (WeightsLayout::Timm, timm_state),
        (WeightsLayout::Torchvision, tv_state),
    ] {
        assert_eq!(detect_layout(tensors.keys()), layout);
        let path = save(dir.path(), &format!("{layout:?}.safetensors"), &tensors);
        drop(tensors);
        let model = load_with(&path, &reference_config()).unwrap();
        let logits = model.forward_t(&x, false).unwrap();
        assert_close(&format!("{layout:?}"), &logits, &fixture["eval.logits"], 1e-4);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn parameter_counts_of_all_variants_equal_timms_and_torchvisions() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/convnext.params.txt"
    ))
    .unwrap();
    let configs = [
        ConvNeXtConfig::tiny(),
        ConvNeXtConfig::small(),
        ConvNeXtConfig::base(),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), configs.len());
    for (line, config) in lines.into_iter().zip(configs) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, timm, tv): (&str, usize, usize) =
            (fields[0], fields[1].parse().unwrap(), fields[2].parse().unwrap());
        let recorder = ShapeRecorder::default();
        let model = ConvNeXt::new(&config, recorder.var_builder()).unwrap();
        assert_eq!(model.name(), name);
        assert_eq!(recorder.trainable(), timm, "{name}: timm");
        assert_eq!(recorder.trainable(), tv, "{name}: torchvision");
        let variant = Variant::find(convnext::VARIANTS, name).unwrap();
        assert_eq!(variant.params as usize, timm, "{name}: catalogue");
        assert_eq!(model.head_prefix(), "head.fc");
        assert_eq!(model.num_classes(), 1000);
    }
}

#[test]
fn feature_info_is_timms_and_features_only_gives_the_stage_maps() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/convnext_tiny.feature_info.txt"
    ))
    .unwrap();
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    let model = ConvNeXt::new(&ConvNeXtConfig::tiny(), vb).unwrap();
    let ours: Vec<String> = model
        .feature_info()
        .iter()
        .map(|f| format!("{} {} {}", f.module, f.channels, f.reduction))
        .collect();
    let timm: Vec<&str> = text.lines().collect();
    assert_eq!(ours, timm);
    let maps = model
        .forward_stages(
            &Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap(),
            false,
        )
        .unwrap();
    let dims: Vec<Vec<usize>> = maps.iter().map(|m| m.dims().to_vec()).collect();
    assert_eq!(
        dims,
        [[1, 96, 16, 16], [1, 192, 8, 8], [1, 384, 4, 4], [1, 768, 2, 2]]
    );
}

#[test]
fn summary_at_224_counts_every_parameter_and_torchvisions_macs() {
    // torchvision quotes 4.46, 8.68 and 15.36 GFLOPS (multiply-accumulates).
    for variant in convnext::VARIANTS {
        let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
        let model = variant.create(&variant.reference_options(), vb).unwrap();
        let summary = backbone::summarize(&*model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
        eprintln!(
            "{}: {} params, {} MACs",
            variant.name,
            summary.total_params(),
            summary.total_macs()
        );
        assert_eq!(summary.total_params() as u64, variant.params, "{}", variant.name);
        assert_eq!(summary.total_macs(), variant.macs, "{}", variant.name);
    }
}

#[test]
fn configurable_classes_and_channels() {
    let config = ConvNeXtConfig::tiny().with_classes(7).with_in_channels(1);
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    let model = ConvNeXt::new(&config, vb).unwrap();
    let x = pattern(&[2, 1, 40, 33], 5, 1.0, 0.0);
    let features = model.forward_features(&x, false).unwrap();
    assert_eq!(features.dims(), [2, 768, 1, 1]);
    assert_eq!(
        model.forward_pre_logits(&features, false).unwrap().dims(),
        [2, 768]
    );
    assert_eq!(model.forward_head(&features, false).unwrap().dims(), [2, 7]);
    assert_eq!(model.input_spec().default_size, (224, 224));
    assert_eq!(ConvNeXtConfig::base().num_features(), 1024);
}

#[test]
fn wrong_input_shapes_are_reported() {
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    let model = ConvNeXt::new(&ConvNeXtConfig::tiny(), vb).unwrap();
    for dims in [vec![1, 1, 64, 64], vec![3, 64, 64], vec![1, 3, 31, 64]] {
        let x = Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu).unwrap();
        match model.forward_t(&x, false) {
            Err(Error::InputShape {
                layer,
                expected,
                actual,
            }) => {
                assert_eq!(layer, "convnext_tiny");
                assert_eq!(expected, "[N, 3, H>=32, W>=32]");
                assert_eq!(actual, dims);
            }
            other => panic!(
                "{dims:?}: expected an input shape error, got {:?}",
                other.map(|t| t.dims().to_vec())
            ),
        }
    }
    let x = Tensor::ones((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.forward_t(&x, false).unwrap().dims(), [1, 1000]);
}

#[test]
fn loading_errors_name_the_tensor_as_the_file_does() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = ShapeRecorder::default();
    ConvNeXt::new(&ConvNeXtConfig::tiny(), recorder.var_builder()).unwrap();
    let timm_state: HashMap<String, Tensor> = recorder
        .shapes()
        .into_iter()
        .map(|(k, shape)| (k, Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()))
        .collect();
    let tv_state = timm_to_torchvision(timm_state.clone()).unwrap();
    let variant = Variant::find(convnext::VARIANTS, "convnext_tiny").unwrap();
    let load = |path: &Path| variant.load(path, &variant.reference_options(), DType::F32, &Device::Cpu);
    testkit::alexnet_nin::assert_load_errors_name_the_tensor(
        load,
        dir.path(),
        &[
            (&timm_state, "stages.2.blocks.3.mlp.fc2.bias"),
            (&tv_state, "features.5.3.block.5.bias"),
            (&tv_state, "features.3.1.layer_scale"),
        ],
        (
            &tv_state,
            "features.3.0.block.0.weight",
            Tensor::zeros((192, 1, 3, 3), DType::F32, &Device::Cpu).unwrap(),
            ["[192, 1, 7, 7]", "[192, 1, 3, 3]"],
        ),
    );
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A narrow, shallow ConvNeXt for the tests that train or draw masks.
fn small_config() -> ConvNeXtConfig {
    let stages = [
        StageConfig { depth: 1, dim: 16 },
        StageConfig { depth: 2, dim: 32 },
        StageConfig { depth: 1, dim: 48 },
        StageConfig { depth: 1, dim: 64 },
    ];
    assert_ne!(stages, CONVNEXT_T);
    ConvNeXtConfig {
        stages,
        layer_scale_init: 0.1,
        ..ConvNeXtConfig::tiny()
    }
}

#[test]
fn stochastic_depth_only_in_training_and_seeded() {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let x = pattern(&[4, 3, 32, 32], 7, 1.0, 0.0);
    let (model, vars) = build(&small_config().with_drop_path(0.5), 4);
    let plain = ConvNeXt::new(
        &small_config().with_drop_path(0.0),
        vars.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    assert_eq!(
        max_diff(
            &model.forward_t(&x, false).unwrap(),
            &plain.forward_t(&x, false).unwrap()
        ),
        0.0
    );
    let run = |seed| {
        backbone::init::seed(seed);
        model.forward_t(&x, true).unwrap()
    };
    assert_eq!(max_diff(&run(11), &run(11)), 0.0, "same seed");
    assert!(max_diff(&run(11), &run(12)) > 1e-4, "other seed");
    // Without stochastic depth, train mode equals eval mode (no batch statistics).
    assert_eq!(
        max_diff(
            &plain.forward_t(&x, true).unwrap(),
            &plain.forward_t(&x, false).unwrap()
        ),
        0.0
    );
}

/// Adam (lr 1e-3) on 16 digits with stochastic depth 0.1, each step with its own seeded masks:
/// the loss measured in eval mode before and after must fall to under half (no exact value:
/// the kernels' rounding differs between CPUs).
#[test]
fn adam_on_mnist_digits_lowers_the_loss() {
    const STEPS: u64 = 20;
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (xs, ys) = mnist(16, 32);
    let config = small_config()
        .with_drop_path(0.1)
        .with_in_channels(1)
        .with_classes(10);
    let (model, vars) = build(&config, 8);
    let value = |t: &Tensor| t.to_scalar::<f32>().unwrap();
    let eval_loss = || {
        let logits = model.forward_t(&xs, false).unwrap();
        value(&candle_nn::loss::cross_entropy(&logits, &ys).unwrap())
    };
    let params: Vec<_> = trainable_vars(vars.varmap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut adam = candle_nn::AdamW::new(
        params,
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let before = eval_loss();
    let mut losses = Vec::new();
    for step in 0..STEPS {
        backbone::init::seed(step);
        let logits = model.forward_t(&xs, true).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &ys).unwrap();
        losses.push(value(&loss));
        adam.backward_step(&loss).unwrap();
    }
    let after = eval_loss();
    eprintln!("before {before}, after {after}, training losses {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        after < 0.5 * before,
        "the loss should fall: {before} before, {after} after ({losses:?})"
    );
}
