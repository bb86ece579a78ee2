//! Helpers shared by the op tests: PyTorch fixtures, tolerant comparisons, seeded inputs and a
//! finite-difference gradient check.
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// What test functions return.
pub type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Absolute and relative tolerance against PyTorch's float32 values.
pub const FIXTURE_TOL: f64 = 1e-5;

/// Loads `backbone/tests/fixtures/<name>.safetensors` (written by
/// `scripts/gen_layer_fixtures.py`).
pub fn load_fixture(name: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(format!("{name}.safetensors"));
    match candle_core::safetensors::load(&path, &Device::Cpu) {
        Ok(tensors) => tensors,
        Err(e) => panic!(
            "cannot load {}: {e}; regenerate with `python scripts/gen_layer_fixtures.py`",
            path.display()
        ),
    }
}

/// One case of a fixture file: `<name>.params` (int64), `.out`, `.grad` and, for LRN, `.coef`.
pub struct Case {
    pub name: String,
    pub params: Vec<i64>,
    pub coef: Option<Vec<f64>>,
    pub input: Tensor,
    pub out: Tensor,
    pub grad: Tensor,
}

/// The cases of a fixture, sorted by name; each case's `input` is picked by the last entry of
/// its params (an index into the sorted `input.*` names).
pub fn fixture_cases(name: &str) -> Vec<Case> {
    let tensors = load_fixture(name);
    let inputs: BTreeMap<&String, &Tensor> =
        tensors.iter().filter(|(k, _)| k.starts_with("input.")).collect();
    let inputs: Vec<&Tensor> = inputs.into_values().collect();
    let mut names: Vec<&String> = tensors.keys().filter(|k| k.ends_with(".params")).collect();
    names.sort();
    let get = |key: String| {
        tensors
            .get(&key)
            .unwrap_or_else(|| panic!("{name}: missing tensor {key}"))
            .clone()
    };
    names
        .into_iter()
        .map(|key| {
            let case = key.trim_end_matches(".params").to_string();
            let params = get(format!("{case}.params"))
                .to_vec1::<i64>()
                .expect("params are int64");
            let input_index = *params.last().expect("params are not empty") as usize;
            let coef = tensors
                .get(&format!("{case}.coef"))
                .map(|t| t.to_vec1::<f64>().expect("coef are f64"));
            Case {
                input: inputs[input_index].clone(),
                out: get(format!("{case}.out")),
                grad: get(format!("{case}.grad")),
                name: format!("{name}/{case}"),
                params,
                coef,
            }
        })
        .collect()
}

/// The fixed weights of the fixtures' loss `sum(out * w)`: `w[i] = ((37 i + 11) % 17) / 8 - 1`
/// over the row-major flattened output (exact in f32).
pub fn fixture_weights(shape: &Shape, dtype: DType) -> Result<Tensor> {
    let w: Vec<f64> = (0..shape.elem_count())
        .map(|i| ((37 * i + 11) % 17) as f64 / 8.0 - 1.0)
        .collect();
    Tensor::from_vec(w, shape, &Device::Cpu)?.to_dtype(dtype)
}

/// Runs `f` on `x` as a variable and returns `f(x)` and the gradient of `sum(f(x) * w)`
/// w.r.t. `x`, where `w` is made from the output's shape.
pub fn out_and_grad(
    x: &Tensor,
    weights: impl Fn(&Shape) -> Result<Tensor>,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Tensor)> {
    let var = Var::from_tensor(x)?;
    let out = f(var.as_tensor())?;
    let w = weights(out.shape())?;
    let loss = out.mul(&w)?.sum_all()?;
    let grads = loss.backward()?;
    let grad = match grads.get(var.as_tensor()) {
        Some(g) => g.clone(),
        None => candle_core::bail!("no gradient reached the input"),
    };
    Ok((out, grad))
}

/// Asserts that `actual` and `expected` have the same shape and that every element is within
/// `tol + tol * |expected|`; NaNs must match NaNs.
#[track_caller]
pub fn assert_close(actual: &Tensor, expected: &Tensor, tol: f64, what: &str) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shapes differ");
    let a = to_f64_vec(actual);
    let e = to_f64_vec(expected);
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&x, &y)) in a.iter().zip(e.iter()).enumerate() {
        let ok = if y.is_nan() {
            x.is_nan()
        } else {
            (x - y).abs() <= tol + tol * y.abs()
        };
        if !ok {
            let err = if x.is_nan() { f64::INFINITY } else { (x - y).abs() };
            if worst.is_none_or(|(_, w)| err > w) {
                worst = Some((i, err));
            }
        }
    }
    if let Some((i, err)) = worst {
        panic!(
            "{what}: element {i} of {:?} differs: got {}, expected {} (|diff| = {err:e}, tol {tol:e})",
            expected.dims(),
            a[i],
            e[i]
        );
    }
}

/// The elements of any float tensor as f64, row-major.
pub fn to_f64_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("float tensor")
}

/// A deterministic generator (splitmix64) for test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A seeded f64 tensor, uniform in `[-scale, scale)`.
pub fn uniform(shape: impl Into<Shape>, scale: f64, seed: u64) -> Result<Tensor> {
    let shape = shape.into();
    let mut rng = Rng::new(seed);
    let v: Vec<f64> = (0..shape.elem_count()).map(|_| rng.uniform() * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// A seeded f64 tensor whose elements are all distinct and at least 0.01 apart (a shuffled
/// ramp), so finite differences with a tiny step never change which element of a max-pool
/// window wins.
pub fn distinct(shape: impl Into<Shape>, seed: u64) -> Result<Tensor> {
    let shape = shape.into();
    let n = shape.elem_count();
    let mut values: Vec<f64> = (0..n).map(|i| (i as f64 - n as f64 / 2.0) * 0.0137).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        values.swap(i, j);
    }
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// The outcome of [`grad_check`].
#[derive(Debug)]
pub struct GradCheck {
    /// The gradient from candle's autograd.
    pub analytic: Vec<f64>,
    /// The central-difference estimate.
    pub numeric: Vec<f64>,
    /// The largest `|analytic - numeric|`.
    pub max_abs_err: f64,
    /// Where it occurs (row-major).
    pub worst: usize,
}

impl GradCheck {
    /// Whether every element agrees within `tol` (absolute).
    pub fn passes(&self, tol: f64) -> bool {
        self.max_abs_err <= tol
    }
}

/// Tolerance of [`grad_check`] in f64 with a 1e-6 step.
pub const FD_TOL: f64 = 1e-6;

/// Compares candle's gradient of `loss(x) = sum(f(x) * w)` (with seeded random weights `w`)
/// w.r.t. `x` with central differences, step 1e-6, in f64. Errors only if `f` or candle's
/// backward errors (a missing backward is an error, not a mismatch).
pub fn grad_check(x: &Tensor, seed: u64, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<GradCheck> {
    const EPS: f64 = 1e-6;
    let x = x.to_dtype(DType::F64)?;
    let out_shape = f(&x)?.shape().clone();
    let w = uniform(out_shape, 1.0, seed)?;
    let (_, grad) = out_and_grad(&x, |_| Ok(w.clone()), &f)?;
    let analytic = to_f64_vec(&grad);
    let base = to_f64_vec(&x);
    let loss = |values: Vec<f64>| -> Result<f64> {
        let xi = Tensor::from_vec(values, x.shape(), &Device::Cpu)?;
        f(&xi)?.mul(&w)?.sum_all()?.to_scalar::<f64>()
    };
    let mut numeric = Vec::with_capacity(base.len());
    for i in 0..base.len() {
        let mut plus = base.clone();
        plus[i] += EPS;
        let mut minus = base.clone();
        minus[i] -= EPS;
        numeric.push((loss(plus)? - loss(minus)?) / (2.0 * EPS));
    }
    let (worst, max_abs_err) = analytic
        .iter()
        .zip(numeric.iter())
        .map(|(a, n)| (a - n).abs())
        .enumerate()
        .fold(
            (0, 0.0),
            |(bi, be), (i, e)| if e > be { (i, e) } else { (bi, be) },
        );
    Ok(GradCheck {
        analytic,
        numeric,
        max_abs_err,
        worst,
    })
}

/// Runs [`grad_check`] and asserts it passes.
#[track_caller]
pub fn assert_grad_ok(what: &str, x: &Tensor, seed: u64, f: impl Fn(&Tensor) -> Result<Tensor>) {
    let check = match grad_check(x, seed, f) {
        Ok(c) => c,
        Err(e) => panic!("{what}: gradient check failed to run: {e}"),
    };
    assert!(
        check.passes(FD_TOL),
        "{what}: autograd and finite differences differ at element {} of {:?}: {} vs {} (|diff| {:e})",
        check.worst,
        x.dims(),
        check.analytic[check.worst],
        check.numeric[check.worst],
        check.max_abs_err
    );
}

/// A tensor of a fixture, by name; panics with the fixture's name if it is missing.
#[track_caller]
pub fn fixture_tensor(tensors: &HashMap<String, Tensor>, key: &str) -> Tensor {
    match tensors.get(key) {
        Some(t) => t.clone(),
        None => panic!("fixture tensor `{key}` is missing; regenerate the fixtures"),
    }
}

/// The `input.<name>` tensors of a fixture, sorted by name (the `input_index` of its cases).
pub fn fixture_inputs(tensors: &HashMap<String, Tensor>) -> Vec<Tensor> {
    let inputs: BTreeMap<&String, &Tensor> =
        tensors.iter().filter(|(k, _)| k.starts_with("input.")).collect();
    inputs.into_values().cloned().collect()
}

/// The case names of a fixture (the `<case>` of every `<case>.params`), sorted.
pub fn fixture_case_names(tensors: &HashMap<String, Tensor>) -> Vec<String> {
    let mut names: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".params").map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Fresh variables, converted to `dtype`, for every fixture tensor named `<prefix>.*`: a
/// [`candle_nn::VarBuilder`] over them builds a layer under `prefix` whose parameters are
/// these variables, so gradients w.r.t. the parameters can be read back.
pub fn fixture_vars(
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    let start = format!("{prefix}.");
    tensors
        .iter()
        .filter(|(k, _)| k.starts_with(&start))
        .map(|(k, t)| {
            Ok((
                k.clone(),
                Var::from_tensor(&t.to_dtype(dtype)?)?.as_tensor().clone(),
            ))
        })
        .collect()
}

/// A [`candle_nn::VarBuilder`] on the CPU over `tensors` (used as they are, no copy).
pub fn var_builder(tensors: HashMap<String, Tensor>, dtype: DType) -> candle_nn::VarBuilder<'static> {
    candle_nn::VarBuilder::from_tensors(tensors, dtype, &Device::Cpu)
}

/// The fixtures' loss: `sum(out * w)` with the fixed weights of [`fixture_weights`].
pub fn fixture_loss(out: &Tensor) -> Result<Tensor> {
    out.mul(&fixture_weights(out.shape(), out.dtype())?)?.sum_all()
}

/// The gradient of `t` in `grads`; panics naming `what` if none reached it.
#[track_caller]
pub fn grad_of(grads: &candle_core::backprop::GradStore, t: &Tensor, what: &str) -> Tensor {
    match grads.get(t) {
        Some(g) => g.clone(),
        None => panic!("{what}: no gradient reached the tensor"),
    }
}
