//! The MPI engine (rsmpi over the system's MPI, e.g. OpenMPI): one process per rank, started by
//! `mpirun`. Host buffers; tensors on another device go through the host.
//!
//! Faults: MPI's default error handler (`MPI_ERRORS_ARE_FATAL`) ends the job on a failed call,
//! and OpenMPI's `mpirun` kills every rank as soon as one exits abnormally (a signal, `kill -9`,
//! or an exit without `MPI_Finalize`), printing which rank died. This engine adds a watchdog: a
//! collective call that waits longer than the timeout (a rank hung, or a machine lost without
//! its process exiting) prints what it waited for and aborts this process, which `mpirun` then
//! turns into the end of the job; and [`Collective::abort`] (`MPI_Abort`) after a rank's own
//! error, so the others never wait for it.

use super::Collective;
use crate::{Error, Result};
use backbone::layers::BatchNormSync;
use candle_core::{DType, Tensor};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a rank is waiting for, since when.
type Busy = Arc<Mutex<Option<(Instant, &'static str)>>>;

/// The MPI world of the processes `mpirun` started (see the module docs).
pub struct MpiCollective {
    inner: Rc<World>,
}

/// The communicator and the watchdog's record, shared with the batch-norm group
/// ([`Collective::batch_norm_sync`]).
struct World {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    busy: Busy,
    // Finalises MPI when dropped: declared last, dropped after the communicator.
    _universe: Universe,
}

impl std::fmt::Debug for MpiCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiCollective")
            .field("rank", &self.inner.rank)
            .field("size", &self.inner.size)
            .finish()
    }
}

impl MpiCollective {
    /// Initialises MPI (once per process) with a watchdog that aborts this rank when one
    /// collective call waits longer than `timeout` (`None`: no watchdog).
    pub fn init(timeout: Option<Duration>) -> Result<MpiCollective> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Distributed("MPI is already initialised in this process (one world per process)".into())
        })?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let busy: Busy = Arc::default();
        if let Some(timeout) = timeout {
            let watched = Arc::clone(&busy);
            let spawned = std::thread::Builder::new()
                .name("mpi-watchdog".into())
                .spawn(move || watchdog(watched, timeout, rank, size));
            if let Err(e) = spawned {
                return Err(Error::Distributed(format!(
                    "cannot start the MPI watchdog thread: {e}"
                )));
            }
        }
        Ok(MpiCollective {
            inner: Rc::new(World {
                world,
                rank,
                size,
                busy,
                _universe: universe,
            }),
        })
    }
}

impl World {
    /// Runs the collective call `f`, watched.
    fn watched<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        if let Ok(mut busy) = self.busy.lock() {
            *busy = Some((Instant::now(), what));
        }
        let out = f();
        if let Ok(mut busy) = self.busy.lock() {
            *busy = None;
        }
        out
    }

    /// The sum over the ranks of the 1-D tensor `flat` of element type `T` (the gradients:
    /// f32, or f64 for a float64 model), on `flat`'s device.
    fn all_reduce_tensor<T>(&self, flat: &Tensor) -> Result<Tensor>
    where
        T: candle_core::WithDType + mpi::datatype::Equivalence + Default,
    {
        let send = flat.to_vec1::<T>()?;
        let mut recv = vec![T::default(); send.len()];
        self.watched("all-reduce of gradients", || {
            self.world
                .all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum())
        });
        Ok(Tensor::from_vec(recv, send.len(), flat.device())?)
    }

    /// Sums `values` over the ranks, in place, watched as `what`.
    fn all_reduce_f64(&self, values: &mut [f64], what: &'static str) {
        let send = values.to_vec();
        self.watched(what, || {
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum())
        });
    }
}

/// The batch-norm group of the MPI world (`--sync-bn`).
struct MpiBatchNorm(Rc<World>);

impl BatchNormSync for MpiBatchNorm {
    fn world_size(&self) -> usize {
        self.0.size
    }

    fn all_reduce_sum(&self, values: &mut [f64]) -> candle_core::Result<()> {
        self.0
            .all_reduce_f64(values, "all-reduce of batch-norm statistics");
        Ok(())
    }
}

/// Aborts the process when a collective call has waited longer than `timeout`.
fn watchdog(busy: Busy, timeout: Duration, rank: usize, size: usize) {
    let tick = (timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        std::thread::sleep(tick);
        let waited = busy
            .lock()
            .ok()
            .and_then(|b| b.map(|(since, what)| (since.elapsed(), what)));
        if let Some((elapsed, what)) = waited {
            if elapsed > timeout {
                eprintln!(
                    "error: distributed training: rank {rank} of {size} has waited {:.0} s in \
                     `{what}` for the other ranks (timeout {:.0} s): at least one of them stopped \
                     answering (hung, or its machine is lost); aborting the job. The run folder \
                     keeps its last complete checkpoint.",
                    elapsed.as_secs_f64(),
                    timeout.as_secs_f64()
                );
                // Not MPI_Abort: MPI is called from the training thread only. mpirun sees this
                // rank die and ends the others.
                std::process::abort();
            }
        }
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.inner.rank
    }

    fn world_size(&self) -> usize {
        self.inner.size
    }

    fn engine(&self) -> &'static str {
        "mpi"
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.inner.all_reduce_f64(values, "all-reduce of f64 sums");
        Ok(())
    }

    fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor> {
        match (flat.rank(), flat.dtype()) {
            (1, DType::F32) => self.inner.all_reduce_tensor::<f32>(flat),
            (1, DType::F64) => self.inner.all_reduce_tensor::<f64>(flat),
            _ => Err(Error::Distributed(format!(
                "all-reduce takes a 1-D f32 or f64 tensor, got {:?} {:?}",
                flat.dtype(),
                flat.dims()
            ))),
        }
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let root = self.inner.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        self.inner
            .watched("broadcast from rank 0", || root.broadcast_into(&mut len));
        if len > i32::MAX as u64 {
            return Err(Error::Distributed(format!(
                "a broadcast of {len} bytes is more than one MPI message holds (2 GiB)"
            )));
        }
        bytes.resize(len as usize, 0);
        self.inner
            .watched("broadcast from rank 0", || root.broadcast_into(&mut bytes[..]));
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.inner.watched("barrier", || self.inner.world.barrier());
        Ok(())
    }

    fn batch_norm_sync(&self) -> Option<Rc<dyn BatchNormSync>> {
        Some(Rc::new(MpiBatchNorm(Rc::clone(&self.inner))))
    }

    fn abort(&self, code: i32) -> ! {
        self.inner.world.abort(code)
    }
}
