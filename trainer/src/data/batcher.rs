//! Seeded mini-batches of an [`ImageDataset`] as tensors: `[B, 1, H + 2p, W + 2p]` f32 images,
//! padded and normalised, and `[B]` u32 labels, on any candle [`Device`].
//!
//! The order of epoch `e` depends only on `(seed, e)`: the shuffle uses a ChaCha8 generator
//! seeded with `seed` on stream `e`, and its own Fisher-Yates with unbiased bounded sampling
//! (Lemire's method on `next_u64`), so an order never changes with the version of `rand`.

use candle_core::{Device, Tensor};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::augment::RandomAffine;
use crate::data::mnist::ImageDataset;
use crate::error::{Error, Result};

/// How raw 8-bit pixels become model inputs: pad each image with `pad` zero pixels on every side,
/// map each pixel `x` to `(x / 255 - mean) / std`, then (optionally) resize to the model's input
/// size with bilinear interpolation (PyTorch's `interpolate(..., mode="bilinear",
/// align_corners=False)`).
///
/// The padding is applied to the raw image, so padded pixels get the normalised value of a 0
/// pixel (`-mean / std`), as torchvision's `transforms.Pad(p)` before `transforms.Normalize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Zero pixels added on each side (2 turns MNIST's 28x28 into LeNet-5's 32x32).
    pub pad: usize,
    /// Mean subtracted after scaling to `[0, 1]`.
    pub mean: f32,
    /// Standard deviation divided by after subtracting the mean; must be positive.
    pub std: f32,
    /// Final (height, width) after padding, when the model wants another size (AlexNet's
    /// 63x63 minimum, say); `None` keeps the padded size.
    pub resize: Option<(usize, usize)>,
}

impl Preprocess {
    /// Mean of the MNIST training pixels, scaled to `[0, 1]`.
    pub const MNIST_MEAN: f32 = 0.1307;
    /// Standard deviation of the MNIST training pixels, scaled to `[0, 1]`.
    pub const MNIST_STD: f32 = 0.3081;

    /// The MNIST preprocessing of LeNet-5: pad 2 (28x28 to 32x32), mean 0.1307, std 0.3081.
    pub fn mnist() -> Self {
        Preprocess {
            pad: 2,
            mean: Self::MNIST_MEAN,
            std: Self::MNIST_STD,
            resize: None,
        }
    }

    /// No padding, pixels scaled to `[0, 1]` only (mean 0, std 1).
    pub fn unit_scale() -> Self {
        Preprocess {
            pad: 0,
            mean: 0.0,
            std: 1.0,
            resize: None,
        }
    }

    /// The model input value of a raw pixel: `(pixel / 255 - mean) / std`.
    pub fn normalize(&self, pixel: u8) -> f32 {
        (f32::from(pixel) / 255.0 - self.mean) / self.std
    }

    /// The value of padded pixels: the normalised value of a 0 pixel.
    pub fn pad_value(&self) -> f32 {
        self.normalize(0)
    }

    fn validate(&self) -> Result<()> {
        if !(self.std.is_finite() && self.std > 0.0 && self.mean.is_finite()) {
            return Err(Error::config(format!(
                "preprocess: mean must be finite and std finite and positive, got mean {} and std {}",
                self.mean, self.std
            )));
        }
        if let Some((h, w)) = self.resize {
            if h == 0 || w == 0 {
                return Err(Error::config(format!("preprocess: cannot resize to {h}x{w}")));
            }
        }
        Ok(())
    }
}

impl Default for Preprocess {
    /// [`Preprocess::mnist`].
    fn default() -> Self {
        Self::mnist()
    }
}

/// How a [`Batcher`] cuts and orders a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct BatcherConfig {
    /// Images per batch (the last batch may be smaller unless `drop_last`); must be positive.
    pub batch_size: usize,
    /// Whether each epoch visits the images in a seeded random order (else in dataset order).
    pub shuffle: bool,
    /// Seed of the shuffle: epoch `e` of seed `s` always gives the same order.
    pub seed: u64,
    /// Whether to drop the last batch when it has fewer than `batch_size` images.
    pub drop_last: bool,
    /// Padding and normalisation of the pixels.
    pub preprocess: Preprocess,
    /// Random augmentation of each image of [`Batcher::epoch`]'s batches (never of
    /// [`Batcher::batch`]), seeded by `(seed, epoch, image index)`.
    pub augment: Option<RandomAffine>,
}

impl BatcherConfig {
    /// Batches of `batch_size`, shuffled with seed 0, last partial batch kept, MNIST preprocessing.
    pub fn new(batch_size: usize) -> Self {
        BatcherConfig {
            batch_size,
            shuffle: true,
            seed: 0,
            drop_last: false,
            preprocess: Preprocess::default(),
            augment: None,
        }
    }

    /// The same configuration with `shuffle`.
    pub fn with_shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// The same configuration with `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same configuration with `drop_last`.
    pub fn with_drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The same configuration with `augment`.
    pub fn with_augment(mut self, augment: Option<RandomAffine>) -> Self {
        self.augment = augment;
        self
    }

    /// The same configuration with `preprocess`.
    pub fn with_preprocess(mut self, preprocess: Preprocess) -> Self {
        self.preprocess = preprocess;
        self
    }
}

impl Default for BatcherConfig {
    /// [`BatcherConfig::new`] with batch size 64.
    fn default() -> Self {
        Self::new(64)
    }
}

/// Cuts an [`ImageDataset`] into mini-batches of tensors, epoch after epoch.
///
/// ```no_run
/// # fn main() -> trainer::Result<()> {
/// use trainer::data::{Batcher, BatcherConfig, Mnist};
/// let mnist = Mnist::bundled()?;
/// let device = candle_core::Device::Cpu;
/// let batcher = Batcher::new(&mnist.train, BatcherConfig::new(64).with_seed(42), &device)?;
/// for epoch in 0..2 {
///     for batch in batcher.epoch(epoch) {
///         let (images, labels) = batch?; // [B, 1, 32, 32] f32, [B] u32
///         # let _ = (images, labels);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Batcher<'a> {
    dataset: &'a ImageDataset,
    config: BatcherConfig,
    device: Device,
    /// The normalised value of each of the 256 pixel values.
    lut: [f32; 256],
}

impl<'a> Batcher<'a> {
    /// A batcher over `dataset` producing tensors on `device`. Fails when the batch size is 0,
    /// the preprocessing is invalid (std not positive, ...) or the dataset breaks its invariants
    /// (see [`ImageDataset::validate`]).
    pub fn new(dataset: &'a ImageDataset, config: BatcherConfig, device: &Device) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::config("batcher: the batch size must be positive, got 0"));
        }
        config.preprocess.validate()?;
        if let Some(augment) = &config.augment {
            augment.validate()?;
        }
        dataset.validate()?;
        let mut lut = [0f32; 256];
        for (pixel, value) in (0..=u8::MAX).zip(lut.iter_mut()) {
            *value = config.preprocess.normalize(pixel);
        }
        Ok(Batcher {
            dataset,
            config,
            device: device.clone(),
            lut,
        })
    }

    /// The dataset being batched.
    pub fn dataset(&self) -> &'a ImageDataset {
        self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &BatcherConfig {
        &self.config
    }

    /// The device the tensors are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of batches of each epoch: `ceil(len / batch_size)`, or `floor` with `drop_last`.
    pub fn num_batches(&self) -> usize {
        super::num_batches(self.dataset.len(), self.config.batch_size, self.config.drop_last)
    }

    /// Number of images each epoch yields (all of them unless `drop_last` drops a partial batch).
    pub fn num_examples(&self) -> usize {
        if self.config.drop_last {
            self.num_batches() * self.config.batch_size
        } else {
            self.dataset.len()
        }
    }

    /// Height and width of the produced images (`rows + 2 * pad`, `cols + 2 * pad`).
    pub fn image_dims(&self) -> (usize, usize) {
        self.config
            .preprocess
            .resize
            .unwrap_or_else(|| self.padded_dims())
    }

    /// Height and width after padding, before any resize.
    fn padded_dims(&self) -> (usize, usize) {
        let pad = self.config.preprocess.pad;
        (self.dataset.rows + 2 * pad, self.dataset.cols + 2 * pad)
    }

    /// The order in which epoch `epoch` visits the dataset (all indices, including those of a
    /// dropped last batch): a seeded permutation of `0..len` when shuffling, else `0..len`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
            rng.set_stream(epoch as u64);
            for i in (1..order.len()).rev() {
                let j = uniform_below(&mut rng, i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// The batches of epoch `epoch`, each `Ok((images, labels))` with images `[B, 1, H, W]` f32
    /// (see [`Batcher::image_dims`]) and labels `[B]` u32.
    pub fn epoch(&self, epoch: usize) -> Batches<'_> {
        Batches {
            batcher: self,
            epoch,
            order: self.order(epoch),
            next: 0,
            end: self.num_batches(),
        }
    }

    /// Builds the batch of the given dataset indices (all `< len`, checked), without
    /// augmentation.
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        self.make_batch(indices, None)
    }

    /// Builds a batch; with `Some(epoch)`, applies the configured augmentation.
    fn make_batch(&self, indices: &[usize], epoch: Option<usize>) -> Result<(Tensor, Tensor)> {
        let n = self.dataset.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::config(format!(
                "batch: index {bad} is out of range for a dataset of {n} images"
            )));
        }
        let (rows, cols) = (self.dataset.rows, self.dataset.cols);
        let pad = self.config.preprocess.pad;
        let (height, width) = self.padded_dims();
        let plane = height * width;
        let image_size = rows * cols;
        let mut pixels = vec![self.lut[0]; indices.len() * plane];
        for (out, &index) in pixels.chunks_exact_mut(plane).zip(indices) {
            let image = &self.dataset.images[index * image_size..(index + 1) * image_size];
            for (r, src) in image.chunks_exact(cols).enumerate() {
                let start = (r + pad) * width + pad;
                for (dst, &p) in out[start..start + cols].iter_mut().zip(src) {
                    *dst = self.lut[usize::from(p)];
                }
            }
            if let (Some(augment), Some(epoch)) = (&self.config.augment, epoch) {
                let mut rng = augment_rng(self.config.seed, epoch, index);
                let source = out.to_vec();
                augment.apply(&source, out, (height, width), self.lut[0], &mut rng);
            }
        }
        let (height, width, pixels) = match self.config.preprocess.resize {
            Some(size) if size != (height, width) => {
                let resized: Vec<f32> = pixels
                    .chunks_exact(plane)
                    .flat_map(|p| resize_bilinear(p, (height, width), size))
                    .collect();
                (size.0, size.1, resized)
            }
            _ => (height, width, pixels),
        };
        let labels: Vec<u32> = indices
            .iter()
            .map(|&i| u32::from(self.dataset.labels[i]))
            .collect();
        let b = indices.len();
        let images = Tensor::from_vec(pixels, (b, 1, height, width), &self.device)?;
        let labels = Tensor::from_vec(labels, b, &self.device)?;
        Ok((images, labels))
    }
}

/// Bilinear resize of one plane, PyTorch's `align_corners=False` rule (no antialiasing).
fn resize_bilinear(src: &[f32], (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
    let source = |o: usize, n_out: usize, n_in: usize| -> (usize, usize, f32) {
        let x = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
        let i0 = (x.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, x - i0 as f32)
    };
    let cols: Vec<(usize, usize, f32)> = (0..ow).map(|x| source(x, ow, w)).collect();
    let mut out = Vec::with_capacity(oh * ow);
    for y in 0..oh {
        let (y0, y1, fy) = source(y, oh, h);
        for &(x0, x1, fx) in &cols {
            let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
            let bottom = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// The generator of image `index`'s augmentation in `epoch`: a ChaCha key made of the seed,
/// the epoch and a constant that keeps it apart from the shuffling generator, one stream per
/// image, so the result does not depend on how images are grouped into batches.
fn augment_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..24].copy_from_slice(b"augment!");
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index as u64);
    rng
}

/// A uniform integer in `0..n` (`n > 0`), unbiased (Lemire's multiply-and-reject).
fn uniform_below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// The batches of one epoch of a [`Batcher`] (see [`Batcher::epoch`]).
#[derive(Debug)]
pub struct Batches<'b> {
    batcher: &'b Batcher<'b>,
    epoch: usize,
    order: Vec<usize>,
    next: usize,
    end: usize,
}

impl Iterator for Batches<'_> {
    type Item = Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let b = self.batcher.config.batch_size;
        let start = self.next * b;
        let stop = (start + b).min(self.order.len());
        self.next += 1;
        Some(
            self.batcher
                .make_batch(&self.order[start..stop], Some(self.epoch)),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}
