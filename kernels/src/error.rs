//! The kernels' error: arguments (shapes, parameters, buffers) they cannot work with.

/// An argument the kernels refuse, with a message naming the op and the values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shapes or parameters that do not fit together (the message names op and values).
    #[error("{0}")]
    Invalid(String),
    /// An ISA asked for (by name or through the API) that this CPU or build does not have.
    #[error("ISA {asked} is not available on this CPU (available: {available})")]
    UnsupportedIsa { asked: String, available: String },
    /// A value of `CONVNETS_KERNELS_ISA` that names no ISA.
    #[error("unknown ISA {0:?}: expected portable, avx2 or avx512")]
    UnknownIsa(String),
}

/// The kernels' result.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns early with [`Error::Invalid`] and a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;
