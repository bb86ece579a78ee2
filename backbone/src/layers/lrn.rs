//! Local response normalisation, like `torch.nn.LocalResponseNorm` (AlexNet).

use super::Layer;
use crate::ops;
use crate::summary::{self, LayerRecord};
use crate::{Error, Result};
use candle_core::Tensor;

/// Local response normalisation across channels, like
/// `torch.nn.LocalResponseNorm(size, alpha, beta, k)`:
///
/// `b_c = a_c / (k + alpha / size * sum_{c' = c - size/2}^{c + (size-1)/2} a_{c'}^2)^beta`,
/// channels outside the input counting as zeros (so an even `size` gives an asymmetric
/// window). AlexNet uses `size = 5, alpha = 1e-4, beta = 0.75, k = 2`.
///
/// Composed of differentiable candle ops ([`ops::local_response_norm`]): any device, autograd.
/// No parameters; `train` makes no difference.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponseNorm {
    size: usize,
    alpha: f64,
    beta: f64,
    k: f64,
    name: String,
}

impl LocalResponseNorm {
    /// A normalisation over `size` neighbouring channels. Fails with [`Error::Config`] when
    /// `size` is 0, a coefficient is not finite, or `alpha` or `k` is negative.
    pub fn new(size: usize, alpha: f64, beta: f64, k: f64) -> Result<Self> {
        if size == 0 {
            return Err(Error::config("LocalResponseNorm: size must be at least 1"));
        }
        if !(alpha.is_finite() && beta.is_finite() && k.is_finite()) {
            return Err(Error::config(format!(
                "LocalResponseNorm: alpha ({alpha}), beta ({beta}) and k ({k}) must be finite"
            )));
        }
        if alpha < 0.0 || k < 0.0 {
            return Err(Error::config(format!(
                "LocalResponseNorm: alpha ({alpha}) and k ({k}) must be >= 0"
            )));
        }
        Ok(Self {
            size,
            alpha,
            beta,
            k,
            name: String::new(),
        })
    }

    /// Sets the name shown in summaries and errors (default: empty, errors then say
    /// `LocalResponseNorm`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The layer's name (empty unless set with [`LocalResponseNorm::named`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of neighbouring channels summed over.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The multiplicative factor.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The exponent.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The additive constant.
    pub fn k(&self) -> f64 {
        self.k
    }
}

impl Layer for LocalResponseNorm {
    /// Normalises an `(N, C, ...)` batch (at least 3 dims, like PyTorch). Fails with
    /// [`Error::InputShape`] on fewer dims.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        if xs.rank() < 3 {
            let layer = if self.name.is_empty() {
                "LocalResponseNorm"
            } else {
                &self.name
            };
            return Err(Error::input_shape(
                layer,
                "[N, C, ...] (at least 3 dims)",
                xs.dims(),
            ));
        }
        let out = ops::local_response_norm(xs, self.size, self.alpha, self.beta, self.k)?;
        summary::record(|| LayerRecord::shape_only(&self.name, "LocalResponseNorm", xs.dims(), out.dims()));
        crate::trace::name_output(&out, &self.name);
        Ok(out)
    }

    fn plain(&self) -> Option<Vec<super::PlainLayer<'_>>> {
        Some(vec![super::PlainLayer::Lrn(self)])
    }
}
