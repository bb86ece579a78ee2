//! The helpers of `scripts/gen_catalogue_fixtures.py`: its fixtures
//! (`testkit/fixtures/catalogue/{timm,torchvision}-<model>.json`, the real libraries' key lists,
//! timm's `config.json` and reference outputs) and its closed-form weights rule.

use crate::densenet_efficientnet::pattern;
use candle_core::Tensor;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The fixture folder.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/catalogue"))
}

/// Every fixture, `(file stem, JSON)`, sorted by name.
pub fn fixtures() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir())
        .expect("the catalogue fixtures")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "json").then(|| {
                let name = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let bytes = std::fs::read(&path).expect("a fixture");
                (name, serde_json::from_slice(&bytes).expect("fixture JSON"))
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One fixture by file stem (`timm-resnet18`).
pub fn fixture(name: &str) -> Value {
    let bytes = std::fs::read(dir().join(format!("{name}.json"))).expect("a fixture");
    serde_json::from_slice(&bytes).expect("fixture JSON")
}

/// A state dict's key list: `(key, shape, dtype)`.
pub type Keys = Vec<(String, Vec<usize>, String)>;

/// `(key, shape, dtype)` of a fixture's key list.
pub fn keys(list: &Value) -> Keys {
    list.as_array()
        .expect("a key list")
        .iter()
        .map(|k| {
            let shape = k[1]
                .as_array()
                .expect("a shape")
                .iter()
                .map(|d| d.as_u64().expect("a dimension") as usize)
                .collect();
            (
                k[0].as_str().expect("a key").to_string(),
                shape,
                k[2].as_str().expect("a dtype").to_string(),
            )
        })
        .collect()
}

/// The layouts of a fixture as (key list, `expected`, `predict`): its default and, for
/// googlenet / inception_v3, its `aux_logits=False` variant.
pub fn layouts(fixture: &Value) -> Vec<(Keys, &Value, &Value)> {
    let mut out = vec![(keys(&fixture["keys"]), &fixture["expected"], &fixture["predict"])];
    if fixture.get("keys_no_aux").is_some() {
        out.push((
            keys(&fixture["keys_no_aux"]),
            &fixture["expected_no_aux"],
            &fixture["predict_no_aux"],
        ));
    }
    out
}

/// The fixture's weights rule (see its README): pattern values by sorted-key index, counters
/// left out.
pub fn reference_weights(keys: &Keys, expected: &Value) -> HashMap<String, Tensor> {
    let classifier = expected["classifier"].as_str().expect("the classifier");
    let c = expected["classifier_scale_factor"]
        .as_f64()
        .expect("the scale factor");
    let mut names: Vec<&String> = keys
        .iter()
        .map(|(k, _, _)| k)
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    names.sort();
    let shapes: BTreeMap<&String, &Vec<usize>> = keys.iter().map(|(k, s, _)| (k, s)).collect();
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let shape = shapes[name];
            let index = index as u64;
            let head = **name == format!("{classifier}.weight") || **name == format!("{classifier}.bias");
            let c = if head { c } else { 1.0 };
            let tensor = if name.ends_with("running_var") {
                pattern(shape, index, 0.1, 1.0)
            } else if name.ends_with("running_mean") {
                pattern(shape, index, 0.1, 0.0)
            } else if shape.len() == 1 && name.ends_with(".weight") {
                pattern(shape, index, 0.1, 1.0)
            } else if shape.len() >= 2 {
                let fan_in: usize = shape[1..].iter().product();
                pattern(shape, index, c / (fan_in as f64).sqrt(), 0.0)
            } else {
                pattern(shape, index, c * 0.1, 0.0)
            };
            ((*name).clone(), tensor)
        })
        .collect()
}

/// `[[class, probability], ...]` of a fixture's `top5`.
pub fn top5(value: &Value) -> Vec<(usize, f64)> {
    value
        .as_array()
        .expect("a top-5")
        .iter()
        .map(|e| {
            (
                e[0].as_u64().expect("a class") as usize,
                e[1].as_f64().expect("a probability"),
            )
        })
        .collect()
}
