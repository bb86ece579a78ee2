//! What fine-tuning needs of a pretrained model: the variable partition used to freeze a
//! backbone: [`head_vars`] and [`backbone_vars`],
//! by the model's [`Backbone::head_prefix`] and [`Backbone::aux_head_prefixes`], and the frozen
//! forward pass. Pretrained weights come into a trainable model through
//! `convnets::create_model` with `trainable: true` (the catalogue's
//! [`backbone::catalogue::Variant::load_trainable`]), whose [`LoadReport`] says what was loaded
//! and what initialised fresh.

use crate::Result;
use backbone::weights::ReadOptions;
use backbone::Backbone;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::Path;

pub use backbone::catalogue::LoadReport;

/// Whether `name` is `prefix` or lies under `prefix.`.
pub fn under_prefix(name: &str, prefix: &str) -> bool {
    backbone::init::is_under(name, prefix)
}

/// The variable prefixes whose shapes depend on the class count: the head and the auxiliary
/// heads' last layers.
pub fn head_prefixes(model: &dyn Backbone) -> Vec<String> {
    let mut prefixes = vec![model.head_prefix().to_string()];
    prefixes.extend(model.aux_head_prefixes());
    prefixes
}

fn is_head(name: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| under_prefix(name, p))
}

/// Reads the tensors of a weights file on the CPU with `backbone`'s validated reader and
/// [`ReadOptions::weights`] (float and finite, except `num_batches_tracked` buffers); the
/// [`Error::Model`] names the file and, for a bad tensor, the tensor.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(backbone::weights::read_safetensors(
        path,
        &Device::Cpu,
        &ReadOptions::weights(),
    )?)
}

/// The trainable variables (no running statistics, none the model declares frozen) under the
/// model's head prefixes, sorted.
pub fn head_vars(varmap: &VarMap, model: &dyn Backbone) -> Vec<(String, Var)> {
    let prefixes = head_prefixes(model);
    backbone::init::trainable_model_vars(varmap, model)
        .into_iter()
        .filter(|(name, _)| is_head(name, &prefixes))
        .collect()
}

/// The trainable variables outside the head prefixes (none the model declares frozen, see
/// [`Backbone::frozen_prefixes`]), sorted.
pub fn backbone_vars(varmap: &VarMap, model: &dyn Backbone) -> Vec<(String, Var)> {
    let prefixes = head_prefixes(model);
    backbone::init::trainable_model_vars(varmap, model)
        .into_iter()
        .filter(|(name, _)| !is_head(name, &prefixes))
        .collect()
}

/// The pre-logits of `model` in eval mode (batch norm uses and keeps its running statistics,
/// dropout is off), detached: what a frozen backbone hands its final classifier.
pub fn frozen_pre_logits(model: &dyn Backbone, xs: &Tensor) -> Result<Tensor> {
    // No gradient is asked of the backbone: inference mode lets it fold batch norm.
    let pre_logits = backbone::inference_mode(|| {
        let features = model.forward_features(xs, false)?;
        model.forward_pre_logits(&features, false)
    })?;
    Ok(pre_logits.detach())
}

/// Logits of `model` with its backbone frozen: [`frozen_pre_logits`], so no gradient reaches
/// the backbone, then the final classifier in `train` mode.
pub fn forward_frozen(model: &dyn Backbone, xs: &Tensor, train: bool) -> Result<Tensor> {
    let pre_logits = frozen_pre_logits(model, xs)?;
    Ok(model.forward_classifier(&pre_logits, train)?)
}
