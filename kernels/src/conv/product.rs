//! The matrix product (the `gemm` crate) on strided slices.

use super::*;

// ---------------------------------------------------------------------------------------------
// Matrix product.

/// Elements spanned by a `rows x cols` matrix with strides `(rs, cs)`.
pub(crate) fn span_of(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> usize {
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
pub(crate) fn matmul<T: Float>(
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
    // SAFETY: the destination lies inside `dst` (checked above), which is borrowed mutably:
    // nothing else reads or writes it during the call.
    unsafe {
        matmul_to(
            (m, n, k),
            SyncPtr(dst.as_mut_ptr()),
            dst_strides,
            accumulate,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            parallelism,
        )
    }
}

/// [`matmul`] into a destination given by a pointer: for products that write disjoint parts
/// of one buffer from several threads (the bands of [`super::forward_bands`]), which no
/// `&mut` slice can describe.
///
/// Panics if `lhs` or `rhs` does not fit its slice.
///
/// # Safety
///
/// The `m x n` matrix at `dst` with `dst_strides` must lie inside one allocation, be
/// initialised, and be neither read nor written by anything else during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul_to<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: SyncPtr<T>,
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    parallelism: Parallelism,
) {
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
    let (dst_rs, dst_cs) = dst_strides;
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: inside the destination matrix (the caller's contract).
                    unsafe { *dst.get().add(i * dst_rs + j * dst_cs) = T::zero() };
                }
            }
        }
        return;
    }
    let alpha = if accumulate { T::one() } else { T::zero() };
    let threads = match parallelism {
        Parallelism::Rayon(t) => t.max(1),
        _ => 1,
    };
    // Split the product ourselves: the gemm crate's own split of a product over its threads
    // leaves them idle on ResNet's small late-stage products (a 256 x 196 x 2304 product ran
    // slower on 2 threads than on 1). Each thread packs the whole of the matrix it shares, so
    // the split goes along the larger of the rows and the columns.
    let parts = split_product(m, n, threads);
    let (lhs, rhs) = (SyncPtr(lhs.as_ptr().cast_mut()), SyncPtr(rhs.as_ptr().cast_mut()));
    let run = |(rows, cols): &(Range<usize>, Range<usize>)| {
        // SAFETY: the inputs lie inside their slices (checked above: the last element of each
        // is at `span_of - 1 < len`), the destination inside its allocation (the caller's
        // contract), and so do these sub-matrices; nothing else accesses the destination (the
        // caller's contract), so it aliases neither input; the parts cover disjoint (row,
        // column) sets of `dst` and a strided layout maps distinct (row, column) pairs to
        // distinct elements unless it overlaps itself, which `disjoint_layout` rules out
        // before a split; `T: Float` is f32 or f64, types `gemm::gemm` supports. gemm computes
        // `dst = alpha * dst + beta * lhs * rhs`, reading `dst` only when `read_dst`.
        unsafe {
            ::gemm::gemm(
                rows.len(),
                cols.len(),
                k,
                dst.get().add(rows.start * dst_rs + cols.start * dst_cs),
                dst_cs as isize,
                dst_rs as isize,
                accumulate,
                lhs.get().add(rows.start * lhs_strides.0),
                lhs_strides.1 as isize,
                lhs_strides.0 as isize,
                rhs.get().add(cols.start * rhs_strides.1),
                rhs_strides.1 as isize,
                rhs_strides.0 as isize,
                alpha,
                T::one(),
                false,
                false,
                false,
                Parallelism::None,
            )
        }
    };
    if parts.len() > 1 && disjoint_layout(m, n, dst_strides) {
        parts.par_iter().for_each(run);
    } else {
        run(&(0..m, 0..n));
    }
}

/// A raw pointer that several threads share, each writing only its own elements (the parts of
/// a product in [`matmul`], the planes of Winograd's transforms); reading through it is
/// always allowed.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub(crate) *mut T);

impl<T> SyncPtr<T> {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

// SAFETY: every user writes through the pointer only at elements no other thread touches, and
// says so at its `unsafe` block (`matmul`, `winograd::transform_weight`, `winograd::forward_block`).
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

/// Whether an `m x n` layout with strides `(rs, cs)` gives each (row, column) its own element:
/// one of the strides steps over the whole extent of the other.
fn disjoint_layout(m: usize, n: usize, (rs, cs): (usize, usize)) -> bool {
    m <= 1 && (n <= 1 || cs >= 1) || n <= 1 && rs >= 1 || cs >= 1 && rs >= n * cs || rs >= 1 && cs >= m * rs
}

/// Below this many rows or columns per thread a split is not worth its packing; parts are
/// multiples of 16 (an AVX-512 register of f32).
const MIN_PART: usize = 32;

/// The parts of an `m x n` product for `threads` threads: `(rows, columns)` ranges covering it
/// once, a single part when the product is too small to share.
fn split_product(m: usize, n: usize, threads: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let ranges = |len: usize| -> Vec<Range<usize>> {
        let step = len.div_ceil(threads).div_ceil(16) * 16;
        (0..len)
            .step_by(step.max(1))
            .map(|s| s..(s + step).min(len))
            .collect()
    };
    if threads <= 1 || m.max(n) < threads * MIN_PART {
        vec![(0..m, 0..n)]
    } else if m > n {
        ranges(m).into_iter().map(|r| (r, 0..n)).collect()
    } else {
        ranges(n).into_iter().map(|c| (0..m, c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_parts_cover_each_element_once() {
        for (m, n) in [
            (1, 1),
            (64, 3136),
            (128, 784),
            (256, 196),
            (512, 49),
            (1000, 1),
            (33, 65),
            (70, 70),
        ] {
            for threads in 1..=5 {
                let parts = split_product(m, n, threads);
                assert!(parts.len() <= threads.max(1), "{m}x{n} on {threads}: {parts:?}");
                let mut seen = vec![0u8; m * n];
                for (rows, cols) in &parts {
                    assert!(
                        !rows.is_empty() && !cols.is_empty(),
                        "{m}x{n} on {threads}: {parts:?}"
                    );
                    for i in rows.clone() {
                        for j in cols.clone() {
                            seen[i * n + j] += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "{m}x{n} on {threads}: {parts:?}");
            }
        }
    }

    #[test]
    fn overlapping_layouts_are_not_split() {
        assert!(disjoint_layout(4, 5, (5, 1)));
        assert!(disjoint_layout(4, 5, (1, 4)));
        assert!(disjoint_layout(4, 5, (10, 2)));
        assert!(!disjoint_layout(4, 5, (1, 1)));
        assert!(!disjoint_layout(4, 5, (0, 1)));
        assert!(disjoint_layout(1, 5, (0, 1)));
    }

    /// The product split over threads equals the serial one, element by element, for both
    /// split directions and for accumulation into a strided destination.
    #[test]
    fn split_products_match_serial_products() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (m, n, k) in [(200, 40, 7), (40, 200, 9), (97, 101, 3)] {
            let lhs: Vec<f64> = (0..m * k).map(|i| ((i * 7919) % 23) as f64 - 11.0).collect();
            let rhs: Vec<f64> = (0..k * n).map(|i| ((i * 104729) % 19) as f64 - 9.0).collect();
            let init: Vec<f64> = (0..m * n * 2).map(|i| (i % 5) as f64).collect();
            for accumulate in [false, true] {
                // The destination is column-major with a gap: strides (1, m + 3).
                let mut serial = init.clone();
                let mut split = init.clone();
                let dst_strides = (1, m + 3);
                let args = |dst: &mut [f64], par| {
                    matmul(
                        (m, n, k),
                        dst,
                        dst_strides,
                        accumulate,
                        &lhs,
                        (k, 1),
                        &rhs,
                        (n, 1),
                        par,
                    )
                };
                args(&mut serial, Parallelism::None);
                pool.install(|| args(&mut split, Parallelism::Rayon(3)));
                // Small integers: both orders of summation are exact.
                assert_eq!(serial, split, "{m}x{n}x{k} accumulate {accumulate}");
                let i = m - 1;
                let expected: f64 = (0..k).map(|l| lhs[i * k + l] * rhs[l * n + 2]).sum::<f64>()
                    + if accumulate { init[i + 2 * (m + 3)] } else { 0.0 };
                assert_eq!(serial[i + 2 * (m + 3)], expected);
            }
        }
    }
}
