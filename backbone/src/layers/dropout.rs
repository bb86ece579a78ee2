//! Dropout with seeded masks.

use super::Layer;
use crate::{Error, Result};
use candle_core::Tensor;
use rand::Rng;

/// PyTorch's `nn.Dropout(p)`: in training, zeroes each element with probability `p` and
/// scales the others by `1 / (1 - p)`; identity in eval mode. Masks come from the seeded
/// generator of [`crate::init::with_rng`], so a seeded run is reproducible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// A dropout layer; `p` must lie in `[0, 1)`.
    pub fn new(p: f32) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(format!(
                "dropout probability must be in [0, 1), got {p}"
            )));
        }
        Ok(Self { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Layer for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(xs.clone());
        }
        let scale = 1.0 / (1.0 - self.p);
        let n = xs.elem_count();
        let mask: Vec<f32> = crate::init::with_rng(|rng| {
            (0..n)
                .map(|_| if rng.random::<f32>() < self.p { 0.0 } else { scale })
                .collect()
        });
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        Ok(xs.mul(&mask)?)
    }

    fn plain(&self) -> Option<Vec<super::PlainLayer<'_>>> {
        Some(vec![super::PlainLayer::Dropout(self)])
    }
}
