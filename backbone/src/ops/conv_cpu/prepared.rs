//! What the convolutions prepare from their weights inside [`crate::with_frozen_weights`]:
//! Winograd-transformed weights ([`kernels::conv::prepare_weight`]), one per weight tensor and
//! tiling, computed by the first pass that needs it and reused by the later ones.

use super::Float;
use candle_core::{Tensor, TensorId};
use kernels::conv::{PreparedWeight, WinogradTiling};
use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The prepared weights of one thread's [`crate::with_frozen_weights`] call, by weight tensor
/// and tiling. Each entry keeps its weight tensor alive, so that its id is not reused while
/// the entry exists.
#[derive(Default)]
pub(crate) struct PreparedWeights {
    slots: HashMap<(TensorId, WinogradTiling), (Tensor, Arc<PreparedSlot>)>,
    /// The bytes the slots hold once filled.
    bytes: usize,
    /// Whole models prepared by [`crate::inference::prepared_model`], by the key tensor and the
    /// prepared type (each entry keeps its key alive).
    models: HashMap<(TensorId, TypeId), (Tensor, Arc<dyn Any + Send + Sync>)>,
}

/// The most bytes of prepared weights one [`crate::with_frozen_weights`] call keeps; weights
/// past it are transformed on every pass, as outside. A model's own weights need far less
/// (ResNet-50: 63 MB); the bound is for weights computed anew on every pass (a caller's own
/// `conv2d` with a derived weight), each a new tensor that would otherwise add an entry per
/// pass.
pub(crate) const BUDGET_BYTES: usize = 512 << 20;

impl PreparedWeights {
    /// The slot of `weight`'s transform for `choice` (empty until a pass fills it), `None`
    /// once the slots would hold more than [`BUDGET_BYTES`].
    pub(crate) fn slot(&mut self, weight: &Tensor, choice: WinogradTiling) -> Option<Arc<PreparedSlot>> {
        let key = (weight.id(), choice);
        if let Some((_, slot)) = self.slots.get(&key) {
            return Some(slot.clone());
        }
        let bytes = weight.elem_count() / 9 * choice.positions() * weight.dtype().size_in_bytes();
        if self.bytes + bytes > BUDGET_BYTES {
            return None;
        }
        self.bytes += bytes;
        let slot = Arc::new(PreparedSlot {
            choice,
            prepared: OnceLock::new(),
        });
        self.slots.insert(key, (weight.clone(), slot.clone()));
        Some(slot)
    }

    /// The model prepared for `key` as a `T`, if any.
    pub(crate) fn model<T: Send + Sync + 'static>(&self, key: &Tensor) -> Option<Arc<T>> {
        let (_, model) = self.models.get(&(key.id(), TypeId::of::<T>()))?;
        model.clone().downcast::<T>().ok()
    }

    /// Keeps `model` for `key`.
    pub(crate) fn keep_model<T: Send + Sync + 'static>(&mut self, key: &Tensor, model: Arc<T>) {
        self.models
            .insert((key.id(), TypeId::of::<T>()), (key.clone(), model));
    }

    /// How many weights have a slot.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

/// One weight's transform for one tiling, filled by the first pass that runs with it.
#[derive(Debug)]
pub(crate) struct PreparedSlot {
    choice: WinogradTiling,
    prepared: OnceLock<Prepared>,
}

impl PreparedSlot {
    /// The tiling the slot's weight is (or will be) transformed for.
    pub(crate) fn choice(&self) -> WinogradTiling {
        self.choice
    }

    /// The prepared weight in `T`, computed by `prepare` on first use. (A slot belongs to one
    /// weight tensor, of one dtype; were it filled in another, this pass would use a weight
    /// prepared for it alone.)
    pub(super) fn get_or_prepare<T: Float>(
        &self,
        prepare: impl Fn() -> kernels::Result<PreparedWeight<T>>,
    ) -> kernels::Result<Cow<'_, PreparedWeight<T>>> {
        if self.prepared.get().is_none() {
            let _ = self.prepared.set(T::wrap_prepared(prepare()?));
        }
        match self.prepared.get().and_then(T::prepared) {
            Some(kept) => Ok(Cow::Borrowed(kept)),
            None => Ok(Cow::Owned(prepare()?)),
        }
    }
}

/// A prepared weight in either element type.
#[derive(Debug)]
pub(crate) enum Prepared {
    F32(PreparedWeight<f32>),
    F64(PreparedWeight<f64>),
}

#[cfg(test)]
mod tests {
    use crate::ops::{conv2d, ConvParams};
    use crate::{inference_mode, with_frozen_weights};
    use candle_core::{Device, Tensor, Var};

    fn bits(t: &Tensor) -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Inside `with_frozen_weights` a 3x3 convolution on a 7x7 map (where only a prepared
    /// weight takes Winograd) keeps one prepared weight and reuses it: the passes agree bit
    /// for bit and lie within F(2x2)'s rounding of the plain inference pass (im2col), which
    /// they do not equal. A weight changed after the call is seen by the next one: doubling
    /// it (exact in binary) doubles the output exactly.
    #[test]
    fn weights_are_prepared_once_per_call_and_dropped_after() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 32, 7, 7), &dev).unwrap();
        let var = Var::randn(0f32, 0.1, (48, 32, 3, 3), &dev).unwrap();
        let p = ConvParams {
            padding: 1,
            stride: 1,
            dilation: 1,
            groups: 1,
        };
        let plain = inference_mode(|| conv2d(&x, var.as_tensor(), p)).unwrap();
        let (first, second, kept) = with_frozen_weights(|| {
            let first = conv2d(&x, var.as_tensor(), p).unwrap();
            let second = conv2d(&x, var.as_tensor(), p).unwrap();
            let kept = crate::inference::with_prepared(|w| w.len());
            (first, second, kept)
        });
        assert_eq!(kept, Some(1));
        assert_eq!(bits(&first), bits(&second));
        assert_ne!(bits(&first), bits(&plain));
        let max_abs = |t: &Tensor| -> f32 { t.abs().unwrap().max_all().unwrap().to_scalar().unwrap() };
        let (scale, diff) = (max_abs(&plain), max_abs(&(&first - &plain).unwrap()));
        assert!(diff <= 2e-6 * scale, "{diff} of {scale}");
        assert_eq!(crate::inference::with_prepared(|w| w.len()), None);
        var.set(&(var.as_tensor() * 2.0).unwrap()).unwrap();
        let doubled = with_frozen_weights(|| conv2d(&x, var.as_tensor(), p)).unwrap();
        let expected = (first * 2.0).unwrap();
        assert_eq!(bits(&doubled), bits(&expected));
    }

    /// Past the budget, weights are transformed on every pass and nothing more is kept.
    #[test]
    fn the_budget_bounds_what_is_kept() {
        let dev = Device::Cpu;
        let mut weights = super::PreparedWeights::default();
        let w = Tensor::zeros((512, 512, 3, 3), candle_core::DType::F32, &dev).unwrap();
        // F(4x4) of a 512 x 512 weight: 36 MiB.
        let per_weight = 512 * 512 * 36 * 4;
        let fits = super::BUDGET_BYTES / per_weight;
        let tensors: Vec<Tensor> = (0..fits + 1).map(|_| w.copy().unwrap()).collect();
        for t in &tensors[..fits] {
            assert!(weights.slot(t, kernels::conv::WinogradTiling::F4).is_some());
        }
        // The same weight again: its slot, whatever the budget.
        assert!(weights
            .slot(&tensors[0], kernels::conv::WinogradTiling::F4)
            .is_some());
        assert!(weights
            .slot(&tensors[fits], kernels::conv::WinogradTiling::F4)
            .is_none());
        assert_eq!(weights.len(), fits);
    }
}
