//! TensorFlow's "SAME" padding (`Conv2dConfig::same_padding`) against timm's `Conv2dSame` and
//! `create_conv2d(padding='same')` (`scripts/gen_conv_same_fixtures.py`): outputs and gradients
//! (input, weight, bias) of dense, depthwise, dilated and even-kernel convolutions on even,
//! odd and mixed sizes; finite differences in f64; the padding itself; the folded eval path of
//! a conv + batch norm block.

use crate::common;

use backbone::layers::{BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Layer};
use candle_core::{DType, Tensor, Var};
use common::*;
use std::collections::HashMap;

/// A "SAME"-padded configuration from a fixture's `[in, out, kernel, stride, dilation, groups,
/// bias, dynamic]`.
fn same_config(p: &[i64]) -> Conv2dConfig {
    let u = |i: usize| p[i] as usize;
    let c = Conv2dConfig::new(u(0), u(1), u(2))
        .stride(u(3))
        .dilation(u(4))
        .groups(u(5))
        .same_padding();
    if p[6] == 0 {
        c.no_bias()
    } else {
        c
    }
}

#[test]
fn same_padding_matches_timms_conv2d_same() -> TestResult {
    let fx = load_fixture("conv_same");
    let cases = fixture_case_names(&fx);
    assert_eq!(cases.len(), 10);
    let (mut dynamic, mut asymmetric) = (0, 0);
    for case in &cases {
        let get = |name: &str| fixture_tensor(&fx, &format!("{case}.{name}"));
        let params = get("params").to_vec1::<i64>()?;
        let cfg = same_config(&params);
        let what = format!("conv_same/{case} {params:?}");
        let weight = Var::from_tensor(&get("weight"))?;
        let bias = cfg.bias.then(|| Var::from_tensor(&get("bias"))).transpose()?;
        let mut map = HashMap::from([("conv.weight".to_string(), weight.as_tensor().clone())]);
        if let Some(b) = &bias {
            map.insert("conv.bias".to_string(), b.as_tensor().clone());
        }
        let conv = Conv2d::new(cfg, var_builder(map, DType::F32).pp("conv"))?;
        let x = Var::from_tensor(&get("x"))?;
        let out = conv.forward_t(x.as_tensor(), true)?;
        assert_close(&out, &get("out"), FIXTURE_TOL, &format!("{what} output"));
        let grads = fixture_loss(&out)?.backward()?;
        let checks = [(x.as_tensor(), "grad"), (weight.as_tensor(), "grad_weight")];
        for (t, name) in checks {
            assert_close(
                &grad_of(&grads, t, &what),
                &get(name),
                FIXTURE_TOL,
                &format!("{what} {name}"),
            );
        }
        if let Some(b) = &bias {
            let g = grad_of(&grads, b.as_tensor(), &what);
            assert_close(&g, &get("grad_bias"), FIXTURE_TOL, &format!("{what} grad_bias"));
        }
        // Where timm pads dynamically, some axis of these inputs is padded unequally.
        let (h, w) = (x.dim(2)?, x.dim(3)?);
        let (ph, pw) = cfg.pads(h, w);
        dynamic += usize::from(params[7] == 1);
        asymmetric += usize::from(ph.0 != ph.1 || pw.0 != pw.1);
        // The output has ceil(size / stride) positions along each axis.
        assert_eq!(
            out.dims()[2..],
            [h.div_ceil(cfg.stride), w.div_ceil(cfg.stride)],
            "{what}"
        );
    }
    assert!(
        dynamic >= 7 && asymmetric >= 5,
        "coverage: {dynamic} {asymmetric}"
    );
    Ok(())
}

#[test]
fn same_pads_more_at_the_bottom_and_right() {
    let k3s2 = Conv2dConfig::new(1, 1, 3).stride(2).same_padding();
    assert_eq!(k3s2.pads(8, 7), ((0, 1), (1, 1)));
    assert_eq!(k3s2.pads(1, 2), ((1, 1), (0, 1)));
    let k5s2 = Conv2dConfig::new(1, 1, 5).stride(2).same_padding();
    assert_eq!(k5s2.pads(224, 225), ((1, 2), (2, 2)));
    let k4 = Conv2dConfig::new(1, 1, 4).same_padding();
    assert_eq!(k4.pads(6, 5), ((1, 2), (1, 2)));
    let k1 = Conv2dConfig::new(1, 1, 1).same_padding();
    assert_eq!(k1.pads(9, 4), ((0, 0), (0, 0)));
    // Without it, the fixed symmetric padding.
    let fixed = Conv2dConfig::new(1, 1, 3).stride(2).padding_hw(1, 2);
    assert_eq!(fixed.pads(8, 7), ((1, 1), (2, 2)));
    assert_eq!(k3s2.min_input(), (1, 1));
}

#[test]
fn same_padding_gradients_match_finite_differences() -> TestResult {
    let configs = [
        Conv2dConfig::new(2, 3, 3).stride(2).same_padding(),
        Conv2dConfig::new(2, 2, 3)
            .stride(2)
            .groups(2)
            .same_padding()
            .no_bias(),
        Conv2dConfig::new(2, 2, 5).stride(2).groups(2).same_padding(),
        Conv2dConfig::new(2, 3, 4).same_padding(),
    ];
    let inputs = [uniform((1, 2, 6, 7), 1.0, 1)?, uniform((2, 2, 5, 4), 1.0, 2)?];
    for (i, x) in inputs.iter().enumerate() {
        for (j, cfg) in configs.into_iter().enumerate() {
            let seed = (10 * i + j) as u64;
            let wshape = (
                cfg.out_channels,
                cfg.in_channels / cfg.groups,
                cfg.kernel.0,
                cfg.kernel.1,
            );
            let weight = uniform(wshape, 0.5, 100 + seed)?;
            let bias = uniform(cfg.out_channels, 0.5, 200 + seed)?;
            let conv = |w: &Tensor, b: &Tensor| {
                let map = HashMap::from([
                    ("conv.weight".to_string(), w.clone()),
                    ("conv.bias".to_string(), b.clone()),
                ]);
                Conv2d::new(cfg, var_builder(map, DType::F64).pp("conv"))
            };
            let run = |layer: backbone::Result<Conv2d>, x: &Tensor| {
                layer
                    .and_then(|l| l.forward_t(x, true))
                    .map_err(candle_core::Error::wrap)
            };
            let what = format!("{cfg:?} on {:?}", x.dims());
            assert_grad_ok(&format!("input, {what}"), x, seed, |x| {
                run(conv(&weight, &bias), x)
            });
            assert_grad_ok(&format!("weight, {what}"), &weight, seed, |w| {
                run(conv(w, &bias), x)
            });
        }
    }
    Ok(())
}

#[test]
fn folded_conv_block_with_same_padding_equals_the_layers() -> TestResult {
    let cfg = Conv2dConfig::new(3, 4, 3).stride(2).same_padding().no_bias();
    let map = HashMap::from([
        (
            "c.weight".to_string(),
            uniform((4, 3, 3, 3), 0.5, 5)?.to_dtype(DType::F32)?,
        ),
        ("b.weight".to_string(), uniform(4, 0.5, 6)?.to_dtype(DType::F32)?),
        ("b.bias".to_string(), uniform(4, 0.5, 7)?.to_dtype(DType::F32)?),
        (
            "b.running_mean".to_string(),
            uniform(4, 0.5, 8)?.to_dtype(DType::F32)?,
        ),
        (
            "b.running_var".to_string(),
            (uniform(4, 0.4, 9)? + 1.0)?.to_dtype(DType::F32)?,
        ),
    ]);
    let vb = var_builder(map, DType::F32);
    let bn = BatchNormConfig {
        eps: 1e-3,
        momentum: 0.1,
        affine: true,
    };
    let block = ConvBlock::new(
        Conv2d::new(cfg, vb.pp("c"))?,
        Some(BatchNorm2d::new(4, bn, vb.pp("b"))?),
        Some(backbone::layers::Activation::Silu),
    );
    let x = uniform((2, 3, 10, 9), 1.0, 10)?.to_dtype(DType::F32)?;
    let folded = backbone::inference_mode(|| block.forward_t(&x, false))?;
    let unfolded = block.forward_unfolded(&x, false)?;
    assert_eq!(folded.dims(), [2, 4, 5, 5]);
    assert_close(&folded, &unfolded, 1e-6, "folded vs layers");
    Ok(())
}
