//! The variants of this crate, as data (names, paper, reference configuration, default
//! preprocessing, hub weights, accepted weights layouts): see [`backbone::catalogue`].

use crate::{detect_layout, torchvision_to_timm, EfficientNet, EfficientNetConfig, WeightsLayout};
use backbone::catalogue::{self, Layout, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;

fn build(config: EfficientNetConfig, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = config.with_classes(o.num_classes).with_in_channels(o.in_channels);
    Ok(Box::new(EfficientNet::new(&config, vb)?))
}

fn is_torchvision(tensors: &catalogue::StateDict) -> bool {
    detect_layout(tensors.keys()) == WeightsLayout::Torchvision
}

/// torchvision's layout of variant `$b` (`features.0.0.weight`, `classifier.1.weight`), renamed
/// to timm's (this crate's).
macro_rules! torchvision {
    ($b:ident) => {
        Layout {
            name: "torchvision",
            detect: is_torchvision,
            remap: |tensors| Ok(torchvision_to_timm(tensors, &EfficientNetConfig::$b())),
        }
    };
}

/// Every variant of this crate.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "efficientnet_b0",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B0 (timm and torchvision weights load)",
        paper: "Tan, Le 2019, \"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 5_288_548,
        macs: 385_814_752,
        preprocessing: Preprocessing::IMAGENET.at(224).crop(0.875, "bicubic"),
        hub: &["timm/efficientnet_b0.ra_in1k"],
        layouts: &[torchvision!(b0), catalogue::native("timm")],
        aux_prefixes: &[],
        stem: "conv_stem.weight",
        build: |o, vb| build(EfficientNetConfig::b0(), o, vb),
    },
    Variant {
        name: "efficientnet_b1",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B1 (timm and torchvision weights load)",
        paper: "Tan, Le 2019, \"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 7_794_184,
        macs: 686_802_832,
        preprocessing: Preprocessing::IMAGENET.at(240).crop(0.875, "bicubic"),
        hub: &["timm/efficientnet_b1.ft_in1k"],
        layouts: &[torchvision!(b1), catalogue::native("timm")],
        aux_prefixes: &[],
        stem: "conv_stem.weight",
        build: |o, vb| build(EfficientNetConfig::b1(), o, vb),
    },
    Variant {
        name: "efficientnet_b2",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B2 (timm and torchvision weights load)",
        paper: "Tan, Le 2019, \"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 9_109_994,
        macs: 993_561_872,
        preprocessing: Preprocessing::IMAGENET.at(260).crop(0.875, "bicubic"),
        hub: &["timm/efficientnet_b2.ra_in1k"],
        layouts: &[torchvision!(b2), catalogue::native("timm")],
        aux_prefixes: &[],
        stem: "conv_stem.weight",
        build: |o, vb| build(EfficientNetConfig::b2(), o, vb),
    },
    Variant {
        name: "efficientnet_b3",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B3 (timm and torchvision weights load)",
        paper: "Tan, Le 2019, \"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 12_233_232,
        macs: 1_827_141_392,
        preprocessing: Preprocessing::IMAGENET.at(300).crop(0.875, "bicubic"),
        hub: &["timm/efficientnet_b3.ra2_in1k"],
        layouts: &[torchvision!(b3), catalogue::native("timm")],
        aux_prefixes: &[],
        stem: "conv_stem.weight",
        build: |o, vb| build(EfficientNetConfig::b3(), o, vb),
    },
    Variant {
        name: "efficientnet_b4",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B4 (timm and torchvision weights load)",
        paper: "Tan, Le 2019, \"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 19_341_616,
        macs: 4_393_771_024,
        preprocessing: Preprocessing::IMAGENET.at(380).crop(0.875, "bicubic"),
        hub: &["timm/efficientnet_b4.ra2_in1k"],
        layouts: &[torchvision!(b4), catalogue::native("timm")],
        aux_prefixes: &[],
        stem: "conv_stem.weight",
        build: |o, vb| build(EfficientNetConfig::b4(), o, vb),
    },
    Variant {
        name: "efficientnet_b5",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B5 (timm and torchvision weights load)",
        paper: "Tan, Le 2019, \"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 30_389_784,
        macs: 10_266_384_752,
        preprocessing: Preprocessing::IMAGENET.at(456).crop(0.875, "bicubic"),
        hub: &[],
        layouts: &[torchvision!(b5), catalogue::native("timm")],
        aux_prefixes: &[],
        stem: "conv_stem.weight",
        build: |o, vb| build(EfficientNetConfig::b5(), o, vb),
    },
    Variant {
        name: "efficientnet_b6",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B6 (timm and torchvision weights load)",
        paper: "Tan, Le 2019, \"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 43_040_704,
        macs: 19_067_593_536,
        preprocessing: Preprocessing::IMAGENET.at(528).crop(0.875, "bicubic"),
        hub: &[],
        layouts: &[torchvision!(b6), catalogue::native("timm")],
        aux_prefixes: &[],
        stem: "conv_stem.weight",
        build: |o, vb| build(EfficientNetConfig::b6(), o, vb),
    },
    Variant {
        name: "efficientnet_b7",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B7 (timm and torchvision weights load)",
        paper: "Tan, Le 2019, \"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks\"",
        reference: (3, 1000),
        params: 66_347_960,
        macs: 37_745_884_192,
        preprocessing: Preprocessing::IMAGENET.at(600).crop(0.875, "bicubic"),
        hub: &[],
        layouts: &[torchvision!(b7), catalogue::native("timm")],
        aux_prefixes: &[],
        stem: "conv_stem.weight",
        build: |o, vb| build(EfficientNetConfig::b7(), o, vb),
    },
];
