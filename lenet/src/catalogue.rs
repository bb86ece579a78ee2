//! The variants of this crate, as data (names, paper, reference configuration, default
//! preprocessing, hub weights, accepted weights layouts): see [`backbone::catalogue`].

use crate::{LeNet, LeNetConfig};
use backbone::catalogue::{self, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;

/// The bundled MNIST digits, padded to 32x32: mean and standard deviation of MNIST.
const MNIST: Preprocessing = Preprocessing {
    input_size: (1, 32, 32),
    mean: &[0.1307],
    std: &[0.3081],
    crop_pct: 1.0,
    interpolation: "bilinear",
    test_input_size: None,
    test_crop_pct: None,
};

fn build(config: LeNetConfig, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = config.with_classes(o.num_classes).with_in_channels(o.in_channels);
    Ok(Box::new(LeNet::new(&config, vb)?))
}

/// Every variant of this crate.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "lenet5",
        aliases: &["lenet"],
        family: "lenet",
        description: "LeNet-5, ReLU + average pooling",
        paper:
            "LeCun, Bottou, Bengio, Haffner 1998, \"Gradient-Based Learning Applied to Document Recognition\"",
        reference: (1, 10),
        params: 61_706,
        macs: 416_520,
        preprocessing: MNIST,
        pretrained: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &[],
        stem: "conv1.weight",
        build: |o, vb| build(LeNetConfig::lenet5(), o, vb),
    },
    Variant {
        name: "lenet5_tanh",
        aliases: &["lenet-tanh"],
        family: "lenet",
        description: "LeNet-5 with the paper's tanh + average subsampling",
        paper:
            "LeCun, Bottou, Bengio, Haffner 1998, \"Gradient-Based Learning Applied to Document Recognition\"",
        reference: (1, 10),
        params: 61_706,
        macs: 416_520,
        preprocessing: MNIST,
        pretrained: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &[],
        stem: "conv1.weight",
        build: |o, vb| build(LeNetConfig::lenet5_tanh(), o, vb),
    },
    Variant {
        name: "lenet5_max",
        aliases: &["lenet-max"],
        family: "lenet",
        description: "LeNet-5 with ReLU + max pooling",
        paper:
            "LeCun, Bottou, Bengio, Haffner 1998, \"Gradient-Based Learning Applied to Document Recognition\"",
        reference: (1, 10),
        params: 61_706,
        macs: 416_520,
        preprocessing: MNIST,
        pretrained: &[],
        layouts: &[catalogue::native("torchvision")],
        aux_prefixes: &[],
        stem: "conv1.weight",
        build: |o, vb| build(LeNetConfig::lenet5_max(), o, vb),
    },
];
