//! The channel-boosted variants (the `cbcnn` crate's composite over other families' models):
//! their catalogue entries, as data, and the glue that builds their parts by name from this
//! catalogue. They live here, where every architecture crate is visible, so that `cbcnn`
//! itself depends only on `backbone`.

use backbone::catalogue::{self, ModelOptions, Preprocessing, Variant};
use backbone::{Backbone, Result};
use candle_nn::VarBuilder;
pub use cbcnn::{transfer_extractor_weights, transfer_main_weights, TransferReport};
use cbcnn::{AutoencoderConfig, ChannelBoosted, ChannelBoostedConfig};

/// What a channel-boosted variant is made of, by catalogue names.
struct Composition {
    name: &'static str,
    /// The autoencoder's code channels (16 hidden channels), if it has one.
    autoencoder_code: Option<usize>,
    /// The frozen extractor's variant (built with its reference class count, so its
    /// pretrained weights load as they are) and stage.
    extractor: Option<(&'static str, usize)>,
    /// The main network's variant.
    main: &'static str,
}

const LENET: Composition = Composition {
    name: "cbcnn_lenet",
    autoencoder_code: Some(4),
    extractor: Some(("lenet5", 0)),
    main: "lenet5",
};

const RESNET18: Composition = Composition {
    name: "cbcnn_resnet18",
    autoencoder_code: Some(4),
    extractor: Some(("resnet18", 1)),
    main: "resnet18",
};

/// The parts of a channel-boosted variant: the catalogue entries of its main network and of
/// its frozen extractor, to load pretrained weights into them
/// ([`cbcnn::transfer_main_weights`], [`cbcnn::transfer_extractor_weights`]).
#[derive(Debug, Clone, Copy)]
pub struct BoostedParts {
    /// The main network's variant.
    pub main: &'static Variant,
    /// The frozen extractor's variant, if the variant has one.
    pub extractor: Option<&'static Variant>,
}

/// The parts of the channel-boosted variant `name` (`None` for any other variant).
pub fn parts(name: &str) -> Result<Option<BoostedParts>> {
    let Some(c) = [&LENET, &RESNET18].into_iter().find(|c| c.name == name) else {
        return Ok(None);
    };
    Ok(Some(BoostedParts {
        main: crate::find_model(c.main)?,
        extractor: c.extractor.map(|(name, _)| crate::find_model(name)).transpose()?,
    }))
}

fn build(c: &Composition, o: &ModelOptions, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    let config = ChannelBoostedConfig {
        name: c.name.to_string(),
        in_channels: o.in_channels,
        autoencoder: c.autoencoder_code.map(|code| AutoencoderConfig {
            code,
            ..AutoencoderConfig::small(o.in_channels)
        }),
        extractor_stage: c.extractor.map(|(_, stage)| stage),
    };
    let main_variant = crate::find_model(c.main)?;
    let main =
        |in_channels: usize, vb: VarBuilder| main_variant.create(&ModelOptions { in_channels, ..*o }, vb);
    let extractor_variant = c.extractor.map(|(name, _)| crate::find_model(name)).transpose()?;
    let extractor = |in_channels: usize, vb: VarBuilder| match extractor_variant {
        Some(v) => v.create(
            &ModelOptions {
                in_channels,
                ..v.reference_options()
            },
            vb,
        ),
        None => Err(backbone::Error::config(format!("{}: no extractor", c.name))),
    };
    let extractor: Option<cbcnn::PartBuilder> = match extractor_variant {
        Some(_) => Some(&extractor),
        None => None,
    };
    Ok(Box::new(ChannelBoosted::new(&config, vb, &main, extractor)?))
}

const MNIST: Preprocessing = Preprocessing {
    input_size: (1, 32, 32),
    mean: &[0.1307],
    std: &[0.3081],
    crop_pct: 1.0,
    interpolation: "bilinear",
    test_input_size: None,
    test_crop_pct: None,
};

const PAPER: &str =
    "Khan, Sohail, Ali 2018, \"A New Channel Boosted Convolutional Neural Network using Transfer Learning\"";

/// The channel-boosted variants.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "cbcnn_lenet",
        aliases: &["cbcnn"],
        family: "cbcnn",
        description: "Channel-boosted LeNet-5: + autoencoder (4) + frozen LeNet-5 pool1 (6) channels",
        paper: PAPER,
        reference: (1, 10),
        params: 126_389,
        macs: 2_245_032,
        preprocessing: MNIST,
        pretrained: &[],
        layouts: &[catalogue::native("cbcnn")],
        aux_prefixes: &[],
        stem: "booster.ae.encoder.0.weight",
        build: |o, vb| build(&LENET, o, vb),
    },
    Variant {
        name: "cbcnn_resnet18",
        aliases: &[],
        family: "cbcnn",
        description: "Channel-boosted ResNet-18: + autoencoder (4) + frozen ResNet-18 layer1 (64) channels",
        paper: PAPER,
        reference: (3, 1000),
        params: 23_594_327,
        macs: 6_331_518_976,
        preprocessing: Preprocessing::IMAGENET,
        pretrained: &[],
        layouts: &[catalogue::native("cbcnn")],
        aux_prefixes: &[],
        stem: "booster.ae.encoder.0.weight",
        build: |o, vb| build(&RESNET18, o, vb),
    },
];
