//! 2-d convolution whose backward pass is ours.
//!
//! candle 0.11's convolution backward has two problems: it derives the input gradient's
//! output padding from the height alone, so it fails (shape mismatch) when the height and the
//! width leave different remainders under the stride; and it computes the input gradient with
//! `conv_transpose2d`, whose CPU kernel is a naive loop of dot products (two thirds of a
//! LeNet-5 training step), even when the input needs no gradient (the image batch).
//!
//! [`conv2d`] runs candle's forward convolution (im2col + gemm on the CPU, cuDNN on CUDA) on
//! detached inputs, then attaches the gradients through [`ConvBackward`], a `CustomOp3` whose
//! forward only hands the result on and whose backward computes:
//!
//! * the weight gradient as a convolution of the input by the output gradient (candle's own
//!   formula), per group;
//! * the input gradient, only when the input takes part in autograd, as a convolution of the
//!   stride-dilated output gradient by the flipped, transposed kernel, with the rows and
//!   columns that no window reached given a zero gradient explicitly.
//!
//! Everything is made of candle tensor ops, so it runs on every device: [`conv2d_reference`]
//! is that path. On the CPU in `f32` / `f64`, [`conv2d`] runs the faster kernels of
//! [`super::conv_cpu`] instead (same results up to rounding; no per-group tensors).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, Layout, MetalStorage, Result, Shape, Tensor};

pub use kernels::conv::ConvParams;

/// `xs` `[N, Cin, H, W]` convolved with `weight` `[Cout, Cin/groups, kh, kw]`, as candle's
/// `Tensor::conv2d`, with a correct and faster backward.
///
/// CPU tensors in `f32` / `f64` run [`super::conv_cpu::conv2d_cpu`] (im2col + gemm in NCHW
/// order, forward and backward); everything else (GPUs, half precision) runs
/// [`conv2d_reference`] (see the module documentation).
pub fn conv2d(xs: &Tensor, weight: &Tensor, p: ConvParams) -> Result<Tensor> {
    let out = if super::conv_cpu::supports(xs, weight) {
        super::conv_cpu::conv2d_cpu(xs, weight, p)?
    } else {
        conv2d_reference(xs, weight, p)?
    };
    record_conv(&out, xs, weight, None, p, false);
    Ok(out)
}

/// Records a convolution's meaning for an exporter ([`crate::trace`]).
pub(crate) fn record_conv(
    out: &Tensor,
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: ConvParams,
    relu: bool,
) {
    crate::trace::record(out, || crate::trace::TracedOp::Conv {
        input: xs.clone(),
        weight: weight.clone(),
        bias: bias.cloned(),
        stride: (p.stride, p.stride),
        padding: (p.padding, p.padding),
        dilation: (p.dilation, p.dilation),
        groups: p.groups,
        relu,
    });
}

/// The convolution of [`conv2d`] on any device and dtype: candle's forward convolution (cuDNN
/// on CUDA) on detached inputs, with the gradients attached by [`ConvBackward`]. [`conv2d`]
/// runs this everywhere but on the CPU in `f32` / `f64`; the CPU kernels are tested against it.
pub fn conv2d_reference(xs: &Tensor, weight: &Tensor, p: ConvParams) -> Result<Tensor> {
    let out = xs
        .detach()
        .conv2d(&weight.detach(), p.padding, p.stride, p.dilation, p.groups)?;
    if !xs.track_op() && !weight.track_op() {
        record_conv(&out, xs, weight, None, p, false);
        return Ok(out);
    }
    let (_, _, h, w) = xs.dims4()?;
    let out = xs.apply_op3(
        weight,
        &out,
        ConvBackward {
            params: p,
            input_hw: (h, w),
        },
    )?;
    record_conv(&out, xs, weight, None, p, false);
    Ok(out)
}

/// The gradient carrier of [`conv2d`]: forward returns its third argument (the convolution
/// computed by candle), backward computes the input and weight gradients.
#[derive(Debug, Clone, Copy)]
pub struct ConvBackward {
    params: ConvParams,
    input_hw: (usize, usize),
}

fn pass_through<S: BackendStorage>(s: &S, l: &Layout) -> Result<(S, Shape)> {
    match l.contiguous_offsets() {
        Some((0, end)) if end == l.shape().elem_count() => Ok((s.try_clone(l)?, l.shape().clone())),
        _ => candle_core::bail!("conv-backward: the convolution result must be a fresh contiguous tensor"),
    }
}

impl CustomOp3 for ConvBackward {
    fn name(&self) -> &'static str {
        "conv2d-with-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        pass_through(s3, l3)
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        pass_through(s3, l3)
    }

    fn metal_fwd(
        &self,
        _: &MetalStorage,
        _: &Layout,
        _: &MetalStorage,
        _: &Layout,
        s3: &MetalStorage,
        l3: &Layout,
    ) -> Result<(MetalStorage, Shape)> {
        pass_through(s3, l3)
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _out: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.params.groups;
        let grad = grad.contiguous()?;
        let (xs_groups, w_groups, grad_groups) = if g == 1 {
            (vec![xs.clone()], vec![weight.clone()], vec![grad])
        } else {
            (xs.chunk(g, 1)?, weight.chunk(g, 0)?, grad.chunk(g, 1)?)
        };
        let mut grad_x = Vec::with_capacity(g);
        let mut grad_w = Vec::with_capacity(g);
        for ((x, w), gr) in xs_groups.iter().zip(&w_groups).zip(&grad_groups) {
            if weight.track_op() {
                grad_w.push(self.weight_grad(x, w, gr)?);
            }
            if xs.track_op() {
                grad_x.push(self.input_grad(w, gr)?);
            }
        }
        let cat = |parts: Vec<Tensor>, dim| -> Result<Option<Tensor>> {
            match parts.len() {
                0 => Ok(None),
                1 => Ok(parts.into_iter().next()),
                _ => Tensor::cat(&parts, dim).map(Some),
            }
        };
        Ok((cat(grad_x, 1)?, cat(grad_w, 0)?, None))
    }
}

impl ConvBackward {
    /// dL/dW for one group: the input (batch as channels) convolved with the output gradient.
    fn weight_grad(&self, xs: &Tensor, weight: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let p = self.params;
        let (_, _, kh, kw) = weight.dims4()?;
        let gw = xs
            .transpose(0, 1)?
            .contiguous()?
            .conv2d(
                &grad.transpose(0, 1)?.contiguous()?,
                p.padding,
                p.dilation,
                p.stride,
                1,
            )?
            .transpose(0, 1)?;
        // Rows/columns beyond the kernel come from input positions no window reached.
        gw.narrow(2, 0, kh)?.narrow(3, 0, kw)?.contiguous()
    }

    /// dL/dX for one group: the stride-dilated output gradient convolved with the flipped,
    /// transposed kernel.
    fn input_grad(&self, weight: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let p = self.params;
        let (_, _, kh, kw) = weight.dims4()?;
        let (h, w) = self.input_hw;
        let dev = weight.device();
        let flip = |k: usize| Tensor::from_vec((0..k as u32).rev().collect::<Vec<u32>>(), k, dev);
        let kernel = weight
            .transpose(0, 1)?
            .contiguous()?
            .index_select(&flip(kh)?, 2)?
            .index_select(&flip(kw)?, 3)?
            .contiguous()?;
        // The full correlation of the dilated gradient (padded by dilation*(k-1) on both
        // sides) covers the padded input positions 0 ..= (o-1)*stride + dilation*(k-1); the
        // input is positions padding .. padding+len. Pad or crop the gradient so the result
        // is exactly the input's extent; positions past the last window get zeros.
        let sides = |len: usize, k: usize, o: usize| {
            let span = (p.dilation * (k - 1)) as isize;
            let left = span - p.padding as isize;
            let right = len as isize - dilated_len(o, p.stride) as isize - left + span;
            (left, right)
        };
        let (left_h, right_h) = sides(h, kh, grad.dim(2)?);
        let (left_w, right_w) = sides(w, kw, grad.dim(3)?);
        let grad = dilate(grad, p.stride)?;
        let grad = pad_or_crop(&grad, 2, left_h, right_h)?;
        let grad = pad_or_crop(&grad, 3, left_w, right_w)?;
        grad.conv2d(&kernel, 0, 1, p.dilation, 1)
    }
}

/// Length of a gradient of `o` elements once dilated by `stride`.
fn dilated_len(o: usize, stride: usize) -> usize {
    (o - 1) * stride + 1
}

/// Inserts `stride - 1` zeros between the elements of the last two dimensions.
fn dilate(grad: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(grad.clone());
    }
    let (n, c, oh, ow) = grad.dims4()?;
    grad.reshape((n, c, oh, 1, ow, 1))?
        .pad_with_zeros(3, 0, stride - 1)?
        .pad_with_zeros(5, 0, stride - 1)?
        .reshape((n, c, oh * stride, ow * stride))?
        .narrow(2, 0, (oh - 1) * stride + 1)?
        .narrow(3, 0, (ow - 1) * stride + 1)
}

/// Pads `left` / `right` zeros on each side of `dim`, or crops where negative.
fn pad_or_crop(t: &Tensor, dim: usize, left: isize, right: isize) -> Result<Tensor> {
    let t = t.pad_with_zeros(dim, left.max(0) as usize, right.max(0) as usize)?;
    let (cut_left, cut_right) = ((-left).max(0) as usize, (-right).max(0) as usize);
    if cut_left == 0 && cut_right == 0 {
        return Ok(t);
    }
    let len = t.dim(dim)?;
    t.narrow(dim, cut_left, len.saturating_sub(cut_left + cut_right))
}
