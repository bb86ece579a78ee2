//! timm's `RandomErasing` (applied after normalisation) and torchvision's `ColorJitter`
//! (brightness, contrast, saturation; timm's `--color-jitter`), on [`Image`]s.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::data::image::Image;
use crate::error::{Error, Result};

/// What an erased box is filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EraseMode {
    /// 0 (the mean colour, after normalisation).
    #[default]
    Const,
    /// One standard-normal value per channel.
    Rand,
    /// A standard-normal value per pixel and channel.
    Pixel,
}

impl std::str::FromStr for EraseMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<EraseMode> {
        match s {
            "const" => Ok(EraseMode::Const),
            "rand" => Ok(EraseMode::Rand),
            "pixel" => Ok(EraseMode::Pixel),
            _ => Err(Error::config(format!(
                "random erasing mode `{s}`: expected const, rand or pixel"
            ))),
        }
    }
}

/// timm's `RandomErasing(probability, mode=..., max_count=...)` with its defaults: with
/// probability `prob`, `1..=max_count` boxes (count drawn uniformly) of `2%` to `1/3` of the
/// area (divided by the count) and aspect ratio `0.3` to `1/0.3` (log-uniform), 10 attempts
/// each, filled as `mode` says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomErasing {
    /// Probability of erasing an image.
    pub prob: f64,
    /// The fill.
    pub mode: EraseMode,
    /// The most boxes per image.
    pub max_count: usize,
    /// Smallest and largest box area, fractions of the image.
    pub area: (f64, f64),
    /// Smallest aspect ratio (the largest is its inverse).
    pub min_aspect: f64,
}

impl RandomErasing {
    /// timm's defaults with probability `prob`, `mode` and `max_count` boxes at most.
    pub fn new(prob: f64, mode: EraseMode, max_count: usize) -> RandomErasing {
        RandomErasing {
            prob,
            mode,
            max_count,
            area: (0.02, 1.0 / 3.0),
            min_aspect: 0.3,
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let ok = (0.0..=1.0).contains(&self.prob)
            && self.max_count >= 1
            && 0.0 < self.area.0
            && self.area.0 <= self.area.1
            && self.area.1 <= 1.0
            && self.min_aspect > 0.0
            && self.min_aspect.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::config(format!(
                "random erasing: invalid settings {self:?}"
            )))
        }
    }

    /// Erases boxes of `image` in place, drawing from `rng` as timm's `_erase` does.
    pub fn erase(&self, image: &mut Image, rng: &mut impl Rng) {
        if rng.random::<f64>() > self.prob {
            return;
        }
        let (c, ih, iw) = image.dims();
        let area = (ih * iw) as f64;
        let count = if self.max_count == 1 {
            1
        } else {
            rng.random_range(1..=self.max_count)
        };
        let log_aspect = (self.min_aspect.ln(), (1.0 / self.min_aspect).ln());
        let uniform = |rng: &mut dyn rand::RngCore, lo: f64, hi: f64| lo + (hi - lo) * rng.random::<f64>();
        for _ in 0..count {
            for _ in 0..10 {
                let target = uniform(rng, self.area.0, self.area.1) * area / count as f64;
                let aspect = uniform(rng, log_aspect.0, log_aspect.1).exp();
                let h = (target * aspect).sqrt().round() as usize;
                let w = (target / aspect).sqrt().round() as usize;
                if w < iw && h < ih {
                    let top = rng.random_range(0..=ih - h);
                    let left = rng.random_range(0..=iw - w);
                    let channel_values: Vec<f32> = (0..c)
                        .map(|_| match self.mode {
                            EraseMode::Rand => StandardNormal.sample(rng),
                            _ => 0.0,
                        })
                        .collect();
                    for (ch, &value) in channel_values.iter().enumerate() {
                        for y in top..top + h {
                            let row = (ch * ih + y) * iw;
                            for v in &mut image.data[row + left..row + left + w] {
                                *v = match self.mode {
                                    EraseMode::Pixel => StandardNormal.sample(rng),
                                    _ => value,
                                };
                            }
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// torchvision's `ColorJitter(brightness, contrast, saturation)` on `[0, 1]` float images: each
/// factor uniform in `[max(0, 1 - s), 1 + s]`, applied in a random order (hue is not jittered).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
}

impl ColorJitter {
    /// The same strength for brightness, contrast and saturation (timm's `--color-jitter x`).
    pub fn uniform(strength: f64) -> ColorJitter {
        ColorJitter {
            brightness: strength,
            contrast: strength,
            saturation: strength,
        }
    }

    /// Checks the strengths (finite, >= 0).
    pub fn validate(&self) -> Result<()> {
        if [self.brightness, self.contrast, self.saturation]
            .iter()
            .all(|s| s.is_finite() && *s >= 0.0)
        {
            Ok(())
        } else {
            Err(Error::config(format!("color jitter: invalid strengths {self:?}")))
        }
    }

    /// Jitters `image` (channels 1 or 3: saturation leaves grey images alone).
    pub fn apply(&self, mut image: Image, rng: &mut impl Rng) -> Image {
        let mut order = [0usize, 1, 2, 3];
        for i in (1..4).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let factor = |s: f64, rng: &mut dyn rand::RngCore| -> Option<f32> {
            (s > 0.0)
                .then(|| ((1.0 - s).max(0.0) + ((1.0 + s) - (1.0 - s).max(0.0)) * rng.random::<f64>()) as f32)
        };
        let factors = [
            factor(self.brightness, rng),
            factor(self.contrast, rng),
            factor(self.saturation, rng),
        ];
        let plane = image.height * image.width;
        let grey = |image: &Image| -> Vec<f32> {
            if image.channels == 3 {
                let (r, rest) = image.data.split_at(plane);
                let (g, b) = rest.split_at(plane);
                r.iter()
                    .zip(g)
                    .zip(b)
                    .map(|((r, g), b)| r * 0.2989 + g * 0.587 + b * 0.114)
                    .collect()
            } else {
                image.data[..plane].to_vec()
            }
        };
        for step in order {
            match (step, factors.get(step).copied().flatten()) {
                (0, Some(f)) => image.data.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 1.0)),
                (1, Some(f)) => {
                    let g = grey(&image);
                    let mean = g.iter().sum::<f32>() / g.len().max(1) as f32;
                    image
                        .data
                        .iter_mut()
                        .for_each(|v| *v = (*v * f + mean * (1.0 - f)).clamp(0.0, 1.0));
                }
                (2, Some(f)) if image.channels == 3 => {
                    let g = grey(&image);
                    for chunk in image.data.chunks_exact_mut(plane) {
                        for (v, &gv) in chunk.iter_mut().zip(&g) {
                            *v = (*v * f + gv * (1.0 - f)).clamp(0.0, 1.0);
                        }
                    }
                }
                _ => {}
            }
        }
        image
    }
}
