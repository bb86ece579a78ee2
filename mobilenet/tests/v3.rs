//! MobileNetV3 against timm and torchvision (fixtures from `scripts/gen_mobilenet_fixtures.py`):
//! full-size `mobilenetv3_large_100` and `mobilenetv3_small_100` with timm's batch norm
//! against timm, with torchvision's (`mobilenet_v3_large`, `mobilenet_v3_small`) against
//! torchvision, in eval and train mode (logits, gradients, running statistics); both weight
//! layouts through the catalogue, key names and shapes, parameter counts in both libraries,
//! timm's feature info, MACs.

use backbone::catalogue::Variant;
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor};
use mobilenet::v3_layout::timm_to_torchvision;
use mobilenet::{detect_layout, MobileNetV3, MobileNetV3Config, WeightsLayout};
use std::collections::HashMap;
use std::path::Path;
use testkit::alexnet_nin::save;
use testkit::densenet_efficientnet::{assert_close, fill_vars, pattern, state, ShapeRecorder};

/// timm's name, the configuration, the torchvision variant's name, the gradients compared.
struct Case {
    name: &'static str,
    tv_name: &'static str,
    config: fn() -> MobileNetV3Config,
    grads: [&'static str; 6],
    last_bn: &'static str,
}

const CASES: [Case; 2] = [
    Case {
        name: "mobilenetv3_large_100",
        tv_name: "mobilenet_v3_large",
        config: MobileNetV3Config::large_100,
        grads: [
            "conv_stem.weight",
            "blocks.2.0.se.conv_reduce.weight",
            "blocks.4.1.conv_dw.weight",
            "blocks.6.0.bn1.weight",
            "conv_head.bias",
            "classifier.bias",
        ],
        last_bn: "blocks.6.0.bn1",
    },
    Case {
        name: "mobilenetv3_small_100",
        tv_name: "mobilenet_v3_small",
        config: MobileNetV3Config::small_100,
        grads: [
            "conv_stem.weight",
            "blocks.0.0.se.conv_expand.bias",
            "blocks.3.1.conv_dw.weight",
            "blocks.5.0.bn1.weight",
            "conv_head.bias",
            "classifier.bias",
        ],
        last_bn: "blocks.5.0.bn1",
    },
];

fn load_fixture(name: &str) -> HashMap<String, Tensor> {
    testkit::load_fixture(env!("CARGO_MANIFEST_DIR"), &format!("{name}.safetensors"))
}

fn with_pattern(config: &MobileNetV3Config) -> (MobileNetV3, backbone::init::SeededVarMap) {
    let vars = backbone::init::SeededVarMap::new(0);
    let model = MobileNetV3::new(config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    fill_vars(&vars);
    (model, vars)
}

fn input() -> Tensor {
    pattern(&[2, 3, 64, 64], 1000, 1.0, 0.0)
}

/// max |ours - torch| / max |torch|.
fn relative_error(ours: &Tensor, reference: &Tensor) -> f32 {
    let diff = (ours - reference).unwrap().abs().unwrap().max_all().unwrap();
    let scale = reference.abs().unwrap().max_all().unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap()
}

/// Train-mode gradients: float32 PyTorch is within 2.1e-5 of float64 PyTorch on each of them
/// (printed by the script); 2e-4 leaves room for another order of summation.
const GRAD_TOL: f32 = 2e-4;

#[test]
fn full_size_models_match_timm_and_torchvision_with_their_batch_norms() {
    let x = input();
    let targets = Tensor::new(&[3u32, 997], &Device::Cpu).unwrap();
    for case in CASES {
        let fixture = load_fixture(case.name);
        for (lib, config) in [
            ("timm", (case.config)().with_dropout(0.0)),
            ("tv", (case.config)().torchvision().with_dropout(0.0)),
        ] {
            let (model, vars) = with_pattern(&config);
            for (mode, train) in [("eval", false), ("train", true)] {
                let name = format!("{} {lib}.{mode}.logits", case.name);
                let logits = model.forward_t(&x, train).unwrap();
                let reference = &fixture[&format!("{lib}.{mode}.logits")];
                eprintln!("{name}: relative error {:e}", relative_error(&logits, reference));
                assert_close(&name, &logits, reference, 1e-4);
                if !train {
                    if lib == "timm" {
                        let features = model.forward_features(&x, false).unwrap();
                        assert_close("eval.features", &features, &fixture["timm.eval.features"], 1e-4);
                    }
                    continue;
                }
                let grads = candle_nn::loss::cross_entropy(&logits, &targets)
                    .unwrap()
                    .backward()
                    .unwrap();
                let data = vars.varmap().data().lock().unwrap();
                for key in case.grads {
                    let name = format!("{lib}.train.grad.{key}");
                    let grad = grads.get(data[key].as_tensor()).expect("gradient");
                    eprintln!(
                        "{} {name}: relative error {:e}",
                        case.name,
                        relative_error(grad, &fixture[&name])
                    );
                    assert_close(&name, grad, &fixture[&name], GRAD_TOL);
                }
                // The running statistics moved with the library's momentum.
                for stat in ["running_mean", "running_var"] {
                    let name = format!("{lib}.train.{stat}");
                    let ours = data[&format!("{}.{stat}", case.last_bn)].as_tensor();
                    assert_close(&name, ours, &fixture[&name], 1e-5);
                }
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

fn zero_state(config: &MobileNetV3Config) -> HashMap<String, Tensor> {
    let recorder = ShapeRecorder::default();
    MobileNetV3::new(config, recorder.var_builder()).unwrap();
    recorder
        .shapes()
        .into_iter()
        .map(|(k, shape)| (k, Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()))
        .collect()
}

fn read_keys(file: &str) -> Vec<(String, Vec<usize>)> {
    testkit::read_reference_keys(env!("CARGO_MANIFEST_DIR"), file)
}

#[test]
fn key_names_and_shapes_match_timm_and_torchvision() {
    for case in CASES {
        let config = (case.config)();
        let zeros = zero_state(&config);
        assert_eq!(
            sorted_shapes(&zeros),
            read_keys(&format!("{}.timm.keys.txt", case.name))
        );
        let tv = timm_to_torchvision(&config.arch, zeros).unwrap();
        assert_eq!(
            sorted_shapes(&tv),
            read_keys(&format!("{}.torchvision.keys.txt", case.name)),
            "{}",
            case.name
        );
        assert_eq!(detect_layout(tv.keys()), WeightsLayout::Torchvision);
    }
}

#[test]
fn both_layouts_load_through_the_catalogue_into_both_variants() {
    let x = input();
    let dir = tempfile::tempdir().unwrap();
    for case in CASES {
        let fixture = load_fixture(case.name);
        let (_, vars) = with_pattern(&(case.config)().with_dropout(0.0));
        let timm_state = state(&vars);
        let tv_state = timm_to_torchvision(&(case.config)().arch, timm_state.clone()).unwrap();
        for (variant, lib) in [(case.name, "timm"), (case.tv_name, "tv")] {
            let variant = Variant::find(mobilenet::VARIANTS, variant).unwrap();
            for (layout, tensors) in [
                (WeightsLayout::Timm, &timm_state),
                (WeightsLayout::Torchvision, &tv_state),
            ] {
                let path = save(dir.path(), &format!("{layout:?}.safetensors"), tensors);
                let (model, info) = variant
                    .load(&path, &variant.reference_options(), DType::F32, &Device::Cpu)
                    .unwrap();
                let expected = if layout == WeightsLayout::Timm {
                    "timm"
                } else {
                    "torchvision"
                };
                assert_eq!(info.layout, expected);
                let logits = model.forward_t(&x, false).unwrap();
                let reference = &fixture[&format!("{lib}.eval.logits")];
                assert_close(&format!("{} {layout:?}", variant.name), &logits, reference, 1e-4);
            }
        }
    }
}

#[test]
fn parameter_counts_equal_timms_and_torchvisions() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mobilenet.params.txt"
    ))
    .unwrap();
    for (case, expected) in CASES.iter().zip([5_483_032, 2_542_856]) {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{} ", case.name)))
            .unwrap();
        let fields: Vec<usize> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect();
        for config in [(case.config)(), (case.config)().torchvision()] {
            let recorder = ShapeRecorder::default();
            let model = MobileNetV3::new(&config, recorder.var_builder()).unwrap();
            assert_eq!(recorder.trainable(), fields[0], "{}: timm", case.name);
            assert_eq!(recorder.trainable(), fields[1], "{}: torchvision", case.name);
            assert_eq!(model.num_classes(), 1000);
            assert_eq!(model.head_prefix(), "classifier");
        }
        assert_eq!(fields[0], expected);
        for name in [case.name, case.tv_name] {
            let variant = Variant::find(mobilenet::VARIANTS, name).unwrap();
            assert_eq!(variant.params as usize, expected, "{name}: catalogue");
        }
    }
}

#[test]
fn feature_info_is_timms_and_features_only_gives_the_stage_maps() {
    let expected_dims: [&[[usize; 4]]; 2] = [
        &[
            [1, 16, 32, 32],
            [1, 24, 16, 16],
            [1, 40, 8, 8],
            [1, 112, 4, 4],
            [1, 960, 2, 2],
        ],
        &[
            [1, 16, 32, 32],
            [1, 16, 16, 16],
            [1, 24, 8, 8],
            [1, 48, 4, 4],
            [1, 576, 2, 2],
        ],
    ];
    for (case, dims) in CASES.iter().zip(expected_dims) {
        let path = format!(
            "{}/tests/fixtures/{}.feature_info.txt",
            env!("CARGO_MANIFEST_DIR"),
            case.name
        );
        let text = std::fs::read_to_string(path).unwrap();
        let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
        let model = MobileNetV3::new(&(case.config)(), vb).unwrap();
        let ours: Vec<String> = model
            .feature_info()
            .iter()
            .map(|f| format!("{} {} {}", f.module, f.channels, f.reduction))
            .collect();
        assert_eq!(ours, text.lines().collect::<Vec<_>>(), "{}", case.name);
        let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
        let maps = model.forward_stages(&x, false).unwrap();
        let got: Vec<Vec<usize>> = maps.iter().map(|m| m.dims().to_vec()).collect();
        let want: Vec<Vec<usize>> = dims.iter().map(|d| d.to_vec()).collect();
        assert_eq!(got, want, "{}", case.name);
    }
}

#[test]
fn summary_at_224_counts_every_parameter_and_the_catalogues_macs() {
    // torchvision quotes 0.22 (large) and 0.06 (small) GFLOPS (multiply-accumulates).
    for variant in mobilenet::VARIANTS.iter().filter(|v| v.name != "mobilenetv2_100") {
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
        let quoted = if variant.name.contains("large") { 22.0 } else { 6.0 };
        assert_eq!(
            (summary.total_macs() as f64 / 1e7).round(),
            quoted,
            "{}",
            variant.name
        );
    }
}

#[test]
fn configurable_classes_channels_and_loading_errors() {
    let config = MobileNetV3Config::small_100().with_classes(7).with_in_channels(1);
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    let model = MobileNetV3::new(&config, vb).unwrap();
    let x = pattern(&[2, 1, 40, 33], 5, 1.0, 0.0);
    let features = model.forward_features(&x, false).unwrap();
    assert_eq!(features.dims(), [2, 576, 2, 2]);
    assert_eq!(model.forward_head(&features, false).unwrap().dims(), [2, 7]);
    let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        model.forward_t(&x, false),
        Err(Error::InputShape { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let large = MobileNetV3Config::large_100();
    let tv_state = timm_to_torchvision(&large.arch, zero_state(&large)).unwrap();
    let variant = Variant::find(mobilenet::VARIANTS, "mobilenet_v3_large").unwrap();
    let load = |path: &Path| variant.load(path, &variant.reference_options(), DType::F32, &Device::Cpu);
    let key = "features.4.block.2.fc1.weight";
    let mut missing = tv_state.clone();
    assert!(missing.remove(key).is_some());
    let path = save(dir.path(), "missing.safetensors", &missing);
    match load(&path) {
        Err(Error::Weights { tensor, problem, .. }) => {
            assert_eq!(tensor, key);
            assert!(problem.contains("missing"), "{problem}");
        }
        other => panic!("expected a missing-tensor error, got {:?}", other.err()),
    }
    let mut misshaped = tv_state;
    misshaped.insert(
        "classifier.0.weight".into(),
        Tensor::zeros((1280, 961), DType::F32, &Device::Cpu).unwrap(),
    );
    let path = save(dir.path(), "misshaped.safetensors", &misshaped);
    let msg = load(&path).err().expect("a mis-shaped head").to_string();
    for needle in [
        "misshaped.safetensors",
        "classifier.0.weight",
        "[1280, 960, 1, 1]",
        "[1280, 961, 1, 1]",
    ] {
        assert!(msg.contains(needle), "`{msg}` should mention {needle}");
    }
}

#[test]
fn weights_are_not_mixed_up_between_the_libraries_batch_norms() {
    // The same weights give different outputs under the two batch norms: the fixtures' two
    // eval logits differ by more than the test's tolerance, so each comparison above can fail.
    for case in CASES {
        let fixture = load_fixture(case.name);
        let err = relative_error(&fixture["timm.eval.logits"], &fixture["tv.eval.logits"]);
        assert!(err > 1e-3, "{}: {err}", case.name);
    }
}

/// Fifteen steps of Adam (PyTorch's defaults, lr 1e-3) on 16 MNIST digits (zero padded to 32x32)
/// with the default dropout (0.2), each step with its own seeded mask, from torchvision's
/// initialisation, for both architectures: the loss measured in training mode (batch
/// statistics) with the same dropout mask before and after must fall to under a quarter.
/// Adam's bounded steps keep the trajectory where the CPU's rounding moves the losses by far
/// less than that margin (as EfficientNet's test).
#[test]
fn adam_on_mnist_digits_lowers_the_loss() {
    const STEPS: u64 = 15;
    const PROBE: u64 = 1234;
    let (xs, ys) = testkit::densenet_efficientnet::mnist(16, 32);
    for config in [MobileNetV3Config::small_100(), MobileNetV3Config::large_100()] {
        let config = config.with_in_channels(1).with_classes(10);
        let vars = backbone::init::SeededVarMap::new(8);
        let model = MobileNetV3::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
        let loss = |seed: u64| {
            backbone::init::seed(seed);
            let logits = model.forward_t(&xs, true).unwrap();
            candle_nn::loss::cross_entropy(&logits, &ys).unwrap()
        };
        let (before, after, losses) = testkit::densenet_efficientnet::adam_steps(&vars, STEPS, PROBE, loss);
        assert!(
            after < 0.25 * before,
            "{}: the loss should fall: {before} before, {after} after (training losses {losses:?})",
            config.name()
        );
    }
}
