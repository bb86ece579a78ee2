//! Local response normalisation: PyTorch reference values (forward and gradient), a hand
//! computed even-size window, finite-difference gradient checks, errors and summaries.

use crate::common;

use backbone::layers::{Layer, LocalResponseNorm};
use backbone::ops::local_response_norm;
use backbone::summary::record_layers;
use backbone::Error;
use candle_core::{DType, Device, Tensor};
use common::*;

#[test]
fn local_response_norm_matches_pytorch() -> TestResult {
    let cases = fixture_cases("lrn");
    assert!(
        cases.len() >= 5,
        "expected at least 5 cases, found {}",
        cases.len()
    );
    for case in &cases {
        let size = case.params[0] as usize;
        let Some([alpha, beta, k]) = case.coef.as_deref().and_then(|c| <[f64; 3]>::try_from(c).ok()) else {
            panic!("{}: missing coefficients", case.name)
        };
        let weights = |s: &candle_core::Shape| fixture_weights(s, DType::F32);
        let what = format!("{} (size {size}, alpha {alpha}, beta {beta}, k {k})", case.name);

        let (out, grad) = out_and_grad(&case.input, weights, |x| {
            local_response_norm(x, size, alpha, beta, k)
        })?;
        assert_close(&out, &case.out, FIXTURE_TOL, &format!("{what} op output"));
        assert_close(&grad, &case.grad, FIXTURE_TOL, &format!("{what} op gradient"));

        let layer = LocalResponseNorm::new(size, alpha, beta, k)?;
        let (out, grad) = out_and_grad(&case.input, weights, |x| {
            layer.forward_t(x, true).map_err(candle_core::Error::wrap)
        })?;
        assert_close(&out, &case.out, FIXTURE_TOL, &format!("{what} layer output"));
        assert_close(&grad, &case.grad, FIXTURE_TOL, &format!("{what} layer gradient"));
    }
    Ok(())
}

#[test]
fn even_sizes_use_an_asymmetric_window() -> TestResult {
    // size 2: channel c sums channels c-1 and c. With k = 1, alpha = 2 (alpha / size = 1) and
    // beta = 1: b_c = a_c / (1 + a_{c-1}^2 + a_c^2).
    let x = Tensor::new(&[1f64, 2., 3.], &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    let y = local_response_norm(&x, 2, 2.0, 1.0, 1.0)?;
    let expected = Tensor::new(&[1. / 2., 2. / 6., 3. / 14.], &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    assert_close(&y, &expected, 1e-15, "size 2");
    // size 4: channels c-2 ..= c+1.
    let x = Tensor::new(&[1f64, 2., 3., 4., 5.], &Device::Cpu)?.reshape((1, 5, 1))?;
    let y = local_response_norm(&x, 4, 4.0, 1.0, 1.0)?;
    let sq = [1., 4., 9., 16., 25.];
    let expected: Vec<f64> = (0..5usize)
        .map(|c| {
            let window: f64 = (c.saturating_sub(2)..(c + 2).min(5)).map(|j| sq[j]).sum();
            (c + 1) as f64 / (1.0 + window)
        })
        .collect();
    let expected = Tensor::new(expected.as_slice(), &Device::Cpu)?.reshape((1, 5, 1))?;
    assert_close(&y, &expected, 1e-15, "size 4");
    Ok(())
}

#[test]
fn local_response_norm_gradient_matches_finite_differences() -> TestResult {
    let x4 = uniform((2, 7, 3, 5), 2.0, 41)?;
    let x3 = uniform((2, 6, 5), 2.0, 42)?;
    let x5 = uniform((1, 4, 2, 3, 3), 2.0, 43)?;
    for (size, alpha, beta, k) in [
        (5, 1e-4, 0.75, 2.0),
        (4, 0.5, 0.75, 1.0),
        (1, 1.0, 0.5, 1.0),
        (3, 0.3, 1.5, 0.5),
        (9, 0.2, 0.75, 1.0),
    ] {
        for x in [&x4, &x3, &x5] {
            let what = format!(
                "lrn size {size} alpha {alpha} beta {beta} k {k} on {:?}",
                x.dims()
            );
            assert_grad_ok(&what, x, size as u64, |x| {
                local_response_norm(x, size, alpha, beta, k)
            });
        }
    }
    Ok(())
}

#[test]
fn works_in_half_precision() -> TestResult {
    let x = uniform((2, 6, 3, 3), 2.0, 44)?;
    let reference = local_response_norm(&x, 5, 1e-4, 0.75, 2.0)?;
    let y = local_response_norm(&x.to_dtype(DType::BF16)?, 5, 1e-4, 0.75, 2.0)?;
    assert_eq!(y.dtype(), DType::BF16);
    assert_close(&y, &reference, 2e-2, "bf16");
    Ok(())
}

#[test]
fn rejects_bad_configurations_and_inputs() -> TestResult {
    for (size, alpha, beta, k) in [
        (0, 1e-4, 0.75, 2.0),
        (5, f64::NAN, 0.75, 2.0),
        (5, 1e-4, f64::INFINITY, 2.0),
        (5, -1.0, 0.75, 2.0),
        (5, 1e-4, 0.75, -1.0),
    ] {
        assert!(
            matches!(
                LocalResponseNorm::new(size, alpha, beta, k),
                Err(Error::Config(_))
            ),
            "size {size} alpha {alpha} beta {beta} k {k}"
        );
    }
    let x2 = Tensor::zeros((4, 6), DType::F32, &Device::Cpu)?;
    assert!(local_response_norm(&x2, 5, 1e-4, 0.75, 2.0).is_err());
    assert!(local_response_norm(&x2.reshape((1, 4, 6))?, 0, 1e-4, 0.75, 2.0).is_err());
    let layer = LocalResponseNorm::new(5, 1e-4, 0.75, 2.0)?.named("norm1");
    match layer.forward_t(&x2, false) {
        Err(Error::InputShape { layer, actual, .. }) => {
            assert_eq!(layer, "norm1");
            assert_eq!(actual, [4, 6]);
        }
        other => panic!("expected an input shape error, got {other:?}"),
    }
    // Empty tensors pass through.
    let empty = Tensor::zeros((0, 6, 3, 3), DType::F32, &Device::Cpu)?;
    assert_eq!(layer.forward_t(&empty, false)?.dims(), [0, 6, 3, 3]);
    Ok(())
}

#[test]
fn reports_to_the_summary() -> TestResult {
    let layer = LocalResponseNorm::new(5, 1e-4, 0.75, 2.0)?.named("features.1");
    assert_eq!(
        (layer.size(), layer.alpha(), layer.beta(), layer.k()),
        (5, 1e-4, 0.75, 2.0)
    );
    let x = Tensor::ones((2, 8, 5, 5), DType::F32, &Device::Cpu)?;
    let (out, records) = record_layers(|| layer.forward_t(&x, false));
    assert_eq!(out?.dims(), [2, 8, 5, 5]);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, "features.1");
    assert_eq!(records[0].kind, "LocalResponseNorm");
    assert_eq!(
        (records[0].input.as_slice(), records[0].output.as_slice()),
        (&[2, 8, 5, 5][..], &[2, 8, 5, 5][..])
    );
    Ok(())
}
