//! # backbone
//!
//! The contract every architecture of this workspace implements ([`Backbone`]: features, then a
//! classifier head), the layers they are built from ([`layers`], each with a train/eval flag),
//! pooling and normalisation ops with correct gradients ([`ops`]), seeded initialisation
//! ([`init`]), inference mode ([`inference_mode`]), weights loading with clear errors
//! ([`weights`]) and model introspection ([`summary`]).
//!
//! Architecture crates (`lenet`, `alexnet`, `vgg`, ...) depend only on this crate and candle.

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
pub mod summary;
pub mod weights;

pub use error::{Error, Result};
pub use guided::{guided_relu, is_guided_relu};
pub use inference::{inference_mode, is_inference_mode};
pub use model::{
    check_input, Backbone, FeatureInfo, FeaturesOnly, InputSpec, InputType, ModelOutput, Reconstructor,
};
pub use summary::{summarize, Summary};
