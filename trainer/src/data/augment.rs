//! Seeded data augmentation.

use crate::{Error, Result};
use rand::Rng;

/// A random affine transform of each training image (torchvision's `RandomAffine`): rotation
/// by up to `degrees`, translation by up to `translate` pixels on each axis, scaling by a factor
/// in `scale`, about the image centre, with bilinear interpolation; pixels coming from outside
/// the image take the background value (the normalised value of a black pixel).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomAffine {
    /// Largest rotation, in degrees, either way.
    pub degrees: f32,
    /// Largest shift, in pixels, on each axis.
    pub translate: f32,
    /// Range of the scale factor.
    pub scale: (f32, f32),
}

impl RandomAffine {
    /// The MNIST recipe: +-10 degrees, +-2 pixels, scale 0.9 to 1.1.
    pub fn mnist() -> Self {
        Self {
            degrees: 10.0,
            translate: 2.0,
            scale: (0.9, 1.1),
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let ok = self.degrees.is_finite()
            && self.degrees >= 0.0
            && self.translate.is_finite()
            && self.translate >= 0.0
            && self.scale.0 > 0.0
            && self.scale.0 <= self.scale.1
            && self.scale.1.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::config(format!("random affine: invalid ranges {self:?}")))
        }
    }

    /// Whether every draw is the identity (no rotation, shift or scaling).
    pub fn is_identity(&self) -> bool {
        self.degrees == 0.0 && self.translate == 0.0 && self.scale == (1.0, 1.0)
    }

    /// Draws the parameters of one image's transform: (angle in radians, scale, shift x, shift y).
    pub fn draw(&self, rng: &mut impl Rng) -> AffineParams {
        let draw = |rng: &mut dyn rand::RngCore, lo: f32, hi: f32| {
            if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            }
        };
        let angle = draw(rng, -self.degrees, self.degrees).to_radians();
        let scale = draw(rng, self.scale.0, self.scale.1);
        let tx = draw(rng, -self.translate, self.translate);
        let ty = draw(rng, -self.translate, self.translate);
        AffineParams { angle, scale, tx, ty }
    }

    /// Transforms the `height` x `width` plane `src` into `dst` with parameters drawn from
    /// `rng`.
    pub fn apply(
        &self,
        src: &[f32],
        dst: &mut [f32],
        size: (usize, usize),
        background: f32,
        rng: &mut impl Rng,
    ) {
        let params = self.draw(rng);
        self.warp(&params, src, dst, size, background);
    }

    /// Transforms the `height` x `width` plane `src` into `dst` with `params` (bilinear
    /// sampling, `background` outside the image).
    pub fn warp(
        &self,
        params: &AffineParams,
        src: &[f32],
        dst: &mut [f32],
        (height, width): (usize, usize),
        background: f32,
    ) {
        let AffineParams { angle, scale, tx, ty } = *params;
        let (sin, cos) = angle.sin_cos();
        let (cx, cy) = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
        let pixel = |x: isize, y: isize| -> f32 {
            if x < 0 || y < 0 || x >= width as isize || y >= height as isize {
                background
            } else {
                src[y as usize * width + x as usize]
            }
        };
        for y in 0..height {
            for x in 0..width {
                // Inverse map: p_in = R(-angle) (p_out - c - t) / scale + c.
                let (dx, dy) = (x as f32 - cx - tx, y as f32 - cy - ty);
                let sx = (cos * dx + sin * dy) / scale + cx;
                let sy = (-sin * dx + cos * dy) / scale + cy;
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as isize, y0 as isize);
                let top = pixel(x0, y0) * (1.0 - fx) + pixel(x0 + 1, y0) * fx;
                let bottom = pixel(x0, y0 + 1) * (1.0 - fx) + pixel(x0 + 1, y0 + 1) * fx;
                dst[y * width + x] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
}

/// One draw of a [`RandomAffine`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineParams {
    /// Rotation, radians.
    pub angle: f32,
    /// Scale factor.
    pub scale: f32,
    /// Shift along x, pixels.
    pub tx: f32,
    /// Shift along y, pixels.
    pub ty: f32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn square(h: usize, w: usize) -> Vec<f32> {
        let mut img = vec![0.0; h * w];
        for y in 3..6 {
            for x in 4..8 {
                img[y * w + x] = 1.0;
            }
        }
        img
    }

    #[test]
    fn identity_ranges_leave_the_image_unchanged() {
        let (h, w) = (9, 11);
        let src = square(h, w);
        let mut dst = vec![0.0; h * w];
        let id = RandomAffine {
            degrees: 0.0,
            translate: 0.0,
            scale: (1.0, 1.0),
        };
        id.apply(&src, &mut dst, (h, w), -1.0, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(src, dst);
    }

    #[test]
    fn pure_translation_moves_pixels_and_fills_background() {
        let (h, w) = (9, 11);
        let src = square(h, w);
        let mut dst = vec![0.0; h * w];
        let aug = RandomAffine {
            degrees: 0.0,
            translate: 3.0,
            scale: (1.0, 1.0),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        aug.apply(&src, &mut dst, (h, w), -1.0, &mut rng);
        // Replay the draws: angle, scale (fixed, no draw), tx, ty.
        let mut replay = ChaCha8Rng::seed_from_u64(5);
        let _angle = 0.0f32;
        let tx: f32 = replay.random_range(-3.0..3.0);
        let ty: f32 = replay.random_range(-3.0..3.0);
        // Sum of intensities is kept up to the bilinear spread (the square stays inside).
        let total: f32 = dst.iter().filter(|&&v| v > 0.0).sum();
        assert!((total - 12.0).abs() < 1e-3, "mass {total}");
        // The centre of mass moved by (tx, ty).
        let com = |img: &[f32]| {
            let (mut sx, mut sy, mut m) = (0.0, 0.0, 0.0);
            for (i, &v) in img.iter().enumerate() {
                let v = v.max(0.0);
                sx += v * (i % w) as f32;
                sy += v * (i / w) as f32;
                m += v;
            }
            (sx / m, sy / m)
        };
        let (a, b) = (com(&src), com(&dst));
        assert!(
            (b.0 - a.0 - tx).abs() < 1e-3 && (b.1 - a.1 - ty).abs() < 1e-3,
            "{a:?} -> {b:?}, t = {tx} {ty}"
        );
        // Pixels sampled from outside the image take the background value.
        assert!(dst.contains(&-1.0) || (tx.abs() < 1.0 && ty.abs() < 1.0));
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        assert!(RandomAffine {
            degrees: -1.0,
            ..RandomAffine::mnist()
        }
        .validate()
        .is_err());
        assert!(RandomAffine {
            scale: (1.2, 1.1),
            ..RandomAffine::mnist()
        }
        .validate()
        .is_err());
        assert!(RandomAffine::mnist().validate().is_ok());
    }
}
