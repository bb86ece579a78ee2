//! Dense layers: Conv2d, ConvBlock, Linear, BatchNorm2d, Dropout, Activation, Flatten and
//! Sequential. PyTorch reference values (forward and gradients w.r.t. input and parameters),
//! finite-difference gradient checks in f64, candle's own conv2d backward bug, running
//! statistics shared with the var map, dropout statistics and seeding, errors.

use crate::common;

use backbone::init::{self, SeededVarMap};
use backbone::layers::{
    Activation, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Dropout, Flatten, Layer,
    Linear, Sequential,
};
use backbone::Error;
use candle_core::{DType, Device, Tensor, Var};
use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Turns a layer result into a candle result, for closures given to candle-style helpers.
fn wrap<T>(r: backbone::Result<T>) -> candle_core::Result<T> {
    r.map_err(candle_core::Error::wrap)
}

/// Builds a layer and runs it, as a candle result (for closures given to candle-style
/// helpers).
fn run<L: Layer>(layer: backbone::Result<L>, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
    wrap(layer.and_then(|l| l.forward_t(xs, train)))
}

/// Dropout draws from one process-wide generator: the tests that use it in training mode
/// hold this lock so that `init::seed` followed by a forward pass is not interleaved with
/// another test's draws.
fn rng_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn fresh_vb(seed: u64) -> candle_nn::VarBuilder<'static> {
    SeededVarMap::new(seed).var_builder(DType::F32, &Device::Cpu)
}

// ---------------------------------------------------------------------------------------------
// Conv2d
// ---------------------------------------------------------------------------------------------

/// A configuration from a fixture's `[in, out, kh, kw, stride, ph, pw, dilation, groups, bias,
/// input_index]`.
fn conv_config(p: &[i64]) -> Conv2dConfig {
    let u = |i: usize| p[i] as usize;
    let c = Conv2dConfig::new(u(0), u(1), 1)
        .kernel_hw(u(2), u(3))
        .stride(u(4))
        .padding_hw(u(5), u(6))
        .dilation(u(7))
        .groups(u(8));
    if p[9] == 0 {
        c.no_bias()
    } else {
        c
    }
}

/// The leftover rows (or columns) that no window reaches: `(size + 2p - span) % stride`.
fn remainder(size: usize, kernel: usize, cfg: &Conv2dConfig, padding: usize) -> usize {
    (size + 2 * padding - (cfg.dilation * (kernel - 1) + 1)) % cfg.stride
}

#[test]
fn conv2d_matches_pytorch() -> TestResult {
    let fx = load_fixture("conv2d");
    let inputs = fixture_inputs(&fx);
    let cases = fixture_case_names(&fx);
    assert!(
        cases.len() >= 14,
        "expected at least 14 cases, found {}",
        cases.len()
    );
    let (mut grouped, mut depthwise, mut dilated, mut unequal, mut no_bias) = (0, 0, 0, 0, 0);
    for case in &cases {
        let params = fixture_tensor(&fx, &format!("{case}.params")).to_vec1::<i64>()?;
        let cfg = conv_config(&params);
        let x = inputs[params[10] as usize].clone();
        let what = format!("conv2d/{case} {params:?}");

        let vb = var_builder(fixture_vars(&fx, case, DType::F32)?, DType::F32).pp(case);
        let conv = Conv2d::new(cfg, vb)?;
        assert_eq!(conv.name(), case);
        assert_eq!(conv.bias().is_some(), cfg.bias, "{what}");

        let xv = Var::from_tensor(&x)?;
        let out = conv.forward_t(xv.as_tensor(), true)?;
        let grads = fixture_loss(&out)?.backward()?;
        let expect = |name: &str| fixture_tensor(&fx, &format!("{case}.{name}"));
        assert_close(&out, &expect("out"), FIXTURE_TOL, &format!("{what} output"));
        assert_close(
            &grad_of(&grads, xv.as_tensor(), &what),
            &expect("grad"),
            FIXTURE_TOL,
            &format!("{what} input gradient"),
        );
        assert_close(
            &grad_of(&grads, conv.weight(), &what),
            &expect("grad_weight"),
            FIXTURE_TOL,
            &format!("{what} weight gradient"),
        );
        if let Some(bias) = conv.bias() {
            assert_close(
                &grad_of(&grads, bias, &what),
                &expect("grad_bias"),
                FIXTURE_TOL,
                &format!("{what} bias gradient"),
            );
        }
        // The train flag does not matter.
        assert_close(&conv.forward_t(&x, false)?, &out, 0.0, &format!("{what} eval"));

        let (h, w) = (x.dim(2)?, x.dim(3)?);
        grouped += usize::from(cfg.groups > 1);
        depthwise += usize::from(cfg.groups == cfg.in_channels && cfg.groups > 1);
        dilated += usize::from(cfg.dilation > 1);
        no_bias += usize::from(!cfg.bias);
        // Unequal paddings, or unequal remainders under the stride: what candle's own
        // convolution cannot do (asymmetric padding) or differentiate (remainders).
        unequal += usize::from(
            cfg.padding.0 != cfg.padding.1
                || remainder(h, cfg.kernel.0, &cfg, cfg.padding.0)
                    != remainder(w, cfg.kernel.1, &cfg, cfg.padding.1),
        );
    }
    // The fixture covers what it claims to.
    assert!(
        grouped >= 4 && depthwise >= 3 && dilated >= 3 && no_bias >= 3,
        "coverage"
    );
    assert!(
        unequal >= 4,
        "too few cases with unequal paddings or remainders: {unequal}"
    );
    Ok(())
}

/// A conv layer over the given f64 weight and bias (variables or not), named `conv`.
fn conv_over(cfg: Conv2dConfig, weight: &Tensor, bias: &Tensor) -> backbone::Result<Conv2d> {
    let map = HashMap::from([
        ("conv.weight".to_string(), weight.clone()),
        ("conv.bias".to_string(), bias.clone()),
    ]);
    Conv2d::new(cfg, var_builder(map, DType::F64).pp("conv"))
}

/// Non-square inputs and stride 2 (and 3), where the rows and columns that no window reaches
/// differ between the axes: the case candle 0.11's backward gets wrong.
fn fd_conv_configs() -> Vec<Conv2dConfig> {
    vec![
        Conv2dConfig::new(2, 3, 3).stride(2).padding(1),
        Conv2dConfig::new(2, 3, 3).stride(2),
        Conv2dConfig::new(2, 4, 3).stride(2).padding(1).groups(2),
        Conv2dConfig::new(2, 2, 3)
            .stride(2)
            .padding(2)
            .dilation(2)
            .groups(2),
        Conv2dConfig::new(2, 2, 1)
            .kernel_hw(1, 7)
            .padding_hw(0, 3)
            .stride(2)
            .no_bias(),
        Conv2dConfig::new(2, 3, 1)
            .kernel_hw(3, 5)
            .padding_hw(1, 2)
            .stride(3),
    ]
}

#[test]
fn conv2d_gradients_match_finite_differences_on_non_square_inputs() -> TestResult {
    // 11x6: the output is far from square too (6x3 with the first configuration).
    let inputs = [
        uniform((2, 2, 7, 8), 1.0, 1)?,
        uniform((1, 2, 8, 7), 1.0, 2)?,
        uniform((1, 2, 11, 6), 1.0, 3)?,
    ];
    // The first configuration on every input is one that candle's own backward refuses.
    let first = &fd_conv_configs()[0];
    for x in &inputs {
        let (h, w) = (x.dim(2)?, x.dim(3)?);
        assert_ne!(remainder(h, 3, first, 1), remainder(w, 3, first, 1));
    }
    for (i, x) in inputs.iter().enumerate() {
        for (j, cfg) in fd_conv_configs().into_iter().enumerate() {
            let seed = (10 * i + j) as u64;
            let (kh, kw) = cfg.kernel;
            let wshape = (cfg.out_channels, cfg.in_channels / cfg.groups, kh, kw);
            let weight = uniform(wshape, 0.5, 100 + seed)?;
            let bias = uniform(cfg.out_channels, 0.5, 200 + seed)?;
            let what = format!("{cfg:?} on {:?}", x.dims());
            assert_grad_ok(&format!("input gradient, {what}"), x, seed, |x| {
                run(conv_over(cfg, &weight, &bias), x, true)
            });
            assert_grad_ok(&format!("weight gradient, {what}"), &weight, seed, |w| {
                run(conv_over(cfg, w, &bias), x, true)
            });
            if cfg.bias {
                assert_grad_ok(&format!("bias gradient, {what}"), &bias, seed, |b| {
                    run(conv_over(cfg, &weight, b), x, true)
                });
            }
        }
    }
    Ok(())
}

#[test]
fn candle_conv2d_backward_fails_on_unequal_remainders() -> TestResult {
    // 7x8 (and 8x7), kernel 3, stride 2, padding 1: one axis has a leftover row, the other
    // none. candle derives the transposed convolution's output padding from the height only,
    // so the input gradient has the wrong width: `backward` errors on the shape mismatch.
    let kernel = uniform((3, 2, 3, 3), 0.5, 4)?;
    let bias = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
    let cfg = Conv2dConfig::new(2, 3, 3).stride(2).padding(1);
    for dims in [(1, 2, 7, 8), (1, 2, 8, 7)] {
        let x = uniform(dims, 1.0, 3)?;
        let xv = Var::from_tensor(&x)?;
        let out = xv.as_tensor().conv2d(&kernel, 1, 2, 1, 1)?;
        // The forward passes agree ...
        let ours = conv_over(cfg, &kernel, &bias)?.forward_t(&x, true)?;
        assert_close(&ours, &out, 1e-12, "forward");
        // ... candle's backward does not.
        let broken = match out.sum_all()?.backward() {
            Err(_) => true,
            Ok(grads) => grads.get(xv.as_tensor()).is_none_or(|g| g.dims() != x.dims()),
        };
        assert!(
            broken,
            "candle's conv2d backward now handles {dims:?} with stride 2: the reason for \
             backbone::ops::conv2d's own backward pass may be gone"
        );
        assert_grad_ok(&format!("ours on {dims:?}"), &x, 5, |x| {
            run(conv_over(cfg, &kernel, &bias), x, true)
        });
    }
    // With the same remainder on both axes candle's backward is right: the failure is the
    // unequal remainders, not stride 2 as such.
    let x = uniform((1, 2, 7, 9), 1.0, 6)?;
    let check = grad_check(&x, 7, |x| x.conv2d(&kernel, 1, 2, 1, 1))?;
    assert!(check.passes(FD_TOL), "{check:?}");
    Ok(())
}

#[test]
fn conv2d_rejects_bad_inputs_with_its_name_and_the_expected_shape() -> TestResult {
    let vb = fresh_vb(0);
    let conv = Conv2d::new(
        Conv2dConfig::new(3, 8, 5).stride(2).padding(1),
        vb.pp("features.0"),
    )?;
    assert_eq!(conv.name(), "features.0");
    assert_eq!(conv.weight().dims(), [8, 3, 5, 5]);
    let expected = "[N, 3, H>=3, W>=3]";
    for dims in [
        vec![1, 4, 9, 9],
        vec![1, 3, 2, 9],
        vec![1, 3, 9, 2],
        vec![3, 9, 9],
        vec![9, 9],
    ] {
        let x = Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu)?;
        let err = conv.forward_t(&x, false).expect_err("bad input must be refused");
        let message = err.to_string();
        match err {
            Error::InputShape {
                layer,
                expected: e,
                actual,
            } => {
                assert_eq!(layer, "features.0");
                assert_eq!(e, expected);
                assert_eq!(actual, dims);
            }
            other => panic!("{dims:?}: expected an input shape error, got {other:?}"),
        }
        assert!(
            message.contains("features.0") && message.contains(expected),
            "{message}"
        );
    }
    // The smallest accepted input.
    let x = Tensor::zeros((2, 3, 3, 3), DType::F32, &Device::Cpu)?;
    assert_eq!(conv.forward_t(&x, false)?.dims(), [2, 8, 1, 1]);
    // A rectangular kernel with its own padding per axis.
    let tall = Conv2d::new(
        Conv2dConfig::new(2, 2, 1).kernel_hw(7, 1).dilation(2),
        vb.pp("tall"),
    )?;
    let x = Tensor::zeros((1, 2, 12, 1), DType::F32, &Device::Cpu)?;
    match tall.forward_t(&x, false) {
        Err(Error::InputShape { layer, expected, .. }) => {
            assert_eq!(layer, "tall");
            assert_eq!(expected, "[N, 2, H>=13, W>=1]");
        }
        other => panic!("expected an input shape error, got {other:?}"),
    }
    let x = Tensor::zeros((1, 2, 13, 1), DType::F32, &Device::Cpu)?;
    assert_eq!(tall.forward_t(&x, false)?.dims(), [1, 2, 1, 1]);
    let wide = Conv2d::new(
        Conv2dConfig::new(2, 2, 1).kernel_hw(1, 7).padding_hw(0, 3),
        vb.pp("wide"),
    )?;
    let x = Tensor::zeros((1, 2, 1, 1), DType::F32, &Device::Cpu)?;
    assert_eq!(wide.forward_t(&x, false)?.dims(), [1, 2, 1, 1]);
    Ok(())
}

#[test]
fn conv2d_rejects_bad_configurations() {
    let bad = [
        Conv2dConfig::new(3, 4, 3).groups(2),   // groups do not divide in_channels
        Conv2dConfig::new(4, 3, 3).groups(2),   // nor out_channels
        Conv2dConfig::new(4, 4, 3).groups(0),   // no group
        Conv2dConfig::new(3, 4, 3).stride(0),   // zero stride
        Conv2dConfig::new(3, 4, 3).dilation(0), // zero dilation
        Conv2dConfig::new(3, 4, 0),             // empty kernel
        Conv2dConfig::new(3, 4, 3).kernel_hw(3, 0),
        Conv2dConfig::new(0, 4, 3),
        Conv2dConfig::new(3, 0, 3),
    ];
    for cfg in bad {
        match Conv2d::new(cfg, fresh_vb(0)) {
            Err(Error::Config(msg)) => assert!(msg.contains("conv2d"), "{msg}"),
            other => panic!(
                "{cfg:?}: expected a configuration error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}

#[test]
fn conv2d_fresh_weights_follow_pytorch_default_and_the_seed() -> TestResult {
    let cfg = Conv2dConfig::new(4, 6, 3).groups(2);
    let a = Conv2d::new(cfg, fresh_vb(3))?;
    let b = Conv2d::new(cfg, fresh_vb(3))?;
    let c = Conv2d::new(cfg, fresh_vb(4))?;
    assert_eq!(a.weight().dims(), [6, 2, 3, 3]);
    let bound = 1.0 / (2.0f64 * 9.0).sqrt();
    let values = to_f64_vec(a.weight());
    assert!(
        values.iter().all(|v| v.abs() <= bound),
        "weights beyond ±1/sqrt(fan_in)"
    );
    assert!(
        values.iter().any(|v| v.abs() > 0.8 * bound),
        "weights not spread to the bound"
    );
    let bias = to_f64_vec(a.bias().expect("bias"));
    assert!(bias.iter().all(|v| v.abs() <= bound));
    assert_close(a.weight(), b.weight(), 0.0, "same seed");
    assert_ne!(to_f64_vec(a.weight()), to_f64_vec(c.weight()), "another seed");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------------------------

#[test]
fn linear_matches_pytorch() -> TestResult {
    let fx = load_fixture("linear");
    let x = fixture_tensor(&fx, "input.x");
    let cases = fixture_case_names(&fx);
    assert_eq!(cases, ["l00", "l01"]);
    for case in &cases {
        let p = fixture_tensor(&fx, &format!("{case}.params")).to_vec1::<i64>()?;
        let (fin, fout, bias) = (p[0] as usize, p[1] as usize, p[2] != 0);
        let vb = var_builder(fixture_vars(&fx, case, DType::F32)?, DType::F32).pp(case);
        let init = candle_nn::Init::Const(0.0);
        let layer = Linear::with_init(fin, fout, bias, init, init, vb.clone())?;
        assert_eq!((layer.in_features(), layer.out_features()), (fin, fout));
        let weight = vb.get((fout, fin), "weight")?;
        let xv = Var::from_tensor(&x)?;
        let out = layer.forward_t(xv.as_tensor(), true)?;
        let grads = fixture_loss(&out)?.backward()?;
        let expect = |name: &str| fixture_tensor(&fx, &format!("{case}.{name}"));
        assert_close(&out, &expect("out"), FIXTURE_TOL, &format!("{case} output"));
        let gx = grad_of(&grads, xv.as_tensor(), case);
        assert_close(
            &gx,
            &expect("grad"),
            FIXTURE_TOL,
            &format!("{case} input gradient"),
        );
        let gw = grad_of(&grads, &weight, case);
        assert_close(
            &gw,
            &expect("grad_weight"),
            FIXTURE_TOL,
            &format!("{case} weight gradient"),
        );
        if bias {
            let b = vb.get(fout, "bias")?;
            let gb = grad_of(&grads, &b, case);
            assert_close(
                &gb,
                &expect("grad_bias"),
                FIXTURE_TOL,
                &format!("{case} bias gradient"),
            );
        }
        assert_close(&layer.forward_t(&x, false)?, &out, 0.0, "eval");
    }
    Ok(())
}

#[test]
fn linear_gradients_match_finite_differences() -> TestResult {
    let x = uniform((4, 7), 1.0, 1)?;
    let weight = uniform((5, 7), 0.5, 2)?;
    let bias = uniform(5, 0.5, 3)?;
    let linear = |w: &Tensor, b: &Tensor| {
        let map = HashMap::from([
            ("fc.weight".to_string(), w.clone()),
            ("fc.bias".to_string(), b.clone()),
        ]);
        Linear::new(7, 5, var_builder(map, DType::F64).pp("fc"))
    };
    assert_grad_ok("input", &x, 1, |x| run(linear(&weight, &bias), x, true));
    assert_grad_ok("weight", &weight, 2, |w| run(linear(w, &bias), &x, true));
    assert_grad_ok("bias", &bias, 3, |b| run(linear(&weight, b), &x, true));
    Ok(())
}

#[test]
fn linear_rejects_wrong_inputs_and_configurations() -> TestResult {
    let layer = Linear::new(7, 3, fresh_vb(0).pp("classifier.6"))?;
    for dims in [vec![5, 6], vec![5, 8], vec![2, 3, 7], vec![7]] {
        let x = Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu)?;
        let err = layer.forward_t(&x, true).expect_err("wrong width");
        let message = err.to_string();
        match err {
            Error::InputShape {
                layer,
                expected,
                actual,
            } => {
                assert_eq!(layer, "classifier.6");
                assert_eq!(expected, "[N, 7]");
                assert_eq!(actual, dims);
            }
            other => panic!("{dims:?}: expected an input shape error, got {other:?}"),
        }
        assert!(
            message.contains("classifier.6") && message.contains("[N, 7]"),
            "{message}"
        );
    }
    let x = Tensor::zeros((5, 7), DType::F32, &Device::Cpu)?;
    assert_eq!(layer.forward_t(&x, true)?.dims(), [5, 3]);
    assert!(matches!(Linear::new(0, 3, fresh_vb(0)), Err(Error::Config(_))));
    assert!(matches!(Linear::new(3, 0, fresh_vb(0)), Err(Error::Config(_))));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// BatchNorm2d
// ---------------------------------------------------------------------------------------------

/// A batch norm layer over the fixture's `<prefix>.*` tensors, as variables.
fn bn_from_fixture(
    fx: &HashMap<String, Tensor>,
    prefix: &str,
    config: BatchNormConfig,
    dtype: DType,
) -> backbone::Result<BatchNorm2d> {
    let vb = var_builder(fixture_vars(fx, prefix, dtype)?, dtype).pp(prefix);
    BatchNorm2d::new(
        fixture_tensor(fx, &format!("{prefix}.weight")).dim(0)?,
        config,
        vb,
    )
}

#[test]
fn batch_norm_train_matches_pytorch_and_updates_running_stats() -> TestResult {
    let fx = load_fixture("batch_norm");
    let e = |k: &str| fixture_tensor(&fx, k);
    let bn = bn_from_fixture(&fx, "bn", BatchNormConfig::default(), DType::F32)?;
    assert_close(
        bn.running_mean(),
        &e("bn.running_mean"),
        0.0,
        "loaded running mean",
    );

    let x1 = Var::from_tensor(&e("input.x1"))?;
    let out = bn.forward_t(x1.as_tensor(), true)?;
    let grads = fixture_loss(&out)?.backward()?;
    assert_close(&out, &e("train.out1"), FIXTURE_TOL, "first pass output");
    let gx = grad_of(&grads, x1.as_tensor(), "input");
    assert_close(&gx, &e("train.grad1"), FIXTURE_TOL, "input gradient");
    let gw = grad_of(&grads, bn.weight().expect("affine"), "weight");
    assert_close(&gw, &e("train.grad_weight1"), FIXTURE_TOL, "weight gradient");
    let gb = grad_of(&grads, bn.bias().expect("affine"), "bias");
    assert_close(&gb, &e("train.grad_bias1"), FIXTURE_TOL, "bias gradient");
    assert_close(
        bn.running_mean(),
        &e("train.running_mean1"),
        FIXTURE_TOL,
        "running mean, pass 1",
    );
    assert_close(
        bn.running_var(),
        &e("train.running_var1"),
        FIXTURE_TOL,
        "running var, pass 1",
    );

    let out = bn.forward_t(&e("input.x2"), true)?;
    assert_close(&out, &e("train.out2"), FIXTURE_TOL, "second pass output");
    assert_close(
        bn.running_mean(),
        &e("train.running_mean2"),
        FIXTURE_TOL,
        "running mean, pass 2",
    );
    assert_close(
        bn.running_var(),
        &e("train.running_var2"),
        FIXTURE_TOL,
        "running var, pass 2",
    );
    Ok(())
}

#[test]
fn batch_norm_eval_uses_the_running_stats() -> TestResult {
    let fx = load_fixture("batch_norm");
    let e = |k: &str| fixture_tensor(&fx, k);
    let bn = bn_from_fixture(&fx, "bn", BatchNormConfig::default(), DType::F32)?;
    let x1 = Var::from_tensor(&e("input.x1"))?;
    let out = bn.forward_t(x1.as_tensor(), false)?;
    let grads = fixture_loss(&out)?.backward()?;
    assert_close(&out, &e("eval.out"), FIXTURE_TOL, "eval output");
    let gx = grad_of(&grads, x1.as_tensor(), "input");
    assert_close(&gx, &e("eval.grad"), FIXTURE_TOL, "eval input gradient");
    // Eval mode leaves the running statistics alone.
    assert_close(
        bn.running_mean(),
        &e("bn.running_mean"),
        0.0,
        "running mean after eval",
    );
    assert_close(
        bn.running_var(),
        &e("bn.running_var"),
        0.0,
        "running var after eval",
    );

    // After a training pass, eval mode reads the updated statistics: it agrees with a layer
    // loaded with PyTorch's statistics after that pass.
    bn.forward_t(x1.as_tensor(), true)?;
    let mut updated = fx.clone();
    updated.insert("bn.running_mean".into(), e("train.running_mean1"));
    updated.insert("bn.running_var".into(), e("train.running_var1"));
    let reference = bn_from_fixture(&updated, "bn", BatchNormConfig::default(), DType::F32)?;
    let x2 = e("input.x2");
    assert_close(
        &bn.forward_t(&x2, false)?,
        &reference.forward_t(&x2, false)?,
        FIXTURE_TOL,
        "eval after training",
    );
    Ok(())
}

#[test]
fn batch_norm_eps_1e_3_matches_pytorch() -> TestResult {
    let fx = load_fixture("batch_norm");
    let e = |k: &str| fixture_tensor(&fx, k);
    let config = BatchNormConfig::with_eps(1e-3);
    assert_eq!(config.momentum, 0.1);
    assert!(config.affine);
    let bn = bn_from_fixture(&fx, "bn", config, DType::F32)?;
    assert_close(
        &bn.forward_t(&e("input.x1"), false)?,
        &e("eps3.eval_out"),
        FIXTURE_TOL,
        "eval",
    );
    let out = bn.forward_t(&e("input.x1"), true)?;
    assert_close(&out, &e("eps3.train_out"), FIXTURE_TOL, "train");
    assert_close(
        bn.running_mean(),
        &e("eps3.running_mean"),
        FIXTURE_TOL,
        "running mean",
    );
    assert_close(
        bn.running_var(),
        &e("eps3.running_var"),
        FIXTURE_TOL,
        "running var",
    );
    // eps matters above the tolerance: the default eps gives another output.
    let default = bn_from_fixture(&fx, "bn", BatchNormConfig::default(), DType::F32)?;
    let d = (default.forward_t(&e("input.x1"), false)? - e("eps3.eval_out"))?;
    assert!(d.abs()?.max_all()?.to_scalar::<f32>()? > 1e-4);
    Ok(())
}

#[test]
fn batch_norm_1d_matches_pytorch() -> TestResult {
    let fx = load_fixture("batch_norm");
    let e = |k: &str| fixture_tensor(&fx, k);
    let bn = bn_from_fixture(&fx, "bn1d", BatchNormConfig::default(), DType::F32)?;
    let v = e("input.v");
    assert_eq!(v.dims(), [6, 4]);
    assert_close(
        &bn.forward_t(&v, false)?,
        &e("bn1d.eval_out"),
        FIXTURE_TOL,
        "eval",
    );
    let vv = Var::from_tensor(&v)?;
    let out = bn.forward_t(vv.as_tensor(), true)?;
    let grads = fixture_loss(&out)?.backward()?;
    assert_close(&out, &e("bn1d.train_out"), FIXTURE_TOL, "train");
    let g = grad_of(&grads, vv.as_tensor(), "input");
    assert_close(&g, &e("bn1d.train_grad"), FIXTURE_TOL, "input gradient");
    assert_close(
        bn.running_mean(),
        &e("bn1d.running_mean1"),
        FIXTURE_TOL,
        "running mean",
    );
    assert_close(
        bn.running_var(),
        &e("bn1d.running_var1"),
        FIXTURE_TOL,
        "running var",
    );
    Ok(())
}

#[test]
fn batch_norm_input_gradients_match_finite_differences() -> TestResult {
    let fx = load_fixture("batch_norm");
    for (prefix, x) in [
        ("bn", fixture_tensor(&fx, "input.x1").to_dtype(DType::F64)?),
        ("bn1d", fixture_tensor(&fx, "input.v").to_dtype(DType::F64)?),
    ] {
        for affine in [true, false] {
            let config = BatchNormConfig {
                affine,
                ..BatchNormConfig::default()
            };
            let bn = bn_from_fixture(&fx, prefix, config, DType::F64)?;
            for train in [true, false] {
                let what = format!("{prefix} affine {affine} train {train}");
                assert_grad_ok(&what, &x, 3, |x| wrap(bn.forward_t(x, train)));
            }
        }
    }
    Ok(())
}

#[test]
fn batch_norm_needs_more_than_one_value_per_channel_in_training() -> TestResult {
    let bn = BatchNorm2d::new(4, BatchNormConfig::default(), fresh_vb(0).pp("bn1"))?;
    for dims in [vec![1, 4], vec![1, 4, 1, 1]] {
        let x = uniform(dims.as_slice(), 1.0, 1)?.to_dtype(DType::F32)?;
        match bn.forward_t(&x, true) {
            Err(Error::InputShape { layer, actual, .. }) => {
                assert_eq!(layer, "bn1");
                assert_eq!(actual, dims);
            }
            other => panic!("{dims:?}: expected an input shape error, got {other:?}"),
        }
        // Nothing was updated, and eval mode accepts a single value.
        assert_eq!(to_f64_vec(bn.running_mean()), [0.0; 4]);
        assert_eq!(to_f64_vec(bn.running_var()), [1.0; 4]);
        assert_eq!(bn.forward_t(&x, false)?.dims(), dims.as_slice());
    }
    // Two values per channel are enough.
    for dims in [[2, 4, 1, 1], [1, 4, 1, 2]] {
        let x = uniform(&dims[..], 1.0, 2)?.to_dtype(DType::F32)?;
        assert_eq!(bn.forward_t(&x, true)?.dims(), dims);
    }
    Ok(())
}

#[test]
fn batch_norm_rejects_wrong_inputs_and_configurations() -> TestResult {
    let bn = BatchNorm2d::new(4, BatchNormConfig::default(), fresh_vb(0).pp("layer1.0.bn1"))?;
    for dims in [vec![2, 5, 3, 3], vec![2, 3], vec![2, 4, 3], vec![4]] {
        let x = Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu)?;
        for train in [true, false] {
            match bn.forward_t(&x, train) {
                Err(e @ Error::InputShape { .. }) => {
                    assert!(e.to_string().contains("layer1.0.bn1"), "{e}");
                }
                other => panic!("{dims:?}: expected an input shape error, got {other:?}"),
            }
        }
    }
    let bad = [
        (0, BatchNormConfig::default()),
        (4, BatchNormConfig::with_eps(-1e-5)),
        (
            4,
            BatchNormConfig {
                momentum: 1.5,
                ..BatchNormConfig::default()
            },
        ),
        (
            4,
            BatchNormConfig {
                momentum: -0.1,
                ..BatchNormConfig::default()
            },
        ),
    ];
    for (n, config) in bad {
        assert!(
            matches!(BatchNorm2d::new(n, config, fresh_vb(0)), Err(Error::Config(_))),
            "{n} {config:?}"
        );
    }
    Ok(())
}

#[test]
fn batch_norm_running_stats_live_in_the_var_map() -> TestResult {
    let fx = load_fixture("batch_norm");
    let x = fixture_tensor(&fx, "input.x1");
    let varmap = SeededVarMap::new(5);
    let vb = varmap.var_builder(DType::F32, &Device::Cpu);
    let bn = BatchNorm2d::new(4, BatchNormConfig::default(), vb.pp("bn"))?;
    let stored = |name: &str| -> Tensor {
        let data = varmap.varmap().data().lock().unwrap_or_else(|e| e.into_inner());
        match data.get(name) {
            Some(var) => var.as_tensor().copy().expect("copy"),
            None => panic!("`{name}` is not in the var map"),
        }
    };
    assert_eq!(to_f64_vec(&stored("bn.running_mean")), [0.0; 4]);
    assert_eq!(to_f64_vec(&stored("bn.running_var")), [1.0; 4]);

    // Eval mode changes nothing.
    bn.forward_t(&x, false)?;
    assert_eq!(to_f64_vec(&stored("bn.running_mean")), [0.0; 4]);

    // A training pass updates the variables of the map in place, with momentum 0.1 and the
    // unbiased batch variance.
    bn.forward_t(&x, true)?;
    let count = (3 * 5 * 7) as f64;
    let mean = x.mean_keepdim((0, 2, 3))?;
    let var = (x.broadcast_sub(&mean)?.sqr()?.sum_keepdim((0, 2, 3))? / (count - 1.0))?;
    let expected_mean = (mean.flatten_all()? * 0.1)?;
    let expected_var = ((var.flatten_all()? * 0.1)? + 0.9)?;
    assert_close(
        &stored("bn.running_mean"),
        &expected_mean,
        1e-5,
        "running mean in the map",
    );
    assert_close(
        &stored("bn.running_var"),
        &expected_var,
        1e-5,
        "running var in the map",
    );
    assert_close(&stored("bn.running_mean"), bn.running_mean(), 0.0, "shared mean");
    assert_close(&stored("bn.running_var"), bn.running_var(), 0.0, "shared var");
    assert!(
        to_f64_vec(&expected_mean).iter().all(|m| m.abs() > 1e-3),
        "a meaningful update"
    );

    // A layer rebuilt from the same map (a checkpoint save, a second forward path) sees them.
    let again = BatchNorm2d::new(4, BatchNormConfig::default(), vb.pp("bn"))?;
    assert_close(again.running_mean(), &expected_mean, 1e-5, "rebuilt layer");

    // The optimizer gets the affine parameters only.
    let names: Vec<String> = init::trainable_vars(varmap.varmap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["bn.bias", "bn.weight"]);
    assert_eq!(varmap.varmap().all_vars().len(), 4);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ConvBlock
// ---------------------------------------------------------------------------------------------

#[test]
fn conv_block_matches_pytorch_conv_bn_relu() -> TestResult {
    let fx = load_fixture("conv_block");
    let e = |k: &str| fixture_tensor(&fx, k);
    let vb = var_builder(fixture_vars(&fx, "block", DType::F32)?, DType::F32).pp("block");
    let conv = Conv2d::new(
        Conv2dConfig::new(3, 4, 3).stride(2).padding(1).no_bias(),
        vb.pp("conv"),
    )?;
    let bn = BatchNorm2d::new(4, BatchNormConfig::with_eps(1e-3), vb.pp("bn"))?;
    // A clone shares the running statistics (they are variables).
    let probe = bn.clone();
    let block = ConvBlock::new(conv, Some(bn), Some(Activation::Relu));
    assert_eq!(block.conv().name(), "block.conv");
    let x = Var::from_tensor(&e("input.x"))?;

    let out = block.forward_t(x.as_tensor(), false)?;
    let grads = fixture_loss(&out)?.backward()?;
    assert_close(&out, &e("eval.out"), FIXTURE_TOL, "eval output");
    let g = grad_of(&grads, x.as_tensor(), "input");
    assert_close(&g, &e("eval.grad"), FIXTURE_TOL, "eval input gradient");

    let out = block.forward_t(x.as_tensor(), true)?;
    let grads = fixture_loss(&out)?.backward()?;
    assert_close(&out, &e("train.out"), FIXTURE_TOL, "train output");
    let g = grad_of(&grads, x.as_tensor(), "input");
    assert_close(&g, &e("train.grad"), FIXTURE_TOL, "train input gradient");
    assert_close(
        probe.running_mean(),
        &e("train.running_mean"),
        FIXTURE_TOL,
        "running mean",
    );
    assert_close(
        probe.running_var(),
        &e("train.running_var"),
        FIXTURE_TOL,
        "running var",
    );
    // The ReLU is applied: zeros appear and nothing is negative.
    let values = to_f64_vec(&out);
    assert!(values.iter().all(|v| *v >= 0.0) && values.contains(&0.0));

    // Without norm and activation the block is its convolution.
    let conv = Conv2d::new(
        Conv2dConfig::new(3, 4, 3).stride(2).padding(1).no_bias(),
        vb.pp("conv"),
    )?;
    let plain = ConvBlock::new(conv.clone(), None, None);
    assert_close(
        &plain.forward_t(x.as_tensor(), true)?,
        &conv.forward_t(x.as_tensor(), true)?,
        0.0,
        "plain",
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Dropout
// ---------------------------------------------------------------------------------------------

#[test]
fn dropout_eval_is_identity() -> TestResult {
    let _rng = rng_lock();
    let x = uniform((4, 5, 6), 1.0, 1)?.to_dtype(DType::F32)?;
    for p in [0.0, 0.3, 0.9] {
        let d = Dropout::new(p)?;
        assert_eq!(d.p(), p);
        assert_close(&d.forward_t(&x, false)?, &x, 0.0, "eval");
    }
    // p = 0 is the identity in training too.
    assert_close(&Dropout::new(0.0)?.forward_t(&x, true)?, &x, 0.0, "p = 0");
    Ok(())
}

#[test]
fn dropout_train_zeroes_about_p_and_scales_the_rest() -> TestResult {
    let _rng = rng_lock();
    init::seed(1234);
    let n = 200_000;
    // Values in [1, 3): a zero in the output can only come from the mask.
    let x = (uniform(n, 1.0, 9)? + 2.0)?;
    for (p, dtype) in [(0.1f32, DType::F32), (0.5, DType::F64), (0.8, DType::F32)] {
        let xd = x.to_dtype(dtype)?;
        let out = Dropout::new(p)?.forward_t(&xd, true)?;
        assert_eq!(out.dtype(), dtype);
        assert_eq!(out.dims(), [n]);
        let (xs, ys) = (to_f64_vec(&xd), to_f64_vec(&out));
        let dropped = ys.iter().filter(|v| **v == 0.0).count() as f64 / n as f64;
        let p = p as f64;
        let sigma = (p * (1.0 - p) / n as f64).sqrt();
        assert!((dropped - p).abs() < 5.0 * sigma, "p {p}: dropped {dropped}");
        for (x, y) in xs.iter().zip(&ys) {
            if *y != 0.0 {
                let kept = x / (1.0 - p);
                assert!(
                    (y - kept).abs() <= 1e-6 * kept,
                    "p {p}: {x} -> {y}, expected {kept}"
                );
            }
        }
        // The expectation is preserved.
        let (mx, my) = (
            xs.iter().sum::<f64>() / n as f64,
            ys.iter().sum::<f64>() / n as f64,
        );
        assert!((my / mx - 1.0).abs() < 0.02, "p {p}: mean {my} vs {mx}");
    }
    Ok(())
}

#[test]
fn dropout_masks_are_reproducible_after_seed() -> TestResult {
    let _rng = rng_lock();
    let x = Tensor::ones((8, 64), DType::F32, &Device::Cpu)?;
    let d = Dropout::new(0.5)?;
    init::seed(7);
    let a = to_f64_vec(&d.forward_t(&x, true)?);
    let b = to_f64_vec(&d.forward_t(&x, true)?);
    assert_ne!(a, b, "consecutive masks must differ");
    init::seed(7);
    assert_eq!(to_f64_vec(&d.forward_t(&x, true)?), a, "same seed, same mask");
    assert_eq!(to_f64_vec(&d.forward_t(&x, true)?), b, "same seed, same sequence");
    init::seed(8);
    assert_ne!(
        to_f64_vec(&d.forward_t(&x, true)?),
        a,
        "another seed, another mask"
    );
    Ok(())
}

#[test]
fn dropout_rejects_p_out_of_range() {
    for p in [-0.1f32, 1.0, 1.5, f32::NAN, f32::INFINITY] {
        assert!(matches!(Dropout::new(p), Err(Error::Config(_))), "p = {p}");
    }
    for p in [0.0f32, 0.5, 0.999] {
        assert!(Dropout::new(p).is_ok(), "p = {p}");
    }
}

// ---------------------------------------------------------------------------------------------
// Activation, Flatten, Sequential
// ---------------------------------------------------------------------------------------------

#[test]
fn activations_match_their_formulas() -> TestResult {
    let mut values: Vec<f64> = (0..81).map(|i| -10.0 + 0.25 * i as f64).collect();
    values.extend([-1e-3, 0.0, 1e-3, 5.999, 6.0, 6.001, 30.0, -30.0]);
    let x = Tensor::from_vec(values.clone(), values.len(), &Device::Cpu)?.reshape((1, values.len(), 1, 1))?;
    type Formula = (Activation, fn(f64) -> f64);
    let formulas: [Formula; 7] = [
        (Activation::Relu, |v| v.max(0.0)),
        (Activation::Relu6, |v| v.clamp(0.0, 6.0)),
        (Activation::Tanh, f64::tanh),
        (Activation::Sigmoid, |v| 1.0 / (1.0 + (-v).exp())),
        (Activation::Silu, |v| v / (1.0 + (-v).exp())),
        (Activation::HardSwish, |v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0),
        (Activation::HardSigmoid, |v| (v + 3.0).clamp(0.0, 6.0) / 6.0),
    ];
    for (act, f) in formulas {
        let expected: Vec<f64> = values.iter().map(|v| f(*v)).collect();
        let expected = Tensor::from_vec(expected, x.shape(), &Device::Cpu)?;
        for train in [true, false] {
            assert_close(
                &act.forward_t(&x, train)?,
                &expected,
                1e-12,
                &format!("{act:?} f64"),
            );
            let y = act.forward_t(&x.to_dtype(DType::F32)?, train)?;
            assert_eq!(y.dtype(), DType::F32);
            assert_close(&y, &expected, 1e-6, &format!("{act:?} f32"));
        }
    }
    // Gradients on -2..6, away from the kinks of relu and relu6.
    let x = (uniform((2, 3, 4, 5), 4.0, 3)? + 2.0)?;
    let away: Vec<f64> = to_f64_vec(&x)
        .into_iter()
        .map(|v| {
            if v.abs() < 0.01 || (v - 6.0).abs() < 0.01 {
                v - 0.05
            } else {
                v
            }
        })
        .collect();
    let x = Tensor::from_vec(away, x.shape(), &Device::Cpu)?;
    for act in [
        Activation::Relu,
        Activation::Relu6,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Silu,
    ] {
        assert_grad_ok(&format!("{act:?}"), &x, 4, |x| wrap(act.forward_t(x, true)));
    }
    Ok(())
}

/// Hard-swish and hard-sigmoid against `F.hardswish` / `F.hardsigmoid`
/// (`scripts/gen_layer_fixtures.py`): the input holds -3 and 3 exactly and an ulp either side,
/// where PyTorch's backward takes both boundaries as outside the linear part (hard-swish's
/// gradient 0 at -3 and 1 at 3, hard-sigmoid's 0 at both). Then finite differences in f64 on
/// -8..8 away from the kinks.
#[test]
fn hard_activations_match_pytorch_at_and_around_the_kinks() -> TestResult {
    let t = load_fixture("hard_activations");
    let x = fixture_tensor(&t, "input.x");
    for (name, act) in [
        ("hardswish", Activation::HardSwish),
        ("hardsigmoid", Activation::HardSigmoid),
    ] {
        let var = Var::from_tensor(&x)?;
        let y = act.forward_t(var.as_tensor(), true)?;
        assert_close(&y, &fixture_tensor(&t, &format!("{name}.out")), 1e-6, name);
        let grads = fixture_loss(&y)?.backward()?;
        let grad = grads.get(var.as_tensor()).expect("a gradient");
        // Exact: the gradients are multiples of 1/6 and 1/3 scaled by the fixture weights.
        assert_close(grad, &fixture_tensor(&t, &format!("{name}.grad")), 1e-6, name);
        // Where no gradient can be asked (an input that tracks none, inference mode) the
        // clamp is taken instead of the masks: the same values, bit for bit.
        let plain = act.forward_t(&x, true)?;
        let inference = backbone::inference_mode(|| act.forward_t(var.as_tensor(), false))?;
        assert_eq!(to_f64_vec(&plain), to_f64_vec(&y), "{name}: plain input");
        assert_eq!(to_f64_vec(&inference), to_f64_vec(&y), "{name}: inference mode");
    }
    let x = uniform((2, 3, 4, 5), 8.0, 5)?;
    let away: Vec<f64> = to_f64_vec(&x)
        .into_iter()
        .map(|v| if (v.abs() - 3.0).abs() < 0.05 { v * 0.9 } else { v })
        .collect();
    let x = Tensor::from_vec(away, x.shape(), &Device::Cpu)?;
    for act in [Activation::HardSwish, Activation::HardSigmoid] {
        assert_grad_ok(&format!("{act:?}"), &x, 6, |x| wrap(act.forward_t(x, true)));
    }
    Ok(())
}

#[test]
fn flatten_keeps_the_batch_dimension() -> TestResult {
    let f = Flatten::new();
    assert_eq!(f, Flatten::default());
    for (dims, expected) in [
        (vec![2, 3, 4, 5], vec![2, 60]),
        (vec![2, 3, 4], vec![2, 12]),
        (vec![2, 3], vec![2, 3]),
        (vec![0, 3, 4, 5], vec![0, 60]),
        (vec![1, 1, 1, 1], vec![1, 1]),
    ] {
        let x = uniform(dims.as_slice(), 1.0, 1)?;
        let y = f.forward_t(&x, true)?;
        assert_eq!(y.dims(), expected.as_slice(), "{dims:?}");
        assert_eq!(to_f64_vec(&y), to_f64_vec(&x), "row-major order");
    }
    // A non-contiguous input is flattened in its logical order.
    let x = uniform((2, 3, 4), 1.0, 2)?.transpose(1, 2)?;
    let y = f.forward_t(&x, false)?;
    assert_eq!(to_f64_vec(&y), to_f64_vec(&x.contiguous()?));
    for dims in [vec![5], vec![]] {
        let x = Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu)?;
        match f.forward_t(&x, true) {
            Err(Error::InputShape { layer, actual, .. }) => {
                assert_eq!(layer, "flatten");
                assert_eq!(actual, dims);
            }
            other => panic!("{dims:?}: expected an input shape error, got {other:?}"),
        }
    }
    Ok(())
}

/// A layer that records the train flag it receives and passes its input on.
struct Spy(Arc<Mutex<Vec<bool>>>);

impl Layer for Spy {
    fn forward_t(&self, xs: &Tensor, train: bool) -> backbone::Result<Tensor> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(train);
        Ok(xs.clone())
    }
}

#[test]
fn sequential_passes_the_train_flag_to_every_layer() -> TestResult {
    let _rng = rng_lock();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seq = Sequential::new()
        .with(Spy(seen.clone()))
        .with(Dropout::new(0.5)?)
        .with(Spy(seen.clone()));
    assert_eq!(seq.len(), 3);
    assert!(!seq.is_empty());
    let x = Tensor::ones((16, 32), DType::F32, &Device::Cpu)?;

    assert_close(&seq.forward_t(&x, false)?, &x, 0.0, "eval");
    assert_eq!(*seen.lock().unwrap_or_else(|e| e.into_inner()), [false, false]);

    let y = to_f64_vec(&seq.forward_t(&x, true)?);
    assert_eq!(
        *seen.lock().unwrap_or_else(|e| e.into_inner()),
        [false, false, true, true]
    );
    let zeros = y.iter().filter(|v| **v == 0.0).count();
    assert!((156..=356).contains(&zeros), "{zeros} of 512 dropped");
    assert!(y.iter().all(|v| *v == 0.0 || *v == 2.0));

    // Two dropouts in a row drop about 75%.
    let twice = Sequential::new()
        .with(Dropout::new(0.5)?)
        .with(Dropout::new(0.5)?);
    assert_close(&twice.forward_t(&x, false)?, &x, 0.0, "eval");
    let y = to_f64_vec(&twice.forward_t(&x, true)?);
    let zeros = y.iter().filter(|v| **v == 0.0).count();
    assert!((334..=434).contains(&zeros), "{zeros} of 512 dropped");
    assert!(y.iter().all(|v| *v == 0.0 || *v == 4.0));

    // An empty container is the identity.
    let empty = Sequential::new();
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    assert_close(&empty.forward_t(&x, true)?, &x, 0.0, "empty");
    Ok(())
}

#[test]
fn sequential_runs_layers_in_order() -> TestResult {
    let fx = load_fixture("linear");
    let vb = var_builder(fixture_vars(&fx, "l00", DType::F32)?, DType::F32).pp("l00");
    let mut seq = Sequential::new();
    seq.push(Linear::new(7, 3, vb)?);
    seq.push(Activation::Relu);
    let out = seq.forward_t(&fixture_tensor(&fx, "input.x"), true)?;
    assert_close(
        &out,
        &fixture_tensor(&fx, "l00.out").relu()?,
        FIXTURE_TOL,
        "linear then relu",
    );

    // A small model: conv, batch norm, relu, flatten, linear.
    let vb = fresh_vb(9);
    let model = Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(3, 4, 3).stride(2), vb.pp("0"))?)
        .with(BatchNorm2d::new(4, BatchNormConfig::default(), vb.pp("1"))?)
        .with(Activation::Relu)
        .with(Flatten::new())
        .with(Linear::new(4 * 3 * 4, 10, vb.pp("4"))?);
    let x = uniform((2, 3, 7, 9), 1.0, 3)?.to_dtype(DType::F32)?;
    assert_eq!(model.forward_t(&x, true)?.dims(), [2, 10]);
    assert_eq!(model.forward_t(&x, false)?.dims(), [2, 10]);
    // A layer's error comes out unchanged, naming the layer.
    let bad = Tensor::zeros((2, 2, 7, 9), DType::F32, &Device::Cpu)?;
    match model.forward_t(&bad, false) {
        Err(Error::InputShape { layer, .. }) => assert_eq!(layer, "0"),
        other => panic!(
            "expected an input shape error, got {:?}",
            other.map(|t| t.dims().to_vec())
        ),
    }
    Ok(())
}

/// PyTorch's ReLU gradient is 0 where the input is exactly 0 (candle's own `relu` gives 1).
#[test]
fn relu_gradient_is_zero_at_zero_like_pytorch() {
    let x = candle_core::Var::from_tensor(&Tensor::new(&[-1.0f32, 0.0, 2.0, 0.0], &Device::Cpu).unwrap())
        .unwrap();
    let y = Activation::Relu.forward_t(x.as_tensor(), true).unwrap();
    assert_eq!(
        y.to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.abs())
            .collect::<Vec<_>>(),
        [0.0, 0.0, 2.0, 0.0]
    );
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
        [0.0, 0.0, 1.0, 0.0]
    );
}
