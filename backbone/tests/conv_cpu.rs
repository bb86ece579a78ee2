//! `backbone::ops::conv2d_cpu` (the CPU im2col + gemm convolution that `ops::conv2d` runs on
//! f32 / f64 CPU tensors): forward, input and weight gradients against the reference path
//! (`ops::conv2d_reference`: candle's forward, `ConvBackward`), against a plain nested-loop
//! convolution, and by finite differences in f64; over odd shapes, strides 1/2/3, paddings
//! 0/1/2 (also wider than the kernel's reach), dilations 1/2, groups 1/2/depthwise,
//! rectangular kernels, batches 1 and 3, non-contiguous inputs, and every threading plan.

use crate::common;

use backbone::ops::{
    add_channel_bias, conv2d, conv2d_cpu, conv2d_cpu_bias_relu, conv2d_reference, relu, ConvParams,
};
use candle_core::{DType, Device, Result, Tensor, Var};
use common::{assert_close, assert_grad_ok, to_f64_vec, uniform};

/// One convolution to test.
#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    kernel: (usize, usize),
    hw: (usize, usize),
    p: ConvParams,
}

const fn params(padding: usize, stride: usize, dilation: usize, groups: usize) -> ConvParams {
    ConvParams {
        padding,
        stride,
        dilation,
        groups,
    }
}

const fn case(
    n: usize,
    cin: usize,
    cout: usize,
    kernel: (usize, usize),
    hw: (usize, usize),
    p: ConvParams,
) -> Case {
    Case {
        n,
        cin,
        cout,
        kernel,
        hw,
        p,
    }
}

const CASES: &[Case] = &[
    // Dense 3x3: stride 1/2/3, padding 0/1/2.
    case(3, 2, 3, (3, 3), (7, 9), params(1, 1, 1, 1)),
    case(1, 3, 4, (3, 3), (9, 8), params(1, 2, 1, 1)),
    case(3, 2, 3, (3, 3), (11, 10), params(0, 3, 1, 1)),
    case(1, 2, 3, (3, 3), (8, 7), params(2, 3, 1, 1)),
    // Dilation 2, alone and with stride and padding, rectangular kernels.
    case(3, 2, 2, (3, 3), (9, 9), params(0, 1, 2, 1)),
    case(3, 2, 2, (3, 2), (9, 11), params(1, 2, 2, 1)),
    case(1, 2, 3, (1, 3), (6, 5), params(1, 1, 1, 1)),
    case(3, 3, 2, (2, 5), (7, 9), params(2, 1, 1, 1)),
    // 1x1: the pointwise path (no im2col), padding beyond the kernel's reach, stride 2.
    case(3, 4, 5, (1, 1), (6, 7), params(0, 1, 1, 1)),
    case(1, 3, 2, (1, 1), (5, 6), params(1, 1, 1, 1)),
    case(1, 3, 4, (1, 1), (7, 7), params(0, 2, 1, 1)),
    case(3, 2, 3, (1, 1), (5, 4), params(2, 3, 2, 1)),
    // Padding wider than a 2x2 kernel reaches.
    case(3, 1, 2, (2, 2), (5, 7), params(2, 2, 1, 1)),
    // Larger kernels, a single output position.
    case(1, 2, 3, (5, 5), (7, 6), params(2, 1, 1, 1)),
    case(3, 3, 2, (5, 5), (5, 5), params(0, 1, 1, 1)),
    // Strided kernels with at least stride^2 taps (column-phase split planes): the 7x7
    // stride-2 stem, stride 3 with dilation, odd widths.
    case(3, 3, 4, (7, 7), (11, 13), params(3, 2, 1, 1)),
    case(1, 2, 2, (5, 5), (13, 11), params(2, 3, 2, 1)),
    case(3, 2, 3, (2, 3), (9, 10), params(0, 2, 1, 1)),
    // Dead taps (reading padding only, left out of the products): 3x3 on 1x1 and 1x2 maps,
    // the stride-2 3x3 from 2x2 to 1x1, a 5x5 on 2x2, grouped; every tap dead (1x1 kernel,
    // padding 1, stride 2 on a 1x1 map: an all-zero output).
    case(3, 4, 3, (3, 3), (1, 1), params(1, 1, 1, 1)),
    case(3, 2, 3, (3, 3), (1, 2), params(1, 1, 1, 1)),
    case(3, 3, 4, (3, 3), (2, 2), params(1, 2, 1, 1)),
    case(1, 4, 2, (5, 5), (2, 2), params(2, 1, 1, 2)),
    case(3, 2, 2, (1, 1), (1, 1), params(1, 2, 1, 1)),
    // Groups: 2, depthwise, depthwise with a channel multiplier, grouped pointwise.
    case(3, 4, 6, (3, 3), (7, 8), params(1, 2, 1, 2)),
    case(1, 3, 3, (3, 3), (8, 7), params(1, 1, 1, 3)),
    case(3, 3, 6, (3, 3), (9, 9), params(2, 2, 2, 3)),
    case(3, 6, 4, (1, 1), (5, 5), params(0, 1, 1, 2)),
    case(1, 6, 4, (3, 2), (6, 7), params(1, 3, 1, 2)),
];

impl Case {
    fn input(&self, seed: u64) -> Result<Tensor> {
        uniform((self.n, self.cin, self.hw.0, self.hw.1), 1.0, seed)
    }

    fn weight(&self, seed: u64) -> Result<Tensor> {
        let (kh, kw) = self.kernel;
        uniform((self.cout, self.cin / self.p.groups, kh, kw), 0.5, seed)
    }

    fn out_hw(&self) -> (usize, usize) {
        let out = |len: usize, k: usize| {
            (len + 2 * self.p.padding - self.p.dilation * (k - 1) - 1) / self.p.stride + 1
        };
        (out(self.hw.0, self.kernel.0), out(self.hw.1, self.kernel.1))
    }
}

/// A convolution's output and the gradients of `sum(out * r)` w.r.t. input and weight.
struct Run {
    out: Tensor,
    grad_x: Tensor,
    grad_w: Tensor,
}

/// Runs `f` on `x` and `w` as variables with the loss `sum(out * r)`, `r` seeded from `seed`.
fn run(x: &Tensor, w: &Tensor, seed: u64, f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Run> {
    let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(w)?);
    let out = f(xv.as_tensor(), wv.as_tensor())?;
    let r = uniform(out.shape(), 1.0, seed)?.to_dtype(out.dtype())?;
    let grads = out.mul(&r)?.sum_all()?.backward()?;
    let get = |v: &Var, what: &str| match grads.get(v.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => candle_core::bail!("no {what} gradient"),
    };
    Ok(Run {
        grad_x: get(&xv, "input")?,
        grad_w: get(&wv, "weight")?,
        out,
    })
}

#[track_caller]
fn assert_runs_close(a: &Run, b: &Run, tol: f64, what: &str) {
    assert_close(&a.out, &b.out, tol, &format!("{what}: output"));
    assert_close(&a.grad_x, &b.grad_x, tol, &format!("{what}: input gradient"));
    assert_close(&a.grad_w, &b.grad_w, tol, &format!("{what}: weight gradient"));
}

/// The convolution, its input gradient and its weight gradient for the output gradient `r`,
/// computed by nested loops over every output position and kernel tap (f64, contiguous).
fn nested_loops(c: &Case, x: &[f64], w: &[f64], r: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let Case { n, cin, cout, .. } = *c;
    let ((h, wd), (kh, kw), (oh, ow)) = (c.hw, c.kernel, c.out_hw());
    let ConvParams {
        padding,
        stride,
        dilation,
        groups,
    } = c.p;
    let (cg, og) = (cin / groups, cout / groups);
    let mut out = vec![0.0; n * cout * oh * ow];
    let mut gx = vec![0.0; x.len()];
    let mut gw = vec![0.0; w.len()];
    for b in 0..n {
        for o in 0..cout {
            let group = o / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let oi = ((b * cout + o) * oh + oy) * ow + ox;
                    for ci in 0..cg {
                        let chan = group * cg + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride + ky * dilation) as isize - padding as isize;
                                let ix = (ox * stride + kx * dilation) as isize - padding as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((b * cin + chan) * h + iy as usize) * wd + ix as usize;
                                let wi = ((o * cg + ci) * kh + ky) * kw + kx;
                                out[oi] += w[wi] * x[xi];
                                gx[xi] += w[wi] * r[oi];
                                gw[wi] += x[xi] * r[oi];
                            }
                        }
                    }
                }
            }
        }
    }
    (out, gx, gw)
}

/// [`nested_loops`]' output and gradients as a [`Run`], for the output gradient that [`run`]
/// seeds from `seed` (outputs of shape `out_shape`).
fn nested_loops_run(
    c: &Case,
    x: &Tensor,
    w: &Tensor,
    out_shape: &candle_core::Shape,
    seed: u64,
) -> Result<Run> {
    let r = uniform(out_shape, 1.0, seed)?;
    let (out, gx, gw) = nested_loops(c, &to_f64_vec(x), &to_f64_vec(w), &to_f64_vec(&r));
    let dev = Device::Cpu;
    Ok(Run {
        out: Tensor::from_vec(out, out_shape, &dev)?,
        grad_x: Tensor::from_vec(gx, x.shape(), &dev)?,
        grad_w: Tensor::from_vec(gw, w.shape(), &dev)?,
    })
}

#[test]
fn matches_the_reference_path_in_f64_and_f32() -> Result<()> {
    for (i, c) in CASES.iter().enumerate() {
        let (x, w) = (c.input(3 + i as u64)?, c.weight(17 + i as u64)?);
        for dtype in [DType::F64, DType::F32] {
            let (x, w) = (x.to_dtype(dtype)?, w.to_dtype(dtype)?);
            let ours = run(&x, &w, 5, |x, w| conv2d(x, w, c.p))?;
            let reference = run(&x, &w, 5, |x, w| conv2d_reference(x, w, c.p))?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert_runs_close(&ours, &reference, tol, &format!("{c:?} {dtype:?}"));
        }
    }
    Ok(())
}

#[test]
fn matches_nested_loops() -> Result<()> {
    for (i, c) in CASES.iter().enumerate() {
        let (x, w) = (c.input(30 + i as u64)?, c.weight(40 + i as u64)?);
        let ours = run(&x, &w, 9, |x, w| conv2d_cpu(x, w, c.p))?;
        let expected = nested_loops_run(c, &x, &w, ours.out.shape(), 9)?;
        assert_runs_close(&ours, &expected, 1e-12, &format!("{c:?}"));
    }
    Ok(())
}

#[test]
fn input_gradients_match_finite_differences() {
    for (i, c) in CASES.iter().enumerate() {
        let x = c.input(50 + i as u64).unwrap();
        let w = c.weight(60 + i as u64).unwrap();
        assert_grad_ok(&format!("input, {c:?}"), &x, 5, |x| conv2d_cpu(x, &w, c.p));
    }
}

#[test]
fn weight_gradients_match_finite_differences() {
    for (i, c) in CASES.iter().enumerate() {
        let x = c.input(70 + i as u64).unwrap();
        let w = c.weight(80 + i as u64).unwrap();
        // The input is a plain tensor: only the weight takes part in autograd.
        assert_grad_ok(&format!("weight, {c:?}"), &w, 7, |w| conv2d_cpu(&x, w, c.p));
    }
}

/// Transposed, narrowed and broadcast inputs and weights give the same results (and
/// gradients, through the view ops) as contiguous copies.
#[test]
fn non_contiguous_inputs() -> Result<()> {
    let c = case(3, 4, 6, (3, 2), (9, 7), params(1, 2, 1, 2));
    let x = c.input(1)?;
    let w = c.weight(2)?;
    let expected = run(&x, &w, 3, |x, w| conv2d_cpu(x, w, c.p))?;
    // The input as the transpose of a [N, C, W, H] tensor, the weight as a narrowed slice.
    let x_t = x.transpose(2, 3)?.contiguous()?;
    let w_wide = Tensor::cat(&[&w, &w.affine(2.0, 1.0)?], 0)?;
    let views = run(&x_t, &w_wide, 3, |x_t, w_wide| {
        let x = x_t.transpose(2, 3)?;
        let w = w_wide.narrow(0, 0, c.cout)?;
        assert!(!x.is_contiguous() && w.is_contiguous());
        conv2d_cpu(&x, &w, c.p)
    })?;
    assert_close(&views.out, &expected.out, 1e-12, "output");
    assert_close(
        &views.grad_x.transpose(2, 3)?,
        &expected.grad_x,
        1e-12,
        "input gradient",
    );
    assert_close(
        &views.grad_w.narrow(0, 0, c.cout)?,
        &expected.grad_w,
        1e-12,
        "weight gradient",
    );
    // A batch narrowed out of a larger one (an offset into the buffer) and a channel slice.
    let big = uniform((5, 6, 9, 7), 1.0, 4)?;
    let slice = big.narrow(0, 1, 3)?.narrow(1, 1, 4)?;
    assert!(!slice.is_contiguous());
    assert_close(
        &conv2d_cpu(&slice, &w, c.p)?,
        &conv2d_cpu(&slice.contiguous()?, &w, c.p)?,
        0.0,
        "narrowed input",
    );
    // A broadcast (stride 0) input.
    let row = uniform((1, 4, 9, 7), 1.0, 5)?;
    let broadcast = row.broadcast_as((3, 4, 9, 7))?;
    assert_close(
        &conv2d_cpu(&broadcast, &w, c.p)?,
        &conv2d_cpu(&broadcast.contiguous()?, &w, c.p)?,
        0.0,
        "broadcast input",
    );
    Ok(())
}

/// Every threading plan (serial; images spread over the threads, with even and uneven runs;
/// parallel inside each image) gives the reference's results, at sizes above the threshold
/// under which the kernels stay on the calling thread.
#[test]
fn every_threading_plan_agrees() -> Result<()> {
    let cases = [
        case(8, 16, 12, (3, 3), (20, 19), params(1, 1, 1, 1)),
        case(3, 16, 12, (3, 3), (20, 19), params(1, 2, 1, 2)),
        case(9, 32, 16, (1, 1), (15, 17), params(0, 1, 1, 1)),
        case(17, 8, 8, (3, 3), (16, 15), params(2, 1, 2, 1)),
        case(1, 16, 16, (5, 3), (24, 23), params(1, 1, 1, 1)),
        case(4, 3, 16, (7, 7), (37, 36), params(3, 2, 1, 1)),
        case(1, 16, 16, (3, 3), (41, 39), params(1, 2, 1, 1)),
        // Fewer images than threads and wide maps: the forward pass in parallel bands of
        // output rows (im2col, phase-split planes, pointwise, groups).
        case(1, 8, 8, (3, 3), (40, 40), params(1, 1, 1, 1)),
        case(1, 3, 8, (7, 7), (66, 64), params(3, 2, 1, 1)),
        case(2, 16, 8, (1, 1), (36, 37), params(0, 1, 1, 1)),
        case(1, 8, 6, (3, 3), (35, 38), params(1, 1, 1, 2)),
    ];
    for (i, c) in cases.iter().enumerate() {
        let (x, w) = (c.input(90 + i as u64)?, c.weight(95 + i as u64)?);
        let reference = run(&x, &w, 4, |x, w| conv2d_reference(x, w, c.p))?;
        for threads in [1, 2, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let ours = pool.install(|| run(&x, &w, 4, |x, w| conv2d_cpu(x, w, c.p)))?;
            assert_runs_close(&ours, &reference, 1e-11, &format!("{c:?} on {threads} threads"));
            // Deterministic: the same pool gives the same bits again.
            let again = pool.install(|| run(&x, &w, 4, |x, w| conv2d_cpu(x, w, c.p)))?;
            assert_runs_close(&again, &ours, 0.0, &format!("{c:?} on {threads} threads, again"));
        }
    }
    Ok(())
}

/// Inputs wide and deep enough that im2col works in several bands of output rows (about 2 MiB
/// of column matrices each; a large pointwise convolution reads whole images in place) agree
/// with the reference, in f64 and f32, strided and grouped.
#[test]
fn bands_of_output_rows_agree() -> Result<()> {
    let cases = [
        case(2, 64, 8, (3, 3), (40, 41), params(1, 1, 1, 1)),
        case(2, 64, 8, (3, 3), (83, 80), params(1, 2, 1, 1)),
        case(1, 64, 6, (3, 5), (37, 45), params(2, 1, 2, 2)),
        case(2, 96, 4, (1, 1), (38, 39), params(0, 2, 1, 1)),
        case(2, 256, 8, (1, 1), (40, 41), params(0, 1, 1, 1)),
    ];
    for (i, c) in cases.iter().enumerate() {
        let (x, w) = (c.input(110 + i as u64)?, c.weight(120 + i as u64)?);
        for dtype in [DType::F64, DType::F32] {
            let (x, w) = (x.to_dtype(dtype)?, w.to_dtype(dtype)?);
            let ours = run(&x, &w, 6, |x, w| conv2d_cpu(x, w, c.p))?;
            let reference = run(&x, &w, 6, |x, w| conv2d_reference(x, w, c.p))?;
            let tol = if dtype == DType::F64 { 1e-11 } else { 1e-4 };
            assert_runs_close(&ours, &reference, tol, &format!("{c:?} {dtype:?}"));
        }
    }
    Ok(())
}

/// No input gradient for an input outside autograd (the image batch); no graph at all when
/// neither argument is a variable.
#[test]
fn no_input_gradient_for_plain_tensors() -> Result<()> {
    let c = CASES[1];
    let x = c.input(1)?;
    let w = Var::from_tensor(&c.weight(2)?)?;
    let out = conv2d(&x, w.as_tensor(), c.p)?;
    assert!(out.track_op());
    let grads = out.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    assert!(grads.get(w.as_tensor()).is_some());
    assert!(!conv2d(&x, &w.as_tensor().detach(), c.p)?.track_op());
    // Only the input as a variable: its gradient, none for the constant weight.
    let xv = Var::from_tensor(&x)?;
    let wc = w.as_tensor().detach();
    let grads = conv2d(xv.as_tensor(), &wc, c.p)?.sum_all()?.backward()?;
    assert!(grads.get(xv.as_tensor()).is_some());
    assert!(grads.get(&wc).is_none());
    Ok(())
}

/// Other dtypes run the reference path through `conv2d`; `conv2d_cpu` itself refuses them,
/// and refuses inconsistent shapes with an error rather than a panic.
#[test]
fn dispatch_and_errors() -> Result<()> {
    let c = CASES[5];
    let (x, w) = (c.input(1)?, c.weight(2)?);
    let half = conv2d(&x.to_dtype(DType::F16)?, &w.to_dtype(DType::F16)?, c.p)?;
    assert_close(
        &half,
        &conv2d_cpu(&x, &w, c.p)?,
        5e-2,
        "f16 through the reference path",
    );
    assert!(conv2d_cpu(&x.to_dtype(DType::F16)?, &w.to_dtype(DType::F16)?, c.p).is_err());
    assert!(conv2d_cpu(&x.to_dtype(DType::F32)?, &w, c.p).is_err());
    // Wrong input channels, groups that do not divide, an input smaller than the kernel.
    assert!(conv2d_cpu(&x.narrow(1, 0, 1)?, &w, c.p).is_err());
    assert!(conv2d_cpu(&x, &w, params(1, 2, 2, 3)).is_err());
    assert!(conv2d_cpu(&x.narrow(2, 0, 2)?, &w, params(0, 1, 2, 1)).is_err());
    assert!(conv2d_cpu(&x, &w, params(1, 0, 1, 1)).is_err());
    assert!(conv2d_cpu(&x.flatten_from(2)?, &w, c.p).is_err());
    Ok(())
}

/// An empty batch gives an empty output.
#[test]
fn empty_batch() -> Result<()> {
    let c = CASES[0];
    let x = Tensor::zeros((0, c.cin, c.hw.0, c.hw.1), DType::F32, &Device::Cpu)?;
    let w = c.weight(1)?.to_dtype(DType::F32)?;
    let (oh, ow) = c.out_hw();
    assert_eq!(conv2d_cpu(&x, &w, c.p)?.dims(), [0, c.cout, oh, ow]);
    Ok(())
}

/// `conv2d_cpu_bias_relu` against `conv2d_cpu`, `add_channel_bias` and `relu` in sequence:
/// the same bits for the output and for the input, weight and bias gradients, over every case
/// (strides, paddings, dilations, groups, the pointwise and phase-split paths), f32 and f64.
#[test]
fn bias_relu_op_matches_the_separate_ops() -> Result<()> {
    // Runs whose ReLU both passes and stops values (all but the all-dead-taps case, whose
    // output is the bias alone).
    let mut mixed = 0;
    for (i, c) in CASES.iter().enumerate() {
        for dtype in [DType::F32, DType::F64] {
            let seed = 500 + 10 * i as u64;
            let vars = [
                Var::from_tensor(&c.input(seed)?.to_dtype(dtype)?)?,
                Var::from_tensor(&c.weight(seed + 1)?.to_dtype(dtype)?)?,
                Var::from_tensor(&uniform(c.cout, 0.5, seed + 2)?.to_dtype(dtype)?)?,
            ];
            let [x, w, b] = vars.each_ref().map(Var::as_tensor);
            let fused = conv2d_cpu_bias_relu(x, w, b, c.p)?;
            let separate = relu(&add_channel_bias(&conv2d_cpu(x, w, c.p)?, b)?)?;
            let values = to_f64_vec(&fused);
            mixed += usize::from(values.contains(&0.0) && values.iter().any(|&v| v > 0.0));
            let r = uniform(fused.shape(), 1.0, seed + 3)?.to_dtype(dtype)?;
            let g_fused = fused.mul(&r)?.sum_all()?.backward()?;
            let g_separate = separate.mul(&r)?.sum_all()?.backward()?;
            let what = format!("{c:?} {dtype:?}");
            assert_close(&fused, &separate, 0.0, &format!("{what}: output"));
            for (name, v) in ["input", "weight", "bias"].iter().zip([x, w, b]) {
                let (Some(a), Some(e)) = (g_fused.get(v), g_separate.get(v)) else {
                    panic!("{what}: no {name} gradient");
                };
                assert_close(a, e, 0.0, &format!("{what}: {name} gradient"));
            }
        }
    }
    assert!(mixed >= 2 * (CASES.len() - 1), "{mixed} mixed runs");
    Ok(())
}

/// The three gradients of `conv2d_cpu_bias_relu` by finite differences in f64, and no input
/// gradient for an input outside autograd.
#[test]
fn bias_relu_op_gradients_match_finite_differences() -> Result<()> {
    for (i, c) in CASES.iter().enumerate().step_by(3) {
        let seed = 900 + 10 * i as u64;
        let (x, w, b) = (
            c.input(seed)?,
            c.weight(seed + 1)?,
            uniform(c.cout, 0.5, seed + 2)?,
        );
        assert_grad_ok(&format!("input, {c:?}"), &x, 5, |x| {
            conv2d_cpu_bias_relu(x, &w, &b, c.p)
        });
        assert_grad_ok(&format!("weight, {c:?}"), &w, 6, |w| {
            conv2d_cpu_bias_relu(&x, w, &b, c.p)
        });
        assert_grad_ok(&format!("bias, {c:?}"), &b, 7, |b| {
            conv2d_cpu_bias_relu(&x, &w, b, c.p)
        });
    }
    let c = CASES[0];
    let (x, w) = (c.input(1)?, Var::from_tensor(&c.weight(2)?)?);
    let b = Var::from_tensor(&uniform(c.cout, 0.5, 3)?)?;
    let grads = conv2d_cpu_bias_relu(&x, w.as_tensor(), b.as_tensor(), c.p)?
        .sum_all()?
        .backward()?;
    assert!(grads.get(&x).is_none());
    assert!(grads.get(w.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
    Ok(())
}

/// A bias of the wrong length, dtype or rank is an error naming the expected shape.
#[test]
fn bias_relu_op_rejects_bad_biases() -> Result<()> {
    let c = CASES[0];
    let (x, w) = (c.input(1)?, c.weight(2)?);
    for bad in [
        uniform(c.cout + 1, 0.5, 3)?,
        uniform(c.cout, 0.5, 3)?.to_dtype(DType::F32)?,
        uniform((1, c.cout), 0.5, 3)?,
    ] {
        let err = conv2d_cpu_bias_relu(&x, &w, &bad, c.p).unwrap_err().to_string();
        assert!(err.contains(&format!("[{}]", c.cout)), "{err}");
    }
    Ok(())
}

/// The fused forward passes (bias + ReLU epilogue) in parallel bands of output rows: the same
/// bits as the separate ops, on 2 and 3 threads.
#[test]
fn bias_relu_op_in_bands_matches_the_separate_ops() -> Result<()> {
    let c = case(1, 3, 8, (7, 7), (66, 64), params(3, 2, 1, 1));
    let (x, w, b) = (c.input(1)?, c.weight(2)?, uniform(c.cout, 0.5, 3)?);
    for threads in [2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let (fused, separate) = pool.install(|| -> Result<_> {
            Ok((
                conv2d_cpu_bias_relu(&x, &w, &b, c.p)?,
                relu(&add_channel_bias(&conv2d_cpu(&x, &w, c.p)?, &b)?)?,
            ))
        })?;
        assert_close(&fused, &separate, 0.0, &format!("{threads} threads"));
    }
    Ok(())
}

/// Convolutions whose forward pass is Winograd F(2x2, 3x3) (3x3, stride 1, at least 16
/// channels each way, at least 100 tiles of 2x2 outputs in a run of images) and whose
/// backward passes stay im2col's: outputs and both gradients against the nested loops on 1
/// to 3 threads, and the gradients (of the Winograd forward) by finite differences.
#[test]
fn winograd_sized_convolutions_agree() -> Result<()> {
    let cases = [
        case(1, 16, 16, (3, 3), (20, 21), params(1, 1, 1, 1)),
        case(1, 16, 24, (3, 3), (23, 22), params(0, 1, 1, 1)),
        case(1, 17, 16, (3, 3), (21, 19), params(2, 1, 1, 1)),
        case(6, 16, 16, (3, 3), (10, 14), params(1, 1, 1, 1)),
    ];
    for (i, c) in cases.iter().enumerate() {
        let (x, w) = (c.input(130 + i as u64)?, c.weight(140 + i as u64)?);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let ours = pool.install(|| run(&x, &w, 8, |x, w| conv2d_cpu(x, w, c.p)))?;
            let expected = nested_loops_run(c, &x, &w, ours.out.shape(), 8)?;
            assert_runs_close(&ours, &expected, 1e-12, &format!("{c:?} on {threads} threads"));
            let f32_run = pool.install(|| {
                run(&x.to_dtype(DType::F32)?, &w.to_dtype(DType::F32)?, 8, |x, w| {
                    conv2d_cpu(x, w, c.p)
                })
            })?;
            assert_runs_close(
                &f32_run,
                &expected,
                1e-5,
                &format!("{c:?} f32 on {threads} threads"),
            );
        }
    }
    let c = &cases[0];
    let (x, w) = (c.input(150)?, c.weight(151)?);
    assert_grad_ok("winograd input", &x, 11, |x| conv2d_cpu(x, &w, c.p));
    assert_grad_ok("winograd weight", &w, 12, |w| conv2d_cpu(&x, w, c.p));
    Ok(())
}

/// A forward pass inside `backbone::inference_mode` runs the kernels' inference path, which
/// may take Winograd F(4x4) (a 3x3 layer on a 32x32 map here); outside it the training path
/// (F(2x2)) runs whether the weight is a variable or a plain tensor, so that a model gives the
/// same bits with either: each output is its kernel's, bit for bit, and the two are within
/// F(4x4)'s rounding of each other.
#[test]
fn inference_mode_takes_the_inference_kernels() -> Result<()> {
    let p = params(1, 1, 1, 1);
    let x = uniform((1, 32, 32, 32), 1.0, 31)?.to_dtype(DType::F32)?;
    let w = uniform((32, 32, 3, 3), 0.2, 32)?.to_dtype(DType::F32)?;
    let var = Var::from_tensor(&w)?;
    let values = |t: &Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_vec1() };
    let g = kernels::conv::ConvGeometry::new(x.dims(), w.dims(), p).map_err(candle_core::Error::wrap)?;
    let (xv, wv) = (values(&x)?, values(&w)?);
    let inference = kernels::conv::forward_inference(&g, &xv, &wv, None).map_err(candle_core::Error::wrap)?;
    let training = kernels::conv::forward(&g, &xv, &wv, None, None).map_err(candle_core::Error::wrap)?;
    // The two algorithms round differently somewhere in 32,768 outputs: the paths are told apart.
    assert_ne!(inference, training, "F(4x4) and F(2x2) gave the same bits");
    for weight in [&w, var.as_tensor()] {
        let inside = backbone::inference_mode(|| conv2d_cpu(&x, weight, p))?;
        assert_eq!(values(&inside)?, inference, "inside inference_mode");
        assert_eq!(
            values(&conv2d_cpu(&x, weight, p)?)?,
            training,
            "outside inference_mode"
        );
    }
    let scale = training.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = inference
        .iter()
        .zip(&training)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-5 * scale,
        "inference and training passes {worst} apart (scale {scale})"
    );
    Ok(())
}
