//! The xtask crate's integration tests, one module per file, in one test binary (each file
//! its own binary linked the whole of candle again: time and disk CI could not spare).

mod cli;
mod finetune;
mod hostile;
mod published;
mod recipe;
mod trust;
mod visualize;
