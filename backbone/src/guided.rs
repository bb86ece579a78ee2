//! Guided-ReLU mode: inside [`guided_relu`], every ReLU a layer computes while autograd tracks
//! its input passes back only positive gradients where its input was positive (Springenberg et
//! al. 2015, *Striving for Simplicity: The All Convolutional Net*: guided backpropagation),
//! the rule of `pytorch_grad_cam`'s `GuidedBackpropReLU`. The forward values are unchanged.
//!
//! The mode is read when the layers run forward (the fused conv + ReLU, batch norm + ReLU and
//! residual `relu(a + b)` ops then run as the layer followed by [`crate::ops::relu`], which
//! builds the guided op); `backward` may be called after the closure returns.

use std::cell::Cell;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` with guided ReLUs on this thread (nested calls are fine; the mode ends with the
/// outermost call, also on a panic).
pub fn guided_relu<R>(f: impl FnOnce() -> R) -> R {
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

/// Whether this thread is inside [`guided_relu`].
pub fn is_guided_relu() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Activation, Layer};
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn guided_relu_masks_negative_gradients_and_inputs() {
        let x = Var::from_tensor(&Tensor::new(&[-1f32, 2., 3., 0.5], &Device::Cpu).unwrap()).unwrap();
        let g = Tensor::new(&[5f32, -1., 4., 2.], &Device::Cpu).unwrap();
        let grad = |guided: bool| {
            let run = || Activation::Relu.forward_t(x.as_tensor(), false).unwrap();
            let y = if guided { guided_relu(run) } else { run() };
            assert_eq!(y.to_vec1::<f32>().unwrap(), [0., 2., 3., 0.5]);
            let grads = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            grads.get(&x).unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(grad(false), [0., -1., 4., 2.]);
        assert_eq!(grad(true), [0., 0., 4., 2.]);
        assert!(!is_guided_relu());
    }
}
