//! SGD and parameter groups, learning-rate schedules, gradient clipping, label smoothing and
//! top-k accuracy against PyTorch (`fixtures/optim_extras.safetensors`, written by
//! `scripts/gen_optim_fixtures.py`), and exact resumption from a saved optimizer state.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use trainer::checkpoint::{load_checkpoint, save_checkpoint};
use trainer::loss::{accuracy_count, cross_entropy, cross_entropy_smoothed, top_k_correct};
use trainer::optim::{
    clip_grad_norm, param_groups, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig,
};
use trainer::schedule::{Decay, Schedule};

const NAMES: [&str; 3] = ["a", "b", "c"];
const SHAPES: [&[usize]; 3] = [&[3, 4], &[5], &[2, 3]];
/// The parameter `c` gets gradients from this step on (0-based), as in the generator.
const C_FROM: usize = 2;

fn fixtures() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim_extras.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

fn vec64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Splits a flat `[23]` tensor into `a`, `b`, `c`.
fn split(flat: &Tensor, dtype: DType) -> Vec<Tensor> {
    let mut out = Vec::new();
    let mut start = 0;
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        out.push(
            flat.narrow(0, start, n)
                .unwrap()
                .reshape(shape)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        );
        start += n;
    }
    out
}

fn flat(vars: &[Var]) -> Vec<f64> {
    vars.iter().flat_map(|v| vec64(v.as_tensor())).collect()
}

/// `sum(a^3 * ca) + sum(b^2 * cb) (+ sum(c^3 * cc) from step `c_from` on)`, as in the generator.
fn loss(vars: &[Var], coefs: &[Tensor], with_c: bool) -> Tensor {
    let cube = |v: &Var, c: &Tensor| {
        (v.as_tensor().sqr().unwrap() * v.as_tensor())
            .unwrap()
            .mul(c)
            .unwrap()
    };
    let mut total = cube(&vars[0], &coefs[0]).sum_all().unwrap();
    let b = vars[1].as_tensor().sqr().unwrap().mul(&coefs[1]).unwrap();
    total = (total + b.sum_all().unwrap()).unwrap();
    if with_c {
        total = (total + cube(&vars[2], &coefs[2]).sum_all().unwrap()).unwrap();
    }
    total
}

fn named(vars: &[Var]) -> Vec<(String, Var)> {
    NAMES
        .iter()
        .map(|n| n.to_string())
        .zip(vars.iter().cloned())
        .collect()
}

/// The groups of the generator: `param_groups` puts `b` (rank 1) alone without weight decay,
/// and its lr is scaled by `scale`.
fn groups(vars: &[Var], weight_decay: f64, scale: f64) -> Vec<ParamGroup> {
    let groups = param_groups(named(vars), weight_decay);
    assert_eq!(groups.len(), 2);
    let names: Vec<Vec<&str>> = groups
        .iter()
        .map(|g| g.params.iter().map(|(n, _)| n.as_str()).collect())
        .collect();
    assert_eq!(names, [vec!["b"], vec!["a", "c"]]);
    assert_eq!(groups[0].weight_decay, Some(0.0));
    assert_eq!(groups[1].weight_decay, Some(weight_decay));
    let mut groups = groups;
    groups[0].lr_scale = scale;
    groups
}

fn build(case: &str, hp: &[f64], vars: &[Var]) -> Box<dyn Optimizer> {
    if case.starts_with("sgd") {
        let [lr, momentum, dampening, nesterov, weight_decay, scale] = hp.try_into().unwrap();
        let config = SgdConfig {
            lr,
            momentum,
            dampening,
            nesterov: nesterov == 1.0,
            weight_decay,
        };
        Box::new(Sgd::with_groups(groups(vars, weight_decay, scale), config).unwrap())
    } else {
        let [lr, beta1, beta2, eps, weight_decay, scale] = hp.try_into().unwrap();
        let config = AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        };
        Box::new(AdamW::with_groups(groups(vars, weight_decay, scale), config).unwrap())
    }
}

const GROUP_CASES: [&str; 6] = [
    "sgd_plain",
    "sgd_momentum",
    "sgd_momentum_wd",
    "sgd_nesterov_wd",
    "sgd_dampening",
    "adamw_groups",
];

/// Runs every group case in `dtype`; returns the largest relative error against PyTorch.
fn run_group_cases(dtype: DType) -> f64 {
    let f = fixtures();
    let mut worst = 0f64;
    for case in GROUP_CASES {
        let hp = vec64(&f[&format!("{case}/hparams")]);
        let vars: Vec<Var> = split(&f["groups/init"], dtype)
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let coefs = split(&f["groups/coef"], dtype);
        let mut opt = build(case, &hp, &vars);
        let traj = f.get(&format!("{case}/f64/traj")).unwrap();
        for k in 0..6 {
            let grads = loss(&vars, &coefs, k >= C_FROM).backward().unwrap();
            opt.step(&grads).unwrap();
            let expected = if dtype == DType::F64 {
                vec64(&traj.get(k + 1).unwrap())
            } else if k == 5 {
                vec64(&f[&format!("{case}/f32/final")])
            } else {
                continue;
            };
            for (i, (x, y)) in flat(&vars).iter().zip(&expected).enumerate() {
                let err = (x - y).abs() / y.abs().max(1.0);
                assert!(
                    err < 1e-5,
                    "{case} {dtype:?} step {} [{i}]: {x} vs PyTorch {y}",
                    k + 1
                );
                worst = worst.max(err);
            }
        }
    }
    worst
}

#[test]
fn sgd_and_grouped_adamw_match_pytorch_in_f64() {
    let worst = run_group_cases(DType::F64);
    assert!(worst < 1e-12, "largest relative error {worst:e}");
}

#[test]
fn sgd_and_grouped_adamw_match_pytorch_in_f32() {
    let worst = run_group_cases(DType::F32);
    assert!(worst < 1e-6, "largest relative error {worst:e}");
}

#[test]
fn param_groups_exempt_biases_and_norm_parameters() {
    let dev = Device::Cpu;
    let var = |dims: &[usize]| Var::zeros(dims, DType::F32, &dev).unwrap();
    let params = vec![
        ("conv.weight".to_string(), var(&[4, 3, 3, 3])),
        ("conv.bias".to_string(), var(&[4])),
        ("bn.weight".to_string(), var(&[4])),
        ("bn.bias".to_string(), var(&[4])),
        ("odd.bias".to_string(), var(&[2, 2])),
        ("fc.weight".to_string(), var(&[10, 4])),
        ("scale".to_string(), var(&[])),
    ];
    let groups = param_groups(params.clone(), 5e-4);
    let names = |g: &ParamGroup| g.params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&groups[0]),
        ["conv.bias", "bn.weight", "bn.bias", "odd.bias", "scale"]
    );
    assert_eq!(names(&groups[1]), ["conv.weight", "fc.weight"]);
    assert_eq!(
        (groups[0].weight_decay, groups[1].weight_decay),
        (Some(0.0), Some(5e-4))
    );
    assert!(groups.iter().all(|g| g.lr_scale == 1.0));
    // Empty groups are left out.
    let only_weights = param_groups(vec![params[0].clone()], 0.1);
    assert_eq!(only_weights.len(), 1);
    assert_eq!(only_weights[0].weight_decay, Some(0.1));
    assert!(param_groups(Vec::new(), 0.1).is_empty());
}

/// Trains `steps` steps from `init` (the loss of the fixtures, `c` from step 4 on) and returns
/// the parameters; `split_at` saves the state after that many steps to a safetensors file,
/// rebuilds parameters and optimizer, loads the state (if `load`) and continues.
fn train(
    make: &dyn Fn(&[Var]) -> Box<dyn Optimizer>,
    steps: usize,
    split_at: Option<usize>,
    load: bool,
) -> Vec<f64> {
    let f = fixtures();
    let coefs = split(&f["groups/coef"], DType::F32);
    let fresh =
        |tensors: &[Tensor]| -> Vec<Var> { tensors.iter().map(|t| Var::from_tensor(t).unwrap()).collect() };
    let mut vars = fresh(&split(&f["groups/init"], DType::F32));
    let mut opt = make(&vars);
    let dir = tempfile::tempdir().unwrap();
    for k in 0..steps {
        if Some(k) == split_at {
            let path = dir.path().join("state.safetensors");
            save_checkpoint(&path, &opt.state().unwrap()).unwrap();
            let saved: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect();
            drop(opt);
            vars = fresh(&saved);
            opt = make(&vars);
            if load {
                opt.load_state(&load_checkpoint(&path, &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        opt.set_learning_rate(0.05 * (1.0 - k as f64 / 10.0));
        let grads = loss(&vars, &coefs, k >= 4).backward().unwrap();
        opt.step(&grads).unwrap();
    }
    flat(&vars)
}

#[test]
fn resuming_from_a_saved_state_equals_an_uninterrupted_run() {
    let sgd = |vars: &[Var]| -> Box<dyn Optimizer> {
        let config = SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
            ..SgdConfig::default()
        };
        Box::new(Sgd::with_groups(groups(vars, 0.01, 0.5), config).unwrap())
    };
    let adam = |vars: &[Var]| -> Box<dyn Optimizer> {
        let config = AdamConfig {
            lr: 0.05,
            weight_decay: 0.01,
            ..AdamConfig::default()
        };
        Box::new(Adam::with_groups(groups(vars, 0.01, 0.5), config).unwrap())
    };
    for (what, make) in [
        ("SGD", &sgd as &dyn Fn(&[Var]) -> Box<dyn Optimizer>),
        ("Adam", &adam),
    ] {
        let straight = train(make, 7, None, false);
        // Split before `c` has had a gradient (no SGD buffer, Adam step 0) and after.
        for split_at in [3, 5] {
            assert_eq!(
                train(make, 7, Some(split_at), true),
                straight,
                "{what} resumed after {split_at}"
            );
        }
        // Without the state the moments restart: the result differs.
        assert_ne!(train(make, 7, Some(3), false), straight, "{what}");
    }
}

#[test]
fn sgd_state_checks_names_and_shapes_and_changes_nothing_on_error() {
    let dev = Device::Cpu;
    let w = Var::new(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &dev).unwrap();
    let b = Var::new(&[0.5f32, -0.5], &dev).unwrap();
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..SgdConfig::default()
    };
    let mut opt = Sgd::new(vec![("w".into(), w.clone()), ("b".into(), b.clone())], config).unwrap();
    opt.backward_step(&w.as_tensor().sqr().unwrap().sum_all().unwrap())
        .unwrap();
    let state = opt.state().unwrap();
    // `b` had no gradient: no buffer yet.
    assert_eq!(state.keys().collect::<Vec<_>>(), ["momentum_buffer.w"]);
    let before = opt
        .momentum_buffer("w")
        .unwrap()
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();

    let mut bad = state.clone();
    bad.insert(
        "momentum_buffer.w".into(),
        Tensor::zeros((3, 2), DType::F32, &dev).unwrap(),
    );
    let err = opt.load_state(&bad).unwrap_err().to_string();
    assert!(
        err.contains("momentum_buffer.w")
            && err.contains("expected shape [2, 3]")
            && err.contains("found [3, 2]"),
        "{err}"
    );
    let mut extra = state.clone();
    extra.insert(
        "momentum_buffer.gone".into(),
        Tensor::zeros(2, DType::F32, &dev).unwrap(),
    );
    let err = opt.load_state(&extra).unwrap_err().to_string();
    assert!(
        err.contains("momentum_buffer.gone") && err.contains("no parameter"),
        "{err}"
    );
    let mut adam_state = HashMap::new();
    adam_state.insert(
        "exp_avg.w".to_string(),
        Tensor::zeros((2, 3), DType::F32, &dev).unwrap(),
    );
    let err = opt.load_state(&adam_state).unwrap_err().to_string();
    assert!(err.contains("exp_avg.w"), "{err}");
    assert_eq!(
        opt.momentum_buffer("w")
            .unwrap()
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        before
    );
    // An f64 state is converted to the parameter's dtype.
    let mut f64_state = state.clone();
    f64_state.insert(
        "momentum_buffer.b".into(),
        Tensor::new(&[1.0f64, 2.0], &dev).unwrap(),
    );
    opt.load_state(&f64_state).unwrap();
    let buf_b = opt.momentum_buffer("b").unwrap().unwrap();
    assert_eq!(
        (buf_b.dtype(), buf_b.to_vec1::<f32>().unwrap()),
        (DType::F32, vec![1.0, 2.0])
    );

    // Without momentum there is no state, and a state with buffers is refused.
    let mut plain = Sgd::new(vec![("w".into(), w.clone())], SgdConfig::default()).unwrap();
    assert!(plain.state().unwrap().is_empty());
    let err = plain.load_state(&state).unwrap_err().to_string();
    assert!(err.contains("momentum_buffer.w"), "{err}");
}

#[test]
fn adam_state_checks_names_and_shapes() {
    let dev = Device::Cpu;
    let w = Var::new(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &dev).unwrap();
    let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig::default()).unwrap();
    opt.backward_step(&w.as_tensor().sum_all().unwrap()).unwrap();
    let state = opt.state().unwrap();
    let mut bad = state.clone();
    bad.insert("exp_avg_sq.w".into(), Tensor::zeros(6, DType::F32, &dev).unwrap());
    let err = opt.load_state(&bad).unwrap_err().to_string();
    assert!(
        err.contains("exp_avg_sq.w") && err.contains("expected shape [2, 3]") && err.contains("found [6]"),
        "{err}"
    );
    let mut extra = state.clone();
    extra.insert(
        "exp_avg.other".into(),
        Tensor::zeros(6, DType::F32, &dev).unwrap(),
    );
    let err = opt.load_state(&extra).unwrap_err().to_string();
    assert!(err.contains("exp_avg.other"), "{err}");
    let mut missing = state.clone();
    missing.remove("step.w");
    let err = opt.load_state(&missing).unwrap_err().to_string();
    assert!(err.contains("step.w") && err.contains("missing"), "{err}");
    assert_eq!(opt.step_count("w"), Some(1));
    opt.load_state(&state).unwrap();
}

#[test]
fn sgd_invalid_configurations_are_errors() {
    let p = Var::new(&[1.0f32], &Device::Cpu).unwrap();
    let named = || vec![("p".to_string(), p.clone())];
    for (config, needle) in [
        (
            SgdConfig {
                nesterov: true,
                ..SgdConfig::default()
            },
            "Nesterov momentum requires a momentum > 0 and zero dampening",
        ),
        (
            SgdConfig {
                nesterov: true,
                momentum: 0.9,
                dampening: 0.1,
                ..SgdConfig::default()
            },
            "zero dampening",
        ),
        (
            SgdConfig {
                lr: -0.1,
                ..SgdConfig::default()
            },
            "lr must be >= 0",
        ),
        (
            SgdConfig {
                momentum: f64::NAN,
                ..SgdConfig::default()
            },
            "momentum must be >= 0",
        ),
        (
            SgdConfig {
                weight_decay: -1.0,
                ..SgdConfig::default()
            },
            "weight_decay must be >= 0",
        ),
    ] {
        let err = Sgd::new(named(), config).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
    let bad_group = ParamGroup::new(named()).with_lr_scale(-1.0);
    let err = Sgd::with_groups(vec![bad_group], SgdConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr_scale of group 0 must be >= 0"), "{err}");
    let d = SgdConfig::default();
    assert_eq!(
        (d.lr, d.momentum, d.dampening, d.nesterov, d.weight_decay),
        (1e-3, 0.0, 0.0, false, 0.0)
    );
}

#[test]
fn add_group_keeps_the_state_of_the_other_parameters() {
    let dev = Device::Cpu;
    let head = Var::new(&[1.0f64, -2.0], &dev).unwrap();
    let body = Var::new(&[3.0f64], &dev).unwrap();
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..SgdConfig::default()
    };
    let mut opt: Box<dyn Optimizer> =
        Box::new(Sgd::new(vec![("head".into(), head.clone())], config).unwrap());
    // loss = sum(head^2) + sum(body^2): gradients 2 * head, 2 * body.
    let step = |opt: &mut Box<dyn Optimizer>| {
        let loss = (head.as_tensor().sqr().unwrap().sum_all().unwrap()
            + body.as_tensor().sqr().unwrap().sum_all().unwrap())
        .unwrap();
        opt.backward_step(&loss).unwrap();
    };
    step(&mut opt);
    // head: buf = g = [2, -4]; head = [0.8, -1.6]; body is not in the optimizer.
    assert_eq!(body.as_tensor().to_vec1::<f64>().unwrap(), [3.0]);
    let index = opt.add_group(ParamGroup::new(vec![("body".into(), body.clone())]).with_lr_scale(0.5));
    assert_eq!(index.unwrap(), 1);
    step(&mut opt);
    // head: buf = 0.9 * [2, -4] + [1.6, -3.2] = [3.4, -6.8]; head -= 0.1 * buf.
    // body: first step, buf = g = 6; body -= 0.05 * 6.
    let h = head.as_tensor().to_vec1::<f64>().unwrap();
    assert!(
        (h[0] - (0.8 - 0.34)).abs() < 1e-12 && (h[1] - (-1.6 + 0.68)).abs() < 1e-12,
        "{h:?}"
    );
    assert!((body.as_tensor().to_vec1::<f64>().unwrap()[0] - 2.7).abs() < 1e-12);
    // A name or variable already present, or a bad index, is refused.
    let again = ParamGroup::new(vec![("other".into(), body.clone())]);
    assert!(opt
        .add_group(again)
        .unwrap_err()
        .to_string()
        .contains("same variable"));
    let err = opt.set_lr_scale(2, 1.0).unwrap_err().to_string();
    assert!(err.contains("no parameter group 2"), "{err}");
    opt.set_lr_scale(1, 0.0).unwrap();
    let before = body.as_tensor().to_vec1::<f64>().unwrap();
    step(&mut opt);
    assert_eq!(body.as_tensor().to_vec1::<f64>().unwrap(), before);
}

#[test]
fn schedules_match_pytorch_schedulers() {
    let f = fixtures();
    let meta = vec64(&f["schedule/meta"]);
    let (base, total, per_epoch) = (meta[0], meta[1] as usize, meta[2] as usize);
    let cases = [
        ("cosine", Schedule::cosine()),
        ("step", Schedule::step(2, 0.5).unwrap()),
        ("warmup_cosine", Schedule::cosine().with_warmup(5)),
        ("warmup_step", Schedule::step(2, 0.1).unwrap().with_warmup(3)),
        ("warmup_constant", Schedule::constant().with_warmup(4)),
    ];
    for (name, schedule) in cases {
        let expected = vec64(&f[&format!("schedule/{name}")]);
        assert_eq!(expected.len(), total);
        for (step, y) in expected.iter().enumerate() {
            let x = schedule.lr_at(base, step, total, per_epoch);
            assert!((x - y).abs() < 1e-12, "{name} step {step}: {x} vs PyTorch {y}");
        }
    }
    assert_eq!(Schedule::Constant, Schedule::constant());
    assert_eq!(Schedule::Cosine.decay, Decay::Cosine);
    assert_eq!(Schedule::default(), Schedule::cosine());
}

#[test]
fn invalid_step_schedules_are_errors() {
    for (step_epochs, gamma, needle) in [
        (0, 0.5, "step_epochs must be > 0"),
        (2, 0.0, "gamma must be in (0, 1]"),
        (2, 1.5, "gamma must be in (0, 1]"),
        (2, f64::NAN, "gamma"),
    ] {
        let err = Schedule::step(step_epochs, gamma).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
    let hand_made = Schedule {
        decay: Decay::Step {
            step_epochs: 0,
            gamma: 0.1,
        },
        warmup_steps: 0,
    };
    assert!(hand_made.validate().is_err());
    assert!(Schedule::step(3, 1.0).unwrap().validate().is_ok());
}

/// A GradStore holding `grads[i]` as the gradient of `vars[i]` (through `sum(v * g)`).
fn grads_of(vars: &[Var], grads: &[Tensor]) -> GradStore {
    let mut total = Tensor::zeros((), vars[0].dtype(), &Device::Cpu).unwrap();
    for (v, g) in vars.iter().zip(grads) {
        total = (total + v.as_tensor().mul(g).unwrap().sum_all().unwrap()).unwrap();
    }
    total.backward().unwrap()
}

#[test]
fn clip_grad_norm_matches_pytorch() {
    let f = fixtures();
    for (tag, dtype, tol) in [("f64", DType::F64, 1e-12), ("f32", DType::F32, 1e-6)] {
        let before = split(&f[&format!("clip/{tag}/before")], dtype);
        let max_norms = vec64(&f[&format!("clip/{tag}/max_norm")]);
        let norms = vec64(&f[&format!("clip/{tag}/norm")]);
        for (i, &max_norm) in max_norms.iter().enumerate() {
            let vars: Vec<Var> = before
                .iter()
                .map(|t| Var::zeros(t.dims(), dtype, &Device::Cpu).unwrap())
                .collect();
            let mut grads = grads_of(&vars, &before);
            // A variable given twice counts once.
            let mut list = vars.clone();
            list.push(vars[0].clone());
            let norm = clip_grad_norm(&mut grads, &list, max_norm).unwrap();
            assert!(
                (norm - norms[i]).abs() < tol * norms[i],
                "{tag}: norm {norm} vs PyTorch {}",
                norms[i]
            );
            let after: Vec<f64> = vars
                .iter()
                .flat_map(|v| vec64(grads.get(v.as_tensor()).unwrap()))
                .collect();
            let expected = vec64(&f[&format!("clip/{tag}/after{i}")]);
            for (x, y) in after.iter().zip(&expected) {
                assert!(
                    (x - y).abs() < tol * y.abs().max(1.0),
                    "{tag} max_norm {max_norm}: {x} vs PyTorch {y}"
                );
            }
        }
    }
}

#[test]
fn clip_grad_norm_refuses_non_finite_gradients_and_bad_max_norm() {
    let dev = Device::Cpu;
    let a = Var::new(&[1.0f32, 2.0], &dev).unwrap();
    let a_only = std::slice::from_ref(&a);
    let unused = Var::new(&[1.0f32], &dev).unwrap();
    let mut grads = grads_of(a_only, &[Tensor::new(&[f32::INFINITY, 1.0], &dev).unwrap()]);
    let err = clip_grad_norm(&mut grads, &[a.clone(), unused.clone()], 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gradients are not finite"), "{err}");
    let mut grads = grads_of(a_only, &[Tensor::new(&[3.0f32, 4.0], &dev).unwrap()]);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = clip_grad_norm(&mut grads, a_only, bad).unwrap_err().to_string();
        assert!(err.contains("max_norm must be a positive number"), "{err}");
    }
    // No gradient at all: norm 0, nothing to do.
    assert_eq!(clip_grad_norm(&mut grads, &[unused], 1.0).unwrap(), 0.0);
    assert_eq!(clip_grad_norm(&mut grads, a_only, 10.0).unwrap(), 5.0);
    assert_eq!(
        grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
        [3.0, 4.0]
    );
}

#[test]
fn label_smoothed_cross_entropy_matches_pytorch() {
    let f = fixtures();
    let (logits, targets) = (&f["ce/logits"], &f["ce/targets"]);
    let smoothing = vec64(&f["ce/smoothing"]);
    let losses = vec64(&f["ce/loss"]);
    for (i, &s) in smoothing.iter().enumerate() {
        let x = Var::from_tensor(logits).unwrap();
        let loss = cross_entropy_smoothed(x.as_tensor(), targets, s).unwrap();
        let value = loss.to_scalar::<f64>().unwrap();
        assert!(
            (value - losses[i]).abs() < 1e-12 * losses[i],
            "{s}: {value} vs PyTorch {}",
            losses[i]
        );
        let grads = loss.backward().unwrap();
        let grad = vec64(grads.get(x.as_tensor()).unwrap());
        for (g, y) in grad.iter().zip(vec64(&f[&format!("ce/grad{i}")])) {
            assert!((g - y).abs() < 1e-12, "{s}: grad {g} vs PyTorch {y}");
        }
        // f32 too.
        let l32 = cross_entropy_smoothed(&logits.to_dtype(DType::F32).unwrap(), targets, s).unwrap();
        assert!((l32.to_scalar::<f32>().unwrap() as f64 - losses[i]).abs() < 1e-5 * losses[i]);
    }
    // No smoothing is plain cross-entropy.
    let plain = cross_entropy(logits, targets)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let zero = cross_entropy_smoothed(logits, targets, 0.0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert_eq!(plain, zero);
    for bad in [1.0, -0.1, f64::NAN] {
        let err = cross_entropy_smoothed(logits, targets, bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label smoothing must be in [0, 1)"), "{err}");
    }
    let err = cross_entropy_smoothed(logits, &Tensor::new(&[0u32, 9, 0, 0], &Device::Cpu).unwrap(), 0.1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("target 9 at index 1 is out of range"), "{err}");
}

#[test]
fn top_k_counts_match_pytorch_and_break_ties_by_index() {
    let f = fixtures();
    let (logits, targets) = (&f["ce/logits"], &f["ce/targets"]);
    let expected = f["ce/topk"].to_vec1::<i64>().unwrap();
    for (k, &y) in (1..=5).zip(&expected) {
        assert_eq!(top_k_correct(logits, targets, k).unwrap(), y as usize, "k = {k}");
    }
    assert_eq!(
        top_k_correct(logits, targets, 1).unwrap(),
        accuracy_count(logits, targets).unwrap()
    );
    for k in [0, 6] {
        let err = top_k_correct(logits, targets, k).unwrap_err().to_string();
        assert!(err.contains("k must be in 1..=5"), "{err}");
    }
    let dev = Device::Cpu;
    let tied = Tensor::new(&[[1.0f32, 2.0, 2.0, 2.0, 0.0]], &dev).unwrap();
    let count = |t: u32, k: usize| top_k_correct(&tied, &Tensor::new(&[t], &dev).unwrap(), k).unwrap();
    // Classes 1, 2, 3 tie: the lower index ranks first.
    assert_eq!(
        (count(1, 1), count(2, 1), count(2, 2), count(3, 2), count(3, 3)),
        (1, 0, 1, 0, 1)
    );
    let nan = Tensor::new(&[[f32::NAN, 5.0, 1.0]], &dev).unwrap();
    let count = |t: u32, k: usize| top_k_correct(&nan, &Tensor::new(&[t], &dev).unwrap(), k).unwrap();
    // NaN ranks above every number, as in torch.topk.
    assert_eq!((count(0, 1), count(1, 1), count(1, 2)), (1, 0, 1));
}

#[test]
fn fit_optimizer_kinds_build_over_groups() {
    use trainer::train::OptimizerKind;
    let dev = Device::Cpu;
    let w = Var::new(&[[1.0f32, 2.0]], &dev).unwrap();
    let b = Var::new(&[0.5f32], &dev).unwrap();
    let params = vec![("fc.weight".to_string(), w), ("fc.bias".to_string(), b)];
    for kind in [
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
        OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: true,
        },
    ] {
        let opt = kind.build(param_groups(params.clone(), 1e-4), 0.1, 1e-4).unwrap();
        assert_eq!(opt.learning_rate(), 0.1, "{kind:?}");
    }
    let bad = OptimizerKind::Sgd {
        momentum: 0.0,
        nesterov: true,
    };
    let err = bad
        .build(param_groups(params, 0.0), 0.1, 0.0)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("Nesterov")));
}
