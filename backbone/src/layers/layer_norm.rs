//! Layer normalisation: PyTorch's `nn.LayerNorm` over the last dimension and timm's
//! `LayerNorm2d` over the channels of an NCHW map (ConvNeXt).

use super::Layer;
use crate::summary::{self, LayerRecord};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};

/// `(x - mean) / sqrt(var + eps) * weight + bias` over dimension `dim` of `xs`, the variance
/// biased (PyTorch's `F.layer_norm`), computed in `f32` at least (`f16` / `bf16` inputs are
/// normalised in `f32` and converted back); `weight` and `bias` already shaped to broadcast.
/// Plain candle ops, so candle's autograd gives the backward pass.
fn normalise(xs: &Tensor, dim: usize, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = xs.dtype();
    let internal = match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    };
    let x = xs.to_dtype(internal)?;
    let mean = x.mean_keepdim(dim)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(dim)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    let out = normed
        .broadcast_mul(&weight.to_dtype(internal)?)?
        .broadcast_add(&bias.to_dtype(internal)?)?;
    let out = out.to_dtype(dtype)?;
    // One op for an exporter (ONNX's `LayerNormalization`), not a dozen element-wise ones.
    crate::trace::record(&out, || crate::trace::TracedOp::LayerNorm {
        input: xs.clone(),
        weight: weight.clone(),
        bias: bias.clone(),
        dim,
        eps,
    });
    Ok(out)
}

fn record(name: &str, kind: &str, channels: usize, input: &[usize], output: &[usize]) {
    summary::record(|| LayerRecord {
        name: name.to_string(),
        kind: kind.into(),
        input: input.to_vec(),
        output: output.to_vec(),
        params: 2 * channels,
        weights: channels,
        macs: 0,
    });
}

fn check_eps(kind: &str, channels: usize, eps: f64) -> Result<()> {
    if channels == 0 || !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::config(format!(
            "{kind}: channels and eps must be positive, got {channels} and {eps}"
        )));
    }
    Ok(())
}

/// PyTorch's `nn.LayerNorm(channels, eps)` with a learnable `weight` (ones) and `bias`
/// (zeros): normalises every vector along the last dimension of any input `[..., channels]`.
/// timm's and torchvision's ConvNeXt blocks use it (`eps = 1e-6`) on channels-last maps.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    channels: usize,
    eps: f64,
    name: String,
}

impl LayerNorm {
    /// The layer over the last dimension, of size `channels`; variables `weight`, `bias`.
    pub fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        check_eps("layer_norm", channels, eps)?;
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            channels,
            eps,
            name: vb.prefix(),
        })
    }

    /// The normalised size.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The added variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }
}

impl Layer for LayerNorm {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        match xs.dims().last() {
            Some(&c) if c == self.channels => {}
            _ => {
                return Err(Error::input_shape(
                    &self.name,
                    format!("[..., {}]", self.channels),
                    xs.dims(),
                ))
            }
        }
        let out = normalise(xs, xs.rank() - 1, &self.weight, &self.bias, self.eps)?;
        record(&self.name, "LayerNorm", self.channels, xs.dims(), out.dims());
        Ok(out)
    }
}

/// timm's `LayerNorm2d(channels, eps)` (torchvision's ConvNeXt `LayerNorm2d`): layer
/// normalisation over the channels of each position of an `[N, C, H, W]` map, with a learnable
/// `weight` (ones) and `bias` (zeros) per channel. ConvNeXt's stem, downsampling layers and
/// head use it with `eps = 1e-6`.
#[derive(Debug, Clone)]
pub struct LayerNorm2d {
    weight: Tensor,
    bias: Tensor,
    channels: usize,
    eps: f64,
    name: String,
}

impl LayerNorm2d {
    /// The layer over `channels` channels; variables `weight`, `bias`.
    pub fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        check_eps("layer_norm_2d", channels, eps)?;
        Ok(Self {
            weight: vb
                .get_with_hints(channels, "weight", Init::Const(1.0))?
                .reshape((1, channels, 1, 1))?,
            bias: vb
                .get_with_hints(channels, "bias", Init::Const(0.0))?
                .reshape((1, channels, 1, 1))?,
            channels,
            eps,
            name: vb.prefix(),
        })
    }

    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The added variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }
}

impl Layer for LayerNorm2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        super::check_nchw(&self.name, xs, self.channels, (1, 1))?;
        let out = normalise(xs, 1, &self.weight, &self.bias, self.eps)?;
        record(&self.name, "LayerNorm2d", self.channels, xs.dims(), out.dims());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn both_forms_agree_and_normalise() {
        let dev = Device::Cpu;
        let xs = Tensor::arange(0f32, 60., &dev)
            .unwrap()
            .reshape((2, 5, 2, 3))
            .unwrap();
        let xs = (xs.sqr().unwrap() * 0.01).unwrap();
        let vb = VarBuilder::zeros(DType::F32, &dev);
        // Zero weight and bias give zeros; the shapes are checked.
        let ln2d = LayerNorm2d::new(5, 1e-6, vb.clone()).unwrap();
        let out = ln2d.forward_t(&xs, false).unwrap();
        assert_eq!(out.dims(), [2, 5, 2, 3]);
        assert!(ln2d.forward_t(&xs.narrow(1, 0, 4).unwrap(), false).is_err());
        let ln = LayerNorm::new(5, 1e-6, vb).unwrap();
        assert!(ln.forward_t(&xs, false).is_err());
        // With unit weight and zero bias the channels-first and channels-last forms agree.
        let ones = |n: usize| Tensor::ones(n, DType::F32, &dev).unwrap();
        let zeros = |n: usize| Tensor::zeros(n, DType::F32, &dev).unwrap();
        let a = normalise(
            &xs,
            1,
            &ones(5).reshape((1, 5, 1, 1)).unwrap(),
            &zeros(5).reshape((1, 5, 1, 1)).unwrap(),
            1e-6,
        )
        .unwrap();
        let last = xs.permute((0, 2, 3, 1)).unwrap();
        let b = normalise(&last, 3, &ones(5), &zeros(5), 1e-6)
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
        assert!(LayerNorm2d::new(0, 1e-6, VarBuilder::zeros(DType::F32, &dev)).is_err());
        assert!(LayerNorm::new(3, 0.0, VarBuilder::zeros(DType::F32, &dev)).is_err());
    }
}
