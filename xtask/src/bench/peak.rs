//! The distance to the limit: the machine's FMA peak measured at the start of a run
//! ([`kernels::peak`]: independent fused multiply-adds on the widest vectors of the chosen
//! ISA, on each thread at once), printed with the environment (CPU model, ISA, threads), and
//! each row's GFLOP/s and share of it.

use super::Row;
use std::time::Duration;

/// How long the peak loop runs (all threads at once).
const PEAK_TIME: Duration = Duration::from_millis(500);

/// The run's environment and measured peak.
#[derive(Debug, Clone)]
pub(super) struct Environment {
    pub(super) cpu: String,
    pub(super) peak: kernels::peak::Peak,
}

impl Environment {
    /// Measures the peak on `threads` threads (the run's, already capped by
    /// `args::cap_threads`).
    pub(super) fn measure(threads: usize) -> Self {
        Self {
            cpu: cpu_model(),
            peak: kernels::peak::measure(threads, PEAK_TIME),
        }
    }

    /// One line for the run's header.
    pub(super) fn describe(&self) -> String {
        let p = &self.peak;
        format!(
            "{}; kernels ISA {} ({}: {}, gemm's own choice: {}); {} threads; FMA peak {:.0} GFLOP/s ({} per thread)",
            self.cpu,
            p.isa,
            kernels::isa::ENV_VAR,
            std::env::var(kernels::isa::ENV_VAR).unwrap_or_else(|_| "unset".into()),
            kernels::isa::gemm_isa(),
            p.threads,
            p.total(),
            p.per_thread
                .iter()
                .map(|g| format!("{g:.0}"))
                .collect::<Vec<_>>()
                .join(" / ")
        )
    }

    /// Fills a measured row's GFLOP/s and share of the peak.
    pub(super) fn annotate(&self, row: &mut Row) {
        let gflops = row_gflops(row);
        row.gflops = gflops;
        row.peak_share = gflops.map(|g| g / self.peak.total()).filter(|s| s.is_finite());
    }
}

/// GFLOP/s of a row: 2 FLOPs per multiply-accumulate of a forward pass, times 3 for a
/// training step (forward, input gradient, weight gradient: the usual count), times
/// samples/s. `None` when the MACs are unknown.
pub(super) fn row_gflops(row: &Row) -> Option<f64> {
    let passes = if row.mode == "train" { 3.0 } else { 1.0 };
    let g = 2.0 * passes * row.gmacs * row.samples_per_sec;
    g.is_finite().then_some(g)
}

/// The CPU's model name (`/proc/cpuinfo` on Linux), or the architecture.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gflops_count_two_flops_per_mac_and_three_passes_in_training() {
        let mut row: Row = serde_json::from_str(
            r#"{"model":"m","mode":"infer","device":"cpu","dtype":"float32","batch_size":1,"img_size":224,
            "samples_per_sec":100.0,"step_time":10.0,"step_time_min":9.0,"step_time_max":11.0,"fwd_time":null,
            "bwd_time":null,"opt_time":null,"param_count":11.7,"gmacs":1.8,"peak_mem_mb":null,"threads":2}"#,
        )
        .unwrap();
        assert!((row_gflops(&row).unwrap() - 360.0).abs() < 1e-9);
        row.mode = "train".into();
        assert!((row_gflops(&row).unwrap() - 1080.0).abs() < 1e-9);
        row.gmacs = f64::NAN;
        assert_eq!(row_gflops(&row), None);
    }
}
