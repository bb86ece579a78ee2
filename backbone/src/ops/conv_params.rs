//! [`ConvParams`], the hyper-parameters every convolution op takes: its own module so that the
//! dispatching [`super::conv`] and the CPU kernels [`super::conv_cpu`] both depend on it, and
//! not on each other in a circle.

/// Hyper-parameters of [`super::conv2d`] (symmetric padding; pad explicitly for asymmetric
/// padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    /// Zero padding on every side.
    pub padding: usize,
    /// Stride.
    pub stride: usize,
    /// Dilation.
    pub dilation: usize,
    /// Groups.
    pub groups: usize,
}
