//! The pooling path composed of candle tensor ops (the one CUDA and Metal tensors take),
//! checked on the CPU against the CPU kernels: outputs and gradients over sizes, strides,
//! padding, ceil mode, `count_include_pad`, overlapping windows, ties, signed zeros,
//! infinities and NaN, batches, non-square and non-contiguous inputs, low precision.

use crate::common;

use backbone::ops::{self, Pool2dParams};
use candle_core::{DType, Device, Result, Tensor};
use common::*;

fn p(k: (usize, usize), s: (usize, usize), pad: (usize, usize), ceil: bool, cip: bool) -> Pool2dParams {
    Pool2dParams {
        kernel: k,
        stride: s,
        padding: pad,
        ceil_mode: ceil,
        count_include_pad: cip,
    }
}

/// Every kernel up to 4x4 (square or not) with strides 1 to 3, every legal padding, ceil mode
/// on and off, `count_include_pad` both ways.
fn configs() -> Vec<Pool2dParams> {
    let mut out = Vec::new();
    for (kh, kw) in [(1, 1), (2, 2), (3, 3), (2, 3), (3, 1), (4, 4), (1, 4)] {
        for (sh, sw) in [(1, 1), (2, 2), (3, 3), (1, 2), (2, 1)] {
            for (ph, pw) in [(0, 0), (kh / 2, kw / 2), (kh / 2, 0)] {
                for ceil in [false, true] {
                    for cip in [true, false] {
                        out.push(p((kh, kw), (sh, sw), (ph, pw), ceil, cip));
                    }
                }
            }
        }
    }
    out
}

/// Inputs: odd, even, non-square sizes and batches above 1, in f64.
fn inputs() -> Result<Vec<Tensor>> {
    Ok(vec![
        distinct((2, 3, 7, 9), 1)?,
        distinct((1, 2, 5, 5), 2)?,
        distinct((3, 1, 8, 6), 3)?,
        distinct((1, 1, 2, 3), 4)?,
    ])
}

/// Values full of ties: a ReLU of small integers (mostly zeros), with signed zeros.
fn tied(shape: (usize, usize, usize, usize), seed: u64) -> Result<Tensor> {
    let mut rng = Rng::new(seed);
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f64> = (0..n)
        .map(|_| match rng.next_u64() % 6 {
            0 => 1.0,
            1 => 2.0,
            2 => -0.0,
            _ => 0.0,
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

type Pool = fn(&Tensor, &Pool2dParams) -> Result<Tensor>;

fn pools() -> [(&'static str, Pool, Pool); 2] {
    [
        ("max_pool2d", ops::max_pool2d, ops::max_pool2d_reference),
        ("avg_pool2d", ops::avg_pool2d, ops::avg_pool2d_reference),
    ]
}

/// Compares the kernels and the composite path on `x` in `dtype`: output and gradient of
/// `sum(out * w)` for a fixed non-uniform `w`.
fn compare(
    what: &str,
    x: &Tensor,
    dtype: DType,
    tol: f64,
    kernel: impl Fn(&Tensor) -> Result<Tensor>,
    reference: impl Fn(&Tensor) -> Result<Tensor>,
) -> TestResult {
    let x = x.to_dtype(dtype)?;
    let weights = |s: &candle_core::Shape| fixture_weights(s, dtype);
    let (out, grad) = out_and_grad(&x, weights, kernel)?;
    let (ref_out, ref_grad) = out_and_grad(&x, weights, reference)?;
    assert_eq!(ref_out.dtype(), dtype, "{what}: output dtype");
    assert_near(&ref_out, &out, tol, &format!("{what}: output"));
    assert_near(&ref_grad, &grad, tol, &format!("{what}: gradient"));
    Ok(())
}

/// [`assert_close`], except that equal infinities are equal (`inf - inf` is NaN).
#[track_caller]
fn assert_near(actual: &Tensor, expected: &Tensor, tol: f64, what: &str) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shapes differ");
    let infinite = |t: &Tensor| {
        to_f64_vec(t)
            .iter()
            .map(|v| v.is_infinite().then_some(*v))
            .collect::<Vec<_>>()
    };
    assert_eq!(infinite(actual), infinite(expected), "{what}: infinities differ");
    let finite = |t: &Tensor| -> Tensor {
        let v: Vec<f64> = to_f64_vec(t)
            .iter()
            .map(|&v| if v.is_infinite() { 0.0 } else { v })
            .collect();
        Tensor::from_vec(v, t.dims(), &Device::Cpu).expect("same size")
    };
    assert_close(&finite(actual), &finite(expected), tol, what);
}

#[test]
fn reference_pooling_matches_the_kernels() -> TestResult {
    let mut compared = 0;
    for x in inputs()? {
        let (_, _, h, w) = x.dims4()?;
        for cfg in configs() {
            if cfg.output_size((h, w)).is_none() {
                continue;
            }
            for (name, kernel, reference) in pools() {
                for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
                    let what = format!("{name} {:?} {dtype:?} {cfg:?}", x.dims());
                    compare(&what, &x, dtype, tol, |x| kernel(x, &cfg), |x| reference(x, &cfg))?;
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 1000, "only {compared} comparisons");
    Ok(())
}

#[test]
fn reference_max_pool2d_routes_ties_like_the_kernels() -> TestResult {
    // Mostly zeros (both signs) and a few equal maxima: every window's gradient must reach the
    // same element as the kernels' (the first maximum in row-major order).
    for (seed, shape) in [(5, (2, 3, 9, 7)), (6, (1, 2, 6, 6)), (7, (2, 1, 5, 11))] {
        let x = tied(shape, seed)?;
        for cfg in [
            p((3, 3), (2, 2), (1, 1), false, true),
            p((3, 3), (2, 2), (0, 0), true, true),
            p((2, 2), (2, 2), (0, 0), false, true),
            p((3, 3), (1, 1), (1, 1), false, true),
            p((2, 3), (1, 2), (1, 1), true, true),
        ] {
            compare(
                &format!("ties {shape:?} {cfg:?}"),
                &x,
                DType::F32,
                0.0,
                |x| ops::max_pool2d(x, &cfg),
                |x| ops::max_pool2d_reference(x, &cfg),
            )?;
        }
    }
    // The hand-checked case of the kernels' tests: one 2x3 window, gradient to the first 1.
    let x = Tensor::new(&[[[[0f32, 1., 1.], [1., 0., 1.]]]], &Device::Cpu)?;
    let (_, grad) = out_and_grad(
        &x,
        |s| Tensor::ones(s, DType::F32, &Device::Cpu),
        |x| ops::max_pool2d_reference(x, &Pool2dParams::new((2, 3))),
    )?;
    assert_eq!(grad.flatten_all()?.to_vec1::<f32>()?, [0., 1., 0., 0., 0., 0.]);
    Ok(())
}

#[test]
fn reference_max_pool2d_handles_infinities_and_nan_like_the_kernels() -> TestResult {
    // All -inf with padding: the padding never wins, the gradient goes to each window's first
    // real element.
    let x = Tensor::full(f32::NEG_INFINITY, (1, 1, 2, 2), &Device::Cpu)?;
    let cfg = p((3, 3), (1, 1), (1, 1), false, true);
    compare(
        "all -inf",
        &x,
        DType::F32,
        0.0,
        |x| ops::max_pool2d(x, &cfg),
        |x| ops::max_pool2d_reference(x, &cfg),
    )?;
    let (_, grad) = out_and_grad(
        &x,
        |s| Tensor::ones(s, DType::F32, &Device::Cpu),
        |x| ops::max_pool2d_reference(x, &cfg),
    )?;
    assert_eq!(grad.flatten_all()?.to_vec1::<f32>()?, [4., 0., 0., 0.]);
    // NaN, +-inf and ties scattered over a tensor: NaN outputs where the window holds a NaN,
    // the gradient to the window's last NaN, as the kernels' scan.
    let mut rng = Rng::new(11);
    let v: Vec<f64> = (0..2 * 2 * 9 * 8)
        .map(|_| match rng.next_u64() % 10 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 | 4 => 0.0,
            _ => rng.uniform(),
        })
        .collect();
    let x = Tensor::from_vec(v, (2, 2, 9, 8), &Device::Cpu)?;
    for cfg in [
        p((3, 3), (2, 2), (1, 1), true, true),
        p((2, 2), (2, 2), (0, 0), false, true),
        p((3, 2), (1, 1), (1, 1), false, true),
    ] {
        compare(
            &format!("nan {cfg:?}"),
            &x,
            DType::F32,
            0.0,
            |x| ops::max_pool2d(x, &cfg),
            |x| ops::max_pool2d_reference(x, &cfg),
        )?;
    }
    let x = Tensor::new(&[[[[1f32, f32::NAN], [f32::NAN, 2.]]]], &Device::Cpu)?;
    let (out, grad) = out_and_grad(
        &x,
        |s| Tensor::ones(s, DType::F32, &Device::Cpu),
        |x| ops::max_pool2d_reference(x, &Pool2dParams::new((2, 2))),
    )?;
    assert!(out.flatten_all()?.to_vec1::<f32>()?[0].is_nan());
    assert_eq!(grad.flatten_all()?.to_vec1::<f32>()?, [0., 0., 1., 0.]);
    Ok(())
}

#[test]
fn reference_adaptive_avg_pool2d_matches_the_kernel() -> TestResult {
    for x in inputs()? {
        for out in [(1, 1), (2, 2), (3, 3), (4, 5), (2, 7), (9, 11), (1, 3)] {
            for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
                compare(
                    &format!("adaptive {:?} -> {out:?} {dtype:?}", x.dims()),
                    &x,
                    dtype,
                    tol,
                    |x| ops::adaptive_avg_pool2d(x, out),
                    |x| ops::adaptive_avg_pool2d_reference(x, out),
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn reference_pooling_takes_non_contiguous_and_half_precision_inputs() -> TestResult {
    let cfg = p((3, 3), (2, 2), (1, 1), true, false);
    // (N, C, W, H) transposed to (N, C, H, W): strided rows.
    let x = distinct((2, 3, 9, 7), 21)?.transpose(2, 3)?;
    for (name, kernel, reference) in pools() {
        compare(
            &format!("{name} transposed"),
            &x,
            DType::F32,
            1e-5,
            |x| kernel(x, &cfg),
            |x| reference(x, &cfg),
        )?;
    }
    compare(
        "adaptive transposed",
        &x,
        DType::F32,
        1e-5,
        |x| ops::adaptive_avg_pool2d(x, (3, 2)),
        |x| ops::adaptive_avg_pool2d_reference(x, (3, 2)),
    )?;
    let x = uniform((2, 3, 7, 9), 1.0, 31)?;
    for dtype in [DType::F16, DType::BF16] {
        for (name, kernel, reference) in pools() {
            compare(
                &format!("{name} {dtype:?}"),
                &x,
                dtype,
                1e-2,
                |x| kernel(x, &cfg),
                |x| reference(x, &cfg),
            )?;
        }
        let out = ops::adaptive_avg_pool2d_reference(&x.to_dtype(dtype)?, (2, 2))?;
        assert_eq!(out.dtype(), dtype);
    }
    Ok(())
}

#[test]
fn reference_pooling_rejects_what_the_kernels_reject() -> TestResult {
    let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu)?;
    let bad = p((3, 3), (1, 1), (2, 2), false, true);
    assert!(ops::max_pool2d_reference(&x, &bad).is_err());
    assert!(ops::avg_pool2d_reference(&x, &bad).is_err());
    let too_big = Pool2dParams::new((5, 5));
    assert!(ops::max_pool2d_reference(&x, &too_big).is_err());
    assert!(ops::avg_pool2d_reference(&x, &too_big).is_err());
    assert!(ops::max_pool2d_reference(&x.flatten_all()?, &Pool2dParams::new((2, 2))).is_err());
    assert!(ops::adaptive_avg_pool2d_reference(&x, (0, 2)).is_err());
    let ints = Tensor::zeros((1, 1, 4, 4), DType::U32, &Device::Cpu)?;
    assert!(ops::max_pool2d_reference(&ints, &Pool2dParams::new((2, 2))).is_err());
    assert!(ops::adaptive_avg_pool2d_reference(&ints, (1, 1)).is_err());
    Ok(())
}
