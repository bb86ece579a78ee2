//! # backbone
//!
//! The contract every architecture of this workspace implements ([`Backbone`]: features, then a
//! classifier head), the layers they are built from ([`layers`], each with a train/eval flag),
//! pooling and normalisation ops with correct gradients ([`ops`]), seeded initialisation
//! ([`init`]), inference mode ([`inference_mode`]), weights loading with clear errors
//! ([`weights`]), model introspection ([`summary`]) and the record of what the custom ops mean
//! that exporters read ([`trace`]).
//!
//! Architecture crates (`lenet`, `alexnet`, `vgg`, ...) depend only on this crate and candle.

pub mod blocked;
pub mod catalogue;
pub mod error;
pub mod geometry;
pub mod guided;
pub mod inference;
pub mod init;
pub mod io;
pub mod layers;
pub mod model;
pub mod ops;
pub mod plain;
pub mod summary;
pub mod trace;
pub mod weights;

pub use error::{Error, Result};
pub use guided::{guided_relu, is_guided_relu};
pub use inference::{inference_mode, is_frozen, is_inference_mode, prepared_model, with_frozen_weights};
pub use model::{
    check_input, Backbone, FeatureInfo, FeaturesOnly, InputSpec, InputType, ModelOutput, Reconstructor,
};
pub use plain::{PlainNet, PlainParts};
pub use summary::{summarize, Summary};

/// What a program using one architecture crate needs (with `candle-core` for tensors): the
/// model contract, the catalogue types, a fresh seeded variable map, the weights loader, the
/// var builder and the error type. Every architecture crate re-exports it as its own
/// `prelude` (`use resnet::prelude::*;`).
pub mod prelude {
    pub use crate::catalogue::{LoadReport, ModelOptions, Preprocessing, Pretrained, Variant, WeightsInfo};
    pub use crate::init::SeededVarMap;
    pub use crate::weights::Weights;
    pub use crate::{Backbone, Error, ModelOutput, Result};
    pub use candle_nn::VarBuilder;
}

/// Whether candle-core's autograd stores a node's first gradient as it is (the workspace's
/// patched candle-core, `third_party/candle-core/PATCH.md`, proposed upstream as
/// huggingface/candle#3822 and #3578) rather than adding it to a zero-filled tensor (the
/// published 0.11: one allocation and one pass more per node; ResNet-50 training 10.0-10.4 ->
/// 8.3-8.7 images/s, VGG-11's peak 2.9 -> 4.1 GB). Found by behaviour, once: with the patch a
/// first gradient of `-0.0` keeps its sign (`0.0 + -0.0` is `+0.0`).
pub fn patched_autograd() -> bool {
    static PATCHED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PATCHED.get_or_init(|| {
        let probe = || -> candle_core::Result<bool> {
            let device = candle_core::Device::Cpu;
            let x = candle_core::Var::new(&[1f32], &device)?;
            let zero = candle_core::Tensor::new(&[-0f32], &device)?;
            let grads = x.as_tensor().mul(&zero)?.sum_all()?.backward()?;
            let grad = grads.get(x.as_tensor()).map(|g| g.to_vec1::<f32>()).transpose()?;
            Ok(grad.is_some_and(|g| g.first().is_some_and(|v| v.is_sign_negative())))
        };
        probe().unwrap_or(false)
    })
}
