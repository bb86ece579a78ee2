//! `cargo xtask export`: a model and its weights as an ONNX file (`convnets::onnx`), with the
//! preprocessing its inputs need in the file's metadata.

use crate::finetune::{label, load_for_inference, WeightsSource};
use anyhow::{Context, Result};
use convnets::onnx::{self, ExportOptions, Metadata, Output};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    source: WeightsSource,
    /// The ONNX file to write.
    #[arg(long)]
    out: PathBuf,
    /// Export `forward_features` (the last unpooled feature map) instead of the logits.
    #[arg(long)]
    features: bool,
    /// The default-domain opset (17 or later).
    #[arg(long, default_value_t = onnx::MIN_OPSET)]
    opset: i64,
}

pub fn run(args: ExportArgs) -> Result<()> {
    // Auxiliary heads left out: the file computes what eval mode computes.
    let m = load_for_inference(&args.source, false, 1)?;
    let (c, h, w) = m.config.input_size;
    let class_names: Vec<String> = (0..m.classes).map(|i| label(&m.config, m.classes, i)).collect();
    let output = if args.features {
        Output::Features
    } else {
        Output::Logits
    };
    let metadata = Metadata {
        model: m.model.variant.name,
        input_size: (c, h, w),
        mean: &m.config.mean,
        std: &m.config.std,
        crop_pct: m.config.crop_pct,
        interpolation: m.config.interpolation.as_str(),
        class_names: &class_names,
    };
    let options = ExportOptions {
        output,
        input_size: Some((h, w)),
        metadata: metadata.props(output),
        opset: args.opset,
    };
    let proto = onnx::export(m.model.net.as_ref(), &options)
        .with_context(|| format!("exporting {}", m.model.variant.name))?;
    onnx::save(&proto, &args.out)?;
    let graph = proto.graph.as_ref();
    println!(
        "{} ({}, input [batch, {c}, {h}, {w}]) written to {}: {} nodes, {} initializers, opset {}",
        m.model.variant.name,
        if args.features { "features" } else { "logits" },
        args.out.display(),
        graph.map_or(0, |g| g.node.len()),
        graph.map_or(0, |g| g.initializer.len()),
        args.opset
    );
    Ok(())
}
