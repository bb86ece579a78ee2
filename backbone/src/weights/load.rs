//! Pretrained tensors into a trainable model's variables: every tensor is copied into the
//! variable of the same name, except the classifier head when its shape differs (another class
//! count) or the file lacks it, which keeps its fresh initialisation (timm's `load_pretrained`
//! with another `num_classes`). [`LoadReport`] says which tensors were loaded, which
//! initialised and why. [`crate::catalogue::Variant::load_trainable`] is the way in; this is
//! its copy step.

use super::is_counter;
use crate::init::is_under;
use crate::{Error, Result};
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What [`load_into`] did with each variable of the model.
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

fn is_head(name: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| is_under(name, p))
}

/// Copies `tensors` (read from `file`, in the model's own names) into the variables of `varmap` (converting f16/bf16 to the
/// variable's dtype), keeping the fresh initialisation of head variables (names under one of
/// `head_prefixes`) whose tensor is missing or of another shape.
///
/// Fails, naming the file and the tensor, when a non-head variable has no tensor or a tensor of
/// another shape (expected and actual shapes in the message), or when the file holds a
/// non-head tensor the model has no variable for (the wrong architecture). Nothing is changed
/// unless every variable can be set.
///
/// `file` is named in the report and in errors.
pub fn load_into(
    varmap: &VarMap,
    mut tensors: HashMap<String, Tensor>,
    file: &Path,
    head_prefixes: &[String],
) -> Result<LoadReport> {
    let weights_error = |tensor: &str, problem: String| Error::Weights {
        file: Some(file.to_path_buf()),
        tensor: tensor.to_string(),
        problem,
    };
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
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
