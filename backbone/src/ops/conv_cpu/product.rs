//! The matrix product (the `gemm` crate) on strided slices.

use super::*;

// ---------------------------------------------------------------------------------------------
// Matrix product.

/// The element types of the kernels: those `gemm::gemm` multiplies (it panics on others).
pub(super) trait Float: WithDType {}

impl Float for f32 {}
impl Float for f64 {}

/// Elements spanned by a `rows x cols` matrix with strides `(rs, cs)`.
pub(super) fn span_of(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst = lhs x rhs` (or `dst += lhs x rhs` when `accumulate`), an `m x k` by `k x n` product,
/// each matrix given by a slice starting at its first element and its (row, column) strides.
///
/// Panics if a matrix does not fit its slice.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    parallelism: Parallelism,
) {
    assert!(
        span_of(m, n, dst_strides) <= dst.len(),
        "matmul: destination out of bounds"
    );
    assert!(
        span_of(m, k, lhs_strides) <= lhs.len(),
        "matmul: lhs out of bounds"
    );
    assert!(
        span_of(k, n, rhs_strides) <= rhs.len(),
        "matmul: rhs out of bounds"
    );
    assert!(
        [dst_strides, lhs_strides, rhs_strides]
            .iter()
            .all(|&(r, c)| r <= isize::MAX as usize && c <= isize::MAX as usize),
        "matmul: strides overflow"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_strides.0 + j * dst_strides.1] = T::zero();
                }
            }
        }
        return;
    }
    let alpha = if accumulate { T::one() } else { T::zero() };
    // SAFETY: the three matrices lie inside their slices (checked above: the last element of
    // each is at `span_of - 1 < len`); `dst` is borrowed mutably, so it aliases neither input;
    // `T: Float` is f32 or f64, types `gemm::gemm` supports. gemm
    // computes `dst = alpha * dst + beta * lhs * rhs`, reading `dst` only when `read_dst`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides.1 as isize,
            dst_strides.0 as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1 as isize,
            lhs_strides.0 as isize,
            rhs.as_ptr(),
            rhs_strides.1 as isize,
            rhs_strides.0 as isize,
            alpha,
            T::one(),
            false,
            false,
            false,
            parallelism,
        )
    }
}
