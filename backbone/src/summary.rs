//! Model introspection: a per-layer table like torchinfo's.
//!
//! [`summarize`] runs one eval-mode forward pass on zeros of the given shape while a recorder
//! is active on the current thread; every layer that holds parameters or changes the shape of
//! the data (convolutions, linear layers, normalisation, pooling) reports one
//! [`LayerRecord`]. Element-wise layers that PyTorch runs in place (activations, dropout) and
//! views (flatten) are not listed. MACs count multiply-accumulates of convolutions and linear
//! layers, as torchinfo does.

use crate::{Backbone, Result};
use candle_core::{DType, Device, Tensor};
use std::cell::RefCell;
use std::fmt;

/// One row of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// The layer's variable path (`conv1`, `features.0`) or given name (`pool1`).
    pub name: String,
    /// The layer type (`Conv2d`, `Linear`, `AvgPool2d`, ...).
    pub kind: String,
    /// The input shape.
    pub input: Vec<usize>,
    /// The output shape.
    pub output: Vec<usize>,
    /// Trainable parameters (weights and biases; not running statistics).
    pub params: usize,
    /// Of which weights (everything but biases).
    pub weights: usize,
    /// Multiply-accumulate operations of this layer for the whole batch.
    pub macs: u64,
}

impl LayerRecord {
    /// A record with no parameters and no MACs (pooling and the like).
    pub fn shape_only(name: &str, kind: &str, input: &[usize], output: &[usize]) -> Self {
        Self {
            name: name.to_string(),
            kind: kind.to_string(),
            input: input.to_vec(),
            output: output.to_vec(),
            params: 0,
            weights: 0,
            macs: 0,
        }
    }

    /// Activation memory of the output, in elements.
    pub fn memory(&self) -> usize {
        self.output.iter().product()
    }
}

thread_local! {
    static RECORDER: RefCell<Option<Vec<LayerRecord>>> = const { RefCell::new(None) };
}

/// Whether a summary is being recorded on this thread.
pub fn is_recording() -> bool {
    RECORDER.with(|r| r.borrow().is_some())
}

/// Reports a layer to the active recorder; `make` only runs while a summary is recorded.
pub fn record(make: impl FnOnce() -> LayerRecord) {
    RECORDER.with(|r| {
        if let Some(records) = r.borrow_mut().as_mut() {
            records.push(make());
        }
    });
}

/// Runs `f` with a recorder on this thread and returns what it recorded.
pub fn record_layers<T>(f: impl FnOnce() -> T) -> (T, Vec<LayerRecord>) {
    struct Reset(Option<Vec<LayerRecord>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            RECORDER.with(|r| *r.borrow_mut() = previous);
        }
    }
    let previous = RECORDER.with(|r| r.borrow_mut().replace(Vec::new()));
    let reset = Reset(previous);
    let out = f();
    let records = RECORDER.with(|r| r.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (out, records)
}

/// A model's per-layer table.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The model's name.
    pub model: String,
    /// The input shape the table was computed for.
    pub input: Vec<usize>,
    /// One row per reported layer, in execution order.
    pub layers: Vec<LayerRecord>,
}

impl Summary {
    /// Total trainable parameters.
    pub fn total_params(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Total weights (parameters without biases).
    pub fn total_weights(&self) -> usize {
        self.layers.iter().map(|l| l.weights).sum()
    }

    /// Total multiply-accumulates for the batch.
    pub fn total_macs(&self) -> u64 {
        self.layers.iter().map(|l| l.macs).sum()
    }

    /// Total activation memory of the listed layers' outputs, in elements.
    pub fn total_memory(&self) -> usize {
        self.layers.iter().map(LayerRecord::memory).sum()
    }
}

/// Formats `n` with thousands separators: `61,706`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape_str(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers = [
            "Layer",
            "Type",
            "Output shape",
            "Params",
            "Weights",
            "Memory",
            "MACs",
        ];
        let rows: Vec<[String; 7]> = self
            .layers
            .iter()
            .map(|l| {
                [
                    l.name.clone(),
                    l.kind.clone(),
                    shape_str(&l.output),
                    thousands(l.params as u64),
                    thousands(l.weights as u64),
                    thousands(l.memory() as u64),
                    thousands(l.macs),
                ]
            })
            .collect();
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::ASCII_BORDERS_ONLY_CONDENSED)
            .set_header(headers);
        for row in rows {
            table.add_row(row);
        }
        // Names, types and shapes read left to right; counts line up on the right.
        for i in 3..headers.len() {
            if let Some(column) = table.column_mut(i) {
                column.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
        writeln!(f, "{} (input {})", self.model, shape_str(&self.input))?;
        writeln!(f, "{table}")?;
        let input_elems: usize = self.input.iter().product();
        writeln!(
            f,
            "Total params:        {}",
            thousands(self.total_params() as u64)
        )?;
        writeln!(
            f,
            "Total weights:       {} (without biases)",
            thousands(self.total_weights() as u64)
        )?;
        writeln!(f, "Total MACs:          {}", thousands(self.total_macs()))?;
        writeln!(
            f,
            "Input memory:        {} elements",
            thousands(input_elems as u64)
        )?;
        let mem = self.total_memory();
        writeln!(
            f,
            "Activation memory:   {} elements ({:.2} MB in f32, forward only)",
            thousands(mem as u64),
            mem as f64 * 4.0 / 1e6
        )
    }
}

/// Runs `model` in eval mode on zeros of `input` (e.g. `[1, 1, 32, 32]`) and returns its
/// per-layer table.
pub fn summarize(model: &dyn Backbone, input: &[usize], device: &Device) -> Result<Summary> {
    let xs = Tensor::zeros(input, DType::F32, device)?;
    let (out, layers) = record_layers(|| model.forward_t(&xs, false));
    out?;
    Ok(Summary {
        model: model.name().to_string(),
        input: input.to_vec(),
        layers,
    })
}
