//! The variants of this crate, as data (names, paper, reference configuration, default
//! preprocessing, hub weights, accepted weights layouts): see [`backbone::catalogue`].

use crate::{ZfNet, ZfNetConfig};
use backbone::catalogue::{self, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;

fn build(config: ZfNetConfig, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = config.with_classes(o.num_classes).with_in_channels(o.in_channels);
    Ok(Box::new(ZfNet::new(&config, vb)?))
}

/// Every variant of this crate.
pub const VARIANTS: &[Variant] = &[Variant {
    name: "zfnet",
    aliases: &[],
    family: "zfnet",
    description: "ZFNet, Zeiler & Fergus 2013 (min input 47x47)",
    paper: "Zeiler, Fergus 2013, \"Visualizing and Understanding Convolutional Networks\"",
    reference: (3, 1000),
    params: 62_357_608,
    macs: 1_168_032_896,
    preprocessing: Preprocessing::IMAGENET,
    pretrained: &[],
    layouts: &[catalogue::native("torchvision")],
    aux_prefixes: &[],
    stem: "features.0.weight",
    build: |o, vb| build(ZfNetConfig::zfnet(), o, vb),
}];
