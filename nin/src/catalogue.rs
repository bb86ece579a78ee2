//! The variants of this crate, as data (names, paper, reference configuration, default
//! preprocessing, hub weights, accepted weights layouts): see [`backbone::catalogue`].

use crate::{Nin, NinConfig};
use backbone::catalogue::{self, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;

/// CIFAR-10 at 32x32: its mean and standard deviation, no crop.
const CIFAR: Preprocessing = Preprocessing {
    input_size: (3, 32, 32),
    mean: &[0.4914, 0.4822, 0.4465],
    std: &[0.2470, 0.2435, 0.2616],
    crop_pct: 1.0,
    interpolation: "bilinear",
    test_input_size: None,
    test_crop_pct: None,
};

fn build(config: NinConfig, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = config.with_classes(o.num_classes).with_in_channels(o.in_channels);
    Ok(Box::new(Nin::new(&config, vb)?))
}

/// Every variant of this crate.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "nin",
        aliases: &[],
        family: "nin",
        description: "Network in Network, ImageNet layout (min input 39x39)",
        paper: "Lin, Chen, Yan 2013, \"Network In Network\"",
        reference: (3, 1000),
        params: 7_595_176,
        macs: 1_100_188_800,
        preprocessing: Preprocessing::IMAGENET,
        pretrained: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(NinConfig::nin(), o, vb),
    },
    Variant {
        name: "nin_cifar",
        aliases: &[],
        family: "nin",
        description: "Network in Network, CIFAR layout",
        paper: "Lin, Chen, Yan 2013, \"Network In Network\"",
        reference: (3, 10),
        params: 966_986,
        macs: 222_486_528,
        preprocessing: CIFAR,
        pretrained: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(NinConfig::nin_cifar(), o, vb),
    },
];
