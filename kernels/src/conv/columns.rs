//! The column matrices of a training forward pass, kept for the weight gradient.
//!
//! The weight gradient `dW = grad x col^T` needs the same column matrices as the forward pass
//! `W x col`. A convolution (`backbone`'s `conv2d_cpu`: ResNet's, followed by a batch norm) whose
//! weight takes part in autograd and whose column matrices are small ([`KEEP_BYTES`]) keeps
//! them from the forward pass, tile by tile, and the weight gradient takes them instead of
//! running im2col again: on ResNet-18's 8x8 to 1x1 maps (32x32 images) im2col was a seventh of
//! a training step, which ran at 713-744 images/s with the columns kept against 664-708
//! without (peak memory 400 against 340 MB). The conv + bias + ReLU op (LeNet, VGG) keeps them
//! too: on a 2-core Xeon LeNet-5's training step (batch 256) took 12.6-17.3 ms against
//! 14.6-20.0 ms without (alternated), its second convolution's columns (15 MB) kept, its first's
//! (20 MB) above the limit. Tiles the weight gradient does not find (other tiles, a
//! pointwise or Winograd forward pass) are computed as before; the columns are the same
//! values either way, so the gradients are the same bits.

use super::*;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

/// Column-matrix bytes of one convolution (the whole batch) above which nothing is kept: the
/// kept columns of a 3x3 convolution are 9 times its input.
pub(crate) const KEEP_BYTES: usize = 16 << 20;

/// A tile's place in the batch: its images (absolute) and output rows.
type Key = (usize, usize, usize, usize);

/// The kept column matrices, by tile, until the weight gradient takes them.
#[derive(Default)]
pub struct Columns(Mutex<HashMap<Key, Box<dyn Any + Send>>>);

impl std::fmt::Debug for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tiles = self.0.lock().map_or(0, |m| m.len());
        write!(f, "Columns({tiles} tiles)")
    }
}

fn key(first: usize, tile: &Tile) -> Key {
    (
        first + tile.images.start,
        first + tile.images.end,
        tile.rows.start,
        tile.rows.end,
    )
}

impl Columns {
    /// Whether a convolution keeps its columns: its weight's gradient will be asked for, and
    /// its column matrices are small.
    pub fn wanted(g: &ConvGeometry, weight_tracks: bool, elem_bytes: usize) -> bool {
        // Within `isize::MAX` values (`ConvGeometry`'s checks); in bytes, perhaps not.
        let bytes = (g.groups * g.k() * g.plane_out() * g.n).checked_mul(elem_bytes);
        // Pointwise and Winograd forward passes build no column matrices.
        weight_tracks
            && bytes.is_some_and(|b| b <= KEEP_BYTES)
            && !g.pointwise()
            && !super::winograd::applies(g)
    }

    /// Keeps the columns of `tile` of the run starting at image `first`.
    pub(crate) fn keep<T: Float>(&self, first: usize, tile: &Tile, col: Vec<T>) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key(first, tile), Box::new(col));
        }
    }

    /// Takes the columns of `tile` of the run starting at image `first`, if they were kept
    /// and have `len` values of type `T`.
    pub(crate) fn take<T: Float>(&self, first: usize, tile: &Tile, len: usize) -> Option<Vec<T>> {
        let kept = self.0.lock().ok()?.remove(&key(first, tile))?;
        kept.downcast::<Vec<T>>()
            .ok()
            .map(|b| *b)
            .filter(|v| v.len() == len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight gradient from the kept columns is the recomputed one, bit for bit, on 1 to 3
    /// threads (runs of images, one image parallel inside, serial); every kept tile is taken.
    #[test]
    fn kept_columns_give_the_same_weight_gradient() {
        let p = ConvParams {
            padding: 1,
            stride: 2,
            dilation: 1,
            groups: 2,
        };
        // Runs of images on 2 or 3 threads; one image parallel inside; a serial one.
        for (n, hw) in [(6, 24), (1, 44), (5, 4)] {
            let g = ConvGeometry::new(&[n, 8, hw, hw], &[16, 4, 3, 3], p).unwrap();
            let x: Vec<f32> = (0..g.n * g.image_in())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let w: Vec<f32> = (0..g.cout * g.cg() * 9)
                .map(|i| ((i * 11 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let grad: Vec<f32> = (0..g.n * g.image_out())
                .map(|i| ((i * 7 % 17) as f32 - 8.0) / 5.0)
                .collect();
            assert!(Columns::wanted(&g, true, 4) && !Columns::wanted(&g, false, 4));
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let columns = Columns::default();
                    let kept_out = forward(&g, &x, &w, None, Some(&columns)).unwrap();
                    let kept = columns.0.lock().unwrap().len();
                    assert!(kept > 0, "{n} images {hw}x{hw} on {threads}: nothing kept");
                    assert_eq!(
                        kept_out,
                        forward(&g, &x, &w, None, None).unwrap(),
                        "{n} images {hw}x{hw}"
                    );
                    let from_kept = weight_grad(&g, &x, &grad, Some(&columns)).unwrap();
                    let recomputed = weight_grad(&g, &x, &grad, None).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&from_kept),
                        bits(&recomputed),
                        "{n} images {hw}x{hw} on {threads}"
                    );
                    assert!(
                        columns.0.lock().unwrap().is_empty(),
                        "{kept} tiles kept, not all taken"
                    );
                });
            }
        }
    }
}
