//! Every ISA path this CPU runs, forced through `kernels::isa::set_isa`, against plain
//! reference loops; and the paths against each other where the kernels promise the same bits
//! (`kernels::isa`'s documentation). CI also runs the whole suite under each value of
//! `CONVNETS_KERNELS_ISA`.

use kernels::conv::{ConvGeometry, ConvParams};
use kernels::isa::{available, isa, set_isa, Isa};
use kernels::pool::{avg_divisor, avg_pool_bwd, avg_pool_fwd, max_pool_bwd, max_pool_fwd, windows, View4};
use std::sync::Mutex;

/// The ISA choice is process-wide: the tests of this file take turns.
static TURN: Mutex<()> = Mutex::new(());

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

fn bits(v: &[f32]) -> Bits {
    Bits(v.iter().map(|f| f.to_bits()).collect())
}

/// Bit patterns compared element by element, a mismatch reported by its first index.
#[derive(PartialEq)]
struct Bits(Vec<u32>);

impl std::fmt::Debug for Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} values, first {:?}",
            self.0.len(),
            self.0
                .iter()
                .take(4)
                .map(|&b| f32::from_bits(b))
                .collect::<Vec<_>>()
        )
    }
}

fn first_difference(a: &Bits, b: &Bits) -> Option<usize> {
    (a.0.len() != b.0.len())
        .then_some(a.0.len().min(b.0.len()))
        .or_else(|| a.0.iter().zip(&b.0).position(|(x, y)| x != y))
}

/// Runs `f` under every available path (restoring the chosen one after), returning each
/// path's result.
fn on_every_path<R>(f: impl Fn(Isa) -> R) -> Vec<(Isa, R)> {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let before = isa();
    let out = available()
        .into_iter()
        .map(|path| {
            set_isa(path).unwrap();
            assert_eq!(isa(), path);
            (path, f(path))
        })
        .collect();
    set_isa(before).unwrap();
    out
}

fn assert_close(what: &str, ours: &[f32], reference: &[f64], tol: f64) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let scale = reference.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a as f64 - b).abs() <= tol * scale,
            "{what}: element {i}: {a} against {b} (scale {scale})"
        );
    }
}

/// Results that must be the same bits on every path.
fn assert_same_bits(what: &str, results: &[(Isa, Vec<f32>)]) {
    for (path, r) in &results[1..] {
        let (ours, first) = (bits(r), bits(&results[0].1));
        assert_eq!(
            first_difference(&ours, &first),
            None,
            "{what}: {path} differs from {}",
            results[0].0
        );
    }
}

#[test]
fn elementwise_passes_match_plain_loops_on_every_path() {
    let len = (1 << 16) + 13;
    let (a, b) = (values(len, 1), values(len, 2));
    let results = on_every_path(|path| {
        let relu = kernels::elementwise::relu(&a);
        let expected: Vec<f32> = a.iter().map(|&v| if v < 0.0 { 0.0 } else { v }).collect();
        assert_eq!(
            first_difference(&bits(&relu), &bits(&expected)),
            None,
            "relu on {path}"
        );
        let sum = kernels::elementwise::add_relu(&a, &b);
        let expected: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| (x + y).max(0.0)).collect();
        assert_eq!(
            first_difference(&bits(&sum), &bits(&expected)),
            None,
            "add_relu on {path}"
        );
        let back = kernels::elementwise::relu_backward(&a, &b);
        // The mask multiplies (as the composite form): `-0.0` where a negative gradient is masked.
        let expected: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(&y, &g)| g * if y > 0.0 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(
            first_difference(&bits(&back), &bits(&expected)),
            None,
            "relu_backward on {path}"
        );
        let (c, plane) = (7, 100);
        let x = &a[..4 * c * plane];
        let bias = values(c, 3);
        let biased = kernels::elementwise::add_channel_bias(x, &bias, plane);
        let expected: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v + bias[(i / plane) % c])
            .collect();
        assert_eq!(
            first_difference(&bits(&biased), &bits(&expected)),
            None,
            "bias on {path}"
        );
        let sums = kernels::elementwise::channel_sums(x, plane, c);
        let expected: Vec<f64> = (0..c)
            .map(|ch| {
                (0..4)
                    .flat_map(|n| x[(n * c + ch) * plane..][..plane].iter())
                    .map(|&v| v as f64)
                    .sum()
            })
            .collect();
        assert_close(&format!("channel sums on {path}"), &sums, &expected, 1e-6);
        [relu, sum, back, biased, sums].concat()
    });
    assert_same_bits("element-wise passes", &results);
}

#[test]
fn batch_norm_passes_match_plain_loops_on_every_path() {
    let (n, c, hw) = (3, 5, 1000);
    let x = values(n * c * hw, 4);
    let p = kernels::batch_norm::Planes::new("test", &[n, c, 40, 25], c).unwrap();
    let results = on_every_path(|path| {
        let moments = kernels::batch_norm::moments(&x, p).unwrap();
        for (ch, &(mean, var)) in moments.iter().enumerate() {
            let vals: Vec<f64> = (0..n)
                .flat_map(|i| x[(i * c + ch) * hw..][..hw].iter())
                .map(|&v| v as f64)
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|&x| (x - m) * (x - m)).sum::<f64>() / vals.len() as f64;
            assert!(
                (mean - m).abs() < 1e-6 && (var - v).abs() < 1e-6,
                "moments on {path}: {mean} {var} against {m} {v}"
            );
        }
        let k = kernels::batch_norm::Coefs::<f32>::new(&[0.1; 5], &[1.5; 5], &[-0.2; 5], &[]).unwrap();
        let y = kernels::batch_norm::affine1::<f32, true>(&x, p, &k).unwrap();
        let expected: Vec<f32> = x.iter().map(|&v| ((v - 0.1) * 1.5 - 0.2).max(0.0)).collect();
        assert_eq!(
            first_difference(&bits(&y), &bits(&expected)),
            None,
            "eval batch norm + ReLU on {path}"
        );
        let flat: Vec<f32> = moments.iter().flat_map(|&(m, v)| [m as f32, v as f32]).collect();
        [y, flat].concat()
    });
    assert_same_bits("batch-norm passes", &results);
}

#[test]
fn pooling_matches_plain_loops_on_every_path() {
    let dims = [2, 3, 17, 20];
    let x = values(dims.iter().product(), 5);
    let view = View4::contiguous("test", &x, dims).unwrap();
    let (wh, ww) = (
        windows(9, 3, 2, 1, 17).unwrap(),
        windows(10, 3, 2, 1, 20).unwrap(),
    );
    let g = values(2 * 3 * 9 * 10, 6);
    let gview = View4::contiguous("test", &g, [2, 3, 9, 10]).unwrap();
    let results = on_every_path(|path| {
        let max = max_pool_fwd(&view, &wh, &ww).unwrap();
        let avg = avg_pool_fwd(&view, &wh, &ww, avg_divisor(true)).unwrap();
        let (mut max_ref, mut avg_ref) = (Vec::new(), Vec::new());
        for plane in x.chunks(17 * 20) {
            for oy in 0..9 {
                for ox in 0..10 {
                    let (mut m, mut s) = (f32::NEG_INFINITY, 0f64);
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = ((2 * oy + ky) as isize - 1, (2 * ox + kx) as isize - 1);
                            if (0..17).contains(&iy) && (0..20).contains(&ix) {
                                let v = plane[iy as usize * 20 + ix as usize];
                                m = m.max(v);
                                s += v as f64;
                            }
                        }
                    }
                    max_ref.push(m);
                    avg_ref.push(s / 9.0);
                }
            }
        }
        assert_eq!(
            first_difference(&bits(&max), &bits(&max_ref)),
            None,
            "max pooling on {path}"
        );
        assert_close(&format!("average pooling on {path}"), &avg, &avg_ref, 1e-6);
        let dmax = max_pool_bwd(&view, &gview, &wh, &ww).unwrap();
        let davg = avg_pool_bwd(&gview, (17, 20), &wh, &ww, avg_divisor(true)).unwrap();
        [max, avg, dmax, davg].concat()
    });
    assert_same_bits("pooling", &results);
}

/// A direct convolution by nested loops in f64.
fn direct(x: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f64> {
    let mut out = vec![0.0; g.n() * g.cout() * g.oh() * g.ow()];
    let (cg, og) = (g.cin() / g.groups(), g.cout() / g.groups());
    for b in 0..g.n() {
        for o in 0..g.cout() {
            let group = o / og;
            for oy in 0..g.oh() {
                for ox in 0..g.ow() {
                    let mut sum = 0.0;
                    for c in 0..cg {
                        for ky in 0..g.kh() {
                            for kx in 0..g.kw() {
                                let iy =
                                    (oy * g.stride() + ky * g.dilation()) as isize - g.padding().0 as isize;
                                let ix =
                                    (ox * g.stride() + kx * g.dilation()) as isize - g.padding().1 as isize;
                                if iy < 0 || ix < 0 || iy >= g.h() as isize || ix >= g.w() as isize {
                                    continue;
                                }
                                let xv = x[((b * g.cin() + group * cg + c) * g.h() + iy as usize) * g.w()
                                    + ix as usize];
                                sum += w[((o * cg + c) * g.kh() + ky) * g.kw() + kx] as f64 * xv as f64;
                            }
                        }
                    }
                    out[((b * g.cout() + o) * g.oh() + oy) * g.ow() + ox] = sum;
                }
            }
        }
    }
    out
}

#[test]
fn convolutions_match_plain_loops_on_every_path() {
    let p = |padding, stride, groups| ConvParams {
        padding,
        stride,
        dilation: 1,
        groups,
    };
    // im2col + gemm (strided, grouped, pointwise) and Winograd (3x3, stride 1, 16+ channels).
    let cases = [
        ([2, 8, 13, 11], [16, 4, 3, 3], p(1, 2, 2)),
        ([1, 16, 10, 10], [8, 16, 1, 1], p(0, 1, 1)),
        ([2, 16, 20, 21], [16, 16, 3, 3], p(1, 1, 1)),
    ];
    for (xd, wd, params) in cases {
        let g = ConvGeometry::new(&xd, &wd, params).unwrap();
        let (x, w) = (values(xd.iter().product(), 7), values(wd.iter().product(), 8));
        let expected = direct(&x, &w, &g);
        let results = on_every_path(|path| {
            let out = kernels::conv::forward(&g, &x, &w, None, None).unwrap();
            assert_close(&format!("conv {xd:?} {wd:?} on {path}"), &out, &expected, 1e-5);
            let dw = kernels::depthwise::geometry(
                &[xd[0], xd[1], xd[2], xd[3]],
                &[xd[1], 1, 3, 3],
                Default::default(),
            )
            .and_then(|dg| kernels::depthwise::forward(&dg, &x, &values(xd[1] * 9, 9)))
            .unwrap_or_default();
            [out, dw].concat()
        });
        // The products are gemm's whatever the path, the rest the same loops: the same bits.
        assert_same_bits("convolutions", &results);
    }
}

#[test]
fn unavailable_paths_are_refused() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let before = isa();
    for path in Isa::ALL {
        assert_eq!(set_isa(path).is_ok(), available().contains(&path), "{path}");
    }
    set_isa(before).unwrap();
}
