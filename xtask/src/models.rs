//! The command line's view of the model catalogue: names come from the architecture crates'
//! catalogues through the `convnets` facade; this module only words the errors and the list.

use anyhow::{anyhow, Result};
use backbone::catalogue::Variant;
use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::Device;

/// A variant of the catalogue.
pub type ModelEntry = Variant;

/// The variant called `name` (or an alias, or a published checkpoint's tagged name such as
/// `resnet50.a1_in1k`); an unknown name lists the valid ones, an unknown tag the variant's.
pub fn find(name: &str) -> Result<&'static Variant> {
    if name.contains('.') && convnets::find_model(name.split('.').next().unwrap_or(name)).is_ok() {
        return Ok(convnets::find_checkpoint(name)?.0);
    }
    convnets::find_model(name).map_err(|_| {
        if let Some(hint) = path_hint(name) {
            return anyhow!("{hint}");
        }
        anyhow!(
            "unknown model `{name}`; valid names (families: {}):\n{}",
            convnets::families().join(", "),
            list()
        )
    })
}

/// What to say when a model name is a path to weights (a training run's folder or a
/// `.safetensors` file): name the model and pass the path with `--weights`, the model taken
/// from the folder's `config.json` where it says.
fn path_hint(name: &str) -> Option<String> {
    let path = std::path::Path::new(name);
    if !path.exists() {
        return None;
    }
    let config = if path.is_dir() {
        path.join("config.json")
    } else {
        path.with_file_name("config.json")
    };
    let architecture = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("architecture").and_then(|a| a.as_str()).map(str::to_string));
    let model = architecture.as_deref().unwrap_or("<model>");
    Some(format!(
        "`{name}` is a path, not a model name: name the model and give the weights with --weights, e.g. `{model} --weights {name}`{}",
        if architecture.is_some() { " (its config.json's architecture)" } else { "" }
    ))
}

/// The variants named by `names`: each a variant, a family (`resnet`) or `all`.
pub fn select(names: &[String]) -> Result<Vec<&'static Variant>> {
    for name in names {
        let known = name.eq_ignore_ascii_case("all")
            || convnets::families().iter().any(|f| f.eq_ignore_ascii_case(name));
        if !known {
            find(name)?;
        }
    }
    Ok(convnets::select_models(names)?)
}

/// Builds `entry` fresh through `convnets::create_model` (the one way in) with `classes`
/// classes and `channels` input channels (auxiliary heads on), its weights from `seed`; returns
/// the model and its variables.
pub fn build(
    entry: &Variant,
    classes: usize,
    channels: usize,
    seed: u64,
    device: &Device,
) -> backbone::Result<(Box<dyn Backbone>, SeededVarMap)> {
    build_with_dtype(entry, classes, channels, seed, candle_core::DType::F32, device)
}

/// [`build`] with the variables in `dtype`.
pub fn build_with_dtype(
    entry: &Variant,
    classes: usize,
    channels: usize,
    seed: u64,
    dtype: candle_core::DType,
    device: &Device,
) -> backbone::Result<(Box<dyn Backbone>, SeededVarMap)> {
    let model = convnets::create_model(
        entry.name,
        &convnets::CreateOptions {
            num_classes: Some(classes),
            in_channels: Some(channels),
            seed,
            dtype,
            device: device.clone(),
            ..Default::default()
        },
    )?;
    let vars = model
        .vars
        .ok_or_else(|| backbone::Error::config("a fresh model without variables"))?;
    Ok((model.net, vars))
}

/// One line per variant: name, parameters, MACs and input at the default size, description,
/// aliases.
pub fn list() -> String {
    // The longest name sets the first column (`mobilenetv3_large_100`).
    let width = convnets::catalogue()
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(0);
    convnets::catalogue()
        .iter()
        .map(|m| {
            let aliases = if m.aliases.is_empty() {
                String::new()
            } else {
                format!(" (also {})", m.aliases.join(", "))
            };
            let (c, h, w) = m.preprocessing.input_size;
            let macs = if m.macs >= 100_000_000 {
                format!("{:.2} GMACs", m.macs as f64 / 1e9)
            } else {
                format!("{:.2} MMACs", m.macs as f64 / 1e6)
            };
            format!(
                "  {:<width$} {:>11} params {:>11} {:>9}  {}{}",
                m.name,
                backbone::summary::thousands(m.params),
                macs,
                format!("{c}x{h}x{w}"),
                m.description,
                aliases
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
