//! The ReLU op (`backbone::ops::relu`, used by `Activation::Relu`) against the composite form
//! it replaces (`relu_reference`: `x * (x > 0)` under autograd): outputs and gradients, bit for
//! bit, with exact zeros, NaN and infinities (where the composite form gives NaN for -inf, the
//! op gives PyTorch's 0), over odd sizes in f32 and f64; finite
//! differences; thread counts; the non-contiguous and half-precision fallbacks.

use crate::common;

use backbone::layers::{Activation, Layer};
use backbone::ops::{add_relu, relu, relu_reference};
use candle_core::{DType, Device, Result, Tensor, Var};
use common::{assert_grad_ok, to_f64_vec, uniform, TestResult};

/// Sizes around the kernel's chunk (16384) and parallel threshold (32768).
const SIZES: &[usize] = &[1, 2, 7, 255, 16_383, 16_385, 32_769, 70_001];

/// Seeded values in `[-2, 2)` with exact zeros, a negative zero, NaN and infinities sprinkled
/// in.
fn values(n: usize, seed: u64) -> Result<Tensor> {
    let mut v = to_f64_vec(&uniform(n, 2.0, seed)?);
    let specials = [
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        1e-30,
        -1e-30,
    ];
    for (i, s) in specials.iter().enumerate() {
        if let Some(x) = v.get_mut(i * 5 % n.max(1)) {
            *x = *s;
        }
    }
    Tensor::from_vec(v, n, &Device::Cpu)
}

/// Output and input gradient of `sum(f(x) * w)`.
fn run(x: &Tensor, w: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<(Tensor, Tensor)> {
    let x = Var::from_tensor(x)?;
    let out = f(x.as_tensor())?;
    let grads = out.mul(w)?.sum_all()?.backward()?;
    match grads.get(x.as_tensor()) {
        Some(g) => Ok((out, g.clone())),
        None => candle_core::bail!("no gradient reached the input"),
    }
}

/// Same values (NaN matching NaN; `-0.0 == 0.0`, the composite form writes `-0.0` for
/// negative inputs).
#[track_caller]
fn assert_same(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    for (i, (x, y)) in to_f64_vec(a).into_iter().zip(to_f64_vec(b)).enumerate() {
        assert!(
            x == y || (x.is_nan() && y.is_nan()),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

#[test]
fn matches_the_composite_form_bit_for_bit() -> TestResult {
    for (i, &n) in SIZES.iter().enumerate() {
        let x64 = values(n, i as u64)?;
        let w64 = uniform(n, 1.0, 100 + i as u64)?;
        for dtype in [DType::F64, DType::F32] {
            let (x, w) = (x64.to_dtype(dtype)?, w64.to_dtype(dtype)?);
            let what = format!("{n} {dtype:?}");
            let (out, grad) = run(&x, &w, relu)?;
            let (out_ref, grad_ref) = run(&x, &w, relu_reference)?;
            assert_eq!(out.dtype(), dtype);
            // The composite form writes NaN for -inf (-inf * 0); PyTorch and the op write 0.
            let xs = to_f64_vec(&x);
            let out_ref = to_f64_vec(&out_ref)
                .into_iter()
                .zip(&xs)
                .map(|(r, &v)| if v == f64::NEG_INFINITY { 0.0 } else { r })
                .collect::<Vec<_>>();
            let out_ref = Tensor::from_vec(out_ref, n, &Device::Cpu)?;
            assert_same(&out, &out_ref, &format!("{what}: output"));
            assert_same(&grad, &grad_ref, &format!("{what}: gradient"));
            // Untracked: the same output, no graph.
            let plain = relu(&x)?;
            assert!(!plain.track_op());
            assert_same(&plain, &out, &format!("{what}: untracked output"));
            // The layer runs the op.
            assert_same(&Activation::Relu.forward_t(&x, false)?, &out, &what);
        }
    }
    Ok(())
}

/// `torch.relu`: NaN stays NaN, infinities and zeros as expected; gradient 0 at exactly 0
/// (and at NaN, like the composite form), 1 above.
#[test]
fn special_values_like_pytorch() -> TestResult {
    let x = Tensor::new(
        &[
            f32::NAN,
            0.0,
            -0.0,
            -1.0,
            2.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40,
        ],
        &Device::Cpu,
    )?;
    let ones = Tensor::ones(8, DType::F32, &Device::Cpu)?;
    let (out, grad) = run(&x, &ones, relu)?;
    let out = out.to_vec1::<f32>()?;
    assert!(out[0].is_nan());
    let expected = [0.0, 0.0, 0.0, 2.5, f32::INFINITY, 0.0, 1e-40];
    assert_eq!(&out[1..], expected);
    // relu(-1) is +0, as PyTorch's.
    assert!(out[3].is_sign_positive());
    assert_eq!(grad.to_vec1::<f32>()?, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0]);
    Ok(())
}

#[test]
fn gradients_match_finite_differences() {
    for shape in [&[1usize, 3, 5, 7][..], &[2, 2, 3, 3], &[13]] {
        let x = uniform(shape, 2.0, 7).expect("input");
        // Away from the kink.
        let away: Vec<f64> = to_f64_vec(&x)
            .into_iter()
            .map(|v| if v.abs() < 0.01 { v + 0.05 } else { v })
            .collect();
        let x = Tensor::from_vec(away, shape, &Device::Cpu).expect("input");
        assert_grad_ok(&format!("{shape:?}"), &x, 3, relu);
    }
}

/// Non-contiguous inputs take the composite form: same output and gradient as the op on a
/// contiguous copy; a broadcast output gradient is fine.
#[test]
fn non_contiguous_inputs_fall_back() -> TestResult {
    let base = (uniform((3, 4, 5, 7), 2.0, 11)? - 0.25)?;
    let w = uniform((3, 4, 7, 5), 1.0, 12)?;
    let strided = |x: &Tensor| relu(&x.transpose(2, 3)?);
    let packed = |x: &Tensor| relu(&x.transpose(2, 3)?.contiguous()?);
    assert!(!base.transpose(2, 3)?.is_contiguous());
    let (out, grad) = run(&base, &w, strided)?;
    let (out_ref, grad_ref) = run(&base, &w, packed)?;
    assert_same(&out, &out_ref, "output");
    assert_same(&grad, &grad_ref, "gradient");
    // A broadcast gradient (sum_all's) through the op.
    let x = Var::from_tensor(&base)?;
    let grads = relu(x.as_tensor())?.sum_all()?.backward()?;
    let expected = base.gt(0f64)?.to_dtype(DType::F64)?;
    match grads.get(x.as_tensor()) {
        Some(g) => assert_same(g, &expected, "broadcast gradient"),
        None => panic!("no gradient"),
    }
    Ok(())
}

/// Half precision and integers run candle's own ops.
#[test]
fn other_dtypes_fall_back() -> TestResult {
    let x = Tensor::new(&[-1.5f32, 0.0, 2.0], &Device::Cpu)?;
    for dtype in [DType::F16, DType::BF16] {
        let y = relu(&x.to_dtype(dtype)?)?;
        assert_eq!(y.dtype(), dtype);
        assert_eq!(y.to_dtype(DType::F32)?.to_vec1::<f32>()?, [0.0, 0.0, 2.0]);
    }
    let xi = Tensor::new(&[-3i64, 0, 4], &Device::Cpu)?;
    assert_eq!(relu(&xi)?.to_vec1::<i64>()?, [0, 0, 4]);
    Ok(())
}

/// The same bits on any number of threads.
#[test]
fn every_thread_count_agrees() -> TestResult {
    let x = values(100_003, 21)?.to_dtype(DType::F32)?;
    let w = uniform(100_003, 1.0, 22)?.to_dtype(DType::F32)?;
    let mut first: Option<(Vec<f64>, Vec<f64>)> = None;
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let (out, grad) = pool.install(|| run(&x, &w, relu))?;
        let got = (to_f64_vec(&out), to_f64_vec(&grad));
        match &first {
            None => first = Some(got),
            Some(f) => {
                let same = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same(&f.0, &got.0) && same(&f.1, &got.1),
                    "{threads} threads differ"
                );
            }
        }
    }
    Ok(())
}

/// `add_relu(a, b)` against `relu(a + b)`: the same outputs and the same gradient for both
/// inputs, bit for bit, over the sizes (serial and parallel) in f32 and f64, with sums that
/// are exactly zero; by finite differences; and through the fallback (a non-contiguous input).
#[test]
fn add_relu_matches_relu_of_the_sum() -> TestResult {
    for &n in SIZES {
        for dtype in [DType::F32, DType::F64] {
            let a = values(n, 40 + n as u64)?.to_dtype(dtype)?;
            // Every third b cancels a exactly: sums of exactly zero.
            let b: Vec<f64> = to_f64_vec(&a)
                .iter()
                .zip(to_f64_vec(&uniform(n, 2.0, 41)?))
                .enumerate()
                .map(|(i, (&x, y))| if i % 3 == 0 { -x } else { y })
                .collect();
            let b = Tensor::from_vec(b, n, &Device::Cpu)?.to_dtype(dtype)?;
            let w = uniform(n, 1.0, 42)?.to_dtype(dtype)?;
            let (av, bv) = (Var::from_tensor(&a)?, Var::from_tensor(&b)?);
            let grads = |out: &Tensor| -> Result<(Tensor, Tensor)> {
                let g = out.mul(&w)?.sum_all()?.backward()?;
                match (g.get(av.as_tensor()), g.get(bv.as_tensor())) {
                    (Some(ga), Some(gb)) => Ok((ga.clone(), gb.clone())),
                    _ => candle_core::bail!("no gradient reached an input"),
                }
            };
            let fused = add_relu(av.as_tensor(), bv.as_tensor())?;
            let separate = relu(&(av.as_tensor() + bv.as_tensor())?)?;
            let what = format!("n={n} {dtype:?}");
            assert_same(&fused, &separate, &format!("{what}: output"));
            let ((fa, fb), (sa, sb)) = (grads(&fused)?, grads(&separate)?);
            assert_same(&fa, &sa, &format!("{what}: gradient of a"));
            assert_same(&fb, &sb, &format!("{what}: gradient of b"));
        }
    }
    let (a, b) = (uniform(37, 1.0, 50)?, uniform(37, 1.0, 51)?);
    assert_grad_ok("add_relu, a", &a, 3, |a| add_relu(a, &b));
    assert_grad_ok("add_relu, b", &b, 4, |b| add_relu(&a, b));
    // Fallback: a transposed (non-contiguous) input.
    let (a, b) = (uniform((5, 7), 1.0, 52)?, uniform((7, 5), 1.0, 53)?.t()?);
    assert!(!b.is_contiguous());
    assert_same(&add_relu(&a, &b)?, &relu(&(&a + &b)?)?, "non-contiguous");
    Ok(())
}
