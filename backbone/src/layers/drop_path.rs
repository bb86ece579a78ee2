//! Stochastic depth (drop path) with seeded masks.

use super::Layer;
use crate::{Error, Result};
use candle_core::Tensor;
use rand::Rng;

/// timm's `DropPath(p)` / `drop_path(x, p, training, scale_by_keep=True)` (torchvision's
/// `StochasticDepth(p, "row")`): in training, each sample of the batch (the first dimension)
/// is zeroed whole with probability `p` and the others are scaled by `1 / (1 - p)`; identity in
/// eval mode or with `p = 0`. Used on residual branches: `x + drop_path(branch(x))`. The
/// per-sample draws come from the seeded generator of [`crate::init::with_rng`] (the one
/// [`super::Dropout`] uses), so a seeded run is reproducible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropPath {
    p: f64,
}

impl DropPath {
    /// The layer; `p` must lie in `[0, 1)`.
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(format!(
                "drop path probability must be in [0, 1), got {p}"
            )));
        }
        Ok(Self { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Which of `n` samples are kept, drawn from the seeded generator: sample `i` is dropped
    /// when its uniform draw is below `p` (as [`super::Dropout`] draws).
    pub fn draw_keep(&self, n: usize) -> Vec<bool> {
        let p = self.p;
        crate::init::with_rng(|rng| (0..n).map(|_| rng.random::<f64>() >= p).collect())
    }

    /// The training output for a given per-sample mask: sample `i` of `xs` times
    /// `keep[i] / (1 - p)` (timm's `x * bernoulli(1 - p) / (1 - p)` with the Bernoulli draws
    /// given). `keep` must have one entry per sample.
    pub fn apply_mask(&self, xs: &Tensor, keep: &[bool]) -> Result<Tensor> {
        let n = xs.dims().first().copied().unwrap_or(0);
        if keep.len() != n {
            return Err(Error::input_shape(
                "drop_path",
                format!("a batch of {} samples", keep.len()),
                xs.dims(),
            ));
        }
        let scale = 1.0 / (1.0 - self.p);
        let mask: Vec<f64> = keep.iter().map(|&k| if k { scale } else { 0.0 }).collect();
        let mut shape = vec![1usize; xs.rank()];
        shape[0] = n;
        let mask = Tensor::from_vec(mask, shape, xs.device())?.to_dtype(xs.dtype())?;
        Ok(xs.broadcast_mul(&mask)?)
    }
}

impl Layer for DropPath {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(xs.clone());
        }
        let keep = self.draw_keep(xs.dims().first().copied().unwrap_or(0));
        self.apply_mask(xs, &keep)
    }
}

#[cfg(test)]
mod tests {
    // These draw from the process-wide generator: the crate's unit tests have no other user of
    // it (the integration tests' dropout tests run in another binary).
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn identity_in_eval_and_at_zero() {
        let xs = Tensor::ones((4, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let eval = DropPath::new(0.5).unwrap().forward_t(&xs, false).unwrap();
        let zero = DropPath::new(0.0).unwrap().forward_t(&xs, true).unwrap();
        for out in [eval, zero] {
            assert_eq!(out.sum_all().unwrap().to_scalar::<f32>().unwrap(), 48.0);
        }
        assert!(DropPath::new(1.0).is_err());
        assert!(DropPath::new(-0.1).is_err());
        assert!(DropPath::new(f64::NAN).is_err());
    }

    #[test]
    fn whole_samples_dropped_at_the_rate_and_seeded() {
        let p = 0.3;
        let layer = DropPath::new(p).unwrap();
        let n = 20_000;
        let xs = Tensor::ones((n, 2), DType::F32, &Device::Cpu).unwrap();
        crate::init::seed(7);
        let out = layer.forward_t(&xs, true).unwrap().to_vec2::<f32>().unwrap();
        let scale = (1.0 / (1.0 - p)) as f32;
        let mut kept = 0;
        for row in &out {
            // A sample is dropped or kept whole.
            assert_eq!(row[0], row[1]);
            assert!(row[0] == 0.0 || row[0] == scale, "{}", row[0]);
            kept += usize::from(row[0] != 0.0);
        }
        let rate = kept as f64 / n as f64;
        assert!((rate - (1.0 - p)).abs() < 0.02, "kept {rate}");
        crate::init::seed(7);
        let again = layer.forward_t(&xs, true).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(out, again);
        // The mask has one entry per sample.
        assert!(layer.apply_mask(&xs, &[true]).is_err());
    }
}
