//! The recipe tools in the training loop: a run with RandAugment, random erasing, a vertical
//! flip, colour jitter and mixup / CutMix (per element, smoothed), loaded by two workers, killed
//! after epoch 2 and resumed, ends bit-identical to the uninterrupted run.

use backbone::init::SeededVarMap;
use candle_core::{DType, Device};
use lenet::{LeNet, LeNetConfig};
use trainer::data::{
    AutoAugment, EraseMode, ImageDataset, Mixup, MixupMode, Mnist, Preprocess, RandomErasing, Transform,
};
use trainer::run::{checkpoint_path, latest_epoch, optimizer_path};
use trainer::train::{train, TrainConfig, TrainData, TrainReport};

fn slice(data: &ImageDataset, n: usize) -> ImageDataset {
    let size = data.image_size();
    ImageDataset {
        images: data.images[..n * size].to_vec(),
        labels: data.labels[..n].to_vec(),
        ..data.clone()
    }
}

/// The MNIST pipeline with the per-image tools around its normalisation.
fn data(train_set: &ImageDataset, test_set: &ImageDataset) -> TrainData {
    let mut data = TrainData::mnist(train_set.clone(), test_set.clone(), Preprocess::mnist(), None).unwrap();
    let mut steps = data.train_transform.steps().to_vec();
    let normalize = steps
        .iter()
        .position(|s| matches!(s, Transform::Normalize { .. }))
        .unwrap();
    let aa = AutoAugment::parse("rand-m9-mstd0.5-inc1", &[Preprocess::MNIST_MEAN]).unwrap();
    steps.splice(
        normalize..normalize,
        [
            Transform::RandomVerticalFlip(0.2),
            Transform::ColorJitter(trainer::data::ColorJitter::uniform(0.3)),
            Transform::AutoAugment(aa),
        ],
    );
    steps.push(Transform::RandomErasing(RandomErasing::new(
        0.5,
        EraseMode::Pixel,
        2,
    )));
    data.train_transform = trainer::data::Pipeline::new(steps).unwrap();
    data
}

#[test]
fn a_resumed_run_with_the_recipe_tools_ends_exactly_like_an_uninterrupted_one() {
    let mnist = Mnist::bundled().unwrap();
    let (train_set, test_set) = (slice(&mnist.train, 256), slice(&mnist.test, 64));
    let run = |out: &std::path::Path, resume: bool| -> TrainReport {
        let config = TrainConfig {
            epochs: 3,
            batch_size: 32,
            seed: 11,
            workers: 2,
            out_dir: out.to_path_buf(),
            keep_checkpoints: 0,
            verbose: false,
            mixup: Some(Mixup {
                mixup_alpha: 0.8,
                cutmix_alpha: 1.0,
                mode: MixupMode::Elem,
                prob: 0.9,
                label_smoothing: 0.1,
                ..Mixup::new(10)
            }),
            run: trainer::run::RunOptions {
                resume,
                ..Default::default()
            },
            ..TrainConfig::default()
        };
        let vars = SeededVarMap::new(11);
        let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
        train(
            &model,
            vars.varmap(),
            data(&train_set, &test_set),
            &config,
            &Device::Cpu,
        )
        .unwrap()
    };
    let full = tempfile::tempdir().unwrap();
    let uninterrupted = run(full.path(), false);
    assert_eq!(latest_epoch(full.path()), Some(3));
    assert!(uninterrupted.epochs.iter().all(|e| e.train_loss.is_finite()));

    let crashed = tempfile::tempdir().unwrap();
    for epoch in 1..=2 {
        for path in [
            checkpoint_path(full.path(), epoch),
            optimizer_path(full.path(), epoch),
        ] {
            std::fs::copy(&path, crashed.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let resumed = run(crashed.path(), true);
    assert_eq!(resumed.epochs.len(), 1);
    let (a, b) = (&uninterrupted.epochs[2], &resumed.epochs[0]);
    assert_eq!(
        (a.train_loss, a.val_loss, a.val_top1),
        (b.train_loss, b.val_loss, b.val_top1)
    );
    let load = |dir: &std::path::Path| {
        candle_core::safetensors::load(checkpoint_path(dir, 3), &Device::Cpu).unwrap()
    };
    let (x, y) = (load(full.path()), load(crashed.path()));
    for (name, t) in &x {
        assert_eq!(
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            y[name].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
}
