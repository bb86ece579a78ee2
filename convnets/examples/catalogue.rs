//! Prints the catalogue: every variant with its family, default input, parameters, MACs (counted
//! by a summarised forward pass at that input, checked against the catalogue) and the tags of
//! its published checkpoints (`resnet50.a1_in1k` is a name too).
//!
//! ```sh
//! cargo run --release -p convnets --example catalogue [pattern]
//! ```

use candle_core::Device;

fn main() -> convnets::Result<()> {
    let pattern = std::env::args().nth(1).unwrap_or_default();
    println!(
        "{:<18} {:<13} {:>11} {:>14} {:>16}  hub",
        "model", "family", "input", "params", "MACs"
    );
    for name in convnets::list_models(&pattern) {
        let variant = convnets::find_model(name)?;
        let model = convnets::create_model(name, &Default::default())?;
        let (c, h, w) = variant.preprocessing.input_size;
        let macs = backbone::summarize(&*model, &[1, c, h, w], &Device::Cpu)?.total_macs();
        let check = if macs == variant.macs {
            ""
        } else {
            " (catalogue differs!)"
        };
        println!(
            "{:<18} {:<13} {:>11} {:>14} {:>16}{check}  {}",
            variant.name,
            variant.family,
            format!("{c}x{h}x{w}"),
            backbone::summary::thousands(variant.params),
            backbone::summary::thousands(macs),
            variant
                .pretrained
                .iter()
                .map(|p| p.tag)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
