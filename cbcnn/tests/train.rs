//! The two phases on the bundled MNIST sample: the autoencoder trains alone on
//! reconstruction, then the boosted network trains through the one training loop with the
//! auxiliary learners frozen (weights and batch-norm statistics bit-identical), and learns as
//! the same main network without boosting does (same seed, epochs and data).

mod common;

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device};
use std::collections::BTreeMap;
use trainer::data::{Mnist, Preprocess};
use trainer::reconstruct::{pretrain_reconstructors, ReconstructionConfig};
use trainer::train::{train, TrainConfig, TrainData, TrainReport};

fn digits(n_train: usize, n_test: usize) -> TrainData {
    let mnist = Mnist::bundled().unwrap();
    TrainData::mnist(
        mnist.train.head(n_train),
        mnist.test.head(n_test),
        Preprocess::mnist(),
        None,
    )
    .unwrap()
}

/// Every variable under `prefix` (running statistics included), as bits.
fn snapshot(vars: &SeededVarMap, prefix: &str) -> BTreeMap<String, Vec<u32>> {
    let data = vars.varmap().data().lock().unwrap();
    data.iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, var)| {
            let values = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (name.clone(), values.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

fn config(epochs: usize, out: &std::path::Path) -> TrainConfig {
    TrainConfig {
        epochs,
        seed: 3,
        out_dir: out.to_path_buf(),
        keep_checkpoints: 1,
        verbose: false,
        ..TrainConfig::default()
    }
}

fn ae_config() -> ReconstructionConfig {
    ReconstructionConfig {
        epochs: 1,
        seed: 3,
        ..ReconstructionConfig::default()
    }
}

#[test]
fn auxiliary_learners_stay_bit_identical_while_the_main_network_trains() {
    // A ResNet-18 extractor: batch norm whose running statistics must not move.
    let vars = SeededVarMap::new(1);
    let model = common::cbcnn_resnet18(1, 10, &vars).unwrap();
    let data = digits(128, 100);
    let extractor_before = snapshot(&vars, "booster.extractor.");
    assert!(extractor_before.keys().any(|k| k.ends_with("running_var")));
    let ae_before = snapshot(&vars, "booster.ae.");
    let main_before = snapshot(&vars, "main.");

    // Phase 1: the autoencoder alone.
    let reports = pretrain_reconstructors(&model, vars.varmap(), &data, &ae_config(), &Device::Cpu).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].trained, (8, 1_477));
    assert_ne!(snapshot(&vars, "booster.ae."), ae_before);
    assert_eq!(snapshot(&vars, "booster.extractor."), extractor_before);
    assert_eq!(snapshot(&vars, "main."), main_before);

    // Phase 2: the boosted network, both learners frozen.
    let ae_trained = snapshot(&vars, "booster.ae.");
    let dir = tempfile::tempdir().unwrap();
    train(&model, vars.varmap(), data, &config(1, dir.path()), &Device::Cpu).unwrap();
    assert_eq!(snapshot(&vars, "booster.ae."), ae_trained);
    assert_eq!(snapshot(&vars, "booster.extractor."), extractor_before);
    let main_after = snapshot(&vars, "main.");
    assert_ne!(main_after, main_before);
    // The main network's own batch norm did update its statistics.
    assert_ne!(
        main_after["main.bn1.running_mean"],
        main_before["main.bn1.running_mean"]
    );
}

/// Trains `model` (after its reconstruction phase, if any) on 1,024 digits for 3 epochs.
fn run(model: &dyn Backbone, vars: &SeededVarMap) -> TrainReport {
    let data = digits(1024, 300);
    for report in pretrain_reconstructors(model, vars.varmap(), &data, &ae_config(), &Device::Cpu).unwrap() {
        println!(
            "{}: test MSE {:.4} -> {:.4}",
            report.name, report.val_before, report.val_after
        );
        assert!(report.val_after < 0.8 * report.val_before, "{report:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    train(model, vars.varmap(), data, &config(3, dir.path()), &Device::Cpu).unwrap()
}

#[test]
fn boosted_lenet_learns_beside_the_plain_lenet() {
    let vars = SeededVarMap::new(3);
    let boosted = common::cbcnn_lenet(1, 10, &vars).unwrap();
    let boosted_report = run(&boosted, &vars);
    let plain_vars = SeededVarMap::new(3);
    let plain = common::lenet(1, 10, plain_vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let plain_report = run(plain.as_ref(), &plain_vars);
    for (name, report) in [("cbcnn_lenet", &boosted_report), ("lenet5", &plain_report)] {
        let (first, last) = (&report.epochs[0], &report.epochs[2]);
        println!(
            "{name}: train loss {:.4} -> {:.4}, test top-1 {:.2}%",
            first.train_loss,
            last.train_loss,
            100.0 * last.val_top1
        );
        assert!(
            last.train_loss < 0.9 * first.train_loss,
            "{name}: {} !< 0.9 x {}",
            last.train_loss,
            first.train_loss
        );
        assert!(last.val_top1 > 0.4, "{name}: test accuracy {}", last.val_top1);
    }
}
