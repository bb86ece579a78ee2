//! Images per second of the data pipeline with and without the recipe tools (RandAugment
//! `rand-m9-mstd0.5`, random erasing), against the time of a training step on the same images:
//! the bundled digits (LeNet-5's pipeline, LeNet-5's step) and a folder of 224x224 JPEGs it
//! writes (timm's training transform, ResNet-18's step).
//!
//! `cargo run --release -p convnets-trainer --example pipeline_throughput [JPEGS] [WORKERS]`

use std::sync::Arc;
use std::time::Instant;

use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use trainer::data::{
    AutoAugment, DataLoader, Dataset, EraseMode, GrayImages, ImageFolder, Interpolation, LoaderConfig, Mnist,
    Pipeline, Preprocess, RandomErasing, Transform, IMAGENET_MEAN, IMAGENET_STD,
};

/// `base` with RandAugment before its normalisation and random erasing after it.
fn with_recipe(base: &Pipeline, mean: &[f32]) -> trainer::Result<Pipeline> {
    let mut steps = base.steps().to_vec();
    let at = steps
        .iter()
        .position(|s| matches!(s, Transform::Normalize { .. }))
        .unwrap_or(steps.len());
    steps.insert(
        at,
        Transform::AutoAugment(AutoAugment::parse("rand-m9-mstd0.5", mean)?),
    );
    steps.push(Transform::RandomErasing(RandomErasing::new(
        0.25,
        EraseMode::Pixel,
        1,
    )));
    Pipeline::new(steps)
}

/// Images per second of one pass over `dataset` (at most `limit` images) through `pipeline`.
fn images_per_sec(
    dataset: Arc<dyn Dataset>,
    pipeline: Pipeline,
    batch: usize,
    workers: usize,
) -> trainer::Result<f64> {
    let config = LoaderConfig {
        workers,
        prefetch: 2 * workers.max(1),
        ..LoaderConfig::new(batch)
    };
    let loader = DataLoader::new(dataset, pipeline, config)?;
    let t0 = Instant::now();
    let mut n = 0;
    for b in loader.epoch(0, &Device::Cpu) {
        n += b?.indices.len();
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// Images per second of forward + backward of `model` on `[batch, c, h, w]` (the mean of
/// `steps` steps after one warm-up).
fn step_images_per_sec(
    model: &dyn Backbone,
    batch: usize,
    (c, h, w): (usize, usize, usize),
    steps: usize,
) -> trainer::Result<f64> {
    let x = Tensor::randn(0f32, 1.0, (batch, c, h, w), &Device::Cpu)?;
    let labels = Tensor::zeros(batch, DType::U32, &Device::Cpu)?;
    let mut seconds = 0.0;
    for i in 0..=steps {
        let t0 = Instant::now();
        let logits = model.forward_t(&x, true)?;
        let loss = trainer::loss::cross_entropy(&logits, &labels)?;
        let _grads = loss.backward()?;
        if i > 0 {
            seconds += t0.elapsed().as_secs_f64();
        }
    }
    Ok((batch * steps) as f64 / seconds)
}

fn main() -> trainer::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let jpegs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let workers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    println!(
        "threads available: {:?}",
        std::thread::available_parallelism().map(|n| n.get())
    );

    // The bundled digits: pad 2 and normalise (LeNet-5's pipeline), batches of 64.
    let mnist = Mnist::bundled()?;
    let digits: Arc<dyn Dataset> = Arc::new(GrayImages::new(mnist.train, "train")?);
    let base = Preprocess::mnist().pipeline(None)?;
    let recipe = with_recipe(&base, &[Preprocess::MNIST_MEAN])?;
    for w in [0, workers] {
        let plain = images_per_sec(digits.clone(), base.clone(), 64, w)?;
        let tools = images_per_sec(digits.clone(), recipe.clone(), 64, w)?;
        println!("digits 32x32, {w} workers: {plain:.0} images/s plain, {tools:.0} with --aa rand-m9-mstd0.5 --reprob 0.25");
    }
    let varmap = VarMap::new();
    let lenet = lenet::LeNet::new(
        &lenet::LeNetConfig::lenet5(),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    println!(
        "LeNet-5 training step (forward + backward), batch 64: {:.0} images/s",
        step_images_per_sec(&lenet, 64, (1, 32, 32), 5)?
    );

    // A folder of 224x224 JPEGs (two classes of smooth colour fields with noise).
    let dir = std::env::temp_dir().join(format!("pipeline-throughput-{}", std::process::id()));
    for i in 0..jpegs {
        let class = dir.join(if i % 2 == 0 { "a" } else { "b" });
        std::fs::create_dir_all(&class).map_err(|e| trainer::Error::io(&class, e))?;
        let img = image::RgbImage::from_fn(224, 224, |x, y| {
            let n = ((x * 7919 + y * 104_729 + i as u32 * 31) % 61) as u8;
            image::Rgb([
                (x as u8).wrapping_add(n),
                (y as u8).wrapping_add(i as u8),
                n.wrapping_mul(3),
            ])
        });
        let path = class.join(format!("{i:04}.jpg"));
        img.save(&path)
            .map_err(|e| trainer::Error::dataset(&path, e.to_string()))?;
    }
    let folder: Arc<dyn Dataset> = Arc::new(ImageFolder::open(&dir)?);
    let base = Pipeline::train((224, 224), Interpolation::Bilinear, &IMAGENET_MEAN, &IMAGENET_STD)?;
    let recipe = with_recipe(&base, &IMAGENET_MEAN)?;
    for w in [0, workers] {
        let plain = images_per_sec(folder.clone(), base.clone(), 32, w)?;
        let tools = images_per_sec(folder.clone(), recipe.clone(), 32, w)?;
        println!("JPEG 224x224 (decode, random resized crop, flip), {w} workers: {plain:.0} images/s plain, {tools:.0} with --aa rand-m9-mstd0.5 --reprob 0.25");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let varmap = VarMap::new();
    let resnet = resnet::ResNet::new(
        &resnet::ResNetConfig::resnet18(),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    println!(
        "ResNet-18 training step (forward + backward), batch 16 at 224: {:.1} images/s",
        step_images_per_sec(&resnet, 16, (3, 224, 224), 2)?
    );
    Ok(())
}
