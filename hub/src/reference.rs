//! [`WeightsRef`]: a weights reference as written on a command line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{Error, Result, ACCEPTED, DEFAULT_REVISION, WEIGHTS_FILE};

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
pub(crate) fn parse_hub_id(s: &str) -> std::result::Result<(String, String), String> {
    let (repo, revision) = match s.split_once('@') {
        Some((repo, revision)) => (repo, revision),
        None => (s, DEFAULT_REVISION),
    };
    check_repo_id(repo)?;
    check_revision(revision)?;
    Ok((repo.to_string(), revision.to_string()))
}

/// Checks a repo id `owner/name` against the Hugging Face rules.
pub(crate) fn check_repo_id(repo: &str) -> std::result::Result<(), String> {
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
pub(crate) fn check_revision(revision: &str) -> std::result::Result<(), String> {
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
