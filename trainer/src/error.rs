//! The error type of the `trainer` crate.

use std::path::{Path, PathBuf};

/// Errors raised while loading data, training, or reading and writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed (file missing, permission denied, disk full, ...).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A dataset file exists but its content is not what was expected (bad magic number, truncated
    /// or oversized file, image and label counts that differ, out-of-range label, ...).
    #[error("dataset file {}: {problem}", path.display())]
    Dataset {
        /// The offending file (a pseudo-path such as `<bundled>/train-images-idx3-ubyte.gz` for
        /// data embedded in the binary).
        path: PathBuf,
        /// What was expected and what was found.
        problem: String,
    },

    /// A checkpoint file could not be read or written (corrupt, truncated, unsupported dtype, ...).
    #[error("checkpoint {}: {problem}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },

    /// A configuration or an argument that cannot work (batch size 0, negative learning rate,
    /// logits and targets of mismatched shapes, label out of range, ...).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// An error of the model crate.
    #[error(transparent)]
    Model(#[from] backbone::Error),

    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Pretrained weights that cannot be located, downloaded or described (the `hub` crate's
    /// error: a malformed weights reference, a repo missing from the cache while offline, a
    /// failed download, an invalid `config.json`).
    #[error(transparent)]
    Hub(#[from] hub::Error),

    /// Data-parallel training failed: a collective operation of the engine (MPI, NCCL) failed,
    /// another rank failed or stopped answering, or the launch is wrong (`--distributed` without
    /// an engine, `mpirun` without `--distributed`, a world size that does not divide the batch).
    #[error("distributed training: {0}")]
    Distributed(String),

    /// A run folder that cannot be used as asked: it holds another run (and `overwrite` was not
    /// given), another process is writing to it, there is nothing to resume, the run to resume
    /// has other settings or has already finished.
    #[error("run folder {}: {problem}", dir.display())]
    Run {
        /// The run folder (`--out`).
        dir: PathBuf,
        /// What is wrong and how to go on.
        problem: String,
    },

    /// Training stopped because the loss became non-finite or exploded.
    #[error("training diverged at epoch {epoch}, step {step}: {problem}; {}", match last_good {
        Some(path) => format!("the last good checkpoint is {}", path.display()),
        None => "no checkpoint was written by this run".to_string(),
    })]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based optimizer step over the whole run.
        step: usize,
        /// What was seen: `the loss is NaN`, `loss 3.9e35 exceeds 1000 x the first epoch's 2.31`.
        problem: String,
        /// The newest checkpoint left in the run folder, untouched.
        last_good: Option<PathBuf>,
    },

    /// A plot could not be drawn or encoded (writing it gives [`Error::Io`]).
    #[error("plot {}: {problem}", path.display())]
    Plot {
        /// The image file the plot was meant for.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] about `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An [`Error::Dataset`] about `path`.
    pub fn dataset(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Dataset {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }

    /// An [`Error::Checkpoint`] about `path`.
    pub fn checkpoint(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }

    /// An [`Error::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    /// An [`Error::Run`] about the run folder `dir`.
    pub fn run(dir: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Run {
            dir: dir.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }

    /// An [`Error::Plot`] about `path`, the image file being drawn.
    pub fn plot(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Plot {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }
}
