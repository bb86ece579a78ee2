//! A weights reference through the Hugging Face cache: where the file is and how its images are
//! prepared (timm's `config.json`, at the test size and at the training size).
//!
//! ```sh
//! cargo run -p convnets-hub --example resolve -- timm/resnet50.a1_in1k [--offline]
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reference = std::env::args().nth(1).unwrap_or("timm/resnet50.a1_in1k".into());
    let mut options = hub::HubOptions::from_env();
    options.offline |= std::env::args().any(|a| a == "--offline");
    let resolved = hub::resolve(&hub::WeightsRef::parse(&reference)?, &options)?;
    println!("{} -> {}", resolved.source, resolved.weights_file.display());
    match &resolved.config {
        Some(config) => {
            for (what, use_test_size) in [("evaluation", true), ("training", false)] {
                let d = config.data_config(use_test_size);
                println!(
                    "{what}: {:?}, crop {}, {}, mean {:?}, std {:?}",
                    d.input_size, d.crop_pct, d.interpolation, d.mean, d.std
                );
            }
        }
        None => println!("no config.json beside it"),
    }
    Ok(())
}
