//! Layers with a train/eval flag, shared by every architecture.
//!
//! Every layer implements [`Layer`]: `forward_t(xs, train)`. Layers with parameters are built
//! from a [`candle_nn::VarBuilder`] whose prefix becomes their state-dict name (`conv1`,
//! `features.0`, ...), so one constructor serves a fresh model and a pretrained one. Layers
//! that change the shape of the data or hold parameters report themselves to
//! [`crate::summary`] when a summary is being recorded.

mod activation;
mod conv;
mod drop_path;
mod dropout;
mod gelu;
mod layer_norm;
mod layer_scale;
mod linear;
mod lrn;
mod norm;
mod plain;
mod pool;
mod squeeze_excite;
pub mod sync_bn;

pub use activation::{Activation, Flatten};
pub use conv::{Conv2d, Conv2dConfig, ConvBlock};
pub use drop_path::DropPath;
pub use dropout::Dropout;
pub use gelu::Gelu;
pub use layer_norm::{LayerNorm, LayerNorm2d};
pub use layer_scale::LayerScale;
pub use linear::Linear;
pub use lrn::LocalResponseNorm;
pub use norm::{BatchNorm2d, BatchNormConfig};
pub use plain::PlainLayer;
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, PoolConfig};
pub use squeeze_excite::{SqueezeExcite, SqueezeExciteConfig};
pub use sync_bn::{batch_norm_group, sync_batch_norm, BatchNormSync};

use crate::Result;
use candle_core::Tensor;

/// A layer whose forward pass depends on whether the model is training.
pub trait Layer: Send + Sync {
    /// Runs the layer; `train` selects training behaviour (batch statistics, dropout).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor>;

    /// The layer as a plain chain of [`PlainLayer`]s, for methods that walk a network layer
    /// by layer (the deconvnet); `None` (the default) for a layer that is not one.
    fn plain(&self) -> Option<Vec<PlainLayer<'_>>> {
        None
    }
}

impl<L: Layer + ?Sized> Layer for Box<L> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        (**self).forward_t(xs, train)
    }

    fn plain(&self) -> Option<Vec<PlainLayer<'_>>> {
        (**self).plain()
    }
}

/// Layers run one after the other, each receiving the train flag.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty container.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Layer + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// Appends a layer, builder style.
    pub fn with(mut self, layer: impl Layer + 'static) -> Self {
        self.push(layer);
        self
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the container holds no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Sequential {
    /// [`Layer::forward_t`], also returning the outputs of the layers at positions `at`
    /// (sorted), in order.
    pub fn forward_collect(&self, xs: &Tensor, train: bool, at: &[usize]) -> Result<(Tensor, Vec<Tensor>)> {
        let mut xs = xs.clone();
        let mut collected = Vec::with_capacity(at.len());
        for (i, layer) in self.layers.iter().enumerate() {
            xs = layer.forward_t(&xs, train)?;
            if at.contains(&i) {
                collected.push(xs.clone());
            }
        }
        Ok((xs, collected))
    }
}

impl Layer for Sequential {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.layers {
            xs = layer.forward_t(&xs, train)?;
        }
        Ok(xs)
    }

    /// Every layer's chain, concatenated; `None` if one of them is not plain.
    fn plain(&self) -> Option<Vec<PlainLayer<'_>>> {
        let mut out = Vec::new();
        for layer in &self.layers {
            out.extend(layer.plain()?);
        }
        Some(out)
    }
}

/// Checks that `xs` is a 4-d NCHW batch with `channels` channels and at least `min_hw`
/// spatial size; the error names `layer` and the expected shape.
pub fn check_nchw(
    layer: &str,
    xs: &Tensor,
    channels: usize,
    min_hw: (usize, usize),
) -> Result<(usize, usize, usize, usize)> {
    let dims = xs.dims();
    let expected = || format!("[N, {channels}, H>={}, W>={}]", min_hw.0, min_hw.1);
    match *dims {
        [n, c, h, w] if c == channels && h >= min_hw.0 && w >= min_hw.1 => Ok((n, c, h, w)),
        _ => Err(crate::Error::input_shape(layer, expected(), dims)),
    }
}
