//! Gradient methods for any model: Grad-CAM and Grad-CAM++ at the last stage (the map
//! [`Backbone::forward_features`] returns), and guided backpropagation to the pixels.
//!
//! The gradient of a class score with respect to the last map comes from candle's autograd:
//! the map, detached, becomes a leaf variable and [`Backbone::forward_head`] runs on it. The
//! formulas are those of `pytorch_grad_cam` (PyPI's `grad-cam`): Grad-CAM weights each channel
//! by its mean gradient; Grad-CAM++ by `sum(relu(g) * a)` with
//! `a = g^2 / (2 g^2 + sum(A) g^3 + 1e-6)` (0 where `g = 0`); the map is
//! `relu(sum_c w_c A_c)`, min-max scaled (`(x - min) / (max + 1e-7)`), bilinearly resized to
//! the image (half-pixel centres, as `cv2.resize`) and scaled again.

use crate::input::{check_class, one_image, prediction, Prediction};
use crate::Result;
use backbone::Backbone;
use candle_core::{DType, IndexOp, Tensor, Var, D};

/// Which class-activation map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamMethod {
    /// Selvaraju et al. 2017, *Grad-CAM: Visual Explanations from Deep Networks via
    /// Gradient-based Localization*.
    GradCam,
    /// Chattopadhyay et al. 2018, *Grad-CAM++: Improved Visual Explanations for Deep
    /// Convolutional Networks*.
    GradCamPlusPlus,
}

impl CamMethod {
    /// `Grad-CAM` or `Grad-CAM++`.
    pub fn label(&self) -> &'static str {
        match self {
            CamMethod::GradCam => "Grad-CAM",
            CamMethod::GradCamPlusPlus => "Grad-CAM++",
        }
    }
}

/// A class-activation map of one image.
#[derive(Debug, Clone)]
pub struct Cam {
    /// The class explained and its probability.
    pub prediction: Prediction,
    /// Each channel's weight `[C]`.
    pub weights: Tensor,
    /// `relu(sum_c w_c A_c)` at the map's resolution `[h, w]`, unscaled.
    pub map: Tensor,
    /// The map scaled to `[0, 1]` at the image's resolution `[H, W]` (pytorch_grad_cam's
    /// output).
    pub upsampled: Tensor,
}

/// The last map `[1, C, h, w]`, the logits and the gradient of `class`'s logit (the predicted
/// class when `None`) with respect to the map.
fn features_and_gradient(
    model: &dyn Backbone,
    image: &Tensor,
    class: Option<usize>,
) -> Result<(Tensor, Tensor, Prediction)> {
    one_image(image)?;
    let features = model.forward_features(image, false)?.detach();
    let leaf = Var::from_tensor(&features)?;
    let logits = model.forward_head(leaf.as_tensor(), false)?;
    let prediction = prediction(model, &logits.detach(), class)?;
    let grads = logits.i((0, prediction.class))?.backward()?;
    let grad = match grads.get(leaf.as_tensor()) {
        Some(g) => g.clone(),
        None => features.zeros_like()?,
    };
    Ok((features, grad, prediction))
}

/// Grad-CAM or Grad-CAM++ of `class` (the predicted class when `None`) for one image
/// `[1, C, H, W]`, at the last stage of any model.
pub fn grad_cam(
    model: &dyn Backbone,
    image: &Tensor,
    class: Option<usize>,
    method: CamMethod,
) -> Result<Cam> {
    let (_, _, h, w) = image.dims4()?;
    let (features, grad, prediction) = features_and_gradient(model, image, class)?;
    let (a, g) = (
        features.i(0)?.to_dtype(DType::F32)?,
        grad.i(0)?.to_dtype(DType::F32)?,
    );
    let weights = match method {
        CamMethod::GradCam => g.mean(D::Minus1)?.mean(D::Minus1)?,
        CamMethod::GradCamPlusPlus => {
            let g2 = g.sqr()?;
            let g3 = g2.mul(&g)?;
            let sum_a = a.sum_keepdim((1, 2))?;
            let denom = ((g2.affine(2.0, 1e-6)?) + g3.broadcast_mul(&sum_a)?)?;
            let aij = g2.div(&denom)?;
            let nonzero = g.ne(0f64)?.to_dtype(DType::F32)?;
            let aij = aij.mul(&nonzero)?;
            g.relu()?.mul(&aij)?.sum(D::Minus1)?.sum(D::Minus1)?
        }
    };
    let cam = a
        .broadcast_mul(&weights.unsqueeze(1)?.unsqueeze(2)?)?
        .sum(0)?
        .relu()?;
    let upsampled = min_max(&resize_bilinear(&min_max(&cam)?, h, w)?)?;
    Ok(Cam {
        prediction,
        weights,
        map: cam,
        upsampled,
    })
}

/// Guided backpropagation (Springenberg et al. 2015): the gradient of `class`'s logit (the
/// predicted class when `None`) with respect to the image `[1, C, H, W]`, every ReLU passing
/// back only positive gradients where its input was positive ([`backbone::guided_relu`]).
/// Returns `[C, H, W]` and the prediction. Models whose activations are not ReLUs
/// (EfficientNet's SiLU) give their plain gradient there, as with `pytorch_grad_cam`.
pub fn guided_backprop(
    model: &dyn Backbone,
    image: &Tensor,
    class: Option<usize>,
) -> Result<(Tensor, Prediction)> {
    one_image(image)?;
    if let Some(c) = class {
        check_class(model, c)?;
    }
    let leaf = Var::from_tensor(&image.detach())?;
    let logits = backbone::guided_relu(|| model.forward_t(leaf.as_tensor(), false))?;
    let prediction = prediction(model, &logits.detach(), class)?;
    let grads = logits.i((0, prediction.class))?.backward()?;
    let grad = match grads.get(leaf.as_tensor()) {
        Some(g) => g.i(0)?,
        None => image.i(0)?.zeros_like()?,
    };
    Ok((grad, prediction))
}

/// pytorch_grad_cam's `scale_cam_image` without resizing: `x - min`, then `/ (max + 1e-7)`.
pub fn min_max(map: &Tensor) -> Result<Tensor> {
    let shifted = map.broadcast_sub(&map.flatten_all()?.min(0)?)?;
    let max = shifted.flatten_all()?.max(0)?;
    Ok(shifted.broadcast_div(&(max + 1e-7)?)?)
}

/// Bilinear resize of a `[h, w]` map to `[height, width]` with half-pixel centres (the source
/// coordinate of output pixel `i` is `(i + 0.5) * h / height - 0.5`, clamped at 0), as
/// `cv2.resize(..., INTER_LINEAR)` and PyTorch's `interpolate(align_corners=False)` upsample.
pub fn resize_bilinear(map: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (h, w) = map.dims2()?;
    let src = map.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let taps = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        (0..out)
            .map(|i| {
                let x = ((i as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0);
                let x0 = (x.floor() as usize).min(inp - 1);
                let x1 = (x0 + 1).min(inp - 1);
                (x0, x1, (x - x0 as f64) as f32)
            })
            .collect()
    };
    let (ty, tx) = (taps(height, h), taps(width, w));
    let mut out = Vec::with_capacity(height * width);
    for &(y0, y1, fy) in &ty {
        for &(x0, x1, fx) in &tx {
            let top = src[y0][x0] * (1.0 - fx) + src[y0][x1] * fx;
            let bottom = src[y1][x0] * (1.0 - fx) + src[y1][x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    Ok(Tensor::from_vec(out, (height, width), map.device())?)
}
