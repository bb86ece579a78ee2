//! Mixup and CutMix of training batches with label smoothing: timm's `timm.data.Mixup`
//! (1.0.31), the same images and soft targets on the same random draws.
//!
//! The draws come from a [`MixupDraws`]: [`RngDraws`] over any seeded generator (the training
//! loop keys one per batch from the loader's seed, epoch and batch index, see
//! [`crate::data::batch_rng`], so a resumed run mixes exactly as an uninterrupted one), or a
//! recording of numpy's draws (`np.random.rand`, `beta`, `randint` in call order) to replay timm.
//!
//! ```
//! # fn main() -> trainer::Result<()> {
//! use rand::SeedableRng;
//! use trainer::data::{Mixup, RngDraws};
//! let mixup = Mixup { mixup_alpha: 0.8, cutmix_alpha: 1.0, ..Mixup::new(10) };
//! let mut images = vec![0.5f32; 4 * 3 * 8 * 8];
//! let mut draws = RngDraws(rand_chacha::ChaCha8Rng::seed_from_u64(0));
//! let soft = mixup.apply(&mut images, (4, 3, 8, 8), &[0, 1, 2, 3], &mut draws)?;
//! assert_eq!(soft.len(), 4 * 10); // one row of class probabilities per image
//! # Ok(()) }
//! ```

use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::error::{Error, Result};

/// The random numbers [`Mixup`] draws, named after numpy's legacy functions timm calls.
pub trait MixupDraws {
    /// A uniform number in `[0, 1)` (`np.random.rand()`).
    fn uniform(&mut self) -> Result<f64>;
    /// A `Beta(alpha, alpha)` number (`np.random.beta(alpha, alpha)`).
    fn beta(&mut self, alpha: f64) -> Result<f64>;
    /// A uniform integer in `low..high` (`np.random.randint(low, high)`).
    fn randint(&mut self, low: i64, high: i64) -> Result<i64>;
}

/// [`MixupDraws`] from a random generator.
#[derive(Debug, Clone)]
pub struct RngDraws<R>(pub R);

impl<R: Rng> MixupDraws for RngDraws<R> {
    fn uniform(&mut self) -> Result<f64> {
        Ok(self.0.random::<f64>())
    }

    fn beta(&mut self, alpha: f64) -> Result<f64> {
        let beta = Beta::new(alpha, alpha)
            .map_err(|e| Error::config(format!("mixup: Beta({alpha}, {alpha}): {e}")))?;
        Ok(beta.sample(&mut self.0))
    }

    fn randint(&mut self, low: i64, high: i64) -> Result<i64> {
        if high <= low {
            return Err(Error::config(format!("mixup: empty integer range {low}..{high}")));
        }
        Ok(self.0.random_range(low..high))
    }
}

/// How the mixing parameters are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MixupMode {
    /// One draw for the whole batch (each image mixed with the batch's reverse).
    #[default]
    Batch,
    /// One draw per pair of images `i`, `n - 1 - i`.
    Pair,
    /// One draw per image.
    Elem,
}

impl std::str::FromStr for MixupMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<MixupMode> {
        match s {
            "batch" => Ok(MixupMode::Batch),
            "pair" => Ok(MixupMode::Pair),
            "elem" => Ok(MixupMode::Elem),
            _ => Err(Error::config(format!(
                "mixup mode `{s}`: expected batch, pair or elem"
            ))),
        }
    }
}

/// timm's `Mixup`: mixup (`x * lam + x_flipped * (1 - lam)`, `lam ~ Beta(mixup_alpha)`) or
/// CutMix (a box of the flipped batch pasted in, `lam` the area kept), each with probability
/// `prob`, CutMix chosen with `switch_prob` when both are on; the targets are the smoothed
/// one-hot labels mixed by the same `lam`. The flipped batch is the batch in reverse order.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixup {
    /// Mixup's Beta parameter; 0 turns mixup off.
    pub mixup_alpha: f64,
    /// CutMix's Beta parameter; 0 turns CutMix off (unless `cutmix_minmax` is set).
    pub cutmix_alpha: f64,
    /// CutMix boxes of a random size between these fractions of each side instead of `lam`'s
    /// (CutMix is then on, with `cutmix_alpha` 1, as timm).
    pub cutmix_minmax: Option<(f64, f64)>,
    /// Probability of mixing a batch (or element).
    pub prob: f64,
    /// Probability of CutMix rather than mixup when both are on.
    pub switch_prob: f64,
    /// Per batch, pair or element.
    pub mode: MixupMode,
    /// Recompute `lam` from the CutMix box clipped to the image.
    pub correct_lam: bool,
    /// Label smoothing of the targets.
    pub label_smoothing: f64,
    /// Classes of the targets.
    pub num_classes: usize,
}

impl Mixup {
    /// timm's defaults (mixup alpha 1, no CutMix, probability 1, switch 0.5, per batch, lam
    /// corrected, smoothing 0.1) for `num_classes` classes.
    pub fn new(num_classes: usize) -> Mixup {
        Mixup {
            mixup_alpha: 1.0,
            cutmix_alpha: 0.0,
            cutmix_minmax: None,
            prob: 1.0,
            switch_prob: 0.5,
            mode: MixupMode::Batch,
            correct_lam: true,
            label_smoothing: 0.1,
            num_classes,
        }
    }

    fn cutmix(&self) -> f64 {
        if self.cutmix_minmax.is_some() {
            1.0
        } else {
            self.cutmix_alpha
        }
    }

    /// Checks the settings: at least one of mixup and CutMix on, probabilities in `[0, 1]`,
    /// smoothing in `[0, 1)`, an ordered min-max in `(0, 1]`, at least one class.
    pub fn validate(&self) -> Result<()> {
        let unit = |p: f64| (0.0..=1.0).contains(&p);
        let ok = self.mixup_alpha.is_finite()
            && self.mixup_alpha >= 0.0
            && self.cutmix_alpha.is_finite()
            && self.cutmix_alpha >= 0.0
            && (self.mixup_alpha > 0.0 || self.cutmix() > 0.0)
            && unit(self.prob)
            && unit(self.switch_prob)
            && (0.0..1.0).contains(&self.label_smoothing)
            && self.num_classes > 0
            && self
                .cutmix_minmax
                .is_none_or(|(lo, hi)| lo > 0.0 && lo < hi && hi <= 1.0);
        if ok {
            Ok(())
        } else {
            Err(Error::config(format!(
                "mixup: invalid settings {self:?} (need mixup or cutmix alpha > 0, probabilities in [0, \
                 1], smoothing in [0, 1), cutmix min-max 0 < min < max <= 1)"
            )))
        }
    }

    /// Whether it can change anything (a probability above 0).
    pub fn is_active(&self) -> bool {
        self.prob > 0.0
    }

    /// Mixes the `[n, c, h, w]` batch `images` in place and returns the `[n, num_classes]` soft
    /// targets (row-major) of `labels`, drawing from `draws` in timm's order. Fails when the
    /// sizes do not match, a label is out of range or a draw fails.
    pub fn apply(
        &self,
        images: &mut [f32],
        (n, c, h, w): (usize, usize, usize, usize),
        labels: &[u32],
        draws: &mut dyn MixupDraws,
    ) -> Result<Vec<f32>> {
        self.validate()?;
        if images.len() != n * c * h * w || labels.len() != n || n == 0 {
            return Err(Error::config(format!(
                "mixup: {} values and {} labels for a batch of {n}x{c}x{h}x{w}",
                images.len(),
                labels.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= self.num_classes) {
            return Err(Error::config(format!(
                "mixup: label {bad} out of range for {} classes",
                self.num_classes
            )));
        }
        let lam = match self.mode {
            MixupMode::Batch => Lam::Batch(self.mix_batch(images, (n, c, h, w), draws)?),
            MixupMode::Elem => Lam::Elem(self.mix_elem(images, (n, c, h, w), draws)?),
            MixupMode::Pair => Lam::Elem(self.mix_pair(images, (n, c, h, w), draws)?),
        };
        Ok(self.targets(labels, &lam))
    }

    /// [`apply`](Mixup::apply) to a batch of tensors: `images` `[N, C, H, W]` (any float dtype,
    /// any device; mixed on the host in `f32`) and `labels` `[N]`; returns the mixed images (of
    /// the images' dtype, on their device) and the `[N, num_classes]` `f32` soft targets.
    pub fn apply_tensors(
        &self,
        images: &candle_core::Tensor,
        labels: &candle_core::Tensor,
        draws: &mut dyn MixupDraws,
    ) -> Result<(candle_core::Tensor, candle_core::Tensor)> {
        use candle_core::{DType, Tensor};
        let dims = images.dims4()?;
        let mut pixels = images.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let labels = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let soft = self.apply(&mut pixels, dims, &labels, draws)?;
        let device = images.device();
        let mixed = Tensor::from_vec(pixels, dims, device)?.to_dtype(images.dtype())?;
        let soft = Tensor::from_vec(soft, (dims.0, self.num_classes), device)?;
        Ok((mixed, soft))
    }

    /// timm's `mixup_target`: smoothed one-hot rows mixed with the reversed batch's.
    fn targets(&self, labels: &[u32], lam: &Lam) -> Vec<f32> {
        let k = self.num_classes;
        let off_value = self.label_smoothing / k as f64;
        let (on, off) = ((1.0 - self.label_smoothing + off_value) as f32, off_value as f32);
        let n = labels.len();
        let mut out = vec![0f32; n * k];
        for (i, row) in out.chunks_exact_mut(k).enumerate() {
            let (a, b) = (labels[i] as usize, labels[n - 1 - i] as usize);
            let (l1, l2) = match lam {
                Lam::Batch(lam) => (*lam as f32, (1.0 - lam) as f32),
                Lam::Elem(lams) => (lams[i], 1.0 - lams[i]),
            };
            for (j, v) in row.iter_mut().enumerate() {
                let y1 = if j == a { on } else { off };
                let y2 = if j == b { on } else { off };
                *v = y1 * l1 + y2 * l2;
            }
        }
        out
    }

    /// `lam_mix` of one draw: (lam, use CutMix).
    fn draw_mix(&self, draws: &mut dyn MixupDraws) -> Result<(f64, bool)> {
        let (mix, cut) = (self.mixup_alpha, self.cutmix());
        if mix > 0.0 && cut > 0.0 {
            let use_cutmix = draws.uniform()? < self.switch_prob;
            let lam = draws.beta(if use_cutmix { cut } else { mix })?;
            Ok((lam, use_cutmix))
        } else if mix > 0.0 {
            Ok((draws.beta(mix)?, false))
        } else {
            Ok((draws.beta(cut)?, true))
        }
    }

    fn mix_batch(
        &self,
        x: &mut [f32],
        (n, c, h, w): (usize, usize, usize, usize),
        draws: &mut dyn MixupDraws,
    ) -> Result<f64> {
        let (mut lam, mut use_cutmix) = (1.0, false);
        if draws.uniform()? < self.prob {
            (lam, use_cutmix) = self.draw_mix(draws)?;
        }
        if lam == 1.0 {
            return Ok(1.0);
        }
        let image = c * h * w;
        let orig = x.to_vec();
        if use_cutmix {
            let (bbox, corrected) = self.bbox_and_lam((h, w), lam, false, draws)?;
            for i in 0..n {
                let j = n - 1 - i;
                paste(
                    &mut x[i * image..(i + 1) * image],
                    &orig[j * image..(j + 1) * image],
                    (c, h, w),
                    bbox,
                );
            }
            Ok(corrected)
        } else {
            let (l, m) = (lam as f32, (1.0 - lam) as f32);
            for i in 0..n {
                let j = n - 1 - i;
                for (v, &o) in x[i * image..(i + 1) * image]
                    .iter_mut()
                    .zip(&orig[j * image..(j + 1) * image])
                {
                    *v = *v * l + o * m;
                }
            }
            Ok(lam)
        }
    }

    /// timm's `_params_per_elem`: `lam` (as `f32`) and CutMix choice of `count` elements.
    fn params_per_elem(&self, count: usize, draws: &mut dyn MixupDraws) -> Result<(Vec<f32>, Vec<bool>)> {
        let (mix, cut) = (self.mixup_alpha, self.cutmix());
        let mut use_cutmix = vec![false; count];
        let lam_mix: Vec<f64> = if mix > 0.0 && cut > 0.0 {
            for u in &mut use_cutmix {
                *u = draws.uniform()? < self.switch_prob;
            }
            // numpy draws both arrays, then picks.
            let cut_lams = (0..count).map(|_| draws.beta(cut)).collect::<Result<Vec<_>>>()?;
            let mix_lams = (0..count).map(|_| draws.beta(mix)).collect::<Result<Vec<_>>>()?;
            (0..count)
                .map(|i| if use_cutmix[i] { cut_lams[i] } else { mix_lams[i] })
                .collect()
        } else if mix > 0.0 {
            (0..count).map(|_| draws.beta(mix)).collect::<Result<_>>()?
        } else {
            use_cutmix.fill(true);
            (0..count).map(|_| draws.beta(cut)).collect::<Result<_>>()?
        };
        let mut lam = vec![1f32; count];
        for (l, mixed) in lam.iter_mut().zip(lam_mix) {
            if draws.uniform()? < self.prob {
                *l = mixed as f32;
            }
        }
        Ok((lam, use_cutmix))
    }

    fn mix_elem(
        &self,
        x: &mut [f32],
        (n, c, h, w): (usize, usize, usize, usize),
        draws: &mut dyn MixupDraws,
    ) -> Result<Vec<f32>> {
        let (mut lams, use_cutmix) = self.params_per_elem(n, draws)?;
        let image = c * h * w;
        let orig = x.to_vec();
        for i in 0..n {
            let j = n - 1 - i;
            let lam = lams[i];
            if lam == 1.0 {
                continue;
            }
            let (dst, src) = (
                &mut x[i * image..(i + 1) * image],
                &orig[j * image..(j + 1) * image],
            );
            if use_cutmix[i] {
                let (bbox, corrected) = self.bbox_and_lam((h, w), f64::from(lam), true, draws)?;
                paste(dst, src, (c, h, w), bbox);
                lams[i] = corrected as f32;
            } else {
                let m = 1.0 - lam;
                for (v, &o) in dst.iter_mut().zip(src) {
                    *v = *v * lam + o * m;
                }
            }
        }
        Ok(lams)
    }

    /// Pairs `i`, `n - 1 - i` mixed with each other (the middle image of an odd batch is left
    /// alone, `lam` 1: timm refuses odd batches).
    fn mix_pair(
        &self,
        x: &mut [f32],
        (n, c, h, w): (usize, usize, usize, usize),
        draws: &mut dyn MixupDraws,
    ) -> Result<Vec<f32>> {
        let half = n / 2;
        let (mut lams, use_cutmix) = self.params_per_elem(half, draws)?;
        let image = c * h * w;
        let orig = x.to_vec();
        for i in 0..half {
            let j = n - 1 - i;
            let lam = lams[i];
            if lam == 1.0 {
                continue;
            }
            let (oi, oj) = (
                &orig[i * image..(i + 1) * image],
                &orig[j * image..(j + 1) * image],
            );
            if use_cutmix[i] {
                let (bbox, corrected) = self.bbox_and_lam((h, w), f64::from(lam), true, draws)?;
                paste(&mut x[i * image..(i + 1) * image], oj, (c, h, w), bbox);
                paste(&mut x[j * image..(j + 1) * image], oi, (c, h, w), bbox);
                lams[i] = corrected as f32;
            } else {
                let m = 1.0 - lam;
                for (v, &o) in x[i * image..(i + 1) * image].iter_mut().zip(oj) {
                    *v = *v * lam + o * m;
                }
                for (v, &o) in x[j * image..(j + 1) * image].iter_mut().zip(oi) {
                    *v = *v * lam + o * m;
                }
            }
        }
        let mut all = lams.clone();
        if n % 2 == 1 {
            all.push(1.0);
        }
        all.extend(lams.iter().rev());
        Ok(all)
    }

    /// timm's `cutmix_bbox_and_lam`: the box `(yl, yh, xl, xh)` and the corrected `lam`. `single`:
    /// `lam` is numpy `float32` (per element), so the box side is computed in `f32` as numpy does.
    fn bbox_and_lam(
        &self,
        (h, w): (usize, usize),
        lam: f64,
        single: bool,
        draws: &mut dyn MixupDraws,
    ) -> Result<(Bbox, f64)> {
        let (hi, wi) = (h as i64, w as i64);
        let bbox = match self.cutmix_minmax {
            Some((lo, hi_frac)) => {
                let cut_h = draws.randint((h as f64 * lo) as i64, (h as f64 * hi_frac) as i64)?;
                let cut_w = draws.randint((w as f64 * lo) as i64, (w as f64 * hi_frac) as i64)?;
                let yl = draws.randint(0, hi - cut_h + 1)?;
                let xl = draws.randint(0, wi - cut_w + 1)?;
                (yl, yl + cut_h, xl, xl + cut_w)
            }
            None => {
                let (cut_h, cut_w) = if single {
                    let ratio = (1.0f32 - lam as f32).sqrt();
                    ((h as f32 * ratio) as i64, (w as f32 * ratio) as i64)
                } else {
                    let ratio = (1.0 - lam).sqrt();
                    ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64)
                };
                let cy = draws.randint(0, hi)?;
                let cx = draws.randint(0, wi)?;
                (
                    (cy - cut_h / 2).clamp(0, hi),
                    (cy + (cut_h + 1) / 2).clamp(0, hi),
                    (cx - cut_w / 2).clamp(0, wi),
                    (cx + (cut_w + 1) / 2).clamp(0, wi),
                )
            }
        };
        let lam = if self.correct_lam || self.cutmix_minmax.is_some() {
            let area = (bbox.1 - bbox.0) * (bbox.3 - bbox.2);
            1.0 - area as f64 / (h * w) as f64
        } else {
            lam
        };
        let clip = |v: i64, max: i64| v.clamp(0, max) as usize;
        Ok((
            Bbox {
                y: (clip(bbox.0, hi), clip(bbox.1, hi)),
                x: (clip(bbox.2, wi), clip(bbox.3, wi)),
            },
            lam,
        ))
    }
}

/// A CutMix box: rows `y.0..y.1`, columns `x.0..x.1`.
#[derive(Debug, Clone, Copy)]
struct Bbox {
    y: (usize, usize),
    x: (usize, usize),
}

enum Lam {
    Batch(f64),
    Elem(Vec<f32>),
}

/// Copies the box of `src` into `dst`, both `c x h x w` images.
fn paste(dst: &mut [f32], src: &[f32], (c, h, w): (usize, usize, usize), bbox: Bbox) {
    if bbox.x.0 >= bbox.x.1 {
        return;
    }
    for ch in 0..c {
        for y in bbox.y.0..bbox.y.1 {
            let row = (ch * h + y) * w;
            dst[row + bbox.x.0..row + bbox.x.1].copy_from_slice(&src[row + bbox.x.0..row + bbox.x.1]);
        }
    }
}
