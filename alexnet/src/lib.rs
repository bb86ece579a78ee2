//! alexnet (in progress)
