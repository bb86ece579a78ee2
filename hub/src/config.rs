//! [`PretrainedConfig`]: timm's `config.json` (architecture, classes, label names and the
//! `pretrained_cfg` preprocessing), and [`Interpolation`].

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::{Error, Result};

/// How resizing computes new pixels (timm's `interpolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    /// PyTorch's `nearest`: output pixel `o` takes input pixel `floor(o * in / out)`.
    Nearest,
    /// Antialiased bilinear (triangle filter).
    #[default]
    Bilinear,
    /// Antialiased bicubic (Keys cubic, `a = -0.5`).
    Bicubic,
}

impl Interpolation {
    /// The name timm uses: `bilinear`, `bicubic` or `nearest`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
            Interpolation::Nearest => "nearest",
        }
    }

    /// Parses a timm name (case-insensitive); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "bilinear" => Some(Interpolation::Bilinear),
            "bicubic" => Some(Interpolation::Bicubic),
            "nearest" => Some(Interpolation::Nearest),
            _ => None,
        }
    }
}

impl fmt::Display for Interpolation {
    /// The timm name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ImageNet's per-channel mean and standard deviation (timm's `IMAGENET_DEFAULT_MEAN` / `_STD`).
pub use backbone::catalogue::{IMAGENET_MEAN, IMAGENET_STD};

/// The description of a pretrained model in timm's `config.json` layout:
///
/// ```json
/// {"architecture": "resnet18", "num_classes": 1000, "num_features": 512,
///  "label_names": ["tench", "..."],
///  "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.95,
///                     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "...": "..."}}
/// ```
///
/// `num_classes` and `label_names` are read at the top level (`num_classes` falls back to
/// `pretrained_cfg.num_classes`), the preprocessing settings from `pretrained_cfg` (or the older
/// `default_cfg`); missing fields, and `null` ones, take the defaults. [`PretrainedConfig::extra`]
/// keeps the whole original document, so [`PretrainedConfig::to_json`] preserves fields this type
/// does not model.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedConfig {
    /// The timm model name, such as `resnet18`.
    pub architecture: Option<String>,
    /// The number of classes of the classifier.
    pub num_classes: Option<usize>,
    /// The input `(channels, height, width)`; default `(3, 224, 224)`.
    pub input_size: (usize, usize, usize),
    /// The per-channel mean of the normalisation; default ImageNet's.
    pub mean: Vec<f32>,
    /// The per-channel standard deviation of the normalisation; default ImageNet's.
    pub std: Vec<f32>,
    /// The fraction of the resized image kept by the centre crop; default 0.875.
    pub crop_pct: f64,
    /// The resize interpolation; default bilinear.
    pub interpolation: Interpolation,
    /// timm's `test_input_size`: the size the weights are evaluated at, when the publisher
    /// defines one (`resnet50.a1_in1k`: 288 after training at 224).
    pub test_input_size: Option<(usize, usize, usize)>,
    /// timm's `test_crop_pct`: the crop at the test size.
    pub test_crop_pct: Option<f64>,
    /// The name of each class, in class-index order.
    pub label_names: Option<Vec<String>>,
    /// The whole original JSON document (an empty object for a config built in code).
    pub extra: Value,
}

impl Default for PretrainedConfig {
    /// No architecture or classes, 3x224x224 inputs, ImageNet normalisation, crop 0.875,
    /// bilinear.
    fn default() -> Self {
        Self {
            architecture: None,
            num_classes: None,
            input_size: (3, 224, 224),
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
            crop_pct: 0.875,
            interpolation: Interpolation::Bilinear,
            test_input_size: None,
            test_crop_pct: None,
            label_names: None,
            extra: Value::Object(Map::new()),
        }
    }
}

/// What an evaluation transform needs (timm's `resolve_data_config`): resize the shorter side
/// to `floor(size / crop_pct)` with `interpolation`, center-crop `size`, normalise.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// `(channels, height, width)` of the model's input.
    pub input_size: (usize, usize, usize),
    /// The per-channel mean of the normalisation.
    pub mean: Vec<f32>,
    /// The per-channel standard deviation.
    pub std: Vec<f32>,
    /// The center-crop fraction.
    pub crop_pct: f64,
    /// The resize interpolation.
    pub interpolation: Interpolation,
}

impl PretrainedConfig {
    /// timm's `resolve_data_config(pretrained_cfg, use_test_size=...)`: with `use_test_size`
    /// (timm's inference default, what `predict` and published accuracies use) the test input
    /// size and test crop where the weights define them; else (`--use-train-size`, and
    /// fine-tuning, as timm's `train.py`) the training size and crop.
    pub fn data_config(&self, use_test_size: bool) -> DataConfig {
        let (input_size, crop_pct) = match (use_test_size, self.test_input_size) {
            (true, Some(test)) => (test, self.test_crop_pct.unwrap_or(self.crop_pct)),
            (true, None) => (self.input_size, self.test_crop_pct.unwrap_or(self.crop_pct)),
            (false, _) => (self.input_size, self.crop_pct),
        };
        DataConfig {
            input_size,
            mean: self.mean.clone(),
            std: self.std.clone(),
            crop_pct,
            interpolation: self.interpolation,
        }
    }
}

/// The largest `crop_pct` accepted (above 1: padding around the resized image).
pub const MAX_CROP_PCT: f64 = 4.0;

/// The range a normalisation standard deviation must lie in. Pixels are scaled to [0, 1]
/// before normalising, so real datasets have stds of about 0.1-0.5: a std of 1e-30 would turn
/// every input into numbers of 1e30 and the results into garbage, one of 1e30 into zeros.
pub const STD_RANGE: (f32, f32) = (1e-3, 1e3);

/// The range a normalisation mean must lie in (see [`STD_RANGE`]).
pub const MEAN_RANGE: (f32, f32) = (-1e3, 1e3);

/// Which normalisation values [`check_normalisation`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalisation {
    /// The per-channel mean.
    Mean,
    /// The per-channel standard deviation.
    Std,
}

/// Checks per-channel normalisation `values` for `channels` input channels: one per channel,
/// finite, inside [`MEAN_RANGE`] / [`STD_RANGE`]. The message starts with `what` (a
/// `config.json` field or a command-line flag).
pub fn check_normalisation(
    what: &str,
    kind: Normalisation,
    values: &[f32],
    channels: usize,
) -> std::result::Result<(), String> {
    if values.len() != channels {
        return Err(format!(
            "{what}: {} value(s) for {channels} input channel(s)",
            values.len()
        ));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(format!("{what}: {v} is not a finite number"));
    }
    let (lo, hi) = match kind {
        Normalisation::Mean => MEAN_RANGE,
        Normalisation::Std => STD_RANGE,
    };
    if let Some(v) = values.iter().find(|v| !(lo..=hi).contains(*v)) {
        let why = match kind {
            Normalisation::Std => {
                "pixels are in [0, 1] before normalising, so a std outside it \
                                   blows them up or flattens them to zero"
            }
            Normalisation::Mean => "pixels are in [0, 1] before normalising",
        };
        return Err(format!("{what}: {v:e} is outside [{lo}, {hi}] ({why})"));
    }
    Ok(())
}

/// The preprocessing section of a timm config, by its current name or the older one.
const CFG_KEYS: [&str; 2] = ["pretrained_cfg", "default_cfg"];

impl PretrainedConfig {
    /// A variant's default preprocessing from its catalogue entry (used when the weights come
    /// without a `config.json`).
    pub fn from_preprocessing(p: &backbone::catalogue::Preprocessing) -> Self {
        Self {
            input_size: p.input_size,
            mean: p.mean.to_vec(),
            std: p.std.to_vec(),
            crop_pct: p.crop_pct,
            interpolation: Interpolation::from_name(p.interpolation).unwrap_or(Interpolation::Bilinear),
            test_input_size: p.test_input_size,
            test_crop_pct: p.test_crop_pct,
            ..Self::default()
        }
    }

    /// `self` with each preprocessing setting (input size, mean, std, crop, interpolation)
    /// that its `config.json` does not give (no `pretrained_cfg` section, or the field missing
    /// or `null` there) taken from `defaults`, such as the variant's own
    /// ([`PretrainedConfig::from_preprocessing`]): a LeNet's `config.json` holding only its
    /// labels keeps LeNet's one grey 32x32 channel instead of ImageNet's three. Returns the
    /// names of the settings taken from `defaults`.
    pub fn fill_missing_from(&mut self, defaults: &PretrainedConfig) -> Vec<&'static str> {
        let cfg = CFG_KEYS
            .iter()
            .find_map(|k| self.extra.get(*k))
            .and_then(Value::as_object);
        let given = |name: &str| cfg.and_then(|c| c.get(name)).is_some_and(|v| !v.is_null());
        let mut taken = Vec::new();
        // A timm config.json leaves out the test size of weights that have none: only a file
        // without any pretrained_cfg takes the defaults' test size and crop.
        if cfg.is_none() {
            self.test_input_size = defaults.test_input_size;
            self.test_crop_pct = defaults.test_crop_pct;
        }
        if !given("input_size") {
            self.input_size = defaults.input_size;
            taken.push("input_size");
        }
        if !given("mean") {
            self.mean = defaults.mean.clone();
            taken.push("mean");
        }
        if !given("std") {
            self.std = defaults.std.clone();
            taken.push("std");
        }
        if !given("crop_pct") {
            self.crop_pct = defaults.crop_pct;
            taken.push("crop_pct");
        }
        if !given("interpolation") {
            self.interpolation = defaults.interpolation;
            taken.push("interpolation");
        }
        taken
    }

    /// Reads a `config.json`; errors name the file (and the field).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses the text of a `config.json`; `source` (the file) is named in errors, which also
    /// name the offending field: malformed JSON, a field of the wrong type, an unknown
    /// interpolation, or values that fail [`PretrainedConfig::validate`].
    pub fn from_json_str(text: &str, source: impl AsRef<Path>) -> Result<Self> {
        let source = source.as_ref();
        let fail = |problem: String| Error::pretrained(source.display().to_string(), problem);
        let root: Value = serde_json::from_str(text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
        let Value::Object(top) = &root else {
            return Err(fail(format!("expected a JSON object, found {}", kind(&root))));
        };
        let (cfg_key, cfg) = match CFG_KEYS.iter().find_map(|k| top.get(*k).map(|v| (*k, v))) {
            Some((_, Value::Null)) | None => ("pretrained_cfg", None),
            Some((key, Value::Object(cfg))) => (key, Some(cfg)),
            Some((key, other)) => {
                return Err(fail(format!(
                    "field `{key}`: expected an object, found {}",
                    kind(other)
                )))
            }
        };
        let field = |name: &str| -> (String, Option<&Value>) {
            let value = cfg.and_then(|c| c.get(name)).filter(|v| !v.is_null());
            (format!("{cfg_key}.{name}"), value)
        };
        let top_field = |name: &str| (name.to_string(), top.get(name).filter(|v| !v.is_null()));

        let num_classes = match opt_usize(top_field("num_classes")).map_err(&fail)? {
            Some(n) => Some(n),
            None => opt_usize(field("num_classes")).map_err(&fail)?,
        };
        let mut config = Self {
            architecture: opt_string(top_field("architecture")).map_err(&fail)?,
            num_classes,
            extra: root.clone(),
            ..Self::default()
        };
        if let (name, Some(value)) = field("input_size") {
            let dims = usize_array(&name, value).map_err(&fail)?;
            let [c, h, w] = dims[..] else {
                return Err(fail(format!(
                    "field `{name}`: expected [channels, height, width], found {} numbers",
                    dims.len()
                )));
            };
            config.input_size = (c, h, w);
        }
        if let (name, Some(value)) = field("test_input_size") {
            let dims = usize_array(&name, value).map_err(&fail)?;
            let [c, h, w] = dims[..] else {
                return Err(fail(format!(
                    "field `{name}`: expected [channels, height, width], found {} numbers",
                    dims.len()
                )));
            };
            config.test_input_size = Some((c, h, w));
        }
        if let (name, Some(value)) = field("test_crop_pct") {
            config.test_crop_pct = Some(value.as_f64().ok_or_else(|| {
                fail(format!(
                    "field `{name}`: expected a number, found {}",
                    kind(value)
                ))
            })?);
        }
        if let (name, Some(value)) = field("mean") {
            config.mean = f32_array(&name, value).map_err(&fail)?;
        }
        if let (name, Some(value)) = field("std") {
            config.std = f32_array(&name, value).map_err(&fail)?;
        }
        if let (name, Some(value)) = field("crop_pct") {
            config.crop_pct = value.as_f64().ok_or_else(|| {
                fail(format!(
                    "field `{name}`: expected a number, found {}",
                    kind(value)
                ))
            })?;
        }
        if let Some(name) = opt_string(field("interpolation")).map_err(&fail)? {
            config.interpolation = Interpolation::from_name(&name).ok_or_else(|| {
                fail(format!(
                    "field `{cfg_key}.interpolation`: unknown value {name:?} (expected bilinear, \
                     bicubic or nearest)"
                ))
            })?;
        }
        if let (name, Some(value)) = top_field("label_names") {
            let Value::Array(items) = value else {
                return Err(fail(format!(
                    "field `{name}`: expected an array of strings, found {}",
                    kind(value)
                )));
            };
            let names = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str().map(str::to_string).ok_or_else(|| {
                        fail(format!(
                            "field `{name}[{i}]`: expected a string, found {}",
                            kind(item)
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            config.label_names = Some(names);
        }
        config.check().map_err(&fail)?;
        Ok(config)
    }

    /// Checks the values: positive input dimensions, one mean and one positive std per channel,
    /// finite numbers, `crop_pct` in (0, 1], as many label names as classes. The
    /// [`Error::Pretrained`] names the field.
    pub fn validate(&self) -> Result<()> {
        self.check()
            .map_err(|problem| Error::pretrained("config", problem))
    }

    fn check(&self) -> std::result::Result<(), String> {
        let (c, h, w) = self.input_size;
        if c == 0 || h == 0 || w == 0 {
            return Err(format!(
                "field `pretrained_cfg.input_size`: dimensions must be positive, found [{c}, {h}, {w}]"
            ));
        }
        check_normalisation("field `pretrained_cfg.mean`", Normalisation::Mean, &self.mean, c)?;
        check_normalisation("field `pretrained_cfg.std`", Normalisation::Std, &self.std, c)?;
        if let Some((tc, th, tw)) = self.test_input_size {
            if tc != c || th == 0 || tw == 0 {
                return Err(format!(
                    "field `pretrained_cfg.test_input_size`: expected [{c}, height, width] with positive \
                     sides, found [{tc}, {th}, {tw}]"
                ));
            }
        }
        if let Some(v) = self.test_crop_pct.filter(|v| !(*v > 0.0 && *v <= MAX_CROP_PCT)) {
            return Err(format!(
                "field `pretrained_cfg.test_crop_pct`: {v} is not in (0, {MAX_CROP_PCT}]"
            ));
        }
        // Above 1 the centre crop is larger than the resized image and pads it with zeros (as
        // torchvision's CenterCrop does): how digits trained padded to 32x32 are prepared.
        if !(self.crop_pct > 0.0 && self.crop_pct <= MAX_CROP_PCT) {
            return Err(format!(
                "field `pretrained_cfg.crop_pct`: {} is not in (0, {MAX_CROP_PCT}]",
                self.crop_pct
            ));
        }
        if let (Some(names), Some(n)) = (&self.label_names, self.num_classes) {
            if names.len() != n {
                return Err(format!(
                    "field `label_names`: {} name(s) for num_classes = {n}",
                    names.len()
                ));
            }
        }
        Ok(())
    }

    /// Sets the number of classes (a new classifier). Label names of another count, and the
    /// `label_descriptions` of the original document, are dropped.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        if self.num_classes != Some(num_classes) {
            self.drop_label_descriptions();
        }
        if self
            .label_names
            .as_ref()
            .is_some_and(|names| names.len() != num_classes)
        {
            self.label_names = None;
        }
        self.num_classes = Some(num_classes);
        self
    }

    /// Sets the class names, and the number of classes to their count. The
    /// `label_descriptions` of the original document are dropped unless the names are unchanged.
    pub fn with_label_names(mut self, label_names: Vec<String>) -> Self {
        if self.label_names.as_ref() != Some(&label_names) {
            self.drop_label_descriptions();
        }
        self.num_classes = Some(label_names.len());
        self.label_names = Some(label_names);
        self
    }

    /// Sets the architecture name.
    pub fn with_architecture(mut self, architecture: &str) -> Self {
        self.architecture = Some(architecture.to_string());
        self
    }

    fn drop_label_descriptions(&mut self) {
        if let Value::Object(top) = &mut self.extra {
            top.remove("label_descriptions");
        }
    }

    /// The config as timm's JSON layout: [`PretrainedConfig::extra`] with the modelled fields
    /// written over it (`architecture`, `num_classes` and `label_names` at the top level; the
    /// preprocessing settings and `num_classes` in `pretrained_cfg`, or in `default_cfg` when
    /// the original used that older name).
    pub fn to_json(&self) -> Value {
        let mut top = match &self.extra {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        let set_or_remove = |map: &mut Map<String, Value>, key: &str, value: Option<Value>| match value {
            Some(v) => {
                map.insert(key.to_string(), v);
            }
            None => {
                map.remove(key);
            }
        };
        set_or_remove(
            &mut top,
            "architecture",
            self.architecture.clone().map(Value::from),
        );
        set_or_remove(&mut top, "num_classes", self.num_classes.map(Value::from));
        set_or_remove(
            &mut top,
            "label_names",
            self.label_names.as_ref().map(|names| Value::from(names.clone())),
        );
        let cfg_key = CFG_KEYS
            .iter()
            .copied()
            .find(|k| top.get(*k).is_some_and(Value::is_object))
            .unwrap_or("pretrained_cfg");
        let mut cfg = match top.remove(cfg_key) {
            Some(Value::Object(cfg)) => cfg,
            _ => Map::new(),
        };
        if let (Some(architecture), true) = (&self.architecture, cfg.contains_key("architecture")) {
            cfg.insert("architecture".into(), Value::from(architecture.clone()));
        }
        let (c, h, w) = self.input_size;
        cfg.insert("input_size".into(), Value::from(vec![c, h, w]));
        cfg.insert("interpolation".into(), Value::from(self.interpolation.as_str()));
        cfg.insert("crop_pct".into(), Value::from(self.crop_pct));
        set_or_remove(
            &mut cfg,
            "test_input_size",
            self.test_input_size.map(|(c, h, w)| Value::from(vec![c, h, w])),
        );
        set_or_remove(&mut cfg, "test_crop_pct", self.test_crop_pct.map(Value::from));
        cfg.insert("mean".into(), f32_json(&self.mean));
        cfg.insert("std".into(), f32_json(&self.std));
        set_or_remove(&mut cfg, "num_classes", self.num_classes.map(Value::from));
        top.insert(cfg_key.to_string(), Value::Object(cfg));
        Value::Object(top)
    }

    /// Writes [`PretrainedConfig::to_json`] (pretty-printed) to `path` atomically: through a
    /// temporary file in the same directory, flushed and renamed over `path`, creating the
    /// parent directories. An invalid config (see [`PretrainedConfig::validate`]) is not
    /// written.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.check()
            .map_err(|problem| Error::pretrained(path.display().to_string(), problem))?;
        let mut text = serde_json::to_string_pretty(&self.to_json())
            .map_err(|e| Error::pretrained(path.display().to_string(), format!("cannot serialise: {e}")))?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }
}

use backbone::weights::json_kind as kind;

fn opt_string((name, value): (String, Option<&Value>)) -> std::result::Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "field `{name}`: expected a string, found {}",
            kind(other)
        )),
    }
}

fn opt_usize((name, value): (String, Option<&Value>)) -> std::result::Result<Option<usize>, String> {
    match value {
        None => Ok(None),
        Some(v) => as_usize(&name, v).map(Some),
    }
}

fn as_usize(name: &str, value: &Value) -> std::result::Result<usize, String> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "field `{name}`: expected a non-negative integer, found {}",
                kind(value)
            )
        })
}

fn usize_array(name: &str, value: &Value) -> std::result::Result<Vec<usize>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "field `{name}`: expected an array of integers, found {}",
            kind(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| as_usize(&format!("{name}[{i}]"), item))
        .collect()
}

fn f32_array(name: &str, value: &Value) -> std::result::Result<Vec<f32>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "field `{name}`: expected an array of numbers, found {}",
            kind(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_f64()
                .map(|v| v as f32)
                .ok_or_else(|| format!("field `{name}[{i}]`: expected a number, found {}", kind(item)))
        })
        .collect()
}

/// `values` as JSON numbers with their shortest decimal form (0.485, not 0.48500001430511475).
fn f32_json(values: &[f32]) -> Value {
    Value::from(
        values
            .iter()
            .map(|v| v.to_string().parse::<f64>().unwrap_or(f64::from(*v)))
            .collect::<Vec<f64>>(),
    )
}

/// Writes `bytes` to `path` whole or not at all ([`backbone::io::write_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    backbone::io::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}
