//! Local response normalisation (AlexNet), as a composition of differentiable candle ops.

use candle_core::{bail, Result, Tensor};

/// Local response normalisation across channels, exactly as
/// `torch.nn.functional.local_response_norm(xs, size, alpha, beta, k)`:
///
/// `b_c = a_c / (k + alpha / size * sum_{c' = c - size/2}^{c + (size-1)/2} a_{c'}^2)^beta`
///
/// where channels outside `0..C` count as zeros (the window is asymmetric for an even
/// `size`: `size/2` channels before, `(size-1)/2` after). `xs` has at least 3 dims, channels
/// on dim 1 (`(N, C, ...)`, like PyTorch).
///
/// Built from `sqr`, `pad_with_zeros`, `narrow`, `affine`, `powf` and `div`, so it runs on any
/// device and dtype candle supports for those ops, with autograd.
///
/// Errors when `size` is 0, a coefficient is not finite, or `xs` has fewer than 3 dims.
pub fn local_response_norm(xs: &Tensor, size: usize, alpha: f64, beta: f64, k: f64) -> Result<Tensor> {
    if size == 0 {
        bail!("local_response_norm: size must be at least 1")
    }
    if !(alpha.is_finite() && beta.is_finite() && k.is_finite()) {
        bail!("local_response_norm: alpha ({alpha}), beta ({beta}) and k ({k}) must be finite")
    }
    if xs.rank() < 3 {
        bail!(
            "local_response_norm: expected an input with at least 3 dims (N, C, ...), got shape {:?}",
            xs.dims()
        )
    }
    if xs.elem_count() == 0 {
        return Ok(xs.clone());
    }
    let channels = xs.dim(1)?;
    let squares = xs.sqr()?.pad_with_zeros(1, size / 2, (size - 1) / 2)?;
    let mut sum = squares.narrow(1, 0, channels)?;
    for offset in 1..size {
        sum = (sum + squares.narrow(1, offset, channels)?)?;
    }
    let div = sum.affine(alpha / size as f64, k)?.powf(beta)?;
    let out = xs.div(&div)?;
    // ONNX's LRN has PyTorch's window for odd sizes only (an even window leans the other way).
    if size % 2 == 1 {
        crate::trace::record(&out, || crate::trace::TracedOp::LocalResponseNorm {
            input: xs.clone(),
            size,
            alpha,
            beta,
            k,
        });
    }
    Ok(out)
}
