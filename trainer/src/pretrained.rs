//! Pretrained weights into a trainable model: every tensor of a safetensors file is copied into
//! the variable of the same name, except the classifier head when its shape differs (another
//! class count), which keeps its fresh initialisation. [`LoadReport`] says which tensors were
//! loaded, which initialised and why.
//!
//! Also the variable partition used to freeze a backbone: [`head_vars`] and [`backbone_vars`],
//! by the model's [`Backbone::head_prefix`] and [`Backbone::aux_head_prefixes`].

use crate::{Error, Result};
use backbone::weights::{is_counter, ReadOptions};
use backbone::Backbone;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What [`load_pretrained`] did with each variable of the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// The weights file.
    pub file: PathBuf,
    /// Variables set from the file, sorted.
    pub loaded: Vec<String>,
    /// Head variables left at their fresh initialisation, with the reason (the file's shape
    /// differs, or the file has no such tensor), sorted.
    pub initialised: Vec<(String, String)>,
    /// Head tensors of the file that no variable took (the old head of another shape is
    /// listed under `initialised`; these are extra ones, e.g. an auxiliary head the model
    /// does not have), sorted.
    pub ignored: Vec<String>,
}

impl LoadReport {
    /// The loaded tensors grouped by their first name component, in order of appearance:
    /// `[("conv1", 1), ("bn1", 4), ("layer1", 30), ...]`.
    pub fn loaded_by_module(&self) -> Vec<(String, usize)> {
        let mut groups: Vec<(String, usize)> = Vec::new();
        for name in &self.loaded {
            let module = name.split('.').next().unwrap_or(name);
            match groups.iter_mut().find(|(m, _)| m == module) {
                Some((_, count)) => *count += 1,
                None => groups.push((module.to_string(), 1)),
            }
        }
        groups
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loaded {} tensors from {}",
            self.loaded.len(),
            self.file.display()
        )?;
        let groups: Vec<String> = self
            .loaded_by_module()
            .iter()
            .map(|(module, count)| format!("{module} ({count})"))
            .collect();
        if !groups.is_empty() {
            write!(f, ": {}", groups.join(", "))?;
        }
        for (name, why) in &self.initialised {
            write!(f, "\n  initialised {name}: {why}")?;
        }
        for name in &self.ignored {
            write!(f, "\n  ignored {name} (a head tensor the model does not have)")?;
        }
        Ok(())
    }
}

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

/// Copies the tensors of `file` into the variables of `varmap` (converting f16/bf16 to the
/// variable's dtype), keeping the fresh initialisation of head variables (names under one of
/// `head_prefixes`) whose tensor is missing or of another shape.
///
/// Fails, naming the file and the tensor, when a non-head variable has no tensor or a tensor of
/// another shape (expected and actual shapes in the message), or when the file holds a
/// non-head tensor the model has no variable for (the wrong architecture). Nothing is changed
/// unless every variable can be set.
pub fn load_pretrained(varmap: &VarMap, file: &Path, head_prefixes: &[String]) -> Result<LoadReport> {
    let tensors = read_safetensors(file)?;
    load_pretrained_tensors(varmap, tensors, file, head_prefixes)
}

/// [`load_pretrained`] from tensors already read; `file` is named in reports and errors.
pub fn load_pretrained_tensors(
    varmap: &VarMap,
    mut tensors: HashMap<String, Tensor>,
    file: &Path,
    head_prefixes: &[String],
) -> Result<LoadReport> {
    let weights_error = |tensor: &str, problem: String| {
        Error::Model(backbone::Error::Weights {
            file: Some(file.to_path_buf()),
            tensor: tensor.to_string(),
            problem,
        })
    };
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::config("the VarMap lock is poisoned (a thread panicked while holding it)"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut report = LoadReport {
        file: file.to_path_buf(),
        ..LoadReport::default()
    };
    let mut updates: Vec<(&Var, Tensor)> = Vec::with_capacity(names.len());
    let mut missing: Vec<(String, Vec<usize>)> = Vec::new();
    for name in names {
        let var = &data[name];
        let head = is_head(name, head_prefixes);
        match tensors.remove(name.as_str()) {
            Some(tensor) if var.dtype().is_float() && !tensor.dtype().is_float() => {
                return Err(weights_error(
                    name,
                    format!(
                        "expected a float dtype for a {:?} variable, found {:?}",
                        var.dtype(),
                        tensor.dtype()
                    ),
                ))
            }
            Some(tensor) if tensor.dims() == var.dims() => {
                let tensor = tensor.to_dtype(var.dtype())?.to_device(var.device())?;
                updates.push((var, tensor));
                report.loaded.push(name.clone());
            }
            Some(tensor) if head => report.initialised.push((
                name.clone(),
                format!(
                    "the file's tensor has shape {:?}, the new head {:?}",
                    tensor.dims(),
                    var.dims()
                ),
            )),
            Some(tensor) => {
                return Err(weights_error(
                    name,
                    format!("expected shape {:?}, found {:?}", var.dims(), tensor.dims()),
                ))
            }
            None if head => report
                .initialised
                .push((name.clone(), "not in the file".to_string())),
            None => missing.push((name.clone(), var.dims().to_vec())),
        }
    }
    let mut extra: Vec<String> = tensors.into_keys().filter(|k| !is_counter(k)).collect();
    extra.sort();
    let (head_extra, extra): (Vec<String>, Vec<String>) =
        extra.into_iter().partition(|name| is_head(name, head_prefixes));
    report.ignored = head_extra;
    let hint = "is it the weights of another architecture?";
    match (missing.first(), extra.first()) {
        (Some((name, dims)), Some(unexpected)) => {
            return Err(weights_error(
                name,
                format!(
                    "missing (the model needs a tensor of shape {dims:?}); {} of the model's tensors are \
                     missing and the file has {} tensors the model lacks, such as `{unexpected}`: {hint}",
                    missing.len(),
                    extra.len()
                ),
            ))
        }
        (Some((name, dims)), None) => {
            return Err(weights_error(
                name,
                format!(
                    "missing (the model needs a tensor of shape {dims:?}; {} of the model's tensors are \
                     missing from the file)",
                    missing.len()
                ),
            ))
        }
        (None, Some(unexpected)) => {
            return Err(weights_error(
                unexpected,
                format!("present in the file but the model has no such variable: {hint}"),
            ))
        }
        (None, None) => {}
    }
    for (var, tensor) in updates {
        var.set(&tensor)?;
    }
    Ok(report)
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
