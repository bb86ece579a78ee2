//! The NCCL engine: one process per GPU, gradients summed on the devices by NCCL (cudarc's
//! bindings, as candle's multi-process examples use them), everything else (the NCCL id, the
//! weights broadcast, the small sums, the barrier, aborts) over the MPI world that started the
//! processes. The NCCL id is made by rank 0 and passed over MPI: `mpirun -np <gpus>` starts the
//! ranks, each on the GPU of its local rank.
//!
//! Never run (no GPU lent so far); compile-checked (`cargo clippy -p convnets-trainer
//! --features nccl --all-targets`) with the CUDA 13.4 wheels `scripts/check_cuda_build.sh`
//! installs, not in CI.

use super::{Collective, MpiCollective};
use crate::{Error, Result};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::CudaSlice;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use std::time::Duration;

/// NCCL over the GPUs of an MPI world (see the module docs).
pub struct NcclCollective {
    mpi: MpiCollective,
    comm: Comm,
    device: Device,
}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCollective")
            .field("rank", &self.mpi.rank())
            .field("size", &self.mpi.world_size())
            .finish()
    }
}

/// The GPU of this process: its local rank on its machine (OpenMPI's
/// `OMPI_COMM_WORLD_LOCAL_RANK`, Slurm's `SLURM_LOCALID`, torchrun's `LOCAL_RANK`), 0 without one.
pub fn local_rank() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "SLURM_LOCALID",
        "LOCAL_RANK",
        "MPI_LOCALRANKID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
    .unwrap_or(0)
}

impl NcclCollective {
    /// Initialises MPI (see [`MpiCollective::init`]), then NCCL on `device` (a CUDA device,
    /// usually `Device::new_cuda(local_rank())`), with the id rank 0 broadcasts over MPI.
    pub fn init(device: &Device, timeout: Option<Duration>) -> Result<NcclCollective> {
        let Device::Cuda(cuda) = device else {
            return Err(Error::Distributed(format!(
                "the NCCL engine trains on CUDA devices, not {device:?}: pass --device cuda"
            )));
        };
        let mpi = MpiCollective::init(timeout)?;
        let mut id_bytes = if mpi.is_main() {
            let id = Id::new().map_err(|e| Error::Distributed(format!("ncclGetUniqueId: {e:?}")))?;
            id.internal().iter().map(|&c| c as u8).collect()
        } else {
            Vec::new()
        };
        mpi.broadcast_bytes(&mut id_bytes)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        if id_bytes.len() != internal.len() {
            return Err(Error::Distributed(format!(
                "the NCCL id rank 0 sent has {} bytes, not 128",
                id_bytes.len()
            )));
        }
        for (dst, &src) in internal.iter_mut().zip(&id_bytes) {
            *dst = src as std::ffi::c_char;
        }
        let comm = Comm::from_rank(
            cuda.cuda_stream(),
            mpi.rank(),
            mpi.world_size(),
            Id::uninit(internal),
        )
        .map_err(|e| Error::Distributed(format!("ncclCommInitRank (rank {}): {e:?}", mpi.rank())))?;
        Ok(NcclCollective {
            mpi,
            comm,
            device: device.clone(),
        })
    }
}

/// The sum over the ranks of a contiguous f32 tensor on the GPU, as a custom op (candle's
/// multi-process llama does its all-reduce the same way).
struct AllReduceSum<'a> {
    comm: &'a Comm,
}

impl CustomOp1 for AllReduceSum<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL all-reduce takes tensors on a CUDA device")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        if storage.dtype() != DType::F32 {
            candle_core::bail!("the NCCL all-reduce takes f32 tensors, got {:?}", storage.dtype())
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the NCCL all-reduce takes contiguous tensors")
        };
        let src = storage.as_cuda_slice::<f32>()?.slice(start..end);
        let device = storage.device().clone();
        let mut dst: CudaSlice<f32> = device.alloc_zeros::<f32>(end - start)?;
        self.comm
            .all_reduce(&src, &mut dst, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("ncclAllReduce: {e:?}")))?;
        Ok((CudaStorage::wrap_cuda_slice(dst, device), layout.shape().clone()))
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn world_size(&self) -> usize {
        self.mpi.world_size()
    }

    fn engine(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.mpi.all_reduce_sum_f64(values)
    }

    fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor> {
        let on_gpu = flat.to_device(&self.device)?.contiguous()?;
        let summed = on_gpu.apply_op1_no_bwd(&AllReduceSum { comm: &self.comm })?;
        Ok(summed.to_device(flat.device())?)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        self.mpi.broadcast_bytes(bytes)
    }

    fn barrier(&self) -> Result<()> {
        self.mpi.barrier()
    }

    /// MPI's group (the same ranks): batch norm's per-channel sums are small and go through
    /// the host.
    fn batch_norm_sync(&self) -> Option<std::rc::Rc<dyn backbone::layers::BatchNormSync>> {
        self.mpi.batch_norm_sync()
    }

    fn abort(&self, code: i32) -> ! {
        self.mpi.abort(code)
    }
}
