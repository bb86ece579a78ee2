//! Data-parallel training over MPI (feature `mpi`): `mpirun -np 2` runs this test binary's
//! `mpi_worker` (ignored unless `CONVNETS_MPI_WORKER` names a scenario), the tests compare what
//! its rank 0 wrote with one process.

use backbone::init::SeededVarMap;
use candle_core::{DType, Device, Tensor};
use lenet::{LeNet, LeNetConfig};
use resnet::{ResNet, ResNetConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trainer::checkpoint::load_checkpoint;
use trainer::data::{
    Cifar10, Interpolation, Mnist, Pipeline, Preprocess, CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN,
    IMAGENET_STD,
};
use trainer::distributed::{Collective, MpiCollective, SingleProcess};
use trainer::run::{checkpoint_path, latest_epoch, RunOptions};
use trainer::train::{train_with, OptimizerKind, TrainConfig, TrainData};

/// The global batch: 2 ranks of `BATCH / 2`, or one process of `BATCH`.
const BATCH: usize = 32;
const IMAGES: usize = 256;
const EPOCHS: usize = 2;
/// The images of the batch-norm scenarios: 4 steps of the global batch per epoch, for
/// `EPOCHS` epochs.
const BN_IMAGES: usize = 4 * BATCH;

fn config(out: &Path, epochs: usize, resume: bool) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: BATCH,
        eval_batch_size: Some(100),
        seed: 5,
        // SGD: Adam's division by the root of the second moment magnifies the rounding of
        // a different summation order (2 ranks' sums against one batch's: 3.7e-6 after 8
        // steps, where SGD stays within 1e-6).
        optimizer: OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        lr: 0.05,
        out_dir: out.to_path_buf(),
        keep_checkpoints: 0,
        verbose: false,
        run: RunOptions {
            resume,
            ..RunOptions::default()
        },
        ..TrainConfig::default()
    }
}

/// LeNet-5 on the first images of the bundled sample, no augmentation.
fn run(collective: &dyn Collective, config: &TrainConfig) -> trainer::Result<()> {
    let mnist = Mnist::bundled()?;
    let data = TrainData::mnist(
        mnist.train.head(IMAGES),
        mnist.test.head(100),
        Preprocess::mnist(),
        None,
    )?;
    // Each rank its own initial weights: rank 0's must reach the others.
    let vars = SeededVarMap::new(11 + collective.rank() as u64);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu))?;
    train_with(&model, vars.varmap(), data, config, &Device::Cpu, collective).map(|_| ())
}

/// A ResNet with batch norm after every convolution (one basic block per stage, 4.9 M
/// parameters) on the same images: the model of the `--sync-bn` scenarios, built in float64
/// (see [`with_sync_bn_two_ranks_of_batch_b_equal_one_process_of_batch_2b`]).
fn resnet_bn() -> ResNetConfig {
    ResNetConfig {
        layers: [1, 1, 1, 1],
        ..ResNetConfig::resnet18().with_in_channels(1).with_classes(10)
    }
}

/// [`run`] with [`resnet_bn`] in float64 for `EPOCHS` epochs, its batch norms synchronised
/// over the ranks with `sync_bn`.
fn run_bn(collective: &dyn Collective, out: &Path, sync_bn: bool) -> trainer::Result<()> {
    let mnist = Mnist::bundled()?;
    let data = TrainData::mnist(
        mnist.train.head(BN_IMAGES),
        mnist.test.head(100),
        Preprocess::mnist(),
        None,
    )?;
    let vars = SeededVarMap::new(11 + collective.rank() as u64);
    let model = ResNet::new(&resnet_bn(), vars.var_builder(DType::F64, &Device::Cpu))?;
    let config = TrainConfig {
        sync_bn,
        ..config(out, EPOCHS, false)
    };
    train_with(&model, vars.varmap(), data, &config, &Device::Cpu, collective).map(|_| ())
}

/// An image folder of 5 classes of 17 RGB 32x32 images, each class its own colour plus seeded
/// noise: 68 training images and 17 for validation (`--val-fraction 0.2`), an odd count the
/// ranks split 9 + 8.
fn write_folder(root: &Path) {
    let mut state = 7u32;
    for class in 0..5u8 {
        let dir = root.join(format!("class{class}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..17 {
            let pixels: Vec<u8> = (0..32 * 32 * 3)
                .map(|p| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let base = if p % 3 == (class % 3) as usize {
                        40 * class + 60
                    } else {
                        30
                    };
                    base.wrapping_add((state >> 27) as u8)
                })
                .collect();
            image::RgbImage::from_raw(32, 32, pixels)
                .unwrap()
                .save(dir.join(format!("{i:02}.png")))
                .unwrap();
        }
    }
}

/// LeNet-5 on RGB on the image folder `data` (no augmentation), as `train --data <folder>`.
fn run_folder(collective: &dyn Collective, data: &Path, out: &Path) -> trainer::Result<()> {
    let transform = Pipeline::eval(
        (32, 32),
        1.0,
        Interpolation::Bilinear,
        &IMAGENET_MEAN,
        &IMAGENET_STD,
    )?;
    let data = TrainData::image_folder(data, 0.2, 3, transform)?;
    train_lenet(
        collective,
        LeNetConfig::lenet5().with_in_channels(3).with_classes(5),
        data,
        out,
    )
}

/// `lenet` trained on `data` into `out` for [`EPOCHS`], each rank from its own initial
/// weights (rank 0's must reach the others).
fn train_lenet(
    collective: &dyn Collective,
    lenet: LeNetConfig,
    data: TrainData,
    out: &Path,
) -> trainer::Result<()> {
    let vars = SeededVarMap::new(11 + collective.rank() as u64);
    let model = LeNet::new(&lenet, vars.var_builder(DType::F32, &Device::Cpu))?;
    train_with(
        &model,
        vars.varmap(),
        data,
        &config(out, EPOCHS, false),
        &Device::Cpu,
        collective,
    )
    .map(|_| ())
}

/// The CIFAR-10 binary version in `dir`, small: 5 training files of 32 records (160 images, 5
/// global batches an epoch) and a test file of 21 (split 11 + 10 over the ranks); each image
/// its class's colour plus seeded noise.
fn write_cifar(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 3u32;
    let mut records = |n: usize, file: usize| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(n * 3073);
        for r in 0..n {
            let class = ((r * 7 + file) % 10) as u8;
            bytes.push(class);
            bytes.extend((0..3072).map(|p| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                // Plane p / 1024: red, green, blue.
                let base = if p / 1024 == (class % 3) as usize {
                    20 * class + 40
                } else {
                    30
                };
                base.wrapping_add((state >> 26) as u8)
            }));
        }
        bytes
    };
    for file in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{file}.bin")), records(32, file)).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), records(21, 0)).unwrap();
}

/// LeNet-5 on RGB on the CIFAR-10 files of `data` with the CIFAR training transform (random
/// crop with padding 4, horizontal flip), as `train --data <cifar folder>`.
fn run_cifar(collective: &dyn Collective, data: &Path, out: &Path) -> trainer::Result<()> {
    let cifar = Cifar10::load_dir(data)?;
    let data = TrainData {
        train: std::sync::Arc::new(cifar.train),
        val: std::sync::Arc::new(cifar.test),
        train_transform: Pipeline::cifar_train(&CIFAR10_MEAN, &CIFAR10_STD)?,
        eval_transform: Pipeline::cifar_eval(&CIFAR10_MEAN, &CIFAR10_STD)?,
    };
    train_lenet(collective, LeNetConfig::lenet5().with_in_channels(3), data, out)
}

/// The worker `mpirun` starts (each rank): the scenario `CONVNETS_MPI_WORKER` names, in the run
/// folder `CONVNETS_MPI_OUT`.
#[test]
#[ignore = "started by the other tests of this file under mpirun"]
fn mpi_worker() {
    let (Ok(scenario), Ok(out)) = (
        std::env::var("CONVNETS_MPI_WORKER"),
        std::env::var("CONVNETS_MPI_OUT"),
    ) else {
        return;
    };
    let out = PathBuf::from(out);
    let mpi = MpiCollective::init(Some(Duration::from_secs(60))).unwrap();
    assert_eq!(mpi.world_size(), 2);
    match scenario.as_str() {
        "equal" => run(&mpi, &config(&out, EPOCHS, false)).unwrap(),
        "folder" => {
            let data = PathBuf::from(std::env::var("CONVNETS_MPI_DATA").unwrap());
            run_folder(&mpi, &data, &out).unwrap();
        }
        "cifar" => {
            let data = PathBuf::from(std::env::var("CONVNETS_MPI_DATA").unwrap());
            run_cifar(&mpi, &data, &out).unwrap();
        }
        // The batch-norm model with and without --sync-bn, in one job.
        "bn" => {
            run_bn(&mpi, &out.join("sync"), true).unwrap();
            run_bn(&mpi, &out.join("plain"), false).unwrap();
        }
        "kill" => {
            run(&mpi, &config(&out, 1, false)).unwrap();
            if mpi.rank() == 1 {
                // Rank 1 dies (kill -9) while the resumed run trains.
                std::thread::spawn(|| {
                    std::thread::sleep(Duration::from_millis(1500));
                    let pid = std::process::id().to_string();
                    let _ = Command::new("kill").args(["-9", &pid]).status();
                });
            }
            run(&mpi, &config(&out, 10_000, true)).unwrap();
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Runs `mpirun -np 2` on the worker with `scenario`; returns its exit success, its output and
/// how long it took. Fails when mpirun is missing or the job outlives `limit`.
fn mpirun(scenario: &str, out: &Path, limit: Duration) -> (bool, String, Duration) {
    mpirun_with(scenario, out, None, limit)
}

/// [`mpirun`] with `CONVNETS_MPI_DATA` set to `data`.
fn mpirun_with(scenario: &str, out: &Path, data: Option<&Path>, limit: Duration) -> (bool, String, Duration) {
    // One job at a time (two mpiruns at once can collide in OpenMPI's session folder).
    static ONE_JOB: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _job = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let mut child = Command::new("mpirun")
        .args(["-np", "2", "--oversubscribe"])
        .arg(exe)
        .args([
            "distributed_mpi::mpi_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONVNETS_MPI_WORKER", scenario)
        .env("CONVNETS_MPI_OUT", out)
        .env("CONVNETS_MPI_DATA", data.unwrap_or(out))
        .env("RAYON_NUM_THREADS", "1")
        // CI runs as root; OpenMPI refuses it unless told.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun (OpenMPI's openmpi-bin) must be on PATH for the `mpi` feature's tests");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "mpirun {scenario} still ran after {limit:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status.success(), text, start.elapsed())
}

/// The worst relative difference over two checkpoints' tensors, with the same names.
fn max_relative(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> (f64, String) {
    assert_eq!(a.len(), b.len());
    crate::fit::worst_relative(a, b)
}

#[test]
fn two_ranks_of_batch_b_equal_one_process_of_batch_2b() {
    let dir = tempfile::tempdir().unwrap();
    let (ddp, single) = (dir.path().join("ddp"), dir.path().join("single"));
    let (ok, output, _) = mpirun("equal", &ddp, Duration::from_secs(600));
    assert!(ok, "mpirun failed:\n{output}");
    run(&SingleProcess, &config(&single, EPOCHS, false)).unwrap();
    // Rank 0 alone wrote the run folder: every epoch's checkpoint, the metrics.
    assert!(ddp.join("metrics.csv").exists());
    for epoch in 1..=EPOCHS {
        let a = load_checkpoint(&checkpoint_path(&ddp, epoch), &Device::Cpu).unwrap();
        let b = load_checkpoint(&checkpoint_path(&single, epoch), &Device::Cpu).unwrap();
        let (worst, name) = max_relative(&a, &b);
        eprintln!(
            "epoch {epoch}: 2 ranks x {} against 1 x {BATCH}: worst `{name}` {worst:.2e}",
            BATCH / 2
        );
        assert!(
            worst <= 1e-6,
            "epoch {epoch}: `{name}` differs by {worst:e} (relative)"
        );
        // And training moved the weights: the comparison is not of two initialisations.
        let init = SeededVarMap::new(11);
        let _ = LeNet::new(&LeNetConfig::lenet5(), init.var_builder(DType::F32, &Device::Cpu)).unwrap();
        let start = crate::fit::variables_of(&init);
        assert!(max_relative(&start, &b).0 > 1e-3);
    }
    // The same metrics (the loss and accuracy sums over the ranks).
    let csv = |dir: &Path| std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let rows = |text: String| -> Vec<Vec<String>> {
        text.lines()
            .skip(1)
            .map(|l| l.split(',').take(3).map(String::from).collect())
            .collect()
    };
    let (a, b) = (rows(csv(&ddp)), rows(csv(&single)));
    assert_eq!(a.len(), EPOCHS);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x[0], y[0]);
        let (p, q): (f64, f64) = (x[1].parse().unwrap(), y[1].parse().unwrap());
        assert!((p - q).abs() <= 1e-5 * q.abs(), "train loss {p} vs {q}");
    }
    // Resuming the 2-rank run with one process is another run: refused (one process records
    // no world size, so that runs from before data-parallel training resume unchanged).
    let err = run(&SingleProcess, &config(&ddp, EPOCHS + 1, true))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("world size: 2 -> (unset)") && err.contains("--allow-changes"),
        "{err}"
    );
}

#[test]
fn a_killed_rank_ends_the_job_and_the_last_checkpoint_survives() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // Bounded: mpirun ends the job when a rank dies; the limit only keeps a hang from
    // hanging CI (the test fails then).
    let (ok, output, took) = mpirun("kill", &out, Duration::from_secs(300));
    eprintln!("the job ended {took:?} after its start (rank 1 killed 1.5 s into the resumed run):\n{output}");
    assert!(!ok, "the job should fail when rank 1 dies:\n{output}");
    assert!(
        output.contains("rank 1"),
        "the failure should name rank 1:\n{output}"
    );
    // The checkpoints are whole: the latest complete epoch loads.
    let latest = latest_epoch(&out).expect("epoch 1 was saved before rank 1 died");
    assert!(latest >= 1);
    load_checkpoint(&checkpoint_path(&out, latest), &Device::Cpu).unwrap();
    trainer::checkpoint::load_checkpoint(&trainer::run::optimizer_path(&out, latest), &Device::Cpu).unwrap();
}

/// The worst relative difference over the first `epochs` checkpoints of two run folders.
fn worst_over_epochs(a: &Path, b: &Path, epochs: usize) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for epoch in 1..=epochs {
        let x = load_checkpoint(&checkpoint_path(a, epoch), &Device::Cpu).unwrap();
        let y = load_checkpoint(&checkpoint_path(b, epoch), &Device::Cpu).unwrap();
        let (w, name) = max_relative(&x, &y);
        if w > worst.0 {
            worst = (w, format!("epoch {epoch}: `{name}`"));
        }
    }
    worst
}

/// `--sync-bn` (PyTorch's `SyncBatchNorm`): two ranks of batch B normalise with the statistics
/// of the global batch, so they take the steps of one process of batch 2B (weights and running
/// statistics); without it each rank normalises with its own half (DDP's default), other steps.
///
/// In float64: the runs differ by the order of the sums only (the gradients' over two ranks,
/// the statistics' over two halves), which in float32 a batch-norm ResNet amplifies past any
/// fixed tolerance within a few steps (a ReLU or a max pool choosing between values one
/// rounding apart moves a gradient: in f32 one process with its learning rate changed by 1e-7,
/// relative, parted from itself by 1e-2 within 4 steps; this scenario built in f32 differs by
/// 1.1e-1 after its 8 steps with `--sync-bn`). In f64 those roundings are 1e-16 and the
/// comparison tests the synchronisation over every step (measured: 6.3e-14 after 8 steps,
/// against 1.8 without `--sync-bn`).
#[test]
fn with_sync_bn_two_ranks_of_batch_b_equal_one_process_of_batch_2b() {
    let dir = tempfile::tempdir().unwrap();
    let (ddp, single) = (dir.path().join("ddp"), dir.path().join("single"));
    let (ok, output, _) = mpirun("bn", &ddp, Duration::from_secs(600));
    assert!(ok, "mpirun failed:\n{output}");
    run_bn(&SingleProcess, &single, false).unwrap();
    // Every checkpoint is float64, and the weights moved (not two initialisations compared).
    let last = load_checkpoint(&checkpoint_path(&single, EPOCHS), &Device::Cpu).unwrap();
    assert!(last
        .values()
        .filter(|t| t.dtype().is_float())
        .all(|t| t.dtype() == DType::F64));
    let init = SeededVarMap::new(11);
    let _ = ResNet::new(&resnet_bn(), init.var_builder(DType::F64, &Device::Cpu)).unwrap();
    let start = crate::fit::variables_of(&init);
    assert!(max_relative(&start, &last).0 > 1e-3);
    let (sync, where_sync) = worst_over_epochs(&ddp.join("sync"), &single, EPOCHS);
    let (plain, where_plain) = worst_over_epochs(&ddp.join("plain"), &single, EPOCHS);
    eprintln!(
        "{} steps ({EPOCHS} epochs of {}), 2 ranks x {} against 1 x {BATCH}, ResNet (batch norm) \
         in f64: with --sync-bn worst {where_sync} {sync:.2e}; without, worst {where_plain} \
         {plain:.2e}",
        EPOCHS * BN_IMAGES / BATCH,
        BN_IMAGES / BATCH,
        BATCH / 2
    );
    assert!(
        sync <= 1e-6,
        "with --sync-bn, {where_sync} differs by {sync:e} (relative)"
    );
    assert!(
        plain > 1e-3,
        "without --sync-bn (per-rank statistics) the runs should differ, worst {plain:e}"
    );
    // The setting is recorded when on, and only then.
    let settings = |dir: &Path| std::fs::read_to_string(dir.join("run.json")).unwrap();
    assert!(settings(&ddp.join("sync")).contains("sync batch norm"));
    assert!(!settings(&ddp.join("plain")).contains("sync batch norm"));
}

/// `--distributed` on an image folder: each rank reads its shard of the training images and
/// evaluates its part of the validation images (17, split 9 + 8, the metrics' sums reduced);
/// rank 0 alone writes the run folder; LeNet-5 (no batch norm, no augmentation) trains as one
/// process of the global batch does, and the validation figures are the same (each image once).
#[test]
fn two_ranks_on_an_image_folder_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("images");
    write_folder(&data);
    let (ddp, single) = (dir.path().join("ddp"), dir.path().join("single"));
    let (ok, output, _) = mpirun_with("folder", &ddp, Some(&data), Duration::from_secs(600));
    assert!(ok, "mpirun failed:\n{output}");
    run_folder(&SingleProcess, &data, &single).unwrap();
    assert!(ddp.join("metrics.csv").exists() && ddp.join("run.json").exists());
    let (worst, name) = worst_over_epochs(&ddp, &single, EPOCHS);
    eprintln!(
        "image folder, 2 ranks x {} against 1 x {BATCH}: worst {name} {worst:.2e}",
        BATCH / 2
    );
    assert!(worst <= 1e-6, "{name} differs by {worst:e} (relative)");
    let rows = |dir: &Path| -> Vec<Vec<f64>> {
        std::fs::read_to_string(dir.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').take(6).map(|v| v.parse().unwrap()).collect())
            .collect()
    };
    let (a, b) = (rows(&ddp), rows(&single));
    assert_eq!(a.len(), EPOCHS);
    for (x, y) in a.iter().zip(&b) {
        // val_loss within rounding; val top-1 and top-5 the same counts of the same 17 images.
        assert!(
            (x[3] - y[3]).abs() <= 1e-5 * y[3].abs(),
            "val loss {} vs {}",
            x[3],
            y[3]
        );
        assert_eq!((x[4], x[5]), (y[4], y[5]), "val top-1 / top-5");
        assert!(
            (x[4] * 17.0 - (x[4] * 17.0).round()).abs() < 1e-9,
            "top-1 {} of 17 images",
            x[4]
        );
    }
    // The final evaluation counted the 17 validation images once (not the 18 of a padded split).
    let json = std::fs::read_to_string(ddp.join("metrics.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["final_eval"]["count"], 17);
    let confusion: u64 = json["final_eval"]["confusion"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
        .sum();
    assert_eq!(confusion, 17);
}

/// `--distributed` on CIFAR-10's binary files with the CIFAR training transform: the random
/// crop and flip of an image are drawn from its own generator (seed, epoch, image), whichever
/// rank reads it, so 2 ranks of LeNet-5 train as one process of the global batch; the
/// validation figures count the 21 test images once.
#[test]
fn two_ranks_on_cifar10_files_with_augmentation_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar-10-batches-bin");
    write_cifar(&data);
    let (ddp, single) = (dir.path().join("ddp"), dir.path().join("single"));
    let (ok, output, _) = mpirun_with("cifar", &ddp, Some(&data), Duration::from_secs(600));
    assert!(ok, "mpirun failed:\n{output}");
    run_cifar(&SingleProcess, &data, &single).unwrap();
    let (worst, name) = worst_over_epochs(&ddp, &single, EPOCHS);
    eprintln!(
        "CIFAR-10 files, {} steps, 2 ranks x {} against 1 x {BATCH}: worst {name} {worst:.2e}",
        EPOCHS * 160 / BATCH,
        BATCH / 2
    );
    assert!(worst <= 1e-6, "{name} differs by {worst:e} (relative)");
    let json = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
    };
    let (a, b) = (json(&ddp), json(&single));
    assert_eq!(a["final_eval"]["count"], 21);
    let counts = &a["final_eval"]["confusion"]["counts"];
    let total: u64 = counts
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 21);
    assert_eq!(counts, &b["final_eval"]["confusion"]["counts"]);
}
