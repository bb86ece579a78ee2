//! Run folders: a run never clobbers another, a live run locks its folder, resume checks the
//! settings and falls back past a corrupt checkpoint, kills leave nothing behind, a diverging
//! loss stops the run, degenerate data is refused.

use backbone::init::SeededVarMap;
use candle_core::{DType, Device};
use lenet::{LeNet, LeNetConfig};
use std::path::Path;
use trainer::data::{ImageDataset, LastBatch, Mnist, Preprocess};
use trainer::run::{checkpoint_path, optimizer_path, record_path, RunDir, RunOptions};
use trainer::train::{train, TrainConfig, TrainData, TrainReport};
use trainer::Result;

fn slice(data: &ImageDataset, n: usize) -> ImageDataset {
    data.head(n)
}

fn config(out: &Path, epochs: usize, run: RunOptions) -> TrainConfig {
    TrainConfig {
        epochs,
        seed: 3,
        out_dir: out.to_path_buf(),
        keep_checkpoints: 0,
        verbose: false,
        run,
        ..TrainConfig::default()
    }
}

fn fit_with(config: &TrainConfig, train_set: &ImageDataset) -> Result<TrainReport> {
    let mnist = Mnist::bundled().unwrap();
    let test = slice(&mnist.test, 64);
    let vars = SeededVarMap::new(config.seed);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let data = TrainData::mnist(train_set.clone(), test, Preprocess::mnist(), None)?;
    train(&model, vars.varmap(), data, config, &Device::Cpu)
}

fn train_set() -> ImageDataset {
    slice(&Mnist::bundled().unwrap().train, 192)
}

const FRESH: RunOptions = RunOptions {
    resume: false,
    overwrite: false,
    allow_changes: false,
};
const RESUME: RunOptions = RunOptions {
    resume: true,
    ..FRESH
};

fn csv_epochs(dir: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_fresh_run_refuses_a_used_folder_unless_told_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_set();
    fit_with(&config(dir.path(), 3, FRESH), &train).unwrap();
    let before = std::fs::read(checkpoint_path(dir.path(), 3)).unwrap();

    let err = fit_with(&config(dir.path(), 2, FRESH), &train)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("epochs 1..=3") && err.contains("--overwrite") && err.contains("--resume"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(checkpoint_path(dir.path(), 3)).unwrap(),
        before,
        "nothing changed"
    );

    // With overwrite, the old run's later epochs are gone and the log has the new run only.
    let overwrite = RunOptions {
        overwrite: true,
        ..FRESH
    };
    fit_with(&config(dir.path(), 2, overwrite), &train).unwrap();
    assert!(!checkpoint_path(dir.path(), 3).exists());
    assert!(!record_path(dir.path(), 3).exists());
    assert_eq!(csv_epochs(dir.path()), [1, 2]);
    // ... so a resume continues the new run, not the old one.
    let err = fit_with(&config(dir.path(), 2, RESUME), &train)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has finished") && err.contains("2 epochs"), "{err}");
    let report = fit_with(&config(dir.path(), 3, RESUME), &train).unwrap();
    assert_eq!(report.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), [3]);
    assert_eq!(csv_epochs(dir.path()), [1, 2, 3]);
}

#[test]
fn a_live_run_locks_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let _live = RunDir::open(dir.path(), "train", Default::default(), 1, FRESH, false).unwrap();
    let err = fit_with(&config(dir.path(), 1, FRESH), &train_set())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("process {}", std::process::id())) && err.contains("training into this folder"),
        "{err}"
    );
}

#[test]
fn resume_refuses_other_settings_unless_allowed_and_says_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_set();
    fit_with(&config(dir.path(), 1, FRESH), &train).unwrap();

    let other_lr = TrainConfig {
        lr: 2e-3,
        ..config(dir.path(), 2, RESUME)
    };
    let err = fit_with(&other_lr, &train).unwrap_err().to_string();
    assert!(
        err.contains("lr: 0.001 -> 0.002") && err.contains("--allow-changes"),
        "{err}"
    );
    let other_seed = TrainConfig {
        seed: 9,
        ..config(dir.path(), 2, RESUME)
    };
    let err = fit_with(&other_seed, &train).unwrap_err().to_string();
    assert!(err.contains("seed: 3 -> 9"), "{err}");
    let other_batch = TrainConfig {
        batch_size: 32,
        ..config(dir.path(), 2, RESUME)
    };
    let err = fit_with(&other_batch, &train).unwrap_err().to_string();
    assert!(err.contains("batch size: 64 -> 32"), "{err}");
    let err = fit_with(&config(dir.path(), 2, RESUME), &slice(&train, 128))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train data: 192 images"), "{err}");
    assert!(
        !checkpoint_path(dir.path(), 2).exists(),
        "a refused resume trained"
    );

    let allowed = TrainConfig {
        lr: 2e-3,
        ..config(
            dir.path(),
            2,
            RunOptions {
                allow_changes: true,
                ..RESUME
            },
        )
    };
    let report = fit_with(&allowed, &train).unwrap();
    assert_eq!(report.epochs[0].epoch, 2);
}

#[test]
fn resume_with_nothing_to_resume_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = fit_with(&config(dir.path(), 1, RESUME), &train_set())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing to resume"), "{err}");
    assert!(!checkpoint_path(dir.path(), 1).exists());
}

/// A run stopped before its first checkpoint (killed in epoch 1, or diverged there) leaves its
/// run.json: running again says --resume starts it again, and --resume does so (it used to say
/// "pass --resume" and then "nothing to resume").
#[test]
fn a_run_stopped_before_its_first_checkpoint_resumes_from_its_beginning() {
    let done = tempfile::tempdir().unwrap();
    let train = train_set();
    let finished = fit_with(&config(done.path(), 1, FRESH), &train).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(done.path().join("run.json"), dir.path().join("run.json")).unwrap();

    let err = fit_with(&config(dir.path(), 1, FRESH), &train)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("saved no epoch") && err.contains("--resume") && err.contains("--overwrite"),
        "{err}"
    );
    let resumed = fit_with(&config(dir.path(), 1, RESUME), &train).unwrap();
    assert_eq!(resumed.epochs.len(), 1);
    assert_eq!(resumed.epochs[0].epoch, 1);
    // The same run as an uninterrupted one.
    assert_eq!(
        std::fs::read(checkpoint_path(dir.path(), 1)).unwrap(),
        std::fs::read(checkpoint_path(done.path(), 1)).unwrap()
    );
    assert_eq!(resumed.epochs[0].train_loss, finished.epochs[0].train_loss);
}

#[test]
fn leftovers_of_a_killed_run_are_removed_and_a_corrupt_checkpoint_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_set();
    fit_with(&config(dir.path(), 3, FRESH), &train).unwrap();
    // What kills leave: a temporary file, an optimizer state whose checkpoint was never
    // written, a record of an epoch that never finished; and a truncated latest checkpoint.
    let tmp = dir.path().join(".epoch-004.safetensors.tmp-4242-0");
    std::fs::write(&tmp, b"partial").unwrap();
    std::fs::write(optimizer_path(dir.path(), 9), b"orphan").unwrap();
    std::fs::write(record_path(dir.path(), 9), b"{}").unwrap();
    let latest = checkpoint_path(dir.path(), 3);
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() / 2]).unwrap();

    let report = fit_with(&config(dir.path(), 4, RESUME), &train).unwrap();
    assert_eq!(
        report.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [3, 4],
        "resumed after epoch 2"
    );
    assert!(!tmp.exists() && !optimizer_path(dir.path(), 9).exists() && !record_path(dir.path(), 9).exists());
    assert!(
        dir.path().join("epoch-003.safetensors.corrupt").exists(),
        "the corrupt file is kept aside"
    );
    assert_eq!(csv_epochs(dir.path()), [1, 2, 3, 4], "each epoch once");
}

#[test]
fn a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_set();
    fit_with(&config(dir.path(), 1, FRESH), &train).unwrap();
    let good = std::fs::read(checkpoint_path(dir.path(), 1)).unwrap();
    let wild = TrainConfig {
        lr: 1e6,
        ..config(
            dir.path(),
            3,
            RunOptions {
                allow_changes: true,
                ..RESUME
            },
        )
    };
    let err = fit_with(&wild, &train).unwrap_err().to_string();
    assert!(
        err.contains("diverged at epoch 2")
            && err.contains("epoch-001.safetensors")
            && err.contains("learning rate"),
        "{err}"
    );
    assert!(!checkpoint_path(dir.path(), 2).exists());
    assert_eq!(std::fs::read(checkpoint_path(dir.path(), 1)).unwrap(), good);
}

#[test]
fn degenerate_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_set();
    let err = fit_with(&config(dir.path(), 1, FRESH), &slice(&train, 0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no training image"), "{err}");
    let mut one_class = slice(&train, 100);
    one_class.labels.iter_mut().for_each(|l| *l = 7);
    let err = fit_with(&config(dir.path(), 1, FRESH), &one_class)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("same label (7)") && err.contains("two classes"),
        "{err}"
    );
    let err = fit_with(&config(dir.path(), 1, FRESH), &slice(&train, 40))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("40 training images, fewer than one batch of 64"),
        "{err}"
    );
    assert!(!checkpoint_path(dir.path(), 1).exists());
}

#[test]
fn the_last_batch_is_dropped_only_when_it_would_hold_one_image() {
    assert!(LastBatch::Auto.drop_last(65, 64));
    assert!(!LastBatch::Auto.drop_last(66, 64));
    assert!(!LastBatch::Auto.drop_last(64, 64));
    assert!(!LastBatch::Auto.drop_last(1, 1));
    assert!(!LastBatch::Keep.drop_last(65, 64));
    assert!(LastBatch::Drop.drop_last(66, 64));
}

/// A setting the saved run does not know (written by an older version) is not a change.
#[test]
fn settings_added_since_the_run_was_saved_do_not_block_resume() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_set();
    fit_with(&config(dir.path(), 1, FRESH), &train).unwrap();
    let path = dir.path().join("run.json");
    let mut run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    run["settings"].as_object_mut().unwrap().remove("label smoothing");
    std::fs::write(&path, run.to_string()).unwrap();
    let report = fit_with(&config(dir.path(), 2, RESUME), &train).unwrap();
    assert_eq!(report.epochs[0].epoch, 2);
}

/// A first loss that is already absurd (inputs normalised by a std of 1e-30: 2.5e29) does not
/// become the reference that every later loss is compared with: the reference is at most the
/// loss of guessing (ln of the classes), so the first step stops the run.
#[test]
fn an_absurd_first_loss_is_divergence_too() {
    use trainer::run::LossGuard;
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::open(dir.path(), "train", Default::default(), 1, FRESH, false).unwrap();
    let mut guard = LossGuard::new(&[], 10);
    let err = guard.check(2.5e29, 1, 1, &run).unwrap_err().to_string();
    assert!(
        err.contains("chance level") && err.contains("normalisation"),
        "{err}"
    );
    // An ordinary start is fine, and becomes the reference: 1000x it is not.
    let mut guard = LossGuard::new(&[], 10);
    guard.check(2.3, 1, 1, &run).unwrap();
    guard.check(2000.0, 1, 2, &run).unwrap();
    assert!(guard.check(2400.0, 1, 3, &run).is_err());
}
