//! The paper's transfer-learning step: a main network's pretrained weights into a
//! channel-boosted network, its input convolution widened to the boosted channels: the
//! pretrained filters kept for the original channels, the boosted channels' filters left at
//! their fresh initialisation; and a pretrained model into the frozen extractor.

use crate::boosted::{EXTRACTOR_PREFIX, MAIN_PREFIX};
use backbone::catalogue::StateDict;
use backbone::{Error, Result};
use candle_core::Tensor;
use candle_nn::VarMap;

/// A pretrained input convolution `[O, C, kh, kw]` widened to a fresh one's `[O, C', kh, kw]`
/// (`C' >= C`): input channels `0..C` from `pretrained`, `C..C'` from `fresh`.
pub fn widen_input_conv(pretrained: &Tensor, fresh: &Tensor) -> Result<Tensor> {
    let (o, c, kh, kw) = pretrained.dims4()?;
    let (fo, fc, fkh, fkw) = fresh.dims4()?;
    if (o, kh, kw) != (fo, fkh, fkw) || c > fc {
        return Err(Error::config(format!(
            "cannot widen an input convolution of shape {:?} to {:?}: expected the same filters and \
             kernel, and at most as many input channels",
            pretrained.dims(),
            fresh.dims()
        )));
    }
    if c == fc {
        return Ok(pretrained.to_dtype(fresh.dtype())?);
    }
    let pretrained = pretrained.to_dtype(fresh.dtype())?.to_device(fresh.device())?;
    Ok(Tensor::cat(&[&pretrained, &fresh.narrow(1, c, fc - c)?], 1)?)
}

/// What [`transfer_main_weights`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// Variables set from the pretrained tensors (under the part's prefix), sorted.
    pub loaded: Vec<String>,
    /// The widened input convolution: `(name, pretrained channels, boosted channels)`.
    pub widened: Option<(String, usize, usize)>,
    /// Head variables kept fresh (another class count), sorted.
    pub kept_fresh: Vec<String>,
}

/// Copies a main network's pretrained `tensors` (its own names, e.g. torchvision's
/// `conv1.weight`; a [`backbone::catalogue::Variant::read_weights`] result) into the `main.`
/// variables of a channel-boosted network's `varmap`: `stem` (the input convolution's name,
/// [`backbone::catalogue::Variant::stem`]) widened by [`widen_input_conv`], the variables
/// under `head_prefix` kept fresh when their shape differs. Errors name the tensor: another
/// shape elsewhere, a variable without a tensor, a tensor without a variable. Nothing changes
/// unless every variable can be set.
pub fn transfer_main_weights(
    varmap: &VarMap,
    tensors: StateDict,
    stem: &str,
    head_prefix: &str,
) -> Result<TransferReport> {
    transfer_part(varmap, MAIN_PREFIX, "main network", tensors, stem, head_prefix)
}

/// Copies a pretrained model's `tensors` (its own names, the input convolution already adapted
/// to the image's channels: [`backbone::catalogue::Variant::adapt_stem`]) into the frozen
/// extractor's `booster.extractor.` variables (built with the variant's reference class count),
/// the variables under `head_prefix` kept fresh when their shape differs (the extractor's head
/// never runs). Errors as [`transfer_main_weights`]'s.
pub fn transfer_extractor_weights(
    varmap: &VarMap,
    tensors: StateDict,
    stem: &str,
    head_prefix: &str,
) -> Result<TransferReport> {
    transfer_part(varmap, EXTRACTOR_PREFIX, "extractor", tensors, stem, head_prefix)
}

/// The variables under `prefix.` set from `tensors` (see [`transfer_main_weights`]); `part`
/// names the part in errors.
fn transfer_part(
    varmap: &VarMap,
    prefix: &str,
    part: &str,
    mut tensors: StateDict,
    stem: &str,
    head_prefix: &str,
) -> Result<TransferReport> {
    let weights_error = |tensor: &str, problem: String| Error::Weights {
        file: None,
        tensor: tensor.to_string(),
        problem,
    };
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::config("the VarMap lock is poisoned (a thread panicked while holding it)"))?;
    let mut names: Vec<&String> = data
        .keys()
        .filter(|k| backbone::init::is_under(k, prefix))
        .collect();
    names.sort();
    let mut report = TransferReport::default();
    let mut updates = Vec::new();
    for full in names {
        let name = &full[prefix.len() + 1..];
        let var = &data[full];
        let head = backbone::init::is_under(name, head_prefix);
        let Some(tensor) = tensors.remove(name) else {
            if head {
                report.kept_fresh.push(full.clone());
                continue;
            }
            return Err(weights_error(
                name,
                format!("missing (the {part} needs a tensor of shape {:?})", var.dims()),
            ));
        };
        let tensor = if name == stem && tensor.dims() != var.dims() {
            let widened = widen_input_conv(&tensor, var.as_tensor())?;
            report.widened = Some((full.clone(), tensor.dim(1)?, var.dim(1)?));
            widened
        } else if tensor.dims() != var.dims() {
            if head {
                report.kept_fresh.push(full.clone());
                continue;
            }
            return Err(weights_error(
                name,
                format!("expected shape {:?}, found {:?}", var.dims(), tensor.dims()),
            ));
        } else {
            tensor.to_dtype(var.dtype())?.to_device(var.device())?
        };
        updates.push((var, tensor));
        report.loaded.push(full.clone());
    }
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| !backbone::weights::is_counter(k) && !backbone::init::is_under(k, head_prefix))
        .collect();
    extra.sort();
    if let Some(name) = extra.first() {
        return Err(weights_error(
            name,
            format!(
                "present in the pretrained weights but the {part} has no such variable: are they \
                 another architecture's?"
            ),
        ));
    }
    for (var, tensor) in updates {
        var.set(&tensor)?;
    }
    Ok(report)
}
