//! The CPU compute kernels of the convolution engine, on slices, shapes and the rayon pool,
//! with no tensor library underneath: `backbone` wraps them in candle custom ops.
//!
//! * [`conv`]: 2-d convolution, forward (im2col + gemm, Winograd F(2x2, 3x3), an epilogue of
//!   bias, eval batch norm, a residual addition and ReLU on each output tile), input and
//!   weight gradients, column matrices kept for the weight gradient;
//! * [`depthwise`]: depthwise convolution, direct, all three passes;
//! * [`pool`]: max, average and adaptive average pooling with PyTorch's semantics, both ways;
//! * [`batch_norm`]: the reductions and element-wise passes of batch normalisation;
//! * [`elementwise`]: ReLU, residual add + ReLU, per-channel bias and its gradient;
//! * [`blocked`]: a direct convolution (with bias, residual add and ReLU fused), max pooling
//!   and global average pooling on a blocked channel layout (NCHW16c / NCHW8c), weights
//!   prepared once; ResNet's inference path inside `backbone::with_frozen_weights`;
//! * [`isa`]: the instruction-set path, chosen at run time (AVX-512, AVX2+FMA, portable),
//!   forced by `CONVNETS_KERNELS_ISA` or [`isa::set_isa`];
//! * [`peak`]: the machine's measured FMA peak;
//! * `scratch`: the kernels' scratch buffers, kept per thread from one call to the next.
//!
//! Every kernel runs in `f32` and `f64` ([`Float`]), is tested against plain loops, and
//! returns an [`Error`] instead of panicking on shapes and buffers that do not fit together.
//! Unsafe code and SIMD intrinsics of the workspace live here.

mod error;
mod float;

pub mod batch_norm;
pub mod blocked;
pub mod conv;
pub mod depthwise;
pub mod elementwise;
pub mod isa;
pub mod peak;
pub mod pool;
mod scratch;

pub(crate) use error::bail;
pub use error::{Error, Result};
pub use float::Float;

/// A vector of `len` values written by `fill` straight into its allocation, without the
/// zero-filling `vec![0; len]` does first: the batch-norm and element-wise passes write every
/// output value, and on a ResNet-50 training step (batch 8, 2 cores) `memset` was 7% of the
/// time, a third of it for their outputs. A panic inside `fill` leaves an empty vector behind.
///
/// # Safety
///
/// `fill` must write every element of the slice it is given.
pub(crate) unsafe fn written<T: Copy>(
    len: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>]),
) -> Vec<T> {
    // SAFETY: the caller's contract.
    unsafe { written_in(Vec::new(), len, fill) }
}

/// [`written`] in `buffer`'s allocation where it holds `len` values (its values do not
/// matter), a new one otherwise: for callers that recycle their buffers.
///
/// # Safety
///
/// As [`written`].
pub(crate) unsafe fn written_in<T: Copy>(
    mut out: Vec<T>,
    len: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>]),
) -> Vec<T> {
    out.clear();
    if out.capacity() < len {
        out = Vec::with_capacity(len);
    }
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: there is room for `len` values and every one was written (the caller's
    // contract).
    unsafe { out.set_len(len) };
    out
}

/// The product of `dims` (a buffer's length), `None` when a `usize` cannot count it.
pub(crate) fn checked_len(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}
