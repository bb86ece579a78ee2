//! The composite candle path of batch normalisation: any device and dtype, the test
//! reference and the fallback of the fused kernels.

use super::*;

/// The composite candle version of [`batch_norm_train`] (any device and dtype): the test
/// reference and the fallback.
pub fn batch_norm_train_reference(
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    channels("batch_norm_train", xs)?;
    let dims = xs.dims();
    let reduce: Vec<usize> = (0..dims.len()).filter(|&d| d != 1).collect();
    let count: usize = reduce.iter().map(|&d| dims[d]).product();
    let mean = (xs.sum_keepdim(reduce.as_slice())? / count as f64)?;
    let centered = xs.broadcast_sub(&mean)?;
    let var = (centered.sqr()?.sum_keepdim(reduce.as_slice())? / count as f64)?;
    let normed = centered.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let stats = BatchStats {
        mean: mean.detach().flatten_all()?,
        var: var.detach().flatten_all()?,
    };
    let out = match affine {
        Some((w, b)) => normed
            .broadcast_mul(&per_channel(w, dims)?)?
            .broadcast_add(&per_channel(b, dims)?)?,
        None => normed,
    };
    Ok((out, stats))
}

/// The composite candle version of [`batch_norm_eval`] (any device and dtype; gradients also
/// reach the running statistics): the test reference and the fallback.
pub fn batch_norm_eval_reference(
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    channels("batch_norm_eval", xs)?;
    let inv_std = (running_var + eps)?.sqrt()?.recip()?;
    let (scale, shift) = match affine {
        Some((w, b)) => {
            let scale = w.mul(&inv_std)?;
            let shift = b.sub(&running_mean.mul(&scale)?)?;
            (scale, shift)
        }
        None => (inv_std.clone(), running_mean.mul(&inv_std)?.neg()?),
    };
    xs.broadcast_mul(&per_channel(&scale, xs.dims())?)?
        .broadcast_add(&per_channel(&shift, xs.dims())?)
}

/// `[1, C, 1, 1]` (or `[1, C]`) view of a per-channel vector for broadcasting against `dims`.
pub(super) fn per_channel(t: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let mut shape = vec![1; dims.len()];
    shape[1] = dims[1];
    t.reshape(shape)
}
