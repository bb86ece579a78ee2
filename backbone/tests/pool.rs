//! Pooling ops and layers: PyTorch reference values (forward and gradient), finite-difference
//! gradient checks, candle's own pooling bugs, non-contiguous and low-precision inputs, errors.

use crate::common;

use backbone::layers::{AdaptiveAvgPool2d, AvgPool2d, Layer, MaxPool2d, PoolConfig};
use backbone::ops::{self, pool_output_size, Pool2dParams};
use backbone::summary::record_layers;
use candle_core::{DType, Device, IndexOp, Tensor};
use common::*;

fn params_of(p: &[i64]) -> Pool2dParams {
    let u = |i: usize| p[i] as usize;
    Pool2dParams {
        kernel: (u(0), u(1)),
        stride: (u(2), u(3)),
        padding: (u(4), u(5)),
        ceil_mode: p[6] != 0,
        count_include_pad: p[7] != 0,
    }
}

fn config_of(p: &Pool2dParams) -> PoolConfig {
    PoolConfig::new_hw(p.kernel)
        .stride_hw(p.stride)
        .padding_hw(p.padding)
        .ceil_mode(p.ceil_mode)
        .count_include_pad(p.count_include_pad)
}

fn layer_fn<L: Layer>(layer: &L) -> impl Fn(&Tensor) -> candle_core::Result<Tensor> + '_ {
    move |x| layer.forward_t(x, true).map_err(candle_core::Error::wrap)
}

/// Checks `f`'s output and gradient against a fixture case.
fn check_case(case: &Case, what: &str, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) {
    let (out, grad) = match out_and_grad(&case.input, |s| fixture_weights(s, DType::F32), f) {
        Ok(r) => r,
        Err(e) => panic!("{} ({what}): {e}", case.name),
    };
    assert_close(
        &out,
        &case.out,
        FIXTURE_TOL,
        &format!("{} ({what}) output, params {:?}", case.name, case.params),
    );
    assert_close(
        &grad,
        &case.grad,
        FIXTURE_TOL,
        &format!("{} ({what}) gradient, params {:?}", case.name, case.params),
    );
}

#[test]
fn max_pool2d_matches_pytorch() -> TestResult {
    let cases = fixture_cases("max_pool2d");
    assert!(
        cases.len() >= 12,
        "expected at least 12 cases, found {}",
        cases.len()
    );
    for case in &cases {
        let p = params_of(&case.params);
        check_case(case, "op", |x| ops::max_pool2d(x, &p));
        let layer = MaxPool2d::new(config_of(&p))?;
        check_case(case, "layer", layer_fn(&layer));
    }
    Ok(())
}

#[test]
fn avg_pool2d_matches_pytorch() -> TestResult {
    let cases = fixture_cases("avg_pool2d");
    assert!(
        cases.len() >= 12,
        "expected at least 12 cases, found {}",
        cases.len()
    );
    for case in &cases {
        let p = params_of(&case.params);
        check_case(case, "op", |x| ops::avg_pool2d(x, &p));
        let layer = AvgPool2d::new(config_of(&p))?;
        check_case(case, "layer", layer_fn(&layer));
    }
    Ok(())
}

#[test]
fn adaptive_avg_pool2d_matches_pytorch() -> TestResult {
    let cases = fixture_cases("adaptive_avg_pool2d");
    assert!(
        cases.len() >= 6,
        "expected at least 6 cases, found {}",
        cases.len()
    );
    for case in &cases {
        let out = (case.params[0] as usize, case.params[1] as usize);
        check_case(case, "op", |x| ops::adaptive_avg_pool2d(x, out));
        let layer = AdaptiveAvgPool2d::new(out)?;
        check_case(case, "layer", layer_fn(&layer));
    }
    Ok(())
}

/// A pool configuration from `(kernel, stride, padding, ceil_mode, count_include_pad)`.
fn p(k: (usize, usize), s: (usize, usize), pad: (usize, usize), ceil: bool, cip: bool) -> Pool2dParams {
    Pool2dParams {
        kernel: k,
        stride: s,
        padding: pad,
        ceil_mode: ceil,
        count_include_pad: cip,
    }
}

/// Configurations for the finite-difference checks: kernels 1-3, strides 1-3, padding,
/// ceil mode, both divisor rules, non-square windows.
fn fd_configs() -> Vec<Pool2dParams> {
    vec![
        p((2, 2), (2, 2), (0, 0), false, true),
        p((2, 2), (2, 2), (0, 0), true, true),
        p((3, 3), (2, 2), (0, 0), false, true),
        p((3, 3), (2, 2), (1, 1), true, true),
        p((3, 3), (2, 2), (1, 1), true, false),
        p((3, 3), (1, 1), (1, 1), false, false),
        p((3, 3), (3, 3), (1, 1), true, true),
        p((2, 3), (1, 2), (1, 0), true, false),
        p((1, 1), (2, 2), (0, 0), false, true),
    ]
}

fn fd_inputs() -> candle_core::Result<Vec<Tensor>> {
    Ok(vec![
        distinct((2, 3, 7, 9), 1)?,
        distinct((1, 2, 13, 11), 2)?,
        distinct((1, 1, 6, 5), 3)?,
    ])
}

#[test]
fn max_pool2d_gradient_matches_finite_differences() -> TestResult {
    for (i, x) in fd_inputs()?.iter().enumerate() {
        for cfg in fd_configs() {
            assert_grad_ok(
                &format!("max_pool2d {cfg:?} on {:?}", x.dims()),
                x,
                i as u64,
                |x| ops::max_pool2d(x, &cfg),
            );
        }
    }
    Ok(())
}

#[test]
fn avg_pool2d_gradient_matches_finite_differences() -> TestResult {
    for (i, x) in fd_inputs()?.iter().enumerate() {
        for cfg in fd_configs() {
            assert_grad_ok(
                &format!("avg_pool2d {cfg:?} on {:?}", x.dims()),
                x,
                i as u64,
                |x| ops::avg_pool2d(x, &cfg),
            );
        }
    }
    Ok(())
}

#[test]
fn adaptive_avg_pool2d_gradient_matches_finite_differences() -> TestResult {
    let x = uniform((2, 3, 10, 13), 1.0, 7)?;
    for out in [(1, 1), (3, 5), (7, 7), (4, 13), (12, 15), (10, 13)] {
        assert_grad_ok(&format!("adaptive_avg_pool2d to {out:?}"), &x, 11, |x| {
            ops::adaptive_avg_pool2d(x, out)
        });
    }
    Ok(())
}

#[test]
fn candle_max_pool2d_gradient_is_wrong_and_ours_is_right() -> TestResult {
    // Even sizes and kernel == stride: the only case candle's backward accepts.
    let x = distinct((1, 2, 6, 8), 5)?;
    let candle = grad_check(&x, 3, |x| x.max_pool2d(2))?;
    assert!(
        !candle.passes(0.1),
        "candle's max_pool2d backward now matches finite differences: the workaround may be obsolete"
    );
    // It scales the gradient of the winning element by 1 / (k * k).
    for (a, n) in candle.analytic.iter().zip(candle.numeric.iter()) {
        assert!(
            (a * 4.0 - n).abs() < 1e-6,
            "candle: {a} vs finite differences {n}"
        );
    }
    let ours = grad_check(&x, 3, |x| ops::max_pool2d(x, &Pool2dParams::new((2, 2))))?;
    assert!(ours.passes(FD_TOL), "{ours:?}");
    // The forward passes agree.
    assert_close(
        &ops::max_pool2d(&x, &Pool2dParams::new((2, 2)))?,
        &x.max_pool2d(2)?,
        0.0,
        "forward",
    );
    Ok(())
}

#[test]
fn candle_avg_pool2d_gradient_is_wrong_for_odd_sizes() -> TestResult {
    let x = uniform((1, 2, 7, 9), 1.0, 9)?;
    let candle = grad_check(&x, 4, |x| x.avg_pool2d(2))?;
    assert!(
        !candle.passes(0.1),
        "candle's avg_pool2d backward now matches finite differences on odd sizes: {candle:?}"
    );
    let ours = grad_check(&x, 4, |x| ops::avg_pool2d(x, &Pool2dParams::new((2, 2))))?;
    assert!(ours.passes(FD_TOL), "{ours:?}");
    assert_close(
        &ops::avg_pool2d(&x, &Pool2dParams::new((2, 2)))?,
        &x.avg_pool2d(2)?,
        1e-12,
        "forward",
    );
    Ok(())
}

#[test]
fn candle_overlapping_pooling_has_no_backward() -> TestResult {
    let x = distinct((1, 2, 7, 9), 6)?;
    // The forward pass works (and agrees with ours) ...
    let theirs = x.max_pool2d_with_stride(3, 2)?;
    let ours = ops::max_pool2d(&x, &p((3, 3), (2, 2), (0, 0), false, true))?;
    assert_close(&ours, &theirs, 0.0, "forward");
    // ... but the backward pass refuses overlapping windows.
    for (name, check) in [
        (
            "max_pool2d",
            grad_check(&x, 1, |x| x.max_pool2d_with_stride(3, 2)),
        ),
        (
            "avg_pool2d",
            grad_check(&x, 1, |x| x.avg_pool2d_with_stride(3, 2)),
        ),
    ] {
        let e = check.expect_err("candle now has a backward for overlapping windows");
        assert!(e.to_string().contains("backward not supported"), "{name}: {e}");
    }
    assert_grad_ok("ours", &x, 1, |x| {
        ops::max_pool2d(x, &p((3, 3), (2, 2), (0, 0), false, true))
    });
    Ok(())
}

#[test]
fn max_pool2d_routes_ties_to_the_first_maximum() -> TestResult {
    // One 2x3 window of zeros and ones: PyTorch gives the whole gradient to the first 1.
    let x = Tensor::new(&[[[[0f32, 1., 1.], [1., 0., 1.]]]], &Device::Cpu)?;
    let (out, grad) = out_and_grad(
        &x,
        |s| Tensor::ones(s, DType::F32, &Device::Cpu),
        |x| ops::max_pool2d(x, &Pool2dParams::new((2, 3))),
    )?;
    assert_eq!(out.flatten_all()?.to_vec1::<f32>()?, [1.]);
    assert_eq!(grad.flatten_all()?.to_vec1::<f32>()?, [0., 1., 0., 0., 0., 0.]);
    // Overlapping windows accumulate: 3x3 stride 1 over a constant 4x4 input -> the top-left
    // element of each of the 4 windows.
    let x = Tensor::ones((1, 1, 4, 4), DType::F64, &Device::Cpu)?;
    let (_, grad) = out_and_grad(
        &x,
        |s| Tensor::ones(s, DType::F64, &Device::Cpu),
        |x| ops::max_pool2d(x, &p((3, 3), (1, 1), (0, 0), false, true)),
    )?;
    let expected = [1., 1., 0., 0., 1., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.];
    assert_eq!(grad.flatten_all()?.to_vec1::<f64>()?, expected);
    // With padding, the padded positions never win, even against -inf: every window's
    // gradient goes to its first real element, as in PyTorch.
    let x = Tensor::full(f32::NEG_INFINITY, (1, 1, 2, 2), &Device::Cpu)?;
    let (out, grad) = out_and_grad(
        &x,
        |s| Tensor::ones(s, DType::F32, &Device::Cpu),
        |x| ops::max_pool2d(x, &p((3, 3), (1, 1), (1, 1), false, true)),
    )?;
    assert!(out
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|v| *v == f32::NEG_INFINITY));
    assert_eq!(grad.flatten_all()?.to_vec1::<f32>()?, [4., 0., 0., 0.]);
    Ok(())
}

#[test]
fn max_pool2d_propagates_nan_like_pytorch() -> TestResult {
    let x = Tensor::new(&[[[[1f32, f32::NAN], [3., 2.]]]], &Device::Cpu)?;
    let (out, grad) = out_and_grad(
        &x,
        |s| Tensor::ones(s, DType::F32, &Device::Cpu),
        |x| ops::max_pool2d(x, &Pool2dParams::new((2, 2))),
    )?;
    assert!(out.flatten_all()?.to_vec1::<f32>()?[0].is_nan());
    assert_eq!(grad.flatten_all()?.to_vec1::<f32>()?, [0., 1., 0., 0.]);
    Ok(())
}

/// Contiguous rows take the separable kernels (column maxima, then the first position holding
/// the window's maximum); other layouts scan each window as PyTorch does. On inputs full of
/// ties, signed zeros, infinities and NaNs the two agree: the same values (`0.0 == -0.0`) and
/// the same gradient routing, over paddings, strides and ceil mode.
#[test]
fn max_pool2d_separable_path_routes_like_the_window_scan() -> TestResult {
    let palette = [0f32, -0.0, 1., 1., -1., f32::NEG_INFINITY, f32::NAN, 2.];
    let values: Vec<f32> = (0..2 * 3 * 9 * 11 * 2)
        .map(|i: usize| palette[(i.wrapping_mul(2654435761) >> 7) % palette.len()])
        .collect();
    // Every other element of the last axis: rows with stride 2, the scanning kernels. (The
    // view is taken inside `f`: a variable made from a view is contiguous.)
    let base = Tensor::from_vec(values, (2, 3, 9, 11, 2), &Device::Cpu)?;
    let strided = |b: &Tensor| b.i((.., .., .., .., 0));
    assert_eq!(strided(&base)?.stride()[3], 2);
    for params in [
        p((3, 3), (2, 2), (1, 1), false, true),
        p((3, 3), (2, 2), (1, 1), true, true),
        p((2, 3), (1, 2), (0, 1), false, true),
        p((3, 2), (3, 1), (1, 0), true, true),
    ] {
        let w = |s: &candle_core::Shape| fixture_weights(s, DType::F32);
        let scan = |b: &Tensor| ops::max_pool2d(&strided(b)?, &params);
        let separable = |b: &Tensor| ops::max_pool2d(&strided(b)?.contiguous()?, &params);
        let (out_scan, grad_scan) = out_and_grad(&base, w, scan)?;
        let (out_sep, grad_sep) = out_and_grad(&base, w, separable)?;
        assert_close(&out_sep, &out_scan, 0.0, &format!("{params:?} output"));
        assert_close(&grad_sep, &grad_scan, 0.0, &format!("{params:?} gradient"));
    }
    Ok(())
}

/// Average pooling of contiguous rows sums each window from row slices, tap by tap along the
/// row when the windows are uniform (no padding reaches them): the same sums in the same
/// order, so the same bits as the window scan of strided rows, outputs and gradients.
#[test]
fn avg_pool2d_row_paths_match_the_window_scan_bit_for_bit() -> TestResult {
    let base = uniform((2, 3, 10, 11, 2), 1.0, 77)?;
    let strided = |b: &Tensor| b.i((.., .., .., .., 0));
    for params in [
        p((2, 2), (2, 2), (0, 0), false, true),
        p((3, 3), (2, 2), (0, 0), true, true),
        p((3, 2), (1, 3), (0, 0), false, true),
        p((3, 3), (2, 2), (1, 1), false, false),
        p((1, 1), (1, 1), (0, 0), false, true),
    ] {
        let w = |s: &candle_core::Shape| fixture_weights(s, DType::F64);
        let scan = |b: &Tensor| ops::avg_pool2d(&strided(b)?, &params);
        let rows = |b: &Tensor| ops::avg_pool2d(&strided(b)?.contiguous()?, &params);
        let (out_scan, grad_scan) = out_and_grad(&base, w, scan)?;
        let (out_rows, grad_rows) = out_and_grad(&base, w, rows)?;
        assert_close(&out_rows, &out_scan, 0.0, &format!("{params:?} output"));
        assert_close(&grad_rows, &grad_scan, 0.0, &format!("{params:?} gradient"));
    }
    Ok(())
}

#[test]
fn avg_pool2d_divisor_follows_pytorch() -> TestResult {
    // Width 9, kernel 3, stride 3, padding 1, ceil mode: 4 windows, the last one covers one
    // real element, one padding element and one position past the padding.
    let x = Tensor::ones((1, 1, 1, 9), DType::F32, &Device::Cpu)?;
    let cfg = |cip| p((1, 3), (1, 3), (0, 1), true, cip);
    let with_pad = ops::avg_pool2d(&x, &cfg(true))?;
    let expected = Tensor::new(&[[[[2f32 / 3., 1., 1., 0.5]]]], &Device::Cpu)?;
    assert_close(&with_pad, &expected, 1e-7, "count_include_pad");
    let without = ops::avg_pool2d(&x, &cfg(false))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert_eq!(without, [1., 1., 1., 1.]);
    Ok(())
}

type Op = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;

/// The three ops with one configuration that uses padding, ceil mode and overlap.
fn all_ops() -> [(&'static str, Op); 3] {
    let cfg = p((3, 3), (2, 2), (1, 1), true, false);
    [
        ("max_pool2d", Box::new(move |x: &Tensor| ops::max_pool2d(x, &cfg))),
        ("avg_pool2d", Box::new(move |x: &Tensor| ops::avg_pool2d(x, &cfg))),
        (
            "adaptive_avg_pool2d",
            Box::new(|x: &Tensor| ops::adaptive_avg_pool2d(x, (3, 4))),
        ),
    ]
}

#[test]
fn non_contiguous_inputs_give_the_same_results() -> TestResult {
    let views: [(Tensor, Op); 3] = [
        (
            distinct((2, 3, 9, 7), 12)?,
            Box::new(|b: &Tensor| b.transpose(2, 3)),
        ),
        (
            distinct((3, 4, 9, 12), 13)?,
            Box::new(|b: &Tensor| {
                b.narrow(1, 1, 3)?
                    .narrow(3, 2, 9)?
                    .narrow(0, 1, 2)?
                    .narrow(2, 1, 7)
            }),
        ),
        (
            distinct((1, 1, 7, 9), 14)?,
            Box::new(|b: &Tensor| b.broadcast_as((2, 3, 7, 9))),
        ),
    ];
    for (base, view) in &views {
        let x = view(base)?;
        assert!(!x.is_contiguous());
        assert_eq!(x.dims(), [2, 3, 7, 9]);
        let xc = x.contiguous()?;
        for (name, f) in all_ops().iter() {
            assert_close(&f(&x)?, &f(&xc)?, 0.0, name);
            // The gradient flows back through the view to the base tensor.
            assert_grad_ok(&format!("{name} through a view"), base, 2, |b| f(&view(b)?));
        }
    }
    Ok(())
}

#[test]
fn large_inputs_run_in_parallel_and_agree_with_per_plane_results() -> TestResult {
    // Big enough to take the rayon path; each single plane takes the sequential one.
    let x = uniform((3, 8, 33, 31), 1.0, 21)?.to_dtype(DType::F32)?;
    for (name, f) in all_ops().iter() {
        let w = |s: &candle_core::Shape| fixture_weights(s, DType::F32);
        let (out, grad) = out_and_grad(&x, w, f)?;
        for n in 0..3 {
            for c in 0..8 {
                let plane = x.i((n..n + 1, c..c + 1))?.contiguous()?;
                let wp = |s: &candle_core::Shape| -> candle_core::Result<Tensor> {
                    let full = fixture_weights(out.shape(), DType::F32)?;
                    let wp = full.i((n..n + 1, c..c + 1))?;
                    assert_eq!(wp.shape(), s);
                    Ok(wp)
                };
                let (o, g) = out_and_grad(&plane, wp, f)?;
                assert_close(&o, &out.i((n..n + 1, c..c + 1))?, 0.0, name);
                assert_close(&g, &grad.i((n..n + 1, c..c + 1))?, 0.0, name);
            }
        }
    }
    Ok(())
}

#[test]
fn half_precision_inputs_are_pooled_in_f32() -> TestResult {
    let x = uniform((2, 3, 7, 9), 1.0, 31)?;
    let cfg = p((3, 3), (2, 2), (1, 1), true, true);
    for dtype in [DType::F16, DType::BF16] {
        let xh = x.to_dtype(dtype)?;
        let reference = ops::avg_pool2d(&xh.to_dtype(DType::F32)?, &cfg)?;
        let (out, grad) = out_and_grad(
            &xh,
            |s| Tensor::ones(s, dtype, &Device::Cpu),
            |x| ops::avg_pool2d(x, &cfg),
        )?;
        assert_eq!(out.dtype(), dtype);
        assert_eq!(grad.dtype(), dtype);
        assert_close(&out.to_dtype(DType::F32)?, &reference, 1e-2, "half forward");
        let out = ops::max_pool2d(&xh, &cfg)?;
        assert_eq!(out.dtype(), dtype);
        assert_close(
            &out,
            &ops::max_pool2d(&xh.to_dtype(DType::F32)?, &cfg)?,
            0.0,
            "half max is exact",
        );
        assert_eq!(ops::adaptive_avg_pool2d(&xh, (2, 2))?.dtype(), dtype);
    }
    Ok(())
}

#[test]
fn output_size_follows_pytorch() {
    // torch.nn.MaxPool2d docs: floor((H + 2p - k) / s) + 1, ceil variant.
    assert_eq!(pool_output_size(13, 3, 2, 0, false), Some(6)); // AlexNet 13 -> 6
    assert_eq!(pool_output_size(55, 3, 2, 0, false), Some(27));
    assert_eq!(pool_output_size(112, 3, 2, 1, false), Some(56)); // ResNet stem
    assert_eq!(pool_output_size(7, 2, 2, 0, false), Some(3));
    assert_eq!(pool_output_size(7, 2, 2, 0, true), Some(4));
    assert_eq!(pool_output_size(9, 3, 3, 1, true), Some(4));
    // Ceil mode never starts a window in the right padding.
    assert_eq!(pool_output_size(9, 2, 2, 1, true), Some(5));
    assert_eq!(pool_output_size(8, 2, 2, 1, true), Some(5));
    assert_eq!(pool_output_size(10, 2, 2, 1, true), Some(6));
    // Ceil mode keeps a lone window that overhangs the input.
    assert_eq!(pool_output_size(2, 3, 2, 0, true), Some(1));
    assert_eq!(pool_output_size(2, 3, 2, 0, false), None);
    // Invalid configurations.
    assert_eq!(pool_output_size(9, 3, 2, 2, false), None);
    assert_eq!(pool_output_size(9, 0, 2, 0, false), None);
    assert_eq!(pool_output_size(9, 2, 0, 0, false), None);
    assert_eq!(pool_output_size(0, 1, 1, 0, false), None);
}

#[test]
fn ops_reject_bad_configurations_and_inputs() -> TestResult {
    let x = uniform((1, 2, 7, 9), 1.0, 1)?;
    let bad = [
        p((0, 2), (1, 1), (0, 0), false, true),
        p((2, 2), (0, 1), (0, 0), false, true),
        p((3, 3), (1, 1), (2, 1), false, true),
        p((2, 2), (1, 1), (0, 2), false, true),
        p((8, 2), (1, 1), (0, 0), false, true),  // input too small
        p((2, 12), (1, 1), (0, 1), false, true), // too small even with padding
    ];
    for cfg in bad {
        let e1 = ops::max_pool2d(&x, &cfg).expect_err("max_pool2d must refuse");
        let e2 = ops::avg_pool2d(&x, &cfg).expect_err("avg_pool2d must refuse");
        assert!(!e1.to_string().is_empty() && !e2.to_string().is_empty());
    }
    let e = ops::max_pool2d(&x, &p((8, 2), (1, 1), (0, 0), false, true)).expect_err("too small");
    assert!(e.to_string().contains("too small"), "{e}");
    // Wrong rank, wrong dtype.
    let x3 = uniform((2, 7, 9), 1.0, 1)?;
    assert!(ops::max_pool2d(&x3, &Pool2dParams::new((2, 2))).is_err());
    assert!(ops::avg_pool2d(&x3, &Pool2dParams::new((2, 2))).is_err());
    assert!(ops::adaptive_avg_pool2d(&x3, (2, 2)).is_err());
    let xu = Tensor::zeros((1, 1, 4, 4), DType::U32, &Device::Cpu)?;
    let e = ops::max_pool2d(&xu, &Pool2dParams::new((2, 2))).expect_err("u32");
    assert!(e.to_string().contains("dtype"), "{e}");
    assert!(ops::adaptive_avg_pool2d(&xu, (2, 2)).is_err());
    // Adaptive: empty output or input.
    assert!(ops::adaptive_avg_pool2d(&x, (0, 3)).is_err());
    let empty = Tensor::zeros((1, 1, 0, 4), DType::F32, &Device::Cpu)?;
    assert!(ops::adaptive_avg_pool2d(&empty, (1, 1)).is_err());
    assert!(ops::max_pool2d(&empty, &Pool2dParams::new((1, 1))).is_err());
    // Empty batches are fine.
    let none = Tensor::zeros((0, 3, 5, 5), DType::F32, &Device::Cpu)?;
    assert_eq!(
        ops::max_pool2d(&none, &Pool2dParams::new((2, 2)))?.dims(),
        [0, 3, 2, 2]
    );
    Ok(())
}

#[test]
fn layers_reject_bad_configurations() {
    use backbone::Error;
    let bad = [
        PoolConfig::new(0),
        PoolConfig::new(2).stride(0),
        PoolConfig::new(3).padding(2),
        PoolConfig::new_hw((3, 2)).padding_hw((1, 2)),
        PoolConfig::new_hw((2, 0)),
        PoolConfig::new(2).stride_hw((1, 0)),
    ];
    for cfg in bad {
        assert!(matches!(MaxPool2d::new(cfg), Err(Error::Config(_))), "{cfg:?}");
        assert!(matches!(AvgPool2d::new(cfg), Err(Error::Config(_))), "{cfg:?}");
    }
    assert!(matches!(AdaptiveAvgPool2d::new((0, 1)), Err(Error::Config(_))));
    assert!(matches!(AdaptiveAvgPool2d::new((1, 0)), Err(Error::Config(_))));
}

#[test]
fn pool_config_defaults_follow_pytorch() {
    let p = PoolConfig::new(3).params();
    assert_eq!(p, Pool2dParams::new((3, 3)));
    assert_eq!(p.stride, (3, 3));
    assert!(p.count_include_pad && !p.ceil_mode);
    assert_eq!(p.padding, (0, 0));
    let p = PoolConfig::new_hw((3, 2))
        .stride(1)
        .padding_hw((1, 0))
        .ceil_mode(true)
        .count_include_pad(false)
        .params();
    assert_eq!(
        p,
        Pool2dParams {
            kernel: (3, 2),
            stride: (1, 1),
            padding: (1, 0),
            ceil_mode: true,
            count_include_pad: false
        }
    );
}

#[test]
fn layers_reject_bad_inputs_with_their_name() -> TestResult {
    use backbone::Error;
    let pool = MaxPool2d::new(PoolConfig::new(3).stride(2))?.named("pool1");
    let small = Tensor::zeros((1, 2, 2, 9), DType::F32, &Device::Cpu)?;
    match pool.forward_t(&small, false) {
        Err(Error::InputShape {
            layer,
            expected,
            actual,
        }) => {
            assert_eq!(layer, "pool1");
            assert_eq!(expected, "[N, C, H>=3, W>=3]");
            assert_eq!(actual, [1, 2, 2, 9]);
        }
        other => panic!("expected an input shape error, got {other:?}"),
    }
    // Ceil mode accepts a smaller input.
    let ceil = MaxPool2d::new(PoolConfig::new(3).stride(2).ceil_mode(true))?;
    assert_eq!(ceil.forward_t(&small, false)?.dims(), [1, 2, 1, 4]);
    let three_d = Tensor::zeros((2, 9, 9), DType::F32, &Device::Cpu)?;
    let avg = AvgPool2d::new(PoolConfig::new(2))?;
    match avg.forward_t(&three_d, false) {
        Err(Error::InputShape { layer, .. }) => assert_eq!(layer, "AvgPool2d"),
        other => panic!("expected an input shape error, got {other:?}"),
    }
    let adaptive = AdaptiveAvgPool2d::new((6, 6))?.named("avgpool");
    match adaptive.forward_t(&three_d, false) {
        Err(Error::InputShape { layer, .. }) => assert_eq!(layer, "avgpool"),
        other => panic!("expected an input shape error, got {other:?}"),
    }
    let empty = Tensor::zeros((1, 1, 0, 3), DType::F32, &Device::Cpu)?;
    assert!(matches!(
        adaptive.forward_t(&empty, false),
        Err(Error::InputShape { .. })
    ));
    Ok(())
}

#[test]
fn layers_report_to_the_summary() -> TestResult {
    let x = Tensor::zeros((2, 3, 13, 11), DType::F32, &Device::Cpu)?;
    let max = MaxPool2d::new(PoolConfig::new(3).stride(2))?.named("pool1");
    let avg = AvgPool2d::new(PoolConfig::new(2).ceil_mode(true))?;
    let adaptive = AdaptiveAvgPool2d::new((3, 5))?.named("avgpool");
    let (result, records) = record_layers(|| -> backbone::Result<()> {
        let y = max.forward_t(&x, false)?;
        let y = avg.forward_t(&y, false)?;
        adaptive.forward_t(&y, false)?;
        Ok(())
    });
    result?;
    let rows: Vec<(&str, &str, &[usize], &[usize])> = records
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.kind.as_str(),
                r.input.as_slice(),
                r.output.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("pool1", "MaxPool2d", &[2, 3, 13, 11][..], &[2, 3, 6, 5][..]),
            ("", "AvgPool2d", &[2, 3, 6, 5][..], &[2, 3, 3, 3][..]),
            (
                "avgpool",
                "AdaptiveAvgPool2d",
                &[2, 3, 3, 3][..],
                &[2, 3, 3, 5][..]
            ),
        ]
    );
    assert!(records.iter().all(|r| r.params == 0 && r.macs == 0));
    // Nothing is recorded outside a summary.
    max.forward_t(&x, false)?;
    Ok(())
}
