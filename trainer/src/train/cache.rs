//! Linear probing: the frozen backbone's features of a whole dataset, computed once.

use crate::data::{Batch, DataLoader, LoaderConfig};
use crate::pretrained::frozen_pre_logits;
use crate::{Error, Result};
use backbone::Backbone;
use candle_core::{Device, Tensor};

/// Features of a whole dataset (backbone in eval mode) with their labels, and the row of each
/// dataset index (`None` for an image that could not be read).
pub(super) struct FeatureCache {
    features: Tensor,
    labels: Tensor,
    rows: Vec<Option<u32>>,
    pub(super) skipped: Vec<(String, String)>,
}

impl FeatureCache {
    /// Runs the backbone once over `loader`'s dataset (in index order, `loader`'s transform and
    /// workers).
    pub(super) fn build(model: &dyn Backbone, loader: &DataLoader, device: &Device) -> Result<Self> {
        let config = LoaderConfig {
            shuffle: false,
            ..loader.config().clone()
        };
        let ordered = DataLoader::new(loader.dataset().clone(), loader.transform().clone(), config)?
            .with_dtype(loader.dtype())?;
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        let mut rows = vec![None; loader.dataset().len()];
        let mut next = 0u32;
        for batch in ordered.epoch(0, device) {
            let Batch {
                images,
                labels: l,
                indices,
            } = batch?;
            features.push(frozen_pre_logits(model, &images)?);
            labels.push(l);
            for i in indices {
                if let Some(row) = rows.get_mut(i) {
                    *row = Some(next);
                }
                next += 1;
            }
        }
        if features.is_empty() {
            return Err(Error::config("the dataset has no readable image"));
        }
        Ok(Self {
            features: Tensor::cat(&features, 0)?,
            labels: Tensor::cat(&labels, 0)?,
            rows,
            skipped: ordered.skipped(),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.labels.dims().first().copied().unwrap_or(0)
    }

    pub(super) fn bytes(&self) -> usize {
        self.features.elem_count() * self.features.dtype().size_in_bytes()
    }

    /// The batches the loader would give for `order` (dataset indices): chunks of `batch_size`,
    /// unreadable images dropped from their chunk, as [`DataLoader`] does.
    /// Each batch is gathered when the iterator reaches it, so an epoch holds one batch of
    /// features beside the cache, not a second copy of it.
    pub(super) fn batches<'a>(
        &'a self,
        order: &'a [usize],
        batch_size: usize,
    ) -> impl Iterator<Item = Result<(Tensor, Tensor)>> + 'a {
        order.chunks(batch_size).filter_map(move |chunk| {
            let rows: Vec<u32> = chunk
                .iter()
                .filter_map(|&i| self.rows.get(i).copied().flatten())
                .collect();
            if rows.is_empty() {
                return None;
            }
            let gather = || -> Result<(Tensor, Tensor)> {
                let idx = Tensor::new(rows.as_slice(), self.features.device())?;
                Ok((
                    self.features.index_select(&idx, 0)?,
                    self.labels.index_select(&idx, 0)?,
                ))
            };
            Some(gather())
        })
    }
}
