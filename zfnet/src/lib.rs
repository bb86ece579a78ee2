//! zfnet (in progress)
