//! The augmentation-recipe flags of `train` and `finetune`, with timm's `train.py` names:
//! automatic augmentation (`--aa`), random erasing (`--reprob`, `--remode`, `--recount`), the
//! crop and flip controls (`--scale`, `--ratio`, `--hflip`, `--vflip`, `--color-jitter`) and
//! mixup / CutMix (`--mixup`, `--cutmix`, `--cutmix-minmax`, `--mixup-prob`,
//! `--mixup-switch-prob`, `--mixup-mode`; the targets' smoothing is `--smoothing`, alias of
//! `--label-smoothing`). Each maps to a `trainer` type; [`AugmentArgs::pipeline`] puts the
//! per-image ones into a training pipeline, [`AugmentArgs::mixup`] gives the batch-level one.

use anyhow::{bail, Result};
use clap::ValueEnum;
use trainer::data::{
    AutoAugment, ColorJitter, EraseMode, Mixup, MixupMode, Pipeline, RandomErasing, Transform,
};

use crate::args::{non_negative, unit_closed_zero};

/// `--remode`.
#[derive(Clone, Copy, ValueEnum)]
pub enum RemodeArg {
    /// Erased boxes are 0 (the mean colour after normalisation).
    Const,
    /// One random normal colour per box.
    Rand,
    /// Random normal values per pixel (timm's default).
    Pixel,
}

/// `--mixup-mode`.
#[derive(Clone, Copy, ValueEnum)]
pub enum MixupModeArg {
    /// One draw per batch.
    Batch,
    /// One draw per pair of images.
    Pair,
    /// One draw per image.
    Elem,
}

/// The recipe flags (see the [module docs](self)).
#[derive(clap::Args)]
pub struct AugmentArgs {
    /// Automatic augmentation of each training image (timm's --aa): rand-m9-mstd0.5
    /// (RandAugment in timm's grammar: m magnitude /10, n ops, p probability, mstd magnitude
    /// noise, mmax, inc1), trivial (TrivialAugmentWide), v0 or original (AutoAugment policies).
    /// Operations as torchvision's on bytes; turns --color-jitter off, as timm.
    #[arg(long, help_heading = "Recipe")]
    pub aa: Option<String>,
    /// Random erasing probability per image, after normalisation (timm's --reprob).
    #[arg(long, default_value_t = 0.0, value_parser = unit_closed_zero, help_heading = "Recipe")]
    pub reprob: f64,
    /// Random erasing fill.
    #[arg(long, value_enum, default_value_t = RemodeArg::Pixel, help_heading = "Recipe")]
    pub remode: RemodeArg,
    /// Random erasing: up to this many boxes per image.
    #[arg(long, default_value_t = 1, value_parser = crate::args::usize_in(1, 100), help_heading = "Recipe")]
    pub recount: usize,
    /// Random-resized-crop area range, fractions of the image (e.g. --scale 0.08 1.0); needs a
    /// training transform with a random resized crop.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], value_parser = non_negative, help_heading = "Recipe")]
    pub scale: Option<Vec<f64>>,
    /// Random-resized-crop aspect-ratio range (e.g. --ratio 0.75 1.3333).
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], value_parser = non_negative, help_heading = "Recipe")]
    pub ratio: Option<Vec<f64>>,
    /// Horizontal flip probability (replaces the transform's; 0 removes it).
    #[arg(long, value_parser = unit_closed_zero, help_heading = "Recipe")]
    pub hflip: Option<f64>,
    /// Vertical flip probability.
    #[arg(long, default_value_t = 0.0, value_parser = unit_closed_zero, help_heading = "Recipe")]
    pub vflip: f64,
    /// Colour jitter strength of brightness, contrast and saturation (off with --aa).
    #[arg(long, value_parser = non_negative, help_heading = "Recipe")]
    pub color_jitter: Option<f64>,
    /// Mixup alpha; mixup is on when > 0 (timm's --mixup).
    #[arg(long, default_value_t = 0.0, value_parser = non_negative, help_heading = "Recipe")]
    pub mixup: f64,
    /// CutMix alpha; CutMix is on when > 0.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative, help_heading = "Recipe")]
    pub cutmix: f64,
    /// CutMix box side range, fractions of the image (turns CutMix on, alpha 1).
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], value_parser = unit_closed_zero, help_heading = "Recipe")]
    pub cutmix_minmax: Option<Vec<f64>>,
    /// Probability of mixing a batch (or element) when mixup or CutMix is on.
    #[arg(long, default_value_t = 1.0, value_parser = unit_closed_zero, help_heading = "Recipe")]
    pub mixup_prob: f64,
    /// Probability of CutMix instead of mixup when both are on.
    #[arg(long, default_value_t = 0.5, value_parser = unit_closed_zero, help_heading = "Recipe")]
    pub mixup_switch_prob: f64,
    /// How mixup / CutMix parameters are drawn.
    #[arg(long, value_enum, default_value_t = MixupModeArg::Batch, help_heading = "Recipe")]
    pub mixup_mode: MixupModeArg,
}

fn pair(flag: &str, values: &Option<Vec<f64>>) -> Result<Option<(f64, f64)>> {
    match values.as_deref() {
        None => Ok(None),
        Some([lo, hi]) if lo > &0.0 && lo <= hi => Ok(Some((*lo, *hi))),
        Some(v) => bail!("--{flag} takes MIN MAX with 0 < MIN <= MAX, got {v:?}"),
    }
}

impl AugmentArgs {
    /// The batch-level mixup / CutMix, when on, for `num_classes` with the targets smoothed by
    /// `smoothing`.
    pub fn mixup(&self, num_classes: usize, smoothing: f64) -> Result<Option<Mixup>> {
        let minmax = pair("cutmix-minmax", &self.cutmix_minmax)?;
        if self.mixup == 0.0 && self.cutmix == 0.0 && minmax.is_none() {
            return Ok(None);
        }
        let mixup = Mixup {
            mixup_alpha: self.mixup,
            cutmix_alpha: self.cutmix,
            cutmix_minmax: minmax,
            prob: self.mixup_prob,
            switch_prob: self.mixup_switch_prob,
            mode: match self.mixup_mode {
                MixupModeArg::Batch => MixupMode::Batch,
                MixupModeArg::Pair => MixupMode::Pair,
                MixupModeArg::Elem => MixupMode::Elem,
            },
            correct_lam: true,
            label_smoothing: smoothing,
            num_classes,
        };
        mixup.validate()?;
        Ok(Some(mixup))
    }

    /// `base` (a training pipeline ending in its normalisation) with the per-image tools:
    /// crop ranges and flip probabilities replaced, a vertical flip, colour jitter or the
    /// automatic augmentation before the normalisation, random erasing after it. `mean` is the
    /// normalisation's (the fill colour of the geometric operations).
    pub fn pipeline(&self, base: Pipeline, mean: &[f32]) -> Result<Pipeline> {
        let (scale, ratio) = (pair("scale", &self.scale)?, pair("ratio", &self.ratio)?);
        let mut steps = base.steps().to_vec();
        let mut crops = 0;
        for step in &mut steps {
            if let Transform::RandomResizedCrop {
                scale: s, ratio: r, ..
            } = step
            {
                crops += 1;
                *s = scale.unwrap_or(*s);
                *r = ratio.unwrap_or(*r);
            }
        }
        if crops == 0 && (scale.is_some() || ratio.is_some()) {
            bail!(
                "--scale and --ratio set the random resized crop, and this training transform has none \
                 (fine-tune with --augment crop-flip)"
            );
        }
        if let Some(p) = self.hflip {
            steps.retain(|s| !matches!(s, Transform::RandomHorizontalFlip(_)));
            if p > 0.0 {
                let at = crop_end(&steps);
                steps.insert(at, Transform::RandomHorizontalFlip(p));
            }
        }
        let mut extra = Vec::new();
        if self.vflip > 0.0 {
            extra.push(Transform::RandomVerticalFlip(self.vflip));
        }
        match (&self.aa, self.color_jitter) {
            (Some(spec), _) => extra.push(Transform::AutoAugment(AutoAugment::parse(spec, mean)?)),
            (None, Some(s)) if s > 0.0 => extra.push(Transform::ColorJitter(ColorJitter::uniform(s))),
            _ => {}
        }
        let normalize = steps
            .iter()
            .position(|s| matches!(s, Transform::Normalize { .. }))
            .unwrap_or(steps.len());
        steps.splice(normalize..normalize, extra);
        if self.reprob > 0.0 {
            let mode = match self.remode {
                RemodeArg::Const => EraseMode::Const,
                RemodeArg::Rand => EraseMode::Rand,
                RemodeArg::Pixel => EraseMode::Pixel,
            };
            steps.push(Transform::RandomErasing(RandomErasing::new(
                self.reprob,
                mode,
                self.recount,
            )));
        }
        Ok(Pipeline::new(steps)?)
    }

    /// The tools on, for the log (empty when none is).
    pub fn describe(&self) -> String {
        let mut on = Vec::new();
        if let Some(aa) = &self.aa {
            on.push(format!("--aa {aa}"));
        } else if let Some(s) = self.color_jitter {
            on.push(format!("color jitter {s}"));
        }
        if self.reprob > 0.0 {
            on.push(format!(
                "random erasing p={} ({} boxes at most)",
                self.reprob, self.recount
            ));
        }
        if self.vflip > 0.0 {
            on.push(format!("vertical flip p={}", self.vflip));
        }
        if self.mixup > 0.0 || self.cutmix > 0.0 || self.cutmix_minmax.is_some() {
            on.push(format!(
                "mixup {} / cutmix {} (p={}, switch {})",
                self.mixup, self.cutmix, self.mixup_prob, self.mixup_switch_prob
            ));
        }
        on.join(", ")
    }
}

/// Where a flip goes: after the last crop or resize step (else at the start).
fn crop_end(steps: &[Transform]) -> usize {
    steps
        .iter()
        .rposition(|s| {
            matches!(
                s,
                Transform::RandomResizedCrop { .. }
                    | Transform::RandomCrop { .. }
                    | Transform::CenterCrop(..)
                    | Transform::Resize { .. }
            )
        })
        .map_or(0, |i| i + 1)
}
