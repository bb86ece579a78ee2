//! What the export tests share: the batch sizes, the tolerance, seeded inputs and weights,
//! tract as the independent runtime, the relative difference.

use candle_core::{DType, Device, Tensor};
use convnets::Model;
use tract_onnx::prelude::{tvec, Datum, Framework, InferenceFact, InferenceModelExt, IntoTValue};

/// The largest relative difference the runtimes may show.
pub const TOLERANCE: f32 = 1e-5;

/// The batch sizes run (the exporter traces at 2 and 3).
pub const BATCHES: [usize; 2] = [1, 4];

/// Gives every variable that starts as one repeated value `v` (batch-norm weights, biases,
/// running statistics; timm's zero-initialised last batch norm of a residual block) seeded
/// values around it, so that every layer counts in the comparison: `v * [0.8, 1.2)`, or
/// `[-0.2, 0.2)` where `v` is 0 or nearly (layer scales). Small spreads keep the activations
/// of a residual network at the scale a fresh one has: a zero-initialised last batch norm
/// spread to `[0.5, 1.5)` grows the logits of RegNetY-1.6GF to ~1e3, where its
/// squeeze-and-excitation gates amplify float rounding (ONNX Runtime then differed from itself,
/// graph optimisations on and off, by 9e-2, and our forward pass at batch 1 and 4 by 4e-4).
pub fn spread_constant_vars(m: &Model) {
    let Some(vars) = m.vars.as_ref() else { return };
    let data = vars.varmap().data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (k, name) in names.into_iter().enumerate() {
        let var = &data[name];
        let t = var.as_tensor();
        let flat = t.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
        let (lo, hi) = (
            flat.min(0).unwrap().to_scalar::<f32>().unwrap(),
            flat.max(0).unwrap().to_scalar::<f32>().unwrap(),
        );
        if lo != hi || t.elem_count() < 2 {
            continue;
        }
        let (base, width) = if lo.abs() < 1e-3 {
            (-0.2, 0.4)
        } else {
            (0.8 * lo, 0.4 * lo)
        };
        let n = t.elem_count();
        let values: Vec<f32> = (0..n)
            .map(|i| base + width * (((i * 7919 + k * 104_729) % 1000) as f32 / 1000.0))
            .collect();
        let values = Tensor::from_vec(values, t.dims(), t.device())
            .unwrap()
            .to_dtype(t.dtype())
            .unwrap();
        var.set(&values).unwrap();
    }
}

/// A fixed input of `dims` (not what the exporter traced with).
pub fn input(dims: [usize; 4]) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.8)
        .collect();
    Tensor::from_vec(data, dims.as_slice(), &Device::Cpu).unwrap()
}

/// Runs `bytes` in tract on `x`.
pub fn tract_run(bytes: &[u8], x: &Tensor) -> Vec<f32> {
    let dims = x.dims().to_vec();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .expect("tract reads the file")
        .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), dims.clone()))
        .unwrap()
        .into_optimized()
        .expect("tract optimises the graph")
        .into_runnable()
        .unwrap();
    let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let t = tract_onnx::prelude::Tensor::from_shape(&dims, &data).unwrap();
    let out = plan.run(tvec!(t.into_tvalue())).expect("tract runs the graph");
    out[0].as_slice::<f32>().unwrap().to_vec()
}

/// `max |theirs - ours| / max |ours|`; panics when the lengths differ or `ours` is all zero.
pub fn relative_difference(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len(), "output sizes");
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "all-zero output");
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}
