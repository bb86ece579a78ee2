//! Colour maps and tensor-to-pixel conversions.

use crate::Result;
use candle_core::{DType, Tensor};
use image::{Rgb, RgbImage};

/// A colour map from `[0, 1]` to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMap {
    /// matplotlib's perceptually uniform viridis (dark blue to yellow): feature maps.
    Viridis,
    /// The rainbow "jet" of the Grad-CAM and occlusion figures (blue, cyan, yellow, red).
    Jet,
    /// Black to white.
    Gray,
}

const VIRIDIS: [(f32, [u8; 3]); 9] = [
    (0.0, [68, 1, 84]),
    (0.125, [71, 44, 122]),
    (0.25, [59, 81, 139]),
    (0.375, [44, 113, 142]),
    (0.5, [33, 144, 141]),
    (0.625, [39, 173, 129]),
    (0.75, [92, 200, 99]),
    (0.875, [170, 220, 50]),
    (1.0, [253, 231, 37]),
];

const JET: [(f32, [u8; 3]); 5] = [
    (0.0, [0, 0, 143]),
    (0.25, [0, 128, 255]),
    (0.5, [128, 255, 128]),
    (0.75, [255, 128, 0]),
    (1.0, [128, 0, 0]),
];

impl ColorMap {
    /// The colour of `t` (clamped to `[0, 1]`; NaN is black).
    pub fn color(&self, t: f32) -> [u8; 3] {
        if t.is_nan() {
            return [0, 0, 0];
        }
        let t = t.clamp(0.0, 1.0);
        let table: &[(f32, [u8; 3])] = match self {
            ColorMap::Viridis => &VIRIDIS,
            ColorMap::Jet => &JET,
            ColorMap::Gray => {
                let v = (t * 255.0).round() as u8;
                return [v, v, v];
            }
        };
        let i = table
            .iter()
            .position(|(x, _)| *x >= t)
            .unwrap_or(table.len() - 1)
            .max(1);
        let ((x0, c0), (x1, c1)) = (table[i - 1], table[i]);
        let f = if x1 > x0 { (t - x0) / (x1 - x0) } else { 0.0 };
        let mix = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * f).round() as u8;
        [mix(c0[0], c1[0]), mix(c0[1], c1[1]), mix(c0[2], c1[2])]
    }
}

/// A map `[h, w]` coloured by `cmap`, `lo` and `hi` mapping to its ends.
pub fn colorize(map: &Tensor, cmap: ColorMap, lo: f32, hi: f32) -> Result<RgbImage> {
    let (h, w) = map.dims2()?;
    let values = map.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let span = if hi > lo { hi - lo } else { 1.0 };
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        Rgb(cmap.color((values[y as usize * w + x as usize] - lo) / span))
    }))
}

/// An image `[C, H, W]` for display: scaled to `[0, 1]` by its own minimum and maximum; one
/// channel is grey, three are RGB (other counts show their mean).
pub fn to_rgb(image: &Tensor) -> Result<RgbImage> {
    let image = image.to_dtype(DType::F32)?;
    let (c, _, _) = image.dims3()?;
    let image = if c == 1 || c == 3 {
        image
    } else {
        image.mean_keepdim(0)?
    };
    let values = image.flatten_all()?.to_vec1::<f32>()?;
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    channels_to_rgb(&image, |v| (v - lo) / span)
}

/// A signed image `[C, H, W]` (a projection or a gradient) for display: 0 is mid-grey and the
/// largest magnitude reaches black or white.
pub fn signed_to_rgb(image: &Tensor) -> Result<RgbImage> {
    let image = image.to_dtype(DType::F32)?;
    let (c, _, _) = image.dims3()?;
    let image = if c == 1 || c == 3 {
        image
    } else {
        image.mean_keepdim(0)?
    };
    let max = image.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let scale = if max > 0.0 { 0.5 / max } else { 0.0 };
    channels_to_rgb(&image, |v| 0.5 + v * scale)
}

/// `[1 or 3, H, W]` through `f` (to `[0, 1]`) into pixels.
fn channels_to_rgb(image: &Tensor, f: impl Fn(f32) -> f32) -> Result<RgbImage> {
    let (c, h, w) = image.dims3()?;
    let values = image.flatten_all()?.to_vec1::<f32>()?;
    let px = |ch: usize, x: u32, y: u32| {
        let v = f(values[(ch * h + y as usize) * w + x as usize]);
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    };
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        if c == 3 {
            Rgb([px(0, x, y), px(1, x, y), px(2, x, y)])
        } else {
            let v = px(0, x, y);
            Rgb([v, v, v])
        }
    }))
}

/// `heat` `[H, W]` in `[0, 1]` coloured by `cmap` and blended over `base` (same size) with
/// weight `alpha`.
pub fn overlay(base: &RgbImage, heat: &Tensor, cmap: ColorMap, alpha: f32) -> Result<RgbImage> {
    let colored = colorize(heat, cmap, 0.0, 1.0)?;
    let mut out = base.clone();
    for (o, h) in out.pixels_mut().zip(colored.pixels()) {
        for k in 0..3 {
            o.0[k] = ((1.0 - alpha) * o.0[k] as f32 + alpha * h.0[k] as f32).round() as u8;
        }
    }
    Ok(out)
}
