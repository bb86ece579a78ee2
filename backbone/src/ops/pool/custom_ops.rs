//! The candle custom ops wrapping the CPU kernels of [`kernels::pool`], forward and backward.

use super::Pool2dParams;
use crate::ops::conv_cpu::{kernel_err, Float};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use kernels::pool::{
    adaptive_divisor, adaptive_windows, avg_divisor, avg_pool_bwd, avg_pool_fwd, max_pool_bwd, max_pool_fwd,
    windows, Window,
};

/// A strided 4-d view of a CPU buffer as a candle [`Layout`] describes it (checked to stay
/// inside the buffer).
pub(super) fn view4<'a, T: Copy>(
    op: &str,
    data: &'a [T],
    layout: &Layout,
) -> Result<kernels::pool::View4<'a, T>> {
    let (dims, stride) = match (layout.dims(), layout.stride()) {
        (&[a, b, c, d], &[sa, sb, sc, sd]) => ([a, b, c, d], [sa, sb, sc, sd]),
        (dims, _) => bail!("{op}: expected a 4-d tensor, got shape {dims:?}"),
    };
    kernels::pool::View4::new(op, data, layout.start_offset(), dims, stride).map_err(kernel_err)
}

fn check_grad_dims(op: &str, g: &Layout, expected: [usize; 4]) -> Result<()> {
    if g.dims() != expected {
        bail!(
            "{op}: gradient of shape {:?} does not match the output shape {expected:?}",
            g.dims()
        )
    }
    Ok(())
}

/// Max pooling forward; backward via [`MaxPool2dBackward`].
pub(super) struct MaxPool2dOp {
    pub(super) p: Pool2dParams,
    pub(super) out: (usize, usize),
}

impl MaxPool2dOp {
    fn windows(&self, (h, w): (usize, usize)) -> Result<(Vec<Window>, Vec<Window>)> {
        let p = &self.p;
        Ok((
            windows(self.out.0, p.kernel.0, p.stride.0, p.padding.0, h).map_err(kernel_err)?,
            windows(self.out.1, p.kernel.1, p.stride.1, p.padding.1, w).map_err(kernel_err)?,
        ))
    }
}

impl CustomOp1 for MaxPool2dOp {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(op: &MaxPool2dOp, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let x = view4(op.name(), data, l)?;
            let [n, c, h, w] = x.dims();
            let (wh, ww) = op.windows((h, w))?;
            let out = max_pool_fwd(&x, &wh, &ww).map_err(kernel_err)?;
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.out.0, op.out.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = arg.apply_op2_no_bwd(
            grad_res,
            &MaxPool2dBackward {
                fwd: MaxPool2dOp {
                    p: self.p,
                    out: self.out,
                },
            },
        )?;
        Ok(Some(g))
    }
}

/// Max pooling backward, a custom op on `(input, grad_output)` that recomputes the argmax of
/// each window and returns the gradient w.r.t. the input.
struct MaxPool2dBackward {
    fwd: MaxPool2dOp,
}

impl CustomOp2 for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "max_pool2d_backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(
            op: &MaxPool2dBackward,
            x: &[T],
            l1: &Layout,
            g: &[T],
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let x = view4(op.name(), x, l1)?;
            let [n, c, h, w] = x.dims();
            check_grad_dims(op.name(), l2, [n, c, op.fwd.out.0, op.fwd.out.1])?;
            let g = view4(op.name(), g, l2)?;
            let (wh, ww) = op.fwd.windows((h, w))?;
            let out = max_pool_bwd(&x, &g, &wh, &ww).map_err(kernel_err)?;
            Ok((T::to_cpu_storage_owned(out), Shape::from((n, c, h, w))))
        }
        float_storages!(self.name(), (s1 => x, s2 => g), run(self, x, l1, g, l2))
    }
}

/// Average pooling forward; backward via [`AvgPool2dBackward`].
pub(super) struct AvgPool2dOp {
    pub(super) p: Pool2dParams,
    pub(super) out: (usize, usize),
}

impl AvgPool2dOp {
    fn windows(&self, (h, w): (usize, usize)) -> Result<(Vec<Window>, Vec<Window>)> {
        MaxPool2dOp {
            p: self.p,
            out: self.out,
        }
        .windows((h, w))
    }
}

impl CustomOp1 for AvgPool2dOp {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(op: &AvgPool2dOp, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let x = view4(op.name(), data, l)?;
            let [n, c, h, w] = x.dims();
            let (wh, ww) = op.windows((h, w))?;
            let out = avg_pool_fwd(&x, &wh, &ww, avg_divisor(op.p.count_include_pad)).map_err(kernel_err)?;
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.out.0, op.out.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        let op = AvgPool2dBackward {
            fwd: AvgPool2dOp {
                p: self.p,
                out: self.out,
            },
            input: (h, w),
        };
        Ok(Some(grad_res.apply_op1_no_bwd(&op)?))
    }
}

/// Average pooling backward, a custom op on `grad_output` returning the gradient w.r.t. an
/// input of spatial size `input`.
struct AvgPool2dBackward {
    fwd: AvgPool2dOp,
    input: (usize, usize),
}

impl CustomOp1 for AvgPool2dBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d_backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(op: &AvgPool2dBackward, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let g = view4(op.name(), data, l)?;
            let [n, c, _, _] = g.dims();
            check_grad_dims(op.name(), l, [n, c, op.fwd.out.0, op.fwd.out.1])?;
            let (wh, ww) = op.fwd.windows(op.input)?;
            let out = avg_pool_bwd(&g, op.input, &wh, &ww, avg_divisor(op.fwd.p.count_include_pad))
                .map_err(kernel_err)?;
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.input.0, op.input.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }
}

/// Adaptive average pooling forward; backward via [`AdaptiveAvgPool2dBackward`].
pub(super) struct AdaptiveAvgPool2dOp {
    pub(super) out: (usize, usize),
}

impl CustomOp1 for AdaptiveAvgPool2dOp {
    fn name(&self) -> &'static str {
        "adaptive_avg_pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(op: &AdaptiveAvgPool2dOp, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let x = view4(op.name(), data, l)?;
            let [n, c, h, w] = x.dims();
            if h == 0 || w == 0 {
                bail!(
                    "{}: input must have a non-empty spatial size, got {:?}",
                    op.name(),
                    x.dims()
                )
            }
            let wh = adaptive_windows(op.out.0, h).map_err(kernel_err)?;
            let ww = adaptive_windows(op.out.1, w).map_err(kernel_err)?;
            let out = avg_pool_fwd(&x, &wh, &ww, adaptive_divisor).map_err(kernel_err)?;
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.out.0, op.out.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        let op = AdaptiveAvgPool2dBackward {
            out: self.out,
            input: (h, w),
        };
        Ok(Some(grad_res.apply_op1_no_bwd(&op)?))
    }
}

/// Adaptive average pooling backward, a custom op on `grad_output`.
struct AdaptiveAvgPool2dBackward {
    out: (usize, usize),
    input: (usize, usize),
}

impl CustomOp1 for AdaptiveAvgPool2dBackward {
    fn name(&self) -> &'static str {
        "adaptive_avg_pool2d_backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Float>(
            op: &AdaptiveAvgPool2dBackward,
            data: &[T],
            l: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let g = view4(op.name(), data, l)?;
            let [n, c, _, _] = g.dims();
            check_grad_dims(op.name(), l, [n, c, op.out.0, op.out.1])?;
            let wh = adaptive_windows(op.out.0, op.input.0).map_err(kernel_err)?;
            let ww = adaptive_windows(op.out.1, op.input.1).map_err(kernel_err)?;
            let out = avg_pool_bwd(&g, op.input, &wh, &ww, adaptive_divisor).map_err(kernel_err)?;
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((n, c, op.input.0, op.input.1)),
            ))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }
}
