//! [`Epilogue`]: what a convolution's forward pass applies to each output tile right after
//! its product, while the tile is in the cache: [`ConvEpilogue`]'s bias, eval-mode batch norm
//! and ReLU in the element type, and optionally a residual added before the ReLU.

use super::*;

/// [`ConvEpilogue`] in the element type, optionally followed by a residual addition
/// ([`Epilogue::with_residual`]) before the ReLU.
#[derive(Debug, Clone)]
pub struct Epilogue<'a, T> {
    /// Empty without a bias.
    pub bias: Vec<T>,
    /// Empty without a batch norm (and then `scale` and `shift` too).
    pub mean: Vec<T>,
    pub scale: Vec<T>,
    pub shift: Vec<T>,
    pub relu: bool,
    /// Added after the batch norm, before the ReLU: a tensor of the output's shape.
    residual: Option<Residual<'a, T>>,
}

/// The residual an epilogue adds, and where the output it belongs to starts (set by the
/// kernels when they allocate the output: [`Epilogue::bound_to`]).
#[derive(Debug, Clone, Copy)]
struct Residual<'a, T> {
    values: &'a [T],
    /// The address of the output's first value; 0 until bound.
    out_start: usize,
}

impl<T: Float> Epilogue<'static, T> {
    /// The epilogue in the element type (values rounded once, as the layers' own passes do).
    pub fn new(e: &ConvEpilogue) -> Self {
        let cast = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect();
        Self {
            bias: e.bias.as_deref().map_or_else(Vec::new, cast),
            mean: cast(&e.mean),
            scale: cast(&e.scale),
            shift: cast(&e.shift),
            relu: e.relu,
            residual: None,
        }
    }
}

impl<'a, T: Float> Epilogue<'a, T> {
    /// This epilogue followed by the addition of `residual` (a tensor of the convolution's
    /// output shape, `[N, Cout, oh, ow]`) before the ReLU: `relu(bn(conv(x)) + residual)`,
    /// ResNet's block output in one pass, the same bits as the epilogue without the ReLU
    /// followed by [`crate::elementwise::add_relu`].
    pub fn with_residual<'b>(self, residual: &'b [T]) -> Epilogue<'b, T> {
        Epilogue {
            bias: self.bias,
            mean: self.mean,
            scale: self.scale,
            shift: self.shift,
            relu: self.relu,
            residual: Some(Residual {
                values: residual,
                out_start: 0,
            }),
        }
    }

    /// Checks one value per output channel in every vector (`mean`, `scale` and `shift` may
    /// all be empty).
    pub fn check(&self, op: &str, cout: usize) -> Result<()> {
        let lengths = [self.mean.len(), self.scale.len(), self.shift.len()];
        let bias_ok = self.bias.is_empty() || self.bias.len() == cout;
        if !bias_ok || !(lengths == [0; 3] || lengths == [cout; 3]) {
            bail!(
                "{op}: the epilogue needs {cout} values per vector (mean, scale, shift, bias), got {lengths:?} and {}",
                self.bias.len()
            )
        }
        Ok(())
    }

    /// Checks that the residual, if any, has one value per output (`g`'s output shape).
    pub(crate) fn check_residual(&self, op: &str, g: &ConvGeometry) -> Result<()> {
        match self.residual {
            Some(r) if r.values.len() != g.n * g.image_out() => bail!(
                "{op}: a residual of {} values added to an output {:?} ({} values)",
                r.values.len(),
                g.output_dims(),
                g.n * g.image_out()
            ),
            _ => Ok(()),
        }
    }

    /// This epilogue for the output `out` the kernels just allocated: [`Epilogue::map`] then
    /// finds the residual's values of any part of `out` by its place in `out`. Borrowed as it
    /// is when there is no residual.
    pub(crate) fn bound_to(&self, out: &[T]) -> Cow<'_, Self> {
        match self.residual {
            None => Cow::Borrowed(self),
            Some(r) => {
                let mut bound = self.clone();
                bound.residual = Some(Residual {
                    out_start: out.as_ptr() as usize,
                    ..r
                });
                Cow::Owned(bound)
            }
        }
    }

    /// Maps output rows `rows` of every channel of the images in `out` (whole images).
    pub(crate) fn apply(&self, g: &ConvGeometry, out: &mut [T], rows: &Range<usize>) {
        let span = rows.start * g.ow..rows.end * g.ow;
        for image in out.chunks_exact_mut(g.image_out()) {
            for (c, plane) in image.chunks_exact_mut(g.plane_out()).enumerate() {
                if let Some(values) = plane.get_mut(span.clone()) {
                    self.map(c, values);
                }
            }
        }
    }

    /// The residual's values at the places of `values`, a part of the output the epilogue
    /// was bound to ([`Epilogue::bound_to`]).
    fn residual_of(&self, values: &[T]) -> Option<&'a [T]> {
        let r = self.residual?;
        let offset = (values.as_ptr() as usize).checked_sub(r.out_start)? / std::mem::size_of::<T>();
        r.values.get(offset..offset + values.len())
    }

    /// The same operations, in the same order, as the bias addition, the batch norm eval
    /// kernel and the ReLU kernel (with a residual: the addition of [`add_relu`] before the
    /// ReLU). `values` is a run of output channel `c`'s values; with a residual, a part of the
    /// output this epilogue was bound to (panics otherwise: the kernels bind it when they
    /// allocate the output, and nothing outside the crate calls this).
    ///
    /// [`add_relu`]: crate::elementwise::add_relu
    #[inline(always)]
    pub(crate) fn map(&self, c: usize, values: &mut [T]) {
        if self.residual.is_some() {
            let Some(residual) = self.residual_of(values) else {
                panic!("Epilogue::map: a residual epilogue used on values outside its output")
            };
            return self.map_residual(c, values, residual);
        }
        if self.mean.is_empty() {
            // No batch norm: the bias addition and the ReLU kernel.
            match (self.bias.get(c).copied(), self.relu) {
                (None, false) => {}
                (None, true) => values.iter_mut().for_each(|v| *v = relu_value(*v)),
                (Some(b), false) => values.iter_mut().for_each(|v| *v += b),
                (Some(b), true) => values.iter_mut().for_each(|v| *v = relu_value(*v + b)),
            }
            return;
        }
        let (Some(&m), Some(&q), Some(&r)) = (self.mean.get(c), self.scale.get(c), self.shift.get(c)) else {
            return;
        };
        match (self.bias.get(c).copied(), self.relu) {
            (None, false) => values.iter_mut().for_each(|v| *v = (*v - m) * q + r),
            (None, true) => values.iter_mut().for_each(|v| *v = relu_value((*v - m) * q + r)),
            (Some(b), false) => values.iter_mut().for_each(|v| *v = (*v + b - m) * q + r),
            (Some(b), true) => values
                .iter_mut()
                .for_each(|v| *v = relu_value((*v + b - m) * q + r)),
        }
    }

    /// [`Epilogue::map`] with the residual's values at the same places added before the ReLU.
    fn map_residual(&self, c: usize, values: &mut [T], residual: &[T]) {
        let bias = self.bias.get(c).copied();
        let norm = match (self.mean.get(c), self.scale.get(c), self.shift.get(c)) {
            (Some(&m), Some(&q), Some(&r)) => Some((m, q, r)),
            _ => None,
        };
        let relu = self.relu;
        for (v, &a) in values.iter_mut().zip(residual) {
            let mut y = *v;
            if let Some(b) = bias {
                y += b;
            }
            if let Some((m, q, r)) = norm {
                y = (y - m) * q + r;
            }
            y += a;
            *v = if relu { relu_value(y) } else { y };
        }
    }
}
