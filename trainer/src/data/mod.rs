//! Datasets and their one data pipeline: decoded images and the [`Dataset`] trait ([`image`]),
//! MNIST's IDX files as a dataset ([`mnist`], [`GrayImages`]) with its preprocessing
//! ([`preprocess`]), image folders ([`folder`]), CIFAR-10 ([`cifar`]), torchvision-like
//! transforms ([`transforms`]) with the recipe tools (AutoAugment / RandAugment / TrivialAugment
//! policies [`policy`] of the byte operations [`ops`], random erasing and colour jitter
//! [`erasing`], batch-level [`mixup`] / CutMix) and the multi-threaded, seeded [`DataLoader`] ([`loader`]) that
//! turns any of them into batches of tensors on any device.

pub mod augment;
pub mod cifar;
pub mod erasing;
pub mod folder;
pub mod image;
pub mod loader;
pub mod mixup;
pub mod mnist;
pub mod ops;
pub mod policy;
pub mod preprocess;
pub mod transforms;

pub use augment::{AffineParams, RandomAffine};
pub use cifar::{parse_cifar10_batch, Cifar10, CifarDataset, CIFAR10_CLASSES};
pub use erasing::{ColorJitter, EraseMode, RandomErasing};
pub use folder::{ImageFolder, IMAGE_EXTENSIONS};
pub use image::{split_indices, Dataset, GrayImages, Image, Sample, Subset};
pub use loader::{batch_rng, Batch, DataLoader, Epoch, LoaderConfig, OnCorrupt};
pub use mixup::{Mixup, MixupDraws, MixupMode, RngDraws};
pub use mnist::{
    parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels, IdxImages, ImageDataset, Mnist,
};
pub use ops::{Bytes, Op};
pub use policy::{AaOp, AutoAugment, Policy, RandAugment};
pub use preprocess::Preprocess;
pub use transforms::{
    Interpolation, Pipeline, ResizeTo, Transform, CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD,
};

/// Batches in an epoch of `len` samples: `ceil(len / batch_size)`, or `floor` with
/// `drop_last` (the last, partial batch left out).
pub(crate) fn num_batches(len: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        len / batch_size
    } else {
        len.div_ceil(batch_size)
    }
}

/// What a training loop does with the last batch of an epoch when the data does not fill it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LastBatch {
    /// Keep it, unless it would hold a single sample (batch norm cannot train on one: timm
    /// drops training batches' remainders for the same reason).
    #[default]
    Auto,
    /// Always keep it.
    Keep,
    /// Always drop it.
    Drop,
}

impl LastBatch {
    /// Whether an epoch of `len` samples in batches of `batch_size` drops its last batch.
    pub fn drop_last(self, len: usize, batch_size: usize) -> bool {
        match self {
            LastBatch::Auto => batch_size > 1 && len > 1 && len % batch_size == 1,
            LastBatch::Keep => false,
            LastBatch::Drop => true,
        }
    }
}
