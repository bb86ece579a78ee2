//! The training loop end to end on a slice of the bundled MNIST sample (the main job's
//! configuration: `TrainData::mnist` with `TrainConfig::default`).

use backbone::init::SeededVarMap;
use backbone::{Backbone, InputSpec, ModelOutput};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use lenet::{LeNet, LeNetConfig};
use trainer::data::{ImageDataset, Mnist, Preprocess, RandomAffine};
use trainer::run::checkpoint_path;
use trainer::schedule::Schedule;
use trainer::train::{evaluate, train, TrainConfig, TrainData, TrainReport};

/// The main job's loop on in-memory digits.
fn fit(
    model: &dyn Backbone,
    varmap: &VarMap,
    train_set: &ImageDataset,
    test_set: &ImageDataset,
    config: &TrainConfig,
    augment: Option<RandomAffine>,
) -> trainer::Result<TrainReport> {
    let data = TrainData::mnist(train_set.clone(), test_set.clone(), Preprocess::mnist(), augment)?;
    train(model, varmap, data, config, &Device::Cpu)
}

fn slice(data: &ImageDataset, n: usize) -> ImageDataset {
    let size = data.image_size();
    ImageDataset {
        images: data.images[..n * size].to_vec(),
        labels: data.labels[..n].to_vec(),
        ..data.clone()
    }
}

fn run(seed: u64, out: &std::path::Path, epochs: usize) -> (TrainReport, SeededVarMap) {
    let mnist = Mnist::bundled().unwrap();
    let (train, test) = (slice(&mnist.train, 1024), slice(&mnist.test, 300));
    let vars = SeededVarMap::new(seed);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let config = TrainConfig {
        epochs,
        seed,
        out_dir: out.to_path_buf(),
        keep_checkpoints: 2,
        verbose: false,
        ..TrainConfig::default()
    };
    let report = fit(&model, vars.varmap(), &train, &test, &config, None).unwrap();
    (report, vars)
}

#[test]
fn lenet_learns_writes_checkpoints_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let (report, vars) = run(7, dir.path(), 3);
    assert_eq!(report.epochs.len(), 3);
    let (first, last) = (&report.epochs[0], &report.epochs[2]);
    assert!(
        last.train_loss < first.train_loss,
        "{} !< {}",
        last.train_loss,
        first.train_loss
    );
    assert!(last.val_top1 > 0.6, "test accuracy {}", last.val_top1);
    assert!(last.images_per_sec > 0.0);

    // The curves of the run are drawn from the metrics (one CSV line per epoch).
    let png = std::fs::read(dir.path().join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let log = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");

    // Only the two latest checkpoints are kept; the last one holds the trained variables.
    assert!(!checkpoint_path(dir.path(), 1).exists());
    assert!(checkpoint_path(dir.path(), 2).exists());
    assert_eq!(report.checkpoint(3), checkpoint_path(dir.path(), 3));
    let saved = candle_core::safetensors::load(report.checkpoint(3), &Device::Cpu).unwrap();
    let data = vars.varmap().data().lock().unwrap();
    assert_eq!(saved.len(), data.len());
    for (name, var) in data.iter() {
        let diff = (saved[name].clone() - var.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
    }
    drop(data);

    // The checkpoint reloads into a model with the same test accuracy.
    let mnist = Mnist::bundled().unwrap();
    let test = slice(&mnist.test, 300);
    let weights = backbone::weights::Weights::from_file(report.checkpoint(3), &Device::Cpu).unwrap();
    let reloaded = weights
        .build(DType::F32, &Device::Cpu, true, |vb| {
            LeNet::new(&LeNetConfig::lenet5(), vb)
        })
        .unwrap();
    let loader = trainer::data::DataLoader::new(
        std::sync::Arc::new(trainer::data::GrayImages::new(test, "test").unwrap()),
        Preprocess::mnist().pipeline(None).unwrap(),
        trainer::data::LoaderConfig {
            shuffle: false,
            ..trainer::data::LoaderConfig::new(100)
        },
    )
    .unwrap();
    let eval = evaluate(&reloaded, &loader, &Device::Cpu, false).unwrap();
    assert_eq!(eval.top1, last.val_top1);
    assert_eq!(eval.count, 300);

    // Same seed, same run; another seed, another run.
    let again = tempfile::tempdir().unwrap();
    let (same, _) = run(7, again.path(), 3);
    for (a, b) in report.epochs.iter().zip(&same.epochs) {
        assert_eq!((a.train_loss, a.val_top1), (b.train_loss, b.val_top1));
    }
    let other = tempfile::tempdir().unwrap();
    let (different, _) = run(8, other.path(), 1);
    assert_ne!(different.epochs[0].train_loss, report.epochs[0].train_loss);
}

#[test]
fn augmentation_reaches_the_training_batches_only() {
    let mnist = Mnist::bundled().unwrap();
    let (train, test) = (slice(&mnist.train, 256), slice(&mnist.test, 100));
    let dir = tempfile::tempdir().unwrap();
    let run = |augment| {
        let vars = SeededVarMap::new(11);
        let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
        let config = TrainConfig {
            epochs: 1,
            out_dir: dir.path().to_path_buf(),
            verbose: false,
            // The same folder, run after run.
            run: trainer::run::RunOptions {
                overwrite: true,
                ..Default::default()
            },
            ..TrainConfig::default()
        };
        let report = fit(&model, vars.varmap(), &train, &test, &config, augment).unwrap();
        report.epochs[0].train_loss
    };
    let plain = run(None);
    let augmented = run(Some(trainer::data::RandomAffine::mnist()));
    assert_ne!(
        plain, augmented,
        "the augmentation must change what the model is trained on"
    );
    assert_eq!(
        augmented,
        run(Some(trainer::data::RandomAffine::mnist())),
        "and be seeded"
    );
}

#[test]
fn a_resumed_run_ends_exactly_like_an_uninterrupted_one() {
    use trainer::run::{ema_path, latest_epoch, optimizer_path};
    let mnist = Mnist::bundled().unwrap();
    let (train, test) = (slice(&mnist.train, 512), slice(&mnist.test, 100));
    // With the weights' moving average and accumulation on: 8 batches of 64 an epoch make
    // updates of 3, 3 and 2 batches, so the epoch ends on a shorter group.
    let config = |out: &std::path::Path, resume| TrainConfig {
        epochs: 3,
        seed: 4,
        model_ema: Some(0.9),
        accum_steps: 3,
        out_dir: out.to_path_buf(),
        keep_checkpoints: 0,
        verbose: false,
        run: trainer::run::RunOptions {
            resume,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let train_in = |out: &std::path::Path, resume| {
        let vars = SeededVarMap::new(4);
        let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
        fit(
            &model,
            vars.varmap(),
            &train,
            &test,
            &config(out, resume),
            Some(RandomAffine::mnist()),
        )
        .unwrap()
    };
    let full = tempfile::tempdir().unwrap();
    let uninterrupted = train_in(full.path(), false);
    assert_eq!(latest_epoch(full.path()), Some(3));
    assert!(full.path().join("metrics.csv").is_file());

    // A run that "crashed" after epoch 2: only its first two epochs' files exist.
    let crashed = tempfile::tempdir().unwrap();
    for epoch in 1..=2 {
        for path in [
            checkpoint_path(full.path(), epoch),
            optimizer_path(full.path(), epoch),
            ema_path(full.path(), epoch),
        ] {
            std::fs::copy(&path, crashed.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let resumed = train_in(crashed.path(), true);
    assert_eq!(resumed.epochs.len(), 1, "only epoch 3 is left to run");
    assert_eq!(resumed.epochs[0].epoch, 3);
    let (a, b) = (&uninterrupted.epochs[2], &resumed.epochs[0]);
    assert_eq!(
        (
            a.train_loss,
            a.val_loss,
            a.val_top1,
            a.val_ema_loss,
            a.val_ema_top1
        ),
        (
            b.train_loss,
            b.val_loss,
            b.val_top1,
            b.val_ema_loss,
            b.val_ema_top1
        )
    );
    assert!(a.val_ema_loss.is_finite(), "the average is evaluated");
    // The weights and their moving average, byte for byte.
    for path in [checkpoint_path, ema_path] {
        let load =
            |dir: &std::path::Path| candle_core::safetensors::load(path(dir, 3), &Device::Cpu).unwrap();
        let (x, y) = (load(full.path()), load(crashed.path()));
        assert_eq!(x.len(), y.len());
        for (name, t) in &x {
            assert_eq!(
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                y[name].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{name}"
            );
        }
    }
    assert!(uninterrupted.ema.is_some() && uninterrupted.final_ema_eval.is_some());

    // A run saved without its moving average cannot resume one exactly: an error naming the
    // missing file.
    let no_ema = tempfile::tempdir().unwrap();
    for path in [checkpoint_path(full.path(), 2), optimizer_path(full.path(), 2)] {
        std::fs::copy(&path, no_ema.path().join(path.file_name().unwrap())).unwrap();
    }
    let vars = SeededVarMap::new(4);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let err = fit(
        &model,
        vars.varmap(),
        &train,
        &test,
        &config(no_ema.path(), true),
        Some(RandomAffine::mnist()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("epoch-002.ema.safetensors"), "{err}");

    // A corrupt optimizer state is an error naming the file, not a silent fresh start.
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::copy(
        checkpoint_path(full.path(), 1),
        checkpoint_path(corrupt.path(), 1),
    )
    .unwrap();
    std::fs::write(optimizer_path(corrupt.path(), 1), b"not safetensors").unwrap();
    let vars = SeededVarMap::new(4);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let err = fit(
        &model,
        vars.varmap(),
        &train,
        &test,
        &config(corrupt.path(), true),
        Some(RandomAffine::mnist()),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("epoch-001.optimizer.safetensors"),
        "{err}"
    );
}

#[test]
fn cosine_schedule_goes_from_base_to_zero() {
    let s = Schedule::Cosine;
    assert_eq!(s.lr_at(1e-3, 0, 100, 10), 1e-3);
    assert!((s.lr_at(1e-3, 50, 100, 10) - 5e-4).abs() < 1e-12);
    assert!(s.lr_at(1e-3, 100, 100, 10).abs() < 1e-12);
    assert_eq!(Schedule::Constant.lr_at(1e-3, 70, 100, 10), 1e-3);
}

#[test]
fn bad_settings_are_errors() {
    let mnist = Mnist::bundled().unwrap();
    let data = slice(&mnist.test, 10);
    let vars = SeededVarMap::new(0);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for config in [
        TrainConfig {
            epochs: 0,
            ..TrainConfig::default()
        },
        TrainConfig {
            batch_size: 0,
            ..TrainConfig::default()
        },
        TrainConfig {
            lr: -1.0,
            ..TrainConfig::default()
        },
        TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        },
    ] {
        let config = TrainConfig {
            out_dir: dir.path().to_path_buf(),
            verbose: false,
            ..config
        };
        assert!(fit(&model, vars.varmap(), &data, &data, &config, None).is_err());
    }
}

/// A linear classifier on the flattened image with one auxiliary head, to check the
/// auxiliary losses reach the optimizer and the report.
struct WithAux {
    main: backbone::layers::Linear,
    aux: backbone::layers::Linear,
}

impl Backbone for WithAux {
    fn name(&self) -> &str {
        "with_aux"
    }
    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: 1,
            min_size: (32, 32),
            fixed_size: Some((32, 32)),
            default_size: (32, 32),
        }
    }
    /// The image itself is the feature map.
    fn forward_features(&self, xs: &Tensor, _train: bool) -> backbone::Result<Tensor> {
        Ok(xs.clone())
    }
    fn forward_pre_logits(&self, features: &Tensor, _train: bool) -> backbone::Result<Tensor> {
        Ok(features.flatten_from(1)?)
    }
    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> backbone::Result<Tensor> {
        use backbone::layers::Layer;
        self.main.forward_t(pre_logits, train)
    }
    fn feature_info(&self) -> Vec<backbone::FeatureInfo> {
        vec![backbone::FeatureInfo::new("input", 1, 1)]
    }
    fn forward_stages(&self, xs: &Tensor, train: bool) -> backbone::Result<Vec<Tensor>> {
        Ok(vec![self.forward_features(xs, train)?])
    }
    fn forward_aux(&self, xs: &Tensor, train: bool) -> backbone::Result<ModelOutput> {
        use backbone::layers::Layer;
        let features = self.forward_features(xs, train)?;
        let aux_logits = if train {
            vec![self
                .aux
                .forward_t(&self.forward_pre_logits(&features, train)?, train)?]
        } else {
            vec![]
        };
        Ok(ModelOutput {
            logits: self.forward_head(&features, train)?,
            aux_logits,
        })
    }
    fn num_features(&self) -> usize {
        1024
    }
    fn num_classes(&self) -> usize {
        10
    }
    fn head_prefix(&self) -> &str {
        "main"
    }
}

#[test]
fn auxiliary_losses_are_reported_and_trained() {
    let mnist = Mnist::bundled().unwrap();
    let (train, test) = (slice(&mnist.train, 256), slice(&mnist.test, 100));
    let dir = tempfile::tempdir().unwrap();
    let train_with = |aux_weight: f64| {
        let vars = SeededVarMap::new(3);
        let vb = vars.var_builder(DType::F32, &Device::Cpu);
        let model = WithAux {
            main: backbone::layers::Linear::new(1024, 10, vb.pp("main")).unwrap(),
            aux: backbone::layers::Linear::new(1024, 10, vb.pp("aux")).unwrap(),
        };
        let before = vars.varmap().data().lock().unwrap()["aux.weight"]
            .as_tensor()
            .copy()
            .unwrap();
        let config = TrainConfig {
            epochs: 1,
            aux_weight,
            out_dir: dir.path().to_path_buf(),
            verbose: false,
            // The same folder, run after run.
            run: trainer::run::RunOptions {
                overwrite: true,
                ..Default::default()
            },
            ..TrainConfig::default()
        };
        let report = fit(&model, vars.varmap(), &train, &test, &config, None).unwrap();
        let after = vars.varmap().data().lock().unwrap()["aux.weight"]
            .as_tensor()
            .copy()
            .unwrap();
        let moved = (after - before)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        (report, moved)
    };
    let (report, moved) = train_with(0.3);
    let aux = report.epochs[0].train_aux_loss;
    assert!(aux.is_finite() && aux > 0.0, "aux loss {aux}");
    assert!(moved > 0.0, "the auxiliary head must be trained");
    let (report, moved) = train_with(0.0);
    assert!(
        report.epochs[0].train_aux_loss.is_nan(),
        "no aux loss is reported when off"
    );
    assert_eq!(moved, 0.0, "aux weight 0 switches the auxiliary loss off");
}

/// The values of a seeded variable map's variables, by name (a run's starting point).
pub(crate) fn variables_of(init: &SeededVarMap) -> std::collections::HashMap<String, Tensor> {
    let data = init.varmap().data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// The largest `max|a - b| / max|b|` over the tensors of two checkpoints (as f64; also the MPI
/// tests' measure).
pub(crate) fn worst_relative(
    a: &std::collections::HashMap<String, Tensor>,
    b: &std::collections::HashMap<String, Tensor>,
) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for (name, x) in a {
        let flat = |t: &Tensor| {
            t.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        let (x, y) = (flat(x), flat(&b[name]));
        let diff = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        let scale = y.iter().map(|q| q.abs()).fold(0.0, f64::max).max(1e-30);
        if diff / scale > worst.0 {
            worst = (diff / scale, name.clone());
        }
    }
    worst
}

/// A float64 model trains through the one loop (batches converted to f64, the losses and
/// metrics read back, evaluation, the moving average): its checkpoint, optimizer state and
/// moving average are saved in f64 and the run folder records the dtype; it takes the steps
/// of the same model in f32 up to f32's rounding.
#[test]
fn a_float64_model_trains_and_saves_float64_checkpoints() {
    use trainer::checkpoint::load_checkpoint;
    use trainer::run::{ema_path, optimizer_path, RunOptions};
    let mnist = Mnist::bundled().unwrap();
    let (train, test) = (slice(&mnist.train, 128), slice(&mnist.test, 50));
    let run_in = |dtype: DType, out: &std::path::Path, epochs: usize, resume: bool| {
        let vars = SeededVarMap::new(3);
        let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(dtype, &Device::Cpu)).unwrap();
        let config = TrainConfig {
            epochs,
            batch_size: 32,
            seed: 3,
            // SGD: Adam's first steps divide tiny gradients by their own magnitude, which
            // magnifies f32's rounding (a comparison with the f32 run would test that).
            optimizer: trainer::train::OptimizerKind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            lr: 0.05,
            model_ema: Some(0.9),
            out_dir: out.to_path_buf(),
            verbose: false,
            run: RunOptions {
                resume,
                ..Default::default()
            },
            ..TrainConfig::default()
        };
        fit(&model, vars.varmap(), &train, &test, &config, None)
    };
    let (f64_dir, f32_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let report = run_in(DType::F64, f64_dir.path(), 1, false).unwrap();
    let row = &report.epochs[0];
    assert!(row.train_loss.is_finite() && row.train_loss > 0.0, "{row:?}");
    assert!(
        row.val_loss.is_finite() && row.val_ema_loss.is_finite(),
        "{row:?}"
    );
    assert_eq!(report.final_eval.count, 50);

    // Every float tensor saved is f64: the weights, the optimizer's momenta, the average.
    let out = f64_dir.path();
    for path in [checkpoint_path(out, 1), optimizer_path(out, 1), ema_path(out, 1)] {
        let tensors = load_checkpoint(&path, &Device::Cpu).unwrap();
        assert!(!tensors.is_empty(), "{path:?}");
        for (name, t) in &tensors {
            assert!(
                !t.dtype().is_float() || t.dtype() == DType::F64,
                "{path:?}: `{name}` is {:?}",
                t.dtype()
            );
        }
    }
    let settings = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(
        settings.contains("\"dtype\"") && settings.contains("F64"),
        "{settings}"
    );

    // The same run in f32: the weights trained (not the initialisation) agree to f32's
    // rounding, amplified a little by 4 steps (1.7e-7 measured).
    run_in(DType::F32, f32_dir.path(), 1, false).unwrap();
    let ours = load_checkpoint(&checkpoint_path(out, 1), &Device::Cpu).unwrap();
    let theirs = load_checkpoint(&checkpoint_path(f32_dir.path(), 1), &Device::Cpu).unwrap();
    let (worst, name) = worst_relative(&ours, &theirs);
    eprintln!("LeNet-5, 4 steps, float64 against float32: worst `{name}` {worst:.2e}");
    assert!(worst <= 1e-5, "`{name}` differs by {worst:e} (relative)");
    let init = SeededVarMap::new(3);
    let _ = LeNet::new(&LeNetConfig::lenet5(), init.var_builder(DType::F64, &Device::Cpu)).unwrap();
    let start = variables_of(&init);
    assert!(worst_relative(&start, &ours).0 > 1e-3);

    // Resuming the f64 run with an f32 model is another run: refused.
    let err = run_in(DType::F32, out, 2, true).unwrap_err().to_string();
    assert!(err.contains("dtype") && err.contains("--allow-changes"), "{err}");

    // A model whose variables mix f32 and f64 is refused before anything runs.
    let vars = SeededVarMap::new(3);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F64, &Device::Cpu)).unwrap();
    vars.varmap()
        .get(2, "extra", candle_nn::Init::Const(0.0), DType::F32, &Device::Cpu)
        .unwrap();
    let mixed = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 1,
        batch_size: 32,
        out_dir: mixed.path().to_path_buf(),
        verbose: false,
        ..TrainConfig::default()
    };
    let err = fit(&model, vars.varmap(), &train, &test, &config, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than one dtype"), "{err}");
}
