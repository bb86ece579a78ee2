//! `backbone::ops::depthwise_conv2d` (direct CPU kernels) against the reference path,
//! `backbone::ops::conv2d` with `groups = channels` (candle's grouped convolution with our
//! backward), forward and both gradients, over strides, paddings, dilations, channel
//! multipliers and rectangular kernels on odd, non-square inputs; finite differences in f64;
//! non-contiguous inputs; the `Conv2d` layer's dispatch; errors.

use crate::common;

use backbone::layers::{Conv2d, Conv2dConfig, Layer};
use backbone::ops::{conv2d, depthwise_conv2d, ConvParams, DepthwiseParams};
use candle_core::{DType, Device, Result, Tensor, Var};
use common::{assert_close, assert_grad_ok, uniform, TestResult};
use std::collections::HashMap;

/// (channels, multiplier, kernel (h, w), padding, stride, dilation)
type Case = (usize, usize, (usize, usize), usize, usize, usize);

const CASES: &[Case] = &[
    (3, 1, (3, 3), 1, 1, 1),
    (3, 1, (3, 3), 1, 2, 1),
    (3, 1, (3, 3), 0, 1, 1),
    (3, 1, (3, 3), 0, 2, 1),
    (3, 1, (5, 5), 2, 1, 1),
    (3, 1, (5, 5), 2, 2, 1),
    (2, 2, (3, 3), 1, 1, 1),
    (2, 2, (3, 3), 1, 2, 1),
    (2, 2, (3, 3), 2, 1, 2),
    (2, 1, (3, 3), 2, 2, 2),
    (2, 2, (3, 2), 1, 2, 1),
    (4, 1, (1, 1), 0, 2, 1),
    (2, 3, (2, 3), 2, 1, 1),
    (3, 2, (5, 5), 0, 2, 2),
];

const INPUTS: &[(usize, usize)] = &[(7, 9), (9, 7), (11, 6)];

fn params((_, _, _, padding, stride, dilation): Case) -> DepthwiseParams {
    DepthwiseParams::new()
        .padding(padding)
        .stride(stride)
        .dilation(dilation)
}

fn reference_params((c, _, _, padding, stride, dilation): Case) -> ConvParams {
    ConvParams {
        padding,
        stride,
        dilation,
        groups: c,
    }
}

fn weight_for((c, m, (kh, kw), ..): Case, seed: u64) -> Tensor {
    uniform((c * m, 1, kh, kw), 0.5, seed).unwrap()
}

/// Whether the case's kernel fits the input (else both paths refuse it).
fn fits((_, _, (kh, kw), padding, _, dilation): Case, (h, w): (usize, usize)) -> bool {
    h + 2 * padding > dilation * (kh - 1) && w + 2 * padding > dilation * (kw - 1)
}

/// Output and gradients of `sum(out * r)` (r seeded) w.r.t. input and weight.
fn run(
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    x: &Tensor,
    w: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let xv = Var::from_tensor(x)?;
    let wv = Var::from_tensor(w)?;
    let out = f(xv.as_tensor(), wv.as_tensor())?;
    let r = uniform(out.dims(), 1.0, 99)?.to_dtype(out.dtype())?;
    let grads = out.mul(&r)?.sum_all()?.backward()?;
    let gx = grads.get(xv.as_tensor()).expect("input gradient").clone();
    let gw = grads.get(wv.as_tensor()).expect("weight gradient").clone();
    Ok((out, gx, gw))
}

#[test]
fn forward_and_gradients_match_the_reference_path() {
    for (i, &case) in CASES.iter().enumerate() {
        for &(h, w) in INPUTS {
            if !fits(case, (h, w)) {
                continue;
            }
            let x = uniform((2, case.0, h, w), 1.0, 3 + i as u64).unwrap();
            let weight = weight_for(case, 17 + i as u64);
            let ours = run(|x, w| depthwise_conv2d(x, w, params(case)), &x, &weight).unwrap();
            let theirs = run(|x, w| conv2d(x, w, reference_params(case)), &x, &weight).unwrap();
            let what = format!("{case:?} on {h}x{w}");
            assert_close(&ours.0, &theirs.0, 1e-12, &format!("{what}: output"));
            assert_close(&ours.1, &theirs.1, 1e-12, &format!("{what}: input gradient"));
            assert_close(&ours.2, &theirs.2, 1e-12, &format!("{what}: weight gradient"));
        }
    }
}

#[test]
fn input_gradients_match_finite_differences() {
    for (i, &case) in CASES.iter().enumerate() {
        let (h, w) = INPUTS[i % INPUTS.len()];
        if !fits(case, (h, w)) {
            continue;
        }
        let x = uniform((2, case.0, h, w), 1.0, 3 + i as u64).unwrap();
        let weight = weight_for(case, 17 + i as u64);
        assert_grad_ok(&format!("input, {case:?} on {h}x{w}"), &x, 5, |x| {
            depthwise_conv2d(x, &weight, params(case))
        });
    }
}

#[test]
fn weight_gradients_match_finite_differences() {
    for (i, &case) in CASES.iter().enumerate() {
        let (h, w) = INPUTS[(i + 1) % INPUTS.len()];
        if !fits(case, (h, w)) {
            continue;
        }
        let x = uniform((2, case.0, h, w), 1.0, 3 + i as u64).unwrap();
        let weight = weight_for(case, 17 + i as u64);
        assert_grad_ok(&format!("weight, {case:?} on {h}x{w}"), &weight, 7, |wt| {
            depthwise_conv2d(&x, wt, params(case))
        });
    }
}

/// Asymmetric padding (the op pads each axis itself) equals explicit padding + the reference.
#[test]
fn asymmetric_padding() -> Result<()> {
    let x = uniform((2, 3, 8, 7), 1.0, 1)?;
    let w = uniform((3, 1, 1, 5), 0.5, 2)?;
    let p = DepthwiseParams {
        padding: (0, 2),
        stride: 2,
        dilation: 1,
    };
    let ours = run(|x, w| depthwise_conv2d(x, w, p), &x, &w)?;
    let theirs = run(
        |x, w| {
            let padded = x.pad_with_zeros(3, 2, 2)?;
            conv2d(
                &padded,
                w,
                ConvParams {
                    padding: 0,
                    stride: 2,
                    dilation: 1,
                    groups: 3,
                },
            )
        },
        &x,
        &w,
    )?;
    assert_close(&ours.0, &theirs.0, 1e-12, "asymmetric: output");
    assert_close(&ours.1, &theirs.1, 1e-12, "asymmetric: input gradient");
    assert_close(&ours.2, &theirs.2, 1e-12, "asymmetric: weight gradient");
    Ok(())
}

/// Large enough to run on the thread pool, in f32: same results as the reference path.
#[test]
fn parallel_f32_matches_the_reference_path() -> Result<()> {
    let case: Case = (24, 2, (5, 5), 2, 2, 1);
    let x = uniform((3, 24, 29, 31), 1.0, 4)?.to_dtype(DType::F32)?;
    let w = weight_for(case, 5).to_dtype(DType::F32)?;
    let ours = run(|x, w| depthwise_conv2d(x, w, params(case)), &x, &w)?;
    let theirs = run(|x, w| conv2d(x, w, reference_params(case)), &x, &w)?;
    assert_eq!(ours.0.dtype(), DType::F32);
    assert_close(&ours.0, &theirs.0, 1e-5, "f32: output");
    assert_close(&ours.1, &theirs.1, 1e-5, "f32: input gradient");
    assert_close(&ours.2, &theirs.2, 1e-4, "f32: weight gradient");
    Ok(())
}

/// Strided views (a transposed input, a narrowed weight) are read through their layout.
#[test]
fn non_contiguous_inputs() -> Result<()> {
    let case: Case = (4, 1, (3, 3), 1, 2, 1);
    let x = uniform((2, 4, 9, 7), 1.0, 8)?.transpose(2, 3)?; // [2, 4, 7, 9], strided
    assert!(!x.is_contiguous());
    let w = uniform((4, 1, 3, 5), 0.5, 9)?.narrow(3, 1, 3)?; // [4, 1, 3, 3], strided
    assert!(!w.is_contiguous());
    let ours = depthwise_conv2d(&x, &w, params(case))?;
    let reference = conv2d(&x.contiguous()?, &w.contiguous()?, reference_params(case))?;
    assert_close(&ours, &reference, 1e-12, "non-contiguous");
    // A gradient that arrives non-contiguous (through a transpose after the op).
    let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
    let r = uniform((2, 4, 5, 4), 1.0, 3)?;
    let loss = |out: Tensor| {
        out.transpose(2, 3)
            .and_then(|t| t.mul(&r))
            .and_then(|t| t.sum_all())
    };
    let g1 = loss(depthwise_conv2d(xv.as_tensor(), wv.as_tensor(), params(case))?)?.backward()?;
    let g2 = loss(conv2d(xv.as_tensor(), wv.as_tensor(), reference_params(case))?)?.backward()?;
    for (name, var) in [("input", &xv), ("weight", &wv)] {
        assert_close(
            g1.get(var.as_tensor()).expect("ours"),
            g2.get(var.as_tensor()).expect("reference"),
            1e-12,
            &format!("non-contiguous {name} gradient"),
        );
    }
    Ok(())
}

/// Only the arguments in autograd get a gradient; constants give a plain tensor.
#[test]
fn gradients_only_where_needed() -> Result<()> {
    let x = uniform((1, 2, 6, 5), 1.0, 1)?;
    let w = Var::from_tensor(&uniform((2, 1, 3, 3), 0.5, 2)?)?;
    let p = DepthwiseParams::new().padding(1);
    let grads = depthwise_conv2d(&x, w.as_tensor(), p)?.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    assert!(grads.get(w.as_tensor()).is_some());
    assert!(!depthwise_conv2d(&x, &w.as_tensor().detach(), p)?.track_op());
    Ok(())
}

/// `Conv2d` with `groups == in_channels` runs the depthwise op and gives the reference path's
/// output and gradients (asymmetric padding and a bias included).
#[test]
fn conv2d_layer_dispatch() -> TestResult {
    let config = Conv2dConfig::new(6, 12, 3).groups(6).stride(2).padding_hw(1, 2);
    let weight = Var::from_tensor(&uniform((12, 1, 3, 3), 0.5, 1)?.to_dtype(DType::F32)?)?;
    let bias = Var::from_tensor(&uniform(12, 0.5, 2)?.to_dtype(DType::F32)?)?;
    let tensors = HashMap::from([
        ("dw.weight".to_string(), weight.as_tensor().clone()),
        ("dw.bias".to_string(), bias.as_tensor().clone()),
    ]);
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let layer = Conv2d::new(config, vb.pp("dw"))?;
    let x = Var::from_tensor(&uniform((2, 6, 9, 8), 1.0, 3)?.to_dtype(DType::F32)?)?;
    let out = layer.forward_t(x.as_tensor(), true)?;
    let reference = conv2d(
        &x.as_tensor().pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 2, 2)?,
        weight.as_tensor(),
        ConvParams {
            padding: 0,
            stride: 2,
            dilation: 1,
            groups: 6,
        },
    )?
    .broadcast_add(&bias.as_tensor().reshape((1, 12, 1, 1))?)?;
    assert_eq!(out.dims(), [2, 12, 5, 5]);
    assert_close(&out, &reference, 1e-6, "Conv2d depthwise output");
    let g1 = out.sqr()?.sum_all()?.backward()?;
    let g2 = reference.sqr()?.sum_all()?.backward()?;
    for (name, t) in [
        ("input", x.as_tensor()),
        ("weight", weight.as_tensor()),
        ("bias", bias.as_tensor()),
    ] {
        assert_close(
            g1.get(t).expect("ours"),
            g2.get(t).expect("reference"),
            1e-5,
            &format!("Conv2d depthwise {name} gradient"),
        );
    }
    Ok(())
}

/// f16 takes the fallback path (candle's grouped convolution) and agrees with f32.
#[test]
fn other_dtypes_fall_back() -> Result<()> {
    let x = uniform((1, 3, 7, 6), 1.0, 1)?.to_dtype(DType::F32)?;
    let w = uniform((3, 1, 3, 3), 0.5, 2)?.to_dtype(DType::F32)?;
    let p = DepthwiseParams::new().padding(1);
    let full = depthwise_conv2d(&x, &w, p)?;
    let half = depthwise_conv2d(&x.to_dtype(DType::F16)?, &w.to_dtype(DType::F16)?, p)?;
    assert_eq!(half.dtype(), DType::F16);
    assert_close(&half.to_dtype(DType::F32)?, &full, 1e-2, "f16 fallback");
    Ok(())
}

#[test]
fn bad_shapes_are_errors() -> Result<()> {
    let x = uniform((1, 3, 5, 5), 1.0, 1)?;
    let p = DepthwiseParams::new();
    // Weight with in/groups != 1, or out channels not a multiple of the input channels.
    for dims in [(3, 3, 3, 3), (4, 1, 3, 3)] {
        let w = uniform(dims, 0.5, 2)?;
        let msg = depthwise_conv2d(&x, &w, p).unwrap_err().to_string();
        assert!(msg.contains("weight must be"), "{msg}");
    }
    // Input smaller than the (dilated) kernel.
    let w = uniform((3, 1, 3, 3), 0.5, 2)?;
    let msg = depthwise_conv2d(&x, &w, p.dilation(3)).unwrap_err().to_string();
    assert!(msg.contains("too small"), "{msg}");
    // Not 4-d; zero stride.
    assert!(depthwise_conv2d(&x.squeeze(0)?, &w, p).is_err());
    assert!(depthwise_conv2d(&x, &w, p.stride(0)).is_err());
    Ok(())
}
