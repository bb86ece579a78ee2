//! The crate's error type: each variant names the model, layer, file or value at fault, what
//! was expected and what was found.

/// What can go wrong while looking inside a network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The deconvnet needs a plain chain of layers, which the model does not expose.
    #[error(
        "{model}: the deconvnet needs a plain chain of convolutions, ReLUs and max (or average) \
         poolings (LeNet, AlexNet, ZFNet, VGG); {model} has branches or residual connections, so \
         there is no such chain to walk back (guided backpropagation works with any model)"
    )]
    NotPlain {
        /// The model.
        model: String,
    },
    /// A layer or stage name the model does not have.
    #[error("{model}: no layer `{layer}` for {method}; expected one of: {available}")]
    UnknownLayer {
        /// The model.
        model: String,
        /// The method that looked the name up (`the deconvnet`, `activations`).
        method: &'static str,
        /// The name asked for.
        layer: String,
        /// The names the model has, comma-separated.
        available: String,
    },
    /// A layer of the chain that the deconvnet cannot pass back through.
    #[error(
        "{model}: the deconvnet cannot pass back through `{layer}` ({kind}); it handles \
         convolutions with or without a ReLU, ReLU, max and average pooling, LRN and dropout"
    )]
    UnsupportedLayer {
        /// The model.
        model: String,
        /// The layer.
        layer: String,
        /// Its type.
        kind: String,
    },
    /// A class index past the head.
    #[error("{model}: class {class} is out of range: the head has {classes} classes (0..{classes})")]
    ClassOutOfRange {
        /// The model.
        model: String,
        /// The class asked for.
        class: usize,
        /// The head's class count.
        classes: usize,
    },
    /// A tensor or setting of the wrong shape or value.
    #[error("{what}: expected {expected}, found {found}")]
    Invalid {
        /// What was checked.
        what: String,
        /// What it should be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// A figure could not be drawn or written.
    #[error("writing {path}: {reason}")]
    Render {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The model failed (wrong input shape, dtype, ...).
    #[error(transparent)]
    Backbone(#[from] backbone::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl std::fmt::Display,
    ) -> Self {
        Error::Invalid {
            what: what.into(),
            expected: expected.into(),
            found: found.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
