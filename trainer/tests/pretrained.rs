//! Loading pretrained weights with head replacement, and the frozen-backbone partition.

use backbone::init::SeededVarMap;
use candle_core::{DType, Device, Tensor};
use lenet::{LeNet, LeNetConfig};
use std::collections::HashMap;
use std::path::Path;
use trainer::pretrained::{backbone_vars, forward_frozen, head_prefixes, head_vars, under_prefix};

/// Pretrained tensors of `file` into `varmap`, the head prefixes kept fresh where their shape
/// differs (the catalogue's copy step, `backbone::weights::load_into`, after the validated
/// read).
fn load_pretrained(
    varmap: &candle_nn::VarMap,
    file: &Path,
    head_prefixes: &[String],
) -> trainer::Result<trainer::pretrained::LoadReport> {
    let tensors = trainer::pretrained::read_safetensors(file)?;
    Ok(backbone::weights::load_into(
        varmap,
        tensors,
        file,
        head_prefixes,
    )?)
}

fn lenet(classes: usize, seed: u64) -> (LeNet, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let config = LeNetConfig::lenet5().with_classes(classes);
    let model = LeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

fn state(vars: &SeededVarMap) -> HashMap<String, Tensor> {
    let data = vars.varmap().data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.dims() == b.dims()
        && a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn save(tensors: &HashMap<String, Tensor>, path: &Path) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

#[test]
fn same_class_count_loads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.safetensors");
    let (_, source) = lenet(10, 1);
    save(&state(&source), &file);
    let (model, target) = lenet(10, 2);
    let report = load_pretrained(target.varmap(), &file, &head_prefixes(&model)).unwrap();
    assert_eq!(report.loaded.len(), 10);
    assert!(report.initialised.is_empty() && report.ignored.is_empty());
    let (a, b) = (state(&source), state(&target));
    for (name, t) in &a {
        assert!(same(t, &b[name]), "{name} differs");
    }
    let text = report.to_string();
    assert!(text.contains("loaded 10 tensors from"), "{text}");
    assert!(text.contains("conv1 (2)") && text.contains("fc3 (2)"), "{text}");
}

#[test]
fn another_class_count_keeps_a_fresh_head_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.safetensors");
    let (_, source) = lenet(1000, 1);
    save(&state(&source), &file);
    let (model, target) = lenet(7, 2);
    let fresh = state(&target);
    let report = load_pretrained(target.varmap(), &file, &head_prefixes(&model)).unwrap();
    assert_eq!(report.loaded.len(), 8);
    let initialised: Vec<&str> = report.initialised.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(initialised, ["fc3.bias", "fc3.weight"]);
    assert!(report.initialised[1].1.contains("[1000, 84]") && report.initialised[1].1.contains("[7, 84]"));
    assert!(report.to_string().contains("initialised fc3.weight"));
    let (src, now) = (state(&source), state(&target));
    assert!(same(&src["conv1.weight"], &now["conv1.weight"]));
    assert!(same(&fresh["fc3.weight"], &now["fc3.weight"]));
}

#[test]
fn f16_weights_load_into_an_f32_model() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("half.safetensors");
    let (_, source) = lenet(10, 1);
    let half: HashMap<String, Tensor> = state(&source)
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
        .collect();
    save(&half, &file);
    let (model, target) = lenet(10, 2);
    load_pretrained(target.varmap(), &file, &head_prefixes(&model)).unwrap();
    let now = state(&target);
    assert_eq!(now["conv1.weight"].dtype(), DType::F32);
    let expected = half["conv1.weight"].to_dtype(DType::F32).unwrap();
    assert!(same(&expected, &now["conv1.weight"]));
}

fn load_error(
    tensors: HashMap<String, Tensor>,
) -> (String, HashMap<String, Tensor>, HashMap<String, Tensor>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.safetensors");
    save(&tensors, &file);
    let (model, target) = lenet(10, 2);
    let before = state(&target);
    let err = load_pretrained(target.varmap(), &file, &head_prefixes(&model))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.safetensors"), "{err}");
    (err, before, state(&target))
}

#[test]
fn a_mis_shaped_backbone_tensor_is_an_error_and_nothing_changes() {
    let (_, source) = lenet(10, 1);
    let mut tensors = state(&source);
    tensors.insert(
        "conv2.weight".into(),
        Tensor::zeros((16, 6, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let (err, before, after) = load_error(tensors);
    assert!(err.contains("conv2.weight"), "{err}");
    assert!(
        err.contains("[16, 6, 5, 5]") && err.contains("[16, 6, 3, 3]"),
        "{err}"
    );
    for (name, t) in &before {
        assert!(same(t, &after[name]), "{name} changed although loading failed");
    }
}

#[test]
fn a_missing_backbone_tensor_is_an_error() {
    let (_, source) = lenet(10, 1);
    let mut tensors = state(&source);
    tensors.remove("fc1.bias");
    let (err, _, _) = load_error(tensors);
    assert!(err.contains("fc1.bias") && err.contains("missing"), "{err}");
}

#[test]
fn an_unexpected_tensor_is_an_error() {
    let (_, source) = lenet(10, 1);
    let mut tensors = state(&source);
    tensors.insert(
        "layer1.0.conv1.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let (err, _, _) = load_error(tensors);
    assert!(
        err.contains("layer1.0.conv1.weight") && err.contains("another architecture"),
        "{err}"
    );
}

#[test]
fn a_missing_or_corrupt_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (model, target) = lenet(10, 2);
    let missing = dir.path().join("nope.safetensors");
    let err = load_pretrained(target.varmap(), &missing, &head_prefixes(&model))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.safetensors") && err.contains("no such file"),
        "{err}"
    );
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let err = load_pretrained(target.varmap(), &corrupt, &head_prefixes(&model))
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt.safetensors"), "{err}");
}

#[test]
fn frozen_forward_sends_gradients_to_the_head_only() {
    let (model, vars) = lenet(10, 3);
    let head: Vec<String> = head_vars(vars.varmap(), &model)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(head, ["fc3.bias", "fc3.weight"]);
    let body = backbone_vars(vars.varmap(), &model);
    assert_eq!(body.len(), 8);
    let xs = Tensor::randn(0f32, 1.0, (2, 1, 32, 32), &Device::Cpu).unwrap();
    let loss = forward_frozen(&model, &xs, true)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in head_vars(vars.varmap(), &model) {
        assert!(grads.get(var.as_tensor()).is_some(), "{name} has no gradient");
    }
    for (name, var) in body {
        assert!(grads.get(var.as_tensor()).is_none(), "{name} got a gradient");
    }
}

#[test]
fn prefixes_match_whole_components() {
    assert!(under_prefix("fc.weight", "fc"));
    assert!(under_prefix("fc", "fc"));
    assert!(!under_prefix("fc1.weight", "fc"));
    assert!(!under_prefix("x", ""));
}
