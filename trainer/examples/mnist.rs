//! LeNet-5 trained from scratch on the bundled MNIST sample (no download) with the one training
//! loop, as `cargo xtask train lenet` does:
//!
//! ```sh
//! cargo run --release -p convnets-trainer --example mnist
//! ```

use backbone::catalogue::Variant;
use backbone::init::SeededVarMap;
use candle_core::{DType, Device};
use trainer::data::{Mnist, Preprocess, RandomAffine};
use trainer::train::{train, TrainConfig, TrainData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mnist = Mnist::bundled()?;
    let variant = Variant::find(lenet::VARIANTS, "lenet5")?;
    let vars = SeededVarMap::new(42);
    let model = variant.create(
        &variant.reference_options(),
        vars.var_builder(DType::F32, &Device::Cpu),
    )?;
    // 28x28 digits padded to LeNet-5's 32x32, normalised; random affine for training.
    let data = TrainData::mnist(
        mnist.train,
        mnist.test,
        Preprocess::mnist(),
        Some(RandomAffine::mnist()),
    )?;
    let out = std::env::temp_dir().join(format!("lenet-example-{}", std::process::id()));
    let config = TrainConfig {
        epochs: 3,
        out_dir: out.clone(),
        ..TrainConfig::default()
    };
    let report = train(model.as_ref(), vars.varmap(), data, &config, &Device::Cpu)?;
    let last = report.epochs.last().ok_or("no epoch ran")?;
    println!(
        "test accuracy {:.2}% after {} epochs; run folder {}",
        100.0 * last.val_top1,
        last.epoch,
        out.display()
    );
    Ok(())
}
