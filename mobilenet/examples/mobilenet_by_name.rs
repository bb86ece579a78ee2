//! Builds `mobilenetv2_100` by name from this crate's catalogue, fresh or from a weights file in any
//! layout it accepts, and runs it on one image-sized input. Needs only `mobilenet` and `candle-core`:
//!
//! ```sh
//! cargo run --release -p convnets-mobilenet --example mobilenet_by_name -- [mobilenetv2_100 | mobilenetv3_large_100 | mobilenet_v3_small ...] [weights.safetensors]
//! ```

use candle_core::{DType, Device, Tensor};
use mobilenet::prelude::*;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let variant = Variant::find(
        mobilenet::VARIANTS,
        &args.next().unwrap_or("mobilenetv2_100".into()),
    )?;
    let options = variant.reference_options();
    let model = match args.next() {
        Some(file) => variant.load(file.as_ref(), &options, DType::F32, &Device::Cpu)?.0,
        None => variant.create(
            &options,
            SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu),
        )?,
    };
    let (c, h, w) = variant.preprocessing.input_size;
    let logits = model.forward_t(&Tensor::zeros((1, c, h, w), DType::F32, &Device::Cpu)?, false)?;
    println!(
        "{}: {} parameters, logits {:?}",
        variant.name,
        variant.params,
        logits.dims()
    );
    Ok(())
}
