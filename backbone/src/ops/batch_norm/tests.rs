//! Unit tests of the kernels.

use super::*;

#[test]
fn moments_survive_a_large_mean() {
    // Variance 2/3 around a mean of 1e4: the shifted sums keep it to f64 precision.
    let x: Vec<f64> = (0..300).map(|i| 1e4 + (i % 3) as f64 - 1.0).collect();
    let p = Planes { n: 3, c: 1, hw: 100 };
    let (mean, var) = moments(&x, p)[0];
    assert!((mean - 1e4).abs() < 1e-9, "{mean}");
    assert!((var - 2.0 / 3.0).abs() < 1e-9, "{var}");
}

#[test]
fn blocks_cover_whole_planes() {
    for (n, c, hw) in [(1, 1, 1), (3, 5, 7), (2, 64, 1), (1, 2, CHUNK + 3), (40, 7, 300)] {
        let p = Planes { n, c, hw };
        let x: Vec<f64> = (0..p.len()).map(|i| i as f64).collect();
        let k = Coefs::<f64>::new(
            &(0..c).map(|k| k as f64).collect::<Vec<_>>(),
            &vec![2.0; c],
            &vec![1.0; c],
            &[],
        );
        let out = affine1::<_, false>(&x, p, &k);
        for (i, &o) in out.iter().enumerate() {
            let ch = (i / hw) % c;
            assert_eq!(o, (i as f64 - ch as f64) * 2.0 + 1.0, "{n} {c} {hw} {i}");
        }
    }
}
