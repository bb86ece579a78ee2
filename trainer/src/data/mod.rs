//! Datasets and their batching: the MNIST IDX reader ([`mnist`]) and a seeded, device-aware
//! [`Batcher`] that turns an [`ImageDataset`] into normalised image and label tensors.

pub mod augment;
pub mod batcher;
pub mod mnist;

pub use augment::RandomAffine;
pub use batcher::{Batcher, BatcherConfig, Batches, Preprocess};
pub use mnist::{
    parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels, IdxImages, ImageDataset, Mnist,
};
