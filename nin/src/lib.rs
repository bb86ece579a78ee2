//! nin (in progress)
