//! The variants of this crate, as data (names, paper, reference configuration, default
//! preprocessing, hub weights, accepted weights layouts): see [`backbone::catalogue`].

use crate::{is_legacy_layout, remap_legacy, DenseNet, DenseNetConfig};
use backbone::catalogue::{self, Layout, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;

fn build(config: DenseNetConfig, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = config.with_classes(o.num_classes).with_in_channels(o.in_channels);
    Ok(Box::new(DenseNet::new(&config, vb)?))
}

/// Old torchvision checkpoints (`denselayer1.norm.1.weight`), then torchvision's names (which
/// timm's hub files use too).
const LAYOUTS: &[Layout] = &[
    Layout {
        name: "legacy torchvision (norm.1)",
        detect: is_legacy_layout,
        remap: |tensors| Ok(remap_legacy(tensors)),
    },
    catalogue::native("torchvision"),
];

/// Every variant of this crate.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "densenet121",
        aliases: &[],
        family: "densenet",
        description: "DenseNet-121 (min input 29x29)",
        paper: "Huang, Liu, van der Maaten, Weinberger 2016, \"Densely Connected Convolutional Networks\"",
        reference: (3, 1000),
        params: 7_978_856,
        macs: 2_834_161_664,
        preprocessing: Preprocessing::IMAGENET.crop(0.875, "bicubic"),
        hub: &["timm/densenet121.ra_in1k", "timm/densenet121.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.conv0.weight",
        build: |o, vb| build(DenseNetConfig::densenet121(), o, vb),
    },
    Variant {
        name: "densenet161",
        aliases: &[],
        family: "densenet",
        description: "DenseNet-161 (min input 29x29)",
        paper: "Huang, Liu, van der Maaten, Weinberger 2016, \"Densely Connected Convolutional Networks\"",
        reference: (3, 1000),
        params: 28_681_000,
        macs: 7_727_907_072,
        preprocessing: Preprocessing::IMAGENET.crop(0.875, "bicubic"),
        hub: &["timm/densenet161.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.conv0.weight",
        build: |o, vb| build(DenseNetConfig::densenet161(), o, vb),
    },
    Variant {
        name: "densenet169",
        aliases: &[],
        family: "densenet",
        description: "DenseNet-169 (min input 29x29)",
        paper: "Huang, Liu, van der Maaten, Weinberger 2016, \"Densely Connected Convolutional Networks\"",
        reference: (3, 1000),
        params: 14_149_480,
        macs: 3_359_843_328,
        preprocessing: Preprocessing::IMAGENET.crop(0.875, "bicubic"),
        hub: &["timm/densenet169.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.conv0.weight",
        build: |o, vb| build(DenseNetConfig::densenet169(), o, vb),
    },
    Variant {
        name: "densenet201",
        aliases: &[],
        family: "densenet",
        description: "DenseNet-201 (min input 29x29)",
        paper: "Huang, Liu, van der Maaten, Weinberger 2016, \"Densely Connected Convolutional Networks\"",
        reference: (3, 1000),
        params: 20_013_928,
        macs: 4_291_365_888,
        preprocessing: Preprocessing::IMAGENET.crop(0.875, "bicubic"),
        hub: &["timm/densenet201.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.conv0.weight",
        build: |o, vb| build(DenseNetConfig::densenet201(), o, vb),
    },
];
