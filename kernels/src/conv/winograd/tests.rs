//! Winograd against the direct convolution and its adjoint.

use super::*;
use crate::conv::winograd::{f2::F2, f4::F4};

/// A direct convolution by nested loops (f64), then the epilogue's map.
fn direct(g: &ConvGeometry, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; g.n * g.image_out()];
    for b in 0..g.n {
        for o in 0..g.cout {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut sum = 0.0;
                    for c in 0..g.cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy + ky) as isize - g.padding.0 as isize;
                                let ix = (ox + kx) as isize - g.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[((b * g.cin + c) * g.h + iy as usize) * g.w + ix as usize];
                                sum += w[((o * g.cin + c) * 3 + ky) * 3 + kx] * xv;
                            }
                        }
                    }
                    out[((b * g.cout + o) * g.oh + oy) * g.ow + ox] = sum;
                }
            }
        }
    }
    out
}

fn values(len: usize, seed: usize) -> Vec<f64> {
    (0..len)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f64 / 1001.5) - 1.0)
        .collect()
}

/// A 3x3, stride-1 convolution of `x_dims` to `cout` channels with `padding`.
fn geometry(x_dims: [usize; 4], cout: usize, padding: usize) -> ConvGeometry {
    let p = ConvParams {
        padding,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    ConvGeometry::new(&x_dims, &[cout, x_dims[1], 3, 3], p).unwrap()
}

/// The values rounded to f32.
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Asserts `|ours - expected| <= bound` element by element, naming `what` and the element.
fn assert_within<T: Float>(what: &str, ours: &[T], expected: &[f64], bound: f64) {
    assert_eq!(ours.len(), expected.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(expected).enumerate() {
        let a = a.to_f64();
        assert!((a - b).abs() <= bound, "{what} {i}: {a} vs {b}");
    }
}

/// Runs `check(threads)` inside pools of 1, 2 and 3 threads (serial and parallel plans).
fn in_pools(check: impl Fn(usize) + Sync) {
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| check(threads));
    }
}

/// Winograd's outputs equal a direct convolution's up to rounding, for odd and even
/// output sizes, paddings 0 to 2, one image or a block of several, serial and parallel,
/// in f64 and f32, with and without an epilogue (bias, batch norm, ReLU).
fn equals_the_direct_convolution<W: Tiling>(f64_tolerance: f64, f32_tolerance: f64) {
    let shapes: [([usize; 4], usize, usize); 6] = [
        ([1, 16, 20, 21], 16, 1),
        ([1, 16, 23, 22], 24, 0),
        ([1, 17, 21, 19], 16, 2),
        ([6, 16, 9, 9], 16, 1),
        ([2, 32, 30, 31], 20, 1),
        ([3, 16, 2, 41], 16, 1),
    ];
    for (x_dims, cout, padding) in shapes {
        let g = geometry(x_dims, cout, padding);
        let x = values(g.n * g.image_in(), 1);
        let w = values(g.cout * g.cin * 9, 2);
        let expected = direct(&g, &x, &w);
        let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let epilogue = Epilogue::<f64>::new(&ConvEpilogue {
            bias: Some(values(cout, 3)),
            mean: values(cout, 4),
            scale: values(cout, 5),
            shift: values(cout, 6),
            relu: true,
        });
        // The epilogue: the same map as after the direct convolution.
        let mut mapped = expected.clone();
        for (i, plane) in mapped.chunks_exact_mut(g.plane_out()).enumerate() {
            epilogue.map(i % g.cout, plane);
        }
        in_pools(|threads| {
            let what = format!("{x_dims:?} -> {cout}, padding {padding}, {threads} threads");
            let ours = forward_with::<W, _>(&g, &x, &w, None);
            assert_within(
                &format!("{what}: f64 output"),
                &ours,
                &expected,
                f64_tolerance * scale,
            );
            let ours = forward_with::<W, _>(&g, &f32s(&x), &f32s(&w), None);
            assert_within(
                &format!("{what}: f32 output"),
                &ours,
                &expected,
                f32_tolerance * scale,
            );
            let ours = forward_with::<W, _>(&g, &x, &w, Some(&epilogue));
            assert_within(
                &format!("{what}: epilogue output"),
                &ours,
                &mapped,
                f64_tolerance * scale,
            );
        });
    }
}

#[test]
fn f2_equals_the_direct_convolution() {
    equals_the_direct_convolution::<F2>(1e-13, 2e-6);
}

#[test]
fn f4_equals_the_direct_convolution() {
    equals_the_direct_convolution::<F4>(1e-13, 1e-5);
}

/// The input gradient by nested loops (f64): the adjoint of [`direct`].
fn direct_input_grad(g: &ConvGeometry, grad: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; g.n * g.image_in()];
    for b in 0..g.n {
        for o in 0..g.cout {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let dy = grad[((b * g.cout + o) * g.oh + oy) * g.ow + ox];
                    for c in 0..g.cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy + ky) as isize - g.padding.0 as isize;
                                let ix = (ox + kx) as isize - g.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let at = ((b * g.cin + c) * g.h + iy as usize) * g.w + ix as usize;
                                dx[at] += w[((o * g.cin + c) * 3 + ky) * 3 + kx] * dy;
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// The input gradient through Winograd's forward pass (transposed, flipped weight) equals
/// the direct adjoint up to rounding, for paddings 0 to 2, one image or several, channels
/// in and out unequal, serial and parallel, f64 and f32; shapes the adjoint convolution
/// does not qualify for are left to im2col (`None`).
fn input_gradient_equals_the_direct_adjoint<W: Tiling>(f64_tolerance: f64, f32_tolerance: f64) {
    let shapes: [([usize; 4], usize, usize); 5] = [
        ([1, 16, 20, 21], 24, 1),
        ([1, 20, 23, 22], 16, 0),
        ([1, 17, 21, 19], 16, 2),
        ([2, 32, 30, 31], 20, 1),
        ([6, 16, 16, 16], 16, 1),
    ];
    for (x_dims, cout, padding) in shapes {
        let g = geometry(x_dims, cout, padding);
        let grad = values(g.n * g.image_out(), 7);
        let w = values(g.cout * g.cin * 9, 8);
        let expected = direct_input_grad(&g, &grad, &w);
        let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        in_pools(|threads| {
            let what = format!("{x_dims:?} -> {cout}, padding {padding}, {threads} threads");
            let ours = adjoint_forward::<W, _>(&g, &grad, &w);
            assert_within(
                &format!("{what}: f64 dx"),
                &ours,
                &expected,
                f64_tolerance * scale,
            );
            let ours = adjoint_forward::<W, _>(&g, &f32s(&grad), &f32s(&w));
            assert_within(
                &format!("{what}: f32 dx"),
                &ours,
                &expected,
                f32_tolerance * scale,
            );
        });
    }
    let q = |padding, stride, groups| ConvParams {
        padding,
        stride,
        dilation: 1,
        groups,
    };
    let taken = |x: [usize; 4], w: [usize; 4], p: ConvParams| {
        let g = ConvGeometry::new(&x, &w, p).unwrap();
        let grad = vec![0f32; g.n * g.image_out()];
        input_grad(&g, &grad, &vec![0f32; w.iter().product()]).is_some()
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        assert!(taken([1, 64, 56, 56], [64, 64, 3, 3], q(1, 1, 1)));
        assert!(!taken([1, 64, 56, 56], [64, 64, 3, 3], q(1, 2, 1)));
        assert!(!taken([1, 64, 56, 56], [64, 32, 3, 3], q(1, 1, 2)));
        assert!(!taken([1, 64, 56, 56], [8, 64, 3, 3], q(1, 1, 1)));
        assert!(!taken([1, 8, 56, 56], [64, 8, 3, 3], q(1, 1, 1)));
        assert!(!taken([1, 64, 56, 56], [64, 64, 3, 3], q(3, 1, 1)));
        assert!(!taken([1, 64, 56, 56], [64, 64, 1, 1], q(0, 1, 1)));
    });
}

/// The input gradient by `W`: its forward pass of the adjoint convolution.
fn adjoint_forward<W: Tiling, T: Float>(g: &ConvGeometry, grad: &[T], w: &[T]) -> Vec<T> {
    forward_with::<W, T>(
        &adjoint(g).expect("an adjoint of the input's size"),
        grad,
        &flip(g, w),
        None,
    )
}

#[test]
fn f2_input_gradient_equals_the_direct_adjoint() {
    input_gradient_equals_the_direct_adjoint::<F2>(1e-13, 2e-6);
}

#[test]
fn f4_input_gradient_equals_the_direct_adjoint() {
    input_gradient_equals_the_direct_adjoint::<F4>(1e-13, 1e-5);
}

/// Only 3x3, stride-1, undilated, ungrouped convolutions with enough channels and tiles.
#[test]
fn applies_to_resnet_shapes_only() {
    let p = |padding, stride, dilation, groups| ConvParams {
        padding,
        stride,
        dilation,
        groups,
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        let yes = |x: [usize; 4], w: [usize; 4], q| applies(&ConvGeometry::new(&x, &w, q).unwrap());
        assert!(yes([1, 64, 56, 56], [64, 64, 3, 3], p(1, 1, 1, 1)));
        assert!(!yes([1, 64, 56, 56], [64, 64, 3, 3], p(1, 2, 1, 1)));
        assert!(!yes([1, 64, 56, 56], [64, 64, 3, 3], p(2, 1, 2, 1)));
        assert!(!yes([1, 64, 56, 56], [64, 32, 3, 3], p(1, 1, 1, 2)));
        assert!(!yes([1, 8, 56, 56], [64, 8, 3, 3], p(1, 1, 1, 1)));
        assert!(!yes([1, 64, 56, 56], [8, 64, 3, 3], p(1, 1, 1, 1)));
        assert!(!yes([1, 64, 56, 56], [64, 64, 1, 1], p(0, 1, 1, 1)));
        assert!(!yes([1, 512, 7, 7], [512, 512, 3, 3], p(1, 1, 1, 1)));
        assert!(yes([16, 256, 14, 14], [256, 256, 3, 3], p(1, 1, 1, 1)));
        assert!(!yes([16, 512, 7, 7], [512, 512, 3, 3], p(1, 1, 1, 1)));
        // A 1x1 map: 8 of the 9 taps read only padding.
        assert!(!yes([128, 64, 1, 1], [64, 64, 3, 3], p(1, 1, 1, 1)));
    });
}

/// In inference passes F(4x4) for maps at least 16 wide with enough tiles, F(2x2) for
/// Winograd's other shapes; in training passes F(2x2); [`Winograd::F2Only`] and
/// [`Winograd::Off`] limit the choice.
#[test]
fn the_tiling_follows_the_width_and_the_tiles() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        let square = |n: usize, c: usize, size: usize| geometry([n, c, size, size], c, 1);
        let choice = |n, c, size, allowed| choose_among(&square(n, c, size), allowed, true);
        use Winograd::{Both, F2Only, Off};
        assert_eq!(choice(1, 64, 56, Both), Some(Choice::F4));
        assert_eq!(choice(8, 64, 224, Both), Some(Choice::F4));
        assert_eq!(choice(16, 128, 28, Both), Some(Choice::F4));
        assert_eq!(choice(64, 128, 16, Both), Some(Choice::F4));
        // 49 tiles of 4x4.
        assert_eq!(choice(1, 128, 28, Both), Some(Choice::F2));
        // Not a multiple of 4 wide.
        assert_eq!(choice(16, 256, 14, Both), Some(Choice::F2));
        assert_eq!(choice(16, 512, 7, Both), None);
        assert_eq!(choice(1, 64, 56, F2Only), Some(Choice::F2));
        assert_eq!(choice(1, 64, 56, Off), None);
        assert_eq!(choice(16, 256, 14, Off), None);
        // Training passes: F(2x2) only.
        assert_eq!(choose_among(&square(1, 64, 56), Both, false), Some(Choice::F2));
        assert_eq!(choose_among(&square(1, 64, 56), Off, false), None);
    });
}

/// A weight prepared once gives the bits of the per-call transform with the same tiling,
/// for both tilings, serial and parallel, with an epilogue.
#[test]
fn prepared_weights_give_the_bits_of_the_per_call_transform() {
    for (x_dims, cout) in [([1, 16, 20, 21], 24), ([3, 32, 16, 16], 16), ([1, 24, 7, 7], 32)] {
        let g = geometry(x_dims, cout, 1);
        let (x, w) = (
            f32s(&values(g.n * g.image_in(), 7)),
            f32s(&values(g.cout * g.cin * 9, 8)),
        );
        let epilogue = Epilogue::<f32>::new(&ConvEpilogue {
            bias: Some(values(cout, 3)),
            mean: values(cout, 4),
            scale: values(cout, 5),
            shift: values(cout, 6),
            relu: true,
        });
        in_pools(|threads| {
            for choice in [Choice::F2, Choice::F4] {
                let prepared = prepare_weight(&g, &w, choice).unwrap();
                assert_eq!(prepared.choice(), choice);
                assert_eq!(prepared.len(), choice.positions() * g.cout * g.cin);
                let ours = forward_prepared(&g, &x, &prepared, Some(&epilogue)).unwrap();
                let per_call = match choice {
                    Choice::F2 => forward_with::<F2, f32>(&g, &x, &w, Some(&epilogue)),
                    Choice::F4 => forward_with::<F4, f32>(&g, &x, &w, Some(&epilogue)),
                };
                assert!(
                    ours.iter()
                        .zip(&per_call)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{x_dims:?} -> {cout}, {}, {threads} threads",
                    choice.name()
                );
            }
        });
    }
}

/// On the small maps only a prepared weight takes (7x7, batch 1), F(2x2) from a prepared
/// weight still equals the direct convolution up to F(2x2)'s rounding.
#[test]
fn prepared_weights_on_small_maps_match_the_direct_convolution() {
    let g = geometry([1, 32, 7, 7], 48, 1);
    assert_eq!(prepared_choice_among(&g, Winograd::Both), Some(Choice::F2));
    assert_eq!(choose_among(&g, Winograd::Both, true), None);
    let (x, w) = (values(g.n * g.image_in(), 1), values(g.cout * g.cin * 9, 2));
    let expected = direct(&g, &x, &w);
    let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    in_pools(|threads| {
        let prepared = prepare_weight(&g, &w, Choice::F2).unwrap();
        let ours = forward_prepared(&g, &x, &prepared, None).unwrap();
        assert_within(
            &format!("f64, {threads} threads"),
            &ours,
            &expected,
            1e-13 * scale,
        );
        let prepared = prepare_weight(&g, &f32s(&w), Choice::F2).unwrap();
        let ours = forward_prepared(&g, &f32s(&x), &prepared, None).unwrap();
        assert_within(&format!("f32, {threads} threads"), &ours, &expected, 2e-6 * scale);
    });
}

/// With a prepared weight the tile limits go and the width limits stay: F(4x4) from 16
/// wide (ResNet's 28x28 maps at batch 1 too), F(2x2) from 7 wide, nothing narrower or of
/// another shape; [`Winograd::F2Only`] and [`Winograd::Off`] still limit the choice.
#[test]
fn the_prepared_tiling_follows_the_width_only() {
    let square = |n: usize, c: usize, size: usize| geometry([n, c, size, size], c, 1);
    let choice = |g: &ConvGeometry, allowed| prepared_choice_among(g, allowed);
    use Winograd::{Both, F2Only, Off};
    assert_eq!(choice(&square(1, 128, 28), Both), Some(Choice::F4));
    assert_eq!(choice(&square(1, 64, 16), Both), Some(Choice::F4));
    assert_eq!(choice(&square(1, 256, 14), Both), Some(Choice::F2));
    assert_eq!(choice(&square(1, 512, 7), Both), Some(Choice::F2));
    assert_eq!(choice(&square(64, 512, 4), Both), None);
    assert_eq!(choice(&square(1, 128, 28), F2Only), Some(Choice::F2));
    assert_eq!(choice(&square(1, 128, 28), Off), None);
    let strided = ConvGeometry::new(
        &[1, 64, 56, 56],
        &[64, 64, 3, 3],
        ConvParams {
            padding: 1,
            stride: 2,
            dilation: 1,
            groups: 1,
        },
    )
    .unwrap();
    assert_eq!(choice(&strided, Both), None);
}

/// A weight of other sizes, a convolution Winograd does not compute, and a prepared weight
/// of another convolution are errors that say what was given.
#[test]
fn prepared_weights_of_other_convolutions_are_errors() {
    let g = geometry([1, 16, 8, 8], 16, 1);
    let w = vec![0.5f32; 16 * 16 * 9];
    let short = prepare_weight(&g, &w[1..], Choice::F2).unwrap_err().to_string();
    assert!(short.contains("2303"), "{short}");
    let one_by_one = ConvGeometry::new(
        &[1, 16, 8, 8],
        &[16, 16, 1, 1],
        ConvParams {
            padding: 0,
            stride: 1,
            dilation: 1,
            groups: 1,
        },
    )
    .unwrap();
    let err = prepare_weight(&one_by_one, &w[..256], Choice::F2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1x1") && err.contains("F(2x2, 3x3)"), "{err}");
    let prepared = prepare_weight(&g, &w, Choice::F4).unwrap();
    let other = geometry([1, 16, 8, 8], 32, 1);
    let x = vec![1.0f32; 16 * 64];
    let err = forward_prepared(&other, &x, &prepared, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("F(4x4, 3x3) of 16 -> 16") && err.contains("16 to 32"),
        "{err}"
    );
    let err = forward_prepared(&g, &x[1..], &prepared, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1023"), "{err}");
}

/// A run's `V` and `M` buffers, kept for the thread's next run, never leak into it: a small
/// convolution after a larger one (on the same thread, buffers longer than it needs, full of
/// the larger one's values) gives the bits it gives on a fresh thread, for both tilings.
/// (Checked to fail when the buffers are not cleared and one `V` value is left unwritten.)
#[test]
fn kept_buffers_do_not_leak_into_the_next_run() {
    let large = geometry([2, 24, 20, 20], 32, 1);
    let small = geometry([1, 16, 16, 17], 16, 0);
    let (xl, wl) = (
        f32s(&values(large.n * large.image_in(), 1)),
        f32s(&values(32 * 24 * 9, 2)),
    );
    let (xs, ws) = (
        f32s(&values(small.n * small.image_in(), 3)),
        f32s(&values(16 * 16 * 9, 4)),
    );
    for choice in [Choice::F2, Choice::F4] {
        let run = |g: &ConvGeometry, x: &[f32], w: &[f32]| match choice {
            Choice::F2 => forward_with::<F2, f32>(g, x, w, None),
            Choice::F4 => forward_with::<F4, f32>(g, x, w, None),
        };
        // Each on the one thread of a new pool (the run is then serial, on that thread).
        let on_new_thread = |f: &(dyn Fn() -> Vec<f32> + Sync)| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            pool.install(f)
        };
        let fresh = on_new_thread(&|| run(&small, &xs, &ws));
        let after = on_new_thread(&|| {
            run(&large, &xl, &wl);
            run(&small, &xs, &ws)
        });
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&after), bits(&fresh), "{choice:?}");
        let expected = direct(
            &small,
            &values(small.n * small.image_in(), 3),
            &values(16 * 16 * 9, 4),
        );
        assert_within(&format!("{choice:?} after a larger run"), &after, &expected, 1e-3);
    }
}
