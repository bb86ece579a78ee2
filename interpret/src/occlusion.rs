//! Occlusion sensitivity (Zeiler & Fergus 2013, section 4.2, fig. 7): the probability of a
//! class as a grey square slides over the image. Where it drops, the model looks.
//!
//! The occluded copies run through the model in batches ([`OcclusionConfig::batch`] copies a
//! forward pass), in inference mode.

use crate::input::{one_image, predict, softmax, Prediction};
use crate::{Error, Result};
use backbone::Backbone;
use candle_core::{DType, Tensor};

/// The sliding square.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OcclusionConfig {
    /// Side of the square, in input pixels.
    pub patch: usize,
    /// Step between positions, in input pixels.
    pub stride: usize,
    /// The value the square holds, in the model's input space: 0 is the normalisation's mean,
    /// the paper's grey.
    pub fill: f32,
    /// Occluded copies per forward pass.
    pub batch: usize,
}

impl Default for OcclusionConfig {
    /// An 8-pixel square every 2 pixels, grey, 64 copies a pass.
    fn default() -> Self {
        Self {
            patch: 8,
            stride: 2,
            fill: 0.0,
            batch: 64,
        }
    }
}

/// The class probability with the square at each position.
#[derive(Debug, Clone)]
pub struct OcclusionMap {
    /// The class and its probability on the intact image.
    pub prediction: Prediction,
    /// Positions down.
    pub rows: usize,
    /// Positions across.
    pub cols: usize,
    /// The probability with the square's top-left corner at `(r * stride, c * stride)`,
    /// row-major, `rows * cols` values.
    pub probabilities: Vec<f32>,
    /// The settings used.
    pub config: OcclusionConfig,
}

impl OcclusionMap {
    /// The position `(row, column)` of the square's top-left corner (in pixels) where the
    /// probability is lowest.
    pub fn most_sensitive(&self) -> (usize, usize) {
        let i = self
            .probabilities
            .iter()
            .enumerate()
            .fold(
                (0, f32::INFINITY),
                |best, (i, &p)| if p < best.1 { (i, p) } else { best },
            )
            .0;
        (
            (i / self.cols) * self.config.stride,
            (i % self.cols) * self.config.stride,
        )
    }

    /// The map `[rows, cols]` as a tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.probabilities.clone(),
            (self.rows, self.cols),
            &candle_core::Device::Cpu,
        )?)
    }
}

/// Slides the square over one image `[1, C, H, W]` and records the probability of `class` (the
/// predicted class when `None`); `progress(done, total)` is called after each batch.
pub fn occlusion(
    model: &dyn Backbone,
    image: &Tensor,
    class: Option<usize>,
    config: OcclusionConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<OcclusionMap> {
    let (c, h, w) = one_image(image)?;
    if config.patch == 0 || config.patch > h.min(w) {
        return Err(Error::invalid(
            "occlusion patch",
            format!("a side from 1 to {} (the image is {h}x{w})", h.min(w)),
            config.patch,
        ));
    }
    if config.stride == 0 || config.batch == 0 {
        return Err(Error::invalid(
            "occlusion stride and batch",
            "at least 1",
            format!("stride {}, batch {}", config.stride, config.batch),
        ));
    }
    let prediction = predict(model, image, class)?;
    let rows = (h - config.patch) / config.stride + 1;
    let cols = (w - config.patch) / config.stride + 1;
    let total = rows * cols;
    let base = image.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut probabilities = Vec::with_capacity(total);
    let mut start = 0;
    // The weights do not change between the batches: the convolutions prepare their
    // transformed weights for the first and reuse them.
    backbone::with_frozen_weights(|| -> Result<()> {
        while start < total {
            let n = config.batch.min(total - start);
            let mut data = Vec::with_capacity(n * base.len());
            for i in start..start + n {
                let (top, left) = ((i / cols) * config.stride, (i % cols) * config.stride);
                let mut copy = base.clone();
                for ch in 0..c {
                    for y in top..top + config.patch {
                        let row = (ch * h + y) * w;
                        copy[row + left..row + left + config.patch].fill(config.fill);
                    }
                }
                data.extend(copy);
            }
            let batch = Tensor::from_vec(data, (n, c, h, w), image.device())?.to_dtype(image.dtype())?;
            let logits = model.forward_t(&batch, false)?;
            let probs = softmax(&logits)?.to_vec2::<f32>()?;
            probabilities.extend(probs.iter().map(|row| row[prediction.class]));
            start += n;
            progress(start, total);
        }
        Ok(())
    })?;
    Ok(OcclusionMap {
        prediction,
        rows,
        cols,
        probabilities,
        config,
    })
}
