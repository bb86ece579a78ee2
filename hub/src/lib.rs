//! Weights references and the Hugging Face cache (the `hub` crate, shared by the `convnets`
//! facade and the `trainer`).
//!
//! A [`WeightsRef`] names pretrained weights: a local `.safetensors` file (or a directory holding
//! `model.safetensors`, the output of our own fine-tuning) or a Hugging Face model repo
//! `owner/name[@revision]`. [`resolve`] turns it into local files: for a repo it looks in the
//! standard Hugging Face cache (`<cache>/models--owner--name/refs/<revision>` holds a commit
//! hash, `<cache>/models--owner--name/snapshots/<hash>/` the files, the layout the Python
//! `huggingface_hub` uses, so a cache filled by Python is reused) and, unless offline, downloads
//! what is missing into that same layout with `hf-hub`.
//!
//! The `config.json` next to the weights is read as a [`PretrainedConfig`] (timm's layout:
//! architecture, classes, label names and the `pretrained_cfg` preprocessing settings). It keeps
//! the whole original JSON, so a fine-tuned model written with [`PretrainedConfig::write`] next
//! to its `model.safetensors` preserves every field this crate does not know about.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use serde_json::{Map, Value};

/// Errors of weights references, the cache and `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed (file missing, permission denied, disk full, ...).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// Pretrained weights that cannot be located, downloaded or described: a malformed weights
    /// reference, a Hugging Face repo missing from the cache while offline, a failed download,
    /// an invalid `config.json`.
    #[error("pretrained weights {location}: {problem}")]
    Pretrained {
        /// What was being resolved: the reference as written, `owner/name@revision`, or a file.
        location: String,
        /// What went wrong and how to fix it.
        problem: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] about `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An [`Error::Pretrained`] about `location` (a weights reference, a repo or a file).
    pub fn pretrained(location: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Pretrained {
            location: location.into(),
            problem: problem.into(),
        }
    }
}

/// The weights file name of a Hugging Face repo and of a fine-tuned output directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// The configuration file name next to [`WEIGHTS_FILE`].
pub const CONFIG_FILE: &str = "config.json";

/// PyTorch pickle weight files that may be cached for a repo without safetensors weights.
const PICKLE_FILES: [&str; 2] = ["pytorch_model.bin", "open_clip_pytorch_model.bin"];

/// File extensions of PyTorch pickle checkpoints, which are not supported.
const PICKLE_EXTENSIONS: [&str; 5] = ["bin", "pt", "pth", "pkl", "ckpt"];

/// The forms a weights reference may take, for error messages.
const ACCEPTED: &str = "expected a path to a .safetensors file, a directory containing model.safetensors, \
     or a Hugging Face model id `owner/name` or `owner/name@revision`";

/// The revision of a repo id written without `@revision`.
pub const DEFAULT_REVISION: &str = "main";

/// Where pretrained weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsRef {
    /// A local safetensors file.
    File(PathBuf),
    /// A Hugging Face model repo at a revision (a branch, a tag or a commit hash).
    Hub {
        /// The repo id, `owner/name`.
        repo: String,
        /// The branch, tag or commit hash (`main` by default).
        revision: String,
    },
}

impl WeightsRef {
    /// Parses a weights reference as written on a command line.
    ///
    /// - an existing file, or any string ending in `.safetensors`, is a [`WeightsRef::File`];
    /// - an existing directory containing `model.safetensors` is the `File` of that file (an
    ///   existing directory without it is an error);
    /// - `owner/name` or `owner/name@revision` is a [`WeightsRef::Hub`] (revision `main` by
    ///   default), following the Hugging Face rules for repo ids (letters, digits, `-`, `_`, `.`;
    ///   no `--` or `..`; `-` and `.` neither first nor last; at most 96 characters each part).
    ///
    /// Anything else (an empty string, `a/b/c` that is not a file, invalid characters) is an
    /// [`Error::Pretrained`] that lists the accepted forms.
    pub fn parse(reference: &str) -> Result<Self> {
        if reference.trim().is_empty() {
            return Err(Error::pretrained(
                "\"\"",
                format!("empty weights reference; {ACCEPTED}"),
            ));
        }
        let path = Path::new(reference);
        if path.is_dir() {
            let file = path.join(WEIGHTS_FILE);
            if file.is_file() {
                return Ok(WeightsRef::File(file));
            }
            let hint = if parse_hub_id(reference).is_ok() {
                format!(" (for the Hugging Face repo of that name, write `{reference}@{DEFAULT_REVISION}`)")
            } else {
                String::new()
            };
            return Err(Error::pretrained(
                reference,
                format!("the directory contains no {WEIGHTS_FILE}{hint}"),
            ));
        }
        if path.exists() || reference.ends_with(".safetensors") {
            return Ok(WeightsRef::File(path.to_path_buf()));
        }
        match parse_hub_id(reference) {
            Ok((repo, revision)) => Ok(WeightsRef::Hub { repo, revision }),
            Err(why) => Err(Error::pretrained(
                reference,
                format!("neither an existing file nor a Hugging Face model id ({why}); {ACCEPTED}"),
            )),
        }
    }
}

impl FromStr for WeightsRef {
    type Err = Error;

    /// Same as [`WeightsRef::parse`].
    fn from_str(s: &str) -> Result<Self> {
        WeightsRef::parse(s)
    }
}

impl fmt::Display for WeightsRef {
    /// The path of a file, `owner/name@revision` for a repo.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsRef::File(path) => write!(f, "{}", path.display()),
            WeightsRef::Hub { repo, revision } => write!(f, "{repo}@{revision}"),
        }
    }
}

/// Splits `owner/name[@revision]` and checks both parts; the error says what is wrong.
fn parse_hub_id(s: &str) -> std::result::Result<(String, String), String> {
    let (repo, revision) = match s.split_once('@') {
        Some((repo, revision)) => (repo, revision),
        None => (s, DEFAULT_REVISION),
    };
    check_repo_id(repo)?;
    check_revision(revision)?;
    Ok((repo.to_string(), revision.to_string()))
}

/// Checks a repo id `owner/name` against the Hugging Face rules.
fn check_repo_id(repo: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() != 2 {
        return Err(format!(
            "`{repo}` has {} part(s) separated by `/`; a repo id has exactly two, owner/name",
            parts.len()
        ));
    }
    for part in parts {
        if part.is_empty() {
            return Err(format!("`{repo}` has an empty owner or name"));
        }
        if part.len() > 96 {
            return Err(format!("`{part}` is longer than 96 characters"));
        }
        if let Some(c) = part
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "invalid character {c:?} in `{part}` (letters, digits, `-`, `_` and `.` only)"
            ));
        }
        if part.contains("--") || part.contains("..") {
            return Err(format!("`{part}` contains `--` or `..`"));
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return Err(format!("`{part}` starts or ends with `-` or `.`"));
        }
    }
    Ok(())
}

/// Checks a revision: a branch, tag or commit hash that is also a safe relative path.
fn check_revision(revision: &str) -> std::result::Result<(), String> {
    if revision.is_empty() {
        return Err("empty revision after `@`".into());
    }
    if let Some(c) = revision
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!(
            "invalid character {c:?} in revision `{revision}` (letters, digits, `-`, `_`, `.` and `/` only)"
        ));
    }
    if revision
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!(
            "revision `{revision}` has an empty, `.` or `..` path component"
        ));
    }
    Ok(())
}

/// Where the Hugging Face cache is and whether the network may be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache directory (the one holding `models--owner--name` directories); `None`:
    /// the default location, `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// Never use the network: a repo missing from the cache is an error.
    pub offline: bool,
}

impl HubOptions {
    /// Options with an explicit cache directory, online.
    pub fn with_cache_dir(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: Some(cache_dir.into()),
            offline: false,
        }
    }

    /// The same options, offline or not.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Options from the environment variables, with the rules of the Python `huggingface_hub`:
    /// the cache is `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`,
    /// else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; offline when
    /// `HF_HUB_OFFLINE` (or the older `TRANSFORMERS_OFFLINE`) is `1`, `true`, `yes` or `on`.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name).map(PathBuf::from))
    }

    /// [`HubOptions::from_env`] reading the variables through `var` (a name -> value lookup,
    /// so that the rules can be applied to something other than the process environment).
    /// Empty values count as unset; a leading `~` in a path is the home directory (`HOME`, or
    /// `USERPROFILE` on Windows).
    pub fn from_vars(var: impl Fn(&str) -> Option<PathBuf>) -> Self {
        let get = |name: &str| var(name).filter(|v| !v.as_os_str().is_empty());
        let home = get("HOME").or_else(|| get("USERPROFILE"));
        let expand = |p: PathBuf| -> PathBuf {
            match (p.strip_prefix("~"), &home) {
                (Ok(rest), Some(home)) => home.join(rest),
                _ => p,
            }
        };
        let cache_dir = get("HF_HUB_CACHE")
            .or_else(|| get("HUGGINGFACE_HUB_CACHE"))
            .map(&expand)
            .or_else(|| get("HF_HOME").map(|h| expand(h).join("hub")))
            .or_else(|| get("XDG_CACHE_HOME").map(|c| expand(c).join("huggingface").join("hub")))
            .or_else(|| {
                home.as_ref()
                    .map(|h| h.join(".cache").join("huggingface").join("hub"))
            });
        let offline = get("HF_HUB_OFFLINE")
            .or_else(|| get("TRANSFORMERS_OFFLINE"))
            .is_some_and(|v| {
                let v = v.to_string_lossy().trim().to_ascii_lowercase();
                matches!(v.as_str(), "1" | "true" | "yes" | "on")
            });
        Self { cache_dir, offline }
    }

    /// The cache directory: [`HubOptions::cache_dir`] or, when `None`, the one
    /// [`HubOptions::from_env`] finds (`None` when not even a home directory is known).
    pub fn effective_cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(|| Self::from_env().cache_dir)
    }
}

/// Local files for a [`WeightsRef`], found by [`resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedWeights {
    /// The safetensors weights.
    pub weights_file: PathBuf,
    /// The `config.json` next to the weights, if there is one.
    pub config_file: Option<PathBuf>,
    /// `config_file`, parsed.
    pub config: Option<PretrainedConfig>,
    /// Where the weights come from, for people: `owner/name@revision` or the file's path.
    pub source: String,
}

/// Finds the local files of `reference`, downloading a repo missing from the cache unless
/// `options.offline`.
///
/// - A file: the file itself (a directory: its `model.safetensors`) and the `config.json` of
///   the same directory, if present. PyTorch pickle files (`.bin`, `.pt`, `.pth`, ...) are
///   refused: only safetensors is supported.
/// - A repo: `<cache>/models--owner--name/refs/<revision>` names a commit whose snapshot
///   directory `<cache>/models--owner--name/snapshots/<commit>/` holds `model.safetensors` and
///   optionally `config.json`; a revision that is itself a commit hash may name the snapshot
///   directly. Cached files are used without any network access. Otherwise, when online,
///   `model.safetensors` and `config.json` (if the repo has one) are downloaded into the same
///   layout (the endpoint is `HF_ENDPOINT` if set, the token `HF_TOKEN` or the cache's `token`
///   file).
///
/// Errors ([`Error::Pretrained`], [`Error::Io`]) name the reference or the file: a missing
/// file; a repo missing from the cache while offline, with every path looked at and how to fix
/// it; a repo cached with only PyTorch pickle weights; a failed download with the underlying
/// error; an invalid `config.json` (see [`PretrainedConfig::from_json_str`]).
pub fn resolve(reference: &WeightsRef, options: &HubOptions) -> Result<ResolvedWeights> {
    match reference {
        WeightsRef::File(path) => resolve_file(path),
        WeightsRef::Hub { repo, revision } => resolve_hub(repo, revision, options),
    }
}

fn resolve_file(path: &Path) -> Result<ResolvedWeights> {
    let weights_file = if path.is_dir() {
        path.join(WEIGHTS_FILE)
    } else {
        path.to_path_buf()
    };
    let extension = weights_file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if PICKLE_EXTENSIONS.contains(&extension.as_str()) {
        return Err(Error::pretrained(
            weights_file.display().to_string(),
            "a PyTorch pickle file; only safetensors weights are supported (convert it with \
             `safetensors.torch.save_file(torch.load(path), \"model.safetensors\")` in Python)",
        ));
    }
    let metadata = std::fs::metadata(&weights_file).map_err(|e| Error::io(&weights_file, e))?;
    if !metadata.is_file() {
        return Err(Error::pretrained(
            weights_file.display().to_string(),
            "not a regular file",
        ));
    }
    let dir = weights_file.parent().unwrap_or(Path::new(""));
    let (config_file, config) = read_config_beside(dir)?;
    Ok(ResolvedWeights {
        source: weights_file.display().to_string(),
        weights_file,
        config_file,
        config,
    })
}

/// The `config.json` of `dir`, parsed, if the file exists.
fn read_config_beside(dir: &Path) -> Result<(Option<PathBuf>, Option<PretrainedConfig>)> {
    let config_file = dir.join(CONFIG_FILE);
    if config_file.is_file() {
        let config = PretrainedConfig::from_file(&config_file)?;
        Ok((Some(config_file), Some(config)))
    } else {
        Ok((None, None))
    }
}

/// What the cache holds for a repo at a revision.
struct CacheLookup {
    /// The snapshot directory holding `model.safetensors`, if any.
    found: Option<PathBuf>,
    /// A cached PyTorch pickle weights file, when there is no safetensors one.
    pickle: Option<PathBuf>,
    /// Every path looked at, in order.
    looked_at: Vec<PathBuf>,
}

/// The cache directory of a model repo: `<cache>/models--owner--name`.
fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

fn lookup_cache(cache: &Path, repo: &str, revision: &str) -> CacheLookup {
    let dir = repo_dir(cache, repo);
    let mut lookup = CacheLookup {
        found: None,
        pickle: None,
        looked_at: Vec::new(),
    };
    let mut snapshots = Vec::new();
    let ref_file = dir.join("refs").join(revision);
    lookup.looked_at.push(ref_file.clone());
    if let Ok(hash) = std::fs::read_to_string(&ref_file) {
        let hash = hash.trim();
        if !hash.is_empty() && hash.chars().all(|c| c.is_ascii_alphanumeric()) {
            snapshots.push(dir.join("snapshots").join(hash));
        }
    }
    if !revision.contains('/') {
        let direct = dir.join("snapshots").join(revision);
        if !snapshots.contains(&direct) {
            snapshots.push(direct);
        }
    }
    for snapshot in snapshots {
        let weights = snapshot.join(WEIGHTS_FILE);
        lookup.looked_at.push(weights.clone());
        if weights.is_file() {
            lookup.found = Some(snapshot);
            return lookup;
        }
        if lookup.pickle.is_none() {
            lookup.pickle = PICKLE_FILES
                .iter()
                .map(|name| snapshot.join(name))
                .find(|p| p.is_file());
        }
    }
    lookup
}

fn resolve_hub(repo: &str, revision: &str, options: &HubOptions) -> Result<ResolvedWeights> {
    let source = format!("{repo}@{revision}");
    check_repo_id(repo).map_err(|why| Error::pretrained(&source, format!("invalid repo id: {why}")))?;
    check_revision(revision).map_err(|why| Error::pretrained(&source, format!("invalid revision: {why}")))?;
    let cache = options.effective_cache_dir().ok_or_else(|| {
        Error::pretrained(
            &source,
            "cannot locate the Hugging Face cache (no home directory): set HF_HUB_CACHE or HF_HOME",
        )
    })?;
    let lookup = lookup_cache(&cache, repo, revision);
    if let Some(snapshot) = lookup.found {
        let (config_file, config) = read_config_beside(&snapshot)?;
        return Ok(ResolvedWeights {
            weights_file: snapshot.join(WEIGHTS_FILE),
            config_file,
            config,
            source,
        });
    }
    let pickle_note = lookup.pickle.as_ref().map(|p| {
        format!(
            "the cache holds only PyTorch pickle weights ({}), and only safetensors weights are \
             supported",
            p.display()
        )
    });
    if options.offline {
        let looked_at: Vec<String> = lookup
            .looked_at
            .iter()
            .map(|p| format!("  {}", p.display()))
            .collect();
        let problem = match pickle_note {
            Some(note) => format!("{note}; looked for {WEIGHTS_FILE} at:\n{}", looked_at.join("\n")),
            None => format!(
                "not in the Hugging Face cache (repo `{repo}`, revision `{revision}`) and offline \
                 mode is on (HF_HUB_OFFLINE or an offline option); looked at:\n{}\nTo fix it, unset \
                 HF_HUB_OFFLINE and run once with network access to download it into {}, or download \
                 it elsewhere with `huggingface-cli download {repo} --revision {revision}` and copy \
                 that cache here",
                looked_at.join("\n"),
                cache.display()
            ),
        };
        return Err(Error::pretrained(&source, problem));
    }
    download(repo, revision, &cache, &source, pickle_note)
}

/// Downloads `model.safetensors` and, if the repo has one, `config.json` into the cache.
fn download(
    repo: &str,
    revision: &str,
    cache: &Path,
    source: &str,
    pickle_note: Option<String>,
) -> Result<ResolvedWeights> {
    let mut builder = ApiBuilder::from_cache(Cache::new(cache.to_path_buf()));
    if let Some(endpoint) = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        builder = builder.with_token(Some(token.trim().to_string()));
    }
    let api = builder
        .build()
        .map_err(|e| Error::pretrained(source, format!("cannot set up the Hugging Face client: {e}")))?;
    let api_repo = api.repo(Repo::with_revision(
        repo.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let weights_file = api_repo.get(WEIGHTS_FILE).map_err(|e| {
        let (status, message) = describe_api_error(e);
        let mut problem = format!("cannot download {WEIGHTS_FILE} of repo `{repo}` at revision `{revision}`");
        match status {
            Some(404) => problem.push_str(
                " (not found: the repo, the revision or the file does not exist; only safetensors \
                 weights are supported)",
            ),
            Some(401 | 403) => problem.push_str(
                " (unauthorized: the repo may not exist, or be private or gated; set HF_TOKEN to a \
                 token with access)",
            ),
            _ => {}
        }
        problem.push_str(&format!(": {message}"));
        if let Some(note) = &pickle_note {
            problem.push_str(&format!("; {note}"));
        }
        Error::pretrained(source, problem)
    })?;
    let config_file = match api_repo.get(CONFIG_FILE) {
        Ok(path) => Some(path),
        Err(e) => match describe_api_error(e) {
            (Some(404), _) => None,
            (_, message) => {
                let what = format!("cannot download {CONFIG_FILE} of repo `{repo}` at revision `{revision}`");
                return Err(Error::pretrained(source, format!("{what}: {message}")));
            }
        },
    };
    let config = match &config_file {
        Some(path) => Some(PretrainedConfig::from_file(path)?),
        None => None,
    };
    Ok(ResolvedWeights {
        weights_file,
        config_file,
        config,
        source: source.to_string(),
    })
}

/// The HTTP status of a failed request, if it got one, and the error's message.
fn describe_api_error(error: ApiError) -> (Option<u16>, String) {
    let message = error.to_string();
    let status = match error {
        ApiError::RequestError(inner) => inner.into_response().map(|r| r.status()),
        _ => None,
    };
    (status, message)
}

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

/// ImageNet's per-channel mean (timm's `IMAGENET_DEFAULT_MEAN`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation (timm's `IMAGENET_DEFAULT_STD`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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
            label_names: None,
            extra: Value::Object(Map::new()),
        }
    }
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
            ..Self::default()
        }
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
        for (name, values) in [("mean", &self.mean), ("std", &self.std)] {
            if values.len() != c {
                return Err(format!(
                    "field `pretrained_cfg.{name}`: {} value(s) for {c} input channel(s)",
                    values.len()
                ));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(format!(
                    "field `pretrained_cfg.{name}`: {v} is not a finite number"
                ));
            }
        }
        if let Some(v) = self.std.iter().find(|v| **v <= 0.0) {
            return Err(format!("field `pretrained_cfg.std`: {v} is not positive"));
        }
        if !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(format!(
                "field `pretrained_cfg.crop_pct`: {} is not in (0, 1]",
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

/// Writes `bytes` to `path` through a temporary file in the same directory, flushed and renamed
/// over `path` (the previous file, if any, stays whole on error).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(&dir, e))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| Error::io(path, e))?;
    file.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
