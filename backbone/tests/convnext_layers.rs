//! ConvNeXt's layers against PyTorch (`scripts/gen_convnext_layer_fixtures.py`): timm's
//! `LayerNorm2d` and `nn.LayerNorm` (eps 1e-6), `nn.GELU()` (erf form), layer scale in both
//! layouts and timm's `drop_path` with torch's own per-sample draws; outputs and gradients
//! (input and parameters), and finite differences in f64. The seeded draws of `DropPath` are
//! tested in the crate's unit tests (this binary's dropout tests reseed the shared generator).

use crate::common;

use backbone::layers::{DropPath, Gelu, Layer, LayerNorm, LayerNorm2d, LayerScale};
use candle_core::{DType, Device, Tensor, Var};
use common::*;
use std::collections::HashMap;

const TOL: f64 = 1e-5;

fn fixture() -> HashMap<String, Tensor> {
    load_fixture("convnext_layers")
}

/// The layer's parameters as variables under `prefix` (the fixture's `<prefix>.weight`, ...).
fn params(t: &HashMap<String, Tensor>, prefix: &str, names: &[&str]) -> (HashMap<String, Tensor>, Vec<Var>) {
    let mut map = HashMap::new();
    let mut vars = Vec::new();
    for name in names {
        let var = Var::from_tensor(&fixture_tensor(t, &format!("{prefix}.{name}"))).unwrap();
        map.insert(format!("{prefix}.{name}"), var.as_tensor().clone());
        vars.push(var);
    }
    (map, vars)
}

/// Runs `f` on the fixture's input `x` as a variable; checks the output and the gradients of
/// the fixture loss w.r.t. the input and `vars` (fixture names `grad_<suffix>`).
#[track_caller]
fn check(
    t: &HashMap<String, Tensor>,
    what: &str,
    x: &str,
    out: &str,
    grad: &str,
    vars: &[(&Var, &str)],
    f: impl Fn(&Tensor) -> backbone::Result<Tensor>,
) {
    let x = Var::from_tensor(&fixture_tensor(t, x)).unwrap();
    let y = f(x.as_tensor()).unwrap();
    assert_close(&y, &fixture_tensor(t, out), TOL, &format!("{what}: output"));
    let grads = fixture_loss(&y).unwrap().backward().unwrap();
    let g = grad_of(&grads, x.as_tensor(), what);
    assert_close(
        &g,
        &fixture_tensor(t, grad),
        TOL,
        &format!("{what}: input gradient"),
    );
    for (var, name) in vars {
        let g = grad_of(&grads, var.as_tensor(), name);
        assert_close(&g, &fixture_tensor(t, name), TOL, &format!("{what}: {name}"));
    }
}

#[test]
fn layer_norm_2d_matches_timm() {
    let t = fixture();
    let (map, vars) = params(&t, "ln2d", &["weight", "bias"]);
    let layer = LayerNorm2d::new(5, 1e-6, var_builder(map, DType::F32).pp("ln2d")).unwrap();
    let grads = [(&vars[0], "ln2d.grad_weight"), (&vars[1], "ln2d.grad_bias")];
    check(
        &t,
        "LayerNorm2d",
        "ln2d.x",
        "ln2d.out",
        "ln2d.grad",
        &grads,
        |x| layer.forward_t(x, true),
    );
    // Channels are checked.
    let x = Tensor::zeros((1, 4, 2, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(layer.forward_t(&x, false).is_err());
}

#[test]
fn layer_norm_matches_torch() {
    let t = fixture();
    let (map, vars) = params(&t, "ln", &["weight", "bias"]);
    let layer = LayerNorm::new(7, 1e-6, var_builder(map, DType::F32).pp("ln")).unwrap();
    let grads = [(&vars[0], "ln.grad_weight"), (&vars[1], "ln.grad_bias")];
    check(&t, "LayerNorm", "ln.x", "ln.out", "ln.grad", &grads, |x| {
        layer.forward_t(x, false)
    });
}

#[test]
fn layer_norms_pass_finite_differences_in_f64() {
    let t = fixture();
    let map: HashMap<String, Tensor> = ["weight", "bias"]
        .iter()
        .map(|n| (format!("ln2d.{n}"), fixture_tensor(&t, &format!("ln2d.{n}"))))
        .collect();
    let vb = var_builder(map, DType::F64);
    let ln2d = LayerNorm2d::new(5, 1e-6, vb.pp("ln2d")).unwrap();
    let x = fixture_tensor(&t, "ln2d.x").to_dtype(DType::F64).unwrap();
    assert_grad_ok("LayerNorm2d f64", &x, 3, |x| {
        ln2d.forward_t(x, false).map_err(candle_core::Error::wrap)
    });
    let ln = LayerNorm::new(4, 1e-6, candle_nn::VarBuilder::zeros(DType::F64, &Device::Cpu)).unwrap();
    let x = fixture_tensor(&t, "ln.x")
        .narrow(3, 0, 4)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    // Zero weight: a zero gradient; compare the normalisation itself through a unit affine.
    let ones = candle_nn::VarBuilder::from_tensors(
        [
            (
                "weight".to_string(),
                Tensor::ones(4, DType::F64, &Device::Cpu).unwrap(),
            ),
            (
                "bias".to_string(),
                Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap(),
            ),
        ]
        .into_iter()
        .collect(),
        DType::F64,
        &Device::Cpu,
    );
    let unit = LayerNorm::new(4, 1e-6, ones).unwrap();
    assert_grad_ok("LayerNorm f64", &x, 4, |x| {
        unit.forward_t(x, false).map_err(candle_core::Error::wrap)
    });
    assert_eq!(
        ln.forward_t(&x, false)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap(),
        0.0
    );
}

#[test]
fn gelu_is_torchs_exact_gelu() {
    let t = fixture();
    check(&t, "GELU", "gelu.x", "gelu.out", "gelu.grad", &[], |x| {
        Gelu::new().forward_t(x, true)
    });
    let x = fixture_tensor(&t, "gelu.x").to_dtype(DType::F64).unwrap();
    assert_grad_ok("GELU f64", &x, 5, |x| {
        Gelu.forward_t(x, false).map_err(candle_core::Error::wrap)
    });
}

#[test]
fn layer_scale_matches_timm_and_torchvision() {
    let t = fixture();
    let gamma = Var::from_tensor(&fixture_tensor(&t, "ls.gamma")).unwrap();
    let map = HashMap::from([("ls.gamma".to_string(), gamma.as_tensor().clone())]);
    let layer = LayerScale::new(5, 1e-6, var_builder(map, DType::F32).pp("ls")).unwrap();
    check(
        &t,
        "LayerScale",
        "ls.x",
        "ls.out",
        "ls.grad",
        &[(&gamma, "ls.grad_gamma")],
        |x| layer.forward_t(x, true),
    );
    // A fresh variable for the NCHW pass (gradients accumulate per backward anyway).
    check(
        &t,
        "LayerScale NCHW",
        "ls.x_nchw",
        "ls.out_nchw",
        "ls.grad_nchw",
        &[(&gamma, "ls.grad_gamma_nchw")],
        |x| layer.forward_nchw(x),
    );
    let fresh = LayerScale::new(
        3,
        1e-6,
        backbone::init::SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    assert_eq!(fresh.gamma().to_vec1::<f32>().unwrap(), [1e-6f32; 3]);
    let x = Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(fresh.forward_t(&x, false).is_err());
}

#[test]
fn drop_path_matches_timm_given_torchs_draws() {
    let t = fixture();
    let keep: Vec<bool> = fixture_tensor(&t, "dp.keep")
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(|k| k != 0.0)
        .collect();
    let layer = DropPath::new(0.4).unwrap();
    check(&t, "DropPath", "dp.x", "dp.out", "dp.grad", &[], |x| {
        layer.apply_mask(x, &keep)
    });
    // Identity in eval mode and at p = 0 (no draw).
    let x = fixture_tensor(&t, "dp.x");
    for out in [
        layer.forward_t(&x, false).unwrap(),
        DropPath::new(0.0).unwrap().forward_t(&x, true).unwrap(),
    ] {
        assert_close(&out, &x, 0.0, "identity");
    }
}
