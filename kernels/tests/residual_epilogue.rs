//! The residual epilogue (`Epilogue::with_residual`: `relu(bn(conv(x)) + residual)` in the
//! convolution's own pass) against the convolution with the batch norm only followed by
//! `elementwise::add_relu`, bit for bit, on every forward path that applies an epilogue: the
//! pointwise product of whole images, blocks of small images (tap tables), bands of output
//! rows of one large image, Winograd F(2x2) and F(4x4) per call and from a prepared weight;
//! serial and on 2 threads; and a residual of the wrong size is an error.

use kernels::conv::{
    forward, forward_inference, forward_prepared, prepare_weight, prepared_choice, ConvEpilogue,
    ConvGeometry, ConvParams, Epilogue,
};
use kernels::elementwise::add_relu;

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

fn norm(cout: usize, relu: bool) -> ConvEpilogue {
    let v = |seed: usize, scale: f64, offset: f64| -> Vec<f64> {
        (0..cout)
            .map(|c| ((c * 31 + seed) % 17) as f64 / 17.0 * scale + offset)
            .collect()
    };
    ConvEpilogue {
        bias: None,
        mean: v(1, 0.2, -0.1),
        scale: v(2, 1.5, 0.25),
        shift: v(3, 0.4, -0.2),
        relu,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

/// `(input, weight, padding, stride)`: which path each takes is in the comment.
const CASES: &[([usize; 4], [usize; 4], usize, usize)] = &[
    // Pointwise, whole images of at least 256 positions (the input planes are the columns).
    ([2, 24, 20, 20], [40, 24, 1, 1], 0, 1),
    // Pointwise, blocks of small images; strided pointwise.
    ([3, 16, 7, 7], [24, 16, 1, 1], 0, 1),
    ([2, 16, 14, 14], [32, 16, 1, 1], 0, 2),
    // 3x3 on small maps (tap tables), strided 3x3.
    ([3, 8, 8, 8], [16, 8, 3, 3], 1, 1),
    ([2, 8, 15, 13], [12, 8, 3, 3], 1, 2),
    // One large image: bands of output rows on 2 threads (7x7 stride-2 stem).
    ([1, 3, 64, 64], [16, 3, 7, 7], 3, 2),
    // Winograd: F(4x4) (16 wide and more), F(2x2) (narrower), both per call and prepared.
    ([2, 16, 16, 16], [16, 16, 3, 3], 1, 1),
    ([1, 32, 9, 9], [32, 32, 3, 3], 1, 1),
];

#[test]
fn the_residual_epilogue_is_the_epilogue_then_add_relu() {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for &(x_dims, w_dims, padding, stride) in CASES {
                let p = ConvParams {
                    padding,
                    stride,
                    dilation: 1,
                    groups: 1,
                };
                let g = ConvGeometry::new(&x_dims, &w_dims, p).unwrap();
                let x = values(g.n() * g.cin() * g.h() * g.w(), 1);
                let w = values(w_dims.iter().product(), 2);
                let residual = values(g.output_dims().iter().product(), 3);
                let (plain, fused) = (
                    Epilogue::<f32>::new(&norm(g.cout(), false)),
                    Epilogue::<f32>::new(&norm(g.cout(), true)).with_residual(&residual),
                );
                let what = format!("{x_dims:?} {w_dims:?} p{padding} s{stride} on {threads} threads");
                let expected = add_relu(&forward_inference(&g, &x, &w, Some(&plain)).unwrap(), &residual);
                let ours = forward_inference(&g, &x, &w, Some(&fused)).unwrap();
                assert_eq!(bits(&ours), bits(&expected), "inference {what}");
                let expected = add_relu(&forward(&g, &x, &w, Some(&plain), None).unwrap(), &residual);
                let ours = forward(&g, &x, &w, Some(&fused), None).unwrap();
                assert_eq!(bits(&ours), bits(&expected), "forward {what}");
                if let Some(choice) = prepared_choice(&g) {
                    let prepared = prepare_weight(&g, &w, choice).unwrap();
                    let expected = add_relu(
                        &forward_prepared(&g, &x, &prepared, Some(&plain)).unwrap(),
                        &residual,
                    );
                    let ours = forward_prepared(&g, &x, &prepared, Some(&fused)).unwrap();
                    assert_eq!(bits(&ours), bits(&expected), "prepared {what}");
                }
            }
        });
    }
}

#[test]
fn a_residual_of_the_wrong_size_is_an_error() {
    let p = ConvParams {
        padding: 1,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    let g = ConvGeometry::new(&[1, 16, 16, 16], &[16, 16, 3, 3], p).unwrap();
    let (x, w) = (values(16 * 256, 1), values(16 * 16 * 9, 2));
    let short = values(16 * 256 - 1, 3);
    let e = Epilogue::<f32>::new(&norm(16, true)).with_residual(&short);
    for message in [
        forward_inference(&g, &x, &w, Some(&e)).unwrap_err().to_string(),
        forward(&g, &x, &w, Some(&e), None).unwrap_err().to_string(),
        forward_prepared(
            &g,
            &x,
            &prepare_weight(&g, &w, prepared_choice(&g).unwrap()).unwrap(),
            Some(&e),
        )
        .unwrap_err()
        .to_string(),
    ] {
        assert!(
            message.contains("residual of 4095 values") && message.contains("[1, 16, 16, 16]"),
            "{message}"
        );
    }
}
