//! Wrong launches, told apart before anything starts: `--distributed` in a build without an
//! engine, a process started by `mpirun` (or another MPI launcher) without `--distributed`
//! (each rank would train alone and write the same run folder).

use crate::{Error, Result};

/// The environment variables MPI launchers set in each process they start, with the world size
/// they hold: OpenMPI's `mpirun`, then PMI's (MPICH's hydra, Slurm's `srun --mpi=pmi2`), then
/// PMIx's.
const WORLD_SIZE_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];

/// The world size an MPI launcher gave this process (see [`WORLD_SIZE_VARS`]), if any; `get`
/// reads an environment variable (`std::env::var` in a program, a map in tests).
pub fn launched_by_mpi(get: impl Fn(&str) -> Option<String>) -> Option<(String, usize)> {
    WORLD_SIZE_VARS.iter().find_map(|name| {
        let value = get(name)?;
        let size = value.trim().parse::<usize>().ok()?;
        Some((name.to_string(), size))
    })
}

/// The launch as the command line and the build see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchCheck {
    /// `--distributed` was given.
    pub distributed: bool,
    /// This build has an engine (the `mpi` feature).
    pub engine_built: bool,
}

impl LaunchCheck {
    /// Refuses `--distributed` without an engine, and a process an MPI launcher started with
    /// more than one rank but without `--distributed`; `get` reads the environment.
    pub fn check(&self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if self.distributed && !self.engine_built {
            return Err(Error::Distributed(
                "--distributed needs a build with an engine: build with `--features mpi` (CPU \
                 processes under mpirun) or `--features nccl` (one process per GPU), e.g. \
                 `mpirun -np 2 cargo run --release -p xtask --features mpi -- train ... \
                 --distributed`"
                    .into(),
            ));
        }
        if !self.distributed {
            if let Some((var, size)) = launched_by_mpi(get) {
                if size > 1 {
                    return Err(Error::Distributed(format!(
                        "this process was started by an MPI launcher as one of {size} ({var}) \
                         but without --distributed: each would train alone on all the data and \
                         write the same run folder; pass --distributed (a build with `--features \
                         mpi`), or run one process without mpirun"
                    )));
                }
            }
        }
        Ok(())
    }
}
