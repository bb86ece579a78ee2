//! # onnx (`convnets-onnx`)
//!
//! Every model of the workspace written as an ONNX file that ONNX Runtime, TensorRT, OpenVINO
//! or tract run: eval mode (batch norm as `BatchNormalization` or folded into the convolution,
//! dropout gone, auxiliary heads left out), a dynamic batch dimension, opset 17, the
//! preprocessing in the model's metadata.
//!
//! ## How: tracing, not one exporter per model
//!
//! [`export`] runs the model's eval-mode forward pass with the input as a candle `Var`, so
//! candle records how every result was computed (`Tensor::op`, public in the workspace's
//! patched candle-core), while [`backbone::trace`] records what backbone's custom ops
//! (convolution, batch norm, pooling, ReLU, LRN) mean. The graph is walked back from the
//! output: candle's ops become ONNX nodes (binary and unary ops, reshape, broadcast, narrow,
//! concatenation, matmul, reductions, ...), the custom ops become `Conv`,
//! `BatchNormalization`, `MaxPool`, `AveragePool`, `GlobalAveragePool`, `LRN`, `Relu`, and
//! everything that does not depend on the input (weights, statistics, tensors computed from
//! them) becomes an initializer holding its value. A model built from backbone's layers and
//! candle's tensor ops exports without code of its own.
//!
//! The forward pass is traced at two batch sizes: the dims that differ follow the batch, and
//! are written batch-agnostic (`Reshape` with `-1`, `Expand` with `1`). A constant that
//! differs between the two traces depends on the input while cut from the graph: an error.
//! An op that cannot be written is an error naming the op, the layer and why.
//!
//! The file goes through [`check`] (definitions before use, unique names, initializer sizes,
//! known ops and their input counts, typed inputs and outputs, opset) before it is written.
//! The messages are `onnx-protobuf`'s (generated from ONNX's `onnx.proto` for rust-protobuf 3).
//!
//! ## Tested
//!
//! Every family's smallest variant runs in tract (a pure-Rust ONNX runtime) at batch sizes 1
//! and 4 within 1e-5 relative of our logits (`tests/export.rs`); every catalogue variant at its
//! full size does too, on demand (`tests/full_size.rs`, which also writes the files for
//! `scripts/onnx_ort_check.py` to run them in ONNX Runtime). The channel-boosted models' bilinear
//! resize is ONNX `Resize` (`linear`, `half_pixel`), which ONNX Runtime computes as we do; tract
//! 0.21 does not clamp its first source coordinate and differs by up to ~1e-3.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = convnets::create_model("lenet5", &convnets::CreateOptions::default())?;
//! let options = onnx::ExportOptions::default();
//! let proto = onnx::export(model.net.as_ref(), &options)?;
//! let dir = tempfile::tempdir()?;
//! onnx::save(&proto, &dir.path().join("lenet5.onnx"))?;
//! # Ok(()) }
//! ```

mod check;
mod graph;
mod lower;
mod proto;

pub use check::{check, MIN_OPSET};
pub use onnx_protobuf::ModelProto;

use backbone::Backbone;
use candle_core::{DType, Device, Tensor, Var};
use onnx_protobuf::{GraphProto, OperatorSetIdProto, StringStringEntryProto};
use protobuf::{Message, MessageField};
use std::path::{Path, PathBuf};

/// What can go wrong while exporting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op of the model has no ONNX form here.
    #[error("cannot export the op `{op}` of layer `{layer}` (or the nearest named layer before it): {why}")]
    Layer {
        /// The layer (its variable path), or the nearest named layer before the op.
        layer: String,
        /// The op (candle's name, or the custom op's).
        op: String,
        /// Why.
        why: String,
    },
    /// Something the exporter does not handle (a dtype, ...).
    #[error("cannot export: {0}")]
    Unsupported(String),
    /// The traced graph is not one the exporter can write.
    #[error("cannot export: {0}")]
    Trace(String),
    /// The model failed the checker (a bug of the exporter: please report it).
    #[error("the exported model fails the ONNX checker: {0}")]
    Check(String),
    /// An error of the current op, given a layer by the caller.
    #[error("{0}")]
    Why(String),
    /// The model's forward pass failed.
    #[error(transparent)]
    Model(#[from] backbone::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The protobuf encoding failed.
    #[error("encoding the ONNX model: {0}")]
    Encode(#[from] protobuf::Error),
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The exporter's result.
pub type Result<T> = std::result::Result<T, Error>;

/// What the graph computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// `forward_t` in eval mode: the logits, graph output `logits`.
    #[default]
    Logits,
    /// `forward_features`: the last unpooled feature map, graph output `features`.
    Features,
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Logits or features.
    pub output: Output,
    /// The `(height, width)` of the input; `None`: the model's fixed size, else its default.
    pub input_size: Option<(usize, usize)>,
    /// Key/value pairs written into the model's `metadata_props` ([`Metadata::props`]).
    pub metadata: Vec<(String, String)>,
    /// The default-domain opset (17 or later).
    pub opset: i64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            output: Output::Logits,
            input_size: None,
            metadata: Vec::new(),
            opset: MIN_OPSET,
        }
    }
}

/// The batch sizes of the two traces.
const BATCHES: [usize; 2] = [2, 3];

/// `model` (in eval mode) as an ONNX model, checked by [`check`].
pub fn export(model: &dyn Backbone, options: &ExportOptions) -> Result<ModelProto> {
    if options.opset < MIN_OPSET {
        return Err(Error::Unsupported(format!(
            "opset {}, the exporter writes {MIN_OPSET} or later",
            options.opset
        )));
    }
    let spec = model.input_spec();
    let (h, w) = options
        .input_size
        .or(spec.fixed_size)
        .unwrap_or(spec.default_size);
    let traced = |batch: usize, seed: u64| -> Result<graph::Graph> {
        let x = Var::from_tensor(&sample((batch, spec.channels, h, w), seed)?)?;
        let x = x.as_tensor();
        // Every op recorded, whether its arguments are variables or plain tensors (weights
        // read from a file): a bias broadcast over the batch is then an `Expand` of the bias,
        // not a constant of the traced batch's shape.
        let (out, trace) = candle_core::op::record_all_ops(|| {
            backbone::trace::record_ops(|| match options.output {
                Output::Logits => model.forward_t(x, false),
                Output::Features => model.forward_features(x, false),
            })
        });
        graph::Graph::build(x, &out?, &trace)
    };
    let a = traced(BATCHES[0], 1)?;
    let b = traced(BATCHES[1], 2)?;
    let output = match options.output {
        Output::Logits => "logits",
        Output::Features => "features",
    };
    let lowered = lower::lower(&a, &b, output)?;

    let mut graph = GraphProto::new();
    graph.name = model.name().to_string();
    graph.node = lowered.nodes;
    graph.initializer = lowered.initializers;
    graph.input = vec![proto::value_info(
        "input",
        proto::elem_type(DType::F32)?,
        &lowered.input_dims,
    )];
    graph.output = vec![proto::value_info(
        &lowered.output,
        proto::elem_type(a.tensor(a.output).dtype())?,
        &lowered.output_dims,
    )];
    let mut opset = OperatorSetIdProto::new();
    opset.version = options.opset;
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.opset_import = vec![opset];
    m.producer_name = "convnets".into();
    m.producer_version = env!("CARGO_PKG_VERSION").into();
    m.graph = MessageField::some(graph);
    m.metadata_props = options
        .metadata
        .iter()
        .map(|(k, v)| {
            let mut e = StringStringEntryProto::new();
            e.key = k.clone();
            e.value = v.clone();
            e
        })
        .collect();
    check(&m)?;
    Ok(m)
}

/// The model's bytes, after [`check`].
pub fn encode(model: &ModelProto) -> Result<Vec<u8>> {
    check(model)?;
    Ok(model.write_to_bytes()?)
}

/// Writes the model to `path` (atomically, after [`check`]).
pub fn save(model: &ModelProto, path: &Path) -> Result<()> {
    let bytes = encode(model)?;
    backbone::io::write_atomic(path, &bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The preprocessing a model's inputs need, written into its `metadata_props`.
#[derive(Debug, Clone)]
pub struct Metadata<'a> {
    /// The model's name (`resnet50`).
    pub model: &'a str,
    /// `(channels, height, width)` of the exported input.
    pub input_size: (usize, usize, usize),
    /// Per-channel mean of the normalisation.
    pub mean: &'a [f32],
    /// Per-channel standard deviation.
    pub std: &'a [f32],
    /// Centre-crop fraction (resize to `size / crop_pct`, then crop).
    pub crop_pct: f64,
    /// Resize interpolation (`bilinear`, `bicubic`, `nearest`).
    pub interpolation: &'a str,
    /// The class names, by index.
    pub class_names: &'a [String],
}

impl Metadata<'_> {
    /// Key/value pairs: `model`, `output` (`logits` or `features`), `input_size` (`[C, H, W]`),
    /// `mean`, `std`, `class_names` (JSON arrays), `crop_pct`, `interpolation`.
    pub fn props(&self, output: Output) -> Vec<(String, String)> {
        let floats = |v: &[f32]| {
            format!(
                "[{}]",
                v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
            )
        };
        let names = self
            .class_names
            .iter()
            .map(|n| format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let (c, h, w) = self.input_size;
        vec![
            ("model".into(), self.model.into()),
            (
                "output".into(),
                match output {
                    Output::Logits => "logits".into(),
                    Output::Features => "features".into(),
                },
            ),
            ("input_size".into(), format!("[{c}, {h}, {w}]")),
            ("mean".into(), floats(self.mean)),
            ("std".into(), floats(self.std)),
            ("crop_pct".into(), self.crop_pct.to_string()),
            ("interpolation".into(), self.interpolation.into()),
            ("class_names".into(), format!("[{names}]")),
        ]
    }
}

/// A fixed pseudo-random batch in `[-1, 1)` (a 64-bit LCG, so traces are reproducible).
fn sample(dims: (usize, usize, usize, usize), seed: u64) -> Result<Tensor> {
    let n = dims.0 * dims.1 * dims.2 * dims.3;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Ok(Tensor::from_vec(data, dims, &Device::Cpu)?)
}
