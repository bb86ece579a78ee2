//! `backbone::ops::conv2d` (candle's forward, our backward) by finite differences in f64,
//! over strides, paddings (including padding wider than the kernel's reach), dilations, groups
//! and rectangular kernels on odd, non-square inputs; and against candle's own backward where
//! candle's is right.

use crate::common;

use backbone::ops::{conv2d, ConvParams};
use candle_core::{Result, Tensor, Var};
use common::{assert_grad_ok, to_f64_vec, uniform};

const CASES: &[(usize, usize, (usize, usize), ConvParams)] = &[
    // (in channels, out channels, kernel, params)
    (
        2,
        3,
        (3, 3),
        ConvParams {
            padding: 1,
            stride: 2,
            dilation: 1,
            groups: 1,
        },
    ),
    (
        2,
        3,
        (3, 3),
        ConvParams {
            padding: 0,
            stride: 3,
            dilation: 1,
            groups: 1,
        },
    ),
    (
        2,
        2,
        (3, 2),
        ConvParams {
            padding: 1,
            stride: 2,
            dilation: 2,
            groups: 1,
        },
    ),
    (
        2,
        3,
        (1, 1),
        ConvParams {
            padding: 1,
            stride: 1,
            dilation: 1,
            groups: 1,
        },
    ),
    (
        1,
        2,
        (2, 2),
        ConvParams {
            padding: 2,
            stride: 2,
            dilation: 1,
            groups: 1,
        },
    ),
    (
        4,
        6,
        (3, 3),
        ConvParams {
            padding: 1,
            stride: 2,
            dilation: 1,
            groups: 2,
        },
    ),
    (
        3,
        3,
        (3, 3),
        ConvParams {
            padding: 1,
            stride: 1,
            dilation: 1,
            groups: 3,
        },
    ),
    (
        2,
        2,
        (5, 5),
        ConvParams {
            padding: 2,
            stride: 1,
            dilation: 1,
            groups: 1,
        },
    ),
];

const INPUTS: &[(usize, usize)] = &[(7, 8), (8, 7), (9, 11)];

fn weight_for(c_in: usize, c_out: usize, (kh, kw): (usize, usize), p: ConvParams, seed: u64) -> Tensor {
    uniform((c_out, c_in / p.groups, kh, kw), 0.5, seed).unwrap()
}

#[test]
fn input_gradients_match_finite_differences() {
    for (i, &(c_in, c_out, k, p)) in CASES.iter().enumerate() {
        for &(h, w) in INPUTS {
            let x = uniform((2, c_in, h, w), 1.0, 3 + i as u64).unwrap();
            let weight = weight_for(c_in, c_out, k, p, 17 + i as u64);
            assert_grad_ok(&format!("input, {p:?} k{k:?} on {h}x{w}"), &x, 5, |x| {
                conv2d(x, &weight, p)
            });
        }
    }
}

#[test]
fn weight_gradients_match_finite_differences() {
    for (i, &(c_in, c_out, k, p)) in CASES.iter().enumerate() {
        for &(h, w) in INPUTS {
            let x = uniform((2, c_in, h, w), 1.0, 3 + i as u64).unwrap();
            let weight = weight_for(c_in, c_out, k, p, 17 + i as u64);
            // The image batch takes no part in autograd: only the weight gets a gradient.
            assert_grad_ok(&format!("weight, {p:?} k{k:?} on {h}x{w}"), &weight, 7, |wt| {
                conv2d(&x, wt, p)
            });
        }
    }
}

/// Forward and gradients equal to candle's (to rounding) where candle's backward
/// works (square inputs, dense convolution).
#[test]
fn agrees_with_candle_where_candle_is_right() -> Result<()> {
    let p = ConvParams {
        padding: 1,
        stride: 2,
        dilation: 1,
        groups: 1,
    };
    let x = Var::from_tensor(&uniform((2, 3, 9, 9), 1.0, 1)?)?;
    let w = Var::from_tensor(&uniform((4, 3, 3, 3), 0.5, 2)?)?;
    let ours = conv2d(x.as_tensor(), w.as_tensor(), p)?;
    let theirs = x.as_tensor().conv2d(w.as_tensor(), 1, 2, 1, 1)?;
    // The same products, summed in another order (candle's column order is (ky, kx, c)).
    for (u, v) in to_f64_vec(&ours).iter().zip(&to_f64_vec(&theirs)) {
        assert!((u - v).abs() < 1e-9, "output: {u} vs {v}");
    }
    let g_ours = ours.sqr()?.sum_all()?.backward()?;
    let g_theirs = theirs.sqr()?.sum_all()?.backward()?;
    for (name, var) in [("input", &x), ("weight", &w)] {
        let a = to_f64_vec(g_ours.get(var.as_tensor()).expect("our gradient"));
        let b = to_f64_vec(g_theirs.get(var.as_tensor()).expect("candle's gradient"));
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-9, "{name}: {u} vs {v}");
        }
    }
    Ok(())
}

/// No gradient is computed for an input outside autograd, and a constant input and weight
/// give a plain tensor (no graph).
#[test]
fn no_input_gradient_for_plain_tensors() -> Result<()> {
    let p = ConvParams {
        padding: 0,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    let x = uniform((1, 2, 6, 5), 1.0, 1)?;
    let w = Var::from_tensor(&uniform((3, 2, 3, 3), 0.5, 2)?)?;
    let grads = conv2d(&x, w.as_tensor(), p)?.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    assert!(grads.get(w.as_tensor()).is_some());
    assert!(!conv2d(&x, &w.as_tensor().detach(), p)?.track_op());
    Ok(())
}
