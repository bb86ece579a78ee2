//! The machine's floating-point peak, measured: a timed loop of independent fused
//! multiply-adds on the widest vectors of the chosen ISA, on each of `threads` threads at
//! once. What a convolution can at best reach on this machine (and this ISA choice).

use crate::isa::{isa, Isa};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Independent accumulators: more than an FMA's latency times the FMA ports (4 x 2 on Zen 4
/// and Zen 5, 4 x 2 on Intel's server cores), so the loop is throughput-bound.
const CHAINS: usize = 12;

/// Inner iterations between clock reads.
const STEPS: usize = 1 << 14;

/// A measured peak.
#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    /// The path measured (the chosen one, [`crate::isa::isa`]).
    pub isa: Isa,
    /// f32 lanes per vector of that path.
    pub lanes: usize,
    /// Threads that ran the loop at once.
    pub threads: usize,
    /// GFLOP/s of each thread (2 per multiply-add per lane).
    pub per_thread: Vec<f64>,
}

impl Peak {
    /// All threads together, GFLOP/s.
    pub fn total(&self) -> f64 {
        self.per_thread.iter().sum()
    }
}

/// Runs the loop for about `time` on `threads` threads at once (at least 1) with the chosen
/// ISA and returns each thread's rate (its best window: see `one_thread`).
pub fn measure(threads: usize, time: Duration) -> Peak {
    let isa = isa();
    let threads = threads.max(1);
    let per_thread = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || one_thread(isa, time)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).collect()
    });
    Peak {
        isa,
        lanes: isa.f32_lanes(),
        threads,
        per_thread,
    }
}

/// Rounds per timed window: about 1 ms of work.
const WINDOW: usize = 16;

/// GFLOP/s of one thread running the loop for about `time`: the best of its windows of
/// [`WINDOW`] rounds, so that time the thread spent descheduled (a shared or busy machine)
/// does not count against the peak; the first windows also warm the core's clock up.
fn one_thread(isa: Isa, time: Duration) -> f64 {
    let start = Instant::now();
    let mut best = 0f64;
    loop {
        let window = Instant::now();
        let mut flops = 0u64;
        for _ in 0..WINDOW {
            flops += round(isa);
        }
        best = best.max(flops as f64 / window.elapsed().as_secs_f64() / 1e9);
        if start.elapsed() >= time {
            break;
        }
    }
    best
}

/// One round of the loop on `isa`'s vectors: flops done.
fn round(isa: Isa) -> u64 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has the path's features (checked).
        Isa::Avx512 if isa.is_available() => unsafe { rounds_avx512() },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 if isa.is_available() => unsafe { rounds_avx2() },
        _ => rounds_portable(),
    }
}

/// `STEPS` rounds of `CHAINS` multiply-adds on 4-lane arrays (the compiler's baseline
/// vectors; a multiply and an add where there is no FMA): flops done.
fn rounds_portable() -> u64 {
    let mut acc = [[1.0f32; 4]; CHAINS];
    let (a, b) = (black_box([0.999_999f32; 4]), black_box([1e-7f32; 4]));
    for _ in 0..STEPS {
        for chain in acc.iter_mut() {
            for ((c, &a), &b) in chain.iter_mut().zip(&a).zip(&b) {
                *c = *c * a + b;
            }
        }
    }
    black_box(acc);
    (STEPS * CHAINS * 4 * 2) as u64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rounds_avx2() -> u64 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(black_box(0.999_999));
    let b = _mm256_set1_ps(black_box(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..STEPS {
        for c in acc.iter_mut() {
            *c = _mm256_fmadd_ps(*c, a, b);
        }
    }
    black_box(acc);
    (STEPS * CHAINS * 8 * 2) as u64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rounds_avx512() -> u64 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(black_box(0.999_999));
    let b = _mm512_set1_ps(black_box(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..STEPS {
        for c in acc.iter_mut() {
            *c = _mm512_fmadd_ps(*c, a, b);
        }
    }
    black_box(acc);
    (STEPS * CHAINS * 16 * 2) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peak_is_positive_on_every_thread() {
        let peak = super::measure(2, std::time::Duration::from_millis(20));
        assert_eq!(peak.per_thread.len(), 2);
        assert!(peak.per_thread.iter().all(|&g| g > 0.1), "{peak:?}");
    }
}
