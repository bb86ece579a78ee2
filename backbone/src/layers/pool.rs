//! Pooling layers: `torch.nn.MaxPool2d`, `torch.nn.AvgPool2d` and
//! `torch.nn.AdaptiveAvgPool2d`, on top of the PyTorch-exact ops of [`crate::ops`].

use super::Layer;
use crate::ops::{self, Pool2dParams};
use crate::summary::{self, LayerRecord};
use crate::{Error, Result};
use candle_core::Tensor;

/// The configuration of a [`MaxPool2d`] or [`AvgPool2d`] layer, builder style, with PyTorch's
/// defaults: the stride defaults to the kernel size, no padding, floor mode,
/// `count_include_pad = true`.
///
/// Scalar setters apply to both spatial dimensions; the `_hw` variants take
/// `(height, width)` pairs.
///
/// ```
/// use backbone::layers::PoolConfig;
/// // nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
/// let cfg = PoolConfig::new(3).stride(2).padding(1).ceil_mode(true);
/// assert_eq!(cfg.params().stride, (2, 2));
/// // nn.AvgPool2d(2) -> stride 2
/// assert_eq!(PoolConfig::new(2).params().stride, (2, 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolConfig {
    kernel: (usize, usize),
    stride: Option<(usize, usize)>,
    padding: (usize, usize),
    ceil_mode: bool,
    count_include_pad: bool,
}

impl PoolConfig {
    /// A square `kernel x kernel` window, with PyTorch's defaults for everything else.
    pub fn new(kernel: usize) -> Self {
        Self::new_hw((kernel, kernel))
    }

    /// A `(height, width)` window, with PyTorch's defaults for everything else.
    pub fn new_hw(kernel: (usize, usize)) -> Self {
        Self {
            kernel,
            stride: None,
            padding: (0, 0),
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// The same stride along both dimensions (PyTorch's default: the kernel size).
    pub fn stride(self, stride: usize) -> Self {
        self.stride_hw((stride, stride))
    }

    /// A `(height, width)` stride.
    pub fn stride_hw(mut self, stride: (usize, usize)) -> Self {
        self.stride = Some(stride);
        self
    }

    /// The same implicit padding on both sides of both dimensions (at most half the kernel).
    pub fn padding(self, padding: usize) -> Self {
        self.padding_hw((padding, padding))
    }

    /// A `(height, width)` padding, each applied on both sides.
    pub fn padding_hw(mut self, padding: (usize, usize)) -> Self {
        self.padding = padding;
        self
    }

    /// PyTorch's `ceil_mode`: round the output size up, keeping a last partial window that
    /// starts inside the input or its left padding.
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// PyTorch's `count_include_pad` (average pooling only; default `true`): whether zero
    /// padding counts in the divisor. Max pooling ignores it.
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }

    /// The resolved op parameters (stride filled in from the kernel when unset).
    pub fn params(&self) -> Pool2dParams {
        Pool2dParams {
            kernel: self.kernel,
            stride: self.stride.unwrap_or(self.kernel),
            padding: self.padding,
            ceil_mode: self.ceil_mode,
            count_include_pad: self.count_include_pad,
        }
    }

    /// Checks the configuration for layer `layer`: kernel and stride at least 1, padding at
    /// most half the kernel (PyTorch's rule).
    fn validate(&self, layer: &str) -> Result<Pool2dParams> {
        let p = self.params();
        if p.kernel.0 == 0 || p.kernel.1 == 0 {
            return Err(Error::config(format!(
                "{layer}: kernel size must be at least 1, got {:?}",
                p.kernel
            )));
        }
        if p.stride.0 == 0 || p.stride.1 == 0 {
            return Err(Error::config(format!(
                "{layer}: stride must be at least 1, got {:?}",
                p.stride
            )));
        }
        if p.padding.0 > p.kernel.0 / 2 || p.padding.1 > p.kernel.1 / 2 {
            return Err(Error::config(format!(
                "{layer}: padding {:?} must be at most half of the kernel size {:?}",
                p.padding, p.kernel
            )));
        }
        Ok(p)
    }
}

/// The name errors use: the layer's given name, else its type.
fn label<'a>(name: &'a str, kind: &'a str) -> &'a str {
    if name.is_empty() {
        kind
    } else {
        name
    }
}

/// Checks that `xs` is `(N, C, H, W)` with a spatial size `p` accepts.
fn check_pool_input(layer: &str, p: &Pool2dParams, xs: &Tensor) -> Result<()> {
    match *xs.dims() {
        [_, _, h, w] if p.output_size((h, w)).is_some() => Ok(()),
        _ => {
            let (mh, mw) = p.min_input_size();
            Err(Error::input_shape(
                layer,
                format!("[N, C, H>={mh}, W>={mw}]"),
                xs.dims(),
            ))
        }
    }
}

/// 2-d max pooling, like `torch.nn.MaxPool2d` (no dilation, no indices): see
/// [`ops::max_pool2d`] for the exact semantics (padding is `-inf`, the gradient goes to the
/// first maximum of each window, accumulating where windows overlap).
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPool2d {
    params: Pool2dParams,
    name: String,
}

impl MaxPool2d {
    /// A max pooling layer; fails with [`Error::Config`] on a zero kernel or stride, or a
    /// padding larger than half the kernel. `count_include_pad` is ignored.
    pub fn new(config: PoolConfig) -> Result<Self> {
        let params = config.validate("MaxPool2d")?;
        Ok(Self {
            params,
            name: String::new(),
        })
    }

    /// Sets the name shown in summaries and errors (default: empty, errors then say
    /// `MaxPool2d`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The layer's name (empty unless set with [`MaxPool2d::named`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The op parameters.
    pub fn params(&self) -> Pool2dParams {
        self.params
    }
}

impl Layer for MaxPool2d {
    /// Pools an `(N, C, H, W)` batch; `train` makes no difference. Fails with
    /// [`Error::InputShape`] when the input is not 4-d or too small for the window.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        check_pool_input(label(&self.name, "MaxPool2d"), &self.params, xs)?;
        let out = ops::max_pool2d(xs, &self.params)?;
        summary::record(|| LayerRecord::shape_only(&self.name, "MaxPool2d", xs.dims(), out.dims()));
        crate::trace::name_output(&out, &self.name);
        Ok(out)
    }

    fn plain(&self) -> Option<Vec<super::PlainLayer<'_>>> {
        Some(vec![super::PlainLayer::MaxPool(self)])
    }
}

/// 2-d average pooling, like `torch.nn.AvgPool2d` (no `divisor_override`): see
/// [`ops::avg_pool2d`] for the exact divisor rules of `count_include_pad` and `ceil_mode`.
#[derive(Debug, Clone, PartialEq)]
pub struct AvgPool2d {
    params: Pool2dParams,
    name: String,
}

impl AvgPool2d {
    /// An average pooling layer; fails with [`Error::Config`] on a zero kernel or stride, or
    /// a padding larger than half the kernel.
    pub fn new(config: PoolConfig) -> Result<Self> {
        let params = config.validate("AvgPool2d")?;
        Ok(Self {
            params,
            name: String::new(),
        })
    }

    /// Sets the name shown in summaries and errors (default: empty, errors then say
    /// `AvgPool2d`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The layer's name (empty unless set with [`AvgPool2d::named`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The op parameters.
    pub fn params(&self) -> Pool2dParams {
        self.params
    }
}

impl Layer for AvgPool2d {
    /// Pools an `(N, C, H, W)` batch; `train` makes no difference. Fails with
    /// [`Error::InputShape`] when the input is not 4-d or too small for the window.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        check_pool_input(label(&self.name, "AvgPool2d"), &self.params, xs)?;
        let out = ops::avg_pool2d(xs, &self.params)?;
        summary::record(|| LayerRecord::shape_only(&self.name, "AvgPool2d", xs.dims(), out.dims()));
        crate::trace::name_output(&out, &self.name);
        Ok(out)
    }

    fn plain(&self) -> Option<Vec<super::PlainLayer<'_>>> {
        Some(vec![super::PlainLayer::AvgPool(self)])
    }
}

/// 2-d adaptive average pooling to a fixed `(height, width)`, like
/// `torch.nn.AdaptiveAvgPool2d`: see [`ops::adaptive_avg_pool2d`] for PyTorch's window rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
    out: (usize, usize),
    name: String,
}

impl AdaptiveAvgPool2d {
    /// Pools any input to `(oh, ow)`; fails with [`Error::Config`] when a size is 0.
    pub fn new(out: (usize, usize)) -> Result<Self> {
        if out.0 == 0 || out.1 == 0 {
            return Err(Error::config(format!(
                "AdaptiveAvgPool2d: output size must be at least 1x1, got {out:?}"
            )));
        }
        Ok(Self {
            out,
            name: String::new(),
        })
    }

    /// Sets the name shown in summaries and errors (default: empty, errors then say
    /// `AdaptiveAvgPool2d`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The layer's name (empty unless set with [`AdaptiveAvgPool2d::named`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The output `(height, width)`.
    pub fn output_size(&self) -> (usize, usize) {
        self.out
    }
}

impl Layer for AdaptiveAvgPool2d {
    /// Pools an `(N, C, H, W)` batch with `H, W >= 1`; `train` makes no difference. Fails
    /// with [`Error::InputShape`] otherwise.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        match *xs.dims() {
            [_, _, h, w] if h >= 1 && w >= 1 => {}
            _ => {
                let layer = label(&self.name, "AdaptiveAvgPool2d");
                return Err(Error::input_shape(layer, "[N, C, H>=1, W>=1]", xs.dims()));
            }
        }
        let out = ops::adaptive_avg_pool2d(xs, self.out)?;
        summary::record(|| LayerRecord::shape_only(&self.name, "AdaptiveAvgPool2d", xs.dims(), out.dims()));
        crate::trace::name_output(&out, &self.name);
        Ok(out)
    }
}
