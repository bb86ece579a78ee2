//! Loading weights: torchvision's layout and the Hugging Face hub layout of timm's weights
//! give identical models; in timm's layout missing and mis-shaped tensors are reported with the
//! file, the tensor as the file spells it, the expected and the actual shape.

mod common;

use backbone::catalogue::Variant;
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{assert_close, filled_state, hashed, variable_shapes};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vgg::{remap_timm, Vgg, VggConfig};

/// The catalogue's variant `name` from a file, strictly (the one way in).
fn load(name: &str, path: &Path) -> backbone::Result<Box<dyn Backbone>> {
    let variant = Variant::find(vgg::VARIANTS, name)?;
    Ok(variant
        .load(path, &variant.reference_options(), DType::F32, &Device::Cpu)?
        .0)
}

/// The catalogue's variant `name` from tensors in any layout it accepts; `file` is named in
/// errors.
fn from_tensors(
    name: &str,
    tensors: HashMap<String, Tensor>,
    file: &Path,
) -> backbone::Result<Box<dyn Backbone>> {
    let variant = Variant::find(vgg::VARIANTS, name)?;
    let (tensors, info) = variant.canonical(tensors, Some(3))?;
    variant.build_from(
        tensors,
        &info,
        Some(file),
        &variant.reference_options(),
        DType::F32,
        &Device::Cpu,
    )
}

fn save(dir: &Path, name: &str, tensors: &HashMap<String, Tensor>) -> PathBuf {
    let path = dir.join(name);
    candle_core::safetensors::save(tensors, &path).unwrap();
    path
}

/// torchvision's state dict in timm's layout (what `timm`'s `_filter_fn` does to it).
fn to_timm(state: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    state
        .iter()
        .map(|(k, v)| {
            let (key, value) = match k.as_str() {
                "classifier.0.weight" => (
                    "pre_logits.fc1.weight".into(),
                    v.reshape((4096, 512, 7, 7)).unwrap(),
                ),
                "classifier.0.bias" => ("pre_logits.fc1.bias".into(), v.clone()),
                "classifier.3.weight" => (
                    "pre_logits.fc2.weight".into(),
                    v.reshape((4096, 4096, 1, 1)).unwrap(),
                ),
                "classifier.3.bias" => ("pre_logits.fc2.bias".into(), v.clone()),
                "classifier.6.weight" => ("head.fc.weight".into(), v.clone()),
                "classifier.6.bias" => ("head.fc.bias".into(), v.clone()),
                _ => (k.clone(), v.clone()),
            };
            (key, value)
        })
        .collect()
}

fn weights_error<T>(result: backbone::Result<T>) -> (Option<PathBuf>, String, String) {
    match result {
        Err(Error::Weights {
            file,
            tensor,
            problem,
        }) => (file, tensor, problem),
        other => panic!("expected a weights error, got {:?}", other.err()),
    }
}

#[test]
fn torchvision_and_timm_files_give_identical_outputs() {
    // VGG-11-BN: batch-norm buffers travel through both layouts too.
    let config = VggConfig::vgg11_bn();
    let state = filled_state(&config);
    let dir = tempfile::tempdir().unwrap();
    let x = hashed(&[2, 3, 32, 48], 77, 1.0, 0.0);
    let reference = Vgg::new(
        &config,
        VarBuilder::from_tensors(state.clone(), DType::F32, &Device::Cpu),
    )
    .unwrap()
    .forward_t(&x, false)
    .unwrap();

    let path = save(dir.path(), "vgg11_bn.safetensors", &state);
    let model = load("vgg11_bn", &path).unwrap();
    assert_close(
        "torchvision layout",
        &model.forward_t(&x, false).unwrap(),
        &reference,
        0.0,
    );
    drop(model);
    std::fs::remove_file(&path).unwrap();

    let timm = to_timm(&state);
    assert!(vgg::is_timm_layout(&timm) && !vgg::is_timm_layout(&state));
    let remapped = remap_timm(timm.clone()).unwrap();
    let mut keys: Vec<&String> = remapped.keys().collect();
    keys.sort();
    let mut expected: Vec<&String> = state.keys().collect();
    expected.sort();
    assert_eq!(keys, expected);
    for (k, v) in &remapped {
        assert_eq!(v.dims(), state[k].dims(), "{k}");
    }
    drop(remapped);

    let path = save(dir.path(), "vgg11_bn.timm.safetensors", &timm);
    let model = load("vgg11_bn", &path).unwrap();
    assert_close(
        "timm layout",
        &model.forward_t(&x, false).unwrap(),
        &reference,
        0.0,
    );
    drop(model);

    // An unexpected tensor (strict loading), in timm's layout, named with the file.
    let mut extra = timm;
    extra.insert(
        "head.norm.weight".into(),
        Tensor::zeros(4096, DType::F32, &Device::Cpu).unwrap(),
    );
    let (file, tensor, problem) = weights_error(from_tensors("vgg11_bn", extra, &path));
    assert_eq!(
        (file.as_deref(), tensor.as_str()),
        (Some(path.as_path()), "head.norm.weight")
    );
    assert!(problem.contains("unexpected"), "{problem}");

    // An unexpected tensor in torchvision's layout.
    let mut extra = state;
    extra.insert(
        "classifier.9.weight".into(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    let (_, tensor, problem) = weights_error(from_tensors("vgg11_bn", extra, &path));
    assert_eq!(tensor, "classifier.9.weight");
    assert!(problem.contains("unexpected"), "{problem}");
}

/// Zero tensors (allocated lazily) for the variables of `config` whose names start with
/// `prefix`.
fn zeros_state(config: &VggConfig, prefix: &str) -> HashMap<String, Tensor> {
    variable_shapes(config)
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, d)| (k, Tensor::zeros(d, DType::F32, &Device::Cpu).unwrap()))
        .collect()
}

#[test]
fn remap_timm_checks_the_convolutional_pre_logits() {
    let zeros = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
    // fc1 must be a 4096 x 512 x 7 x 7 convolution, fc2 a 4096 x 4096 x 1 x 1 one: the error
    // names the tensor and both shapes.
    for (key, dims, expected) in [
        ("pre_logits.fc1.weight", vec![16, 512, 7, 7], "[4096, 512, 7, 7]"),
        ("pre_logits.fc1.weight", vec![4096, 25088], "[4096, 512, 7, 7]"),
        ("pre_logits.fc2.weight", vec![16, 32, 3, 3], "[4096, 4096, 1, 1]"),
    ] {
        let tensors = HashMap::from([(key.to_string(), zeros(&dims))]);
        let err = remap_timm(tensors).unwrap_err();
        let msg = err.to_string();
        let actual = format!("{dims:?}");
        assert!(
            msg.contains(key) && msg.contains(expected) && msg.contains(&actual),
            "{msg}"
        );
    }
    // Mixed layouts are refused.
    let tensors = HashMap::from([
        ("head.fc.weight".to_string(), zeros(&[10, 4096])),
        ("classifier.6.weight".to_string(), zeros(&[10, 4096])),
    ]);
    let msg = remap_timm(tensors).unwrap_err().to_string();
    assert!(
        msg.contains("classifier.6.weight") && msg.contains("mixed"),
        "{msg}"
    );
    // torchvision's layout is returned as it is; timm's biases are renamed.
    let tensors = HashMap::from([("classifier.6.bias".to_string(), zeros(&[10]))]);
    assert_eq!(
        remap_timm(tensors).unwrap().keys().collect::<Vec<_>>(),
        ["classifier.6.bias"]
    );
    let tensors = HashMap::from([("head.fc.bias".to_string(), zeros(&[10]))]);
    assert_eq!(
        remap_timm(tensors).unwrap().keys().collect::<Vec<_>>(),
        ["classifier.6.bias"]
    );
}

/// timm's layout: errors name the tensors as the file spells them (every model's own layout:
/// `convnets/tests/contract.rs`).
#[test]
fn timm_layout_errors_name_the_tensor_as_the_file_does() {
    let config = VggConfig::vgg11();
    let dir = tempfile::tempdir().unwrap();
    let load = |path: &Path| load("vgg11", path);

    // timm's layout: a mis-shaped fc1 is reported with the shapes of the file.
    let mut state = zeros_state(&config, "features.");
    state.insert(
        "pre_logits.fc1.weight".into(),
        Tensor::zeros((16, 512, 7, 7), DType::F32, &Device::Cpu).unwrap(),
    );
    let path = save(dir.path(), "timm_fc1.safetensors", &state);
    let msg = load(&path).err().expect("mis-shaped fc1 must fail").to_string();
    for needle in [
        "timm_fc1.safetensors",
        "pre_logits.fc1.weight",
        "[4096, 512, 7, 7]",
        "[16, 512, 7, 7]",
    ] {
        assert!(msg.contains(needle), "`{msg}` should mention {needle}");
    }

    // timm's layout: a missing tensor is named as in the file.
    let mut state = zeros_state(&config, "features.");
    state.insert(
        "head.fc.bias".into(),
        Tensor::zeros(1000, DType::F32, &Device::Cpu).unwrap(),
    );
    let path = save(dir.path(), "timm_missing.safetensors", &state);
    let (file, tensor, problem) = weights_error(load(&path));
    assert_eq!(
        (file.as_deref(), tensor.as_str()),
        (Some(path.as_path()), "pre_logits.fc1.weight")
    );
    assert!(
        problem.contains("missing") && problem.contains("classifier.0.weight"),
        "{problem}"
    );
}
