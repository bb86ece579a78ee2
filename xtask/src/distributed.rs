//! `train --distributed`: the command line's side of data-parallel training
//! ([`trainer::distributed`]): the flags, the launch checks, the engine of the build.

use anyhow::Result;
use candle_core::Device;
use trainer::distributed::{Collective, LaunchCheck, SingleProcess};

/// Data-parallel training over the processes an MPI launcher started.
#[derive(clap::Args, Debug, Clone)]
pub struct DistArgs {
    /// Data-parallel training (PyTorch DDP's semantics) over the processes `mpirun -np N` started:
    /// each rank trains on its shard of every epoch, gradients are averaged over the ranks after
    /// backward, rank 0 alone writes the run folder. Needs xtask built with `--features mpi`
    /// (CPU processes) or `--features nccl` (one process per GPU, with `--device cuda`).
    #[arg(long)]
    pub distributed: bool,
    /// With --distributed: seconds one collective call may wait for the other ranks before this
    /// rank aborts the job (a rank hung, or its machine lost; a rank that dies ends the job at
    /// once through mpirun).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub collective_timeout: u64,
    /// With --distributed: every batch norm in training mode normalises with the statistics of
    /// the global batch, all ranks together (PyTorch's SyncBatchNorm, as
    /// `convert_sync_batchnorm` under DDP: two all-reduces per layer forward, two backward),
    /// instead of each rank's own batch (DDP's default). Eval mode is unchanged. Recorded in the
    /// run folder: a resumed run keeps it.
    #[arg(long)]
    pub sync_bn: bool,
}

/// The world of this process: [`SingleProcess`] without `--distributed` (refused when an MPI
/// launcher started several processes), else the build's engine: NCCL for a CUDA device in a
/// `nccl` build (each rank on the GPU of its local rank, `device` replaced), MPI otherwise.
pub fn collective(args: &DistArgs, device: &mut Device) -> Result<Box<dyn Collective>> {
    LaunchCheck {
        distributed: args.distributed,
        engine_built: cfg!(feature = "mpi"),
    }
    .check(|name| std::env::var(name).ok())?;
    if args.sync_bn && !args.distributed {
        anyhow::bail!(
            "--sync-bn synchronises batch norm over the ranks of a data-parallel run: it needs \
             --distributed (one process has only its own batch statistics)"
        );
    }
    if !args.distributed {
        return Ok(Box::new(SingleProcess));
    }
    engine(args, device)
}

#[cfg(feature = "mpi")]
fn engine(args: &DistArgs, device: &mut Device) -> Result<Box<dyn Collective>> {
    let timeout = Some(std::time::Duration::from_secs(args.collective_timeout));
    #[cfg(feature = "nccl")]
    if device.is_cuda() {
        *device = Device::new_cuda(trainer::distributed::local_rank())?;
        return Ok(Box::new(trainer::distributed::NcclCollective::init(
            device, timeout,
        )?));
    }
    let _ = &device;
    Ok(Box::new(trainer::distributed::MpiCollective::init(timeout)?))
}

#[cfg(not(feature = "mpi"))]
fn engine(_: &DistArgs, _: &mut Device) -> Result<Box<dyn Collective>> {
    // LaunchCheck refused --distributed already.
    anyhow::bail!("--distributed needs xtask built with --features mpi")
}

/// Ends the job after this rank failed: prints the error naming the rank, then aborts every
/// rank (MPI_Abort), which would otherwise wait for this one. With one process, returns it.
pub fn fail(collective: &dyn Collective, error: anyhow::Error) -> anyhow::Error {
    if collective.world_size() > 1 {
        eprintln!(
            "error: rank {} of {}: {error:#}\naborting every rank of the job",
            collective.rank(),
            collective.world_size()
        );
        collective.abort(1);
    }
    error
}
