//! Composes a channel-boosted LeNet-5 as `cbcnn_lenet` does (the catalogue variant lives in
//! the `convnets` facade, which builds it by name), prints where its input channels come from,
//! its parameters and the logits of a blank digit.
//!
//! ```sh
//! cargo run -p cbcnn --example cbcnn_compose
//! ```

use candle_core::{DType, Device, Tensor};
use cbcnn::prelude::*;
use lenet::{LeNet, LeNetConfig};

fn main() -> Result<()> {
    let vars = SeededVarMap::new(0);
    let config = ChannelBoostedConfig {
        name: "cbcnn_lenet".into(),
        in_channels: 1,
        autoencoder: Some(AutoencoderConfig::small(1)),
        extractor_stage: Some(0),
    };
    let lenet = |channels: usize, vb: VarBuilder| -> Result<Box<dyn Backbone>> {
        let config = LeNetConfig::lenet5().with_in_channels(channels);
        Ok(Box::new(LeNet::new(&config, vb)?))
    };
    let model = ChannelBoosted::new(
        &config,
        vars.var_builder(DType::F32, &Device::Cpu),
        &lenet,
        Some(&lenet),
    )?;
    let c = model.channels();
    println!(
        "boosted input: {} original + {} autoencoder + {} extractor = {} channels",
        c.original,
        c.autoencoder,
        c.extractor,
        c.total()
    );
    let all: usize = backbone::init::trainable_vars(vars.varmap())
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    let trained: usize = backbone::init::trainable_model_vars(vars.varmap(), &model)
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    println!(
        "{all} parameters, {trained} of them trained with the classifier (frozen prefixes: {:?})",
        model.frozen_prefixes()
    );
    let logits = model.forward_t(&Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu)?, false)?;
    println!("logits of a blank digit: {logits}");
    Ok(())
}
