//! Loading weights from safetensors files with errors that name the file, the tensor, the
//! expected and the actual shape.
//!
//! [`Weights`] is a [`candle_nn::VarBuilder`] backend over the tensors of a file. A model's
//! constructor asks it for each variable by name and shape; a missing or mis-shaped tensor is
//! remembered as a typed [`Error::Weights`] that [`Weights::build`] returns instead of candle's
//! generic message. Tensors stored in f16/bf16 are converted to the model's dtype.
//!
//! Files are read by the validated reader of [`read`] (also used by `trainer` for checkpoints
//! and optimizer state): malformed files, integer tensors where weights belong and NaN or
//! infinite values are errors naming the file and the tensor.

pub mod load;
pub mod read;

pub use load::{load_into, LoadReport};

pub use read::{
    is_counter, json_kind, parse_safetensors, read_safetensors, read_safetensors_from, DTypeRule, ReadOptions,
};

use crate::{Error, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The tensors of a weights file, ready to build a model from.
#[derive(Clone)]
pub struct Weights {
    inner: Arc<Inner>,
}

struct Inner {
    file: Option<PathBuf>,
    tensors: HashMap<String, Tensor>,
    used: Mutex<BTreeSet<String>>,
    failure: Mutex<Option<Error>>,
}

impl Weights {
    /// Reads a `.safetensors` file onto `device` with [`read_safetensors`] and
    /// [`ReadOptions::weights`]: every tensor but `num_batches_tracked` buffers must be float
    /// (F16, BF16, F32 or F64) and finite.
    pub fn from_file(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let tensors = read_safetensors(path, device, &ReadOptions::weights())?;
        Ok(Self::from_tensors(tensors, Some(path.to_path_buf())))
    }

    /// Wraps tensors already in memory (a remapped state dict, a checkpoint); `file` is
    /// named in error messages.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, file: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                file,
                tensors,
                used: Mutex::new(BTreeSet::new()),
                failure: Mutex::new(None),
            }),
        }
    }

    /// The tensors, by name.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.inner.tensors
    }

    /// The file the tensors come from.
    pub fn file(&self) -> Option<&Path> {
        self.inner.file.as_deref()
    }

    /// A [`VarBuilder`] reading these tensors as `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Builds a model with `build`, returning the typed error of the first missing or
    /// mis-shaped tensor if the constructor failed on one. When `strict`, tensors of the
    /// file that the model did not use are an error too (PyTorch's `strict=True`), except
    /// `num_batches_tracked` buffers.
    pub fn build<M>(
        &self,
        dtype: DType,
        device: &Device,
        strict: bool,
        build: impl FnOnce(VarBuilder<'static>) -> Result<M>,
    ) -> Result<M> {
        let model = match build(self.var_builder(dtype, device)) {
            Ok(model) => model,
            Err(e) => return Err(self.take_failure().unwrap_or(e)),
        };
        if strict {
            if let Some(name) = self.unused().into_iter().next() {
                return Err(self.error(
                    &name,
                    "present in the file but not used by the model (unexpected key)",
                ));
            }
        }
        Ok(model)
    }

    /// Names of the tensors no variable was read from so far, sorted, without
    /// `num_batches_tracked` buffers.
    pub fn unused(&self) -> Vec<String> {
        let used = self.inner.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut unused: Vec<String> = self
            .inner
            .tensors
            .keys()
            .filter(|k| !used.contains(*k) && !is_counter(k))
            .cloned()
            .collect();
        unused.sort();
        unused
    }

    fn take_failure(&self) -> Option<Error> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn error(&self, tensor: &str, problem: impl Into<String>) -> Error {
        Error::Weights {
            file: self.inner.file.clone(),
            tensor: tensor.to_string(),
            problem: problem.into(),
        }
    }

    /// Remembers the first failure and turns it into a candle error for the builder.
    fn fail(&self, error: Error) -> candle_core::Error {
        let message = error.to_string();
        let mut slot = self.inner.failure.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
        candle_core::Error::Msg(message)
    }

    fn fetch(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let Some(tensor) = self.inner.tensors.get(name) else {
            let total = self.inner.tensors.len();
            return Err(self.fail(self.error(name, format!("missing (the file has {total} tensors)"))));
        };
        if dtype.is_float() && !tensor.dtype().is_float() {
            let problem = format!(
                "expected a float dtype for a {dtype:?} variable, found {:?}",
                tensor.dtype()
            );
            return Err(self.fail(self.error(name, problem)));
        }
        self.inner
            .used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        tensor.to_dtype(dtype)?.to_device(dev)
    }
}

impl SimpleBackend for Weights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if !self.inner.tensors.contains_key(name) {
            let total = self.inner.tensors.len();
            let problem = format!(
                "missing (the model needs a tensor of shape {:?}; the file has {total} tensors)",
                shape.dims()
            );
            return Err(self.fail(self.error(name, problem)));
        }
        let tensor = self.fetch(name, dtype, dev)?;
        if tensor.shape() != &shape {
            let problem = format!("expected shape {:?}, found {:?}", shape.dims(), tensor.dims());
            return Err(self.fail(self.error(name, problem)));
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.fetch(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.tensors.contains_key(name)
    }
}
