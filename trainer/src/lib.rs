//! # trainer
//!
//! Datasets ([`data`]: MNIST IDX files and the bundled sample, a seeded batcher), optimizers
//! ([`optim`]: Adam, AdamW with PyTorch's update rules), losses ([`loss`]), atomic
//! safetensors checkpoints ([`checkpoint`]) and the fit loop ([`fit`]) for any
//! [`backbone::Backbone`].

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod fit;
mod fused_adam;
pub mod loss;
pub mod optim;

pub use error::{Error, Result};
