//! # trainer
//!
//! Datasets and the data loader ([`data`]: MNIST IDX files and the bundled sample, image
//! folders, CIFAR-10, transforms), optimizers ([`optim`]: SGD, Adam, AdamW with PyTorch's
//! update rules), losses ([`loss`]), schedules ([`schedule`]), atomic safetensors checkpoints
//! ([`checkpoint`]), run folders ([`run`]), pretrained weights ([`pretrained`]), metrics and
//! plots, the reconstruction phase of auxiliary learners ([`reconstruct`]), the weights'
//! moving average ([`ema`]), mixed precision ([`amp`]), and the one training loop ([`train`],
//! with gradient accumulation) for any [`backbone::Backbone`], from scratch or fine-tuning,
//! on one process or data-parallel over several ([`distributed`]: MPI, NCCL).

pub mod amp;
pub mod checkpoint;
pub mod data;
pub mod distributed;
pub mod ema;
pub mod error;
pub mod imagenet;
pub mod loss;
pub mod metrics;
pub mod optim;
#[cfg(feature = "plot")]
pub mod plot;
pub mod pretrained;
pub mod reconstruct;
pub mod run;
pub mod schedule;
pub mod train;

pub use error::{Error, Result};
/// Weights references, the Hugging Face cache and timm's `config.json` (the `hub` crate).
pub use hub;
