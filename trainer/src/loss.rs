//! Classification losses and metrics.

use candle_core::{DType, Tensor, D};

use crate::error::{Error, Result};

/// Checks that `logits` is `[N, C]` floating point with `N, C > 0` and `targets` is `[N]` of an
/// integer dtype with every value in `0..C`; returns `(N, C)` and the targets. Reading the
/// targets copies them to the host (a few bytes per batch).
pub(crate) fn check_logits_targets(
    what: &str,
    logits: &Tensor,
    targets: &Tensor,
) -> Result<(usize, usize, Vec<usize>)> {
    let (n, c) = match logits.dims() {
        &[n, c] if n > 0 && c > 0 => (n, c),
        dims => {
            return Err(Error::config(format!(
                "{what}: logits must have shape [N, C] with N, C > 0, got {dims:?}"
            )))
        }
    };
    if !logits.dtype().is_float() {
        return Err(Error::config(format!(
            "{what}: logits must be floating point, got {:?}",
            logits.dtype()
        )));
    }
    if targets.dims() != [n] {
        return Err(Error::config(format!(
            "{what}: targets must have shape [{n}] to match logits {:?}, got {:?}",
            logits.dims(),
            targets.dims()
        )));
    }
    let values: Vec<i64> = match targets.dtype() {
        DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64 => {
            targets.to_dtype(DType::I64)?.to_vec1::<i64>()?
        }
        dtype => {
            return Err(Error::config(format!(
                "{what}: targets must be class indices of an integer dtype, got {dtype:?}"
            )))
        }
    };
    if let Some((i, &t)) = values
        .iter()
        .enumerate()
        .find(|(_, &t)| t < 0 || t as u64 >= c as u64)
    {
        return Err(Error::config(format!(
            "{what}: target {t} at index {i} is out of range for {c} classes (expected 0..{c})"
        )));
    }
    Ok((n, c, values.into_iter().map(|t| t as usize).collect()))
}

/// Mean cross-entropy of `logits` `[N, C]` (unnormalised scores) against class indices
/// `targets` `[N]`, as PyTorch's `F.cross_entropy(logits, targets)`: `mean_i(logsumexp(x_i) -
/// x_i[t_i])`, computed with a max-shifted log-softmax so large logits neither overflow nor
/// underflow. Returns a scalar tensor of the logits' dtype, differentiable w.r.t. the logits.
///
/// Fails with [`Error::Config`] when the shapes or dtypes do not fit or a target is not in
/// `0..C` (an out-of-range label would otherwise read another row's memory or garbage).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_logits_targets("cross_entropy", logits, targets)?;
    let log_probs = log_softmax(logits)?;
    let index = targets.to_dtype(DType::U32)?.unsqueeze(1)?;
    let picked = log_probs.gather(&index, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

/// `log_softmax` over the last dimension with a max shift: large logits neither overflow nor
/// underflow. The shift does not change the result; detaching it keeps the backward pass simple.
fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum_exp = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum_exp)?)
}

/// Mean cross-entropy with label smoothing, as PyTorch's
/// `F.cross_entropy(logits, targets, label_smoothing=smoothing)`: the target distribution puts
/// `1 - smoothing + smoothing / C` on the target class and `smoothing / C` on every other, so
/// the loss is `mean_i((1 - smoothing) * -log p_i[t_i] + smoothing * mean_j(-log p_i[j]))`.
/// `smoothing = 0` gives [`cross_entropy`]. Differentiable w.r.t. the logits; a scalar of the
/// logits' dtype.
///
/// Fails with [`Error::Config`] when `smoothing` is not in `[0, 1)` and as [`cross_entropy`].
pub fn cross_entropy_smoothed(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    if !(0.0..1.0).contains(&smoothing) {
        return Err(Error::config(format!(
            "cross_entropy_smoothed: label smoothing must be in [0, 1), got {smoothing}"
        )));
    }
    check_logits_targets("cross_entropy_smoothed", logits, targets)?;
    let log_probs = log_softmax(logits)?;
    let index = targets.to_dtype(DType::U32)?.unsqueeze(1)?;
    let nll = log_probs.gather(&index, 1)?.mean_all()?.neg()?;
    if smoothing == 0.0 {
        return Ok(nll);
    }
    let smooth = log_probs.mean_all()?.neg()?;
    Ok(((nll * (1.0 - smoothing))? + (smooth * smoothing)?)?)
}

/// Mean cross-entropy of `logits` `[N, C]` against soft targets `[N, C]` (class probabilities,
/// e.g. [`Mixup`](crate::data::Mixup)'s), as timm's `SoftTargetCrossEntropy`:
/// `mean_i(sum_j(-targets[i, j] * log_softmax(logits)[i, j]))`. Differentiable w.r.t. the logits;
/// a scalar of the logits' dtype.
///
/// Fails with [`Error::Config`] when the shapes differ or are not `[N, C]` with `N, C > 0`, or
/// the dtypes are not floating point.
pub fn soft_target_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let ok = matches!(logits.dims(), &[n, c] if n > 0 && c > 0) && targets.dims() == logits.dims();
    if !ok || !logits.dtype().is_float() || !targets.dtype().is_float() {
        return Err(Error::config(format!(
            "soft_target_cross_entropy: logits and targets must be floating point [N, C] of one shape, \
             got {:?} {:?} and {:?} {:?}",
            logits.dims(),
            logits.dtype(),
            targets.dims(),
            targets.dtype()
        )));
    }
    let log_probs = log_softmax(logits)?;
    let targets = targets.to_dtype(logits.dtype())?;
    Ok((targets * log_probs)?.sum(D::Minus1)?.mean_all()?.neg()?)
}

/// How many rows of `logits` `[N, C]` have the class given by `targets` `[N]` among their `k`
/// highest scores (the count behind top-k accuracy: `(logits.topk(k).indices ==
/// targets[:, None]).any(1).sum()` in PyTorch).
///
/// Ties: a class outranks the target when its score is higher, or equal with a lower class
/// index (a stable descending sort; NaN ranks above every number, as in `torch.topk`). With
/// `k = 1` and finite logits this is [`accuracy_count`] (the first maximum wins). `torch.topk` does not specify the
/// order of equal scores (its CPU kernel uses an unstable partial sort), so on exact ties the
/// counts can differ from PyTorch's; without ties they are equal. The logits are copied to the
/// host.
///
/// Fails with [`Error::Config`] when `k` is 0 or more than `C`, and as [`cross_entropy`].
pub fn top_k_correct(logits: &Tensor, targets: &Tensor, k: usize) -> Result<usize> {
    let (_, c, _) = check_logits_targets("top_k_correct", logits, targets)?;
    if k == 0 || k > c {
        return Err(Error::config(format!(
            "top_k_correct: k must be in 1..={c} for {c} classes, got {k}"
        )));
    }
    let rows = logits.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let targets = targets.to_dtype(DType::I64)?.to_vec1::<i64>()?;
    // `a` outranks `b` (at a higher index) when a > b, NaN counting as the largest value.
    let above = |a: f64, b: f64| if a.is_nan() { !b.is_nan() } else { a > b };
    let correct = rows
        .iter()
        .zip(&targets)
        .filter(|(row, &t)| {
            let t = t as usize;
            let score = row[t];
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(j, &x)| above(x, score) || (j < t && (x == score || x.is_nan() && score.is_nan())))
                .count();
            rank < k
        })
        .count();
    Ok(correct)
}

/// How many rows of `logits` `[N, C]` have their largest score at the class given by `targets`
/// `[N]` (ties go to the first maximum). Same checks as [`cross_entropy`].
pub fn accuracy_count(logits: &Tensor, targets: &Tensor) -> Result<usize> {
    check_logits_targets("accuracy_count", logits, targets)?;
    let predicted = logits.argmax(D::Minus1)?;
    let correct = predicted
        .eq(&targets.to_dtype(DType::U32)?)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()?;
    Ok(correct as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn logits() -> Tensor {
        // Row 2 has logits far outside exp's range: a naive softmax gives inf / NaN there.
        Tensor::new(
            &[
                [1.0f64, 2.0, 0.5],
                [0.0, -1.0, 3.0],
                [1000.0, -1000.0, 999.0],
                [0.25, 0.25, -0.5],
            ],
            &Device::Cpu,
        )
        .unwrap()
    }

    /// log-sum-exp in f64, the reference.
    fn reference(rows: &[[f64; 3]], targets: &[usize]) -> f64 {
        let total: f64 = rows
            .iter()
            .zip(targets)
            .map(|(row, &t)| {
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
                lse - row[t]
            })
            .sum();
        total / rows.len() as f64
    }

    #[test]
    fn cross_entropy_matches_reference_and_pytorch() {
        let targets = Tensor::new(&[1u32, 2, 0, 2], &Device::Cpu).unwrap();
        let loss = cross_entropy(&logits(), &targets)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let rows = logits().to_vec2::<f64>().unwrap();
        let rows: Vec<[f64; 3]> = rows.iter().map(|r| [r[0], r[1], r[2]]).collect();
        let expected = reference(&rows, &[1, 2, 0, 2]);
        assert!((loss - expected).abs() < 1e-12, "{loss} vs {expected}");
        // torch.nn.functional.cross_entropy(torch.tensor(<the logits above>, dtype=torch.float64),
        //                                   torch.tensor([1, 2, 0, 2]))
        assert!((loss - 0.6246725464598837).abs() < 1e-12, "{loss}");
    }

    #[test]
    fn cross_entropy_accepts_integer_dtypes_and_f32() {
        let logits32 = logits().to_dtype(DType::F32).unwrap();
        for dtype in [DType::U8, DType::U32, DType::I64] {
            let targets = Tensor::new(&[1u32, 2, 0, 2], &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let loss = cross_entropy(&logits32, &targets).unwrap();
            assert_eq!(loss.dtype(), DType::F32);
            assert!((loss.to_scalar::<f32>().unwrap() - 0.624_672_5).abs() < 1e-5);
        }
    }

    #[test]
    fn cross_entropy_gradient_is_softmax_minus_one_hot_over_n() {
        let x = Var::from_tensor(&logits()).unwrap();
        let targets = Tensor::new(&[1u32, 2, 0, 2], &Device::Cpu).unwrap();
        let grads = cross_entropy(x.as_tensor(), &targets)
            .unwrap()
            .backward()
            .unwrap();
        let grad = grads.get(x.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        for (i, (row, t)) in logits()
            .to_vec2::<f64>()
            .unwrap()
            .iter()
            .zip([1, 2, 0, 2])
            .enumerate()
        {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|x| (x - m).exp()).sum();
            for j in 0..3 {
                let expected = ((row[j] - m).exp() / z - f64::from(u8::from(j == t))) / 4.0;
                assert!(
                    (grad[i][j] - expected).abs() < 1e-12,
                    "grad[{i}][{j}] {} vs {expected}",
                    grad[i][j]
                );
            }
        }
    }

    #[test]
    fn out_of_range_or_misshapen_targets_are_errors() {
        let dev = Device::Cpu;
        let cases = [
            (
                Tensor::new(&[1u32, 2, 3, 0], &dev).unwrap(),
                "target 3 at index 2 is out of range",
            ),
            (
                Tensor::new(&[1i64, -1, 0, 0], &dev).unwrap(),
                "target -1 at index 1",
            ),
            (
                Tensor::new(&[1u32, 2, 0], &dev).unwrap(),
                "targets must have shape [4]",
            ),
            (Tensor::new(&[1f32, 2., 0., 0.], &dev).unwrap(), "integer dtype"),
        ];
        for (targets, needle) in cases {
            for result in [
                cross_entropy(&logits(), &targets).map(|_| ()),
                accuracy_count(&logits(), &targets).map(|_| ()),
            ] {
                let msg = result.unwrap_err().to_string();
                assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
            }
        }
        let flat = Tensor::new(&[1f32, 2.0], &dev).unwrap();
        let err = cross_entropy(&flat, &Tensor::new(&[0u32], &dev).unwrap()).unwrap_err();
        assert!(err.to_string().contains("[N, C]"), "{err}");
    }

    #[test]
    fn accuracy_counts_argmax_matches() {
        let targets = Tensor::new(&[1u32, 2, 2, 0], &Device::Cpu).unwrap();
        // argmax per row: 1, 2, 0, 0 (tie in the last row goes to the first maximum).
        assert_eq!(accuracy_count(&logits(), &targets).unwrap(), 3);
        // More than 255 correct rows: the count must not wrap around in a u8 sum.
        let n = 300;
        let big = Tensor::ones((n, 2), DType::F32, &Device::Cpu).unwrap();
        let big = Tensor::cat(&[&big, &big.affine(2.0, 0.0).unwrap()], 1).unwrap();
        let targets = Tensor::full(2u32, n, &Device::Cpu).unwrap();
        assert_eq!(accuracy_count(&big, &targets).unwrap(), 300);
    }
}
