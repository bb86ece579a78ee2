//! Automatic augmentation policies, named as timm's `--aa` flag names them:
//!
//! - `rand-m9-mstd0.5` (timm's `rand_augment_transform` grammar: `m` magnitude out of 10, `n`
//!   operations per image (2), `p` probability of each (0.5), `mstd` standard deviation of the
//!   magnitude's noise (above 100: uniform in `[0, m]`), `mmax` its upper bound (10), `inc1` the
//!   "increasing" operation set): RandAugment with timm's operations and level-to-argument maps;
//! - `trivial`: torchvision's `TrivialAugmentWide` (one operation of 14, one of 31 magnitudes);
//! - `v0`, `original`: timm's AutoAugment policies (`auto_augment_policy_v0`, and the paper's
//!   ImageNet policy), a random sub-policy of two operations, each with its probability.
//!
//! The operations themselves are torchvision's on bytes ([`crate::data::ops`]); the geometric
//! ones sample the nearest pixel and fill with the dataset's mean colour, as timm's `img_mean`.
//! Every draw comes from the generator handed to [`AutoAugment::apply`] (the loader's per-sample
//! one): the same seed gives the same images, not the same numbers as Python's `random`.

use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::data::image::Image;
use crate::data::ops::{Bytes, Op};
use crate::error::{Error, Result};

/// timm's magnitude scale: a level `m` means `m / 10` of each operation's range.
const LEVEL_DENOM: f64 = 10.0;

/// An operation of timm's policies; its level-to-argument map is timm's `LEVEL_TO_ARG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum AaOp {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    PosterizeIncreasing,
    PosterizeOriginal,
    Solarize,
    SolarizeIncreasing,
    SolarizeAdd,
    Color,
    ColorIncreasing,
    Contrast,
    ContrastIncreasing,
    Brightness,
    BrightnessIncreasing,
    Sharpness,
    SharpnessIncreasing,
    ShearX,
    ShearY,
    TranslateXRel,
    TranslateYRel,
}

/// timm's `_RAND_TRANSFORMS`.
pub const RAND_TRANSFORMS: [AaOp; 15] = [
    AaOp::AutoContrast,
    AaOp::Equalize,
    AaOp::Invert,
    AaOp::Rotate,
    AaOp::Posterize,
    AaOp::Solarize,
    AaOp::SolarizeAdd,
    AaOp::Color,
    AaOp::Contrast,
    AaOp::Brightness,
    AaOp::Sharpness,
    AaOp::ShearX,
    AaOp::ShearY,
    AaOp::TranslateXRel,
    AaOp::TranslateYRel,
];

/// timm's `_RAND_INCREASING_TRANSFORMS`.
pub const RAND_INCREASING_TRANSFORMS: [AaOp; 15] = [
    AaOp::AutoContrast,
    AaOp::Equalize,
    AaOp::Invert,
    AaOp::Rotate,
    AaOp::PosterizeIncreasing,
    AaOp::SolarizeIncreasing,
    AaOp::SolarizeAdd,
    AaOp::ColorIncreasing,
    AaOp::ContrastIncreasing,
    AaOp::BrightnessIncreasing,
    AaOp::SharpnessIncreasing,
    AaOp::ShearX,
    AaOp::ShearY,
    AaOp::TranslateXRel,
    AaOp::TranslateYRel,
];

/// One operation of an AutoAugment sub-policy: (operation, probability, magnitude out of 10).
pub type PolicyOp = (AaOp, f64, u8);

use AaOp::*;

/// timm's `auto_augment_policy_v0` (the TPU EfficientNet policy).
pub const POLICY_V0: [[PolicyOp; 2]; 25] = [
    [(Equalize, 0.8, 1), (ShearY, 0.8, 4)],
    [(Color, 0.4, 9), (Equalize, 0.6, 3)],
    [(Color, 0.4, 1), (Rotate, 0.6, 8)],
    [(Solarize, 0.8, 3), (Equalize, 0.4, 7)],
    [(Solarize, 0.4, 2), (Solarize, 0.6, 2)],
    [(Color, 0.2, 0), (Equalize, 0.8, 8)],
    [(Equalize, 0.4, 8), (SolarizeAdd, 0.8, 3)],
    [(ShearX, 0.2, 9), (Rotate, 0.6, 8)],
    [(Color, 0.6, 1), (Equalize, 1.0, 2)],
    [(Invert, 0.4, 9), (Rotate, 0.6, 0)],
    [(Equalize, 1.0, 9), (ShearY, 0.6, 3)],
    [(Color, 0.4, 7), (Equalize, 0.6, 0)],
    [(Posterize, 0.4, 6), (AutoContrast, 0.4, 7)],
    [(Solarize, 0.6, 8), (Color, 0.6, 9)],
    [(Solarize, 0.2, 4), (Rotate, 0.8, 9)],
    [(Rotate, 1.0, 7), (TranslateYRel, 0.8, 9)],
    [(ShearX, 0.0, 0), (Solarize, 0.8, 4)],
    [(ShearY, 0.8, 0), (Color, 0.6, 4)],
    [(Color, 1.0, 0), (Rotate, 0.6, 2)],
    [(Equalize, 0.8, 4), (Equalize, 0.0, 8)],
    [(Equalize, 1.0, 4), (AutoContrast, 0.6, 2)],
    [(ShearY, 0.4, 7), (SolarizeAdd, 0.6, 7)],
    [(Posterize, 0.8, 2), (Solarize, 0.6, 10)],
    [(Solarize, 0.6, 8), (Equalize, 0.6, 1)],
    [(Color, 0.8, 6), (Rotate, 0.4, 5)],
];

/// timm's `auto_augment_policy_original` (the AutoAugment paper's ImageNet policy).
pub const POLICY_ORIGINAL: [[PolicyOp; 2]; 25] = [
    [(PosterizeOriginal, 0.4, 8), (Rotate, 0.6, 9)],
    [(Solarize, 0.6, 5), (AutoContrast, 0.6, 5)],
    [(Equalize, 0.8, 8), (Equalize, 0.6, 3)],
    [(PosterizeOriginal, 0.6, 7), (PosterizeOriginal, 0.6, 6)],
    [(Equalize, 0.4, 7), (Solarize, 0.2, 4)],
    [(Equalize, 0.4, 4), (Rotate, 0.8, 8)],
    [(Solarize, 0.6, 3), (Equalize, 0.6, 7)],
    [(PosterizeOriginal, 0.8, 5), (Equalize, 1.0, 2)],
    [(Rotate, 0.2, 3), (Solarize, 0.6, 8)],
    [(Equalize, 0.6, 8), (PosterizeOriginal, 0.4, 6)],
    [(Rotate, 0.8, 8), (Color, 0.4, 0)],
    [(Rotate, 0.4, 9), (Equalize, 0.6, 2)],
    [(Equalize, 0.0, 7), (Equalize, 0.8, 8)],
    [(Invert, 0.6, 4), (Equalize, 1.0, 8)],
    [(Color, 0.6, 4), (Contrast, 1.0, 8)],
    [(Rotate, 0.8, 8), (Color, 1.0, 2)],
    [(Color, 0.8, 8), (Solarize, 0.8, 7)],
    [(Sharpness, 0.4, 7), (Invert, 0.6, 8)],
    [(ShearX, 0.6, 5), (Equalize, 1.0, 9)],
    [(Color, 0.4, 0), (Equalize, 0.6, 3)],
    [(Equalize, 0.4, 7), (Solarize, 0.2, 4)],
    [(Solarize, 0.6, 5), (AutoContrast, 0.6, 5)],
    [(Invert, 0.6, 4), (Equalize, 1.0, 8)],
    [(Color, 0.6, 4), (Contrast, 1.0, 8)],
    [(Equalize, 0.8, 8), (Equalize, 0.6, 3)],
];

/// `-v` or `v`, each with probability one half (timm's `_randomly_negate`).
fn negate(v: f64, rng: &mut impl Rng) -> f64 {
    if rng.random::<f64>() > 0.5 {
        -v
    } else {
        v
    }
}

impl AaOp {
    /// timm's name of the operation.
    pub fn name(self) -> &'static str {
        match self {
            AutoContrast => "AutoContrast",
            Equalize => "Equalize",
            Invert => "Invert",
            Rotate => "Rotate",
            Posterize => "Posterize",
            PosterizeIncreasing => "PosterizeIncreasing",
            PosterizeOriginal => "PosterizeOriginal",
            Solarize => "Solarize",
            SolarizeIncreasing => "SolarizeIncreasing",
            SolarizeAdd => "SolarizeAdd",
            Color => "Color",
            ColorIncreasing => "ColorIncreasing",
            Contrast => "Contrast",
            ContrastIncreasing => "ContrastIncreasing",
            Brightness => "Brightness",
            BrightnessIncreasing => "BrightnessIncreasing",
            Sharpness => "Sharpness",
            SharpnessIncreasing => "SharpnessIncreasing",
            ShearX => "ShearX",
            ShearY => "ShearY",
            TranslateXRel => "TranslateXRel",
            TranslateYRel => "TranslateYRel",
        }
    }

    /// The operation at `level` (0 to 10) on an image of `(height, width)`, the sign of signed
    /// ones drawn from `rng` (timm's `LEVEL_TO_ARG`, `translate_pct` 0.45).
    pub fn at_level(self, level: f64, (height, width): (usize, usize), rng: &mut impl Rng) -> Op {
        let frac = level / LEVEL_DENOM;
        let enhance = 0.1 + 1.8 * frac;
        let mut enhance_increasing = || (1.0 + negate(0.9 * frac, rng)).max(0.1);
        match self {
            AutoContrast => Op::AutoContrast,
            Equalize => Op::Equalize,
            Invert => Op::Invert,
            Rotate => Op::Rotate(negate(30.0 * frac, rng)),
            Posterize => Op::Posterize((frac * 4.0) as u8),
            PosterizeIncreasing => Op::Posterize(4 - (frac * 4.0) as u8),
            PosterizeOriginal => Op::Posterize((frac * 4.0) as u8 + 4),
            Solarize => Op::Solarize(((frac * 256.0) as i64).min(256) as f64),
            SolarizeIncreasing => Op::Solarize((256 - ((frac * 256.0) as i64).min(256)) as f64),
            SolarizeAdd => Op::SolarizeAdd {
                add: ((frac * 110.0) as i64).min(128) as u8,
                threshold: 128,
            },
            Color => Op::Color(enhance),
            ColorIncreasing => Op::Color(enhance_increasing()),
            Contrast => Op::Contrast(enhance),
            ContrastIncreasing => Op::Contrast(enhance_increasing()),
            Brightness => Op::Brightness(enhance),
            BrightnessIncreasing => Op::Brightness(enhance_increasing()),
            Sharpness => Op::Sharpness(enhance),
            SharpnessIncreasing => Op::Sharpness(enhance_increasing()),
            ShearX => Op::ShearX(negate(0.3 * frac, rng)),
            ShearY => Op::ShearY(negate(0.3 * frac, rng)),
            // PIL's `transform` with offset `p` moves the image by `-p`.
            TranslateXRel => Op::TranslateX(-negate(0.45 * frac, rng) * width as f64),
            TranslateYRel => Op::TranslateY(-negate(0.45 * frac, rng) * height as f64),
        }
    }
}

/// timm's RandAugment settings (see the [module docs](self) for the grammar).
#[derive(Debug, Clone, PartialEq)]
pub struct RandAugment {
    /// Magnitude, out of 10.
    pub magnitude: f64,
    /// Operations drawn (with replacement) per image.
    pub num_layers: usize,
    /// Probability of applying each drawn operation.
    pub prob: f64,
    /// Standard deviation of the magnitude's Gaussian noise per operation (infinite: uniform
    /// in `[0, magnitude]`).
    pub magnitude_std: f64,
    /// Upper bound of the noisy magnitude (10 when `None`).
    pub magnitude_max: Option<f64>,
    /// timm's "increasing" operation set.
    pub increasing: bool,
}

/// The policy of an [`AutoAugment`] step.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// timm's RandAugment.
    Rand(RandAugment),
    /// torchvision's TrivialAugmentWide.
    TrivialWide,
    /// An AutoAugment table of two-operation sub-policies (`v0` or `original`).
    Table(&'static str, &'static [[PolicyOp; 2]]),
}

/// An automatic augmentation step: a [`Policy`] and the fill colour of the geometric operations.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoAugment {
    /// What is drawn.
    pub policy: Policy,
    /// The byte value of each channel where a geometric operation samples outside the image
    /// (timm: `round(255 * mean)`).
    pub fill: Vec<u8>,
}

fn parse_number(key: &str, value: &str, spec: &str) -> Result<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| Error::config(format!("--aa `{spec}`: `{key}{value}` is not a number >= 0")))
}

impl AutoAugment {
    /// Parses timm's `--aa` names: `rand-...`, `trivial`, `v0`, `original` (see the [module
    /// docs](self)); `mean` gives the fill colour (`round(255 * mean)` of each channel).
    pub fn parse(spec: &str, mean: &[f32]) -> Result<AutoAugment> {
        let fill = mean
            .iter()
            .map(|m| (255.0 * m.clamp(0.0, 1.0)).round() as u8)
            .collect();
        let policy = match spec {
            "trivial" | "trivialaugment" => Policy::TrivialWide,
            "v0" => Policy::Table("v0", &POLICY_V0),
            "original" => Policy::Table("original", &POLICY_ORIGINAL),
            s if s == "rand" || s.starts_with("rand-") => Policy::Rand(Self::parse_rand(s)?),
            _ => {
                return Err(Error::config(format!(
                    "--aa `{spec}`: expected rand-<options> (e.g. rand-m9-mstd0.5), trivial, v0 or original"
                )))
            }
        };
        Ok(AutoAugment { policy, fill })
    }

    fn parse_rand(spec: &str) -> Result<RandAugment> {
        let mut ra = RandAugment {
            magnitude: LEVEL_DENOM,
            num_layers: 2,
            prob: 0.5,
            magnitude_std: 0.0,
            magnitude_max: None,
            increasing: false,
        };
        for section in spec.split('-').skip(1) {
            let split = section
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(section.len());
            let (key, value) = section.split_at(split);
            if value.is_empty() {
                // timm skips sections without a number.
                continue;
            }
            match key {
                "m" => ra.magnitude = parse_number(key, value, spec)?.trunc(),
                "n" => ra.num_layers = parse_number(key, value, spec)? as usize,
                "p" => ra.prob = parse_number(key, value, spec)?.min(1.0),
                "mstd" => {
                    let std = parse_number(key, value, spec)?;
                    ra.magnitude_std = if std > 100.0 { f64::INFINITY } else { std };
                }
                "mmax" => ra.magnitude_max = Some(parse_number(key, value, spec)?.trunc()),
                "inc" => ra.increasing = parse_number(key, value, spec)? != 0.0,
                _ => {
                    return Err(Error::config(format!(
                        "--aa `{spec}`: unknown section `{section}` (known: m, n, p, mstd, mmax, inc)"
                    )))
                }
            }
        }
        Ok(ra)
    }

    /// The operations drawn for one image of `(height, width)`, in order (those whose
    /// probability draw failed left out).
    pub fn draw(&self, size: (usize, usize), rng: &mut impl Rng) -> Vec<Op> {
        let mut ops = Vec::new();
        match &self.policy {
            Policy::Rand(ra) => {
                let set = if ra.increasing {
                    &RAND_INCREASING_TRANSFORMS
                } else {
                    &RAND_TRANSFORMS
                };
                let chosen: Vec<AaOp> = (0..ra.num_layers)
                    .map(|_| set[rng.random_range(0..set.len())])
                    .collect();
                for op in chosen {
                    if let Some(op) = timm_op(
                        op,
                        ra.prob,
                        ra.magnitude,
                        ra.magnitude_std,
                        ra.magnitude_max,
                        size,
                        rng,
                    ) {
                        ops.push(op);
                    }
                }
            }
            Policy::Table(_, table) => {
                let sub = &table[rng.random_range(0..table.len())];
                for &(op, prob, magnitude) in sub {
                    if let Some(op) = timm_op(op, prob, f64::from(magnitude), 0.0, None, size, rng) {
                        ops.push(op);
                    }
                }
            }
            Policy::TrivialWide => ops.push(trivial_wide(rng)),
        }
        ops
    }

    /// Applies one draw of the policy to `image` (quantised to bytes and back, see
    /// [`Bytes::from_image`]). Fails when a colour operation meets other than 1 or 3 channels.
    pub fn apply(&self, image: Image, rng: &mut impl Rng) -> Result<Image> {
        let ops = self.draw((image.height, image.width), rng);
        let mut bytes = Bytes::from_image(&image);
        for op in ops {
            bytes = op.apply(&bytes, &self.fill)?;
        }
        Ok(bytes.to_image())
    }
}

/// timm's `AugmentOp.__call__`: `None` when the probability draw skips it, else the operation at
/// the (noisy, clipped) magnitude.
fn timm_op(
    op: AaOp,
    prob: f64,
    magnitude: f64,
    std: f64,
    max: Option<f64>,
    size: (usize, usize),
    rng: &mut impl Rng,
) -> Option<Op> {
    if prob < 1.0 && rng.random::<f64>() > prob {
        return None;
    }
    let mut m = magnitude;
    if std == f64::INFINITY {
        m = rng.random::<f64>() * magnitude;
    } else if std > 0.0 {
        m = Normal::new(magnitude, std).map_or(magnitude, |n| n.sample(rng));
    }
    let m = m.min(max.unwrap_or(LEVEL_DENOM)).max(0.0);
    Some(op.at_level(m, size, rng))
}

/// The bins of torchvision's TrivialAugmentWide.
const TRIVIAL_BINS: usize = 31;

/// One draw of torchvision's `TrivialAugmentWide` (31 magnitude bins): an operation, a bin, a
/// sign.
fn trivial_wide(rng: &mut impl Rng) -> Op {
    let op = rng.random_range(0..14usize);
    let bin = rng.random_range(0..TRIVIAL_BINS);
    let lin = |max: f64| max * bin as f64 / (TRIVIAL_BINS - 1) as f64;
    // torchvision draws the sign only for signed operations.
    let mut signed = |v: f64| if rng.random_range(0..2) == 1 { -v } else { v };
    match op {
        0 => Op::Identity,
        1 => Op::ShearX(signed(lin(0.99))),
        2 => Op::ShearY(signed(lin(0.99))),
        3 => Op::TranslateX(signed(lin(32.0))),
        4 => Op::TranslateY(signed(lin(32.0))),
        5 => Op::Rotate(signed(lin(135.0))),
        6 => Op::Brightness(1.0 + signed(lin(0.99))),
        7 => Op::Color(1.0 + signed(lin(0.99))),
        8 => Op::Contrast(1.0 + signed(lin(0.99))),
        9 => Op::Sharpness(1.0 + signed(lin(0.99))),
        // 8 - round(bin / ((31 - 1) / 6)).
        10 => Op::Posterize(8 - (bin as f64 / 5.0).round_ties_even() as u8),
        11 => Op::Solarize(255.0 * (1.0 - bin as f64 / (TRIVIAL_BINS - 1) as f64)),
        12 => Op::AutoContrast,
        _ => Op::Equalize,
    }
}
