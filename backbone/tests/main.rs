//! The backbone crate's integration tests, one module per file, in one test binary (each file
//! its own binary linked the whole of candle again: time and disk CI could not spare).

mod common;

mod autograd_patch;
mod batch_norm_op;
mod bias_op;
mod conv_bn_fold;
mod conv_cpu;
mod conv_op;
mod conv_same;
mod convnext_layers;
mod depthwise;
mod layers;
mod lrn;
mod pool;
mod pool_reference;
mod relu_op;
mod safetensors_props;
mod safetensors_read;
mod squeeze_excite;
mod sync_batch_norm;
