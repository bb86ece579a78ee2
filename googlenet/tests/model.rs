//! Behaviour beyond the reference outputs: auxiliary heads only in training, the smallest input
//! sizes, configuration errors, fresh initialisation, loading torchvision and timm files (every
//! model's input and weights errors: `convnets/tests/contract.rs`).

mod common;

use backbone::catalogue::{ModelOptions, Variant};
use backbone::init::{trainable_vars, SeededVarMap};
use backbone::layers::Layer;
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor};
use common::{assert_close, pattern};
use googlenet::{GoogLeNet, GoogLeNetConfig, InceptionV3, InceptionV3Config};
use std::collections::HashMap;

fn googlenet(config: GoogLeNetConfig, seed: u64) -> (GoogLeNet, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let model = GoogLeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

fn inception(config: InceptionV3Config, seed: u64) -> (InceptionV3, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let model = InceptionV3::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

fn zeros(dims: &[usize]) -> Tensor {
    Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap()
}

fn state(vars: &SeededVarMap) -> HashMap<String, Tensor> {
    let data = vars.varmap().data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect()
}

fn var(vars: &SeededVarMap, name: &str) -> Tensor {
    vars.varmap().data().lock().unwrap()[name].as_tensor().detach()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn googlenet_aux_heads_run_only_in_training() {
    let config = GoogLeNetConfig::googlenet().with_classes(7);
    let (model, vars) = googlenet(config, 1);
    let x = pattern(&[2, 3, 40, 36], 5, 1.0, 0.0);
    let eval = model.forward_aux(&x, false).unwrap();
    assert_eq!(eval.logits.dims(), [2, 7]);
    assert!(eval.aux_logits.is_empty());

    // forward_t in training does not run the heads: their batch norms keep their statistics.
    let aux_mean = || values(&var(&vars, "aux1.conv.bn.running_mean"));
    let trunk_mean = || values(&var(&vars, "conv1.bn.running_mean"));
    let (aux_before, trunk_before) = (aux_mean(), trunk_mean());
    assert_eq!(model.forward_t(&x, true).unwrap().dims(), [2, 7]);
    assert_eq!(aux_mean(), aux_before);
    assert_ne!(trunk_mean(), trunk_before);

    let train = model.forward_aux(&x, true).unwrap();
    assert_eq!(train.aux_logits.len(), 2);
    for aux in &train.aux_logits {
        assert_eq!(aux.dims(), [2, 7]);
    }
    assert_ne!(aux_mean(), aux_before);
    assert_ne!(values(&train.aux_logits[0]), values(&train.aux_logits[1]));

    // Without the heads: no variables, no auxiliary logits.
    let (model, vars) = googlenet(config.with_aux_logits(false), 1);
    assert!(model.forward_aux(&x, true).unwrap().aux_logits.is_empty());
    assert!(state(&vars).keys().all(|k| !k.starts_with("aux")));
}

#[test]
fn inception_v3_aux_head_runs_only_in_training_and_needs_299() {
    let config = InceptionV3Config::inception_v3().with_classes(5);
    let (model, _) = inception(config, 1);
    let small = zeros(&[2, 3, 75, 75]);
    assert!(model.forward_aux(&small, false).unwrap().aux_logits.is_empty());
    // forward_t never runs the head, so 75x75 trains.
    assert_eq!(model.forward_t(&small, true).unwrap().dims(), [2, 5]);
    match model.forward_aux(&pattern(&[2, 3, 298, 320], 1, 1.0, 0.0), true) {
        Err(Error::InputShape {
            layer,
            expected,
            actual,
        }) => {
            assert!(layer.contains("auxiliary"), "{layer}");
            assert_eq!(expected, "[N, 3, H>=299, W>=299]");
            assert_eq!(actual, [2, 3, 298, 320]);
        }
        other => panic!("expected an input shape error, got {:?}", other.map(|o| o.logits)),
    }
    let out = model
        .forward_aux(&pattern(&[2, 3, 299, 299], 2, 1.0, 0.0), true)
        .unwrap();
    assert_eq!(out.logits.dims(), [2, 5]);
    assert_eq!(out.aux_logits.len(), 1);
    assert_eq!(out.aux_logits[0].dims(), [2, 5]);

    let (model, vars) = inception(config.with_aux_logits(false), 1);
    assert!(model.forward_aux(&small, true).unwrap().aux_logits.is_empty());
    assert!(state(&vars).keys().all(|k| !k.starts_with("AuxLogits")));
}

/// The smallest inputs are torchvision's (the refusals below them, every model's:
/// `convnets/tests/contract.rs`).
#[test]
fn minimum_input_sizes_are_torchvisions() {
    // GoogLeNet: 15x15 is the smallest input all ceil-mode max pools accept (torchvision's
    // min_size); the auxiliary heads' adaptive pools accept any map.
    let (model, _) = googlenet(GoogLeNetConfig::googlenet().with_classes(4), 3);
    assert_eq!(model.input_spec().min_size, (15, 15));
    assert_eq!(
        model.forward_t(&zeros(&[1, 3, 15, 15]), false).unwrap().dims(),
        [1, 4]
    );
    let out = model
        .forward_aux(&pattern(&[2, 3, 15, 17], 3, 1.0, 0.0), true)
        .unwrap();
    assert_eq!(out.aux_logits.len(), 2);

    // Inception-v3: 75x75 (torchvision's min_size).
    let (model, _) = inception(InceptionV3Config::inception_v3().with_classes(4), 3);
    assert_eq!(model.input_spec().min_size, (75, 75));
    assert_eq!(model.input_spec().default_size, (299, 299));
    assert_eq!(
        model.forward_t(&zeros(&[1, 3, 75, 80]), false).unwrap().dims(),
        [1, 4]
    );
}

#[test]
fn configurable_classes_channels_and_configuration_errors() {
    let config = GoogLeNetConfig::googlenet().with_classes(7).with_in_channels(1);
    let (model, vars) = googlenet(config, 4);
    let x = zeros(&[2, 1, 32, 32]);
    let features = model.forward_features(&x, false).unwrap();
    assert_eq!(features.dims(), [2, 1024, 1, 1]);
    assert_eq!(
        model.forward_pre_logits(&features, false).unwrap().dims(),
        [2, 1024]
    );
    assert_eq!(model.forward_head(&features, false).unwrap().dims(), [2, 7]);
    assert_eq!(var(&vars, "conv1.conv.weight").dims(), [64, 1, 7, 7]);
    assert_eq!(var(&vars, "aux2.fc2.weight").dims(), [7, 1024]);

    let config = InceptionV3Config::inception_v3()
        .with_classes(3)
        .with_in_channels(2);
    let (model, vars) = inception(config, 4);
    let features = model.forward_features(&zeros(&[1, 2, 75, 75]), false).unwrap();
    assert_eq!(features.dims(), [1, 2048, 1, 1]);
    assert_eq!(
        model.forward_pre_logits(&features, false).unwrap().dims(),
        [1, 2048]
    );
    assert_eq!(var(&vars, "Conv2d_1a_3x3.conv.weight").dims(), [32, 2, 3, 3]);
    assert_eq!(var(&vars, "AuxLogits.fc.weight").dims(), [3, 768]);

    let vb = || SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu);
    let bad_googlenet = [
        GoogLeNetConfig::googlenet()
            .with_in_channels(1)
            .with_transform_input(true),
        GoogLeNetConfig::googlenet().with_dropout(1.0, 0.7),
        GoogLeNetConfig::googlenet().with_dropout(0.2, -0.1),
    ];
    for config in bad_googlenet {
        match GoogLeNet::new(&config, vb()) {
            Err(Error::Config(msg)) => assert!(!msg.is_empty()),
            other => panic!(
                "{config:?}: expected a configuration error, got {:?}",
                other.err()
            ),
        }
    }
    let bad_inception = [
        InceptionV3Config::inception_v3()
            .with_in_channels(1)
            .with_transform_input(true),
        InceptionV3Config::inception_v3().with_dropout(1.5),
    ];
    for config in bad_inception {
        match InceptionV3::new(&config, vb()) {
            Err(Error::Config(msg)) => assert!(!msg.is_empty()),
            other => panic!(
                "{config:?}: expected a configuration error, got {:?}",
                other.err()
            ),
        }
    }
}

/// Mean and standard deviation.
fn moments(t: &Tensor) -> (f64, f64) {
    let v = values(t);
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn assert_normal(vars: &SeededVarMap, name: &str, std: f64) {
    let (m, s) = moments(&var(vars, name));
    assert!(m.abs() < 0.05 * std, "{name}: mean {m}");
    assert!((s / std - 1.0).abs() < 0.05, "{name}: std {s}, expected {std}");
}

#[test]
fn fresh_weights_follow_torchvision_init_and_the_seed() {
    let (_, vars) = googlenet(GoogLeNetConfig::googlenet(), 5);
    for name in [
        "conv1.conv.weight",
        "inception4e.branch2.1.conv.weight",
        "aux1.fc1.weight",
        "fc.weight",
    ] {
        assert_normal(&vars, name, 0.01);
    }
    // Biases: PyTorch's default, uniform in +-1/sqrt(fan_in).
    assert!(values(&var(&vars, "fc.bias"))
        .iter()
        .all(|b| b.abs() <= 1.0 / 32.0));
    assert!(values(&var(&vars, "conv1.bn.weight")).iter().all(|&w| w == 1.0));
    assert!(values(&var(&vars, "conv1.bn.bias")).iter().all(|&b| b == 0.0));
    assert!(values(&var(&vars, "conv1.bn.running_var"))
        .iter()
        .all(|&v| v == 1.0));
    let (_, same) = googlenet(GoogLeNetConfig::googlenet(), 5);
    let (_, other) = googlenet(GoogLeNetConfig::googlenet(), 6);
    let w = |vars: &SeededVarMap| values(&var(vars, "inception3a.branch1.conv.weight"));
    assert_eq!(w(&vars), w(&same));
    assert_ne!(w(&vars), w(&other));

    let (_, vars) = inception(InceptionV3Config::inception_v3(), 5);
    for name in [
        "Conv2d_4a_3x3.conv.weight",
        "Mixed_6b.branch7x7_2.conv.weight",
        "AuxLogits.conv1.conv.weight",
        "fc.weight",
    ] {
        assert_normal(&vars, name, 0.1);
    }
    assert_normal(&vars, "AuxLogits.fc.weight", 0.001);
}

/// The catalogue's options: `classes` classes, 3 channels, auxiliary heads `aux`.
fn options(classes: usize, aux: bool) -> ModelOptions {
    ModelOptions {
        num_classes: classes,
        in_channels: 3,
        aux_logits: aux,
    }
}

#[test]
fn googlenet_loads_torchvision_layout_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = GoogLeNetConfig::googlenet().with_classes(10);
    let (fresh, vars) = googlenet(config, 7);
    let state = state(&vars);
    let path = dir.path().join("googlenet.safetensors");
    candle_core::safetensors::save(&state, &path).unwrap();
    let x = pattern(&[1, 3, 64, 64], 8, 1.0, 0.0);
    let expected = fresh.forward_t(&x, false).unwrap();

    // The one way in: the catalogue's variant.
    let variant = Variant::find(googlenet::VARIANTS, "googlenet").unwrap();
    let load = |options: &ModelOptions| {
        variant
            .load(&path, options, DType::F32, &Device::Cpu)
            .map(|(m, _)| m)
    };
    let model = load(&options(10, true)).unwrap();
    assert_close("reloaded", &model.forward_t(&x, false).unwrap(), &expected, 0.0);
    assert_eq!(model.aux_head_prefixes(), ["aux1.fc2", "aux2.fc2"]);
    // A checkpoint with the auxiliary heads loads into a model without them.
    let model = load(&options(10, false)).unwrap();
    assert!(model.aux_head_prefixes().is_empty());
    assert_close(
        "without aux",
        &model.forward_t(&x, false).unwrap(),
        &expected,
        0.0,
    );
    // Other mismatches are errors naming the tensor.
    match load(&options(11, true)) {
        Err(Error::Weights { tensor, problem, .. }) => {
            assert_eq!(tensor, "aux1.fc2.weight");
            assert!(
                problem.contains("[11, 1024]") && problem.contains("[10, 1024]"),
                "{problem}"
            );
        }
        other => panic!("expected a shape error, got {:?}", other.err()),
    }
    let mut extra = state.clone();
    extra.insert("fc3.weight".into(), zeros(&[2, 2]));
    candle_core::safetensors::save(&extra, &path).unwrap();
    let msg = load(&options(10, true))
        .err()
        .expect("unexpected key")
        .to_string();
    assert!(msg.contains("fc3.weight") && msg.contains("unexpected"), "{msg}");
}

/// A timm `inception_v3.tv_in1k`-layout state dict (torchvision's names, no `AuxLogits.*`)
/// and the logits of the model it came from.
fn timm_state(x: &Tensor) -> (HashMap<String, Tensor>, Tensor, InceptionV3Config) {
    let config = InceptionV3Config::inception_v3().with_classes(10);
    let (model, vars) = inception(config.with_aux_logits(false), 9);
    let state = state(&vars);
    assert!(state.keys().all(|k| !k.starts_with("AuxLogits.")));
    (state, model.forward_t(x, false).unwrap(), config)
}

#[test]
fn inception_v3_loads_a_timm_file_without_aux_head() {
    let dir = tempfile::tempdir().unwrap();
    let x = pattern(&[1, 3, 75, 75], 10, 1.0, 0.0);
    let (timm, expected, _) = timm_state(&x);
    let path = dir.path().join("model.safetensors");
    candle_core::safetensors::save(&timm, &path).unwrap();
    let variant = Variant::find(googlenet::VARIANTS, "inception_v3").unwrap();

    // For inference, the auxiliary head asked for: the file has none, the model is built
    // without it.
    let (model, info) = variant
        .load(&path, &options(10, true), DType::F32, &Device::Cpu)
        .unwrap();
    assert!(!info.has_aux);
    assert!(model.aux_head_prefixes().is_empty());
    assert_close("timm", &model.forward_t(&x, false).unwrap(), &expected, 0.0);

    // To train: the head is created fresh (torchvision's initialisation), the rest comes from
    // the file, and the report says so.
    let (tensors, info) = variant.read_weights(&path, Some(3)).unwrap();
    let vars = SeededVarMap::new(11);
    let (model, report) = variant
        .load_trainable(
            tensors,
            &info,
            &path,
            &options(10, true),
            &vars,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
    assert_close(
        "timm + fresh aux",
        &model.forward_t(&x, false).unwrap(),
        &expected,
        0.0,
    );
    let names: Vec<&str> = report.initialised.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("AuxLogits.")),
        "{names:?}"
    );
    assert!(names.contains(&"AuxLogits.fc.weight"));
    let fresh_params: usize = state(&vars)
        .iter()
        .filter(|(k, _)| k.starts_with("AuxLogits.") && !backbone::init::is_buffer(k))
        .map(|(_, v)| v.elem_count())
        .sum();
    // 27,161,264 - 23,834,568 with 1000 classes; 768 * 10 + 10 for the head's fc here.
    assert_eq!(fresh_params, 3_326_696 - 769_000 + 7_690);
    assert_normal(&vars, "AuxLogits.fc.weight", 0.001);
    assert_eq!(model.aux_head_prefixes(), ["AuxLogits.fc"]);
    assert!(trainable_vars(vars.varmap())
        .iter()
        .any(|(n, _)| n == "Conv2d_1a_3x3.conv.weight"));

    // The auxiliary head off: the file loads as it is.
    let (model, _) = variant
        .load(&path, &options(10, false), DType::F32, &Device::Cpu)
        .unwrap();
    assert_close(
        "timm, no aux",
        &model.forward_t(&x, false).unwrap(),
        &expected,
        0.0,
    );
}

#[test]
fn inception_v3_loads_torchvision_layout_with_aux_and_reports_partial_heads() {
    let x = pattern(&[1, 3, 75, 75], 12, 1.0, 0.0);
    let config = InceptionV3Config::inception_v3().with_classes(10);
    let (model, vars) = inception(config, 13);
    let expected = model.forward_t(&x, false).unwrap();
    let full = state(&vars);
    let variant = Variant::find(googlenet::VARIANTS, "inception_v3").unwrap();
    let from = |tensors: &HashMap<String, Tensor>, aux: bool| {
        let (tensors, info) = variant.canonical(tensors.clone(), Some(3))?;
        variant.build_from(tensors, &info, None, &options(10, aux), DType::F32, &Device::Cpu)
    };
    // With the head in the file, its tensors are used.
    let model = from(&full, true).unwrap();
    assert_eq!(model.aux_head_prefixes(), ["AuxLogits.fc"]);
    assert_close(
        "torchvision",
        &model.forward_t(&x, false).unwrap(),
        &expected,
        0.0,
    );
    // A model without the head ignores the file's AuxLogits.* (torchvision's aux_logits=False).
    let model = from(&full, false).unwrap();
    assert_close(
        "aux ignored",
        &model.forward_t(&x, false).unwrap(),
        &expected,
        0.0,
    );
    // A file with part of the head is broken: an error.
    let mut partial = full.clone();
    partial.remove("AuxLogits.conv1.bn.running_var");
    match from(&partial, true) {
        Err(Error::Weights { tensor, problem, .. }) => {
            assert_eq!(tensor, "AuxLogits.conv1.bn.running_var");
            assert!(problem.contains("missing"), "{problem}");
        }
        other => panic!("expected a missing-tensor error, got {:?}", other.err()),
    }
    // A tensor the model does not know is an error (strict loading).
    let mut extra = full.clone();
    extra.insert("Mixed_8a.conv.weight".into(), zeros(&[1]));
    let msg = from(&extra, true).err().expect("unexpected key").to_string();
    assert!(
        msg.contains("Mixed_8a.conv.weight") && msg.contains("unexpected"),
        "{msg}"
    );
}

#[test]
fn inception_aux_head_alone_checks_its_input() {
    let vars = SeededVarMap::new(0);
    let vb = vars.var_builder(DType::F32, &Device::Cpu);
    let head = googlenet::InceptionAux::new(768, 4, vb.pp("AuxLogits")).unwrap();
    assert_eq!(
        head.forward_t(&zeros(&[2, 768, 17, 17]), false).unwrap().dims(),
        [2, 4]
    );
    assert!(matches!(
        head.forward_t(&zeros(&[2, 768, 16, 16]), false),
        Err(Error::InputShape { .. })
    ));
}
