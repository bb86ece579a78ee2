//! Builds `regnety_016` by name from this crate's catalogue, fresh or from a weights file in any
//! layout it accepts, and runs it on one image-sized input. Needs only `regnet` and `candle-core`:
//!
//! ```sh
//! cargo run --release -p convnets-regnet --example regnet_by_name -- [regnety_016] [weights.safetensors]
//! ```

use candle_core::{DType, Device, Tensor};
use regnet::prelude::*;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let variant = Variant::find(regnet::VARIANTS, &args.next().unwrap_or("regnety_016".into()))?;
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
