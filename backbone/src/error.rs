//! The error type shared by `backbone` and every architecture crate.

use std::path::PathBuf;

/// Errors raised while building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor fed to a model or a layer has the wrong shape.
    #[error("{layer}: expected input of shape {expected}, got {actual:?}")]
    InputShape {
        /// The model or layer that refused the tensor (its variable path when it has one).
        layer: String,
        /// The accepted shape, in words (`[N, 1, 32, 32]`, `[N, 6, H>=5, W>=5]`, ...).
        expected: String,
        /// The dimensions that were given.
        actual: Vec<usize>,
    },

    /// A tensor fed to a model has another dtype or device than the model's weights.
    #[error("{model}: expected an input tensor of dtype and device {expected} (those of its weights), got {actual}; convert it with `to_dtype` / `to_device`")]
    InputType {
        /// The model.
        model: String,
        /// The weights' dtype and device.
        expected: String,
        /// The input's.
        actual: String,
    },

    /// A tensor of a weights file is missing or has the wrong shape.
    #[error("{}: tensor `{tensor}`: {problem}", file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "weights".into()))]
    Weights {
        /// The file the weights come from, when known.
        file: Option<PathBuf>,
        /// The tensor name, as in the state dict (`conv1.weight`).
        tensor: String,
        /// What is wrong: `missing`, `expected shape [6, 1, 5, 5], found [6, 1, 3, 3]`, ...
        problem: String,
    },

    /// A weights file that cannot be read at all (missing, truncated, not safetensors).
    #[error("{}: {problem}", file.display())]
    WeightsFile {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        problem: String,
    },

    /// A configuration that cannot describe a valid layer or model.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::InputShape`] for `layer`.
    pub fn input_shape(layer: impl Into<String>, expected: impl Into<String>, actual: &[usize]) -> Self {
        Error::InputShape {
            layer: layer.into(),
            expected: expected.into(),
            actual: actual.to_vec(),
        }
    }

    /// An [`Error::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
}
