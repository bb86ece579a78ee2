//! Shared checks and helpers: one image, the class to explain, softmax.

use crate::{Error, Result};
use backbone::Backbone;
use candle_core::{DType, Tensor, D};

/// Checks that `image` is one image `[1, C, H, W]`; returns `(C, H, W)`.
pub(crate) fn one_image(image: &Tensor) -> Result<(usize, usize, usize)> {
    match *image.dims() {
        [1, c, h, w] => Ok((c, h, w)),
        _ => Err(Error::invalid(
            "the image",
            "one image [1, C, H, W]",
            format!("{:?}", image.dims()),
        )),
    }
}

/// Checks `class` against the model's head.
pub(crate) fn check_class(model: &dyn Backbone, class: usize) -> Result<()> {
    if class < model.num_classes() {
        Ok(())
    } else {
        Err(Error::ClassOutOfRange {
            model: model.name().to_string(),
            class,
            classes: model.num_classes(),
        })
    }
}

/// Softmax over the last dimension, in f32.
pub(crate) fn softmax(logits: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let e = logits.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// The prediction for one image: the class (the predicted one when `class` is `None`) and its
/// probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The class explained.
    pub class: usize,
    /// Its softmax probability.
    pub probability: f32,
    /// Whether it is the model's top-1 class.
    pub predicted: bool,
}

/// Runs `model` on one image in eval mode and picks the class to explain.
pub fn predict(model: &dyn Backbone, image: &Tensor, class: Option<usize>) -> Result<Prediction> {
    one_image(image)?;
    let logits = backbone::inference_mode(|| model.forward_t(image, false))?;
    prediction(model, &logits, class)
}

/// The [`Prediction`] of `logits` `[1, classes]`.
pub(crate) fn prediction(model: &dyn Backbone, logits: &Tensor, class: Option<usize>) -> Result<Prediction> {
    let probs = softmax(logits)?.flatten_all()?.to_vec1::<f32>()?;
    let top = probs
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |best, (i, &p)| if p > best.1 { (i, p) } else { best },
        )
        .0;
    let class = class.unwrap_or(top);
    check_class(model, class)?;
    Ok(Prediction {
        class,
        probability: probs[class],
        predicted: class == top,
    })
}
