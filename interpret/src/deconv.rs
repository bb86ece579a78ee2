//! The deconvnet of Zeiler & Fergus 2013 (*Visualizing and Understanding Convolutional
//! Networks*, section 2.1): one activation of a layer projected back to the pixels through the
//! layers below it, each reversed in turn:
//!
//! - a max pooling **unpools** with the switches recorded in the forward pass (the location
//!   of each window's maximum; where overlapping windows share a maximum their values add, the
//!   max pooling's gradient, which `max_unpool2d` leaves undefined);
//! - a ReLU **rectifies** the signal going down (`relu(signal)`, not the forward mask);
//! - a convolution **filters** with its transposed kernels (`conv_transpose2d` with the same
//!   weights, no bias);
//! - LRN and dropout pass the signal unchanged, as in the paper, and an average pooling (LeNet-5
//!   by default, an extension of the method) spreads each value over its window (its
//!   transpose).
//!
//! As in the paper, for each of the layer's strongest channels (ranked by their maximum), every
//! activation but that channel's maximum is set to zero before projecting. The model must
//! expose its layers through [`Backbone::plain_features`] (LeNet, AlexNet, ZFNet, VGG).

use crate::input::one_image;
use crate::{Error, Result};
use backbone::layers::{Activation, Layer, PlainLayer};
use backbone::Backbone;
use candle_core::{DType, IndexOp, Tensor, Var};

/// One activation projected to pixel space.
#[derive(Debug, Clone)]
pub struct Projection {
    /// The layer it comes from.
    pub layer: String,
    /// The channel.
    pub channel: usize,
    /// The activation's value (the channel's maximum).
    pub activation: f32,
    /// Its position `(row, column)` in the layer's map.
    pub position: (usize, usize),
    /// The projection `[C, H, W]`, in the input's space.
    pub pixels: Tensor,
}

/// The names of the layers the deconvnet can project from, in order (each convolution, with its
/// ReLU when it has one, and each pooling); the error says why a model has none.
pub fn deconv_layers(model: &dyn Backbone) -> Result<Vec<String>> {
    let chain = chain(model)?;
    Ok(chain
        .iter()
        .filter(|l| {
            matches!(
                l,
                PlainLayer::Conv { .. } | PlainLayer::MaxPool(_) | PlainLayer::AvgPool(_)
            )
        })
        .map(PlainLayer::name)
        .collect())
}

fn chain(model: &dyn Backbone) -> Result<Vec<PlainLayer<'_>>> {
    model.plain_features().ok_or_else(|| Error::NotPlain {
        model: model.name().to_string(),
    })
}

/// Projects the `top_k` strongest channels of layer `layer` (see [`deconv_layers`]) of one
/// image `[1, C, H, W]` back to pixel space, strongest first.
pub fn deconvnet(model: &dyn Backbone, image: &Tensor, layer: &str, top_k: usize) -> Result<Vec<Projection>> {
    one_image(image)?;
    let chain = chain(model)?;
    let model_name = model.name().to_string();
    let end = chain
        .iter()
        .position(|l| l.name() == layer)
        .ok_or_else(|| Error::UnknownLayer {
            model: model_name.clone(),
            method: "the deconvnet",
            layer: layer.to_string(),
            available: deconv_layers(model).map(|l| l.join(", ")).unwrap_or_default(),
        })?;
    let chain = &chain[..=end];
    // Check every layer first, so a bad one fails before any work.
    for l in chain {
        let ok = match l {
            PlainLayer::Conv { activation, .. } => matches!(activation, None | Some(Activation::Relu)),
            PlainLayer::Activation(a) => *a == Activation::Relu,
            PlainLayer::MaxPool(_) | PlainLayer::AvgPool(_) | PlainLayer::Lrn(_) | PlainLayer::Dropout(_) => {
                true
            }
            PlainLayer::Other { .. } => false,
        };
        if !ok {
            return Err(Error::UnsupportedLayer {
                model: model_name,
                layer: l.name(),
                kind: l.kind(),
            });
        }
    }
    // Forward, keeping each layer's input (the switches are recomputed from it).
    let mut inputs = Vec::with_capacity(chain.len());
    let mut xs = image.detach();
    backbone::inference_mode(|| -> Result<()> {
        for l in chain {
            inputs.push(xs.clone());
            xs = forward(l, &xs)?;
        }
        Ok(())
    })?;
    let map = xs.i(0)?.to_dtype(DType::F32)?;
    let (channels, h, w) = map.dims3()?;
    let flat = map.reshape((channels, h * w))?;
    let maxima = flat.max(1)?.to_vec1::<f32>()?;
    let argmax = flat.argmax(1)?.to_vec1::<u32>()?;
    let mut order: Vec<usize> = (0..channels).collect();
    order.sort_by(|&a, &b| maxima[b].total_cmp(&maxima[a]).then(a.cmp(&b)));
    order.truncate(top_k.max(1));
    let k = order.len();
    // One signal per channel: the channel's maximum alone.
    let mut signal = vec![0f32; k * channels * h * w];
    for (j, &c) in order.iter().enumerate() {
        signal[(j * channels + c) * h * w + argmax[c] as usize] = maxima[c];
    }
    let mut signal =
        Tensor::from_vec(signal, (k, channels, h, w), image.device())?.to_dtype(image.dtype())?;
    for (l, x) in chain.iter().zip(&inputs).rev() {
        signal = backward(l, x, &signal)?;
    }
    order
        .iter()
        .enumerate()
        .map(|(j, &c)| {
            let pos = argmax[c] as usize;
            Ok(Projection {
                layer: layer.to_string(),
                channel: c,
                activation: maxima[c],
                position: (pos / w, pos % w),
                pixels: signal.i(j)?,
            })
        })
        .collect()
}

fn forward(l: &PlainLayer<'_>, xs: &Tensor) -> Result<Tensor> {
    Ok(match l {
        PlainLayer::Conv { conv, activation } => {
            let ys = conv.forward_t(xs, false)?;
            match activation {
                Some(a) => a.forward_t(&ys, false)?,
                None => ys,
            }
        }
        PlainLayer::Activation(a) => a.forward_t(xs, false)?,
        PlainLayer::MaxPool(p) => p.forward_t(xs, false)?,
        PlainLayer::AvgPool(p) => p.forward_t(xs, false)?,
        PlainLayer::Lrn(n) => n.forward_t(xs, false)?,
        PlainLayer::Dropout(_) | PlainLayer::Other { .. } => xs.clone(),
    })
}

/// `signal` `[k, ...]` (the layer's output space) -> the layer's input space, given the
/// layer's input `x` `[1, ...]`.
fn backward(l: &PlainLayer<'_>, x: &Tensor, signal: &Tensor) -> Result<Tensor> {
    let k = signal.dim(0)?;
    Ok(match l {
        PlainLayer::Conv { conv, activation } => {
            let signal = match activation {
                Some(_) => signal.relu()?,
                None => signal.clone(),
            };
            // The convolution's input gradient is the transposed convolution (no bias).
            let batch = x.broadcast_as(expand(x, k)?)?.contiguous()?;
            vjp(|v| Ok(conv.forward_t(v, false)?), &batch, &signal)?
        }
        PlainLayer::Activation(_) => signal.relu()?,
        PlainLayer::MaxPool(p) => {
            let batch = x.broadcast_as(expand(x, k)?)?.contiguous()?;
            vjp(|v| Ok(p.forward_t(v, false)?), &batch, signal)?
        }
        PlainLayer::AvgPool(p) => {
            let batch = x.broadcast_as(expand(x, k)?)?.contiguous()?;
            vjp(|v| Ok(p.forward_t(v, false)?), &batch, signal)?
        }
        PlainLayer::Lrn(_) | PlainLayer::Dropout(_) | PlainLayer::Other { .. } => signal.clone(),
    })
}

fn expand(x: &Tensor, k: usize) -> Result<Vec<usize>> {
    let mut dims = x.dims().to_vec();
    dims[0] = k;
    Ok(dims)
}

/// The vector-Jacobian product `signal^T d f(x) / d x`: the layer's backward pass.
fn vjp(f: impl Fn(&Tensor) -> Result<Tensor>, x: &Tensor, signal: &Tensor) -> Result<Tensor> {
    let leaf = Var::from_tensor(&x.detach())?;
    let ys = f(leaf.as_tensor())?;
    let grads = ys.mul(signal)?.sum_all()?.backward()?;
    match grads.get(leaf.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => Ok(x.zeros_like()?),
    }
}
