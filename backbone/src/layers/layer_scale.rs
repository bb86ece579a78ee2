//! Layer scale: a learnable per-channel factor on a residual branch (CaiT, ConvNeXt).

use super::Layer;
use crate::summary::{self, LayerRecord};
use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// A learnable per-channel scale `gamma` (timm's `gamma`, torchvision's `layer_scale`),
/// initialised to `init_value` (ConvNeXt: `1e-6`). [`Layer::forward_t`] scales the last
/// dimension (channels-last inputs, timm's `x.mul(gamma)`); [`LayerScale::forward_nchw`]
/// scales dimension 1 of an `[N, C, H, W]` map (torchvision's `layer_scale * x` with its
/// `[C, 1, 1]` parameter). The variable is `gamma`, of shape `[channels]`.
#[derive(Debug, Clone)]
pub struct LayerScale {
    gamma: Tensor,
    channels: usize,
    name: String,
}

impl LayerScale {
    /// The layer over `channels` channels; variable `gamma` (filled with `init_value` when
    /// fresh).
    pub fn new(channels: usize, init_value: f64, vb: VarBuilder) -> Result<Self> {
        if channels == 0 {
            return Err(Error::config("layer_scale: channels must be positive"));
        }
        Ok(Self {
            gamma: vb.get_with_hints(channels, "gamma", Init::Const(init_value))?,
            name: vb.pp("gamma").prefix(),
            channels,
        })
    }

    /// The scale, `[channels]`.
    pub fn gamma(&self) -> &Tensor {
        &self.gamma
    }

    fn record(&self, dims: &[usize]) {
        summary::record(|| LayerRecord {
            name: self.name.clone(),
            kind: "LayerScale".into(),
            input: dims.to_vec(),
            output: dims.to_vec(),
            params: self.channels,
            weights: self.channels,
            macs: 0,
        });
    }

    /// Scales the channels of an `[N, C, H, W]` map.
    pub fn forward_nchw(&self, xs: &Tensor) -> Result<Tensor> {
        super::check_nchw(&self.name, xs, self.channels, (1, 1))?;
        let gamma = self
            .gamma
            .reshape((1, self.channels, 1, 1))?
            .to_dtype(xs.dtype())?;
        let out = xs.broadcast_mul(&gamma)?;
        self.record(xs.dims());
        Ok(out)
    }
}

impl Layer for LayerScale {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        if xs.dims().last() != Some(&self.channels) {
            return Err(Error::input_shape(
                &self.name,
                format!("[..., {}]", self.channels),
                xs.dims(),
            ));
        }
        let out = xs.broadcast_mul(&self.gamma.to_dtype(xs.dtype())?)?;
        self.record(xs.dims());
        Ok(out)
    }
}
