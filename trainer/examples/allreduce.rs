//! The cost of the gradient all-reduce over MPI on this machine, for BENCHMARKS.md: the
//! gradients of LeNet-5 (61,706 parameters), ResNet-18 (11,689,512) and ResNet-50 (25,557,032)
//! averaged with `average_gradients` (25 MiB buckets), best and median of 10 after 2 untimed.
//!
//! ```text
//! cargo build --release -p convnets-trainer --features mpi --example allreduce
//! mpirun -np 2 target/release/examples/allreduce
//! ```

use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use std::time::Instant;
use trainer::distributed::{average_gradients, Collective, MpiCollective, BUCKET_BYTES};

fn main() -> trainer::Result<()> {
    let mpi = MpiCollective::init(None)?;
    for (name, params) in [
        ("LeNet-5", 61_706usize),
        ("ResNet-18", 11_689_512),
        ("ResNet-50", 25_557_032),
    ] {
        // One variable per ~1M parameters, like a network's layers.
        let mut vars = Vec::new();
        let mut left = params;
        while left > 0 {
            let n = left.min(1 << 20);
            vars.push(Var::from_tensor(&Tensor::zeros(n, DType::F32, &Device::Cpu)?)?);
            left -= n;
        }
        let mut times = Vec::new();
        for i in 0..12 {
            let loss = vars
                .iter()
                .map(|v| v.as_tensor().sum_all())
                .collect::<candle_core::Result<Vec<_>>>()?;
            let mut total = loss[0].clone();
            for l in &loss[1..] {
                total = (total + l)?;
            }
            let mut grads: GradStore = total.backward()?;
            mpi.barrier()?;
            let t0 = Instant::now();
            average_gradients(&mpi, &mut grads, &vars, BUCKET_BYTES)?;
            if i >= 2 {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        // The engine's sum alone, on one flat tensor of the same size.
        let flat = Tensor::zeros(params, DType::F32, &Device::Cpu)?;
        let mut raw = Vec::new();
        for _ in 0..5 {
            mpi.barrier()?;
            let t0 = Instant::now();
            mpi.all_reduce_sum(&flat)?;
            raw.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        raw.sort_by(f64::total_cmp);
        if mpi.is_main() {
            println!(
                "  MPI_Allreduce alone (host copies included): best {:.2} ms",
                raw[0]
            );
            println!(
                "{name}: {} ranks, {:.1} MB of gradients: best {:.2} ms, median {:.2} ms",
                mpi.world_size(),
                params as f64 * 4.0 / 1e6,
                times[0],
                times[times.len() / 2]
            );
        }
    }
    Ok(())
}
