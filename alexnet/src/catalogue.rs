//! The variants of this crate, as data (names, paper, reference configuration, default
//! preprocessing, hub weights, accepted weights layouts): see [`backbone::catalogue`].

use crate::{AlexNet, AlexNetConfig};
use backbone::catalogue::{self, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;

fn build(config: AlexNetConfig, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = config.with_classes(o.num_classes).with_in_channels(o.in_channels);
    Ok(Box::new(AlexNet::new(&config, vb)?))
}

/// Every variant of this crate.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "alexnet",
        aliases: &[],
        family: "alexnet",
        description: "AlexNet as torchvision (min input 63x63)",
        paper: "Krizhevsky, Sutskever, Hinton 2012, \"ImageNet Classification with Deep Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 61_100_840,
        macs: 714_188_480,
        preprocessing: Preprocessing::IMAGENET,
        pretrained: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(AlexNetConfig::alexnet(), o, vb),
    },
    Variant {
        name: "alexnet_2012",
        aliases: &["alexnet_paper"],
        family: "alexnet",
        description: "AlexNet as the 2012 paper: 96/256/384/384/256 channels, LRN",
        paper: "Krizhevsky, Sutskever, Hinton 2012, \"ImageNet Classification with Deep Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 62_378_344,
        macs: 1_135_256_096,
        preprocessing: Preprocessing::IMAGENET,
        pretrained: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(AlexNetConfig::alexnet_2012(), o, vb),
    },
];
