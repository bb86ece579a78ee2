//! The per-channel bias op (`backbone::ops::add_channel_bias`, used by `Conv2d`) against the
//! broadcast add it replaces: outputs and the gradients of the input and the bias, over odd
//! shapes in f32 and f64, above and below the threading threshold; finite differences; the
//! fallbacks and the shape error.

use crate::common;

use backbone::ops::{add_channel_bias, add_channel_bias_reference};
use candle_core::{DType, Device, Result, Tensor, Var};
use common::{assert_grad_ok, to_f64_vec, uniform, TestResult};

const SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 1),
    (1, 3, 5, 7),
    (3, 5, 1, 1),
    (2, 6, 28, 28),
    (7, 16, 10, 10),
    (64, 6, 28, 28),
];

/// Output, input gradient and bias gradient of `sum(f(x, b) * w)`.
fn run(
    x: &Var,
    b: &Var,
    w: &Tensor,
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Tensor, Tensor)> {
    let y = f(x.as_tensor(), b.as_tensor())?;
    let grads = (y.clone() * w)?.sum_all()?.backward()?;
    let dx = grads
        .get(x.as_tensor())
        .cloned()
        .ok_or("no input gradient")
        .map_err(candle_core::Error::msg)?;
    let db = grads
        .get(b.as_tensor())
        .cloned()
        .ok_or("no bias gradient")
        .map_err(candle_core::Error::msg)?;
    Ok((y, dx, db))
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (to_f64_vec(a), to_f64_vec(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max)
}

#[test]
fn matches_the_broadcast_add_with_gradients() -> TestResult {
    for (i, &(n, c, h, w)) in SHAPES.iter().enumerate() {
        for dtype in [DType::F32, DType::F64] {
            let seed = i as u64 * 7 + 1;
            let x = Var::from_tensor(&uniform((n, c, h, w), 2.0, seed)?.to_dtype(dtype)?)?;
            let b = Var::from_tensor(&uniform(c, 1.0, seed + 1)?.to_dtype(dtype)?)?;
            let wt = uniform((n, c, h, w), 1.5, seed + 2)?.to_dtype(dtype)?;
            let (y, dx, db) = run(&x, &b, &wt, add_channel_bias)?;
            // The reference in f64: candle's f32 reduction itself drifts by ~2e-5 over 50,000
            // values (ours sums each plane, then the planes in f64).
            let as64 = |v: &Var| -> Result<Var> { Var::from_tensor(&v.as_tensor().to_dtype(DType::F64)?) };
            let (x64, b64) = (as64(&x)?, as64(&b)?);
            let (ry, rdx, rdb) = run(&x64, &b64, &wt.to_dtype(DType::F64)?, add_channel_bias_reference)?;
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            assert_eq!(y.dtype(), dtype);
            assert_eq!(db.dims(), [c]);
            for (what, a, r) in [
                ("output", &y, &ry),
                ("input grad", &dx, &rdx),
                ("bias grad", &db, &rdb),
            ] {
                let d = max_rel_diff(a, r);
                assert!(d <= tol, "{what} of {:?} in {dtype:?}: {d:e}", (n, c, h, w));
            }
        }
    }
    Ok(())
}

#[test]
fn finite_differences() -> TestResult {
    let b = uniform(5, 1.0, 3)?;
    let x = uniform((2, 5, 3, 4), 2.0, 4)?;
    let w = uniform((2, 5, 3, 4), 1.0, 5)?;
    assert_grad_ok("bias add, input", &x, 6, |x| {
        (add_channel_bias(x, &b)? * &w)?.sum_all()
    });
    assert_grad_ok("bias add, bias", &b, 7, |b| {
        (add_channel_bias(&x, b)? * &w)?.sum_all()
    });
    Ok(())
}

#[test]
fn a_gradient_only_where_asked() -> TestResult {
    // A constant bias: only the input gets a gradient; a constant input: only the bias.
    let x = Var::from_tensor(&uniform((2, 3, 4, 4), 1.0, 8)?.to_dtype(DType::F32)?)?;
    let b = uniform(3, 1.0, 9)?.to_dtype(DType::F32)?;
    let grads = add_channel_bias(x.as_tensor(), &b)?.sum_all()?.backward()?;
    assert!(grads.get(x.as_tensor()).is_some() && grads.get(&b).is_none());
    let x = uniform((2, 3, 4, 4), 1.0, 8)?.to_dtype(DType::F32)?;
    let b = Var::from_tensor(&uniform(3, 1.0, 9)?.to_dtype(DType::F32)?)?;
    let grads = add_channel_bias(&x, b.as_tensor())?.sum_all()?.backward()?;
    let db = grads.get(b.as_tensor()).ok_or("no bias gradient")?;
    assert_eq!(db.to_vec1::<f32>()?, vec![32.0; 3]);
    Ok(())
}

#[test]
fn fallbacks_and_errors() -> TestResult {
    // Non-contiguous input and a half-precision one go through the broadcast add.
    let x = uniform((2, 4, 3, 5), 1.0, 10)?.to_dtype(DType::F32)?;
    let b = uniform(3, 1.0, 11)?.to_dtype(DType::F32)?;
    let t = x.transpose(1, 2)?;
    assert!(!t.is_contiguous());
    let d = max_rel_diff(&add_channel_bias(&t, &b)?, &add_channel_bias_reference(&t, &b)?);
    assert_eq!(d, 0.0);
    let h = x.to_dtype(DType::F16)?;
    let hb = uniform(4, 1.0, 12)?.to_dtype(DType::F16)?;
    assert_eq!(add_channel_bias(&h, &hb)?.dtype(), DType::F16);
    // A bias of the wrong length, or an input that is not 4-D, is an error, not a panic.
    let err = add_channel_bias(&x, &b)
        .err()
        .ok_or("a 3-value bias on 4 channels must fail")?;
    assert!(err.to_string().contains("[4]"), "{err}");
    let flat = Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?;
    assert!(add_channel_bias(&flat, &hb.to_dtype(DType::F32)?).is_err());
    Ok(())
}
