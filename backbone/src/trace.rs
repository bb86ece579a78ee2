//! What the ops compute, for exporters: a thread-local record of the custom ops' meaning.
//!
//! candle records how every tensor was computed while autograd tracks it (its `Op`: binary,
//! unary, reshape, concat, matmul, ...), but the custom ops of [`crate::ops`] (convolution,
//! batch norm, pooling, ReLU, ...) appear there as opaque `CustomOp` objects. While
//! [`record_ops`] runs, each of them also records a [`TracedOp`] (the op, its input tensors and
//! its parameters) keyed by the id of the tensor it returns, and layers record their name for
//! their output ([`name_output`]), so an exporter (`convnets-onnx`) walking the graph back
//! from a model's output can write a convolution as a convolution and name the layer an
//! error is about. Outside [`record_ops`] nothing is recorded and nothing is kept alive.

use crate::ops::{ConvEpilogue, Pool2dParams};
use candle_core::{Tensor, TensorId};
use std::cell::RefCell;
use std::collections::HashMap;

/// The meaning of a custom op's output, with its inputs.
#[derive(Debug, Clone)]
pub enum TracedOp {
    /// PyTorch's `F.conv2d` (cross-correlation, zero padding), optionally with a bias and a
    /// ReLU after it.
    Conv {
        /// `[N, Cin, H, W]`.
        input: Tensor,
        /// `[Cout, Cin / groups, kh, kw]`.
        weight: Tensor,
        /// `[Cout]`, added to the output.
        bias: Option<Tensor>,
        /// `(height, width)`.
        stride: (usize, usize),
        /// `(height, width)`, on both sides.
        padding: (usize, usize),
        /// `(height, width)`.
        dilation: (usize, usize),
        /// Convolution groups.
        groups: usize,
        /// Whether a ReLU follows.
        relu: bool,
    },
    /// A convolution (no bias) followed by the per-channel epilogue of
    /// [`crate::ops::conv2d_cpu_fused`] (bias, running-statistics batch norm, ReLU).
    ConvEpilogue {
        /// `[N, Cin, H, W]`.
        input: Tensor,
        /// `[Cout, Cin / groups, kh, kw]`.
        weight: Tensor,
        /// Padding, stride, dilation and groups (square).
        params: crate::ops::ConvParams,
        /// What follows the convolution.
        epilogue: ConvEpilogue,
    },
    /// Batch normalisation with running statistics, optionally followed by a ReLU.
    BatchNorm {
        /// `[N, C, ...]`.
        input: Tensor,
        /// `(weight, bias)`, `[C]` each.
        affine: Option<(Tensor, Tensor)>,
        /// `[C]`.
        mean: Tensor,
        /// `[C]`.
        var: Tensor,
        /// Added to the variance.
        eps: f64,
        /// Whether a ReLU follows.
        relu: bool,
    },
    /// `max(x, 0)`.
    Relu {
        /// Any shape.
        input: Tensor,
    },
    /// `relu(a + b)`.
    AddRelu {
        /// Any shape.
        a: Tensor,
        /// The shape of `a`.
        b: Tensor,
    },
    /// `xs + bias[c]` for `xs` `[N, C, H, W]`.
    ChannelBias {
        /// `[N, C, H, W]`.
        input: Tensor,
        /// `[C]`.
        bias: Tensor,
    },
    /// PyTorch's `max_pool2d`.
    MaxPool {
        /// `[N, C, H, W]`.
        input: Tensor,
        /// Kernel, stride, padding, ceil mode.
        params: Pool2dParams,
    },
    /// PyTorch's `avg_pool2d`.
    AvgPool {
        /// `[N, C, H, W]`.
        input: Tensor,
        /// Kernel, stride, padding, ceil mode, `count_include_pad`.
        params: Pool2dParams,
    },
    /// PyTorch's `adaptive_avg_pool2d`.
    AdaptiveAvgPool {
        /// `[N, C, H, W]`.
        input: Tensor,
        /// `(oh, ow)`.
        out: (usize, usize),
    },
    /// PyTorch's `local_response_norm` across channels.
    LocalResponseNorm {
        /// `[N, C, ...]`.
        input: Tensor,
        /// Window size.
        size: usize,
        /// Scale.
        alpha: f64,
        /// Exponent.
        beta: f64,
        /// Additive constant.
        k: f64,
    },
    /// PyTorch's `hardswish`: `x * min(max(x + 3, 0), 6) / 6`.
    HardSwish {
        /// Any shape.
        input: Tensor,
    },
    /// PyTorch's `hardsigmoid`: `min(max(x + 3, 0), 6) / 6`.
    HardSigmoid {
        /// Any shape.
        input: Tensor,
    },
    /// PyTorch's `layer_norm` over dimension `dim` (the last, or the channels of `[N, C, H, W]`).
    LayerNorm {
        /// Any shape.
        input: Tensor,
        /// Shaped to broadcast over `input`, `dim`'s size values.
        weight: Tensor,
        /// As `weight`.
        bias: Tensor,
        /// The normalised dimension.
        dim: usize,
        /// Added to the variance.
        eps: f64,
    },
    /// PyTorch's `linear`: `x W^T + b` for `x` `[N, in]`.
    Linear {
        /// `[N, in]`.
        input: Tensor,
        /// `[out, in]`.
        weight: Tensor,
        /// `[out]`.
        bias: Option<Tensor>,
    },
    /// The input itself (a detached copy whose link to the graph candle drops).
    Identity {
        /// Any tensor.
        input: Tensor,
    },
}

impl TracedOp {
    /// The op's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Conv { .. } => "conv2d",
            Self::ConvEpilogue { .. } => "conv2d_cpu_fused",
            Self::BatchNorm { .. } => "batch_norm_eval",
            Self::Relu { .. } => "relu",
            Self::AddRelu { .. } => "add_relu",
            Self::ChannelBias { .. } => "add_channel_bias",
            Self::MaxPool { .. } => "max_pool2d",
            Self::AvgPool { .. } => "avg_pool2d",
            Self::AdaptiveAvgPool { .. } => "adaptive_avg_pool2d",
            Self::LocalResponseNorm { .. } => "local_response_norm",
            Self::HardSwish { .. } => "hardswish",
            Self::HardSigmoid { .. } => "hardsigmoid",
            Self::LayerNorm { .. } => "layer_norm",
            Self::Linear { .. } => "linear",
            Self::Identity { .. } => "identity",
        }
    }

    /// The tensors the op reads (data first, then parameters), in a fixed order.
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Self::Conv {
                input, weight, bias, ..
            } => {
                let mut v = vec![input, weight];
                v.extend(bias.iter());
                v
            }
            Self::ConvEpilogue { input, weight, .. } => vec![input, weight],
            Self::BatchNorm {
                input,
                affine,
                mean,
                var,
                ..
            } => {
                let mut v = vec![input];
                if let Some((w, b)) = affine {
                    v.extend([w, b]);
                }
                v.extend([mean, var]);
                v
            }
            Self::AddRelu { a, b } => vec![a, b],
            Self::Linear {
                input, weight, bias, ..
            } => {
                let mut v = vec![input, weight];
                v.extend(bias.iter());
                v
            }
            Self::LayerNorm {
                input, weight, bias, ..
            } => vec![input, weight, bias],
            Self::ChannelBias { input, bias } => vec![input, bias],
            Self::Relu { input }
            | Self::MaxPool { input, .. }
            | Self::AvgPool { input, .. }
            | Self::AdaptiveAvgPool { input, .. }
            | Self::LocalResponseNorm { input, .. }
            | Self::HardSwish { input }
            | Self::HardSigmoid { input }
            | Self::Identity { input } => vec![input],
        }
    }
}

/// What [`record_ops`] collected: each custom op's meaning and each layer's name, by the id of
/// the tensor they returned. The recorded tensors are kept alive (their ids stay unique).
#[derive(Debug, Default)]
pub struct Trace {
    /// The custom ops, by their output.
    pub ops: HashMap<TensorId, (Tensor, TracedOp)>,
    /// The layers' names (`features.3`, `layer1.0.conv2`), by their output.
    pub names: HashMap<TensorId, (Tensor, String)>,
}

thread_local! {
    static RECORDER: RefCell<Option<Trace>> = const { RefCell::new(None) };
}

/// Whether ops are being recorded on this thread.
pub fn is_recording() -> bool {
    RECORDER.with(|r| r.borrow().is_some())
}

/// Records what `out` is; `make` only runs while [`record_ops`] runs. A later record for the
/// same tensor replaces an earlier one (an op recorded by the op that wraps it).
pub fn record(out: &Tensor, make: impl FnOnce() -> TracedOp) {
    RECORDER.with(|r| {
        if let Some(trace) = r.borrow_mut().as_mut() {
            trace.ops.insert(out.id(), (out.clone(), make()));
        }
    });
}

/// Records that `out` is the output of the layer `name` (the innermost layer keeps it).
pub fn name_output(out: &Tensor, name: &str) {
    RECORDER.with(|r| {
        if let Some(trace) = r.borrow_mut().as_mut() {
            trace
                .names
                .entry(out.id())
                .or_insert_with(|| (out.clone(), name.to_string()));
        }
    });
}

/// `xs.detach()`, except while ops are recorded: then `xs` itself, so that candle keeps
/// recording what follows and an exporter sees through it (a frozen part of a model run
/// without gradient; an export asks no gradient).
pub fn detach(xs: &Tensor) -> Tensor {
    if is_recording() {
        return xs.clone();
    }
    xs.detach()
}

/// Runs `f` while the custom ops record their meaning on this thread, and returns what they
/// recorded.
pub fn record_ops<T>(f: impl FnOnce() -> T) -> (T, Trace) {
    struct Reset(Option<Trace>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            RECORDER.with(|r| *r.borrow_mut() = previous);
        }
    }
    let previous = RECORDER.with(|r| r.borrow_mut().replace(Trace::default()));
    let reset = Reset(previous);
    let out = f();
    let trace = RECORDER.with(|r| r.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (out, trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn records_only_inside() -> candle_core::Result<()> {
        let x = Tensor::new(&[-1f32, 2.0], &Device::Cpu)?;
        let outside = crate::ops::relu(&x)?;
        let (inside, trace) = record_ops(|| crate::ops::relu(&x));
        let inside = inside?;
        assert!(!is_recording());
        assert!(!trace.ops.contains_key(&outside.id()));
        match trace.ops.get(&inside.id()) {
            Some((_, TracedOp::Relu { input })) => assert_eq!(input.id(), x.id()),
            other => panic!("expected a relu, got {other:?}"),
        }
        Ok(())
    }
}
