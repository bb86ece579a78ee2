//! [`ConvParams`], the hyper-parameters every convolution takes.

/// Hyper-parameters of a convolution (symmetric padding; pad explicitly for asymmetric
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
