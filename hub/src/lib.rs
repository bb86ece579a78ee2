//! Weights references and the Hugging Face cache (the `hub` crate, shared by the `convnets`
//! facade and the `trainer`).
//!
//! A [`WeightsRef`] names pretrained weights: a local `.safetensors` file (or a directory holding
//! `model.safetensors`, the output of our own fine-tuning) or a Hugging Face model repo
//! `owner/name[@revision]`. [`resolve`] turns it into local files: for a repo it looks in the
//! standard Hugging Face cache (`<cache>/models--owner--name/refs/<revision>` holds a commit
//! hash, `<cache>/models--owner--name/snapshots/<hash>/` the files, the layout the Python
//! `huggingface_hub` uses, so a cache filled by Python is reused) and, unless offline, downloads
//! what is missing into that same layout with `hf-hub`.
//!
//! The `config.json` next to the weights is read as a [`PretrainedConfig`] (timm's layout:
//! architecture, classes, label names and the `pretrained_cfg` preprocessing settings). It keeps
//! the whole original JSON, so a fine-tuned model written with [`PretrainedConfig::write`] next
//! to its `model.safetensors` preserves every field this crate does not know about.

mod cache;
mod config;
mod reference;

pub use cache::{resolve, HubOptions, ResolvedWeights};
pub use config::{
    check_normalisation, DataConfig, Interpolation, Normalisation, PretrainedConfig, IMAGENET_MEAN,
    IMAGENET_STD, MAX_CROP_PCT, MEAN_RANGE, STD_RANGE,
};
pub use reference::WeightsRef;

use std::path::{Path, PathBuf};

/// Errors of weights references, the cache and `config.json`.
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

    /// Pretrained weights that cannot be located, downloaded or described: a malformed weights
    /// reference, a Hugging Face repo missing from the cache while offline, a failed download,
    /// an invalid `config.json`.
    #[error("pretrained weights {location}: {problem}")]
    Pretrained {
        /// What was being resolved: the reference as written, `owner/name@revision`, or a file.
        location: String,
        /// What went wrong and how to fix it.
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

    /// An [`Error::Pretrained`] about `location` (a weights reference, a repo or a file).
    pub fn pretrained(location: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Pretrained {
            location: location.into(),
            problem: problem.into(),
        }
    }
}

/// The weights file name of a Hugging Face repo and of a fine-tuned output directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// The configuration file name next to [`WEIGHTS_FILE`].
pub const CONFIG_FILE: &str = "config.json";

/// PyTorch pickle weight files that may be cached for a repo without safetensors weights.
pub(crate) const PICKLE_FILES: [&str; 2] = ["pytorch_model.bin", "open_clip_pytorch_model.bin"];

/// File extensions of PyTorch pickle checkpoints, which are not supported.
pub(crate) const PICKLE_EXTENSIONS: [&str; 5] = ["bin", "pt", "pth", "pkl", "ckpt"];

/// The forms a weights reference may take, for error messages.
pub(crate) const ACCEPTED: &str =
    "expected a path to a .safetensors file, a directory containing model.safetensors, \
     or a Hugging Face model id `owner/name` or `owner/name@revision`";

/// The revision of a repo id written without `@revision`.
pub const DEFAULT_REVISION: &str = "main";
