//! The weights' moving average against timm's `ModelEmaV3` (`fixtures/ema.safetensors` from
//! `scripts/gen_ema_fixtures.py`), gradient accumulation against the larger batch, mixed
//! precision against float32.

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lenet::{LeNet, LeNetConfig};
use std::collections::HashMap;
use std::path::Path;
use trainer::data::{ImageDataset, Mnist, Preprocess};
use trainer::ema::ModelEma;
use trainer::loss::cross_entropy;
use trainer::optim::OptimizerKind;
use trainer::schedule::Schedule;
use trainer::train::{train, Accumulation, TrainConfig, TrainData};

fn fixtures() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ema.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

/// max |ours - reference| / max |reference|.
fn relative(ours: &Tensor, reference: &Tensor) -> f64 {
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
    f64::from(diff) / f64::from(scale.max(f32::MIN_POSITIVE))
}

#[test]
fn the_moving_average_follows_timms_model_ema_v3() {
    let f = fixtures();
    let decay = f["meta/decay"].to_vec1::<f64>().unwrap()[0];
    let steps = f["meta/steps"].to_vec1::<i64>().unwrap()[0] as usize;
    let names: Vec<String> = f
        .keys()
        .filter_map(|k| k.strip_prefix("model/1/").map(str::to_string))
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("running_var")),
        "buffers are averaged too"
    );
    // The model before the first update: zeros (the first update copies the weights).
    let varmap = VarMap::new();
    for name in &names {
        let shape = f[&format!("model/1/{name}")].shape().clone();
        let var = Var::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        varmap.data().lock().unwrap().insert(name.clone(), var);
    }
    let mut ema = ModelEma::new(&varmap, decay).unwrap();
    let mut worst = 0f64;
    for step in 1..=steps {
        for name in &names {
            let var = varmap.data().lock().unwrap()[name].clone();
            var.set(&f[&format!("model/{step}/{name}")]).unwrap();
        }
        ema.update(&varmap, step).unwrap();
        for name in &names {
            let r = relative(&ema.tensors()[name], &f[&format!("ema/{step}/{name}")]);
            assert!(r <= 1e-6, "step {step} {name}: {r:e}");
            worst = worst.max(r);
        }
    }
    eprintln!("EMA against timm over {steps} updates: worst relative difference {worst:e}");

    // Evaluating with the average leaves the model's own weights in place.
    let own: Vec<Vec<f32>> = names
        .iter()
        .map(|n| {
            varmap.data().lock().unwrap()[n]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    let seen = ema
        .with_weights(&varmap, || {
            let var = varmap.data().lock().unwrap()[&names[0]].clone();
            Ok(var.as_tensor().flatten_all()?.to_vec1::<f32>()?)
        })
        .unwrap();
    assert_eq!(
        seen,
        ema.tensors()[&names[0]]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
    for (name, before) in names.iter().zip(&own) {
        let now: Vec<f32> = varmap.data().lock().unwrap()[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(&now, before, "{name} restored");
    }
    // A saved average of another model is refused, naming the file.
    let mut other = HashMap::new();
    other.insert(
        "x".to_string(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = ema.load_state(other, Path::new("ema.safetensors")).unwrap_err();
    assert!(err.to_string().contains("ema.safetensors"), "{err}");
    assert!(ModelEma::new(&varmap, 1.0).is_err());
}

fn digits(n: usize) -> (ImageDataset, Tensor, Tensor) {
    let mnist = Mnist::bundled().unwrap();
    let train = mnist.train.head(n);
    let pipeline = Preprocess::mnist().pipeline(None).unwrap();
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let data = trainer::data::GrayImages::new(train.clone(), "digits").unwrap();
    for i in 0..n {
        use trainer::data::Dataset;
        let sample = data.get(i).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        images.extend(pipeline.apply(sample.image, &mut rng).unwrap().data);
        labels.push(sample.label as u32);
    }
    let xs = Tensor::from_vec(images, (n, 1, 32, 32), &Device::Cpu).unwrap();
    let ys = Tensor::from_vec(labels, n, &Device::Cpu).unwrap();
    (train, xs, ys)
}

fn lenet(seed: u64) -> (LeNet, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// Four batches of 8 accumulate to the gradient of one batch of 32 (LeNet-5: no batch norm).
#[test]
fn accumulated_gradients_are_the_larger_batchs() {
    let (_, xs, ys) = digits(32);
    let (model, vars) = lenet(3);
    let trainable: Vec<Var> = backbone::init::trainable_vars(vars.varmap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let loss = |from: usize, n: usize| {
        let logits = model.forward_t(&xs.narrow(0, from, n).unwrap(), true).unwrap();
        cross_entropy(&logits, &ys.narrow(0, from, n).unwrap()).unwrap()
    };
    let big = loss(0, 32).backward().unwrap();
    let mut accumulated = Accumulation::default();
    // Unequal batches too: 8 + 8 + 12 + 4.
    for (from, n) in [(0, 8), (8, 8), (16, 12), (28, 4)] {
        accumulated
            .add(&loss(from, n).backward().unwrap(), &trainable, n)
            .unwrap();
    }
    let summed = accumulated.take().unwrap().unwrap();
    assert!(accumulated.take().unwrap().is_none(), "taken once");
    let mut worst = 0f64;
    for var in &trainable {
        let r = relative(
            summed.get(var.as_tensor()).unwrap(),
            big.get(var.as_tensor()).unwrap(),
        );
        assert!(r <= 1e-6, "{r:e}");
        worst = worst.max(r);
    }
    eprintln!("accumulated gradients against the batch of 32: worst relative difference {worst:e}");
}

/// The loop: `accum_steps` 4 of batch 8 is one SGD update of the batch of 32.
#[test]
fn the_loop_with_accumulation_takes_the_larger_batchs_step() {
    let (train_set, _, _) = digits(32);
    let test_set = Mnist::bundled().unwrap().test.head(50);
    let run = |batch_size: usize, accum_steps: usize| {
        let (model, vars) = lenet(5);
        let out = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            epochs: 1,
            batch_size,
            accum_steps,
            lr: 0.5,
            optimizer: OptimizerKind::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            schedule: Schedule::Constant,
            out_dir: out.path().to_path_buf(),
            verbose: false,
            ..TrainConfig::default()
        };
        let data = TrainData::mnist(train_set.clone(), test_set.clone(), Preprocess::mnist(), None).unwrap();
        let report = train(&model, vars.varmap(), data, &config, &Device::Cpu).unwrap();
        let weights: HashMap<String, Tensor> = vars
            .varmap()
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
            .collect();
        (report, weights)
    };
    let fresh: HashMap<String, Tensor> = {
        let (_, vars) = lenet(5);
        let data = vars.varmap().data().lock().unwrap();
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
            .collect()
    };
    let (big_report, big) = run(32, 1);
    let (small_report, small) = run(8, 4);
    assert!(
        (small_report.epochs[0].train_loss - big_report.epochs[0].train_loss).abs() < 1e-5,
        "the same weights see the same images before the one update"
    );
    let moved = big
        .iter()
        .filter(|(name, b)| relative(&fresh[*name], b) > 1e-3)
        .count();
    assert!(moved > 0, "the update moved the weights");
    for (name, b) in &big {
        let r = relative(&small[name], b);
        assert!(r <= 1e-6, "{name}: {r:e}");
    }
}

#[test]
fn the_loss_scaler_backs_off_and_grows_as_pytorchs() {
    use trainer::amp::GradScaler;
    assert_eq!(GradScaler::default().scale(), 65536.0);
    let mut scaler = GradScaler::new(8.0, 3);
    scaler.update(true);
    scaler.update(true);
    assert_eq!(scaler.scale(), 8.0);
    scaler.update(true);
    assert_eq!(scaler.scale(), 16.0, "doubled after 3 finite steps");
    scaler.update(true);
    scaler.update(false);
    assert_eq!(scaler.scale(), 8.0, "halved on overflow");
    scaler.update(true);
    scaler.update(true);
    assert_eq!(scaler.scale(), 8.0, "the count starts again after an overflow");
}

/// `--amp f16`: the forward and backward passes on a float16 twin of LeNet-5, the weights and
/// SGD in float32; the run follows the float32 one (SGD does not hide a scale left on the
/// gradients, as Adam would).
#[test]
fn mixed_precision_trains_float32_weights_through_a_float16_twin() {
    use trainer::amp::{GradScaler, MixedPrecision};
    let mnist = Mnist::bundled().unwrap();
    let (train_set, test_set) = (mnist.train.head(128), mnist.test.head(50));
    let run = |amp: bool| {
        let (model, vars) = lenet(9);
        let out = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            epochs: 1,
            batch_size: 32,
            lr: 0.05,
            optimizer: OptimizerKind::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            out_dir: out.path().to_path_buf(),
            verbose: false,
            ..TrainConfig::default()
        };
        let data = TrainData::mnist(train_set.clone(), test_set.clone(), Preprocess::mnist(), None).unwrap();
        let report = if amp {
            let twin_vars = SeededVarMap::new(0);
            let twin = LeNet::new(
                &LeNetConfig::lenet5(),
                twin_vars.var_builder(DType::F16, &Device::Cpu),
            )
            .unwrap();
            let mut mp = MixedPrecision::new(DType::F16, Box::new(twin), twin_vars.varmap(), vars.varmap())
                .unwrap()
                .with_scaler(GradScaler::new(256.0, 2000));
            let report = trainer::train::train_mixed_precision(
                &model,
                vars.varmap(),
                data,
                &config,
                &Device::Cpu,
                &mut mp,
            )
            .unwrap();
            assert_eq!(mp.scaler().unwrap().scale(), 256.0, "no overflow at this scale");
            report
        } else {
            train(&model, vars.varmap(), data, &config, &Device::Cpu).unwrap()
        };
        let weights: HashMap<String, Tensor> = vars
            .varmap()
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
            .collect();
        (report, weights)
    };
    let (full, w32) = run(false);
    let (mixed, w16) = run(true);
    let (a, b) = (&full.epochs[0], &mixed.epochs[0]);
    assert!(
        (a.train_loss - b.train_loss).abs() < 0.01 * a.train_loss,
        "{a:?} {b:?}"
    );
    assert!((a.val_loss - b.val_loss).abs() < 0.01 * a.val_loss, "{a:?} {b:?}");
    let (_, fresh) = lenet(9);
    for (name, w) in &w16 {
        assert_eq!(w.dtype(), DType::F32, "{name}: the weights stay float32");
        let moved = relative(
            w,
            &fresh.varmap().data().lock().unwrap()[name]
                .as_tensor()
                .copy()
                .unwrap(),
        );
        let apart = relative(w, &w32[name]);
        assert!(
            apart < 0.05 * moved.max(1e-3) + 1e-3,
            "{name}: {apart:e} apart, moved {moved:e}"
        );
    }
}
