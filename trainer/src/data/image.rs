//! Decoded images as `f32` channel planes ([`Image`]), the [`Dataset`] trait of labelled images
//! that the [`DataLoader`](crate::data::DataLoader) batches, and the generic datasets built on it:
//! [`Subset`] (with [`split_indices`] for a seeded validation split) and [`GrayImages`] (an
//! in-memory [`ImageDataset`] such as MNIST).

use std::fmt;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::mnist::ImageDataset;
use crate::error::{Error, Result};

/// An image as `channels` planes of `height` x `width` `f32` values, channel after channel, each
/// plane row-major (PyTorch's CHW layout). Decoded pixels are in `[0, 1]` (`byte / 255`, like
/// torchvision's `ToTensor`) until a [`Normalize`](crate::data::Transform::Normalize) step.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Number of channels (3 for RGB, 1 for grey).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels * height * width` values, CHW.
    pub data: Vec<f32>,
}

/// The `[0, 1]` value of each byte.
fn byte_lut() -> [f32; 256] {
    let mut lut = [0f32; 256];
    for (byte, value) in (0..=u8::MAX).zip(lut.iter_mut()) {
        *value = f32::from(byte) / 255.0;
    }
    lut
}

/// The largest width or height [`Image::decode`] accepts, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 1 << 15;

/// The most memory [`Image::decode`] lets the decoder allocate (512 MiB, the `image` crate's
/// default, stated here so it does not change under us).
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// The ITU-R 601-2 luma weights torchvision's `rgb_to_grayscale` uses on tensors.
const LUMA: [f32; 3] = [0.2989, 0.587, 0.114];

impl Image {
    /// An image from its CHW values; fails when `data` does not hold `channels * height * width`
    /// values or a dimension is 0.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Result<Image> {
        let expected = channels.checked_mul(height).and_then(|n| n.checked_mul(width));
        if channels == 0 || height == 0 || width == 0 || expected != Some(data.len()) {
            return Err(Error::config(format!(
                "image: {channels} channels of {height}x{width} need {} values, got {}",
                expected.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string()),
                data.len()
            )));
        }
        Ok(Image {
            channels,
            height,
            width,
            data,
        })
    }

    /// An image of zeros (black).
    pub fn zeros(channels: usize, height: usize, width: usize) -> Image {
        Image {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }

    /// The 3-channel image of an 8-bit RGB image, values `byte / 255`.
    pub fn from_rgb8(image: &image::RgbImage) -> Image {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let plane = width * height;
        let lut = byte_lut();
        let mut data = vec![0f32; 3 * plane];
        let (r, gb) = data.split_at_mut(plane);
        let (g, b) = gb.split_at_mut(plane);
        // `take`: an `RgbImage` built with `from_raw` may hold a longer buffer than its pixels.
        for (i, px) in image.as_raw().chunks_exact(3).take(plane).enumerate() {
            r[i] = lut[usize::from(px[0])];
            g[i] = lut[usize::from(px[1])];
            b[i] = lut[usize::from(px[2])];
        }
        Image {
            channels: 3,
            height,
            width,
            data,
        }
    }

    /// The 1-channel image of `width` x `height` row-major grey bytes, values `byte / 255`; fails
    /// when `pixels` does not hold `width * height` bytes or a dimension is 0.
    pub fn from_gray8(width: usize, height: usize, pixels: &[u8]) -> Result<Image> {
        if width == 0 || height == 0 || width.checked_mul(height) != Some(pixels.len()) {
            return Err(Error::config(format!(
                "grey image of {width}x{height} needs {} bytes, got {}",
                width.saturating_mul(height),
                pixels.len()
            )));
        }
        let lut = byte_lut();
        Ok(Image {
            channels: 1,
            height,
            width,
            data: pixels.iter().map(|&p| lut[usize::from(p)]).collect(),
        })
    }

    /// Decodes a PNG or JPEG file's content (the format is guessed from the bytes, not the name)
    /// into a 3-channel RGB image, like torchvision's default loader (`Image.open(f).convert("RGB")`):
    /// grey is replicated, alpha dropped, palettes expanded, 16-bit samples scaled to 8 bits.
    /// `path` only names the file in errors: content that cannot be decoded (corrupt, truncated,
    /// another format) is an [`Error::Dataset`] with the decoder's message.
    ///
    /// Memory is bounded whatever the header claims: sides of at most [`MAX_IMAGE_SIDE`] pixels
    /// and at most [`MAX_DECODE_BYTES`] for the decoder's buffers; a larger image is an
    /// [`Error::Dataset`] saying so.
    pub fn decode(bytes: &[u8], path: impl AsRef<Path>) -> Result<Image> {
        let path = path.as_ref();
        let mut reader = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::dataset(path, format!("cannot decode image: {e}")))?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_IMAGE_SIDE);
        limits.max_image_height = Some(MAX_IMAGE_SIDE);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let decoded = reader
            .decode()
            .map_err(|e| Error::dataset(path, format!("cannot decode image: {e}")))?;
        if decoded.width() == 0 || decoded.height() == 0 {
            return Err(Error::dataset(
                path,
                format!(
                    "image of {}x{} pixels is empty",
                    decoded.width(),
                    decoded.height()
                ),
            ));
        }
        Ok(Image::from_rgb8(&decoded.to_rgb8()))
    }

    /// Reads and [decodes](Image::decode) the file at `path` (an [`Error::Io`] when it cannot be
    /// read, an [`Error::Dataset`] when it cannot be decoded).
    pub fn open(path: impl AsRef<Path>) -> Result<Image> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Image::decode(&bytes, path)
    }

    /// Checks that no dimension is 0 and that `data` holds `channels * height * width` values
    /// (the fields are public, so an image built field by field may break this).
    pub fn validate(&self) -> Result<()> {
        let expected = self
            .channels
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(self.width));
        if self.channels == 0 || self.height == 0 || self.width == 0 || expected != Some(self.data.len()) {
            return Err(Error::config(format!(
                "image: {} channels of {}x{} with {} values; dimensions must be non-zero and the values \
                 number channels * height * width",
                self.channels,
                self.height,
                self.width,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// `(channels, height, width)`.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// The plane of channel `c`, or `None` past the last channel.
    pub fn plane(&self, c: usize) -> Option<&[f32]> {
        let size = self.height * self.width;
        self.data.get(c.checked_mul(size)?..(c + 1).checked_mul(size)?)
    }

    /// The value at channel `c`, row `y`, column `x`, or `None` outside the image.
    pub fn get(&self, c: usize, y: usize, x: usize) -> Option<f32> {
        if c >= self.channels || y >= self.height || x >= self.width {
            return None;
        }
        self.data.get((c * self.height + y) * self.width + x).copied()
    }

    /// The image with `channels` channels: unchanged when it already has them; a grey image
    /// replicated into each channel (torchvision's `Grayscale(num_output_channels=n)` of a grey
    /// image); an RGB image made grey with torchvision's luma weights
    /// `0.2989 R + 0.587 G + 0.114 B` when `channels` is 1. Anything else is an error.
    pub fn to_channels(self, channels: usize) -> Result<Image> {
        self.validate()?;
        let plane = self.height * self.width;
        match (self.channels, channels) {
            (from, to) if from == to => Ok(self),
            (1, to) if to > 0 => {
                let mut data = Vec::with_capacity(to * plane);
                for _ in 0..to {
                    data.extend_from_slice(&self.data);
                }
                Ok(Image {
                    channels: to,
                    data,
                    ..self
                })
            }
            (3, 1) => {
                let (r, gb) = self.data.split_at(plane);
                let (g, b) = gb.split_at(plane);
                let data = r
                    .iter()
                    .zip(g)
                    .zip(b)
                    .map(|((&r, &g), &b)| LUMA[0] * r + LUMA[1] * g + LUMA[2] * b)
                    .collect();
                Ok(Image {
                    channels: 1,
                    data,
                    ..self
                })
            }
            (from, to) => Err(Error::config(format!(
                "cannot convert an image of {from} channels to {to} channels (only 1 -> n and 3 -> 1)"
            ))),
        }
    }
}

/// One labelled image of a [`Dataset`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The decoded image.
    pub image: Image,
    /// Its class, `< num_classes`.
    pub label: usize,
}

/// A labelled image dataset that can be read from several threads: an
/// [`ImageFolder`](crate::data::ImageFolder) decoding files lazily, the in-memory
/// [`CifarDataset`](crate::data::CifarDataset) and [`GrayImages`], a [`Subset`] of any of them.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether the dataset has no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index` (decoded now for a lazy dataset). An index `>= len()` is an
    /// [`Error::Config`]; a file that cannot be read or decoded is an [`Error::Io`] or
    /// [`Error::Dataset`] naming it.
    fn get(&self, index: usize) -> Result<Sample>;

    /// Number of classes the labels range over.
    fn num_classes(&self) -> usize;

    /// The name of each class, `num_classes()` of them.
    fn class_names(&self) -> Vec<String>;

    /// The label of sample `index`, without decoding its image.
    fn label(&self, index: usize) -> Result<usize>;

    /// What sample `index` is, for messages: its file path, or the file and record.
    fn describe(&self, index: usize) -> String;
}

/// The [`Error::Config`] of an index past the end of a dataset.
pub(crate) fn index_error(what: &str, index: usize, len: usize) -> Error {
    Error::config(format!(
        "{what}: index {index} is out of range for a dataset of {len} samples"
    ))
}

/// A [`Dataset`] view of some samples of another dataset, in the given order (indices may
/// repeat).
#[derive(Clone)]
pub struct Subset {
    dataset: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// The samples `indices` of `dataset`; fails when an index is `>= dataset.len()`.
    pub fn new(dataset: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Subset> {
        let len = dataset.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
            return Err(index_error("subset", bad, len));
        }
        Ok(Subset { dataset, indices })
    }

    /// The indices into the underlying dataset.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The underlying dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    fn inner_index(&self, index: usize) -> Result<usize> {
        self.indices
            .get(index)
            .copied()
            .ok_or_else(|| index_error("subset", index, self.indices.len()))
    }
}

impl fmt::Debug for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subset")
            .field("len", &self.indices.len())
            .field("of", &self.dataset.len())
            .finish()
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.dataset.get(self.inner_index(index)?)
    }

    fn num_classes(&self) -> usize {
        self.dataset.num_classes()
    }

    fn class_names(&self) -> Vec<String> {
        self.dataset.class_names()
    }

    fn label(&self, index: usize) -> Result<usize> {
        self.dataset.label(self.inner_index(index)?)
    }

    fn describe(&self, index: usize) -> String {
        match self.indices.get(index) {
            Some(&i) => self.dataset.describe(i),
            None => format!("<subset index {index} out of range>"),
        }
    }
}

/// A uniform integer in `0..n` (`n > 0`), unbiased (Lemire's multiply-and-reject), so that
/// shuffles do not depend on the version of `rand`.
pub(crate) fn uniform_below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Shuffles `items` in place (Fisher-Yates with [`uniform_below`]).
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = uniform_below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// Splits `0..len` at random into training and validation indices, `round(len * val_fraction)`
/// of them for validation, each part sorted. The split depends only on `(len, val_fraction,
/// seed)`. Fails unless `0 < val_fraction < 1` and both parts are non-empty.
pub fn split_indices(len: usize, val_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(Error::config(format!(
            "validation split: the fraction must be strictly between 0 and 1, got {val_fraction}"
        )));
    }
    let n_val = (len as f64 * val_fraction).round() as usize;
    if n_val == 0 || n_val >= len {
        return Err(Error::config(format!(
            "validation split: a fraction of {val_fraction} of {len} samples leaves {n_val} for validation \
             and {} for training; both must be non-empty",
            len.saturating_sub(n_val)
        )));
    }
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(b"valsplit");
    let mut rng = ChaCha8Rng::from_seed(key);
    let mut order: Vec<usize> = (0..len).collect();
    shuffle(&mut order, &mut rng);
    let mut val = order[..n_val].to_vec();
    let mut train = order[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

/// An in-memory grey [`ImageDataset`] (MNIST) as a [`Dataset`] of 1-channel images; classes are
/// named `"0"`, `"1"`, ...
#[derive(Debug, Clone)]
pub struct GrayImages {
    dataset: ImageDataset,
    name: String,
}

impl GrayImages {
    /// Wraps `dataset` (checked with [`ImageDataset::validate`]); `name` (say `"mnist/train"`)
    /// prefixes the [`describe`](Dataset::describe) of its samples: `"mnist/train[12]"`.
    pub fn new(dataset: ImageDataset, name: impl Into<String>) -> Result<GrayImages> {
        dataset.validate()?;
        Ok(GrayImages {
            dataset,
            name: name.into(),
        })
    }

    /// The wrapped dataset.
    pub fn inner(&self) -> &ImageDataset {
        &self.dataset
    }
}

impl Dataset for GrayImages {
    fn len(&self) -> usize {
        self.dataset.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (pixels, label) = self
            .dataset
            .image(index)
            .zip(self.dataset.label(index))
            .ok_or_else(|| index_error(&self.name, index, self.dataset.len()))?;
        Ok(Sample {
            image: Image::from_gray8(self.dataset.cols, self.dataset.rows, pixels)?,
            label: usize::from(label),
        })
    }

    fn num_classes(&self) -> usize {
        self.dataset.num_classes
    }

    fn class_names(&self) -> Vec<String> {
        (0..self.dataset.num_classes).map(|c| c.to_string()).collect()
    }

    fn label(&self, index: usize) -> Result<usize> {
        self.dataset
            .label(index)
            .map(usize::from)
            .ok_or_else(|| index_error(&self.name, index, self.dataset.len()))
    }

    fn describe(&self, index: usize) -> String {
        format!("{}[{index}]", self.name)
    }
}
