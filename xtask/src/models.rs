//! The model registry: every variant name the command line accepts.

use anyhow::{bail, Result};
use backbone::Backbone;
use candle_nn::VarBuilder;

/// A variant the command line can build.
pub struct ModelEntry {
    /// The name users type (`lenet5`).
    pub name: &'static str,
    /// Other accepted names (`lenet`).
    pub aliases: &'static [&'static str],
    /// One line for `--help` and error messages.
    pub description: &'static str,
    /// Builds the variant with `num_classes` classes and `in_channels` input channels.
    pub build: fn(usize, usize, VarBuilder) -> backbone::Result<Box<dyn Backbone>>,
}

fn lenet(
    config: lenet::LeNetConfig,
    classes: usize,
    channels: usize,
    vb: VarBuilder,
) -> backbone::Result<Box<dyn Backbone>> {
    let config = config.with_classes(classes).with_in_channels(channels);
    Ok(Box::new(lenet::LeNet::new(&config, vb)?))
}

/// Every variant, in the order `--help` lists them.
pub const MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "lenet5",
        aliases: &["lenet"],
        description: "LeNet-5, ReLU + average pooling (61,706 parameters, 1x32x32)",
        build: |k, c, vb| lenet(lenet::LeNetConfig::lenet5(), k, c, vb),
    },
    ModelEntry {
        name: "lenet5_tanh",
        aliases: &["lenet-tanh"],
        description: "LeNet-5 with the paper's tanh + average subsampling",
        build: |k, c, vb| lenet(lenet::LeNetConfig::lenet5_tanh(), k, c, vb),
    },
    ModelEntry {
        name: "lenet5_max",
        aliases: &["lenet-max"],
        description: "LeNet-5 with ReLU + max pooling",
        build: |k, c, vb| lenet(lenet::LeNetConfig::lenet5_max(), k, c, vb),
    },
];

/// The entry for `name` (or an alias); an unknown name lists the valid ones.
pub fn find(name: &str) -> Result<&'static ModelEntry> {
    let wanted = name.to_ascii_lowercase().replace('-', "_");
    let matches = |n: &str| n.to_ascii_lowercase().replace('-', "_") == wanted;
    match MODELS
        .iter()
        .find(|m| matches(m.name) || m.aliases.iter().any(|a| matches(a)))
    {
        Some(entry) => Ok(entry),
        None => bail!("unknown model `{name}`; valid names:\n{}", list()),
    }
}

/// One line per variant: name, aliases, description.
pub fn list() -> String {
    MODELS
        .iter()
        .map(|m| {
            let aliases = if m.aliases.is_empty() {
                String::new()
            } else {
                format!(" (also {})", m.aliases.join(", "))
            };
            format!("  {:<14} {}{}", m.name, m.description, aliases)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
