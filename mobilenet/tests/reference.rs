//! MobileNetV2 against timm and torchvision (fixtures from `scripts/gen_mobilenet_fixtures.py`):
//! full-size `mobilenetv2_100` outputs in eval and train mode, gradients, running statistics,
//! both weight layouts, key names, parameter counts in both libraries, timm's feature info,
//! MACs, loading and input errors.

use backbone::catalogue::Variant;
use backbone::weights::Weights;
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor};
use mobilenet::{detect_layout, timm_to_torchvision, MobileNetV2, MobileNetV2Config, WeightsLayout};
use std::collections::HashMap;
use std::path::Path;
use testkit::alexnet_nin::save;
use testkit::densenet_efficientnet::{assert_close, fill_vars, pattern, state, ShapeRecorder};
use testkit::{fixture, reference_keys};

fn build(config: &MobileNetV2Config) -> (MobileNetV2, backbone::init::SeededVarMap) {
    let vars = backbone::init::SeededVarMap::new(0);
    let model = MobileNetV2::new(config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// `mobilenetv2_100` without dropout, as the fixture's models.
fn reference_config() -> MobileNetV2Config {
    MobileNetV2Config::v2_100().with_dropout(0.0)
}

fn with_pattern() -> (MobileNetV2, backbone::init::SeededVarMap) {
    let (model, vars) = build(&reference_config());
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

/// Train-mode gradients compared, with their tolerances. Through 52 batch norms over a batch
/// of two the early layers' gradients are ill-conditioned: float32 PyTorch itself differs from
/// float64 PyTorch by 4.3e-3 (`conv_stem`), 7.2e-3 (`blocks.0.0.conv_dw`) and 4.8e-3
/// (`blocks.3.2.conv_pwl`) of the largest value there, against 6e-5 for the last layers.
const GRADS: [(&str, f32); 6] = [
    ("conv_stem.weight", 2e-2),
    ("blocks.0.0.conv_dw.weight", 2e-2),
    ("blocks.3.2.conv_pwl.weight", 2e-2),
    ("blocks.6.0.bn2.weight", 5e-4),
    ("bn2.weight", 5e-4),
    ("classifier.bias", 5e-4),
];

#[test]
fn full_size_v2_matches_timm_and_torchvision_in_eval_and_train_mode() {
    let fixture = fixture!("mobilenetv2_100.safetensors");
    let (model, vars) = with_pattern();
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
            for (key, tol) in GRADS {
                let name = format!("train.grad.{key}");
                let grad = grads.get(data[key].as_tensor()).expect("gradient");
                eprintln!(
                    "{name}: relative error {:e}",
                    relative_error(grad, &fixture[&name])
                );
                assert_close(&name, grad, &fixture[&name], tol);
            }
            for stat in ["running_mean", "running_var"] {
                let name = format!("train.bn2.{stat}");
                assert_close(
                    &name,
                    data[&format!("bn2.{stat}")].as_tensor(),
                    &fixture[&name],
                    1e-4,
                );
            }
        } else {
            let features = model.forward_features(&x, false).unwrap();
            assert_close("eval.features", &features, &fixture["eval.features"], 1e-4);
            let inference = backbone::inference_mode(|| model.forward_t(&x, false)).unwrap();
            assert_close("inference mode", &inference, &logits, 1e-5);
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

fn zero_state() -> HashMap<String, Tensor> {
    let recorder = ShapeRecorder::default();
    MobileNetV2::new(&MobileNetV2Config::v2_100(), recorder.var_builder()).unwrap();
    recorder
        .shapes()
        .into_iter()
        .map(|(k, shape)| (k, Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()))
        .collect()
}

#[test]
fn key_names_and_shapes_match_timm_and_torchvision() {
    let zeros = zero_state();
    assert_eq!(
        sorted_shapes(&zeros),
        reference_keys!("mobilenetv2_100.timm.keys.txt")
    );
    let tv = timm_to_torchvision(zeros).unwrap();
    assert_eq!(
        sorted_shapes(&tv),
        reference_keys!("mobilenetv2_100.torchvision.keys.txt")
    );
    assert_eq!(detect_layout(tv.keys()), WeightsLayout::Torchvision);
}

/// A file through the catalogue's reader (layout detected and remapped), built with `config`.
fn load_with(path: &Path, config: &MobileNetV2Config) -> backbone::Result<MobileNetV2> {
    let variant = Variant::find(mobilenet::VARIANTS, "mobilenetv2_100")?;
    let (tensors, _) = variant.read_weights(path, None)?;
    Weights::from_tensors(tensors, Some(path.to_path_buf()))
        .build(DType::F32, &Device::Cpu, true, |vb| MobileNetV2::new(config, vb))
}

#[test]
fn both_layouts_load_through_the_catalogue_and_give_timms_outputs() {
    let fixture = fixture!("mobilenetv2_100.safetensors");
    let (_, vars) = with_pattern();
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
        let model = load_with(&path, &reference_config()).unwrap();
        let logits = model.forward_t(&x, false).unwrap();
        assert_close(&format!("{layout:?}"), &logits, &fixture["eval.logits"], 1e-4);
    }
}

#[test]
fn parameter_counts_equal_timms_and_torchvisions() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mobilenet.params.txt"
    ))
    .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("mobilenetv2_100 "))
        .expect("mobilenetv2_100's line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (name, timm, tv): (&str, usize, usize) =
        (fields[0], fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let recorder = ShapeRecorder::default();
    let model = MobileNetV2::new(&MobileNetV2Config::v2_100(), recorder.var_builder()).unwrap();
    assert_eq!(model.name(), name);
    assert_eq!(recorder.trainable(), timm, "{name}: timm");
    assert_eq!(recorder.trainable(), tv, "{name}: torchvision");
    assert_eq!(timm, 3_504_872);
    let variant = Variant::find(mobilenet::VARIANTS, name).unwrap();
    assert_eq!(variant.params as usize, timm, "{name}: catalogue");
    assert_eq!(model.head_prefix(), "classifier");
    assert_eq!(model.num_classes(), 1000);
}

#[test]
fn feature_info_is_timms_and_features_only_gives_the_stage_maps() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mobilenetv2_100.feature_info.txt"
    ))
    .unwrap();
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    let model = MobileNetV2::new(&MobileNetV2Config::v2_100(), vb).unwrap();
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
        [
            [1, 16, 32, 32],
            [1, 24, 16, 16],
            [1, 32, 8, 8],
            [1, 96, 4, 4],
            [1, 320, 2, 2]
        ]
    );
}

#[test]
fn summary_at_224_counts_every_parameter_and_torchvisions_macs() {
    // torchvision quotes 0.30 GFLOPS (multiply-accumulates).
    for variant in mobilenet::VARIANTS.iter().filter(|v| v.name == "mobilenetv2_100") {
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
        assert_eq!((summary.total_macs() as f64 / 1e7).round(), 30.0);
    }
}

#[test]
fn configurable_classes_and_channels_and_odd_sizes() {
    let config = MobileNetV2Config::v2_100().with_classes(7).with_in_channels(1);
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    let model = MobileNetV2::new(&config, vb).unwrap();
    let x = pattern(&[2, 1, 40, 33], 5, 1.0, 0.0);
    let features = model.forward_features(&x, false).unwrap();
    assert_eq!(features.dims(), [2, 1280, 2, 2]);
    assert_eq!(model.forward_head(&features, false).unwrap().dims(), [2, 7]);
    let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        model.forward_t(&x, false),
        Err(Error::InputShape { .. })
    ));
}

#[test]
fn loading_errors_name_the_tensor_as_the_file_does() {
    let dir = tempfile::tempdir().unwrap();
    let timm_state = zero_state();
    let tv_state = timm_to_torchvision(timm_state.clone()).unwrap();
    let variant = Variant::find(mobilenet::VARIANTS, "mobilenetv2_100").unwrap();
    let load = |path: &Path| variant.load(path, &variant.reference_options(), DType::F32, &Device::Cpu);
    testkit::alexnet_nin::assert_load_errors_name_the_tensor(
        load,
        dir.path(),
        &[
            (&timm_state, "blocks.3.2.conv_pwl.weight"),
            (&tv_state, "features.10.conv.2.weight"),
            (&tv_state, "features.18.1.running_var"),
        ],
        (
            &tv_state,
            "features.2.conv.1.0.weight",
            Tensor::zeros((96, 1, 5, 5), DType::F32, &Device::Cpu).unwrap(),
            ["[96, 1, 3, 3]", "[96, 1, 5, 5]"],
        ),
    );
}
