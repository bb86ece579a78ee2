//! Eval-mode fusion in `ConvBlock`: the batch norm (and a ReLU) folded into the convolution
//! (`ops::conv2d_cpu_fused`) against the layers run one after the other
//! (`ConvBlock::forward_unfolded`), over groups, strides, paddings, dilations, rectangular
//! kernels, with and without a convolution bias, in f32 and f64; when folding applies (nothing
//! tracks a gradient, or inference mode) and when it does not (gradients exactly as before);
//! coefficients that follow the variables; summaries; and the fused batch norm + ReLU op
//! (`ops::batch_norm_eval_relu`) against batch norm then ReLU, with finite differences.

use crate::common;

use backbone::init::SeededVarMap;
use backbone::layers::{Activation, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Layer};
use backbone::ops::{
    batch_norm_eval, batch_norm_eval_relu, conv2d_cpu_fused, relu, ConvEpilogue, ConvParams,
};
use backbone::{inference_mode, summary};
use candle_core::{DType, Device, Result, Tensor, Var};
use common::{assert_close, assert_grad_ok, to_f64_vec, uniform, var_builder, TestResult};
use std::collections::HashMap;

fn wrap<T>(r: backbone::Result<T>) -> Result<T> {
    r.map_err(candle_core::Error::wrap)
}

/// Convolution configurations: (config, input shape).
fn cases() -> Vec<(Conv2dConfig, [usize; 4])> {
    vec![
        (Conv2dConfig::new(3, 8, 3).padding(1).no_bias(), [2, 3, 9, 11]),
        (Conv2dConfig::new(3, 8, 3).padding(1), [1, 3, 9, 11]),
        (
            Conv2dConfig::new(4, 6, 3).stride(2).padding(1).groups(2),
            [3, 4, 13, 10],
        ),
        (Conv2dConfig::new(5, 7, 1).no_bias(), [2, 5, 6, 6]),
        (Conv2dConfig::new(6, 4, 1).stride(2), [2, 6, 7, 9]),
        (
            Conv2dConfig::new(3, 5, 7).stride(2).padding(3).no_bias(),
            [2, 3, 17, 15],
        ),
        (
            Conv2dConfig::new(4, 4, 3).dilation(2).padding(2).groups(4),
            [2, 4, 8, 8],
        ),
        (
            Conv2dConfig::new(4, 6, 3).kernel_hw(1, 7).padding_hw(0, 3),
            [2, 4, 9, 12],
        ),
        (Conv2dConfig::new(8, 16, 3).padding(1).no_bias(), [4, 8, 40, 40]),
        (Conv2dConfig::new(3, 4, 3).padding(1), [1, 3, 150, 150]),
    ]
}

/// Seeded tensors of a convolution and its batch norm, with running statistics far from
/// the defaults (mean in [-1, 1), variance in [0.2, 2.2)), under `block.conv` / `block.bn`.
fn tensors(cfg: &Conv2dConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let c = cfg.out_channels;
    let w = (
        cfg.out_channels,
        cfg.in_channels / cfg.groups,
        cfg.kernel.0,
        cfg.kernel.1,
    );
    let mut t = HashMap::from([
        ("block.conv.weight".to_string(), uniform(w, 0.5, seed)?),
        ("block.bn.weight".to_string(), (uniform(c, 0.5, seed + 1)? + 1.0)?),
        ("block.bn.bias".to_string(), uniform(c, 1.0, seed + 2)?),
        ("block.bn.running_mean".to_string(), uniform(c, 1.0, seed + 3)?),
        (
            "block.bn.running_var".to_string(),
            (uniform(c, 1.0, seed + 4)? + 1.2)?,
        ),
    ]);
    if cfg.bias {
        t.insert("block.conv.bias".into(), uniform(c, 0.5, seed + 5)?);
    }
    Ok(t)
}

/// A block over `tensors` in `dtype`; as variables (tracking gradients) with `vars`.
fn block(
    cfg: Conv2dConfig,
    tensors: &HashMap<String, Tensor>,
    dtype: DType,
    vars: bool,
    act: Option<Activation>,
) -> Result<ConvBlock> {
    let mut map = HashMap::new();
    for (k, t) in tensors {
        let t = t.to_dtype(dtype)?;
        let t = if vars {
            Var::from_tensor(&t)?.as_tensor().clone()
        } else {
            t
        };
        map.insert(k.clone(), t);
    }
    let vb = var_builder(map, dtype).pp("block");
    let conv = wrap(Conv2d::new(cfg, vb.pp("conv")))?;
    let bn = wrap(BatchNorm2d::new(
        cfg.out_channels,
        BatchNormConfig::default(),
        vb.pp("bn"),
    ))?;
    Ok(ConvBlock::new(conv, Some(bn), act))
}

fn tol(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        1e-5
    }
}

const ACTIVATIONS: [Option<Activation>; 3] = [None, Some(Activation::Relu), Some(Activation::Silu)];

#[test]
fn folded_matches_unfolded() -> TestResult {
    for (i, (cfg, shape)) in cases().into_iter().enumerate() {
        let t = tensors(&cfg, 10 * i as u64)?;
        let x64 = uniform(&shape[..], 2.0, 10 * i as u64 + 7)?;
        for dtype in [DType::F64, DType::F32] {
            let x = x64.to_dtype(dtype)?;
            for act in ACTIVATIONS {
                let what = format!("{cfg:?} {shape:?} {dtype:?} {act:?}");
                // Plain tensors: nothing tracks a gradient, the block folds.
                let plain = block(cfg, &t, dtype, false, act)?;
                let folded = wrap(plain.forward_t(&x, false))?;
                let unfolded = wrap(plain.forward_unfolded(&x, false))?;
                assert_eq!(folded.dtype(), dtype);
                assert_close(&folded, &unfolded, tol(dtype), &what);
                // The epilogue repeats the unfolded arithmetic: the same bits.
                assert_close(&folded, &unfolded, 0.0, &format!("{what} (bits)"));
                // Variables in inference mode fold too (the output then tracks nothing).
                let vars = block(cfg, &t, dtype, true, act)?;
                let xv = Var::from_tensor(&x)?;
                let inferred = inference_mode(|| vars.forward_t(xv.as_tensor(), false));
                let inferred = wrap(inferred)?;
                let depthwise = cfg.groups > 1 && cfg.groups == cfg.in_channels;
                assert_eq!(
                    inferred.track_op(),
                    depthwise,
                    "{what}: folded only off depthwise"
                );
                assert_close(&inferred, &unfolded, tol(dtype), &format!("{what} (inference)"));
            }
        }
    }
    Ok(())
}

/// Outside inference mode, with variables or a tracked input, nothing folds: outputs and
/// gradients are those of the layers run one after the other (batch norm + ReLU fused, with
/// the same gradients as batch norm then ReLU).
#[test]
fn gradients_are_unchanged_when_tracked() -> TestResult {
    for (i, (cfg, shape)) in cases().into_iter().take(4).enumerate() {
        let t = tensors(&cfg, 40 + i as u64)?;
        let x = uniform(&shape[..], 2.0, 50 + i as u64)?;
        for act in ACTIVATIONS {
            let b = block(cfg, &t, DType::F64, true, act)?;
            let xv = Var::from_tensor(&x)?;
            let out = wrap(b.forward_t(xv.as_tensor(), false))?;
            assert!(out.track_op());
            let w = uniform(out.dims(), 1.0, 60)?;
            let grads = out.mul(&w)?.sum_all()?.backward()?;
            // The reference: conv, batch norm, activation as separate layers.
            let conv = b.conv();
            let bn = b.norm().expect("norm");
            let y = wrap(conv.forward_t(xv.as_tensor(), false))?;
            let y = wrap(bn.forward_t(&y, false))?;
            let y = match act {
                Some(a) => wrap(a.forward_t(&y, false))?,
                None => y,
            };
            assert_close(&out, &y, 1e-12, "output");
            let grads_ref = y.mul(&w)?.sum_all()?.backward()?;
            let mut params = vec![("input", xv.as_tensor()), ("conv weight", conv.weight())];
            params.extend(conv.bias().map(|b| ("conv bias", b)));
            params.extend(bn.weight().map(|w| ("bn weight", w)));
            params.extend(bn.bias().map(|b| ("bn bias", b)));
            for (name, p) in params {
                match (grads.get(p), grads_ref.get(p)) {
                    (Some(g), Some(r)) => assert_close(g, r, 1e-12, &format!("{cfg:?} {act:?}: {name}")),
                    _ => panic!("{cfg:?} {act:?}: no {name} gradient"),
                }
            }
        }
    }
    Ok(())
}

/// The folded coefficients are read at every call: weight updates, batch-norm parameter
/// updates and new running statistics (a training pass) show up in the next eval pass.
#[test]
fn folding_follows_the_variables() -> TestResult {
    let vars = SeededVarMap::new(3);
    let vb = vars.var_builder(DType::F32, &Device::Cpu);
    let cfg = Conv2dConfig::new(3, 6, 3).padding(1).no_bias();
    let conv = wrap(Conv2d::new(cfg, vb.pp("conv")))?;
    let bn = wrap(BatchNorm2d::new(6, BatchNormConfig::default(), vb.pp("bn")))?;
    let b = ConvBlock::new(conv, Some(bn), Some(Activation::Relu));
    let x = uniform((2, 3, 8, 8), 1.0, 5)?.to_dtype(DType::F32)?;
    let check = |what: &str| -> Result<()> {
        let folded = inference_mode(|| wrap(b.forward_t(&x, false)))?;
        assert!(!folded.track_op(), "{what}: not folded");
        let unfolded = wrap(b.forward_unfolded(&x, false))?;
        assert_close(&folded, &unfolded, 0.0, what);
        Ok(())
    };
    check("fresh")?;
    let all = vars.varmap().data().lock().expect("varmap").clone();
    for (name, var) in &all {
        if name.ends_with("weight") || name.ends_with("bias") {
            let t = var.as_tensor();
            var.set(&((t * 1.5)? + 0.1)?)?;
        }
    }
    check("after a parameter update")?;
    // A training pass moves the running statistics.
    let before = to_f64_vec(b.norm().expect("norm").running_var());
    wrap(b.forward_t(&((&x * 3.0)? + 1.0)?, true))?;
    assert_ne!(before, to_f64_vec(b.norm().expect("norm").running_var()));
    check("after a training pass")?;
    Ok(())
}

/// A running summary sees the convolution and the batch norm (nothing folds while it
/// records).
#[test]
fn summaries_still_list_the_batch_norm() -> TestResult {
    let cfg = Conv2dConfig::new(3, 4, 3).padding(1).no_bias();
    let b = block(
        cfg,
        &tensors(&cfg, 70)?,
        DType::F32,
        false,
        Some(Activation::Relu),
    )?;
    let x = uniform((1, 3, 6, 6), 1.0, 71)?.to_dtype(DType::F32)?;
    let (out, records) = summary::record_layers(|| b.forward_t(&x, false));
    wrap(out)?;
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["Conv2d", "BatchNorm2d"]);
    Ok(())
}

#[test]
fn fused_conv_errors() -> TestResult {
    let x = Tensor::zeros((1, 2, 5, 5), DType::F32, &Device::Cpu)?;
    let w = Tensor::zeros((3, 2, 3, 3), DType::F32, &Device::Cpu)?;
    let p = ConvParams {
        padding: 1,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    let ok = ConvEpilogue {
        bias: None,
        mean: vec![0.0; 3],
        scale: vec![1.0; 3],
        shift: vec![0.0; 3],
        relu: true,
    };
    assert_eq!(conv2d_cpu_fused(&x, &w, p, &ok)?.dims(), [1, 3, 5, 5]);
    let short = ConvEpilogue {
        scale: vec![1.0; 2],
        ..ok.clone()
    };
    assert!(conv2d_cpu_fused(&x, &w, p, &short).is_err());
    let bias = ConvEpilogue {
        bias: Some(vec![0.0; 4]),
        ..ok.clone()
    };
    assert!(conv2d_cpu_fused(&x, &w, p, &bias).is_err());
    assert!(conv2d_cpu_fused(&x.to_dtype(DType::F16)?, &w.to_dtype(DType::F16)?, p, &ok).is_err());
    assert!(conv2d_cpu_fused(&x, &w.to_dtype(DType::F64)?, p, &ok).is_err());
    // A block whose batch norm does not fit its convolution errors as before.
    let vars = SeededVarMap::new(0);
    let vb = vars.var_builder(DType::F32, &Device::Cpu);
    let conv = wrap(Conv2d::new(Conv2dConfig::new(2, 3, 3), vb.pp("c")))?;
    let bn = wrap(BatchNorm2d::new(4, BatchNormConfig::default(), vb.pp("b")))?;
    let b = ConvBlock::new(conv, Some(bn), Some(Activation::Relu));
    assert!(inference_mode(|| b.forward_t(&x, false)).is_err());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Batch norm + ReLU (eval).

fn bn_params(c: usize, seed: u64) -> Result<[Tensor; 4]> {
    Ok([
        (uniform(c, 0.5, seed)? + 1.0)?,
        uniform(c, 1.0, seed + 1)?,
        uniform(c, 1.0, seed + 2)?,
        (uniform(c, 0.5, seed + 3)? + 1.0)?,
    ])
}

/// Output and gradients (input, weight, bias; those that track) of `sum(f(x, w, b) * g)`.
fn bn_run(
    x: &Tensor,
    wb: Option<(&Tensor, &Tensor)>,
    seed: u64,
    f: impl Fn(&Tensor, Option<(&Tensor, &Tensor)>) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let xv = Var::from_tensor(x)?;
    let wb = wb
        .map(|(w, b)| -> Result<_> { Ok((Var::from_tensor(w)?, Var::from_tensor(b)?)) })
        .transpose()?;
    let affine = wb.as_ref().map(|(w, b)| (w.as_tensor(), b.as_tensor()));
    let out = f(xv.as_tensor(), affine)?;
    let g = uniform(out.dims(), 1.0, seed)?.to_dtype(out.dtype())?;
    let grads = out.mul(&g)?.sum_all()?.backward()?;
    let mut all = vec![out];
    let mut tracked = vec![xv.as_tensor()];
    if let Some((w, b)) = affine {
        tracked.extend([w, b]);
    }
    for t in tracked {
        match grads.get(t) {
            Some(g) => all.push(g.clone()),
            None => candle_core::bail!("missing gradient"),
        }
    }
    Ok(all)
}

#[test]
fn batch_norm_relu_matches_batch_norm_then_relu() -> TestResult {
    for (i, shape) in [&[2usize, 3, 5, 7][..], &[4, 5], &[3, 16, 33, 35], &[1, 1, 1, 1]]
        .into_iter()
        .enumerate()
    {
        let c = shape[1];
        let [w, b, rm, rv] = bn_params(c, 80 + i as u64)?;
        let mut x = to_f64_vec(&uniform(shape, 2.0, 90 + i as u64)?);
        // NaN propagates through both (zeros come from the negative outputs).
        x[0] = f64::NAN;
        for dtype in [DType::F64, DType::F32] {
            let cast = |t: &Tensor| t.to_dtype(dtype);
            let xs = Tensor::from_vec(x.clone(), shape, &Device::Cpu)?.to_dtype(dtype)?;
            let (w, b, rm, rv) = (cast(&w)?, cast(&b)?, cast(&rm)?, cast(&rv)?);
            for affine in [true, false] {
                let wb = affine.then_some((&w, &b));
                let fused =
                    |x: &Tensor, a: Option<(&Tensor, &Tensor)>| batch_norm_eval_relu(x, a, &rm, &rv, 1e-5);
                let separate =
                    |x: &Tensor, a: Option<(&Tensor, &Tensor)>| relu(&batch_norm_eval(x, a, &rm, &rv, 1e-5)?);
                let ours = bn_run(&xs, wb, 5, fused)?;
                let theirs = bn_run(&xs, wb, 5, separate)?;
                let what = format!("{shape:?} {dtype:?} affine {affine}");
                assert!(to_f64_vec(&ours[0])[0].is_nan(), "{what}: NaN propagates");
                for (k, (a, r)) in ours.iter().zip(&theirs).enumerate() {
                    assert_close(a, r, tol(dtype), &format!("{what}: tensor {k}"));
                }
                // Input gradient alone (the one-pass path).
                let xv = Var::from_tensor(&xs)?;
                let out = batch_norm_eval_relu(xv.as_tensor(), wb, &rm, &rv, 1e-5)?;
                let g = uniform(out.dims(), 1.0, 5)?.to_dtype(dtype)?;
                let grads = out.mul(&g)?.sum_all()?.backward()?;
                match grads.get(xv.as_tensor()) {
                    Some(dx) => assert_close(dx, &theirs[1], tol(dtype), &format!("{what}: input only")),
                    None => panic!("{what}: no input gradient"),
                }
            }
        }
    }
    Ok(())
}

#[test]
fn batch_norm_relu_gradients_match_finite_differences() -> TestResult {
    let shape = [2usize, 3, 4, 5];
    let [w, b, rm, rv] = bn_params(3, 100)?;
    let x = uniform(&shape[..], 2.0, 101)?;
    // Keep the outputs away from the kink.
    let y = to_f64_vec(&batch_norm_eval(&x, Some((&w, &b)), &rm, &rv, 1e-5)?);
    let away = to_f64_vec(&x)
        .iter()
        .zip(&y)
        .map(|(&v, &o)| if o.abs() < 0.02 { v + 0.1 } else { v })
        .collect();
    let x = Tensor::from_vec(away, &shape[..], &Device::Cpu)?;
    let f = |x: &Tensor, w: &Tensor, b: &Tensor| batch_norm_eval_relu(x, Some((w, b)), &rm, &rv, 1e-5);
    assert_grad_ok("input", &x, 1, |x| f(x, &w, &b));
    assert_grad_ok("weight", &w, 2, |w| f(&x, w, &b));
    assert_grad_ok("bias", &b, 3, |b| f(&x, &w, b));
    assert_grad_ok("no affine", &x, 4, |x| {
        batch_norm_eval_relu(x, None, &rm, &rv, 1e-5)
    });
    Ok(())
}

/// Non-contiguous inputs and other dtypes take batch norm then ReLU.
#[test]
fn batch_norm_relu_falls_back() -> TestResult {
    let [w, b, rm, rv] = bn_params(3, 110)?;
    let x = uniform((2, 3, 5, 4), 2.0, 111)?;
    let strided = x.transpose(2, 3)?;
    let ours = batch_norm_eval_relu(&strided, Some((&w, &b)), &rm, &rv, 1e-5)?;
    let theirs = batch_norm_eval_relu(&strided.contiguous()?, Some((&w, &b)), &rm, &rv, 1e-5)?;
    assert_close(&ours, &theirs, 1e-12, "strided");
    let h = |t: &Tensor| t.to_dtype(DType::BF16);
    let half = batch_norm_eval_relu(&h(&x)?, Some((&h(&w)?, &h(&b)?)), &h(&rm)?, &h(&rv)?, 1e-5)?;
    assert_eq!(half.dtype(), DType::BF16);
    let full = batch_norm_eval_relu(&x, Some((&w, &b)), &rm, &rv, 1e-5)?;
    assert_close(&half, &full, 3e-2, "bf16");
    Ok(())
}
