//! Data-parallel training over several processes, with PyTorch DDP's semantics, on existing
//! engines: MPI for CPU processes (feature `mpi`, [`MpiCollective`]) and NCCL for GPUs
//! (feature `nccl`, `NcclCollective`). No home-made transport.
//!
//! The training loop ([`crate::train::train_with`]) takes a [`Collective`]:
//! - rank 0's initial weights and buffers (and, on `--resume`, its restored epoch, optimizer
//!   state and history) are broadcast to every rank before the first step;
//! - each rank reads its own shard of every epoch ([`shard_indices`], torch's
//!   `DistributedSampler`: the same seeded permutation on every rank, padded to a multiple of
//!   the world size, rank `r` takes positions `r, r + world, ...`) in batches of
//!   `batch_size / world` (the global batch is `batch_size`);
//! - after backward, the gradients are averaged over the ranks in buckets of at most
//!   [`BUCKET_BYTES`] ([`average_gradients`]), so every rank applies the same step; the loss the
//!   guard checks and the epoch's sums are reduced too, so every rank takes the same decisions;
//! - batch norm normalises with each rank's own batch statistics (DDP's default), or, with
//!   [`crate::train::TrainConfig::sync_bn`] (`--sync-bn`), with the global batch's
//!   (PyTorch's `SyncBatchNorm`: [`backbone::layers::sync_batch_norm`] over the group of
//!   [`Collective::batch_norm_sync`], for the whole loop); rank 0's buffers are broadcast after
//!   every epoch (what DDP's `broadcast_buffers` leaves in rank 0, which alone is saved), so
//!   every rank evaluates the same model;
//! - validation is split over the ranks without padding ([`split_indices_exact`]: rank `r`
//!   evaluates every `world`-th image from the `r`-th) and the metrics' sums are all-reduced,
//!   so every rank gets the figures of every image counted once (timm reduces over a padded
//!   sampler instead, which counts the padding twice);
//! - rank 0 alone opens and writes the run folder and prints the log.
//!
//! [`SingleProcess`] is the world of one process: every operation is the identity.

mod sampler;
pub use sampler::{shard_indices, shard_len, split_indices_exact};

#[cfg(feature = "mpi")]
mod mpi_engine;
#[cfg(feature = "mpi")]
pub use mpi_engine::MpiCollective;

#[cfg(feature = "nccl")]
mod nccl_engine;
#[cfg(feature = "nccl")]
pub use nccl_engine::{local_rank, NcclCollective};

mod launch;
pub use launch::{launched_by_mpi, LaunchCheck};

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

/// Gradient bucket size: PyTorch DDP's default `bucket_cap_mb = 25`.
pub const BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// The operations data-parallel training needs from a communication engine. Every rank calls
/// each operation in the same order (they are collective); an engine reports a failed call as
/// [`Error::Distributed`].
pub trait Collective {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn world_size(&self) -> usize;
    /// The engine's name (`single`, `mpi`, `nccl`).
    fn engine(&self) -> &'static str;
    /// Sums `values` over the ranks, in place (every rank gets the sums).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Sums a 1-D contiguous f32 tensor (or f64: the gradients of a float64 model; an engine
    /// that has no f64 sum refuses it with an error) over the ranks; the sum is on the tensor's
    /// device, in its dtype.
    fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor>;
    /// Rank 0's `bytes` to every rank (the other ranks' `bytes` are replaced, any length).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()>;
    /// Waits for every rank.
    fn barrier(&self) -> Result<()>;
    /// The group the batch norms of a `--sync-bn` run synchronise over
    /// ([`backbone::layers::sync_batch_norm`]): the same processes, an all-reduce of `f64` sums
    /// (`None`: this engine has none, and `--sync-bn` is refused with more than one rank).
    fn batch_norm_sync(&self) -> Option<std::rc::Rc<dyn backbone::layers::BatchNormSync>> {
        None
    }
    /// Ends every process of the job with `code` (after this rank failed: the others would
    /// otherwise wait for it in their next collective call). The world of one process exits.
    fn abort(&self, code: i32) -> !;

    /// Whether this rank writes the run folder and prints the log.
    fn is_main(&self) -> bool {
        self.rank() == 0
    }
}

/// One process: every collective operation is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn engine(&self) -> &'static str {
        "single"
    }
    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor> {
        Ok(flat.clone())
    }
    fn broadcast_bytes(&self, _bytes: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// The local batch of each rank: `global / world`, refused when the world size does not divide
/// the global batch size.
pub fn local_batch(global: usize, world: usize) -> Result<usize> {
    if world == 0 || !global.is_multiple_of(world) || global < world {
        return Err(Error::config(format!(
            "--batch-size is the global batch ({global} images per step over all ranks): it must \
             be a multiple of the world size ({world} processes); use e.g. {}",
            (global / world.max(1)).max(1) * world
        )));
    }
    Ok(global / world)
}

/// Makes every rank agree on the outcome of a step that may fail on some ranks only: each rank's
/// error is kept; a rank that succeeded returns an error naming the ranks that failed.
pub fn agree<T>(collective: &dyn Collective, what: &str, result: Result<T>) -> Result<T> {
    if collective.world_size() == 1 {
        return result;
    }
    let mut failed = vec![0.0; collective.world_size()];
    failed[collective.rank()] = if result.is_err() { 1.0 } else { 0.0 };
    collective.all_reduce_sum_f64(&mut failed)?;
    let ranks: Vec<String> = failed
        .iter()
        .enumerate()
        .filter(|(_, &f)| f > 0.0)
        .map(|(r, _)| r.to_string())
        .collect();
    match result {
        Err(e) => Err(e),
        Ok(_) if !ranks.is_empty() => Err(Error::Distributed(format!(
            "{what} failed on rank {} (its message is above)",
            ranks.join(", ")
        ))),
        Ok(value) => Ok(value),
    }
}

/// Averages the gradients of `vars` over the ranks, in buckets of at most `bucket_bytes`, in
/// place in `grads`. A variable without a gradient on every rank is skipped; one with a
/// gradient on some ranks only counts zero on the others (every rank then has the same set).
/// The sums are in f64 for f64 variables (a float64 model's gradients are never rounded to
/// f32), in f32 otherwise; a bucket holds variables of one of the two.
pub fn average_gradients(
    collective: &dyn Collective,
    grads: &mut GradStore,
    vars: &[Var],
    bucket_bytes: usize,
) -> Result<()> {
    let world = collective.world_size();
    if world == 1 {
        return Ok(());
    }
    let mut present: Vec<f64> = vars
        .iter()
        .map(|v| {
            if grads.get(v.as_tensor()).is_some() {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    collective.all_reduce_sum_f64(&mut present)?;
    let reduced: Vec<&Var> = vars
        .iter()
        .zip(&present)
        .filter(|(_, &p)| p > 0.0)
        .map(|(v, _)| v)
        .collect();
    let sum_dtype = |var: &Var| match var.dtype() {
        DType::F64 => DType::F64,
        _ => DType::F32,
    };
    let mut start = 0;
    while start < reduced.len() {
        // One bucket: consecutive variables of one sum dtype up to the byte cap (at least one).
        let dtype = sum_dtype(reduced[start]);
        let size = |var: &Var| var.elem_count() * dtype.size_in_bytes();
        let mut end = start;
        let mut bytes = 0;
        while end < reduced.len()
            && (end == start
                || (sum_dtype(reduced[end]) == dtype && bytes + size(reduced[end]) <= bucket_bytes))
        {
            bytes += size(reduced[end]);
            end += 1;
        }
        let bucket = &reduced[start..end];
        let mut flat = Vec::with_capacity(bucket.len());
        for var in bucket {
            let grad = match grads.get(var.as_tensor()) {
                Some(g) => g.to_dtype(dtype)?.flatten_all()?,
                None => Tensor::zeros(var.elem_count(), dtype, var.device())?,
            };
            flat.push(grad);
        }
        let flat = Tensor::cat(&flat, 0)?.contiguous()?;
        let summed = collective.all_reduce_sum(&flat)?;
        let mean = (summed / world as f64)?;
        let mut offset = 0;
        for var in bucket {
            let n = var.elem_count();
            let grad = mean
                .narrow(0, offset, n)?
                .reshape(var.shape())?
                .to_dtype(var.dtype())?;
            grads.insert(var.as_tensor(), grad);
            offset += n;
        }
        start = end;
    }
    Ok(())
}

/// Sums `values` over the ranks and divides by the world size.
pub fn all_reduce_mean_f64(collective: &dyn Collective, values: &mut [f64]) -> Result<()> {
    collective.all_reduce_sum_f64(values)?;
    let world = collective.world_size() as f64;
    values.iter_mut().for_each(|v| *v /= world);
    Ok(())
}

/// Rank 0's value of every variable of `varmap` (weights and buffers such as batch norm's running
/// statistics) to every rank.
pub fn broadcast_varmap(collective: &dyn Collective, varmap: &candle_nn::VarMap) -> Result<()> {
    if collective.world_size() == 1 {
        return Ok(());
    }
    let tensors: std::collections::HashMap<String, Tensor> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Distributed("the variables' lock is poisoned".into()))?;
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    };
    let mut bytes = if collective.is_main() {
        tensors_to_bytes(&tensors)?
    } else {
        Vec::new()
    };
    collective.broadcast_bytes(&mut bytes)?;
    if collective.is_main() {
        return Ok(());
    }
    let received = bytes_to_tensors(&bytes)?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Distributed("the variables' lock is poisoned".into()))?;
    if received.len() != data.len() {
        return Err(Error::Distributed(format!(
            "rank 0 has {} variables, rank {} has {}: every rank must build the same model",
            received.len(),
            collective.rank(),
            data.len()
        )));
    }
    for (name, var) in data.iter() {
        let value = received.get(name).ok_or_else(|| {
            Error::Distributed(format!(
                "rank 0 has no variable `{name}` (rank {} has): every rank must build the same model",
                collective.rank()
            ))
        })?;
        var.set(&value.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Serialises named tensors (safetensors), for a broadcast.
pub fn tensors_to_bytes(tensors: &std::collections::HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| {
            Ok((
                k.clone(),
                t.detach().to_device(&candle_core::Device::Cpu)?.contiguous()?,
            ))
        })
        .collect::<Result<_>>()?;
    safetensors::tensor::serialize(cpu.iter().map(|(k, t)| (k.as_str(), t)), None)
        .map_err(|e| Error::Distributed(format!("cannot serialise tensors for a broadcast: {e}")))
}

/// The tensors [`tensors_to_bytes`] serialised, on the CPU.
pub fn bytes_to_tensors(bytes: &[u8]) -> Result<std::collections::HashMap<String, Tensor>> {
    candle_core::safetensors::load_buffer(bytes, &candle_core::Device::Cpu)
        .map_err(|e| Error::Distributed(format!("cannot read the tensors rank 0 broadcast: {e}")))
}
