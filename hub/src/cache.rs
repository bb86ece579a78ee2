//! [`resolve`]: local files for a [`WeightsRef`], from the Hugging Face cache (downloaded
//! unless offline).

use std::path::{Path, PathBuf};

#[cfg(feature = "download")]
use hf_hub::api::sync::{ApiBuilder, ApiError};
#[cfg(feature = "download")]
use hf_hub::{Cache, Repo, RepoType};

use crate::reference::{check_repo_id, check_revision};
use crate::{
    Error, PretrainedConfig, Result, WeightsRef, CONFIG_FILE, PICKLE_EXTENSIONS, PICKLE_FILES, WEIGHTS_FILE,
};

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

/// The `config.json` of `dir`, parsed, if there is one; something else by that name (a
/// directory, a dangling link) is an error rather than ignored.
fn read_config_beside(dir: &Path) -> Result<(Option<PathBuf>, Option<PretrainedConfig>)> {
    let config_file = dir.join(CONFIG_FILE);
    if config_file.is_file() {
        let config = PretrainedConfig::from_file(&config_file)?;
        Ok((Some(config_file), Some(config)))
    } else if config_file.symlink_metadata().is_ok() {
        Err(Error::pretrained(
            config_file.display().to_string(),
            "its config.json is not a regular file (a directory, or a link to nothing): the \
             preprocessing of the weights cannot be read; remove or replace it",
        ))
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

/// Without the `download` feature: the repo must be in the cache.
#[cfg(not(feature = "download"))]
fn download(
    repo: &str,
    revision: &str,
    cache: &Path,
    source: &str,
    pickle_note: Option<String>,
) -> Result<ResolvedWeights> {
    let note = pickle_note.map(|n| format!("; {n}")).unwrap_or_default();
    Err(Error::pretrained(
        source,
        format!(
            "not in the Hugging Face cache {} (repo `{repo}`, revision `{revision}`), and this build \
             cannot download (the `hub` crate's `download` feature is off){note}",
            cache.display()
        ),
    ))
}

/// Downloads `model.safetensors` and, if the repo has one, `config.json` into the cache.
#[cfg(feature = "download")]
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
#[cfg(feature = "download")]
fn describe_api_error(error: ApiError) -> (Option<u16>, String) {
    let message = error.to_string();
    let status = match error {
        ApiError::RequestError(inner) => inner.into_response().map(|r| r.status()),
        _ => None,
    };
    (status, message)
}
