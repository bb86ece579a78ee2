//! Inference mode: a promise, for the calling thread, that no gradient will be asked of what
//! the layers compute (PyTorch's `torch.inference_mode()`).
//!
//! candle has no such switch: a variable always takes part in autograd, so a model built over
//! a `VarMap` tracks every operation even in eval mode, and the layers cannot tell inference
//! from an eval-mode pass that will be differentiated (fine-tuning with frozen batch-norm
//! statistics, saliency maps). Inside [`inference_mode`], eval-mode layers may take paths
//! without gradients: [`crate::layers::ConvBlock`] then folds its batch norm (and ReLU) into
//! the convolution even when its variables or its input track gradients. Outside it they do
//! so only when nothing they read tracks a gradient.

use std::cell::Cell;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` in inference mode on this thread (nested calls are fine; the mode ends with the
/// outermost call, also on a panic). Outputs computed inside may carry no gradient: call
/// `backward` only on results computed outside.
pub fn inference_mode<R>(f: impl FnOnce() -> R) -> R {
    struct Exit;
    impl Drop for Exit {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _exit = Exit;
    f()
}

/// Whether this thread is inside [`inference_mode`]. Never while an exporter records the ops
/// ([`crate::trace::record_ops`]): the layers then take their tracked paths, so that candle
/// records every op of the graph.
pub fn is_inference_mode() -> bool {
    DEPTH.with(|d| d.get() > 0) && !crate::trace::is_recording()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_and_ends() {
        assert!(!is_inference_mode());
        inference_mode(|| {
            assert!(is_inference_mode());
            inference_mode(|| assert!(is_inference_mode()));
            assert!(is_inference_mode());
        });
        assert!(!is_inference_mode());
        let caught = std::panic::catch_unwind(|| inference_mode(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(!is_inference_mode());
    }
}
