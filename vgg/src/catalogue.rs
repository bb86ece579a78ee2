//! The variants of this crate, as data (names, paper, reference configuration, default
//! preprocessing, hub weights, accepted weights layouts): see [`backbone::catalogue`].

use crate::{is_timm_layout, remap_timm, Vgg, VggConfig};
use backbone::catalogue::{self, Layout, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;

fn build(config: VggConfig, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = config.with_classes(o.num_classes).with_in_channels(o.in_channels);
    Ok(Box::new(Vgg::new(&config, vb)?))
}

/// timm's hub layout (`pre_logits.fc1` as a 7x7 convolution, `head.fc`), then torchvision's.
const LAYOUTS: &[Layout] = &[
    Layout {
        name: "timm",
        detect: is_timm_layout,
        remap: remap_timm,
    },
    catalogue::native("torchvision"),
];

/// Every variant of this crate.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "vgg11",
        aliases: &[],
        family: "vgg",
        description: "VGG-11 (torchvision layout, timm hub files load too; min input 32x32)",
        paper:
            "Simonyan, Zisserman 2014, \"Very Deep Convolutional Networks for Large-Scale Image Recognition\"",
        reference: (3, 1000),
        params: 132_863_336,
        macs: 7_609_090_048,
        preprocessing: Preprocessing::IMAGENET,
        hub: &["timm/vgg11.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(VggConfig::vgg11(), o, vb),
    },
    Variant {
        name: "vgg11_bn",
        aliases: &[],
        family: "vgg",
        description: "VGG-11 with batch norm (torchvision layout, timm hub files load too; min input 32x32)",
        paper:
            "Simonyan, Zisserman 2014, \"Very Deep Convolutional Networks for Large-Scale Image Recognition\"",
        reference: (3, 1000),
        params: 132_868_840,
        macs: 7_609_090_048,
        preprocessing: Preprocessing::IMAGENET,
        hub: &["timm/vgg11_bn.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(VggConfig::vgg11_bn(), o, vb),
    },
    Variant {
        name: "vgg13",
        aliases: &[],
        family: "vgg",
        description: "VGG-13 (torchvision layout, timm hub files load too; min input 32x32)",
        paper:
            "Simonyan, Zisserman 2014, \"Very Deep Convolutional Networks for Large-Scale Image Recognition\"",
        reference: (3, 1000),
        params: 133_047_848,
        macs: 11_308_466_176,
        preprocessing: Preprocessing::IMAGENET,
        hub: &["timm/vgg13.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(VggConfig::vgg13(), o, vb),
    },
    Variant {
        name: "vgg13_bn",
        aliases: &[],
        family: "vgg",
        description: "VGG-13 with batch norm (torchvision layout, timm hub files load too; min input 32x32)",
        paper:
            "Simonyan, Zisserman 2014, \"Very Deep Convolutional Networks for Large-Scale Image Recognition\"",
        reference: (3, 1000),
        params: 133_053_736,
        macs: 11_308_466_176,
        preprocessing: Preprocessing::IMAGENET,
        hub: &["timm/vgg13_bn.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(VggConfig::vgg13_bn(), o, vb),
    },
    Variant {
        name: "vgg16",
        aliases: &[],
        family: "vgg",
        description: "VGG-16 (torchvision layout, timm hub files load too; min input 32x32)",
        paper:
            "Simonyan, Zisserman 2014, \"Very Deep Convolutional Networks for Large-Scale Image Recognition\"",
        reference: (3, 1000),
        params: 138_357_544,
        macs: 15_470_264_320,
        preprocessing: Preprocessing::IMAGENET,
        hub: &["timm/vgg16.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(VggConfig::vgg16(), o, vb),
    },
    Variant {
        name: "vgg16_bn",
        aliases: &[],
        family: "vgg",
        description: "VGG-16 with batch norm (torchvision layout, timm hub files load too; min input 32x32)",
        paper:
            "Simonyan, Zisserman 2014, \"Very Deep Convolutional Networks for Large-Scale Image Recognition\"",
        reference: (3, 1000),
        params: 138_365_992,
        macs: 15_470_264_320,
        preprocessing: Preprocessing::IMAGENET,
        hub: &["timm/vgg16_bn.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(VggConfig::vgg16_bn(), o, vb),
    },
    Variant {
        name: "vgg19",
        aliases: &[],
        family: "vgg",
        description: "VGG-19 (torchvision layout, timm hub files load too; min input 32x32)",
        paper:
            "Simonyan, Zisserman 2014, \"Very Deep Convolutional Networks for Large-Scale Image Recognition\"",
        reference: (3, 1000),
        params: 143_667_240,
        macs: 19_632_062_464,
        preprocessing: Preprocessing::IMAGENET,
        hub: &["timm/vgg19.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(VggConfig::vgg19(), o, vb),
    },
    Variant {
        name: "vgg19_bn",
        aliases: &[],
        family: "vgg",
        description: "VGG-19 with batch norm (torchvision layout, timm hub files load too; min input 32x32)",
        paper:
            "Simonyan, Zisserman 2014, \"Very Deep Convolutional Networks for Large-Scale Image Recognition\"",
        reference: (3, 1000),
        params: 143_678_248,
        macs: 19_632_062_464,
        preprocessing: Preprocessing::IMAGENET,
        hub: &["timm/vgg19_bn.tv_in1k"],
        layouts: LAYOUTS,
        aux_prefixes: &[],
        stem: "features.0.weight",
        build: |o, vb| build(VggConfig::vgg19_bn(), o, vb),
    },
];
