//! A library fine-tune in a few lines: timm's `resnet50.a1_in1k` from the Hugging Face cache
//! (downloaded there once, or `huggingface-cli download timm/resnet50.a1_in1k`), a new 10-class
//! head, the backbone frozen, an image folder (a folder per class), the loop `cargo xtask
//! finetune` runs.
//!
//! ```sh
//! cargo run --release -p convnets --example finetune -- ~/images/train [model]
//! ```

use convnets::{create_model, CreateOptions};
use trainer::data::Pipeline;
use trainer::train::{train, TrainConfig, TrainData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let images = std::env::args()
        .nth(1)
        .ok_or("usage: finetune <image folder> [model]")?;
    let name = std::env::args().nth(2).unwrap_or("resnet50.a1_in1k".into());
    // Pretrained weights (the tag's hub id), a fresh 10-class classifier, trainable variables.
    let options = CreateOptions {
        pretrained: true,
        num_classes: Some(10),
        trainable: true,
        ..Default::default()
    };
    let model = create_model(&name, &options)?;
    // timm's train.py trains and validates at the weights' training size.
    let data = TrainData::image_folder(
        &images,
        0.2,
        42,
        Pipeline::eval_config(&model.data_config(false))?,
    )?;
    let vars = model.vars.as_ref().ok_or("trainable variables")?;
    let config = TrainConfig {
        epochs: 3,
        ..TrainConfig::finetune()
    }; // backbone frozen
    let report = train(&*model, vars.varmap(), data, &config, &candle_core::Device::Cpu)?;
    println!("validation top-1 {:.2}%", 100.0 * report.final_eval.top1);
    Ok(())
}
