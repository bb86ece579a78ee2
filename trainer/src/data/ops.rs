//! The image operations of the augmentation policies (AutoAugment, RandAugment,
//! TrivialAugmentWide: see [`crate::data::policy`]), as torchvision's `transforms.v2.functional`
//! computes them on `uint8` tensors: geometric ones (shear, translate, rotate) by nearest-neighbour
//! sampling of the inverse affine map (`F.affine` / `F.rotate`, `grid_sample` with
//! `align_corners=False`), colour ones (brightness, saturation, contrast, sharpness, posterize,
//! solarize, autocontrast, equalize, invert) with the same `f32` arithmetic and truncation to
//! bytes; `SolarizeAdd` is timm's (`auto_augment.solarize_add`, no torchvision counterpart).
//!
//! The operations work on [`Bytes`], an image of `u8` values; [`Bytes::from_image`] quantises an
//! [`Image`] in `[0, 1]` (`round(x * 255)`, clamped) as timm's PIL images are, and
//! [`Bytes::to_image`] maps back (`byte / 255`).

use crate::data::image::Image;
use crate::error::{Error, Result};

/// An image of bytes, `channels` planes of `height` x `width`, CHW.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes {
    /// Number of channels (1 or 3 for the colour operations).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels * height * width` bytes, CHW.
    pub data: Vec<u8>,
}

impl Bytes {
    /// An image of bytes from its CHW values; fails when the count does not match.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<u8>) -> Result<Bytes> {
        if channels == 0 || height == 0 || width == 0 || channels * height * width != data.len() {
            return Err(Error::config(format!(
                "byte image: {channels} channels of {height}x{width} need {} values, got {}",
                channels * height * width,
                data.len()
            )));
        }
        Ok(Bytes {
            channels,
            height,
            width,
            data,
        })
    }

    /// `round(clamp(x, 0, 1) * 255)` of each value.
    pub fn from_image(image: &Image) -> Bytes {
        Bytes {
            channels: image.channels,
            height: image.height,
            width: image.width,
            data: image
                .data
                .iter()
                .map(|&x| (x.clamp(0.0, 1.0) * 255.0).round_ties_even() as u8)
                .collect(),
        }
    }

    /// `byte / 255` of each value.
    pub fn to_image(&self) -> Image {
        Image {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data: self.data.iter().map(|&b| f32::from(b) / 255.0).collect(),
        }
    }

    fn plane_len(&self) -> usize {
        self.height * self.width
    }
}

/// One operation with its argument, as torchvision's functional call takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// The image unchanged.
    Identity,
    /// `F.affine(shear=[degrees(atan(f)), 0], center=[0, 0])`: `out(x, y) = in(x + f * y, y)`.
    ShearX(f64),
    /// `F.affine(shear=[0, degrees(atan(f))], center=[0, 0])`: `out(x, y) = in(x, y + f * x)`.
    ShearY(f64),
    /// `F.affine(translate=[int(p), 0])`: moved right by `p` pixels (truncated).
    TranslateX(f64),
    /// `F.affine(translate=[0, int(p)])`: moved down by `p` pixels (truncated).
    TranslateY(f64),
    /// `F.rotate(angle)`: counter-clockwise by `angle` degrees about the centre.
    Rotate(f64),
    /// `F.adjust_brightness(factor)`.
    Brightness(f64),
    /// `F.adjust_saturation(factor)` (PIL's `ImageEnhance.Color`).
    Color(f64),
    /// `F.adjust_contrast(factor)`.
    Contrast(f64),
    /// `F.adjust_sharpness(factor)`.
    Sharpness(f64),
    /// `F.posterize(bits)`: the `bits` high bits kept (0 to 8).
    Posterize(u8),
    /// `F.solarize(threshold)`: values `>= threshold` inverted (none above 255).
    Solarize(f64),
    /// timm's `solarize_add`: `add` added (saturating) to values below `threshold`.
    SolarizeAdd {
        /// Added to the values below the threshold.
        add: u8,
        /// Values below it change.
        threshold: u8,
    },
    /// `F.autocontrast`: each channel stretched to `[0, 255]`.
    AutoContrast,
    /// `F.equalize`: each channel's histogram equalised (PIL's algorithm).
    Equalize,
    /// `F.invert`: `255 - x`.
    Invert,
}

impl Op {
    /// Applies the operation; `fill` is the value of each channel where a geometric operation
    /// samples outside the image (timm: the dataset mean colour, torchvision: 0). Fails when a
    /// colour operation meets a channel count other than 1 or 3, or a factor is negative.
    pub fn apply(&self, image: &Bytes, fill: &[u8]) -> Result<Bytes> {
        let colour = |what: &str| -> Result<()> {
            if image.channels == 1 || image.channels == 3 {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "{what}: images of 1 or 3 channels only, got {}",
                    image.channels
                )))
            }
        };
        let factor = |what: &str, f: f64| -> Result<f64> {
            colour(what)?;
            if f.is_finite() && f >= 0.0 {
                Ok(f)
            } else {
                Err(Error::config(format!("{what}: the factor must be >= 0, got {f}")))
            }
        };
        Ok(match *self {
            Op::Identity => image.clone(),
            Op::ShearX(f) => affine(image, [1.0, f.atan().to_degrees(), 0.0], (0.0, 0.0), true, fill),
            Op::ShearY(f) => affine(image, [1.0, 0.0, f.atan().to_degrees()], (0.0, 0.0), true, fill),
            Op::TranslateX(p) => affine(image, [1.0, 0.0, 0.0], (p.trunc(), 0.0), false, fill),
            Op::TranslateY(p) => affine(image, [1.0, 0.0, 0.0], (0.0, p.trunc()), false, fill),
            Op::Rotate(angle) => rotate(image, angle, fill),
            Op::Brightness(f) => {
                let f = factor("brightness", f)?;
                map(image, |x| truncate(f32::from(x) * f as f32))
            }
            Op::Color(f) => {
                let f = factor("saturation", f)?;
                if image.channels == 1 {
                    image.clone()
                } else {
                    let grey = grayscale(image);
                    let mut out = image.clone();
                    let plane = image.plane_len();
                    for chunk in out.data.chunks_exact_mut(plane) {
                        for (x, &g) in chunk.iter_mut().zip(&grey) {
                            *x = blend(*x, g, f);
                        }
                    }
                    out
                }
            }
            Op::Contrast(f) => {
                let f = factor("contrast", f)?;
                let grey = if image.channels == 3 {
                    grayscale(image)
                } else {
                    image.data.iter().map(|&x| f32::from(x)).collect()
                };
                let mean = (grey.iter().map(|&g| f64::from(g)).sum::<f64>() / grey.len() as f64) as f32;
                map(image, |x| blend(x, mean, f))
            }
            Op::Sharpness(f) => sharpness(image, factor("sharpness", f)?),
            Op::Posterize(bits) => {
                if bits >= 8 {
                    image.clone()
                } else {
                    let mask = (((1u16 << bits) - 1) << (8 - bits)) as u8;
                    map(image, |x| x & mask)
                }
            }
            Op::Solarize(threshold) => map(image, |x| if f64::from(x) >= threshold { 255 - x } else { x }),
            Op::SolarizeAdd { add, threshold } => {
                map(image, |x| if x < threshold { x.saturating_add(add) } else { x })
            }
            Op::AutoContrast => {
                colour("autocontrast")?;
                autocontrast(image)
            }
            Op::Equalize => equalize(image),
            Op::Invert => map(image, |x| 255 - x),
        })
    }
}

/// `value` clamped to `[0, 255]` and truncated (torch's `clamp_(0, 255).to(torch.uint8)`).
fn truncate(value: f32) -> u8 {
    value.clamp(0.0, 255.0) as u8
}

fn map(image: &Bytes, f: impl Fn(u8) -> u8) -> Bytes {
    Bytes {
        data: image.data.iter().map(|&x| f(x)).collect(),
        ..image.clone()
    }
}

/// torchvision's `_blend(x, other, ratio)` of a byte: `x * ratio + other * (1 - ratio)` in `f32`
/// (the addition fused, as torch's `add_(other, alpha=...)` kernel), clamped and truncated.
fn blend(x: u8, other: f32, ratio: f64) -> u8 {
    let alpha = (1.0 - ratio) as f32;
    truncate(other.mul_add(alpha, f32::from(x) * ratio as f32))
}

/// The floored ITU-R 601-2 luma of an RGB byte image (torchvision's grayscale of a `uint8`
/// image before blending), one plane.
fn grayscale(image: &Bytes) -> Vec<f32> {
    let plane = image.plane_len();
    let (r, rest) = image.data.split_at(plane);
    let (g, b) = rest.split_at(plane);
    r.iter()
        .zip(g)
        .zip(b)
        .map(|((&r, &g), &b)| {
            let rg = f32::from(g).mul_add(0.587, f32::from(r) * 0.2989);
            f32::from(b).mul_add(0.114, rg).floor()
        })
        .collect()
}

/// torchvision's `adjust_sharpness` of a byte image: the inner pixels blended with their 3x3
/// smoothing (weights 1/13, centre 5/13, rounded), the border kept.
fn sharpness(image: &Bytes, factor: f64) -> Bytes {
    let (h, w) = (image.height, image.width);
    if h <= 2 || w <= 2 {
        return image.clone();
    }
    let (a, b) = ((1.0f64 / 13.0) as f32, (5.0f64 / 13.0) as f32);
    let alpha = (1.0 - factor) as f32;
    let mut out = image.clone();
    for (src, dst) in image
        .data
        .chunks_exact(h * w)
        .zip(out.data.chunks_exact_mut(h * w))
    {
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let mut sum = 0.0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let v = f32::from(src[(y + dy - 1) * w + x + dx - 1]);
                        sum += v * if dy == 1 && dx == 1 { b } else { a };
                    }
                }
                let blurred = sum.round_ties_even();
                let v = f32::from(src[y * w + x]);
                dst[y * w + x] = truncate((blurred - v).mul_add(alpha, v));
            }
        }
    }
    out
}

/// torchvision's `autocontrast` of a byte image, channel by channel.
fn autocontrast(image: &Bytes) -> Bytes {
    let mut out = image.clone();
    for chunk in out.data.chunks_exact_mut(image.plane_len()) {
        let (lo, hi) = chunk
            .iter()
            .fold((u8::MAX, u8::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let (min, inv_scale) = if lo == hi {
            (0.0f32, 1.0f32)
        } else {
            let one_over = (1.0f64 / 255.0) as f32;
            (f32::from(lo), (f32::from(hi) - f32::from(lo)) * one_over)
        };
        for x in chunk {
            *x = truncate((f32::from(*x) - min) / inv_scale);
        }
    }
    out
}

/// torchvision's (PIL's) `equalize` of a byte image, channel by channel.
fn equalize(image: &Bytes) -> Bytes {
    let mut out = image.clone();
    let n = image.plane_len() as i64;
    for chunk in out.data.chunks_exact_mut(image.plane_len()) {
        let mut hist = [0i64; 256];
        for &x in chunk.iter() {
            hist[usize::from(x)] += 1;
        }
        // The count of the largest value present.
        let last = hist.iter().rposition(|&c| c > 0).map_or(0, |i| hist[i]);
        let step = (n - last) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut cum = 0i64;
        for k in 1..256 {
            cum += hist[k - 1];
            lut[k] = ((cum + step / 2) / step).clamp(0, 255) as u8;
        }
        for x in chunk {
            *x = lut[usize::from(*x)];
        }
    }
    out
}

/// torchvision's `_get_inverse_affine_matrix(center, angle, translate, 1, shear)`, inverted:
/// the output-to-input map of centred coordinates, `[a, b, c, d, e, f]`.
fn inverse_affine(center: (f64, f64), angle: f64, translate: (f64, f64), shear: (f64, f64)) -> [f64; 6] {
    let rot = angle.to_radians();
    let (sx, sy) = (shear.0.to_radians(), shear.1.to_radians());
    let (cx, cy) = center;
    let (tx, ty) = translate;
    let cos_sy = sy.cos();
    let tan_sx = sx.tan();
    let rot_minus_sy = rot - sy;
    let a = rot_minus_sy.cos() / cos_sy;
    let b = -(a * tan_sx + rot.sin());
    let c = rot_minus_sy.sin() / cos_sy;
    let d = rot.cos() - c * tan_sx;
    let mut m = [d, -b, 0.0, -c, a, 0.0];
    m[2] += cx - m[0] * (cx + tx) - m[1] * (cy + ty);
    m[5] += cy - m[3] * (cx + tx) - m[4] * (cy + ty);
    m
}

/// `F.affine` of a byte image with nearest sampling: `[scale, shear x degrees, shear y degrees]`
/// (scale 1 here), `translate` in pixels; about the top-left corner when `corner` (torchvision's
/// RandAugment shears with `center=[0, 0]`), else the centre.
fn affine(image: &Bytes, shear: [f64; 3], translate: (f64, f64), corner: bool, fill: &[u8]) -> Bytes {
    let (h, w) = (image.height as f64, image.width as f64);
    let center = if corner { (-w * 0.5, -h * 0.5) } else { (0.0, 0.0) };
    let m = inverse_affine(center, 0.0, translate, (shear[1], shear[2]));
    sample(image, m, fill)
}

/// `F.rotate(angle)` of a byte image (nearest, same size, about the centre).
fn rotate(image: &Bytes, angle: f64, fill: &[u8]) -> Bytes {
    let angle = angle.rem_euclid(360.0);
    if angle == 0.0 {
        return image.clone();
    }
    let m = inverse_affine((0.0, 0.0), -angle, (0.0, 0.0), (0.0, 0.0));
    sample(image, m, fill)
}

/// torchvision's `_affine_grid` and `grid_sample(mode="nearest", align_corners=False)` with the
/// fill mask, in `f32` as it computes them.
fn sample(image: &Bytes, m: [f64; 6], fill: &[u8]) -> Bytes {
    let (h, w) = (image.height, image.width);
    let theta: [f32; 6] = m.map(|v| v as f32);
    let (half_w, half_h) = (0.5 * w as f32, 0.5 * h as f32);
    // rescaled_theta = theta^T / [0.5 w, 0.5 h].
    let (r00, r10, r20) = (theta[0] / half_w, theta[1] / half_w, theta[2] / half_w);
    let (r01, r11, r21) = (theta[3] / half_h, theta[4] / half_h, theta[5] / half_h);
    let linspace = |n: usize, i: usize| -> f32 {
        // torch.linspace((1 - n) / 2, (n - 1) / 2, n), as its CPU kernel computes it.
        let start = (1.0 - n as f32) * 0.5;
        let end = (n as f32 - 1.0) * 0.5;
        if n == 1 {
            return start;
        }
        let step = (end - start) / (n - 1) as f32;
        let half = (n / 2) as i64;
        if (i as i64) < half {
            start + step * i as f32
        } else {
            end - step * (n - 1 - i) as f32
        }
    };
    let mut out = image.clone();
    let plane = h * w;
    for y in 0..h {
        let by = linspace(h, y);
        for x in 0..w {
            let bx = linspace(w, x);
            let gx = bx * r00 + by * r10 + r20;
            let gy = bx * r01 + by * r11 + r21;
            let ix = ((gx + 1.0) * w as f32 - 1.0) / 2.0;
            let iy = ((gy + 1.0) * h as f32 - 1.0) / 2.0;
            let (ix, iy) = (ix.round_ties_even(), iy.round_ties_even());
            let inside = ix >= 0.0 && iy >= 0.0 && ix < w as f32 && iy < h as f32;
            for c in 0..image.channels {
                out.data[c * plane + y * w + x] = if inside {
                    image.data[c * plane + iy as usize * w + ix as usize]
                } else {
                    fill.get(c).or(fill.first()).copied().unwrap_or(0)
                };
            }
        }
    }
    out
}
