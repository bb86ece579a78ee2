//! The candle custom ops of batch normalisation around the CPU kernels, forward and backward.

use super::*;

/// Per-channel `(mean, biased variance)` of `x` as a `[2, C]` f64 tensor.
pub(super) struct Moments {
    pub(super) c: usize,
}

impl CustomOp1 for Moments {
    fn name(&self) -> &'static str {
        "batch_norm_moments"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Elem>(op: &Moments, data: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
            let p = planes(op.name(), l, op.c)?;
            let x = contiguous(op.name(), data, l, p.len())?;
            let (mean, var): (Vec<f64>, Vec<f64>) = moments(x, p).map_err(kernel_err)?.into_iter().unzip();
            Ok((CpuStorage::F64([mean, var].concat()), Shape::from((2, op.c))))
        }
        float_storages!(self.name(), (s => v), run(self, v, l))
    }
}

/// Per-channel `(sum(dy), sum(dy * (x - mean)))` of `(x, dy)` as a `[2, C]` f64 tensor.
pub(super) struct GradSums {
    pub(super) mean: Vec<f64>,
}

impl CustomOp2 for GradSums {
    fn name(&self) -> &'static str {
        "batch_norm_grad_sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Elem>(
            op: &GradSums,
            x: &[T],
            l1: &Layout,
            dy: &[T],
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let c = op.mean.len();
            let p = planes(op.name(), l1, c)?;
            if l2.dims() != l1.dims() {
                bail!(
                    "{}: gradient of shape {:?} for an input of shape {:?}",
                    op.name(),
                    l2.dims(),
                    l1.dims()
                )
            }
            let x = contiguous(op.name(), x, l1, p.len())?;
            let dy = contiguous(op.name(), dy, l2, p.len())?;
            let (s, sx): (Vec<f64>, Vec<f64>) = grad_sums(x, dy, p, &op.mean)
                .map_err(kernel_err)?
                .into_iter()
                .unzip();
            Ok((CpuStorage::F64([s, sx].concat()), Shape::from((2, c))))
        }
        float_storages!(self.name(), (s1 => x, s2 => g), run(self, x, l1, g, l2))
    }
}

/// What a [`ChannelAffine`] pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// `(a - mean) * q + r` (one argument), `b * p + (a - mean) * q + r` (two).
    Plain,
    /// `max((a - mean) * q + r, 0)` (one argument).
    Relu,
    /// `b * p * (a > 0)` (two arguments).
    Masked,
}

/// An element-wise per-channel pass (see [`Form`]), coefficients in `f64`.
pub(super) struct ChannelAffine {
    pub(super) name: &'static str,
    pub(super) c: usize,
    pub(super) mean: Vec<f64>,
    pub(super) q: Vec<f64>,
    pub(super) r: Vec<f64>,
    pub(super) p: Vec<f64>,
    pub(super) form: Form,
}

impl ChannelAffine {
    pub(super) fn coefs<T: Elem>(&self) -> Result<Coefs<T>> {
        Coefs::new(&self.mean, &self.q, &self.r, &self.p).map_err(kernel_err)
    }

    pub(super) fn run1<T: Elem>(&self, a: &[T], la: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = planes(self.name, la, self.c)?;
        let a = contiguous(self.name, a, la, p.len())?;
        let k = self.coefs()?;
        let out = match self.form {
            Form::Relu => affine1::<T, true>(a, p, &k),
            Form::Plain | Form::Masked => affine1::<T, false>(a, p, &k),
        }
        .map_err(kernel_err)?;
        Ok((T::to_cpu_storage_owned(out), la.shape().clone()))
    }

    pub(super) fn run2<T: Elem>(
        &self,
        a: &[T],
        la: &Layout,
        b: &[T],
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = planes(self.name, la, self.c)?;
        if lb.dims() != la.dims() {
            bail!("{}: shapes {:?} and {:?} differ", self.name, la.dims(), lb.dims())
        }
        let a = contiguous(self.name, a, la, p.len())?;
        let b = contiguous(self.name, b, lb, p.len())?;
        let k = self.coefs()?;
        let out = match self.form {
            Form::Masked => masked2(a, b, p, &k),
            Form::Plain | Form::Relu => affine2(a, b, p, &k),
        }
        .map_err(kernel_err)?;
        Ok((T::to_cpu_storage_owned(out), la.shape().clone()))
    }
}

impl CustomOp1 for ChannelAffine {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name, (s => v), self.run1(v, l))
    }
}

impl CustomOp2 for ChannelAffine {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name, (s1 => a, s2 => b), self.run2(a, l1, b, l2))
    }
}

/// The statistics a forward op normalises with, captured for its backward pass.
#[derive(Debug)]
pub(super) struct Norm {
    pub(super) c: usize,
    pub(super) mean: Vec<f64>,
    pub(super) invstd: Vec<f64>,
    /// Batch statistics (training: the gradient flows through them) or running statistics
    /// (eval: constants).
    pub(super) batch: bool,
    /// A ReLU after the normalisation.
    pub(super) relu: bool,
}

impl Norm {
    pub(super) fn name(&self) -> &'static str {
        match (self.batch, self.relu) {
            (true, false) => "batch_norm_train",
            (true, true) => "batch_norm_train_relu",
            (false, false) => "batch_norm_eval",
            (false, true) => "batch_norm_eval_relu",
        }
    }

    /// The forward pass with optional `[C]` weight and bias.
    pub(super) fn forward<T: Elem>(
        &self,
        x: &[T],
        l: &Layout,
        affine: Option<(&[T], &Layout, &[T], &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (mut scale, mut shift) = (self.invstd.clone(), vec![0.0; self.c]);
        if let Some((w, lw, b, lb)) = affine {
            let w = contiguous(name, w, lw, self.c)?;
            let b = contiguous(name, b, lb, self.c)?;
            for (k, (&w, &b)) in w.iter().zip(b).enumerate() {
                scale[k] *= w.wide();
                shift[k] = b.wide();
            }
        }
        ChannelAffine {
            name,
            c: self.c,
            mean: self.mean.clone(),
            q: scale,
            r: shift,
            p: Vec::new(),
            form: if self.relu { Form::Relu } else { Form::Plain },
        }
        .run1(x, l)
    }

    /// Gradients w.r.t. `x`, the weight and the bias (each only if it needs one), from the
    /// output `y` (read with a ReLU only) and its gradient.
    pub(super) fn backward(
        &self,
        x: &Tensor,
        affine: Option<(&Tensor, &Tensor)>,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = self.c;
        let need_x = x.track_op();
        let (need_w, need_b) = affine.map_or((false, false), |(w, b)| (w.track_op(), b.track_op()));
        if !(need_x || need_w || need_b) {
            return Ok((None, None, None));
        }
        let weight = match affine {
            Some((w, _)) => w.to_dtype(DType::F64)?.to_vec1::<f64>()?,
            None => vec![1.0; c],
        };
        let scale: Vec<f64> = weight.iter().zip(&self.invstd).map(|(w, s)| w * s).collect();
        if self.relu && !self.batch && !(need_w || need_b) {
            // Constant statistics, only the input: dx = dy * w * invstd * (y > 0), one pass.
            let op = ChannelAffine {
                name: "batch_norm_eval_relu_input_grad",
                c,
                mean: Vec::new(),
                q: Vec::new(),
                r: Vec::new(),
                p: scale,
                form: Form::Masked,
            };
            return Ok((Some(y.apply_op2_no_bwd(&grad.contiguous()?, &op)?), None, None));
        }
        // The gradient of the normalisation's output: through the ReLU's mask first if any.
        let dy = if self.relu {
            relu_backward(y, grad)?
        } else {
            grad.contiguous()?
        };
        // sum(dy) and sum(dy * xhat) per channel, when something needs them.
        let sums = if need_w || need_b || (need_x && self.batch) {
            let sums = x
                .apply_op2_no_bwd(
                    &dy,
                    &GradSums {
                        mean: self.mean.clone(),
                    },
                )?
                .to_vec2::<f64>()?;
            match sums.as_slice() {
                [s, sx] => {
                    let sxhat: Vec<f64> = sx.iter().zip(&self.invstd).map(|(v, s)| v * s).collect();
                    Some((s.clone(), sxhat))
                }
                _ => bail!(
                    "{}: the gradient sums op returned {} rows",
                    self.name(),
                    sums.len()
                ),
            }
        } else {
            None
        };
        let dx = match (&sums, need_x) {
            (_, false) => None,
            (Some((sdy, sdxhat)), true) if self.batch => {
                // dx = w * invstd * (dy - sum(dy) / M - (x - mean) * invstd * sum(dy * xhat) / M)
                let count = (x.elem_count() / c.max(1)) as f64;
                let q = (0..c)
                    .map(|k| -scale[k] * self.invstd[k] * sdxhat[k] / count)
                    .collect();
                let r = (0..c).map(|k| -scale[k] * sdy[k] / count).collect();
                let op = ChannelAffine {
                    name: "batch_norm_train_input_grad",
                    c,
                    mean: self.mean.clone(),
                    q,
                    r,
                    p: scale,
                    form: Form::Plain,
                };
                Some(x.apply_op2_no_bwd(&dy, &op)?)
            }
            _ => {
                // Constant statistics: dx = dy * w * invstd.
                let op = ChannelAffine {
                    name: "batch_norm_eval_input_grad",
                    c,
                    mean: vec![0.0; c],
                    q: scale,
                    r: vec![0.0; c],
                    p: Vec::new(),
                    form: Form::Plain,
                };
                Some(dy.apply_op1_no_bwd(&op)?)
            }
        };
        let vector = |v: &[f64]| Tensor::from_vec(v.to_vec(), c, x.device())?.to_dtype(x.dtype());
        let (dw, db) = match &sums {
            Some((sdy, sdxhat)) => (
                need_w.then(|| vector(sdxhat)).transpose()?,
                need_b.then(|| vector(sdy)).transpose()?,
            ),
            None => (None, None),
        };
        Ok((dx, dw, db))
    }
}

/// The forward op without affine parameters.
pub(super) struct NormalizePlain(pub(super) Arc<Norm>);

impl CustomOp1 for NormalizePlain {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name(), (s => v), self.0.forward(v, l, None))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.0.backward(x, None, res, grad)?.0)
    }
}

/// The forward op over `(x, weight, bias)`.
pub(super) struct NormalizeAffine(pub(super) Arc<Norm>);

impl CustomOp3 for NormalizeAffine {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        float_storages!(self.name(), (s1 => x, s2 => w, s3 => b), {
            self.0.forward(x, l1, Some((w, l2, b, l3)))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.0.backward(x, Some((w, b)), res, grad)
    }
}
