//! Checkpoints as safetensors files, written atomically.
//!
//! [`save_checkpoint`] serialises everything in memory first, writes it to a hidden temporary
//! file in the destination directory, flushes it to disk and renames it over the destination.
//! A crash or an error at any point leaves either the previous checkpoint or the new one, never
//! a partial file, and the temporary file is removed on error. The files are plain safetensors,
//! readable by `safetensors.torch.load_file` in Python.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

pub use backbone::weights::{DTypeRule, ReadOptions};

use crate::error::{Error, Result};

/// Writes `tensors` to `path` as a safetensors file, atomically (see the module docs), creating
/// the parent directories. Tensors may live on any device; they are copied to the host.
///
/// Fails with [`Error::Checkpoint`] for a path without a file name or a tensor whose dtype
/// safetensors cannot store (the sub-byte float formats), and with [`Error::Io`] when a
/// directory or the file cannot be written; the previous content of `path`, if any, is then
/// left untouched.
pub fn save_checkpoint(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::checkpoint(path, "the path has no file name"));
    }
    let mut host = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        if matches!(
            tensor.dtype(),
            DType::F6E2M3 | DType::F6E3M2 | DType::F4 | DType::F8E8M0
        ) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor `{name}` has dtype {:?}, which checkpoints cannot store",
                    tensor.dtype()
                ),
            ));
        }
        // On the host and contiguous, candle's safetensors view cannot fail.
        let tensor = tensor.detach().to_device(&Device::Cpu)?.contiguous()?;
        host.push((name.as_str(), tensor));
    }
    let bytes = safetensors::tensor::serialize(host, None)
        .map_err(|e| Error::checkpoint(path, format!("cannot serialise: {e}")))?;

    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` whole or not at all ([`backbone::io::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    backbone::io::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}

/// Reads a safetensors checkpoint into tensors on `device` with the validated reader of
/// `backbone` ([`backbone::weights::read_safetensors_from`]) and [`ReadOptions::any`]: tensors of
/// any dtype candle can load (integer counters included), float ones finite. Errors name the
/// file: [`Error::Io`] when it cannot be opened (missing, ...), [`Error::Checkpoint`] when it is
/// not a complete safetensors file (truncated, corrupt) or a tensor is invalid (naming it).
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    load_checkpoint_with(path, device, &ReadOptions::any())
}

/// [`load_checkpoint`] with other requirements on the tensors: [`ReadOptions::float`] for
/// optimizer state (every entry float and finite), [`ReadOptions::weights`] for model weights.
pub fn load_checkpoint_with(
    path: &Path,
    device: &Device,
    options: &ReadOptions,
) -> Result<HashMap<String, Tensor>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    backbone::weights::read_safetensors_from(file, path, device, options)
        .map_err(|e| checkpoint_error(path, e))
}

/// An [`Error::Checkpoint`] about `path` from an error of the safetensors reader (which names the
/// file too: the problem is kept without it).
pub(crate) fn checkpoint_error(path: &Path, error: backbone::Error) -> Error {
    match error {
        backbone::Error::Weights { tensor, problem, .. } => {
            Error::checkpoint(path, format!("tensor `{tensor}`: {problem}"))
        }
        backbone::Error::WeightsFile { problem, .. } => Error::checkpoint(path, problem),
        other => Error::checkpoint(path, other.to_string()),
    }
}

/// Saves every variable of `varmap` under its name with [`save_checkpoint`].
pub fn save_varmap(path: &Path, varmap: &VarMap) -> Result<()> {
    let tensors: HashMap<String, Tensor> = {
        let data = varmap.data().lock().map_err(|_| poisoned())?;
        data.iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
            .collect()
    };
    save_checkpoint(path, &tensors)
}

/// Sets every variable of `varmap` to the tensor of the same name in the checkpoint at `path`
/// (converted to the variable's dtype and device). Fails, naming the file, when a variable has
/// no tensor, one of another shape, or an integer tensor for a float variable; tensors with no
/// variable are ignored. Nothing is changed unless every variable can be set.
pub fn load_varmap(path: &Path, varmap: &VarMap) -> Result<()> {
    apply_to_varmap(path, load_checkpoint(path, &Device::Cpu)?, varmap)
}

/// Sets every variable of `varmap` to the tensor of the same name in `loaded` (read from the
/// checkpoint `path`, named in errors), as [`load_varmap`] does.
pub fn apply_to_varmap(path: &Path, mut loaded: HashMap<String, Tensor>, varmap: &VarMap) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| poisoned())?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut updates = Vec::with_capacity(names.len());
    for name in names {
        let var = &data[name];
        let tensor = loaded.remove(name.as_str()).ok_or_else(|| {
            Error::checkpoint(path, format!("no tensor `{name}` for the variable of that name"))
        })?;
        if var.dtype().is_float() && !tensor.dtype().is_float() {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor `{name}`: expected a float dtype for a {:?} variable, found {:?}",
                    var.dtype(),
                    tensor.dtype()
                ),
            ));
        }
        if tensor.dims() != var.dims() {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor `{name}` has shape {:?} but the variable has shape {:?}",
                    tensor.dims(),
                    var.dims()
                ),
            ));
        }
        updates.push((var, tensor.to_dtype(var.dtype())?.to_device(var.device())?));
    }
    for (var, tensor) in updates {
        var.set(&tensor)?;
    }
    Ok(())
}

fn poisoned() -> Error {
    Error::config("the VarMap lock is poisoned (a thread panicked while holding it)")
}

/// Writes the model as `dir/model.safetensors` (every variable, state-dict names) and
/// `dir/config.json` (timm's layout), so `dir` loads back as a weights reference.
pub fn export(dir: &Path, varmap: &VarMap, config: &hub::PretrainedConfig) -> Result<PathBuf> {
    let file = dir.join("model.safetensors");
    save_varmap(&file, varmap)?;
    config.write(dir.join("config.json"))?;
    Ok(file)
}
