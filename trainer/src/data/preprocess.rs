//! How MNIST's 8-bit digits become model inputs, as a [`Pipeline`] of the general data loader.

use crate::data::augment::RandomAffine;
use crate::data::transforms::{Interpolation, Pipeline, ResizeTo, Transform};
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

    /// Checks the values: a finite mean, a finite positive std, a non-zero resize.
    pub fn validate(&self) -> Result<()> {
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

impl Preprocess {
    /// The loader's transform for these settings: `Pad(pad)`, then `augment` (training only),
    /// then `Resize(resize, bilinear)`, then `Normalize(mean, std)`. The random affine and the
    /// resize run before the normalisation, on `[0, 1]` pixels with black outside the image;
    /// both are weighted means, so this equals normalising first with the normalised black as
    /// background (the order of the earlier MNIST batcher) up to rounding.
    pub fn pipeline(&self, augment: Option<RandomAffine>) -> Result<Pipeline> {
        self.validate()?;
        let mut steps = Vec::new();
        if self.pad > 0 {
            steps.push(Transform::Pad(self.pad));
        }
        if let Some(augment) = augment {
            steps.push(Transform::RandomAffine(augment));
        }
        if let Some((h, w)) = self.resize {
            steps.push(Transform::Resize {
                size: ResizeTo::Exact(h, w),
                interpolation: Interpolation::Bilinear,
            });
        }
        steps.push(Transform::Normalize {
            mean: vec![self.mean],
            std: vec![self.std],
        });
        Pipeline::new(steps)
    }
}
