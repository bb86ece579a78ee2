//! The weights' moving average against timm's `ModelEmaV3` (`fixtures/ema.safetensors` from
//! `scripts/gen_ema_fixtures.py`), and gradient accumulation against the larger batch.

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
