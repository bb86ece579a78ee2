//! Helpers shared by the test files: the fixture generator's `pattern` and filling rule, and
//! comparisons.

#![allow(dead_code)]

use backbone::init::SeededVarMap;
use candle_core::{Device, Tensor};
use std::collections::HashMap;

/// `scripts/gen_googlenet_fixtures.py`'s `pattern`: element i is `offset + scale * (2u - 1)`,
/// `u` the top 24 bits of a SplitMix64-style mix of `seed * 2^32 + i` over 2^24, computed in
/// f64 and rounded to f32 once.
pub use testkit::alexnet_nin::pattern_offset as pattern;

/// The script's `rule`: `(scale, offset)` of a variable.
fn rule(key: &str, dims: &[usize]) -> (f64, f64) {
    if key.ends_with("running_var") {
        (0.5, 1.0)
    } else if key.ends_with("running_mean") {
        (0.2, 0.0)
    } else if key.contains(".bn.") {
        if key.ends_with("weight") {
            (0.3, 1.0)
        } else {
            (0.1, 0.0)
        }
    } else if dims.len() > 1 {
        ((6.0 / dims[1..].iter().product::<usize>() as f64).sqrt(), 0.0)
    } else {
        (0.1, 0.0)
    }
}

/// The script's `fill_with_pattern`: variable j of the sorted names from `pattern` (f32
/// values, converted to the variable's dtype).
pub fn fill_with_pattern(vars: &SeededVarMap) {
    let data = vars.varmap().data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (j, name) in names.into_iter().enumerate() {
        let var = &data[name];
        let (scale, offset) = rule(name, var.dims());
        let values = pattern(var.dims(), j as u64, scale, offset);
        var.set(&values.to_dtype(var.dtype()).unwrap()).unwrap();
    }
}

/// The script's `sample`: at most 1024 values spread over the flattened tensor.
pub fn sample(t: &Tensor) -> Tensor {
    let n = t.elem_count();
    let stride = if n <= 1024 { 1 } else { n / 1024 + 1 };
    let values = t
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let values = values.to_vec1::<f32>().unwrap();
    let picked: Vec<f32> = values.into_iter().step_by(stride).collect();
    let len = picked.len();
    Tensor::from_vec(picked, len, &Device::Cpu).unwrap()
}

pub fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/googlenet.safetensors"
    );
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// Element-wise `|ours - reference| <= rel * max|reference|`; returns the largest relative
/// error.
pub fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, rel: f32) -> f32 {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let ours = ours.to_dtype(candle_core::DType::F32).unwrap();
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let mut worst = 0f32;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let err = (x - y).abs() / scale;
        worst = worst.max(err);
        assert!(err <= rel, "{name}[{i}]: ours {x}, PyTorch {y} (scale {scale})");
    }
    worst
}

/// Logits compared as they are and, to check the input-dependent part on its own (the two
/// rows of a batch share most of their value through the batch-norm shifts), the difference
/// of the two rows.
pub fn assert_logits_close(name: &str, ours: &Tensor, reference: &Tensor, rel: f32) {
    assert_close(name, ours, reference, rel);
    let diff = |t: &Tensor| (t.get(0).unwrap() - t.get(1).unwrap()).unwrap();
    assert_close(
        &format!("{name} (row 0 - row 1)"),
        &diff(ours),
        &diff(reference),
        10.0 * rel,
    );
}
