//! The fused batch-norm kernels (`backbone::ops::batch_norm_train` / `batch_norm_eval`, used by
//! `BatchNorm2d::forward_t` on the CPU) against the composite candle path
//! (`BatchNorm2d::forward_reference`): outputs, running statistics and the gradients of the
//! input, weight and bias, in training and eval mode, with and without affine parameters, over
//! odd shapes in f32 and f64; finite differences in f64; thread counts; non-contiguous inputs
//! and gradients; the fallback and errors.

use crate::common;

use backbone::layers::{BatchNorm2d, BatchNormConfig, Layer};
use backbone::ops::{
    batch_norm_eval, batch_norm_eval_reference, batch_norm_train, batch_norm_train_reference,
};
use candle_core::{DType, Device, Result, Tensor, Var};
use common::{assert_close, assert_grad_ok, to_f64_vec, uniform, var_builder, TestResult};
use std::collections::HashMap;

/// Input shapes: a single image with maps, three channels on 5x7 maps, 1x1 maps, rank 2, and
/// tensors above the kernels' parallel threshold.
const SHAPES: &[&[usize]] = &[
    &[1, 3, 5, 7],
    &[3, 3, 5, 7],
    &[2, 4, 7, 5],
    &[3, 5, 1, 1],
    &[6, 5],
    &[8, 16, 17, 19],
    &[2, 3, 130, 129],
];

fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-10,
        _ => 1e-5,
    }
}

/// Seeded `[C]` parameters and running statistics (variance in `[0.5, 1.5)`).
fn bn_tensors(c: usize, seed: u64) -> Result<HashMap<&'static str, Tensor>> {
    Ok(HashMap::from([
        ("weight", (uniform(c, 0.5, seed)? + 1.0)?),
        ("bias", uniform(c, 1.0, seed + 1)?),
        ("running_mean", uniform(c, 1.0, seed + 2)?),
        ("running_var", (uniform(c, 0.5, seed + 3)? + 1.0)?),
    ]))
}

/// A layer over fresh variables holding `tensors` in `dtype`.
fn layer(
    tensors: &HashMap<&'static str, Tensor>,
    affine: bool,
    dtype: DType,
) -> backbone::Result<BatchNorm2d> {
    let mut vars = HashMap::new();
    for (name, t) in tensors {
        let var = Var::from_tensor(&t.to_dtype(dtype)?)?;
        vars.insert(format!("bn.{name}"), var.as_tensor().clone());
    }
    let c = tensors["weight"].dim(0)?;
    let config = BatchNormConfig {
        affine,
        ..BatchNormConfig::default()
    };
    BatchNorm2d::new(c, config, var_builder(vars, dtype).pp("bn"))
}

/// The output and the gradients (input, weight, bias) of `sum(out * w)`.
struct Run {
    out: Tensor,
    grads: Vec<(&'static str, Tensor)>,
}

fn run(
    bn: &BatchNorm2d,
    x: &Tensor,
    seed: u64,
    f: impl Fn(&Tensor) -> backbone::Result<Tensor>,
) -> Result<Run> {
    let x = Var::from_tensor(x)?;
    let out = f(x.as_tensor()).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let w = uniform(out.dims(), 1.0, seed)?.to_dtype(out.dtype())?;
    let grads = out.mul(&w)?.sum_all()?.backward()?;
    let mut named = vec![("input", x.as_tensor())];
    if let (Some(w), Some(b)) = (bn.weight(), bn.bias()) {
        named.push(("weight", w));
        named.push(("bias", b));
    }
    let grads = named
        .into_iter()
        .map(|(name, t)| match grads.get(t) {
            Some(g) => Ok((name, g.clone())),
            None => candle_core::bail!("no gradient reached the {name}"),
        })
        .collect::<Result<_>>()?;
    Ok(Run { out, grads })
}

fn assert_runs_close(ours: &Run, reference: &Run, tol: f64, what: &str) {
    assert_close(&ours.out, &reference.out, tol, &format!("{what}: output"));
    assert_eq!(ours.grads.len(), reference.grads.len(), "{what}");
    for ((name, g), (_, r)) in ours.grads.iter().zip(&reference.grads) {
        assert_close(g, r, tol, &format!("{what}: {name} gradient"));
    }
}

#[test]
fn fused_layer_matches_the_composite_path() -> TestResult {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let c = shape[1];
        let seed = 10 * i as u64;
        let x64 = (uniform(shape, 2.0, seed)? + 0.5)?;
        let tensors = bn_tensors(c, seed + 5)?;
        for dtype in [DType::F64, DType::F32] {
            let x = x64.to_dtype(dtype)?;
            for affine in [true, false] {
                let fused = layer(&tensors, affine, dtype)?;
                let reference = layer(&tensors, affine, dtype)?;
                // In f32 the composite path's own sums drift by a few 1e-5 over thousands of
                // values (ours accumulate in f64): f32 is also held to 1e-5 against the
                // composite path in f64 on the same (rounded) input.
                let exact = layer(&tensors, affine, DType::F64)?;
                let x_exact = x.to_dtype(DType::F64)?;
                let composite_tol = if dtype == DType::F32 { 2e-4 } else { tol(dtype) };
                for (pass, train) in [(1, true), (2, true), (3, false)] {
                    let what = format!("{shape:?} {dtype:?} affine {affine} train {train} pass {pass}");
                    let ours = run(&fused, &x, seed + pass, |x| fused.forward_t(x, train))?;
                    let theirs = run(&reference, &x, seed + pass, |x| {
                        reference.forward_reference(x, train)
                    })?;
                    assert_runs_close(&ours, &theirs, composite_tol, &what);
                    let truth = run(&exact, &x_exact, seed + pass, |x| {
                        exact.forward_reference(x, train)
                    })?;
                    assert_runs_close(&ours, &truth, tol(dtype), &format!("{what} (f64 composite)"));
                    for (a, b, c, name) in [
                        (
                            fused.running_mean(),
                            reference.running_mean(),
                            exact.running_mean(),
                            "mean",
                        ),
                        (
                            fused.running_var(),
                            reference.running_var(),
                            exact.running_var(),
                            "var",
                        ),
                    ] {
                        assert_close(a, b, composite_tol, &format!("{what}: running {name}"));
                        assert_close(a, c, tol(dtype), &format!("{what}: running {name} (f64)"));
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn batch_statistics_match_the_composite_path() -> TestResult {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let x64 = (uniform(shape, 3.0, 100 + i as u64)? - 1.0)?;
        for dtype in [DType::F64, DType::F32] {
            let x = x64.to_dtype(dtype)?;
            let (_, ours) = batch_norm_train(&x, None, 1e-5)?;
            let (_, theirs) = batch_norm_train_reference(&x, None, 1e-5)?;
            assert_eq!(ours.mean.dtype(), dtype);
            let what = format!("{shape:?} {dtype:?}");
            assert_close(&ours.mean, &theirs.mean, tol(dtype), &format!("{what}: mean"));
            assert_close(&ours.var, &theirs.var, tol(dtype), &format!("{what}: var"));
        }
    }
    Ok(())
}

/// A mean far above the spread: the statistics do not cancel away (f64 against the f64
/// composite path, f32 against the f64 results).
#[test]
fn a_large_mean_keeps_the_variance() -> TestResult {
    let shape = [4, 3, 9, 11];
    let x = (uniform(&shape[..], 1.0, 7)? + 1000.0)?;
    let tensors = bn_tensors(3, 8)?;
    let bn = layer(&tensors, true, DType::F64)?;
    let reference = layer(&tensors, true, DType::F64)?;
    let ours = run(&bn, &x, 9, |x| bn.forward_t(x, true))?;
    let theirs = run(&reference, &x, 9, |x| reference.forward_reference(x, true))?;
    assert_runs_close(&ours, &theirs, 1e-9, "f64");
    let bn32 = layer(&tensors, true, DType::F32)?;
    let x32 = x.to_dtype(DType::F32)?;
    let ours32 = run(&bn32, &x32, 9, |x| bn32.forward_t(x, true))?;
    // The f32 input is rounded (to about 6e-5 at 1000), so compare with the f64 pass on it.
    let bn64 = layer(&tensors, true, DType::F64)?;
    let exact = run(&bn64, &x32.to_dtype(DType::F64)?, 9, |x| bn64.forward_t(x, true))?;
    assert_runs_close(&ours32, &exact, 1e-4, "f32");
    assert_close(bn32.running_var(), bn64.running_var(), 1e-5, "f32 running var");
    Ok(())
}

#[test]
fn gradients_match_finite_differences() -> TestResult {
    for shape in [&[1usize, 3, 5, 7][..], &[3, 2, 3, 4], &[5, 3]] {
        let c = shape[1];
        let x = (uniform(shape, 2.0, 21)? + 0.25)?;
        let t = bn_tensors(c, 22)?;
        let (w, b) = (&t["weight"], &t["bias"]);
        let (rm, rv) = (&t["running_mean"], &t["running_var"]);
        let train = |x: &Tensor, w: &Tensor, b: &Tensor| Ok(batch_norm_train(x, Some((w, b)), 1e-5)?.0);
        let eval = |x: &Tensor, w: &Tensor, b: &Tensor| batch_norm_eval(x, Some((w, b)), rm, rv, 1e-5);
        let what = |s: &str| format!("{shape:?} {s}");
        assert_grad_ok(&what("train, input"), &x, 1, |x| train(x, w, b));
        assert_grad_ok(&what("train, weight"), w, 2, |w| train(&x, w, b));
        assert_grad_ok(&what("train, bias"), b, 3, |b| train(&x, w, b));
        assert_grad_ok(&what("train, no affine"), &x, 4, |x| {
            Ok(batch_norm_train(x, None, 1e-3)?.0)
        });
        assert_grad_ok(&what("eval, input"), &x, 5, |x| eval(x, w, b));
        assert_grad_ok(&what("eval, weight"), w, 6, |w| eval(&x, w, b));
        assert_grad_ok(&what("eval, bias"), b, 7, |b| eval(&x, w, b));
        assert_grad_ok(&what("eval, no affine"), &x, 8, |x| {
            batch_norm_eval(x, None, rm, rv, 1e-3)
        });
    }
    Ok(())
}

/// Only the inputs that need a gradient get one; a broadcast (non-contiguous) output gradient
/// is fine; the fused eval path treats the running statistics as constants.
#[test]
fn gradients_only_where_needed() -> TestResult {
    let x = uniform((2, 3, 4, 5), 1.0, 31)?;
    let t = bn_tensors(3, 32)?;
    let (w, b) = (Var::from_tensor(&t["weight"])?, Var::from_tensor(&t["bias"])?);
    let (rm, rv) = (
        Var::from_tensor(&t["running_mean"])?,
        Var::from_tensor(&t["running_var"])?,
    );
    // A constant input: weight and bias gradients only (sum_all's gradient is a broadcast).
    let (out, _) = batch_norm_train(&x, Some((w.as_tensor(), b.as_tensor())), 1e-5)?;
    let grads = out.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    let (out_ref, _) = batch_norm_train_reference(&x, Some((w.as_tensor(), b.as_tensor())), 1e-5)?;
    let grads_ref = out_ref.sum_all()?.backward()?;
    for (name, v) in [("weight", &w), ("bias", &b)] {
        let (Some(g), Some(r)) = (grads.get(v.as_tensor()), grads_ref.get(v.as_tensor())) else {
            panic!("no {name} gradient")
        };
        assert_close(g, r, 1e-10, name);
    }
    // Eval: input gradient only, none for the running statistics (read as constants).
    let xv = Var::from_tensor(&x)?;
    let out = batch_norm_eval(xv.as_tensor(), None, rm.as_tensor(), rv.as_tensor(), 1e-5)?;
    let grads = out.sum_all()?.backward()?;
    let out_ref = batch_norm_eval_reference(xv.as_tensor(), None, rm.as_tensor(), rv.as_tensor(), 1e-5)?;
    let grads_ref = out_ref.sum_all()?.backward()?;
    match (grads.get(xv.as_tensor()), grads_ref.get(xv.as_tensor())) {
        (Some(g), Some(r)) => assert_close(g, r, 1e-10, "eval input gradient"),
        _ => panic!("no eval input gradient"),
    }
    assert!(grads.get(rm.as_tensor()).is_none() && grads.get(rv.as_tensor()).is_none());
    // Nothing tracked: no graph, no gradient work.
    let (out, _) = batch_norm_train(&x, Some((&t["weight"], &t["bias"])), 1e-5)?;
    assert!(!out.track_op());
    Ok(())
}

/// Non-contiguous inputs take the composite path; results agree with a contiguous copy on the
/// fused path.
#[test]
fn non_contiguous_inputs_fall_back() -> TestResult {
    let base = uniform((2, 3, 7, 5), 1.0, 41)?;
    assert!(!base.transpose(2, 3)?.is_contiguous());
    let t = bn_tensors(3, 42)?;
    for train in [true, false] {
        let strided = layer(&t, true, DType::F64)?;
        let packed = layer(&t, true, DType::F64)?;
        let ours = run(&strided, &base, 43, |x| {
            strided.forward_t(&x.transpose(2, 3)?, train)
        })?;
        let theirs = run(&packed, &base, 43, |x| {
            packed.forward_t(&x.transpose(2, 3)?.contiguous()?, train)
        })?;
        assert_runs_close(&ours, &theirs, 1e-10, &format!("train {train}"));
        assert_close(strided.running_var(), packed.running_var(), 1e-10, "running var");
    }
    let x = base.transpose(2, 3)?;
    // The layer accepts a strided input directly.
    let bn = layer(&t, true, DType::F32)?;
    let y = bn.forward_t(&x.to_dtype(DType::F32)?, true)?;
    assert_eq!(y.dims(), [2, 3, 5, 7]);
    Ok(())
}

/// The kernels give the same bits on any number of threads.
#[test]
fn every_thread_count_agrees() -> TestResult {
    let x = Var::from_tensor(&uniform((8, 16, 17, 19), 1.0, 51)?.to_dtype(DType::F32)?)?;
    let t = bn_tensors(16, 52)?;
    let (w, b) = (
        Var::from_tensor(&t["weight"].to_dtype(DType::F32)?)?,
        Var::from_tensor(&t["bias"].to_dtype(DType::F32)?)?,
    );
    let gw = uniform((8, 16, 17, 19), 1.0, 53)?.to_dtype(DType::F32)?;
    let step = || -> Result<Vec<Vec<f64>>> {
        let (out, stats) = batch_norm_train(x.as_tensor(), Some((w.as_tensor(), b.as_tensor())), 1e-5)?;
        let grads = out.mul(&gw)?.sum_all()?.backward()?;
        let mut all = vec![to_f64_vec(&out), to_f64_vec(&stats.mean), to_f64_vec(&stats.var)];
        for v in [x.as_tensor(), w.as_tensor(), b.as_tensor()] {
            match grads.get(v) {
                Some(g) => all.push(to_f64_vec(g)),
                None => candle_core::bail!("missing gradient"),
            }
        }
        Ok(all)
    };
    let mut first = None;
    for threads in [1, 2, 3, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let got = pool.install(step)?;
        match &first {
            None => first = Some(got),
            Some(f) => assert!(f == &got, "{threads} threads differ"),
        }
    }
    Ok(())
}

#[test]
fn bad_inputs_are_errors() -> TestResult {
    let x = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu)?;
    assert!(batch_norm_train(&x, None, 1e-5).is_err());
    let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu)?;
    let w4 = Tensor::ones(4, DType::F32, &Device::Cpu)?;
    let b3 = Tensor::zeros(3, DType::F32, &Device::Cpu)?;
    let w3 = Tensor::ones(3, DType::F64, &Device::Cpu)?;
    assert!(batch_norm_train(&x, Some((&w4, &b3)), 1e-5).is_err());
    assert!(batch_norm_train(&x, Some((&w3, &b3)), 1e-5).is_err());
    assert!(batch_norm_eval(&x, None, &w4, &w4, 1e-5).is_err());
    let empty = Tensor::zeros((0, 3, 4, 4), DType::F32, &Device::Cpu)?;
    assert!(batch_norm_train(&empty, None, 1e-5).is_err());
    assert_eq!(
        batch_norm_eval(&empty, None, &b3, &b3, 1e-5)?.dims(),
        [0, 3, 4, 4]
    );
    // Integer inputs are refused.
    let xi = Tensor::zeros((2, 3, 4, 4), DType::U32, &Device::Cpu)?;
    assert!(batch_norm_train(&xi, None, 1e-5).is_err());
    assert!(batch_norm_eval(&xi, None, &b3, &b3, 1e-5).is_err());
    Ok(())
}
