//! The trainer crate's integration tests, one module per file, in one test binary (each file
//! its own binary linked the whole of candle again: time and disk CI could not spare).

mod augment;
mod checkpoint;
mod checkpoint_validation;
mod data;
mod distributed;
#[cfg(feature = "mpi")]
mod distributed_mpi;
mod ema;
mod finetune;
mod fit;
mod image_data;
mod input_type;
mod metrics;
mod optim;
mod optim_extras;
mod parser_props;
mod pretrained;
mod recipe;
mod run_dir;
