//! The fine-tuning loop end to end on slices of the bundled MNIST sample: a frozen backbone
//! (batch-norm statistics included), the feature cache, unfreezing, resuming, the run's files,
//! the export and the errors.

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device};
use candle_nn::VarMap;
use lenet::{LeNet, LeNetConfig};
use resnet::{ResNet, ResNetConfig};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use trainer::checkpoint::export;
use trainer::data::{
    Dataset, GrayImages, Interpolation, Mnist, OnCorrupt, Pipeline, ResizeTo, Sample, Transform,
};
use trainer::hub::{resolve, HubOptions, PretrainedConfig, WeightsRef};
use trainer::metrics::{write_metrics_json, RunMetrics};
use trainer::pretrained::{head_prefixes, under_prefix};
use trainer::run::{checkpoint_path, latest_epoch, optimizer_path};
use trainer::schedule::Schedule;
use trainer::train::{train as finetune, TrainConfig, TrainData, TrainReport};

/// Every variable's values, by name.
type State = HashMap<String, Vec<f32>>;

fn digits(train: usize, val: usize) -> (Arc<dyn Dataset>, Arc<dyn Dataset>) {
    let mnist = Mnist::bundled().unwrap();
    let train = GrayImages::new(mnist.train.head(train), "mnist/train").unwrap();
    let val = GrayImages::new(mnist.test.head(val), "mnist/test").unwrap();
    (Arc::new(train), Arc::new(val))
}

/// Resize to `side` x `side`, optionally a random flip, normalise.
fn transform(side: usize, flip: bool) -> Pipeline {
    let mut steps = vec![Transform::Resize {
        size: ResizeTo::Exact(side, side),
        interpolation: Interpolation::Bilinear,
    }];
    if flip {
        steps.push(Transform::RandomHorizontalFlip(0.5));
    }
    steps.push(Transform::Normalize {
        mean: vec![0.1307],
        std: vec![0.3081],
    });
    Pipeline::new(steps).unwrap()
}

fn data(train: &Arc<dyn Dataset>, val: &Arc<dyn Dataset>, side: usize, flip: bool) -> TrainData {
    TrainData {
        train: train.clone(),
        val: val.clone(),
        train_transform: transform(side, flip),
        eval_transform: transform(side, false),
    }
}

fn lenet(seed: u64) -> (LeNet, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let config = LeNetConfig::lenet5().with_in_channels(1);
    let model = LeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// ResNet-18 on 1-channel 16x16 digits (ImageNet stem: 4x4 after the stem, 1x1 at `layer4`).
fn resnet(seed: u64) -> (ResNet, SeededVarMap) {
    let vars = SeededVarMap::new(seed);
    let config = ResNetConfig::resnet18().with_in_channels(1).with_classes(10);
    let model = ResNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// Runs that reuse a folder on purpose.
const OVERWRITE: trainer::run::RunOptions = trainer::run::RunOptions {
    resume: false,
    overwrite: true,
    allow_changes: false,
};

fn config(out: &Path, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        // The features of a fresh LeNet are small (|f| ~ 0.03): a linear probe needs a high rate.
        lr: 0.1,
        seed: 5,
        workers: 0,
        out_dir: out.to_path_buf(),
        keep_checkpoints: 0,
        verbose: false,
        ..TrainConfig::finetune()
    }
}

fn state(varmap: &VarMap) -> State {
    let data = varmap.data().lock().unwrap();
    data.iter()
        .map(|(name, var)| {
            let values = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (name.clone(), values)
        })
        .collect()
}

fn saved(path: &Path) -> State {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn is_head(model: &dyn Backbone, name: &str) -> bool {
    head_prefixes(model).iter().any(|p| under_prefix(name, p))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn distance(a: &State, b: &State, names: &[&String]) -> f64 {
    names
        .iter()
        .flat_map(|n| a[*n].iter().zip(&b[*n]))
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Asserts that the backbone (every non-head variable, running statistics included) of `after`
/// is bit-identical to `before` and that every head variable changed.
fn assert_only_the_head_moved(model: &dyn Backbone, before: &State, after: &State, what: &str) {
    assert_eq!(before.len(), after.len());
    let mut head = 0;
    for (name, values) in before {
        if is_head(model, name) {
            head += 1;
            assert_ne!(values, &after[name], "{what}: head variable {name} did not train");
        } else {
            assert_eq!(values, &after[name], "{what}: backbone variable {name} changed");
        }
    }
    assert_eq!(head, 2, "{what}: the head is a weight and a bias");
}

#[test]
fn a_frozen_resnet_keeps_its_weights_and_batch_norm_statistics_bit_identical() {
    let (train, val) = digits(96, 64);
    for cache in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (model, vars) = resnet(3);
        let before = state(vars.varmap());
        let stats = before.keys().filter(|n| n.ends_with("running_mean")).count();
        assert_eq!(stats, 20, "ResNet-18 has 20 batch norms");
        let config = TrainConfig {
            feature_cache: cache,
            ..config(dir.path(), 2)
        };
        let report = finetune(
            &model,
            vars.varmap(),
            data(&train, &val, 16, false),
            &config,
            &Device::Cpu,
        )
        .unwrap();
        let what = if cache {
            "with the cache"
        } else {
            "without the cache"
        };
        assert_only_the_head_moved(&model, &before, &state(vars.varmap()), what);
        assert_eq!(report.epochs.len(), 2);
        assert_eq!(report.final_eval.count, 64);
        assert!(report.epochs.iter().all(|e| e.train_loss.is_finite()));
    }
}

#[test]
fn a_linear_probe_on_a_frozen_lenet_beats_chance() {
    let (train, val) = digits(400, 200);
    let dir = tempfile::tempdir().unwrap();
    let (model, vars) = lenet(1);
    let before = state(vars.varmap());
    let report = finetune(
        &model,
        vars.varmap(),
        data(&train, &val, 32, false),
        &config(dir.path(), 4),
        &Device::Cpu,
    )
    .unwrap();
    assert_only_the_head_moved(&model, &before, &state(vars.varmap()), "linear probe");
    assert_eq!(report.epochs.len(), 4);
    let (first, last) = (&report.epochs[0], &report.epochs[3]);
    assert!(
        last.train_loss < first.train_loss,
        "{} !< {}",
        last.train_loss,
        first.train_loss
    );
    let top1 = report.final_eval.top1;
    assert!(top1 > 0.4, "validation top-1 {top1} (chance: 0.1)");
    assert!(report.cache_seconds > 0.0);
    // The last epoch evaluated on cached features, the final evaluation on images through the
    // backbone: the same model, so the same metrics (up to the float noise of other batches).
    assert!((last.val_loss - report.final_eval.loss).abs() < 1e-4);
    assert!((last.val_top1 - top1).abs() <= 1.0 / 200.0 + 1e-12);
    // The cosine schedule ends near zero.
    assert!(last.lr < 0.01 * 0.1, "final lr {}", last.lr);
}

#[test]
fn the_feature_cache_trains_the_same_head_as_the_backbone_pass() {
    let (train, val) = digits(256, 64);
    let run = |cache: bool, flip: bool| -> (TrainReport, State, State) {
        let dir = tempfile::tempdir().unwrap();
        let (model, vars) = lenet(2);
        let before = state(vars.varmap());
        let config = TrainConfig {
            feature_cache: cache,
            ..config(dir.path(), 2)
        };
        let report = finetune(
            &model,
            vars.varmap(),
            data(&train, &val, 32, flip),
            &config,
            &Device::Cpu,
        )
        .unwrap();
        let after = state(vars.varmap());
        assert_only_the_head_moved(&model, &before, &after, "frozen");
        (report, before, after)
    };
    let (cached, _, a) = run(true, false);
    let (direct, _, b) = run(false, false);
    assert!(cached.cache_seconds > 0.0, "the cache was not used");
    assert_eq!(direct.cache_seconds, 0.0);
    for name in ["fc3.weight", "fc3.bias"] {
        let diff = max_diff(&a[name], &b[name]);
        assert!(diff < 1e-5, "{name}: cached and uncached heads differ by {diff}");
    }
    for (x, y) in cached.epochs.iter().zip(&direct.epochs) {
        assert!((x.train_loss - y.train_loss).abs() < 1e-5, "{x:?} vs {y:?}");
        assert!((x.val_loss - y.val_loss).abs() < 1e-5, "{x:?} vs {y:?}");
        assert_eq!(x.lr, y.lr);
    }
    // A random training transform gives other features every epoch: no cache then.
    let (flipped, _, c) = run(true, true);
    assert_eq!(
        flipped.cache_seconds, 0.0,
        "a random transform must not be cached"
    );
    assert!(
        max_diff(&a["fc3.weight"], &c["fc3.weight"]) > 1e-4,
        "the flips did nothing"
    );
}

#[test]
fn unfreezing_after_one_epoch_trains_the_backbone_and_its_statistics_from_epoch_two() {
    let (train, val) = digits(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let (model, vars) = resnet(4);
    let before = state(vars.varmap());
    let config = TrainConfig {
        unfreeze_after: Some(1),
        lr: 1e-3,
        ..config(dir.path(), 2)
    };
    let report = finetune(
        &model,
        vars.varmap(),
        data(&train, &val, 16, false),
        &config,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(report.epochs.len(), 2);
    assert!(report.cache_seconds > 0.0, "epoch 1 is frozen and cacheable");
    let epoch1 = saved(&checkpoint_path(dir.path(), 1));
    assert_only_the_head_moved(&model, &before, &epoch1, "after epoch 1");
    let epoch2 = saved(&checkpoint_path(dir.path(), 2));
    let now = state(vars.varmap());
    assert_eq!(epoch2, now, "the last checkpoint is the final model");
    for (name, values) in &before {
        // Every variable trains in epoch 2: the parameters, and the running statistics of
        // batch norm in training mode.
        assert_ne!(values, &epoch2[name], "{name} did not change in epoch 2");
        assert_ne!(&epoch1[name], &epoch2[name], "{name} did not change in epoch 2");
    }
}

#[test]
fn a_lower_backbone_learning_rate_moves_the_backbone_less() {
    let (train, val) = digits(128, 32);
    let moved = |scale: f64| -> f64 {
        let dir = tempfile::tempdir().unwrap();
        let (model, vars) = lenet(6);
        let config = TrainConfig {
            unfreeze_after: Some(1),
            backbone_lr_scale: scale,
            lr: 1e-3,
            schedule: Schedule::Constant,
            ..config(dir.path(), 2)
        };
        finetune(
            &model,
            vars.varmap(),
            data(&train, &val, 32, false),
            &config,
            &Device::Cpu,
        )
        .unwrap();
        let (epoch1, epoch2) = (
            saved(&checkpoint_path(dir.path(), 1)),
            saved(&checkpoint_path(dir.path(), 2)),
        );
        let body: Vec<&String> = epoch1.keys().filter(|n| !is_head(&model, n)).collect();
        assert_eq!(body.len(), 8);
        distance(&epoch1, &epoch2, &body)
    };
    let (slow, full) = (moved(0.01), moved(1.0));
    assert!(slow > 0.0, "the backbone did not train at all");
    assert!(
        slow < 0.1 * full,
        "backbone moved {slow} at lr scale 0.01 vs {full} at scale 1"
    );
}

/// What a run that crashed after epoch `k` leaves: its first `k` checkpoints with their
/// optimizer states and the metrics of those epochs.
fn crashed_copy(full: &Path, k: usize) -> tempfile::TempDir {
    let crashed = tempfile::tempdir().unwrap();
    for epoch in 1..=k {
        for path in [checkpoint_path(full, epoch), optimizer_path(full, epoch)] {
            std::fs::copy(&path, crashed.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let text = std::fs::read_to_string(full.join("metrics.json")).unwrap();
    let mut run: RunMetrics = serde_json::from_str(&text).unwrap();
    run.epochs.retain(|e| e.epoch <= k);
    run.final_eval = None;
    write_metrics_json(&crashed.path().join("metrics.json"), &run).unwrap();
    crashed
}

/// Runs `config` for 3 epochs uninterrupted, then interrupted after epoch `k` (`literal`: by a
/// run of `k` epochs, which needs a schedule that does not depend on the run's length; else by
/// the files a crash after epoch `k` leaves) and resumed: both must end bit-identical.
fn resumes_exactly(base: TrainConfig, flip: bool, k: usize, literal: bool, what: &str) {
    let (train, val) = digits(160, 64);
    let run = |out: &Path, epochs: usize, resume: bool| -> (TrainReport, State) {
        let (model, vars) = lenet(8);
        let config = TrainConfig {
            epochs,
            run: trainer::run::RunOptions {
                resume,
                ..Default::default()
            },
            out_dir: out.to_path_buf(),
            ..base.clone()
        };
        let report = finetune(
            &model,
            vars.varmap(),
            data(&train, &val, 32, flip),
            &config,
            &Device::Cpu,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        (report, state(vars.varmap()))
    };
    let full = tempfile::tempdir().unwrap();
    let (uninterrupted, expected) = run(full.path(), 3, false);
    let crashed = if literal {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), k, false);
        dir
    } else {
        crashed_copy(full.path(), k)
    };
    assert_eq!(latest_epoch(crashed.path()), Some(k));
    let (resumed, got) = run(crashed.path(), 3, true);
    let epochs: Vec<usize> = resumed.epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, ((k + 1)..=3).collect::<Vec<_>>(), "{what}");
    for (name, values) in &expected {
        assert_eq!(
            values, &got[name],
            "{what}: {name} differs from the uninterrupted run"
        );
    }
    let (a, b) = (&uninterrupted.epochs[2], resumed.epochs.last().unwrap());
    assert_eq!(
        (a.train_loss, a.train_top1, a.val_loss, a.val_top1, a.lr),
        (b.train_loss, b.train_top1, b.val_loss, b.val_top1, b.lr),
        "{what}: epoch 3"
    );
    assert_eq!(uninterrupted.final_eval, resumed.final_eval, "{what}");
    // The resumed run's metrics cover the whole run.
    let text = std::fs::read_to_string(crashed.path().join("metrics.json")).unwrap();
    let run_metrics: RunMetrics = serde_json::from_str(&text).unwrap();
    let losses: Vec<f64> = run_metrics.epochs.iter().map(|e| e.train_loss).collect();
    let expected_losses: Vec<f64> = uninterrupted.epochs.iter().map(|e| e.train_loss).collect();
    assert_eq!(losses, expected_losses, "{what}: metrics.json");
}

#[test]
fn a_resumed_linear_probe_ends_like_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = config(dir.path(), 3);
    assert!(base.feature_cache && base.freeze_backbone);
    resumes_exactly(base, false, 2, false, "feature cache, cosine");
}

#[test]
fn a_resumed_full_fine_tuning_with_random_flips_and_workers_ends_like_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = TrainConfig {
        freeze_backbone: false,
        workers: 2,
        lr: 1e-3,
        schedule: Schedule::Constant,
        ..config(dir.path(), 3)
    };
    resumes_exactly(
        base,
        true,
        2,
        true,
        "random flips, 2 workers, run of 2 epochs resumed",
    );
}

#[test]
fn a_run_resumed_at_the_unfreezing_epoch_ends_like_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = TrainConfig {
        unfreeze_after: Some(1),
        lr: 1e-3,
        ..config(dir.path(), 3)
    };
    resumes_exactly(base, false, 1, false, "crash after the frozen epoch");
}

#[test]
fn a_run_writes_metrics_plots_and_an_export_that_loads_back() {
    let (train, val) = digits(200, 100);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (model, vars) = lenet(9);
    let config = TrainConfig {
        keep_checkpoints: 1,
        ..config(&out, 2)
    };
    let report = finetune(
        &model,
        vars.varmap(),
        data(&train, &val, 32, false),
        &config,
        &Device::Cpu,
    )
    .unwrap();
    assert!(report.skipped.is_empty());
    assert!(report.seconds > 0.0);
    assert!(!checkpoint_path(&out, 1).exists(), "keep_checkpoints 1");
    assert!(checkpoint_path(&out, 2).is_file() && optimizer_path(&out, 2).is_file());

    // metrics.json, read as plain JSON.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let epochs = json["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    for (i, row) in epochs.iter().enumerate() {
        assert_eq!(row["epoch"], i + 1);
        for key in [
            "train_loss",
            "train_top1",
            "val_loss",
            "val_top1",
            "val_top5",
            "lr",
        ] {
            assert!(row[key].as_f64().is_some_and(f64::is_finite), "{key}: {row}");
        }
        assert_eq!(row["train_loss"].as_f64(), Some(report.epochs[i].train_loss));
    }
    let eval = &json["final_eval"];
    let (top1, top5) = (eval["top1"].as_f64().unwrap(), eval["top5"].as_f64().unwrap());
    assert_eq!(top1, report.final_eval.top1);
    assert!(top1 > 0.1 && top5 >= top1 && top5 <= 1.0, "{top1} {top5}");
    assert_eq!(eval["count"], 100);
    assert_eq!(eval["confusion"]["num_classes"], 10);
    let rows: Vec<Vec<u64>> = serde_json::from_value(eval["confusion"]["counts"].clone()).unwrap();
    assert_eq!(rows.len(), 10);
    let mut expected_rows = [0u64; 10];
    for i in 0..val.len() {
        expected_rows[val.label(i).unwrap()] += 1;
    }
    for (c, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 10);
        assert_eq!(row.iter().sum::<u64>(), expected_rows[c], "class {c}");
    }
    let diagonal: u64 = (0..10).map(|c| rows[c][c]).sum();
    assert_eq!(diagonal as f64 / 100.0, top1);
    let names: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    assert_eq!(json["class_names"], serde_json::json!(names));

    // metrics.csv: a header and a line per epoch.
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("epoch,train_loss"), "{csv}");
    assert!(lines[1].starts_with("1,") && lines[2].starts_with("2,"), "{csv}");

    // The plots are real PNGs.
    for (file, size) in [("curves.png", (1200, 500)), ("confusion.png", (1000, 1000))] {
        let png = image::open(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((png.width(), png.height()), size, "{file}");
    }

    // The export resolves as a weights reference with its label names, and loads back.
    let export_dir = dir.path().join("export");
    std::fs::create_dir(&export_dir).unwrap();
    let labels: Vec<String> = (0..10).map(|c| format!("digit {c}")).collect();
    let pretrained = PretrainedConfig {
        input_size: (1, 32, 32),
        mean: vec![0.1307],
        std: vec![0.3081],
        ..PretrainedConfig::default()
    }
    .with_architecture("lenet5")
    .with_label_names(labels.clone());
    let file = export(&export_dir, vars.varmap(), &pretrained).unwrap();
    assert_eq!(file, export_dir.join("model.safetensors"));
    assert!(export_dir.join("config.json").is_file());
    let reference = WeightsRef::parse(export_dir.to_str().unwrap()).unwrap();
    assert_eq!(reference, WeightsRef::File(file.clone()));
    let resolved = resolve(&WeightsRef::File(export_dir.clone()), &HubOptions::default()).unwrap();
    assert_eq!(resolved.weights_file, file);
    let config_back = resolved.config.expect("config.json next to the weights");
    assert_eq!(config_back.label_names.as_deref(), Some(labels.as_slice()));
    assert_eq!(config_back.num_classes, Some(10));
    assert_eq!(config_back.architecture.as_deref(), Some("lenet5"));
    assert_eq!(config_back.input_size, (1, 32, 32));
    let (fresh, fresh_vars) = lenet(10);
    // Back through the catalogue's loader, into fresh trainable variables.
    let variant = backbone::catalogue::Variant::find(lenet::VARIANTS, "lenet5").unwrap();
    let (tensors, info) = variant.read_weights(&file, Some(1)).unwrap();
    let options = backbone::catalogue::ModelOptions {
        num_classes: 10,
        ..variant.reference_options()
    };
    let (_, load) = variant
        .load_trainable(
            tensors,
            &info,
            &file,
            &options,
            &fresh_vars,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
    drop(fresh);
    assert_eq!(load.loaded.len(), 10);
    assert_eq!(state(fresh_vars.varmap()), state(vars.varmap()));
}

/// A dataset whose every image is unreadable.
struct Unreadable(usize);

impl Dataset for Unreadable {
    fn len(&self) -> usize {
        self.0
    }

    fn get(&self, index: usize) -> trainer::Result<Sample> {
        Err(trainer::Error::dataset(
            format!("broken/{index}.png"),
            "cannot decode image: truncated",
        ))
    }

    fn num_classes(&self) -> usize {
        10
    }

    fn class_names(&self) -> Vec<String> {
        (0..10).map(|c| c.to_string()).collect()
    }

    fn label(&self, index: usize) -> trainer::Result<usize> {
        Ok(index % 10)
    }

    fn describe(&self, index: usize) -> String {
        format!("broken/{index}.png")
    }
}

#[test]
fn bad_settings_and_data_are_clear_errors_that_change_nothing() {
    let (train, val) = digits(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let error = |model: &dyn Backbone, vars: &VarMap, data: TrainData, config: TrainConfig| {
        let before = state(vars);
        let err = finetune(model, vars, data, &config, &Device::Cpu)
            .expect_err("must fail")
            .to_string();
        assert_eq!(before, state(vars), "{err}: the model changed");
        err
    };
    let (model, vars) = lenet(11);
    let varmap = vars.varmap();

    // Another class count than the head's: both counts named.
    let seven = SeededVarMap::new(11);
    let model7 = LeNet::new(
        &LeNetConfig::lenet5().with_in_channels(1).with_classes(7),
        seven.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    let err = error(
        &model7,
        seven.varmap(),
        data(&train, &val, 32, false),
        config(&out, 1),
    );
    assert!(err.contains("10 classes") && err.contains("head has 7"), "{err}");

    let bad = [
        (
            TrainConfig {
                lr: 0.0,
                ..config(&out, 1)
            },
            "lr",
        ),
        (
            TrainConfig {
                label_smoothing: 1.0,
                ..config(&out, 1)
            },
            "label smoothing",
        ),
        (
            TrainConfig {
                freeze_backbone: false,
                unfreeze_after: Some(1),
                ..config(&out, 1)
            },
            "unfreeze",
        ),
        (
            TrainConfig {
                backbone_lr_scale: 0.0,
                ..config(&out, 1)
            },
            "scale",
        ),
        (
            TrainConfig {
                epochs: 0,
                ..config(&out, 1)
            },
            "epochs",
        ),
    ];
    for (config, word) in bad {
        let err = error(&model, varmap, data(&train, &val, 32, false), config);
        assert!(
            err.contains("invalid configuration") && err.contains(word),
            "{err}"
        );
    }
    assert!(!out.exists(), "a refused run wrote {}", out.display());

    // Every training image unreadable: an error, whether the features are cached or not, and
    // with `OnCorrupt::Fail` the loader's error naming the file.
    let broken: Arc<dyn Dataset> = Arc::new(Unreadable(40));
    for (cache, on_corrupt, expected) in [
        (false, OnCorrupt::Skip, "epoch 1 trained on no image"),
        (true, OnCorrupt::Skip, "no readable image"),
        (false, OnCorrupt::Fail, "broken/"),
    ] {
        let config = TrainConfig {
            feature_cache: cache,
            on_corrupt,
            run: OVERWRITE,
            ..config(&out, 1)
        };
        let err = error(&model, varmap, data(&broken, &val, 32, false), config);
        assert!(err.contains(expected), "cache {cache}, {on_corrupt:?}: {err}");
    }
    // Every validation image unreadable.
    let config = TrainConfig {
        feature_cache: false,
        run: OVERWRITE,
        ..config(&out, 1)
    };
    let err = finetune(
        &model,
        varmap,
        data(&train, &broken, 32, false),
        &config,
        &Device::Cpu,
    )
    .expect_err("no validation image")
    .to_string();
    assert!(err.contains("evaluation on no image"), "{err}");
}

/// 33 images in batches of 16 leave a last batch of one image, on which batch norm cannot
/// train: by default it is dropped (as timm does), and `LastBatch::Keep` gets batch norm's
/// error naming the layer.
#[test]
fn a_single_image_last_batch_is_dropped_when_batch_norm_trains() {
    use trainer::data::LastBatch;
    let (train, val) = digits(33, 16);
    let run = |last_batch| {
        let (model, vars) = resnet(2);
        let out = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            batch_size: 16,
            lr: 1e-3,
            freeze_backbone: false,
            last_batch,
            ..config(out.path(), 1)
        };
        finetune(
            &model,
            vars.varmap(),
            data(&train, &val, 16, false),
            &config,
            &Device::Cpu,
        )
    };
    let report = run(LastBatch::Auto).unwrap();
    assert_eq!(report.epochs.len(), 1);
    let err = run(LastBatch::Keep).unwrap_err().to_string();
    assert!(err.contains("more than one value per channel"), "{err}");
}
