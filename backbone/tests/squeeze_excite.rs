//! Squeeze-and-excitation against the same arithmetic written out by hand, from given weights.

use backbone::layers::{Activation, Layer, SqueezeExcite, SqueezeExciteConfig};
use backbone::Error;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn squeeze_excite_matches_the_formula_and_reads_the_given_names() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    // 2 channels squeezed to 1: reduce weight [1, 2, 1, 1], expand weight [2, 1, 1, 1].
    let (w1, b1) = ([0.5f32, -1.25], 0.1f32);
    let (w2, b2) = ([2.0f32, -0.75], [0.3f32, -0.2]);
    let mut t = HashMap::new();
    t.insert(
        "se.conv_reduce.weight".to_string(),
        Tensor::new(&w1, &dev)?.reshape((1, 2, 1, 1))?,
    );
    t.insert("se.conv_reduce.bias".to_string(), Tensor::new(&[b1], &dev)?);
    t.insert(
        "se.conv_expand.weight".to_string(),
        Tensor::new(&w2, &dev)?.reshape((2, 1, 1, 1))?,
    );
    t.insert("se.conv_expand.bias".to_string(), Tensor::new(&b2, &dev)?);
    let vb = VarBuilder::from_tensors(t, DType::F32, &dev);
    let config = SqueezeExciteConfig::new(2, 1)
        .act(Activation::Silu)
        .names("conv_reduce", "conv_expand");
    let se = SqueezeExcite::new(config, vb.pp("se"))?;

    let x: Vec<f32> = (0..2 * 2 * 3 * 3)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3)
        .collect();
    let xs = Tensor::from_vec(x.clone(), (2, 2, 3, 3), &dev)?;
    let got = se.forward_t(&xs, false)?.flatten_all()?.to_vec1::<f32>()?;

    for n in 0..2 {
        let mean = |c: usize| x[(n * 2 + c) * 9..(n * 2 + c + 1) * 9].iter().sum::<f32>() / 9.0;
        let (m0, m1) = (mean(0), mean(1));
        let z = w1[0] * m0 + w1[1] * m1 + b1;
        let z = z * sigmoid(z);
        for c in 0..2 {
            let gate = sigmoid(w2[c] * z + b2[c]);
            for i in 0..9 {
                let k = (n * 2 + c) * 9 + i;
                let want = x[k] * gate;
                assert!(
                    (got[k] - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{k}: {} vs {want}",
                    got[k]
                );
            }
        }
    }
    Ok(())
}

#[test]
fn squeeze_excite_refuses_a_zero_width_and_a_map_that_is_not_nchw() -> Result<(), Box<dyn std::error::Error>>
{
    let dev = Device::Cpu;
    let vb = VarBuilder::zeros(DType::F32, &dev);
    assert!(matches!(
        SqueezeExcite::new(SqueezeExciteConfig::new(4, 0), vb.clone()),
        Err(Error::Config(_))
    ));
    let se = SqueezeExcite::new(SqueezeExciteConfig::new(4, 2), vb)?;
    let err = se.forward_t(&Tensor::zeros((2, 4), DType::F32, &dev)?, false);
    assert!(matches!(err, Err(Error::InputShape { .. })), "{err:?}");
    Ok(())
}
