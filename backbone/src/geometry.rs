//! Spatial arithmetic of a stack of convolutions and poolings: the smallest input a model
//! accepts, for [`InputSpec::min_size`](crate::InputSpec).

use crate::ops::{pool_output_size, Pool2dParams};
use crate::{Error, Result};

/// The spatial arithmetic of one square layer, to compute the smallest accepted input.
#[derive(Debug, Clone, Copy)]
pub enum Geometry {
    /// A convolution: `(input + 2 padding - kernel) / stride + 1`, none when the padded input
    /// is smaller than the kernel.
    Conv {
        /// Kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
    },
    /// A pooling (its first, height, parameters), with PyTorch's output size.
    Pool(Pool2dParams),
}

impl Geometry {
    /// The output side of the layer for an input side `input`, or `None` when the input is
    /// too small.
    pub fn output(&self, input: usize) -> Option<usize> {
        match *self {
            Geometry::Conv {
                kernel,
                stride,
                padding,
            } => (input + 2 * padding).checked_sub(kernel).map(|n| n / stride + 1),
            Geometry::Pool(p) => pool_output_size(input, p.kernel.0, p.stride.0, p.padding.0, p.ceil_mode),
        }
    }
}

/// The smallest square side that survives every layer (the layers are square, so it is the
/// minimum height and width alike). The error, when no side up to 4096 survives, begins with
/// `model`: "`model`: no input size up to 4096 survives the layers".
pub fn min_input_size(model: &str, layers: &[Geometry]) -> Result<usize> {
    (1..=4096)
        .find(|&n| layers.iter().try_fold(n, |n, g| g.output(n)).is_some())
        .ok_or_else(|| Error::config(format!("{model}: no input size up to 4096 survives the layers")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::PoolConfig;

    #[test]
    fn min_input_size_of_convolutions_and_poolings() {
        let conv = |kernel, stride, padding| Geometry::Conv {
            kernel,
            stride,
            padding,
        };
        // No layers: any side.
        assert_eq!(min_input_size("m", &[]).unwrap(), 1);
        // 11x11 stride 4, then a 3x3 stride-2 pooling (floor mode): 11 + 4 * 2 = 19.
        let floor = PoolConfig::new(3).stride(2).params();
        assert_eq!(
            min_input_size("m", &[conv(11, 4, 0), Geometry::Pool(floor)]).unwrap(),
            19
        );
        // Padding 2 lets the 5x5 kernel take a 1x1 input.
        assert_eq!(conv(5, 1, 2).output(1), Some(1));
        assert_eq!(conv(5, 1, 0).output(4), None);
        // A kernel no input up to 4096 can fill.
        let err = min_input_size("Net", &[conv(5000, 1, 0)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("Net: no input size up to 4096 survives the layers"),
            "{err}"
        );
    }
}
