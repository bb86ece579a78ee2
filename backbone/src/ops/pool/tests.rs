//! Unit tests of the output-size rule, the windows, the strided view and the device path's taps.

use super::custom_ops::view4;
use super::device::tap_indices;
use super::{pool_output_size, Pool2dParams};
use candle_core::Layout;
use kernels::pool::windows;

/// Brute force of PyTorch's rule with plain integer arithmetic.
fn reference(i: usize, k: usize, s: usize, p: usize, ceil: bool) -> Option<usize> {
    if k == 0 || s == 0 || p > k / 2 || i == 0 {
        return None;
    }
    let padded = (i + 2 * p) as i64;
    let span = padded - k as i64;
    let mut out = if ceil {
        // ceil(span / s) + 1 for span >= -(s-1)
        if span < -(s as i64 - 1) {
            return None;
        }
        (span + s as i64 - 1).div_euclid(s as i64) + 1
    } else {
        if span < 0 {
            return None;
        }
        span / s as i64 + 1
    };
    if ceil && (out - 1) * s as i64 >= (i + p) as i64 {
        out -= 1;
    }
    (out >= 1).then_some(out as usize)
}

#[test]
fn output_size_matches_rule_and_min_input() {
    for k in 1..6 {
        for s in 1..5 {
            for p in 0..=k / 2 {
                for ceil in [false, true] {
                    for i in 0..20 {
                        assert_eq!(
                            pool_output_size(i, k, s, p, ceil),
                            reference(i, k, s, p, ceil),
                            "{i} {k} {s} {p} {ceil}"
                        );
                    }
                    let params = Pool2dParams {
                        stride: (s, s),
                        padding: (p, p),
                        ceil_mode: ceil,
                        ..Pool2dParams::new((k, k))
                    };
                    let (m, _) = params.min_input_size();
                    assert!(
                        pool_output_size(m, k, s, p, ceil).is_some(),
                        "{k} {s} {p} {ceil} min {m}"
                    );
                    if m > 1 {
                        assert!(
                            pool_output_size(m - 1, k, s, p, ceil).is_none(),
                            "{k} {s} {p} {ceil} min {m}"
                        );
                    }
                }
            }
        }
    }
    // PyTorch examples: 7 with k3 s2 p1 ceil -> 4; 6 with k2 s2 ceil -> 3; 5 k2 s2 ceil -> 3.
    assert_eq!(pool_output_size(7, 3, 2, 1, true), Some(4));
    assert_eq!(pool_output_size(5, 2, 2, 0, true), Some(3));
    assert_eq!(pool_output_size(5, 2, 2, 0, false), Some(2));
    // Last window would start in the right padding: dropped.
    assert_eq!(pool_output_size(4, 2, 2, 1, true), Some(3));
    assert_eq!(pool_output_size(2, 3, 3, 1, true), Some(1));
    assert_eq!(pool_output_size(5, 3, 2, 2, false), None);
    assert_eq!(pool_output_size(5, 0, 2, 0, false), None);
    assert_eq!(pool_output_size(5, 2, 0, 0, false), None);
}

#[test]
fn windows_stay_inside_input_and_are_never_empty() {
    for k in 1..6 {
        for s in 1..5 {
            for p in 0..=k / 2 {
                for ceil in [false, true] {
                    for i in 1..15 {
                        let Some(o) = pool_output_size(i, k, s, p, ceil) else {
                            continue;
                        };
                        for win in windows(o, k, s, p, i).unwrap() {
                            assert!(win.start() < win.end() && win.end() <= i);
                            assert!(win.padded_len() >= win.len() && win.padded_len() <= k);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn view_rejects_layouts_outside_the_buffer() {
    let data = [0f32; 10];
    let layout = Layout::contiguous((1, 1, 3, 4));
    assert!(view4("t", &data, &layout).is_err());
    let layout = Layout::contiguous((1, 1, 2, 5));
    assert!(view4("t", &data, &layout).is_ok());
    let layout = Layout::contiguous((2, 5));
    assert!(view4("t", &data, &layout).is_err());
}

/// The device path clamps the taps that fall in the padding (or past it, in ceil mode) to the
/// input's first or last element; that element must belong to the same window, so clamping
/// never changes a window's maximum or where its gradient goes.
#[test]
fn clamped_taps_stay_inside_their_window() {
    for k in 1..6 {
        for s in 1..5 {
            for p in 0..=k / 2 {
                for ceil in [false, true] {
                    for i in 1..15 {
                        let Some(o) = pool_output_size(i, k, s, p, ceil) else {
                            continue;
                        };
                        let wins = windows(o, k, s, p, i).unwrap();
                        let taps = tap_indices(o, k, s, p, i).expect("small sizes");
                        assert_eq!(taps.len(), k);
                        for tap in &taps {
                            for (&t, win) in tap.iter().zip(&wins) {
                                let t = t as usize;
                                assert!(win.start() <= t && t < win.end(), "{i} {k} {s} {p} {ceil}");
                            }
                        }
                        // Every real element of each window is some tap.
                        for (ow, win) in wins.iter().enumerate() {
                            for e in win.start()..win.end() {
                                assert!(taps.iter().any(|tap| tap[ow] as usize == e));
                            }
                        }
                    }
                }
            }
        }
    }
}
