//! Gradient accumulation: [`Accumulation`].

use crate::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// The gradients of the batches of one update (gradient accumulation): each batch's gradient
/// of its mean loss times its image count, summed; [`Accumulation::take`] divides by the
/// images, which gives the gradient of the mean loss over all of them: the larger batch's
/// (exactly, up to rounding, for a model without batch norm; batch norm normalises each batch
/// by its own statistics and updates its running statistics once per batch, so a model with
/// it computes another function on smaller batches).
///
/// ```no_run
/// # fn demo(batches: Vec<(candle_core::Tensor, usize)>, vars: Vec<candle_core::Var>,
/// #         opt: &mut dyn trainer::optim::Optimizer) -> trainer::Result<()> {
/// let mut accumulated = trainer::train::Accumulation::default();
/// for (loss, images) in batches {
///     accumulated.add(&loss.backward()?, &vars, images)?;
/// }
/// if let Some(grads) = accumulated.take()? {
///     opt.step(&grads)?;
/// }
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Accumulation {
    sums: Vec<(Var, Tensor)>,
    images: usize,
}

impl Accumulation {
    /// Adds a batch of `images` images whose mean loss has the gradients `grads`.
    pub fn add(&mut self, grads: &GradStore, vars: &[Var], images: usize) -> Result<()> {
        let weight = images as f64;
        for var in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g * weight)?;
            let id = var.as_tensor().id();
            match self.sums.iter_mut().find(|(v, _)| v.as_tensor().id() == id) {
                Some((_, sum)) => *sum = (&*sum + g)?,
                None => self.sums.push((var.clone(), g)),
            }
        }
        self.images += images;
        Ok(())
    }

    /// [`Accumulation::take`] when `update`.
    pub(crate) fn take_if(&mut self, update: bool) -> Result<Option<GradStore>> {
        if update {
            self.take()
        } else {
            Ok(None)
        }
    }

    /// The mean gradients of the batches added since the last call (`None` when none was).
    pub fn take(&mut self) -> Result<Option<GradStore>> {
        if self.images == 0 {
            return Ok(None);
        }
        let mut grads = GradStore::default();
        let images = self.images as f64;
        for (var, sum) in self.sums.drain(..) {
            grads.insert(var.as_tensor(), (sum / images)?);
        }
        self.images = 0;
        Ok(Some(grads))
    }
}
