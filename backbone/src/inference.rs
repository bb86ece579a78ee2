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
//!
//! [`with_frozen_weights`] is inference mode with a second promise: the weights of the models
//! run inside do not change until it returns (ONNX Runtime's inference session, PyTorch's
//! `torch.jit.freeze`). The convolutions then prepare what they derive from their weights
//! once (Winograd-transformed weights, `kernels::conv::prepare_weight`) and reuse it on every
//! later pass inside; what was prepared is dropped when the outermost call returns, so a
//! change made to the weights afterwards (an optimizer step, a weights load) is seen by the
//! next call.

use crate::ops::conv_cpu::PreparedWeights;
use std::cell::{Cell, RefCell};

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The weights prepared inside [`with_frozen_weights`] on this thread (`None` outside).
    static FROZEN: RefCell<Option<PreparedWeights>> = const { RefCell::new(None) };
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

/// Runs `f` in [`inference_mode`] with the weights frozen: the caller promises that no
/// weight of a model run inside changes until `f` returns (no optimizer step, no
/// `Var::set`, no weights load in between). The convolutions prepare their Winograd-transformed
/// weights on their first pass inside and reuse them on the later ones, which pays where the
/// same model runs more than once: a loop of predictions, a benchmark, an evaluation pass over
/// a validation set (`cargo xtask bench` and `predict`, and the trainer's evaluation, run
/// inside). The prepared weights take memory until the outermost call returns: 16/9 of a 3x3
/// weight for Winograd F(2x2), 4x for F(4x4). Nested calls share the outermost call's.
///
/// The results are an inference pass's, within its rounding of plain eval mode (see
/// [`inference_mode`]); convolutions whose weights are prepared may take Winograd where a
/// per-call transform would not pay (small maps at batch 1), so they can differ from a pass
/// outside by that rounding.
pub fn with_frozen_weights<R>(f: impl FnOnce() -> R) -> R {
    struct Exit {
        outermost: bool,
    }
    impl Drop for Exit {
        fn drop(&mut self) {
            if self.outermost {
                // `try_with`: nothing to drop while the thread itself ends.
                let _ = FROZEN.try_with(|c| c.borrow_mut().take());
            }
        }
    }
    let outermost = FROZEN.with(|c| {
        let mut c = c.borrow_mut();
        let outermost = c.is_none();
        if outermost {
            *c = Some(PreparedWeights::default());
        }
        outermost
    });
    let _exit = Exit { outermost };
    inference_mode(f)
}

/// Whether this thread is inside [`with_frozen_weights`] (and so in inference mode).
pub fn is_frozen() -> bool {
    FROZEN.with(|c| c.borrow().is_some()) && is_inference_mode()
}

/// Runs `f` on this thread's prepared weights, if inside [`with_frozen_weights`].
pub(crate) fn with_prepared<R>(f: impl FnOnce(&mut PreparedWeights) -> R) -> Option<R> {
    if !is_inference_mode() {
        return None;
    }
    FROZEN.with(|c| c.borrow_mut().as_mut().map(f))
}

/// What a model prepares once from its weights inside [`with_frozen_weights`] (the blocked
/// inference path's reordered weights, say): `build`'s value, computed on the first call for
/// `key` (one of the model's weight tensors) and type `T` inside the outermost call and kept
/// until it returns; `None` outside [`with_frozen_weights`], where nothing is kept (weights
/// may change between passes).
pub fn prepared_model<T: Send + Sync + 'static>(
    key: &candle_core::Tensor,
    build: impl FnOnce() -> crate::Result<T>,
) -> crate::Result<Option<std::sync::Arc<T>>> {
    if !is_frozen() {
        return Ok(None);
    }
    if let Some(kept) = FROZEN.with(|c| c.borrow().as_ref().and_then(|p| p.model::<T>(key))) {
        return Ok(Some(kept));
    }
    // Built outside the borrow: `build` may run layers that look at the prepared weights.
    let model = std::sync::Arc::new(build()?);
    FROZEN.with(|c| {
        if let Some(p) = c.borrow_mut().as_mut() {
            p.keep_model(key, model.clone());
        }
    });
    Ok(Some(model))
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

    #[test]
    fn frozen_weights_nest_and_end() {
        assert!(!is_frozen());
        let w =
            candle_core::Tensor::zeros((16, 16, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap();
        with_frozen_weights(|| {
            assert!(is_frozen() && is_inference_mode());
            with_prepared(|p| p.slot(&w, kernels::conv::WinogradTiling::F2));
            with_frozen_weights(|| assert_eq!(with_prepared(|p| p.len()), Some(1)));
            // The inner call shared the outer call's weights and left them.
            assert_eq!(with_prepared(|p| p.len()), Some(1));
        });
        assert!(!is_frozen() && !is_inference_mode());
        assert_eq!(with_prepared(|p| p.len()), None);
        with_frozen_weights(|| assert_eq!(with_prepared(|p| p.len()), Some(0)));
        let caught = std::panic::catch_unwind(|| with_frozen_weights(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(!is_frozen());
        // Inference mode alone prepares nothing.
        inference_mode(|| assert!(!is_frozen() && with_prepared(|p| p.len()).is_none()));
    }
}
