//! 2-d convolution, and the conv + batch norm + activation block.

use super::{Activation, BatchNorm2d, Layer, PlainLayer};
use crate::init::torch_default;
use crate::ops::{
    self, conv2d, conv2d_cpu_fused, depthwise_conv2d, ConvEpilogue, ConvParams, DepthwiseParams,
};
use crate::summary::{self, LayerRecord};
use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// The hyper-parameters of a [`Conv2d`], PyTorch's `nn.Conv2d` arguments.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel (height, width).
    pub kernel: (usize, usize),
    /// Stride (the same in both directions; candle's convolution has one stride).
    pub stride: usize,
    /// Zero padding (top/bottom, left/right); ignored with `same`.
    pub padding: (usize, usize),
    /// TensorFlow's "SAME" padding (timm's `padding='same'`, its `Conv2dSame`): the padding of
    /// each axis computed from the input's size so that the output has `ceil(size / stride)`
    /// positions, `max((ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)`
    /// in all, half of it (rounded down) before and the rest after: one more row at the bottom
    /// and column at the right when odd (a 3x3 stride-2 convolution of an even size pads
    /// `(0, 1)`, PyTorch's symmetric padding would pad `(1, 1)`).
    pub same: bool,
    /// Dilation.
    pub dilation: usize,
    /// Groups (1: dense; `in_channels`: depthwise).
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
    /// Weight initialisation of a fresh layer; `None`: PyTorch's default.
    pub weight_init: Option<Init>,
    /// Bias initialisation of a fresh layer; `None`: PyTorch's default.
    pub bias_init: Option<Init>,
}

impl Conv2dConfig {
    /// A square `kernel`x`kernel` convolution with stride 1, no padding, a bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: (kernel, kernel),
            stride: 1,
            padding: (0, 0),
            dilation: 1,
            groups: 1,
            bias: true,
            same: false,
            weight_init: None,
            bias_init: None,
        }
    }

    /// A rectangular kernel (Inception's 1x7 and 7x1).
    pub fn kernel_hw(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = (kh, kw);
        self
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the same padding on both axes.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = (padding, padding);
        self
    }

    /// Sets the padding of each axis.
    pub fn padding_hw(mut self, ph: usize, pw: usize) -> Self {
        self.padding = (ph, pw);
        self
    }

    /// TensorFlow's "SAME" padding, computed from each input's size (see [`Self::same`]),
    /// instead of a fixed one.
    pub fn same_padding(mut self) -> Self {
        self.same = true;
        self.padding = (0, 0);
        self
    }

    /// The zero padding `((top, bottom), (left, right))` of an input of `h` x `w` pixels.
    pub fn pads(&self, h: usize, w: usize) -> ((usize, usize), (usize, usize)) {
        if !self.same {
            return ((self.padding.0, self.padding.0), (self.padding.1, self.padding.1));
        }
        let same = |size: usize, kernel: usize| {
            let total =
                (size.div_ceil(self.stride).max(1) - 1) * self.stride + (kernel - 1) * self.dilation + 1;
            let pad = total.saturating_sub(size);
            (pad / 2, pad - pad / 2)
        };
        (same(h, self.kernel.0), same(w, self.kernel.1))
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }

    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Removes the bias (a convolution followed by batch norm).
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }

    /// Sets the initialisation of a fresh layer's weight and bias.
    pub fn init(mut self, weight: Init, bias: Init) -> Self {
        self.weight_init = Some(weight);
        self.bias_init = Some(bias);
        self
    }

    fn validate(&self) -> Result<()> {
        let c = self;
        if c.in_channels == 0 || c.out_channels == 0 || c.kernel.0 == 0 || c.kernel.1 == 0 {
            return Err(Error::config(format!(
                "conv2d: channels and kernel must be positive: {c:?}"
            )));
        }
        if c.stride == 0 || c.dilation == 0 || c.groups == 0 {
            return Err(Error::config(format!(
                "conv2d: stride, dilation and groups must be positive: {c:?}"
            )));
        }
        if !c.in_channels.is_multiple_of(c.groups) || !c.out_channels.is_multiple_of(c.groups) {
            return Err(Error::config(format!(
                "conv2d: groups ({}) must divide in_channels ({}) and out_channels ({})",
                c.groups, c.in_channels, c.out_channels
            )));
        }
        Ok(())
    }

    /// The output size along one axis padded by `pads`, or `None` if the input is too small.
    fn out_size(&self, input: usize, kernel: usize, pads: (usize, usize)) -> Option<usize> {
        let span = self.dilation * (kernel - 1) + 1;
        (input + pads.0 + pads.1)
            .checked_sub(span)
            .map(|n| n / self.stride + 1)
    }

    /// The smallest (height, width) this convolution accepts (1 with "SAME" padding).
    pub fn min_input(&self) -> (usize, usize) {
        if self.same {
            return (1, 1);
        }
        let min = |k: usize, p: usize| (self.dilation * (k - 1) + 1).saturating_sub(2 * p).max(1);
        (
            min(self.kernel.0, self.padding.0),
            min(self.kernel.1, self.padding.1),
        )
    }
}

/// A 2-d convolution, PyTorch's `nn.Conv2d` (state-dict keys `weight` `[out, in/groups, kh, kw]`
/// and `bias` `[out]`).
///
/// The backward pass is [`crate::ops::conv2d`]'s, not candle's (which fails on non-square
/// inputs with stride 2 and is slow); asymmetric padding (Inception's 1x7 / 7x1 convolutions,
/// TensorFlow's "SAME" padding of timm's `tf_` models)
/// is applied explicitly, as candle's convolution pads both axes alike. Depthwise
/// convolutions (`groups == in_channels > 1`) run [`crate::ops::depthwise_conv2d`]'s direct
/// kernels instead of candle's one-convolution-per-channel loop.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: Conv2dConfig,
    name: String,
}

impl Conv2d {
    /// Builds the layer; its variables are `weight` and `bias` under `vb`'s prefix.
    pub fn new(config: Conv2dConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let fan_in = c.in_channels / c.groups * c.kernel.0 * c.kernel.1;
        let shape = (c.out_channels, c.in_channels / c.groups, c.kernel.0, c.kernel.1);
        let weight = vb.get_with_hints(shape, "weight", c.weight_init.unwrap_or(torch_default(fan_in)))?;
        let bias = if c.bias {
            Some(vb.get_with_hints(
                c.out_channels,
                "bias",
                c.bias_init.unwrap_or(torch_default(fan_in)),
            )?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            config,
            name: vb.prefix(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// The weight tensor.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The layer's variable path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input padded explicitly where an axis is padded unequally on its two sides ("SAME"
    /// padding), and the symmetric padding of each axis left to the convolution.
    fn pad_asymmetric(&self, xs: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (top, left) = self.config.pads(xs.dim(2)?, xs.dim(3)?);
        if top.0 == top.1 && left.0 == left.1 {
            return Ok((xs.clone(), (top.0, left.0)));
        }
        let xs = xs
            .pad_with_zeros(2, top.0, top.1)?
            .pad_with_zeros(3, left.0, left.1)?;
        Ok((xs, (0, 0)))
    }

    /// The input padded explicitly when the paddings differ (between the axes or the sides of
    /// one), and the parameters of the convolution of the result.
    fn padded(&self, xs: &Tensor) -> Result<(Tensor, ConvParams)> {
        let c = &self.config;
        let (xs, padding) = self.pad_asymmetric(xs)?;
        let (xs_padded, padding) = if padding.0 == padding.1 {
            (xs, padding.0)
        } else {
            let padded = xs
                .pad_with_zeros(2, padding.0, padding.0)?
                .pad_with_zeros(3, padding.1, padding.1)?;
            (padded, 0)
        };
        let params = ConvParams {
            padding,
            stride: c.stride,
            dilation: c.dilation,
            groups: c.groups,
        };
        Ok((xs_padded, params))
    }

    /// The convolution through [`conv2d`] (candle's forward, our backward).
    fn grouped(&self, xs: &Tensor) -> Result<Tensor> {
        let (xs, params) = self.padded(xs)?;
        Ok(conv2d(&xs, &self.weight, params)?)
    }

    /// Whether this is a depthwise convolution, run by [`depthwise_conv2d`]. A single-channel
    /// dense convolution (`groups == in_channels == 1`) stays on the im2col + gemm path.
    fn depthwise(&self) -> bool {
        self.config.groups > 1 && self.config.groups == self.config.in_channels
    }

    /// Checks the input's shape.
    fn check(&self, xs: &Tensor) -> Result<()> {
        let c = &self.config;
        let (h, w) = match *xs.dims() {
            [_, ch, h, w] if ch == c.in_channels => (h, w),
            _ => return Err(Error::input_shape(&self.name, self.expected(), xs.dims())),
        };
        let (ph, pw) = c.pads(h, w);
        if c.out_size(h, c.kernel.0, ph).is_none() || c.out_size(w, c.kernel.1, pw).is_none() {
            return Err(Error::input_shape(&self.name, self.expected(), xs.dims()));
        }
        Ok(())
    }

    /// The convolution, its bias and a per-channel `epilogue` (whose own `bias` is ignored:
    /// the layer's is used) in one pass without gradient ([`conv2d_cpu_fused`]); `None` where
    /// that kernel does not apply (depthwise convolutions, other devices and dtypes).
    /// With a `residual`, it is added before the epilogue's ReLU
    /// ([`ops::conv2d_cpu_fused_residual`]).
    fn forward_fused(
        &self,
        xs: &Tensor,
        mut epilogue: ConvEpilogue,
        residual: Option<&Tensor>,
    ) -> Result<Option<Tensor>> {
        self.check(xs)?;
        if self.depthwise() || !ops::conv2d_cpu_supports(xs, &self.weight) {
            return Ok(None);
        }
        epilogue.bias = match &self.bias {
            Some(b) => Some(b.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?),
            None => None,
        };
        let (xs, params) = self.padded(xs)?;
        Ok(Some(match residual {
            Some(r) => ops::conv2d_cpu_fused_residual(&xs, &self.weight, r, params, &epilogue)?,
            None => conv2d_cpu_fused(&xs, &self.weight, params, &epilogue)?,
        }))
    }

    /// `relu(self.forward_t(xs, train))`. With a bias, on the CPU in `f32` / `f64` (not
    /// depthwise), one op, [`ops::conv2d_cpu_bias_relu`]: one pass over the output each way
    /// instead of three, and neither the convolution's output nor the biased output kept
    /// alive for the backward pass. The same values and gradients either way.
    pub fn forward_relu(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if crate::is_guided_relu() {
            return Activation::Relu.forward_t(&self.forward_t(xs, train)?, train);
        }
        if let Some(bias) = &self.bias {
            if !self.depthwise() && ops::conv2d_cpu_supports(xs, &self.weight) && bias.dtype() == xs.dtype() {
                self.check(xs)?;
                let (padded, params) = self.padded(xs)?;
                let out = ops::conv2d_cpu_bias_relu(&padded, &self.weight, bias, params)?;
                self.record(xs.dims(), out.dims());
                crate::trace::name_output(&out, &self.name);
                return Ok(out);
            }
        }
        Activation::Relu.forward_t(&self.forward_t(xs, train)?, train)
    }

    /// Whether the weight or the bias takes part in autograd.
    fn tracks_gradients(&self) -> bool {
        self.weight.track_op() || self.bias.as_ref().is_some_and(Tensor::track_op)
    }

    /// Reports the layer to a running summary.
    fn record(&self, input: &[usize], output: &[usize]) {
        let c = &self.config;
        summary::record(|| {
            let weights = self.weight.elem_count();
            let per_output = (c.in_channels / c.groups * c.kernel.0 * c.kernel.1) as u64;
            LayerRecord {
                name: self.name.clone(),
                kind: "Conv2d".into(),
                input: input.to_vec(),
                output: output.to_vec(),
                params: weights + self.bias.as_ref().map_or(0, Tensor::elem_count),
                weights,
                macs: output.iter().product::<usize>() as u64 * per_output,
            }
        });
    }

    fn expected(&self) -> String {
        let (h, w) = self.config.min_input();
        format!("[N, {}, H>={h}, W>={w}]", self.config.in_channels)
    }
}

impl Layer for Conv2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let c = &self.config;
        self.check(xs)?;
        let out = if self.depthwise() {
            // Depthwise: the direct kernel (on the CPU; other devices fall back to the path
            // below inside `depthwise_conv2d`).
            let (padded, padding) = self.pad_asymmetric(xs)?;
            let params = DepthwiseParams {
                padding,
                stride: c.stride,
                dilation: c.dilation,
            };
            depthwise_conv2d(&padded, &self.weight, params)?
        } else {
            self.grouped(xs)?
        };
        let out = match &self.bias {
            Some(b) => crate::ops::add_channel_bias(&out, b)?,
            None => out,
        };
        self.record(xs.dims(), out.dims());
        crate::trace::name_output(&out, &self.name);
        Ok(out)
    }

    fn plain(&self) -> Option<Vec<PlainLayer<'_>>> {
        Some(vec![PlainLayer::Conv {
            conv: self,
            activation: None,
        }])
    }
}

/// A convolution, an optional batch norm and an optional activation: torchvision's
/// `Conv2dNormActivation` / GoogLeNet's `BasicConv2d`, or a plain conv + ReLU.
///
/// In eval mode the block saves passes over its output:
///
/// * **folded**: when no gradient can be asked of the block (nothing it reads tracks one:
///   input, convolution weight and bias, batch-norm weight and bias; or the thread is in
///   [`crate::inference_mode`]), not while a summary records, and the convolution runs on the
///   CPU kernel in `f32` / `f64` (not depthwise), the batch norm (running statistics) and a
///   ReLU run inside the convolution on each output tile ([`ops::conv2d_cpu_fused`]): the
///   same bits as the unfolded layers, without their passes. The coefficients are read from
///   the variables at every call (`O(channels)`), so they always follow training steps.
/// * otherwise a batch norm followed by ReLU runs as one differentiable pass
///   ([`BatchNorm2d::forward_relu`]), with the gradients of the separate layers.
///
/// Training mode runs the layers one after the other, except that a convolution followed
/// directly by a ReLU (no norm) runs as one op in both modes ([`Conv2d::forward_relu`]).
#[derive(Debug, Clone)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: Option<BatchNorm2d>,
    activation: Option<Activation>,
}

impl ConvBlock {
    /// Composes already built layers (their variable names are chosen by the caller, as the
    /// reference implementations differ: `conv`/`bn`, `0`/`1`, or a bare `conv1`).
    pub fn new(conv: Conv2d, norm: Option<BatchNorm2d>, activation: Option<Activation>) -> Self {
        Self {
            conv,
            norm,
            activation,
        }
    }

    /// The convolution.
    pub fn conv(&self) -> &Conv2d {
        &self.conv
    }

    /// The batch norm, if any.
    pub fn norm(&self) -> Option<&BatchNorm2d> {
        self.norm.as_ref()
    }

    /// The activation, if any.
    pub fn activation(&self) -> Option<Activation> {
        self.activation
    }

    /// The layers one after the other (batch norm and ReLU fused in eval mode), never
    /// folded: the reference of the folded path.
    pub fn forward_unfolded(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if self.norm.is_none() && self.activation == Some(Activation::Relu) {
            return self.conv.forward_relu(xs, train);
        }
        let xs = self.conv.forward_t(xs, train)?;
        let xs = match (&self.norm, self.activation) {
            (Some(norm), Some(Activation::Relu)) => return norm.forward_relu(&xs, train),
            (Some(norm), _) => norm.forward_t(&xs, train)?,
            (None, _) => xs,
        };
        match self.activation {
            Some(act) => act.forward_t(&xs, train),
            None => Ok(xs),
        }
    }

    /// `relu(self.forward_t(xs, train) + shortcut)`: a residual block's output, this block
    /// being the last of its branch. In eval mode where the folded pass applies (a batch norm,
    /// no activation of its own, no exporter recording the ops), one pass: the shortcut is
    /// added in the convolution's epilogue ([`ops::conv2d_cpu_fused_residual`]) instead of by
    /// a pass of [`ops::add_relu`] over the block's output. The same bits either way.
    pub fn forward_add_relu(&self, xs: &Tensor, shortcut: &Tensor, train: bool) -> Result<Tensor> {
        let fusable = !train
            && self.activation.is_none()
            && !crate::trace::is_recording()
            && (!shortcut.track_op() || crate::is_inference_mode());
        if fusable {
            if let Some(out) = self.forward_folded(xs, Some(shortcut))? {
                return Ok(out);
            }
        }
        Ok(ops::add_relu(&self.forward_t(xs, train)?, shortcut)?)
    }

    /// The eval-mode pass with the batch norm (and a ReLU) folded into the convolution, or
    /// `None` where folding does not apply (see the type's documentation). With a `residual`
    /// (and no activation), `relu(folded + residual)`.
    fn forward_folded(&self, xs: &Tensor, residual: Option<&Tensor>) -> Result<Option<Tensor>> {
        let Some(norm) = &self.norm else {
            return Ok(None);
        };
        let tracked = xs.track_op() || self.conv.tracks_gradients() || norm.tracks_gradients();
        if (tracked && !crate::is_inference_mode())
            || summary::is_recording()
            || norm.num_features() != self.conv.config.out_channels
        {
            return Ok(None);
        }
        let relu = self.activation == Some(Activation::Relu) || residual.is_some();
        let (mean, scale, shift) = norm.eval_coefficients()?;
        let epilogue = ConvEpilogue {
            bias: None,
            mean,
            scale,
            shift,
            relu,
        };
        let Some(out) = self.conv.forward_fused(xs, epilogue, residual)? else {
            return Ok(None);
        };
        match self.activation {
            Some(act) if !relu => act.forward_t(&out, false).map(Some),
            _ => Ok(Some(out)),
        }
    }
}

impl Layer for ConvBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            if let Some(out) = self.forward_folded(xs, None)? {
                return Ok(out);
            }
        }
        self.forward_unfolded(xs, train)
    }

    /// The convolution with its activation, or, with a batch norm, the convolution, the norm
    /// ([`PlainLayer::Other`]) and the activation.
    fn plain(&self) -> Option<Vec<PlainLayer<'_>>> {
        let conv = &self.conv;
        Some(match &self.norm {
            None => vec![PlainLayer::Conv {
                conv,
                activation: self.activation,
            }],
            Some(_) => {
                let mut out = vec![
                    PlainLayer::Conv {
                        conv,
                        activation: None,
                    },
                    PlainLayer::Other {
                        name: format!("{} (batch norm)", conv.name()),
                        kind: "BatchNorm2d",
                    },
                ];
                out.extend(self.activation.map(PlainLayer::Activation));
                out
            }
        })
    }
}
