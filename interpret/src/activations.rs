//! Feature maps and first-layer filters.
//!
//! - [`stage_activations`]: the maps of named stages ([`Backbone::feature_info`]'s modules) for
//!   one image, and [`top_channels`], the channels with the strongest maximum.
//! - [`filter_images`]: a convolution's kernels as small images, each scaled to `[0, 1]` by
//!   its own minimum and maximum (as in the AlexNet and ZFNet figures of the first layer).

use crate::input::one_image;
use crate::{Error, Result};
use backbone::{Backbone, FeatureInfo};
use candle_core::{DType, IndexOp, Tensor};

/// The maps `[C, h, w]` of the stages named `stages` (every stage when empty) for one image
/// `[1, C, H, W]`, with their descriptions; an unknown name is an error listing the stages.
pub fn stage_activations(
    model: &dyn Backbone,
    image: &Tensor,
    stages: &[String],
) -> Result<Vec<(FeatureInfo, Tensor)>> {
    one_image(image)?;
    let info = model.feature_info();
    let indices: Vec<usize> = if stages.is_empty() {
        (0..info.len()).collect()
    } else {
        stages
            .iter()
            .map(|name| {
                info.iter()
                    .position(|f| &f.module == name)
                    .ok_or_else(|| Error::UnknownLayer {
                        model: model.name().to_string(),
                        method: "activations",
                        layer: name.clone(),
                        available: info
                            .iter()
                            .map(|f| f.module.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            })
            .collect::<Result<_>>()?
    };
    let maps = backbone::inference_mode(|| model.forward_intermediates(image, &indices, false))?;
    indices
        .iter()
        .zip(maps)
        .map(|(&i, m)| Ok((info[i].clone(), m.i(0)?.to_dtype(DType::F32)?)))
        .collect()
}

/// One channel of a feature map.
#[derive(Debug, Clone)]
pub struct ChannelMap {
    /// The channel.
    pub channel: usize,
    /// Its maximum.
    pub max: f32,
    /// The map `[h, w]`.
    pub map: Tensor,
}

/// The `k` channels of `maps` `[C, h, w]` with the largest maximum, strongest first (ties by
/// channel index).
pub fn top_channels(maps: &Tensor, k: usize) -> Result<Vec<ChannelMap>> {
    let (c, h, w) = maps.dims3()?;
    let maxima = maps
        .to_dtype(DType::F32)?
        .reshape((c, h * w))?
        .max(1)?
        .to_vec1::<f32>()?;
    let mut order: Vec<usize> = (0..c).collect();
    order.sort_by(|&a, &b| maxima[b].total_cmp(&maxima[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|ch| {
            Ok(ChannelMap {
                channel: ch,
                max: maxima[ch],
                map: maps.i(ch)?,
            })
        })
        .collect()
}

/// Each kernel of a convolution weight `[O, I, kh, kw]` scaled to `[0, 1]` by its own minimum
/// and maximum: `[O, 3, kh, kw]` for 3 input channels (colour), `[O, 1, kh, kw]` otherwise
/// (one channel, or the mean over the input channels).
pub fn filter_images(weight: &Tensor) -> Result<Tensor> {
    let (o, i, _, _) = weight.dims4().map_err(|_| {
        Error::invalid(
            "the first convolution's weight",
            "[out, in, kh, kw]",
            format!("{:?}", weight.dims()),
        )
    })?;
    let w = weight.to_dtype(DType::F32)?;
    let w = if i == 3 || i == 1 { w } else { w.mean_keepdim(1)? };
    let flat = w.reshape((o, ()))?;
    let min = flat.min_keepdim(1)?;
    let shifted = flat.broadcast_sub(&min)?;
    let range = (shifted.max_keepdim(1)? + 1e-12)?;
    Ok(shifted.broadcast_div(&range)?.reshape(w.dims())?)
}
