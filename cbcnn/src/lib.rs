//! # Channel-boosted CNN
//!
//! A. Khan, A. Sohail, A. Ali, *A New Channel Boosted Convolutional Neural Network using
//! Transfer Learning*, arXiv:1804.08528, 2018 (Expert Systems with Applications, 2020).
//!
//! Auxiliary learners generate extra feature channels from the input; these "boosted"
//! channels are concatenated with the input's own channels and fed to a deep CNN whose first
//! layers come from a pretrained network (the transfer-learning step). Here:
//!
//! - the auxiliary learners are (a) a small convolutional autoencoder ([`ConvAutoencoder`],
//!   variables `booster.ae.*`) trained alone on reconstructing the images first, whose code is
//!   upsampled back to the input size, and (b) any model of the catalogue used as a frozen
//!   feature extractor at a chosen stage of its [`Backbone::feature_info`] (variables
//!   `booster.extractor.*` in its own state-dict names), its map resized bilinearly to the
//!   input size. Both run in eval mode and detached: no gradient reaches them, batch-norm
//!   statistics stay as they are, and [`Backbone::frozen_prefixes`] keeps them from the
//!   optimizer; [`Backbone::reconstructors`] hands the autoencoder to the trainer's
//!   reconstruction phase (`trainer::reconstruct`);
//! - the main network is any model of the catalogue, built with the boosted channel count
//!   (variables `main.*` in its own state-dict names); [`transfer_main_weights`] loads its
//!   pretrained weights with the input convolution widened: the pretrained filters kept for
//!   the original channels, the boosted channels' filters freshly initialised.
//!
//! This crate depends only on `backbone` and candle: the main network and the extractor are
//! built by functions the caller passes to [`ChannelBoosted::new`]. The catalogue variants
//! that compose other crates' models live in the `convnets` facade:
//!
//! | variant          | autoencoder code | extractor (stage)        | main network           | parameters (1 ch, 10 classes) | (3 ch, 1000 classes) |
//! |------------------|-----------------:|--------------------------|------------------------|------------------:|-------------------:|
//! | `cbcnn_lenet`    | 4                | LeNet-5 `pool1`, 6 ch     | LeNet-5, 1 + 4 + 6 = 11 ch |       126,389 |                  - |
//! | `cbcnn_resnet18` | 4                | ResNet-18 `layer1`, 64 ch | ResNet-18, 3 + 4 + 64 = 71 ch |            - |         23,594,327 |
//!
//! The parameters count every part (autoencoder 1,477 with one input channel and 2,055 with
//! three; the frozen extractor whole, head included, so its pretrained weights load as they
//! are); of them only the main network's train in the classification phase.
//!
//! ```
//! use backbone::init::SeededVarMap;
//! use backbone::Backbone;
//! use cbcnn::{AutoencoderConfig, ChannelBoosted, ChannelBoostedConfig};
//! use candle_core::{DType, Device, Tensor};
//! use lenet::{LeNet, LeNetConfig};
//!
//! let vars = SeededVarMap::new(0);
//! let config = ChannelBoostedConfig {
//!     name: "cbcnn_lenet".into(),
//!     in_channels: 1,
//!     autoencoder: Some(AutoencoderConfig::small(1)),
//!     extractor_stage: Some(0),
//! };
//! let lenet = |c: usize, vb: candle_nn::VarBuilder| -> backbone::Result<Box<dyn Backbone>> {
//!     Ok(Box::new(LeNet::new(&LeNetConfig::lenet5().with_in_channels(c), vb)?))
//! };
//! let model = ChannelBoosted::new(&config, vars.var_builder(DType::F32, &Device::Cpu), &lenet, Some(&lenet))?;
//! assert_eq!(model.channels().total(), 11);
//! let logits = model.forward_t(&Tensor::zeros((2, 1, 32, 32), DType::F32, &Device::Cpu)?, false)?;
//! assert_eq!(logits.dims(), [2, 10]);
//! # Ok::<(), backbone::Error>(())
//! ```

pub mod autoencoder;
pub mod boosted;
pub mod transfer;

pub use autoencoder::{AutoencoderConfig, ConvAutoencoder};
pub use boosted::{
    BoostedChannels, ChannelBoosted, ChannelBoostedConfig, PartBuilder, AE_PREFIX, EXTRACTOR_PREFIX,
    MAIN_PREFIX,
};
pub use transfer::{transfer_extractor_weights, transfer_main_weights, widen_input_conv, TransferReport};

/// What a program using this crate alone needs (with `candle-core` for tensors, and the crates
/// of the networks it composes): `backbone::prelude` (the one prelude of every architecture
/// crate), the composite and the `Reconstructor` contract. `use cbcnn::prelude::*;`
pub mod prelude {
    pub use crate::{AutoencoderConfig, ChannelBoosted, ChannelBoostedConfig};
    pub use backbone::prelude::*;
    pub use backbone::Reconstructor;
}

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;
#[doc(no_inline)]
pub use backbone::Backbone;
