//! # trainer
//!
//! Datasets ([`data`]: MNIST IDX files and the bundled sample, a seeded batcher), optimizers
//! ([`optim`]: Adam, AdamW with PyTorch's update rules), losses ([`loss`]), atomic
//! safetensors checkpoints ([`checkpoint`]) and the fit loop ([`fit`]) for any
//! [`backbone::Backbone`].

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod finetune;
pub mod fit;
mod fused;
mod fused_adam;
mod fused_sgd;
pub mod imagenet;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod pretrained;
pub mod run;
pub mod schedule;
pub mod sgd;

pub use error::{Error, Result};
/// Weights references, the Hugging Face cache and timm's `config.json` (the `hub` crate).
pub use hub;
