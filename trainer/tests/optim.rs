//! Adam and AdamW against PyTorch: the trajectories in `fixtures/optim_trajectories.safetensors`
//! come from `scripts/gen_optim_fixtures.py` (torch.optim.Adam / AdamW, foreach=False).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use trainer::optim::{Adam, AdamConfig, AdamW, AdamWConfig, Optimizer};

const NAMES: [&str; 3] = ["a", "b", "c"];

fn fixtures() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim_trajectories.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

fn scalar(f: &HashMap<String, Tensor>, key: &str) -> usize {
    f[key].to_vec1::<i64>().unwrap()[0] as usize
}

/// `sum(a^3 * ca) + sum(b^2 * cb) (+ sum(c^3 * cc) once `with_c`)`, as in the generator.
fn loss(vars: &[Var], coefs: &[Tensor], with_c: bool) -> Tensor {
    let cube = |v: &Var, c: &Tensor| {
        (v.as_tensor().sqr().unwrap() * v.as_tensor())
            .unwrap()
            .mul(c)
            .unwrap()
    };
    let mut total = cube(&vars[0], &coefs[0]).sum_all().unwrap();
    total = (total
        + vars[1]
            .as_tensor()
            .sqr()
            .unwrap()
            .mul(&coefs[1])
            .unwrap()
            .sum_all()
            .unwrap())
    .unwrap();
    if with_c {
        total = (total + cube(&vars[2], &coefs[2]).sum_all().unwrap()).unwrap();
    }
    total
}

fn make_optimizer(hp: &[f64], vars: &[Var]) -> Box<dyn Optimizer> {
    let named: Vec<(String, Var)> = NAMES
        .iter()
        .map(|n| n.to_string())
        .zip(vars.iter().cloned())
        .collect();
    let [lr, beta1, beta2, eps, weight_decay, decoupled] = hp.try_into().unwrap();
    if decoupled == 1.0 {
        Box::new(
            AdamW::new(
                named,
                AdamWConfig {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                },
            )
            .unwrap(),
        )
    } else {
        Box::new(
            Adam::new(
                named,
                AdamConfig {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                },
            )
            .unwrap(),
        )
    }
}

/// Runs every case of the fixture in `dtype` and returns the largest relative error seen,
/// `|x - ref| / max(|ref|, 1)`.
fn run_cases(dtype: DType) -> f64 {
    let f = fixtures();
    let tag = if dtype == DType::F64 { "f64" } else { "f32" };
    let steps = scalar(&f, "meta/steps");
    let c_from = scalar(&f, "meta/c_from");
    let cases = ["adam_default", "adam_l2", "adamw_default", "adamw_wd"];
    let mut worst = 0f64;
    for case in cases {
        let hp = f[&format!("{case}/hparams")].to_vec1::<f64>().unwrap();
        let coefs: Vec<Tensor> = NAMES
            .iter()
            .map(|n| f[&format!("{case}/coef/{n}")].to_dtype(dtype).unwrap())
            .collect();
        let vars: Vec<Var> = NAMES
            .iter()
            .map(|n| Var::from_tensor(&f[&format!("{case}/{tag}/init/{n}")]).unwrap())
            .collect();
        assert!(vars.iter().all(|v| v.dtype() == dtype));
        let mut opt = make_optimizer(&hp, &vars);
        for k in 0..steps {
            let grads = loss(&vars, &coefs, k >= c_from).backward().unwrap();
            assert_eq!(grads.get(vars[2].as_tensor()).is_some(), k >= c_from);
            opt.step(&grads).unwrap();
            for (n, var) in NAMES.iter().zip(&vars) {
                let expected = f[&format!("{case}/{tag}/step{}/{n}", k + 1)]
                    .to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let actual = var
                    .as_tensor()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                for (i, (x, y)) in actual.iter().zip(&expected).enumerate() {
                    let err = (x - y).abs() / y.abs().max(1.0);
                    assert!(
                        err < 1e-5,
                        "{case} {tag} step {} param {n}[{i}]: {x} vs PyTorch {y}",
                        k + 1
                    );
                    worst = worst.max(err);
                }
            }
        }
        // `c` had no gradient in the first steps: it must have moved, but only in the later ones.
        assert_ne!(
            vars[2]
                .as_tensor()
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            f[&format!("{case}/{tag}/init/c")]
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        );
    }
    worst
}

#[test]
fn adam_and_adamw_match_pytorch_in_f64() {
    let worst = run_cases(DType::F64);
    assert!(worst < 1e-12, "largest relative error {worst:e}");
}

#[test]
fn adam_and_adamw_match_pytorch_in_f32() {
    let worst = run_cases(DType::F32);
    assert!(worst < 1e-6, "largest relative error {worst:e}");
}

#[test]
fn params_without_gradient_are_left_alone_and_keep_their_step_count() {
    let dev = Device::Cpu;
    let used = Var::new(&[1.0f32, -2.0, 3.0], &dev).unwrap();
    let unused = Var::new(&[0.5f32, 0.25], &dev).unwrap();
    let before = unused.as_tensor().to_vec1::<f32>().unwrap();
    // Decoupled weight decay would shrink `unused` if it were not skipped.
    let config = AdamWConfig {
        lr: 0.1,
        weight_decay: 0.5,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(
        vec![("used".into(), used.clone()), ("unused".into(), unused.clone())],
        config,
    )
    .unwrap();
    for _ in 0..3 {
        let grads = used
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(unused.as_tensor()).is_none());
        opt.step(&grads).unwrap();
    }
    assert_eq!(unused.as_tensor().to_vec1::<f32>().unwrap(), before);
    assert_eq!(opt.step_count("used"), Some(3));
    assert_eq!(opt.step_count("unused"), Some(0));
    assert_eq!(opt.step_count("nope"), None);
    assert_ne!(used.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, -2.0, 3.0]);
}

#[test]
fn first_adam_step_moves_each_param_by_lr() {
    // With zero moments, step 1 gives m/(1-b1) = g and sqrt(v/(1-b2)) = |g|: p -= lr * sign(g)
    // (up to eps), whatever the gradient's scale.
    let dev = Device::Cpu;
    let p = Var::new(&[1.0f64, -3.0, 1e-3], &dev).unwrap();
    let mut opt = Adam::new(
        vec![("p".into(), p.clone())],
        AdamConfig {
            lr: 0.1,
            eps: 0.0,
            ..AdamConfig::default()
        },
    )
    .unwrap();
    // Gradient of sum(p^2 * [1, 1, 1000]) = 2p * [1, 1, 1000]: signs +, -, +.
    let scale = Tensor::new(&[1.0f64, 1.0, 1000.0], &dev).unwrap();
    opt.backward_step(
        &p.as_tensor()
            .sqr()
            .unwrap()
            .mul(&scale)
            .unwrap()
            .sum_all()
            .unwrap(),
    )
    .unwrap();
    let after = p.as_tensor().to_vec1::<f64>().unwrap();
    for (x, y) in after.iter().zip([0.9, -2.9, 1e-3 - 0.1]) {
        assert!((x - y).abs() < 1e-12, "{after:?}");
    }
}

#[test]
fn learning_rate_can_be_changed_and_zero_freezes() {
    let dev = Device::Cpu;
    let p = Var::new(&[1.0f32, 2.0], &dev).unwrap();
    let mut opt: Box<dyn Optimizer> =
        Box::new(Adam::new(vec![("p".into(), p.clone())], AdamConfig::default()).unwrap());
    assert_eq!(opt.learning_rate(), 1e-3);
    opt.set_learning_rate(0.0);
    assert_eq!(opt.learning_rate(), 0.0);
    opt.backward_step(&p.as_tensor().sum_all().unwrap()).unwrap();
    assert_eq!(p.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn defaults_are_pytorch_defaults() {
    let adam = AdamConfig::default();
    assert_eq!(
        (adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay),
        (1e-3, 0.9, 0.999, 1e-8, 0.0)
    );
    let adamw = AdamWConfig::default();
    assert_eq!(
        (adamw.lr, adamw.beta1, adamw.beta2, adamw.eps, adamw.weight_decay),
        (1e-3, 0.9, 0.999, 1e-8, 0.01)
    );
}

#[test]
fn invalid_configurations_and_params_are_errors() {
    let dev = Device::Cpu;
    let p = Var::new(&[1.0f32], &dev).unwrap();
    let named = || vec![("p".to_string(), p.clone())];
    for (config, needle) in [
        (
            AdamConfig {
                lr: -1.0,
                ..AdamConfig::default()
            },
            "lr must be >= 0",
        ),
        (
            AdamConfig {
                beta1: 1.0,
                ..AdamConfig::default()
            },
            "beta1 must be in [0, 1)",
        ),
        (
            AdamConfig {
                weight_decay: f64::NAN,
                ..AdamConfig::default()
            },
            "weight_decay",
        ),
    ] {
        let err = Adam::new(named(), config).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
    let twice = vec![("p".to_string(), p.clone()), ("q".to_string(), p.clone())];
    let err = AdamW::new(twice, AdamWConfig::default()).unwrap_err().to_string();
    assert!(err.contains("same variable"), "{err}");
    let q = Var::new(&[1.0f32], &dev).unwrap();
    let dup = vec![("p".to_string(), p.clone()), ("p".to_string(), q)];
    let err = AdamW::new(dup, AdamWConfig::default()).unwrap_err().to_string();
    assert!(err.contains("given twice"), "{err}");
    let ints = Var::new(&[1u32], &dev).unwrap();
    let err = Adam::new(vec![("i".into(), ints)], AdamConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("floating-point"), "{err}");
}
