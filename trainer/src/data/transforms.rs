//! Seeded image transforms mirroring torchvision's (`transforms.v2` on float tensors) and the
//! training and evaluation [`Pipeline`]s of timm and of the CIFAR recipes.
//!
//! Resizing follows PyTorch's `interpolate(..., antialias=True, align_corners=False)` (the path
//! torchvision's `Resize` takes for float tensors with its default `antialias=True`): a separable
//! filter (triangle for bilinear, Keys cubic with `a = -0.5` for bicubic, as PIL) whose support
//! is scaled by the downscale factor, weights normalised to sum 1 over the pixels inside the
//! image; `Nearest` is PyTorch's `mode="nearest"` (`floor(dst * in / out)`). Values are not
//! clamped (bicubic may overshoot `[0, 1]`, as with float tensors).
//!
//! The random steps draw from the generator handed to [`Pipeline::apply`] (the data loader seeds
//! one per sample and epoch): the same generator state gives the same output, but not the same
//! numbers as PyTorch's generator.

use rand::Rng;

use crate::data::augment::RandomAffine;
use crate::data::erasing::{ColorJitter, RandomErasing};
use crate::data::image::Image;
use crate::data::policy::AutoAugment;
use crate::error::{Error, Result};

pub use hub::{IMAGENET_MEAN, IMAGENET_STD};
/// The channel means of the CIFAR-10 training images (RGB, pixels in `[0, 1]`).
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// The channel (per-pixel) standard deviations of the CIFAR-10 training images.
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

pub use hub::Interpolation;

/// The output size of a [`Transform::Resize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// The shorter side becomes `n`, the longer `floor(n * long / short)`, keeping the aspect
    /// ratio (torchvision's `Resize(n)`).
    Shorter(usize),
    /// Exactly `(height, width)` (torchvision's `Resize((h, w))`).
    Exact(usize, usize),
    /// The smallest size of the image's aspect ratio covering `(height, width)`: each side divided
    /// by `min(H / height, W / width)` and rounded (timm's `ResizeKeepRatio`, used by its eval
    /// transform for non-square sizes).
    KeepRatio(usize, usize),
}

impl ResizeTo {
    /// The `(height, width)` an image of `(height, width)` is resized to.
    pub fn output_size(&self, (height, width): (usize, usize)) -> (usize, usize) {
        match *self {
            ResizeTo::Shorter(n) => {
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                let new_long = ((n as f64 * long as f64) / short as f64).floor() as usize;
                if width <= height {
                    (new_long, n)
                } else {
                    (n, new_long)
                }
            }
            ResizeTo::Exact(h, w) => (h, w),
            ResizeTo::KeepRatio(h, w) => {
                let ratio = (height as f64 / h as f64).min(width as f64 / w as f64);
                (
                    (height as f64 / ratio).round_ties_even() as usize,
                    (width as f64 / ratio).round_ties_even() as usize,
                )
            }
        }
    }

    fn validate(&self) -> Result<()> {
        let ok = match *self {
            ResizeTo::Shorter(n) => n > 0,
            ResizeTo::Exact(h, w) | ResizeTo::KeepRatio(h, w) => h > 0 && w > 0,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::config(format!(
                "resize: sizes must be positive, got {self:?}"
            )))
        }
    }
}

/// One step of a [`Pipeline`], named after its torchvision counterpart.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Resizes (antialiased when downscaling).
    Resize {
        /// The output size.
        size: ResizeTo,
        /// How new pixels are computed.
        interpolation: Interpolation,
    },
    /// Crops `(height, width)` about the centre: top `round((H - height) / 2)` (ties to even, as
    /// Python's `round`), likewise left; an image smaller than the crop is first padded with 0
    /// (`floor` of half the missing rows above, the rest below; likewise for columns).
    CenterCrop(usize, usize),
    /// Crops a random area and aspect ratio and resizes it to `size` (torchvision's algorithm:
    /// 10 attempts, then a centre crop of the whole image clamped to the ratio range).
    RandomResizedCrop {
        /// The output `(height, width)`.
        size: (usize, usize),
        /// Range of the crop's area as a fraction of the image's (torchvision: `(0.08, 1.0)`).
        scale: (f64, f64),
        /// Range of the crop's width / height (torchvision: `(3/4, 4/3)`), drawn log-uniformly.
        ratio: (f64, f64),
        /// How the crop is resized.
        interpolation: Interpolation,
    },
    /// Mirrors left-right with probability `p`.
    RandomHorizontalFlip(f64),
    /// Mirrors top-bottom with probability `p`.
    RandomVerticalFlip(f64),
    /// Random brightness, contrast and saturation in a random order (see [`ColorJitter`]).
    ColorJitter(ColorJitter),
    /// RandAugment, TrivialAugmentWide or AutoAugment (see [`AutoAugment`]), on the image
    /// quantised to bytes; before [`Normalize`](Transform::Normalize).
    AutoAugment(AutoAugment),
    /// timm's random erasing of boxes (see [`RandomErasing`]), after
    /// [`Normalize`](Transform::Normalize).
    RandomErasing(RandomErasing),
    /// Pads each side with `padding` zero pixels, then crops `size` at a uniformly random place
    /// (the CIFAR recipe: `RandomCrop(32, padding=4)`).
    RandomCrop {
        /// The output `(height, width)`.
        size: (usize, usize),
        /// Zero pixels added on every side first.
        padding: usize,
    },
    /// Pads each side with `n` zero pixels (torchvision's `Pad(n)`; before a `Normalize`, the
    /// padding becomes the normalised value of black, as LeNet-5's 28 -> 32 MNIST padding).
    Pad(usize),
    /// A random rotation, shift and scaling about the centre (torchvision's `RandomAffine`, see
    /// [`RandomAffine`]); pixels from outside the image are 0.
    RandomAffine(RandomAffine),
    /// Converts to `n` channels (see [`Image::to_channels`]).
    ToChannels(usize),
    /// Maps each value `x` of channel `c` to `(x - mean[c]) / std[c]`; `mean` and `std` must have
    /// one entry per channel of the image.
    Normalize {
        /// Mean subtracted from each channel.
        mean: Vec<f32>,
        /// Standard deviation each channel is divided by; positive.
        std: Vec<f32>,
    },
}

impl Transform {
    /// torchvision's `RandomResizedCrop(size)`: scale `(0.08, 1)`, ratio `(3/4, 4/3)`.
    pub fn random_resized_crop(size: (usize, usize), interpolation: Interpolation) -> Transform {
        Transform::RandomResizedCrop {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation,
        }
    }

    /// Checks the parameters: positive sizes, ordered positive ranges, a probability in
    /// `[0, 1]`, a positive channel count, finite means and positive finite standard deviations
    /// of equal, non-zero count.
    pub fn validate(&self) -> Result<()> {
        let positive = |what: &str, (h, w): (usize, usize)| {
            if h > 0 && w > 0 {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "{what}: sizes must be positive, got {h}x{w}"
                )))
            }
        };
        match self {
            Transform::Resize { size, .. } => size.validate(),
            Transform::CenterCrop(h, w) => positive("center crop", (*h, *w)),
            Transform::RandomResizedCrop {
                size, scale, ratio, ..
            } => {
                positive("random resized crop", *size)?;
                let ordered = |(lo, hi): (f64, f64)| lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= hi;
                if !ordered(*scale) || !ordered(*ratio) {
                    return Err(Error::config(format!(
                        "random resized crop: scale and ratio must be (min, max) with 0 < min <= max, got \
                         scale {scale:?} and ratio {ratio:?}"
                    )));
                }
                Ok(())
            }
            Transform::RandomHorizontalFlip(p) | Transform::RandomVerticalFlip(p) => {
                if (0.0..=1.0).contains(p) {
                    Ok(())
                } else {
                    Err(Error::config(format!(
                        "random flip: the probability must be in [0, 1], got {p}"
                    )))
                }
            }
            Transform::ColorJitter(jitter) => jitter.validate(),
            Transform::AutoAugment(_) => Ok(()),
            Transform::RandomErasing(erasing) => erasing.validate(),
            Transform::RandomCrop { size, .. } => positive("random crop", *size),
            Transform::Pad(_) => Ok(()),
            Transform::RandomAffine(affine) => affine.validate(),
            Transform::ToChannels(n) => {
                if *n > 0 {
                    Ok(())
                } else {
                    Err(Error::config(
                        "to channels: the channel count must be positive, got 0",
                    ))
                }
            }
            Transform::Normalize { mean, std } => {
                if mean.is_empty() || mean.len() != std.len() {
                    return Err(Error::config(format!(
                        "normalize: mean and std need one entry per channel, got {} and {}",
                        mean.len(),
                        std.len()
                    )));
                }
                if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                    return Err(Error::config(format!(
                        "normalize: means must be finite and stds finite and positive, got mean {mean:?} \
                         and std {std:?}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Whether the step draws random numbers (so that its output varies from epoch to epoch).
    pub fn is_random(&self) -> bool {
        match self {
            Transform::RandomResizedCrop { .. } | Transform::RandomCrop { .. } => true,
            Transform::RandomHorizontalFlip(p) | Transform::RandomVerticalFlip(p) => *p > 0.0 && *p < 1.0,
            Transform::ColorJitter(_) | Transform::AutoAugment(_) => true,
            Transform::RandomErasing(erasing) => erasing.prob > 0.0,
            Transform::RandomAffine(affine) => !affine.is_identity(),
            _ => false,
        }
    }

    /// Applies the step (after [`validate`](Transform::validate)), drawing from `rng` if random.
    pub fn apply(&self, image: Image, rng: &mut impl Rng) -> Result<Image> {
        self.validate()?;
        image.validate()?;
        match self {
            Transform::Resize { size, interpolation } => {
                let out = size.output_size((image.height, image.width));
                resize(&image, out, *interpolation)
            }
            Transform::CenterCrop(h, w) => {
                let (top, left) = center_crop_offsets((image.height, image.width), (*h, *w));
                crop(&image, top, left, (*h, *w))
            }
            Transform::RandomResizedCrop {
                size,
                scale,
                ratio,
                interpolation,
            } => {
                let (top, left, h, w) =
                    random_resized_crop_params((image.height, image.width), *scale, *ratio, rng);
                let cropped = crop(&image, top as isize, left as isize, (h, w))?;
                resize(&cropped, *size, *interpolation)
            }
            Transform::RandomHorizontalFlip(p) => {
                if rng.random::<f64>() < *p {
                    Ok(hflip(&image))
                } else {
                    Ok(image)
                }
            }
            Transform::RandomVerticalFlip(p) => {
                if rng.random::<f64>() < *p {
                    Ok(vflip(&image))
                } else {
                    Ok(image)
                }
            }
            Transform::ColorJitter(jitter) => Ok(jitter.apply(image, rng)),
            Transform::AutoAugment(policy) => policy.apply(image, rng),
            Transform::RandomErasing(erasing) => {
                let mut image = image;
                erasing.erase(&mut image, rng);
                Ok(image)
            }
            Transform::RandomCrop { size, padding } => {
                let (th, tw) = *size;
                let (ph, pw) = (image.height + 2 * padding, image.width + 2 * padding);
                if ph < th || pw < tw {
                    return Err(Error::config(format!(
                        "random crop: the crop size {th}x{tw} is larger than the padded image size {ph}x{pw} \
                         ({}x{} with padding {padding})",
                        image.height, image.width
                    )));
                }
                let top = if ph > th { rng.random_range(0..=ph - th) } else { 0 };
                let left = if pw > tw { rng.random_range(0..=pw - tw) } else { 0 };
                let pad = *padding as isize;
                crop(&image, top as isize - pad, left as isize - pad, (th, tw))
            }
            Transform::Pad(n) => {
                let pad = *n as isize;
                crop(&image, -pad, -pad, (image.height + 2 * n, image.width + 2 * n))
            }
            Transform::RandomAffine(affine) => {
                let mut out = Image::zeros(image.channels, image.height, image.width);
                let plane = image.height * image.width;
                // One draw per image: every channel moves the same way.
                let params = affine.draw(rng);
                for (src, dst) in image
                    .data
                    .chunks_exact(plane)
                    .zip(out.data.chunks_exact_mut(plane))
                {
                    affine.warp(&params, src, dst, (image.height, image.width), 0.0);
                }
                Ok(out)
            }
            Transform::ToChannels(n) => image.to_channels(*n),
            Transform::Normalize { mean, std } => normalize(image, mean, std),
        }
    }
}

/// `(top, left)` of torchvision's `center_crop` of `(h, w)` from an image of `(height, width)`,
/// relative to the unpadded image (negative when the crop is larger and zero padding is added).
pub fn center_crop_offsets((height, width): (usize, usize), (h, w): (usize, usize)) -> (isize, isize) {
    let axis = |len: usize, crop: usize| -> isize {
        // Padding before (floor of half the missing pixels), and the padded length.
        let (before, padded) = if crop > len {
            ((crop - len) / 2, crop)
        } else {
            (0, len)
        };
        let offset = ((padded - crop) as f64 / 2.0).round_ties_even() as isize;
        offset - before as isize
    };
    (axis(height, h), axis(width, w))
}

/// torchvision's `RandomResizedCrop.get_params`: `(top, left, height, width)` of the crop of an
/// image of `(height, width)`, drawn from `rng`.
pub fn random_resized_crop_params(
    (height, width): (usize, usize),
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        let w = (target_area * aspect).sqrt().round_ties_even();
        let h = (target_area / aspect).sqrt().round_ties_even();
        if 0.0 < w && w <= width as f64 && 0.0 < h && h <= height as f64 {
            let (h, w) = (h as usize, w as usize);
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return (top, left, h, w);
        }
    }
    // Fallback: a centre crop of the whole image, clamped to the ratio range.
    let in_ratio = width as f64 / height as f64;
    let (h, w) = if in_ratio < ratio.0 {
        let h = (width as f64 / ratio.0).round_ties_even() as usize;
        (h.clamp(1, height), width)
    } else if in_ratio > ratio.1 {
        let w = (height as f64 * ratio.1).round_ties_even() as usize;
        (height, w.clamp(1, width))
    } else {
        (height, width)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// A uniform draw in `[lo, hi)` (just `lo` when the range is empty).
fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// The `(h, w)` window of `image` whose top-left corner is at `(top, left)`; the parts outside
/// the image are 0 (zero padding). Fails when a size is 0 or the image is inconsistent.
pub fn crop(image: &Image, top: isize, left: isize, (h, w): (usize, usize)) -> Result<Image> {
    image.validate()?;
    if h == 0 || w == 0 {
        return Err(Error::config(format!("crop: cannot crop {h}x{w}")));
    }
    if top == 0 && left == 0 && (h, w) == (image.height, image.width) {
        return Ok(image.clone());
    }
    let mut out = Image::zeros(image.channels, h, w);
    let (ih, iw) = (image.height as isize, image.width as isize);
    // Output columns that fall inside the image.
    let x0 = (-left).clamp(0, w as isize) as usize;
    let x1 = (iw - left).clamp(0, w as isize) as usize;
    if x0 >= x1 {
        return Ok(out);
    }
    for c in 0..image.channels {
        for y in 0..h {
            let sy = top + y as isize;
            if sy < 0 || sy >= ih {
                continue;
            }
            let src_row = (c * image.height + sy as usize) * image.width;
            let sx0 = (left + x0 as isize) as usize;
            let dst_row = (c * h + y) * w;
            out.data[dst_row + x0..dst_row + x1]
                .copy_from_slice(&image.data[src_row + sx0..src_row + sx0 + (x1 - x0)]);
        }
    }
    Ok(out)
}

/// The image mirrored left-right.
pub fn hflip(image: &Image) -> Image {
    let mut out = image.clone();
    for row in out.data.chunks_exact_mut(image.width.max(1)) {
        row.reverse();
    }
    out
}

/// The image mirrored top-bottom.
pub fn vflip(image: &Image) -> Image {
    let mut out = image.clone();
    let (h, w) = (image.height, image.width);
    for (src, dst) in image
        .data
        .chunks_exact((h * w).max(1))
        .zip(out.data.chunks_exact_mut((h * w).max(1)))
    {
        for y in 0..h {
            dst[y * w..(y + 1) * w].copy_from_slice(&src[(h - 1 - y) * w..(h - y) * w]);
        }
    }
    out
}

/// `(x - mean[c]) / std[c]` on each channel `c`; fails unless `mean` and `std` have one entry per
/// channel.
fn normalize(mut image: Image, mean: &[f32], std: &[f32]) -> Result<Image> {
    if mean.len() != image.channels || std.len() != image.channels {
        return Err(Error::config(format!(
            "normalize: the image has {} channels but mean has {} and std {} entries",
            image.channels,
            mean.len(),
            std.len()
        )));
    }
    let plane = image.height * image.width;
    for (values, (&m, &s)) in image
        .data
        .chunks_exact_mut(plane.max(1))
        .zip(mean.iter().zip(std))
    {
        for v in values {
            *v = (*v - m) / s;
        }
    }
    Ok(image)
}

/// The input pixels and weights of one output pixel along an axis.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// The taps of resizing an axis of `input` pixels to `output` pixels.
fn axis_taps(input: usize, output: usize, interpolation: Interpolation) -> Vec<Taps> {
    let interp_size = match interpolation {
        Interpolation::Nearest => {
            // PyTorch's nearest_idx, in f32 like its kernel.
            let scale = input as f32 / output as f32;
            return (0..output)
                .map(|o| {
                    let src = if output == input {
                        o
                    } else if output == 2 * input {
                        o >> 1
                    } else {
                        ((o as f32 * scale).floor() as usize).min(input - 1)
                    };
                    Taps {
                        start: src,
                        weights: vec![1.0],
                    }
                })
                .collect();
        }
        Interpolation::Bilinear => 2.0,
        Interpolation::Bicubic => 4.0,
    };
    let filter = |x: f64| -> f64 {
        let x = x.abs();
        match interpolation {
            Interpolation::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
                } else {
                    0.0
                }
            }
            _ => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
        }
    };
    // PyTorch's _compute_indices_min_size_weights_aa (the algorithm of PIL's ImagingResample).
    let scale = input as f64 / output as f64;
    let (support, invscale) = if scale >= 1.0 {
        (interp_size * 0.5 * scale, 1.0 / scale)
    } else {
        (interp_size * 0.5, 1.0)
    };
    let max_taps = (support.ceil() as usize) * 2 + 1;
    (0..output)
        .map(|o| {
            let center = scale * (o as f64 + 0.5);
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(input as i64);
            let size = (xmax - xmin).clamp(0, max_taps as i64) as usize;
            let mut weights: Vec<f64> = (0..size)
                .map(|j| filter((j as f64 + xmin as f64 - center + 0.5) * invscale))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                for w in &mut weights {
                    *w /= total;
                }
            }
            Taps {
                start: xmin as usize,
                weights: weights.into_iter().map(|w| w as f32).collect(),
            }
        })
        .collect()
}

/// Resizes `image` to `(height, width)` (each axis left alone when its size does not change):
/// width first, then height. Fails when a size is 0 or the image is inconsistent.
pub fn resize(image: &Image, (height, width): (usize, usize), interpolation: Interpolation) -> Result<Image> {
    image.validate()?;
    if height == 0 || width == 0 {
        return Err(Error::config(format!(
            "resize: cannot resize to {height}x{width}"
        )));
    }
    let mut current = image.clone();
    if width != current.width {
        let taps = axis_taps(current.width, width, interpolation);
        let mut data = Vec::with_capacity(current.channels * current.height * width);
        for row in current.data.chunks_exact(current.width) {
            for t in &taps {
                let src = &row[t.start..t.start + t.weights.len()];
                data.push(dot(src.iter().copied(), &t.weights));
            }
        }
        current = Image {
            width,
            data,
            ..current
        };
    }
    if height != current.height {
        let taps = axis_taps(current.height, height, interpolation);
        let w = current.width;
        let plane = current.height * w;
        let mut data = vec![0f32; current.channels * height * w];
        for (src, dst) in current
            .data
            .chunks_exact(plane)
            .zip(data.chunks_exact_mut(height * w))
        {
            for (t, out_row) in taps.iter().zip(dst.chunks_exact_mut(w)) {
                for (j, &wt) in t.weights.iter().enumerate() {
                    let in_row = &src[(t.start + j) * w..(t.start + j + 1) * w];
                    if j == 0 {
                        for (o, &v) in out_row.iter_mut().zip(in_row) {
                            *o = v * wt;
                        }
                    } else {
                        for (o, &v) in out_row.iter_mut().zip(in_row) {
                            *o += v * wt;
                        }
                    }
                }
            }
        }
        current = Image {
            height,
            data,
            ..current
        };
    }
    Ok(current)
}

fn dot(values: impl Iterator<Item = f32>, weights: &[f32]) -> f32 {
    values.zip(weights).fold(0.0, |acc, (v, &w)| acc + v * w)
}

/// A sequence of [`Transform`]s applied in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pipeline(pub Vec<Transform>);

impl Pipeline {
    /// A pipeline of `steps`, each [validated](Transform::validate).
    pub fn new(steps: Vec<Transform>) -> Result<Pipeline> {
        let pipeline = Pipeline(steps);
        pipeline.validate()?;
        Ok(pipeline)
    }

    /// The pipeline that changes nothing.
    pub fn identity() -> Pipeline {
        Pipeline(Vec::new())
    }

    /// The steps.
    pub fn steps(&self) -> &[Transform] {
        &self.0
    }

    /// Checks every step.
    pub fn validate(&self) -> Result<()> {
        self.0.iter().try_for_each(Transform::validate)
    }

    /// Applies the steps in order, the random ones drawing from `rng`.
    pub fn apply(&self, image: Image, rng: &mut impl Rng) -> Result<Image> {
        self.0
            .iter()
            .try_fold(image, |image, step| step.apply(image, rng))
    }

    /// Whether a step is random: the output of an image then changes from epoch to epoch (so,
    /// say, features of the transformed images cannot be cached).
    pub fn is_random(&self) -> bool {
        self.0.iter().any(Transform::is_random)
    }

    /// The evaluation transform of a model's data config (timm's `create_transform` of
    /// `resolve_data_config`, e.g. `convnets::Model::data_config`): [`Pipeline::eval`] with its
    /// size, crop, interpolation, mean and std.
    pub fn eval_config(config: &hub::DataConfig) -> Result<Pipeline> {
        let (_, h, w) = config.input_size;
        Pipeline::eval(
            (h, w),
            config.crop_pct,
            config.interpolation,
            &config.mean,
            &config.std,
        )
    }

    /// timm's evaluation transform (`transforms_imagenet_eval`, crop mode "center"): resize to
    /// `floor(side / crop_pct)` (the shorter side when the target is square, else
    /// [`ResizeTo::KeepRatio`]), centre crop `size`, normalise. `crop_pct` must be positive and
    /// finite (timm's default is 0.875: 224 -> resize 256 -> crop 224).
    pub fn eval(
        size: (usize, usize),
        crop_pct: f64,
        interpolation: Interpolation,
        mean: &[f32],
        std: &[f32],
    ) -> Result<Pipeline> {
        if !(crop_pct.is_finite() && crop_pct > 0.0) {
            return Err(Error::config(format!(
                "eval transform: crop_pct must be positive, got {crop_pct}"
            )));
        }
        let scaled = |side: usize| (side as f64 / crop_pct).floor() as usize;
        let (sh, sw) = (scaled(size.0), scaled(size.1));
        let resize_to = if sh == sw {
            ResizeTo::Shorter(sh)
        } else {
            ResizeTo::KeepRatio(sh, sw)
        };
        Pipeline::new(vec![
            // Grey images for an RGB model and colour images for a grey one, as the
            // normalisation's channel count says.
            Transform::ToChannels(mean.len()),
            Transform::Resize {
                size: resize_to,
                interpolation,
            },
            Transform::CenterCrop(size.0, size.1),
            Transform::Normalize {
                mean: mean.to_vec(),
                std: std.to_vec(),
            },
        ])
    }

    /// The standard training transform (torchvision's reference recipe, timm's without colour
    /// jitter): `RandomResizedCrop(size)`, `RandomHorizontalFlip(0.5)`, normalise.
    pub fn train(
        size: (usize, usize),
        interpolation: Interpolation,
        mean: &[f32],
        std: &[f32],
    ) -> Result<Pipeline> {
        Pipeline::new(vec![
            Transform::ToChannels(mean.len()),
            Transform::random_resized_crop(size, interpolation),
            Transform::RandomHorizontalFlip(0.5),
            Transform::Normalize {
                mean: mean.to_vec(),
                std: std.to_vec(),
            },
        ])
    }

    /// The CIFAR training transform: `RandomCrop(32, padding=4)`, `RandomHorizontalFlip(0.5)`,
    /// normalise.
    pub fn cifar_train(mean: &[f32], std: &[f32]) -> Result<Pipeline> {
        Pipeline::new(vec![
            Transform::RandomCrop {
                size: (32, 32),
                padding: 4,
            },
            Transform::RandomHorizontalFlip(0.5),
            Transform::Normalize {
                mean: mean.to_vec(),
                std: std.to_vec(),
            },
        ])
    }

    /// The CIFAR evaluation transform: normalise only.
    pub fn cifar_eval(mean: &[f32], std: &[f32]) -> Result<Pipeline> {
        Pipeline::new(vec![Transform::Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }])
    }
}
