//! Helpers shared by the integration tests: the fixture generator's closed-form weights, a
//! variable builder that only records shapes, comparisons.

#![allow(dead_code)]

use backbone::init::SeededVarMap;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use resnet::{ResNet, ResNetConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// `offset + scale * sin(0.37 i + index + 0.5 (i^2 mod 4099))` over the flattened tensor,
/// in f64 then f32: `scripts/gen_resnet_fixtures.py`'s `pattern`, operation for operation.
pub fn pattern_values(n: usize, index: f64, scale: f64, offset: f64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let phase = 0.37 * i as f64 + index + 0.5 * ((i * i) % 4099) as f64;
            (offset + scale * phase.sin()) as f32
        })
        .collect()
}

/// [`pattern_values`] as a tensor.
pub fn pattern(shape: &[usize], index: f64, scale: f64, offset: f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(pattern_values(n, index, scale, offset), shape, &Device::Cpu).unwrap()
}

/// The script's `fill`: every variable, by sorted name (index `j`): weights of rank > 1
/// `pattern(j, 1/sqrt(fan_in))`, `running_var` `1 + 0.5 sin`, batch-norm `weight`
/// `1 + 0.25 sin`, biases and `running_mean` `0.1 sin`.
pub fn fill(vars: &SeededVarMap) {
    let data = vars.varmap().data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (j, name) in names.into_iter().enumerate() {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let j = j as f64;
        let value = if dims.len() > 1 {
            let fan_in: usize = dims[1..].iter().product();
            pattern(&dims, j, 1.0 / (fan_in as f64).sqrt(), 0.0)
        } else if name.ends_with("running_var") {
            pattern(&dims, j, 0.5, 1.0)
        } else if name.ends_with("weight") {
            pattern(&dims, j, 0.25, 1.0)
        } else {
            pattern(&dims, j, 0.1, 0.0)
        };
        var.set(&value).unwrap();
    }
}

/// A fresh, seeded model and its variables.
pub fn seeded(config: &ResNetConfig, seed: u64) -> (ResNet, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let model = ResNet::new(config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// A model with the script's weights, as trainable variables.
pub fn with_pattern(config: &ResNetConfig) -> (ResNet, SeededVarMap) {
    let (model, vars) = seeded(config, 0);
    fill(&vars);
    (model, vars)
}

/// The value of a variable.
pub fn var(vars: &SeededVarMap, name: &str) -> Tensor {
    let data = vars.varmap().data().lock().unwrap();
    match data.get(name) {
        Some(v) => v.as_tensor().copy().unwrap(),
        None => panic!("no variable `{name}`"),
    }
}

/// Trainable parameters of a variable map (batch-norm running statistics excluded).
pub fn count_params(vars: &SeededVarMap) -> usize {
    backbone::init::trainable_vars(vars.varmap())
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum()
}

/// Largest `|ours - reference|` relative to the reference's largest magnitude.
pub fn rel_err(ours: &Tensor, reference: &Tensor) -> f32 {
    assert_eq!(ours.dims(), reference.dims(), "shape");
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Asserts that `ours` is within `rel` (relative to the reference's largest magnitude).
pub fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, rel: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let err = rel_err(ours, reference);
    assert!(err <= rel, "{name}: relative error {err:e} > {rel:e}");
}

/// A variable-builder backend recording the name and shape of every variable asked for and
/// handing out a broadcast scalar zero (no allocation, so the 127M-parameter Wide ResNet-101
/// costs nothing to "build").
#[derive(Clone, Default)]
pub struct ShapeRecorder(Arc<Mutex<BTreeMap<String, Vec<usize>>>>);

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_string(), shape.dims().to_vec());
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unexpected get_unchecked({name})")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// The variables of a configuration (name -> shape, sorted by name), without weights.
pub fn variable_shapes(config: &ResNetConfig) -> BTreeMap<String, Vec<usize>> {
    let recorder = ShapeRecorder::default();
    let vb = VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu);
    ResNet::new(config, vb).unwrap();
    let shapes = recorder.0.lock().unwrap().clone();
    shapes
}
