//! Synchronised batch normalisation: PyTorch's `SyncBatchNorm` (what
//! `torch.nn.SyncBatchNorm.convert_sync_batchnorm` gives a model trained under DDP). Inside
//! [`sync_batch_norm`], every [`BatchNorm2d`](super::BatchNorm2d) in training mode normalises
//! with the statistics of the global batch, the batches of every process of a
//! [`BatchNormSync`] group together, instead of its own:
//!
//! ```text
//! n    = allreduce(local count)
//! mean = allreduce(sum x) / n
//! var  = allreduce(sum (x - mean)^2) / n          (biased, for the normalisation)
//! y    = (x - mean) / sqrt(var + eps) * weight + bias
//! running_mean = (1 - momentum) running_mean + momentum mean
//! running_var  = (1 - momentum) running_var + momentum var n / (n - 1)
//! ```
//!
//! The all-reduce is an op of candle's autograd whose backward pass is again an all-reduce (sum)
//! of the incoming gradients, so the gradient flows through the global statistics exactly: each
//! process's input gradient is that of the sum of every process's loss (PyTorch's
//! `SyncBatchNorm` backward all-reduces `sum(dy)` and `sum(dy * xhat)`, the same thing). The rest
//! is ordinary candle ops: the statistics in `f64` (as the single-process kernels accumulate
//! them), the output `(x - mean) * (inv_std * weight) + bias` in the input's dtype with each
//! coefficient rounded once, the formula of the single-process kernel, so that equal statistics
//! give bit-identical outputs (a max pool or a ReLU downstream then routes the gradient alike). Eval mode is unchanged (running statistics), and a group of one process leaves
//! training mode unchanged too (PyTorch's `SyncBatchNorm` falls back to `batch_norm` then).
//!
//! The group is a scoped setting of the calling thread, like [`crate::inference_mode`]: the
//! layers of any model built from this crate's [`BatchNorm2d`](super::BatchNorm2d) take it up
//! without being rebuilt or told, and threads running other models (tests in parallel, another
//! training) are untouched. The backward pass must run on the same thread, inside the scope (the
//! training loop's step does). Every process must run the same layers in the same order with
//! the same channel counts (each layer makes two all-reduces forward and two backward).

use crate::ops::BatchStats;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use std::cell::RefCell;
use std::rc::Rc;

/// The processes whose batch norms share their batch statistics (implemented by the trainer's
/// collectives over MPI; any in-process group in tests). Every process of the group calls
/// [`BatchNormSync::all_reduce_sum`] in the same order.
pub trait BatchNormSync {
    /// The number of processes of the group.
    fn world_size(&self) -> usize;
    /// Sums `values` over the processes, in place: every process gets the sums.
    fn all_reduce_sum(&self, values: &mut [f64]) -> candle_core::Result<()>;
}

thread_local! {
    static GROUP: RefCell<Option<Rc<dyn BatchNormSync>>> = const { RefCell::new(None) };
}

/// Runs `f` with every batch norm this thread runs in training mode synchronised over `group`
/// (see the module docs). Nested calls replace the group until they return (also on a panic).
pub fn sync_batch_norm<R>(group: Rc<dyn BatchNormSync>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Rc<dyn BatchNormSync>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            GROUP.with(|g| *g.borrow_mut() = previous);
        }
    }
    let previous = GROUP.with(|g| g.borrow_mut().replace(group));
    let _restore = Restore(previous);
    f()
}

/// The group of the enclosing [`sync_batch_norm`] on this thread, if any.
pub fn batch_norm_group() -> Option<Rc<dyn BatchNormSync>> {
    GROUP.with(|g| g.borrow().clone())
}

/// The group the all-reduce op runs over: the thread's, or an error naming the op.
fn current(what: &str) -> candle_core::Result<Rc<dyn BatchNormSync>> {
    match batch_norm_group() {
        Some(group) => Ok(group),
        None => bail!(
            "{what}: no batch-norm group on this thread (a synchronised batch norm's backward pass \
             must run on the thread of its forward pass, inside `sync_batch_norm`)"
        ),
    }
}

/// Sums a 1-D `f64` CPU tensor over the group; the backward pass sums the gradients likewise.
struct AllReduceSum;

impl CustomOp1 for AllReduceSum {
    fn name(&self) -> &'static str {
        "all_reduce_sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let values = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F64(data), Some((start, end))) if layout.dims().len() == 1 => &data[start..end],
            _ => bail!("all_reduce_sum: expected a contiguous 1-D f64 tensor, got {layout:?}"),
        };
        let mut values = values.to_vec();
        current("all_reduce_sum")?.all_reduce_sum(&mut values)?;
        Ok((CpuStorage::F64(values), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let mut values = grad_res.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        current("all_reduce_sum backward")?.all_reduce_sum(&mut values)?;
        Ok(Some(Tensor::from_vec(
            values,
            grad_res.dims(),
            grad_res.device(),
        )?))
    }
}

/// The sum of the 1-D `f64` tensor `t` over the group of [`sync_batch_norm`], on `t`'s device,
/// differentiable (the gradient is again summed over the group). Fails outside the scope.
pub fn all_reduce_sum(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.rank() != 1 || t.dtype() != DType::F64 {
        bail!(
            "all_reduce_sum: expected a 1-D f64 tensor, got {:?} {:?}",
            t.dtype(),
            t.dims()
        )
    }
    let device = t.device().clone();
    let cpu = t.to_device(&candle_core::Device::Cpu)?.contiguous()?;
    cpu.apply_op1(AllReduceSum)?.to_device(&device)
}

/// Batch normalisation of `xs` (`[N, C, H, W]` or `[N, C]`) with the global batch statistics of
/// the thread's group (see the module docs); returns the output, the global mean and biased
/// variance (detached, in `xs`'s dtype) and the global count of values per channel.
pub(crate) fn batch_norm_train_synced(
    xs: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    eps: f64,
) -> candle_core::Result<(Tensor, BatchStats, usize)> {
    let dims = xs.dims().to_vec();
    if !(dims.len() == 2 || dims.len() == 4) {
        bail!("sync batch norm: expected an [N, C, H, W] or [N, C] input, got shape {dims:?}")
    }
    let c = dims[1];
    let reduce: Vec<usize> = (0..dims.len()).filter(|&d| d != 1).collect();
    let local: usize = reduce.iter().map(|&d| dims[d]).product();
    let mut per_channel = vec![1; dims.len()];
    per_channel[1] = c;
    let dtype = xs.dtype();
    let x = xs.to_dtype(DType::F64)?;
    // One all-reduce for the sums and the count.
    let sum = x.sum_keepdim(reduce.as_slice())?.flatten_all()?;
    let count = Tensor::new(&[local as f64], xs.device())?;
    let reduced = all_reduce_sum(&Tensor::cat(&[&sum, &count], 0)?)?;
    let n = reduced.narrow(0, c, 1)?.detach().to_vec1::<f64>()?[0];
    if !(n >= 2.0 && n.fract() == 0.0) {
        bail!(
            "sync batch norm: the group's batches hold {n} values per channel: training needs more \
             than one"
        )
    }
    let mean = (reduced.narrow(0, 0, c)? / n)?;
    let centered = x.broadcast_sub(&mean.reshape(per_channel.as_slice())?)?;
    let squares = centered.sqr()?.sum_keepdim(reduce.as_slice())?.flatten_all()?;
    let var = (all_reduce_sum(&squares)? / n)?;
    let inv_std = (var.clone() + eps)?.sqrt()?.recip()?;
    // The output as the single-process kernel writes it, in the input's dtype:
    // `(x - mean) * (inv_std * weight) + bias`, each coefficient rounded once from f64, so that
    // the same statistics give the same values bit for bit (a ReLU's or a max pool's choice
    // then never differs on rounding).
    let channel = |t: Tensor| t.to_dtype(dtype)?.reshape(per_channel.as_slice());
    let (scale, shift) = match affine {
        Some((w, b)) => (
            channel((&inv_std * w.to_dtype(DType::F64)?)?)?,
            Some(b.reshape(per_channel.as_slice())?),
        ),
        None => (channel(inv_std)?, None),
    };
    let normed = xs.broadcast_sub(&channel(mean.clone())?)?.broadcast_mul(&scale)?;
    let out = match shift {
        Some(b) => normed.broadcast_add(&b)?,
        None => normed,
    };
    let stats = BatchStats {
        mean: mean.detach().to_dtype(dtype)?,
        var: var.detach().to_dtype(dtype)?,
    };
    Ok((out, stats, n as usize))
}
