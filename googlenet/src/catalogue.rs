//! The variants of this crate, as data (names, paper, reference configuration, default
//! preprocessing, hub weights, accepted weights layouts): see [`backbone::catalogue`].

use crate::{GoogLeNet, GoogLeNetConfig, InceptionV3, InceptionV3Config};
use backbone::catalogue::{self, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;

/// torchvision's published GoogLeNet weights run with `transform_input=True`, which turns an
/// ImageNet-normalised input into one normalised with mean and std 0.5: the same as this
/// preprocessing without the transform (224, crop 0.875, bilinear).
const GOOGLENET: Preprocessing = Preprocessing {
    input_size: (3, 224, 224),
    mean: &[0.5, 0.5, 0.5],
    std: &[0.5, 0.5, 0.5],
    crop_pct: 0.875,
    interpolation: "bilinear",
};

/// timm's `inception_v3.tv_in1k`: 299x299, mean and std 0.5, crop 0.875, bicubic.
const INCEPTION_V3: Preprocessing = Preprocessing {
    input_size: (3, 299, 299),
    mean: &[0.5, 0.5, 0.5],
    std: &[0.5, 0.5, 0.5],
    crop_pct: 0.875,
    interpolation: "bicubic",
};

fn googlenet(config: GoogLeNetConfig, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = config
        .with_classes(o.num_classes)
        .with_in_channels(o.in_channels)
        .with_aux_logits(o.aux_logits);
    Ok(Box::new(GoogLeNet::new(&config, vb)?))
}

fn inception_v3(o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = InceptionV3Config {
        aux_logits: o.aux_logits,
        ..InceptionV3Config::inception_v3()
            .with_classes(o.num_classes)
            .with_in_channels(o.in_channels)
    };
    Ok(Box::new(InceptionV3::new(&config, vb)?))
}

/// Every variant of this crate.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "googlenet",
        aliases: &["inception_v1"],
        family: "inception",
        description:
            "GoogLeNet / Inception v1 as torchvision (3x3 branch3; 6,624,904 params without the aux heads)",
        paper: "Szegedy et al. 2014, \"Going Deeper with Convolutions\"",
        reference: (3, 1000),
        params: 13_004_888,
        macs: 1_498_376_192,
        preprocessing: GOOGLENET,
        hub: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &["aux1.", "aux2."],
        stem: "conv1.conv.weight",
        build: |o, vb| googlenet(GoogLeNetConfig::googlenet(), o, vb),
    },
    Variant {
        name: "googlenet_paper",
        aliases: &[],
        family: "inception",
        description: "GoogLeNet with the paper's 5x5 branch3",
        paper: "Szegedy et al. 2014, \"Going Deeper with Convolutions\"",
        reference: (3, 1000),
        params: 13_385_816,
        macs: 1_582_671_872,
        preprocessing: GOOGLENET,
        hub: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &["aux1.", "aux2."],
        stem: "conv1.conv.weight",
        build: |o, vb| googlenet(GoogLeNetConfig::googlenet_paper(), o, vb),
    },
    Variant {
        name: "inception_v3",
        aliases: &["inception3"],
        family: "inception",
        description: "Inception-v3 (the aux head trains at >= 299x299)",
        paper: "Szegedy et al. 2015, \"Rethinking the Inception Architecture for Computer Vision\"",
        reference: (3, 1000),
        params: 27_161_264,
        macs: 5_713_216_096,
        preprocessing: INCEPTION_V3,
        hub: &["timm/inception_v3.tv_in1k"],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &["AuxLogits."],
        stem: "Conv2d_1a_3x3.conv.weight",
        build: |o, vb| inception_v3(o, vb),
    },
];
