//! The blocked layout's kernels against plain loops, on every path this CPU has.

use super::*;
use crate::isa::Isa;

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

#[test]
fn layouts_round_trip_and_bad_shapes_are_errors() {
    let x = values(2 * 19 * 5 * 3, 5);
    let b = Blocked::from_nchw(&x, [2, 19, 5, 3], 8).unwrap();
    assert_eq!(b.blocks(), 3);
    assert_eq!(b.to_nchw(), x);
    assert!(Blocked::from_nchw(&x, [2, 19, 5, 4], 8).is_err());
    assert!(BlockedConv::new(&[0.0; 8], None, [2, 2, 1, 1], 1, 0, false).is_err());
    let conv =
        BlockedConv::with_isa(Isa::Portable, &[1.0; 19 * 4], None, [4, 19, 1, 1], 1, 0, false).unwrap();
    assert!(conv
        .forward(&Blocked::from_nchw(&x[..30], [1, 2, 5, 3], 8).unwrap(), None)
        .is_err());
}

#[test]
fn pooling_matches_plain_loops() {
    let dims = [2, 19, 11, 12];
    let mut x = values(dims.iter().product(), 6);
    x[40] = f32::NAN;
    for block in [8, 16] {
        let bx = Blocked::from_nchw(&x, dims, block).unwrap();
        let pooled = max_pool(&bx, 3, 2, 1).unwrap();
        assert_eq!((pooled.h, pooled.w), (6, 6));
        let out = pooled.to_nchw();
        for (plane, o) in x.chunks(11 * 12).zip(out.chunks(36)) {
            for oy in 0..6usize {
                for ox in 0..6usize {
                    let mut m = f32::NEG_INFINITY;
                    for iy in (2 * oy).saturating_sub(1)..(2 * oy + 2).min(11) {
                        for ix in (2 * ox).saturating_sub(1)..(2 * ox + 2).min(12) {
                            let v = plane[iy * 12 + ix];
                            if v > m || v.is_nan() {
                                m = v;
                            }
                        }
                    }
                    assert_eq!(o[oy * 6 + ox].to_bits(), m.to_bits());
                }
            }
        }
        let avg = global_average(&bx).unwrap();
        for (a, plane) in avg.iter().zip(x.chunks(11 * 12)) {
            let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / 132.0;
            assert!(
                mean.is_nan() && a.is_nan() || (*a as f64 - mean).abs() < 1e-6,
                "{a} {mean}"
            );
        }
    }
}

#[test]
fn folding_a_batch_norm_gives_the_norm_of_the_convolution() {
    let (mut w, mut b) = (vec![1.0, 2.0, 3.0, 4.0], vec![0.5, -0.5]);
    fold_batch_norm(&mut w, &mut b, &[1.0, 2.0], &[2.0, 0.5], &[0.25, 0.0]).unwrap();
    assert_eq!(w, [2.0, 4.0, 1.5, 2.0]);
    assert_eq!(b, [(0.5 - 1.0) * 2.0 + 0.25, (-0.5 - 2.0) * 0.5]);
    assert!(fold_batch_norm(&mut w, &mut b, &[1.0], &[2.0], &[0.0]).is_err());
}

/// conv + bias (+ residual) (+ ReLU) by nested loops in f64.
#[allow(clippy::too_many_arguments)]
fn direct(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    wt: &[f32],
    [o, _, kh, kw]: [usize; 4],
    bias: &[f32],
    res: Option<&[f32]>,
    s: usize,
    p: usize,
    relu: bool,
) -> Vec<f64> {
    let (oh, ow) = ((h + 2 * p - kh) / s + 1, (w + 2 * p - kw) / s + 1);
    let mut out = vec![0.0; n * o * oh * ow];
    for b in 0..n {
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = bias[oc] as f64;
                    for ic in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (
                                    (oy * s + ky) as isize - p as isize,
                                    (ox * s + kx) as isize - p as isize,
                                );
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    sum += x[((b * c + ic) * h + iy as usize) * w + ix as usize] as f64
                                        * wt[((oc * c + ic) * kh + ky) * kw + kx] as f64;
                                }
                            }
                        }
                    }
                    let at = ((b * o + oc) * oh + oy) * ow + ox;
                    if let Some(r) = res {
                        sum += r[at] as f64;
                    }
                    out[at] = if relu { sum.max(0.0) } else { sum };
                }
            }
        }
    }
    out
}

/// Every available path against the plain loops: 3x3 (stride 1 and 2), 1x1 (stride 1
/// and 2), 7x7 stride 2, channel counts that do not fill a block, rows longer and shorter
/// than a tile, tiles across rows and images, groups of fewer blocks, several chunks of
/// input blocks, with and without residual and ReLU.
#[test]
fn blocked_convolutions_match_plain_loops_on_every_path() {
    let cases = [
        ([2, 16, 15, 30], [32, 16, 3, 3], 1, 1, true, true),
        ([1, 20, 9, 14], [24, 20, 3, 3], 2, 1, true, false),
        ([1, 32, 8, 13], [16, 32, 1, 1], 1, 0, false, true),
        ([2, 16, 10, 10], [40, 16, 1, 1], 2, 0, false, false),
        ([1, 3, 23, 29], [16, 3, 7, 7], 2, 3, true, false),
        // Several groups (the last of one block), several chunks of input blocks.
        ([3, 48, 7, 7], [80, 48, 3, 3], 1, 1, true, true),
        ([1, 130, 6, 5], [72, 130, 3, 3], 1, 1, false, true),
        // Winograd F(4x4, 3x3): partial last tiles, channels that do not fill a block,
        // several tasks.
        ([2, 20, 17, 18], [24, 20, 3, 3], 1, 1, true, true),
        ([3, 32, 16, 20], [16, 32, 3, 3], 1, 1, false, false),
    ];
    let mut winograd_cases = 0;
    for isa in crate::isa::available() {
        for (xd, wd, s, p, relu, with_res) in cases {
            let (x, wt, bias) = (
                values(xd.iter().product(), 1),
                values(wd.iter().product(), 2),
                values(wd[0], 3),
            );
            let (oh, ow) = ((xd[2] + 2 * p - wd[2]) / s + 1, (xd[3] + 2 * p - wd[3]) / s + 1);
            let res = values(xd[0] * wd[0] * oh * ow, 4);
            let res = with_res.then_some(&res[..]);
            let expected = direct(&x, xd, &wt, wd, &bias, res, s, p, relu);
            let conv = BlockedConv::with_isa(isa, &wt, Some(&bias), wd, s, p, relu).unwrap();
            let br = res.map(|r| Blocked::from_nchw(r, [xd[0], wd[0], oh, ow], conv.block()).unwrap());
            // The input in the convolution's blocks, and (fewer channels than a block) in
            // one narrow block of its own.
            let narrow = (xd[1] < conv.block()).then_some(xd[1]);
            for input_block in [conv.block()].into_iter().chain(narrow) {
                let bx = Blocked::from_nchw(&x, xd, input_block).unwrap();
                let out = conv.forward(&bx, br.as_ref()).unwrap().to_nchw();
                let scale = expected.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
                // Winograd F(4x4)'s transforms round about ten times more.
                let tiles = xd[0] * xd[2].div_ceil(4) * xd[3].div_ceil(4);
                let wino = conv.has_winograd()
                    && xd[3] >= WINOGRAD_MIN_WIDTH
                    && tiles >= WINOGRAD_MIN_TILES
                    && input_block == conv.block();
                winograd_cases += usize::from(wino);
                let tolerance = if wino { 2e-5 } else { 2e-6 };
                for (i, (&a, &b)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        (a as f64 - b).abs() <= tolerance * scale,
                        "{isa} {xd:?} {wd:?} (input blocks of {input_block}): {i}: {a} vs {b}"
                    );
                }
            }
        }
    }
    assert!(winograd_cases >= 3, "Winograd ran {winograd_cases} cases");
}
