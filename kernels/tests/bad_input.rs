//! Inputs that do not fit together, fed to the kernels' public functions: each used to panic
//! (an index out of bounds, a division by zero, an overflow), and now returns an error whose
//! message names the op and the sizes; next to each, the valid path against plain loops.

use kernels::batch_norm::{affine1, affine2, grad_sums, masked2, moments, paired_sums, Coefs, Planes};
use kernels::blocked::{Blocked, BlockedConv};
use kernels::conv::{output_len, Columns, ConvGeometry, ConvParams};
use kernels::depthwise::DepthwiseParams;
use kernels::pool::{
    adaptive_divisor, adaptive_windows, avg_divisor, avg_pool_bwd, avg_pool_fwd, max_pool_bwd, max_pool_fwd,
    windows, View4, Window,
};

fn values(len: usize, seed: usize) -> Vec<f64> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f64 / 1001.5 - 1.0)
        .collect()
}

/// The error's message, which must name `parts` (the op, the argument, the lengths).
#[track_caller]
fn assert_err<T: std::fmt::Debug>(result: kernels::Result<T>, parts: &[&str]) {
    let message = match result {
        Ok(v) => panic!("expected an error naming {parts:?}, got Ok({v:?})"),
        Err(e) => e.to_string(),
    };
    for part in parts {
        assert!(message.contains(part), "{message:?} does not name {part:?}");
    }
}

#[track_caller]
fn assert_close(what: &str, got: &[f64], expected: &[f64]) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= 1e-9 * (1.0 + e.abs()),
            "{what} [{i}]: {g} against {e}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Batch norm.

/// `[N, C, HW] = [2, 3, 20]`.
fn planes() -> Planes {
    Planes::new("test", &[2, 3, 4, 5], 3).unwrap()
}

#[test]
fn planes_refuse_sizes_a_usize_cannot_count() {
    assert_err(
        Planes::new("op", &[usize::MAX, 2, 2, 2], 2),
        &["op", "more values than a usize counts"],
    );
    assert_err(
        Planes::new("op", &[2, 3, 4, 5], 4),
        &["op", "[N, 4, H, W]", "[2, 3, 4, 5]"],
    );
    let p = planes();
    assert_eq!((p.n(), p.c(), p.hw(), p.len()), (2, 3, 20, 120));
}

#[test]
fn plane_checks_the_buffer_and_the_indices() {
    let p = planes();
    assert_err(
        p.plane(&[0f64; 10], 0, 0),
        &["batch_norm::Planes::plane", "data has 10 values, expected 120"],
    );
    let x = values(120, 1);
    assert_err(
        p.plane(&x, 2, 0),
        &["batch_norm::Planes::plane", "(2, 0)", "[2, 3]"],
    );
    assert_err(
        p.plane(&x, 0, 3),
        &["batch_norm::Planes::plane", "(0, 3)", "[2, 3]"],
    );
    assert_eq!(p.plane(&x, 1, 2).unwrap(), &x[100..120]);
}

#[test]
fn moments_refuse_short_buffers_and_empty_channels() {
    let p = planes();
    assert_err(
        moments(&values(119, 1), p),
        &["batch_norm::moments", "x has 119 values, expected 120"],
    );
    let empty = Planes::new("test", &[0, 3, 4, 5], 3).unwrap();
    assert_err(
        moments::<f64>(&[], empty),
        &[
            "batch_norm::moments",
            "at least one value per channel",
            "[0, 3, 20]",
        ],
    );
    // No channels: nothing to compute.
    let none = Planes::new("test", &[2, 0, 4, 5], 0).unwrap();
    assert_eq!(moments::<f64>(&[], none).unwrap(), vec![]);
}

/// Plain loops over `[N, C, HW]`: `f(ch, index)` for every value of channel `ch`.
fn per_value(p: Planes, mut f: impl FnMut(usize, usize)) {
    for i in 0..p.n() {
        for ch in 0..p.c() {
            for j in 0..p.hw() {
                f(ch, (i * p.c() + ch) * p.hw() + j);
            }
        }
    }
}

#[test]
fn grad_sums_check_both_buffers_and_the_mean() {
    let p = planes();
    let (x, dy) = (values(120, 1), values(120, 2));
    let mean = [0.1, -0.2, 0.3];
    assert_err(
        grad_sums(&x, &dy[..60], p, &mean),
        &["batch_norm::grad_sums", "dy has 60 values, expected 120"],
    );
    assert_err(
        grad_sums(&x[..1], &dy, p, &mean),
        &["batch_norm::grad_sums", "x has 1 values, expected 120"],
    );
    assert_err(
        grad_sums(&x, &dy, p, &mean[..2]),
        &["batch_norm::grad_sums", "mean has 2 values, expected 3"],
    );
    let got = grad_sums(&x, &dy, p, &mean).unwrap();
    let mut expected = vec![(0.0, 0.0); 3];
    per_value(p, |ch, k| {
        expected[ch].0 += dy[k];
        expected[ch].1 += dy[k] * (x[k] - mean[ch]);
    });
    let flat = |v: &[(f64, f64)]| v.iter().flat_map(|&(a, b)| [a, b]).collect::<Vec<_>>();
    assert_close("grad_sums", &flat(&got), &flat(&expected));
}

#[test]
fn coefs_need_one_value_per_channel_or_none() {
    assert_err(
        Coefs::<f64>::new(&[0.0; 3], &[1.0; 2], &[], &[]),
        &["batch_norm::Coefs::new", "[3, 2, 0, 0]", "expected 3"],
    );
    assert!(Coefs::<f32>::new(&[0.0; 3], &[1.0; 3], &[0.0; 3], &[]).is_ok());
    assert!(Coefs::<f32>::new(&[], &[], &[], &[2.0; 3]).is_ok());
}

#[test]
fn affine_passes_check_buffers_and_the_coefficients_they_read() {
    let p = planes();
    let (x, dy) = (values(120, 3), values(120, 4));
    let (mean, q, r, a) = (
        [0.1, 0.2, 0.3],
        [1.5, -0.5, 2.0],
        [0.0, 1.0, -1.0],
        [0.5, 2.0, -1.5],
    );
    let full = Coefs::<f64>::new(&mean, &q, &r, &a).unwrap();
    let only_p = Coefs::<f64>::new(&[], &[], &[], &a).unwrap();
    let two = Coefs::<f64>::new(&mean[..2], &q[..2], &r[..2], &a[..2]).unwrap();

    assert_err(
        affine1::<_, false>(&x[..119], p, &full),
        &["batch_norm::affine1", "x has 119 values, expected 120"],
    );
    assert_err(
        affine1::<_, true>(&x, p, &only_p),
        &["batch_norm::affine1", "mean has 0 values, expected 3"],
    );
    assert_err(
        affine1::<_, false>(&x, p, &two),
        &["batch_norm::affine1", "mean has 2 values, expected 3"],
    );
    assert_err(
        affine2(&x, &dy[..100], p, &full),
        &["batch_norm::affine2", "dy has 100 values, expected 120"],
    );
    let no_p = Coefs::<f64>::new(&mean, &q, &r, &[]).unwrap();
    assert_err(
        affine2(&x, &dy, p, &no_p),
        &["batch_norm::affine2", "p has 0 values, expected 3"],
    );
    assert_err(
        masked2(&x[..5], &dy, p, &only_p),
        &["batch_norm::masked2", "y has 5 values, expected 120"],
    );
    assert_err(
        masked2(&x, &dy, p, &no_p),
        &["batch_norm::masked2", "p has 0 values, expected 3"],
    );

    // The valid paths against plain loops.
    let (mut plain1, mut plain2, mut masked) = (vec![0.0; 120], vec![0.0; 120], vec![0.0; 120]);
    per_value(p, |ch, k| {
        plain1[k] = ((x[k] - mean[ch]) * q[ch] + r[ch]).max(0.0);
        plain2[k] = dy[k] * a[ch] + (x[k] - mean[ch]) * q[ch] + r[ch];
        masked[k] = if x[k] > 0.0 { dy[k] * a[ch] } else { 0.0 };
    });
    assert_close("affine1", &affine1::<_, true>(&x, p, &full).unwrap(), &plain1);
    assert_close("affine2", &affine2(&x, &dy, p, &full).unwrap(), &plain2);
    assert_close("masked2", &masked2(&x, &dy, p, &only_p).unwrap(), &masked);
}

#[test]
fn paired_sums_need_equal_lengths() {
    let (a, b) = (values(1000, 5), values(1000, 6));
    assert_err(
        paired_sums(&a, &b[..999], |u, v| (u, v)),
        &["batch_norm::paired_sums", "a has 1000 values and b 999"],
    );
    let (s0, s1) = paired_sums(&a, &b, |u, v| (u, u * v)).unwrap();
    let plain: (f64, f64) = (a.iter().sum(), a.iter().zip(&b).map(|(u, v)| u * v).sum());
    assert_close("paired_sums", &[s0, s1], &[plain.0, plain.1]);
}

// ---------------------------------------------------------------------------------------------
// Pooling.

#[test]
fn windows_are_checked_when_made() {
    assert_err(Window::new(3, 2, 1), &["pool::Window::new", "[3, 2)"]);
    assert_err(
        Window::new(1, 4, 2),
        &["pool::Window::new", "[1, 4)", "padded length 2"],
    );
    let w = Window::new(1, 4, 5).unwrap();
    assert_eq!((w.start(), w.end(), w.len(), w.padded_len()), (1, 4, 3, 5));
    assert_err(windows(3, 0, 1, 0, 5), &["pool::windows", "kernel 0"]);
    assert_err(windows(3, 2, 0, 0, 5), &["pool::windows", "stride 0"]);
    assert_err(windows(usize::MAX, 2, 2, 0, 5), &["pool::windows", "overflow"]);
    assert_err(windows(2, 2, 2, usize::MAX, 5), &["pool::windows", "overflow"]);
    assert_err(
        adaptive_windows(0, 5),
        &["pool::adaptive_windows", "0 outputs over 5"],
    );
    assert_err(
        adaptive_windows(3, 0),
        &["pool::adaptive_windows", "3 outputs over 0"],
    );
    assert_err(
        adaptive_windows(usize::MAX, 3),
        &["pool::adaptive_windows", "overflow"],
    );
    // The divisors saturate instead of overflowing.
    let huge = Window::new(0, 0, usize::MAX).unwrap();
    assert_eq!(avg_divisor(true)(&huge, &huge), usize::MAX);
    assert_eq!(adaptive_divisor(&huge, &huge), 0);
}

#[test]
fn views_refuse_offsets_a_usize_cannot_count() {
    let data = [0f64; 4];
    // No elements, but plane offsets past `usize::MAX`.
    assert_err(
        View4::new("op", &data, 0, [3, 1, 0, 2], [usize::MAX, 1, 1, 1]).map(|v| v.dims()),
        &["op", "[3, 1, 0, 2]", "4 elements"],
    );
    assert!(View4::new("op", &data, 0, [3, 1, 0, 2], [2, 2, 2, 1]).is_ok());
    assert_err(
        View4::contiguous("op", &data, [1, usize::MAX, 2, 2]).map(|v| v.dims()),
        &["op", "more elements than a usize counts"],
    );
    assert_eq!(
        View4::contiguous("op", &data, [1, 1, 2, 2]).unwrap().dims(),
        [1, 1, 2, 2]
    );
}

/// A `[1, 2, 4, 5]` input and its contiguous view.
fn input() -> Vec<f64> {
    values(40, 7)
}

#[test]
fn pooling_refuses_windows_outside_the_input() {
    let x = input();
    let view = View4::contiguous("test", &x, [1, 2, 4, 5]).unwrap();
    let wh = windows(2, 2, 2, 0, 4).unwrap();
    // Past the width: the separable path's row slice, and the 2x2 fast path, would read
    // outside the input.
    let wide = vec![Window::new(0, 9, 9).unwrap()];
    let pairs: Vec<Window> = (0..3)
        .map(|o| Window::new(2 * o, 2 * o + 2, 2).unwrap())
        .collect();
    assert_err(
        max_pool_fwd(&view, &wh, &wide),
        &[
            "pool::max_pool_fwd",
            "window 0 of ww, [0, 9)",
            "input of 5 positions",
        ],
    );
    assert_err(
        max_pool_fwd(&view, &pairs, &wh),
        &[
            "pool::max_pool_fwd",
            "window 2 of wh, [4, 6)",
            "input of 4 positions",
        ],
    );
    assert_err(
        avg_pool_fwd(&view, &wh, &pairs, avg_divisor(false)),
        &[
            "pool::avg_pool_fwd",
            "window 2 of ww, [4, 6)",
            "input of 5 positions",
        ],
    );
    let g = values(2 * 2 * 3, 8);
    let gview = View4::contiguous("test", &g, [1, 2, 2, 3]).unwrap();
    assert_err(
        max_pool_bwd(&view, &gview, &wh, &pairs),
        &[
            "pool::max_pool_bwd",
            "window 2 of ww, [4, 6)",
            "input of 5 positions",
        ],
    );
    assert_err(
        avg_pool_bwd(&gview, (4, 5), &pairs, &pairs, adaptive_divisor),
        &[
            "pool::avg_pool_bwd",
            "window 2 of wh, [4, 6)",
            "input of 4 positions",
        ],
    );
}

#[test]
fn pooling_backward_checks_the_gradient_dims() {
    let x = input();
    let view = View4::contiguous("test", &x, [1, 2, 4, 5]).unwrap();
    let (wh, ww) = (windows(2, 2, 2, 0, 4).unwrap(), windows(2, 2, 2, 0, 5).unwrap());
    // One output column too few, one channel too many.
    let g = values(4, 8);
    let short = View4::contiguous("test", &g, [1, 2, 2, 1]).unwrap();
    assert_err(
        max_pool_bwd(&view, &short, &wh, &ww),
        &[
            "pool::max_pool_bwd",
            "g has dims [1, 2, 2, 1], expected [1, 2, 2, 2]",
        ],
    );
    assert_err(
        avg_pool_bwd(&short, (4, 5), &wh, &ww, avg_divisor(true)),
        &[
            "pool::avg_pool_bwd",
            "g has dims [1, 2, 2, 1], expected [1, 2, 2, 2]",
        ],
    );
    let g = values(3 * 2 * 2, 9);
    let channels = View4::contiguous("test", &g, [1, 3, 2, 2]).unwrap();
    assert_err(
        max_pool_bwd(&view, &channels, &wh, &ww),
        &[
            "pool::max_pool_bwd",
            "g has dims [1, 3, 2, 2], expected [1, 2, 2, 2]",
        ],
    );
}

/// More outputs than the input holds: the windows past the input are empty and lie at its end
/// (they used to start past it, and the separable path sliced past the row).
#[test]
fn windows_past_the_input_are_empty_and_pool_to_nothing() {
    let x = input();
    let view = View4::contiguous("test", &x, [1, 2, 4, 5]).unwrap();
    let (wh, ww) = (windows(2, 2, 2, 0, 4).unwrap(), windows(5, 2, 2, 0, 5).unwrap());
    assert!(ww[3..].iter().all(|w| w.is_empty() && w.end() <= 5));
    let max = max_pool_fwd(&view, &wh, &ww).unwrap();
    let avg = avg_pool_fwd(&view, &wh, &ww, avg_divisor(false)).unwrap();
    for (nc, (m, a)) in max.chunks(10).zip(avg.chunks(10)).enumerate() {
        for oy in 0..2 {
            for ox in 0..5 {
                let taps: Vec<f64> = (2 * oy..2 * oy + 2)
                    .flat_map(|iy| (2 * ox..(2 * ox + 2).min(5)).map(move |ix| (iy, ix)))
                    .map(|(iy, ix)| x[(nc * 4 + iy) * 5 + ix])
                    .collect();
                let plain_max = taps.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let plain_avg = match taps.len() {
                    0 => 0.0,
                    n => taps.iter().sum::<f64>() / n as f64,
                };
                assert_eq!(m[oy * 5 + ox], plain_max, "max {nc} {oy} {ox}");
                assert!((a[oy * 5 + ox] - plain_avg).abs() < 1e-12, "avg {nc} {oy} {ox}");
            }
        }
    }
    let g = values(2 * 2 * 5, 10);
    let gview = View4::contiguous("test", &g, [1, 2, 2, 5]).unwrap();
    let dx = max_pool_bwd(&view, &gview, &wh, &ww).unwrap();
    let da = avg_pool_bwd(&gview, (4, 5), &wh, &ww, avg_divisor(false)).unwrap();
    // The empty windows send nothing: each input element gets the share of its one window.
    for (nc, (dx, da)) in dx.chunks(20).zip(da.chunks(20)).enumerate() {
        let plane = &x[nc * 20..][..20];
        for oy in 0..2 {
            for ox in 0..2 {
                let cells = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(a, b)| (2 * oy + a) * 5 + 2 * ox + b);
                let arg = cells
                    .iter()
                    .copied()
                    .fold(cells[0], |m, k| if plane[k] > plane[m] { k } else { m });
                let gv = g[(nc * 2 + oy) * 5 + ox];
                for k in cells {
                    assert_eq!(dx[k], if k == arg { gv } else { 0.0 }, "max bwd {nc} {k}");
                    assert!((da[k] - gv / 4.0).abs() < 1e-12, "avg bwd {nc} {k}");
                }
            }
            // Column 4 is in window 2 only (a single column).
            for iy in 2 * oy..2 * oy + 2 {
                let gv = g[(nc * 2 + oy) * 5 + 2];
                assert!((da[iy * 5 + 4] - gv / 2.0).abs() < 1e-12, "avg bwd {nc} {iy}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Convolutions.

#[test]
fn output_len_does_not_overflow() {
    assert_eq!(output_len(5, 3, usize::MAX, 1, 1), None);
    assert_eq!(output_len(usize::MAX, 1, 1, 1, 1), None);
    assert_eq!(output_len(5, 3, 1, 2, 1), Some(3));
}

#[test]
fn geometries_refuse_buffers_a_usize_cannot_count() {
    let p = ConvParams {
        padding: 1,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    assert_err(
        ConvGeometry::new(&[usize::MAX / 2, 4, 4, 4], &[4, 4, 3, 3], p),
        &["conv2d", "more elements than a usize counts"],
    );
    // Even with no images: the per-image sizes must fit.
    assert_err(
        ConvGeometry::new(&[0, 1 << 40, 1 << 20, 1 << 20], &[1, 1 << 40, 1, 1], p),
        &["conv2d", "more elements than a usize counts"],
    );
    let padded = ConvParams {
        padding: usize::MAX / 2,
        ..p
    };
    assert_err(
        ConvGeometry::new(&[1, 1, 4, 4], &[1, 1, 3, 3], padded),
        &["conv2d"],
    );
    assert_err(
        kernels::depthwise::geometry(&[usize::MAX / 2, 4, 4, 4], &[4, 1, 3, 3], DepthwiseParams::new()),
        &["depthwise_conv2d", "more elements than a usize counts"],
    );
    let g = ConvGeometry::new(&[2, 4, 6, 5], &[8, 2, 3, 3], ConvParams { groups: 2, ..p }).unwrap();
    assert_eq!(
        (
            g.n(),
            g.cin(),
            g.h(),
            g.w(),
            g.cout(),
            g.groups(),
            g.kh(),
            g.kw(),
            g.oh(),
            g.ow()
        ),
        (2, 4, 6, 5, 8, 2, 3, 3, 6, 5)
    );
    assert_eq!(
        (g.padding(), g.stride(), g.dilation(), g.live()),
        ((1, 1), 1, 1, 9)
    );
    // A byte count past `usize::MAX` keeps nothing (instead of overflowing).
    assert!(!Columns::wanted(&g, true, usize::MAX));
}

#[test]
fn depthwise_kernels_refuse_a_grouped_geometry_and_convolve_a_depthwise_one() {
    let p = ConvParams {
        padding: 1,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    // A dense convolution's geometry: its weight `[4, 2, 3, 3]` is not a depthwise one.
    let dense = ConvGeometry::new(&[1, 2, 5, 5], &[4, 2, 3, 3], p).unwrap();
    let (x, w, grad) = (values(50, 1), values(72, 2), values(100, 3));
    assert_err(
        kernels::depthwise::forward(&dense, &x, &w),
        &["depthwise_conv2d", "1 groups over 2 input channels"],
    );
    assert_err(
        kernels::depthwise::input_grad(&dense, &grad, &w),
        &["depthwise_conv2d_input_grad", "not depthwise"],
    );
    assert_err(
        kernels::depthwise::weight_grad(&dense, &x, &grad),
        &["depthwise_conv2d_weight_grad", "not depthwise"],
    );
    // A depthwise geometry (channel multiplier 2; on a 1-row input with padding 1 and stride
    // 2, only the middle kernel row is live) is a grouped convolution's too: the im2col
    // kernels, which leave the dead taps out, give the same outputs.
    let dp = DepthwiseParams::new().padding(1).stride(2);
    let dg = kernels::depthwise::geometry(&[1, 2, 1, 5], &[4, 1, 3, 3], dp).unwrap();
    assert_eq!((dg.oh(), dg.ow(), dg.live()), (1, 3, 3));
    let (x, w) = (values(10, 4), values(36, 5));
    let direct = kernels::depthwise::forward(&dg, &x, &w).unwrap();
    let im2col = kernels::conv::forward(&dg, &x, &w, None, None).unwrap();
    assert_close("depthwise as a grouped convolution", &direct, &im2col);
}

// ---------------------------------------------------------------------------------------------
// Blocked layout, element-wise passes.

#[test]
fn blocked_layouts_check_their_sizes() {
    // No channels: nothing to copy (this used to ask for chunks of length 0).
    let empty = Blocked::from_nchw(&[], [2, 0, 3, 3], 8).unwrap();
    assert!(empty.is_consistent() && empty.data().is_empty() && empty.to_nchw().is_empty());
    assert_err(
        Blocked::from_nchw(&[], [usize::MAX, 2, 2, 2], 8),
        &["blocked layout", "0 values", "blocks of 8"],
    );
    assert_err(
        Blocked::from_nchw(&[1.0; 4], [1, 1, 2, 2], 0),
        &["blocked layout", "blocks of 0"],
    );
    let x: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32).collect();
    let b = Blocked::from_nchw(&x, [2, 3, 2, 2], 8).unwrap();
    assert_eq!(
        (b.n(), b.c(), b.h(), b.w(), b.block(), b.blocks()),
        (2, 3, 2, 2, 8, 1)
    );
    assert_eq!(b.to_nchw(), x);
    assert_err(
        BlockedConv::new(&[], None, [usize::MAX, 2, 3, 3], 1, 1, false),
        &["blocked conv", "0 weights", "stride 1"],
    );
    let conv = BlockedConv::new(&[1.0; 12], None, [2, 3, 2, 1], 1, 0, true).unwrap();
    assert_eq!(
        (
            conv.cin(),
            conv.cout(),
            conv.kernel(),
            conv.stride(),
            conv.padding(),
            conv.relu()
        ),
        (3, 2, (2, 1), 1, 0, true)
    );
}

#[test]
fn channel_sums_of_an_image_past_usize_read_nothing() {
    assert_eq!(
        kernels::elementwise::channel_sums(&[1.0f64; 4], usize::MAX, 2),
        vec![0.0; 2]
    );
    assert_eq!(
        kernels::elementwise::channel_sums(&[1.0f64; 4], 2, 2),
        vec![2.0; 2]
    );
}

/// Both forward passes, training's and inference's, check the buffers against the geometry
/// and the epilogue against the output channels, and name the pass.
#[test]
fn forward_passes_check_their_buffers_and_epilogue() {
    let p = ConvParams {
        padding: 1,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    let g = ConvGeometry::new(&[1, 16, 20, 20], &[16, 16, 3, 3], p).unwrap();
    let (x, w) = (vec![0f32; 16 * 400], vec![0f32; 16 * 16 * 9]);
    let message = |r: kernels::Result<Vec<f32>>| r.unwrap_err().to_string();
    assert!(message(kernels::conv::forward(&g, &x[1..], &w, None, None)).contains("conv2d forward"));
    assert!(message(kernels::conv::forward_inference(&g, &x[1..], &w, None)).contains("conv2d forward"));
    assert!(message(kernels::conv::forward_inference(&g, &x, &w[1..], None)).contains("conv2d forward"));
    let epilogue = kernels::conv::Epilogue::<f32>::new(&kernels::conv::ConvEpilogue {
        bias: Some(vec![0.0; 15]),
        mean: Vec::new(),
        scale: Vec::new(),
        shift: Vec::new(),
        relu: false,
    });
    assert!(kernels::conv::forward_inference(&g, &x, &w, Some(&epilogue)).is_err());
    assert_eq!(
        kernels::conv::forward_inference(&g, &x, &w, None).unwrap().len(),
        16 * 400
    );
}
