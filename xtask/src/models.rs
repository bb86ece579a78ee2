//! The model registry: every variant name the command line accepts.

use anyhow::{bail, Result};
use backbone::Backbone;
use candle_nn::VarBuilder;

/// A variant the command line can build.
pub struct ModelEntry {
    /// The name users type (`lenet5`).
    pub name: &'static str,
    /// Other accepted names (`lenet`).
    pub aliases: &'static [&'static str],
    /// The family the variant belongs to (`lenet`, `vgg`, `resnet`): `bench <family>` runs all.
    pub family: &'static str,
    /// One line for `--help` and error messages.
    pub description: &'static str,
    /// Input channels and classes of the reference configuration (what `summary` shows).
    pub reference: (usize, usize),
    /// Builds the variant with `num_classes` classes and `in_channels` input channels.
    pub build: fn(usize, usize, VarBuilder) -> backbone::Result<Box<dyn Backbone>>,
}

fn lenet(
    config: lenet::LeNetConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    let config = config.with_classes(classes).with_in_channels(channels);
    Ok(Box::new(lenet::LeNet::new(&config, vb)?))
}

fn googlenet_v1(
    config: googlenet::GoogLeNetConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    let config = config.with_classes(classes).with_in_channels(channels);
    Ok(Box::new(googlenet::GoogLeNet::new(&config, vb)?))
}

fn inception_v3(classes: usize, channels: usize, vb: VarBuilder) -> backbone::Result<Box<dyn Backbone>> {
    let config = googlenet::InceptionV3Config::inception_v3()
        .with_classes(classes)
        .with_in_channels(channels);
    Ok(Box::new(googlenet::InceptionV3::new(&config, vb)?))
}

fn vgg(
    config: vgg::VggConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    let config = config.with_classes(classes).with_in_channels(channels);
    Ok(Box::new(vgg::Vgg::new(&config, vb)?))
}

fn resnet(
    config: resnet::ResNetConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    let config = config.with_classes(classes).with_in_channels(channels);
    Ok(Box::new(resnet::ResNet::new(&config, vb)?))
}

fn alexnet(
    config: alexnet::AlexNetConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    let config = config.with_classes(classes).with_in_channels(channels);
    Ok(Box::new(alexnet::AlexNet::new(&config, vb)?))
}

fn zfnet(classes: usize, channels: usize, vb: VarBuilder) -> backbone::Result<Box<dyn Backbone>> {
    let config = zfnet::ZfNetConfig::zfnet()
        .with_classes(classes)
        .with_in_channels(channels);
    Ok(Box::new(zfnet::ZfNet::new(&config, vb)?))
}

fn nin(
    config: nin::NinConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    let config = config.with_classes(classes).with_in_channels(channels);
    Ok(Box::new(nin::Nin::new(&config, vb)?))
}

fn densenet(
    config: densenet::DenseNetConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    Ok(Box::new(densenet::DenseNet::new(
        &config.with_classes(classes).with_in_channels(channels),
        vb,
    )?))
}

fn efficientnet(
    config: efficientnet::EfficientNetConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    Ok(Box::new(efficientnet::EfficientNet::new(
        &config.with_classes(classes).with_in_channels(channels),
        vb,
    )?))
}

/// Every variant, in the order `--help` lists them.
pub const MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "lenet5",
        aliases: &["lenet"],
        family: "lenet",
        description: "LeNet-5, ReLU + average pooling (61,706 parameters, 1x32x32)",
        reference: (1, 10),
        build: |k, c, vb| lenet(lenet::LeNetConfig::lenet5(), k, c, vb),
    },
    ModelEntry {
        name: "lenet5_tanh",
        aliases: &["lenet-tanh"],
        family: "lenet",
        description: "LeNet-5 with the paper's tanh + average subsampling",
        reference: (1, 10),
        build: |k, c, vb| lenet(lenet::LeNetConfig::lenet5_tanh(), k, c, vb),
    },
    ModelEntry {
        name: "lenet5_max",
        aliases: &["lenet-max"],
        family: "lenet",
        description: "LeNet-5 with ReLU + max pooling",
        reference: (1, 10),
        build: |k, c, vb| lenet(lenet::LeNetConfig::lenet5_max(), k, c, vb),
    },
    ModelEntry {
        name: "alexnet",
        aliases: &[],
        family: "alexnet",
        description: "AlexNet as torchvision (61,100,840 params, 0.71 GMACs; 3x224x224, min 63x63)",
        reference: (3, 1000),
        build: |k, c, vb| alexnet(alexnet::AlexNetConfig::alexnet(), k, c, vb),
    },
    ModelEntry {
        name: "alexnet_2012",
        aliases: &["alexnet-2012", "alexnet_paper"],
        family: "alexnet",
        description: "AlexNet as the 2012 paper: 96/256/384/384/256 channels, LRN (62,378,344 params)",
        reference: (3, 1000),
        build: |k, c, vb| alexnet(alexnet::AlexNetConfig::alexnet_2012(), k, c, vb),
    },
    ModelEntry {
        name: "zfnet",
        aliases: &[],
        family: "zfnet",
        description: "ZFNet, Zeiler & Fergus 2013 (62,357,608 params; 3x224x224, min 47x47)",
        reference: (3, 1000),
        build: zfnet,
    },
    ModelEntry {
        name: "nin",
        aliases: &[],
        family: "nin",
        description: "Network in Network, ImageNet layout (7,595,176 params; 3x224x224, min 39x39)",
        reference: (3, 1000),
        build: |k, c, vb| nin(nin::NinConfig::nin(), k, c, vb),
    },
    ModelEntry {
        name: "nin_cifar",
        aliases: &[],
        family: "nin",
        description: "Network in Network, CIFAR layout (966,986 params; 3x32x32)",
        reference: (3, 10),
        build: |k, c, vb| nin(nin::NinConfig::nin_cifar(), k, c, vb),
    },
    ModelEntry {
        name: "vgg11",
        aliases: &[],
        family: "vgg",
        description: "VGG-11 (torchvision layout, timm hub files load too; 3x224x224, min 32x32)",
        reference: (3, 1000),
        build: |k, c, vb| vgg(vgg::VggConfig::vgg11(), k, c, vb),
    },
    ModelEntry {
        name: "vgg11_bn",
        aliases: &[],
        family: "vgg",
        description: "VGG-11 with batch norm (torchvision layout, timm hub files load too; 3x224x224, min 32x32)",
        reference: (3, 1000),
        build: |k, c, vb| vgg(vgg::VggConfig::vgg11_bn(), k, c, vb),
    },
    ModelEntry {
        name: "vgg13",
        aliases: &[],
        family: "vgg",
        description: "VGG-13 (torchvision layout, timm hub files load too; 3x224x224, min 32x32)",
        reference: (3, 1000),
        build: |k, c, vb| vgg(vgg::VggConfig::vgg13(), k, c, vb),
    },
    ModelEntry {
        name: "vgg13_bn",
        aliases: &[],
        family: "vgg",
        description: "VGG-13 with batch norm (torchvision layout, timm hub files load too; 3x224x224, min 32x32)",
        reference: (3, 1000),
        build: |k, c, vb| vgg(vgg::VggConfig::vgg13_bn(), k, c, vb),
    },
    ModelEntry {
        name: "vgg16",
        aliases: &[],
        family: "vgg",
        description: "VGG-16 (torchvision layout, timm hub files load too; 3x224x224, min 32x32)",
        reference: (3, 1000),
        build: |k, c, vb| vgg(vgg::VggConfig::vgg16(), k, c, vb),
    },
    ModelEntry {
        name: "vgg16_bn",
        aliases: &[],
        family: "vgg",
        description: "VGG-16 with batch norm (torchvision layout, timm hub files load too; 3x224x224, min 32x32)",
        reference: (3, 1000),
        build: |k, c, vb| vgg(vgg::VggConfig::vgg16_bn(), k, c, vb),
    },
    ModelEntry {
        name: "vgg19",
        aliases: &[],
        family: "vgg",
        description: "VGG-19 (torchvision layout, timm hub files load too; 3x224x224, min 32x32)",
        reference: (3, 1000),
        build: |k, c, vb| vgg(vgg::VggConfig::vgg19(), k, c, vb),
    },
    ModelEntry {
        name: "vgg19_bn",
        aliases: &[],
        family: "vgg",
        description: "VGG-19 with batch norm (torchvision layout, timm hub files load too; 3x224x224, min 32x32)",
        reference: (3, 1000),
        build: |k, c, vb| vgg(vgg::VggConfig::vgg19_bn(), k, c, vb),
    },
    ModelEntry {
        name: "googlenet",
        aliases: &["inception_v1"],
        family: "inception",
        description: "GoogLeNet / Inception v1 as torchvision (3x3 branch3; 13,004,888 params with aux heads, 6,624,904 without; 3x224x224)",
        reference: (3, 1000),
        build: |k, c, vb| googlenet_v1(googlenet::GoogLeNetConfig::googlenet(), k, c, vb),
    },
    ModelEntry {
        name: "googlenet_paper",
        aliases: &[],
        family: "inception",
        description: "GoogLeNet with the paper's 5x5 branch3 (13,385,816 params with aux heads)",
        reference: (3, 1000),
        build: |k, c, vb| googlenet_v1(googlenet::GoogLeNetConfig::googlenet_paper(), k, c, vb),
    },
    ModelEntry {
        name: "inception_v3",
        aliases: &["inception3"],
        family: "inception",
        description: "Inception-v3 (27,161,264 params with aux head; 3x299x299; the aux head trains at >= 299x299)",
        reference: (3, 1000),
        build: |k, c, vb| inception_v3(k, c, vb),
    },
    ModelEntry {
        name: "resnet18",
        aliases: &[],
        family: "resnet",
        description: "ResNet-18 (11,689,512 params, 1.81 GMACs at 224x224)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnet18(), k, c, vb),
    },
    ModelEntry {
        name: "resnet34",
        aliases: &[],
        family: "resnet",
        description: "ResNet-34 (21,797,672 params, 3.66 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnet34(), k, c, vb),
    },
    ModelEntry {
        name: "resnet50",
        aliases: &[],
        family: "resnet",
        description: "ResNet-50 (25,557,032 params, 4.09 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnet50(), k, c, vb),
    },
    ModelEntry {
        name: "resnet101",
        aliases: &[],
        family: "resnet",
        description: "ResNet-101 (44,549,160 params, 7.80 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnet101(), k, c, vb),
    },
    ModelEntry {
        name: "resnet152",
        aliases: &[],
        family: "resnet",
        description: "ResNet-152 (60,192,808 params, 11.51 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnet152(), k, c, vb),
    },
    ModelEntry {
        name: "resnext50_32x4d",
        aliases: &["resnext50"],
        family: "resnet",
        description: "ResNeXt-50 32x4d (25,028,904 params, 4.23 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnext50_32x4d(), k, c, vb),
    },
    ModelEntry {
        name: "resnext101_32x8d",
        aliases: &[],
        family: "resnet",
        description: "ResNeXt-101 32x8d (88,791,336 params, 16.41 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnext101_32x8d(), k, c, vb),
    },
    ModelEntry {
        name: "resnext101_64x4d",
        aliases: &[],
        family: "resnet",
        description: "ResNeXt-101 64x4d (83,455,272 params, 15.46 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnext101_64x4d(), k, c, vb),
    },
    ModelEntry {
        name: "wide_resnet50_2",
        aliases: &["wrn50_2"],
        family: "resnet",
        description: "Wide ResNet-50-2 (68,883,240 params, 11.40 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::wide_resnet50_2(), k, c, vb),
    },
    ModelEntry {
        name: "wide_resnet101_2",
        aliases: &["wrn101_2"],
        family: "resnet",
        description: "Wide ResNet-101-2 (126,886,696 params, 22.75 GMACs)",
        reference: (3, 1000),
        build: |k, c, vb| resnet(resnet::ResNetConfig::wide_resnet101_2(), k, c, vb),
    },
    ModelEntry {
        name: "resnet18_cifar",
        aliases: &[],
        family: "resnet",
        description: "ResNet-18 with the CIFAR stem (3x3 conv, no max pool) for 32x32 inputs",
        reference: (3, 10),
        build: |k, c, vb| resnet(resnet::ResNetConfig::resnet18().with_cifar_stem(true), k, c, vb),
    },
    ModelEntry {
        name: "densenet121",
        aliases: &[],
        family: "densenet",
        description: "DenseNet-121 (7,978,856 params, 2.83 GMACs; 3x224x224, min 29x29)",
        reference: (3, 1000),
        build: |k, c, vb| densenet(densenet::DenseNetConfig::densenet121(), k, c, vb),
    },
    ModelEntry {
        name: "densenet161",
        aliases: &[],
        family: "densenet",
        description: "DenseNet-161 (28,681,000 params, 7.73 GMACs; 3x224x224, min 29x29)",
        reference: (3, 1000),
        build: |k, c, vb| densenet(densenet::DenseNetConfig::densenet161(), k, c, vb),
    },
    ModelEntry {
        name: "densenet169",
        aliases: &[],
        family: "densenet",
        description: "DenseNet-169 (14,149,480 params, 3.36 GMACs; 3x224x224, min 29x29)",
        reference: (3, 1000),
        build: |k, c, vb| densenet(densenet::DenseNetConfig::densenet169(), k, c, vb),
    },
    ModelEntry {
        name: "densenet201",
        aliases: &[],
        family: "densenet",
        description: "DenseNet-201 (20,013,928 params, 4.29 GMACs; 3x224x224, min 29x29)",
        reference: (3, 1000),
        build: |k, c, vb| densenet(densenet::DenseNetConfig::densenet201(), k, c, vb),
    },
    ModelEntry {
        name: "efficientnet_b0",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B0 (5,288,548 params, 0.39 GMACs; timm and torchvision weights load)",
        reference: (3, 1000),
        build: |k, c, vb| efficientnet(efficientnet::EfficientNetConfig::b0(), k, c, vb),
    },
    ModelEntry {
        name: "efficientnet_b1",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B1 (7,794,184 params; timm and torchvision weights load)",
        reference: (3, 1000),
        build: |k, c, vb| efficientnet(efficientnet::EfficientNetConfig::b1(), k, c, vb),
    },
    ModelEntry {
        name: "efficientnet_b2",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B2 (9,109,994 params; timm and torchvision weights load)",
        reference: (3, 1000),
        build: |k, c, vb| efficientnet(efficientnet::EfficientNetConfig::b2(), k, c, vb),
    },
    ModelEntry {
        name: "efficientnet_b3",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B3 (12,233,232 params; timm and torchvision weights load)",
        reference: (3, 1000),
        build: |k, c, vb| efficientnet(efficientnet::EfficientNetConfig::b3(), k, c, vb),
    },
    ModelEntry {
        name: "efficientnet_b4",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B4 (19,341,616 params; timm and torchvision weights load)",
        reference: (3, 1000),
        build: |k, c, vb| efficientnet(efficientnet::EfficientNetConfig::b4(), k, c, vb),
    },
    ModelEntry {
        name: "efficientnet_b5",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B5 (30,389,784 params; timm and torchvision weights load)",
        reference: (3, 1000),
        build: |k, c, vb| efficientnet(efficientnet::EfficientNetConfig::b5(), k, c, vb),
    },
    ModelEntry {
        name: "efficientnet_b6",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B6 (43,040,704 params; timm and torchvision weights load)",
        reference: (3, 1000),
        build: |k, c, vb| efficientnet(efficientnet::EfficientNetConfig::b6(), k, c, vb),
    },
    ModelEntry {
        name: "efficientnet_b7",
        aliases: &[],
        family: "efficientnet",
        description: "EfficientNet-B7 (66,347,960 params; timm and torchvision weights load)",
        reference: (3, 1000),
        build: |k, c, vb| efficientnet(efficientnet::EfficientNetConfig::b7(), k, c, vb),
    },
];

/// The entry for `name` (or an alias); an unknown name lists the valid ones.
pub fn find(name: &str) -> Result<&'static ModelEntry> {
    let wanted = name.to_ascii_lowercase().replace('-', "_");
    let matches = |n: &str| n.to_ascii_lowercase().replace('-', "_") == wanted;
    match MODELS
        .iter()
        .find(|m| matches(m.name) || m.aliases.iter().any(|a| matches(a)))
    {
        Some(entry) => Ok(entry),
        None => bail!(
            "unknown model `{name}`; valid names (families: {}):\n{}",
            families().join(", "),
            list()
        ),
    }
}

/// The variants named by `names`: each a variant, a family (`resnet`) or `all`; an unknown
/// name lists the valid ones.
pub fn select(names: &[String]) -> Result<Vec<&'static ModelEntry>> {
    let mut out: Vec<&'static ModelEntry> = Vec::new();
    for name in names {
        let wanted = name.to_ascii_lowercase();
        let group: Vec<&'static ModelEntry> = if wanted == "all" {
            MODELS.iter().collect()
        } else {
            let family: Vec<_> = MODELS.iter().filter(|m| m.family == wanted).collect();
            if family.is_empty() {
                vec![find(name)?]
            } else {
                family
            }
        };
        for entry in group {
            if !out.iter().any(|e| e.name == entry.name) {
                out.push(entry);
            }
        }
    }
    Ok(out)
}

/// The family names, in registry order.
pub fn families() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for m in MODELS {
        if !out.contains(&m.family) {
            out.push(m.family);
        }
    }
    out
}

/// One line per variant: name, aliases, description.
pub fn list() -> String {
    MODELS
        .iter()
        .map(|m| {
            let aliases = if m.aliases.is_empty() {
                String::new()
            } else {
                format!(" (also {})", m.aliases.join(", "))
            };
            format!("  {:<17} {}{}", m.name, m.description, aliases)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
