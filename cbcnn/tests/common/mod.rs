//! Channel-boosted networks built as the catalogue builds them, from the crates they compose.

#![allow(dead_code)]

use backbone::init::SeededVarMap;
use backbone::{Backbone, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use cbcnn::{AutoencoderConfig, ChannelBoosted, ChannelBoostedConfig};
use lenet::{LeNet, LeNetConfig};
use resnet::{ResNet, ResNetConfig};

/// LeNet-5 with `c` input channels and `classes` classes.
pub fn lenet(c: usize, classes: usize, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = LeNetConfig::lenet5().with_in_channels(c).with_classes(classes);
    Ok(Box::new(LeNet::new(&config, vb)?))
}

/// ResNet-18 with `c` input channels and `classes` classes.
pub fn resnet18(c: usize, classes: usize, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = ResNetConfig::resnet18().with_in_channels(c).with_classes(classes);
    Ok(Box::new(ResNet::new(&config, vb)?))
}

/// `cbcnn_lenet`: autoencoder (code 4) + frozen LeNet-5 `pool1` (6) + LeNet-5 main network.
pub fn cbcnn_lenet(in_channels: usize, classes: usize, vars: &SeededVarMap) -> Result<ChannelBoosted> {
    let config = ChannelBoostedConfig {
        name: "cbcnn_lenet".into(),
        in_channels,
        autoencoder: Some(AutoencoderConfig::small(in_channels)),
        extractor_stage: Some(0),
    };
    let main = |c: usize, vb: VarBuilder| lenet(c, classes, vb);
    let extractor = |c: usize, vb: VarBuilder| lenet(c, 10, vb);
    ChannelBoosted::new(
        &config,
        vars.var_builder(DType::F32, &Device::Cpu),
        &main,
        Some(&extractor),
    )
}

/// `cbcnn_resnet18`: autoencoder (code 4) + frozen ResNet-18 `layer1` (64) + ResNet-18.
pub fn cbcnn_resnet18(in_channels: usize, classes: usize, vars: &SeededVarMap) -> Result<ChannelBoosted> {
    let config = ChannelBoostedConfig {
        name: "cbcnn_resnet18".into(),
        in_channels,
        autoencoder: Some(AutoencoderConfig::small(in_channels)),
        extractor_stage: Some(1),
    };
    let main = |c: usize, vb: VarBuilder| resnet18(c, classes, vb);
    let extractor = |c: usize, vb: VarBuilder| resnet18(c, 1000, vb);
    ChannelBoosted::new(
        &config,
        vars.var_builder(DType::F32, &Device::Cpu),
        &main,
        Some(&extractor),
    )
}

/// Elements of the non-buffer variables whose name passes `keep`.
pub fn count(vars: &SeededVarMap, keep: impl Fn(&str) -> bool) -> usize {
    backbone::init::trainable_vars(vars.varmap())
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(_, v)| v.elem_count())
        .sum()
}
