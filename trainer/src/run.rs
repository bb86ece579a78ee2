//! Run folders (`--out`): what the training loop ([`crate::train`]) keeps on disk, and the rules that keep a user's runs from being clobbered.
//!
//! A run folder holds:
//! - `run.json`: the kind of run, its epoch count and the settings that define it (model, data,
//!   hyper-parameters); `--resume` compares them with the new command's;
//! - `run.lock`: locked (an OS file lock, released when the process ends, even by `kill -9`)
//!   while a run writes to the folder; it holds the writer's process id;
//! - per epoch `epoch-NNN.safetensors` (every variable), `epoch-NNN.optimizer.safetensors`
//!   and `epoch-NNN.metrics.json` (that epoch's [`EpochMetrics`]); checkpoints beyond the
//!   latest `keep` are pruned, the small metrics records are kept;
//! - `metrics.csv`, `metrics.json` and `curves.png`, rebuilt from the per-epoch records after
//!   every epoch, so a killed and resumed run has each epoch exactly once.
//!
//! [`RunDir::open`] refuses a folder holding another run unless asked to overwrite it, refuses
//! to resume when there is nothing to resume or the settings differ (unless asked to accept
//! the change, which is logged), and removes what killed runs leave behind (hidden temporary
//! files, optimizer states whose checkpoint was never written). [`RunDir::restore`] loads the
//! latest complete epoch and falls back to the previous one when its files are unreadable.
//! [`LossGuard`] stops a run whose loss is non-finite or explodes.

use crate::checkpoint::{apply_to_varmap, load_checkpoint, load_checkpoint_with, write_atomic, ReadOptions};
use crate::metrics::{EpochMetrics, EvalMetrics, RunMetrics};
use crate::optim::Optimizer;
use crate::{Error, Result};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The settings that define a run, by name (`model`, `lr`, `data`, ...), as text. Two runs
/// with equal settings continue each other exactly.
pub type RunSettings = BTreeMap<String, String>;

/// How a training loop may use its run folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Continue the run in the folder after its latest complete epoch.
    pub resume: bool,
    /// Start a new run even though the folder holds one: its files are removed first.
    pub overwrite: bool,
    /// With `resume`: accept settings that differ from the saved ones (each change is logged).
    pub allow_changes: bool,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunFile {
    /// `train` or `finetune`.
    kind: String,
    /// Epochs the run was asked for (not compared on resume: a run may be extended).
    epochs: usize,
    settings: RunSettings,
}

const RUN_FILE: &str = "run.json";
const LOCK_FILE: &str = "run.lock";

/// A run folder opened by one training run (see the module docs). The folder stays locked
/// until this value is dropped.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    run: RunFile,
    options: RunOptions,
    verbose: bool,
    /// `false` for the other ranks of a data-parallel run ([`RunDir::follower`]): they write
    /// nothing.
    writer: bool,
    _lock: Option<File>,
}

/// `dir/epoch-NNN.safetensors`.
pub fn checkpoint_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:03}.safetensors"))
}

/// `dir/epoch-NNN.optimizer.safetensors`: the optimizer state saved with a checkpoint.
pub fn optimizer_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:03}.optimizer.safetensors"))
}

/// `dir/epoch-NNN.ema.safetensors`: the weights' moving average saved with a checkpoint.
pub fn ema_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:03}.ema.safetensors"))
}

/// `dir/epoch-NNN.metrics.json`: the metrics of one epoch.
pub fn record_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:03}.metrics.json"))
}

/// The epochs of `dir` whose files end with `suffix` (`.safetensors`, `.optimizer.safetensors`,
/// `.metrics.json`), sorted.
fn epochs_with(dir: &Path, suffix: &str) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut epochs: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let digits = name.strip_prefix("epoch-")?.strip_suffix(suffix)?;
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<usize>().ok())
                .flatten()
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

/// The epochs of `dir` with both a checkpoint and an optimizer state, sorted.
pub fn complete_epochs(dir: &Path) -> Vec<usize> {
    epochs_with(dir, ".safetensors")
        .into_iter()
        .filter(|&epoch| optimizer_path(dir, epoch).is_file())
        .collect()
}

/// The latest epoch of `dir` with both a checkpoint and an optimizer state.
pub fn latest_epoch(dir: &Path) -> Option<usize> {
    complete_epochs(dir).last().copied()
}

/// Whether `name` is a file a run writes (and `--overwrite` may remove).
fn is_run_file(name: &str) -> bool {
    const FIXED: [&str; 10] = [
        RUN_FILE,
        "metrics.csv",
        "metrics.json",
        "curves.png",
        "confusion.png",
        "model.safetensors",
        "model_ema.safetensors",
        "config.json",
        "log.csv",
        "labels.json",
    ];
    FIXED.contains(&name)
        || (name.starts_with("epoch-")
            && (name.ends_with(".safetensors")
                || name.ends_with(".metrics.json")
                || name.ends_with(".corrupt")))
        || is_temporary(name)
}

/// A temporary file of [`write_atomic`]: `.<name>.tmp-<pid>-<random letters and digits>`.
fn is_temporary(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((_, tail)) = rest.rsplit_once(".tmp-") else {
        return false;
    };
    let mut parts = tail.split('-');
    let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let alphanumeric =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    numeric(parts.next()) && alphanumeric(parts.next()) && parts.next().is_none()
}

fn file_names(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn remove(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))
}

/// Takes the folder's lock, or says which process holds it.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("process {holder}")
            };
            return Err(Error::run(
                dir,
                format!("{who} is training into this folder (it holds {}); wait for it to end or choose another --out", path.display()),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// What differs between saved and new settings, one line per setting. A setting the saved run
/// does not know (added by a newer version of this program) is not a change.
fn differences(saved: &RunSettings, now: &RunSettings) -> Vec<String> {
    let mut keys: Vec<&String> = saved.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| saved.contains_key(*key))
        .filter_map(|key| {
            let (a, b) = (saved.get(key), now.get(key));
            (a != b).then(|| {
                format!(
                    "{key}: {} -> {}",
                    a.map_or("(unset)", |s| s.as_str()),
                    b.map_or("(unset)", |s| s.as_str())
                )
            })
        })
        .collect()
}

impl RunDir {
    /// Opens `dir` for a run of `kind` (recorded in `run.json`: `train`) asked to last `epochs` epochs with
    /// `settings` (see the module docs for what is refused and cleaned). Creates the folder.
    /// Messages go to stderr when `verbose`.
    pub fn open(
        dir: &Path,
        kind: &str,
        settings: RunSettings,
        epochs: usize,
        options: RunOptions,
        verbose: bool,
    ) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::run(
                dir,
                "it is not a folder (a file or a device): a run needs a folder of its own; choose \
                 another --out",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = lock(dir)?;
        let run = RunDir {
            dir: dir.to_path_buf(),
            run: RunFile {
                kind: kind.to_string(),
                epochs,
                settings,
            },
            options,
            verbose,
            writer: true,
            _lock: Some(lock),
        };
        run.clean_leftovers()?;
        let saved = run.saved()?;
        let checkpoints = epochs_with(dir, ".safetensors");
        let run_files: Vec<String> = file_names(dir)?.into_iter().filter(|n| is_run_file(n)).collect();
        if options.resume {
            // A run stopped before its first checkpoint (killed, or diverged in epoch 1) is
            // resumed from its beginning; a folder without any run is nothing to resume.
            if complete_epochs(dir).is_empty() && saved.is_none() {
                return Err(Error::run(
                    dir,
                    "nothing to resume: no run was started here (no run.json, no epoch \
                     checkpoint); run without --resume to start a new run",
                ));
            }
            run.check_settings(saved.as_ref())?;
        } else if !run_files.is_empty() {
            if !options.overwrite {
                let model = saved
                    .as_ref()
                    .and_then(|s| s.settings.get("model"))
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                let message = match (checkpoints.first(), checkpoints.last()) {
                    (Some(a), Some(b)) => format!(
                        "it holds another run's checkpoints of epochs {a}..={b}{model}; pass \
                         --resume to continue that run, --overwrite to replace it, or choose \
                         another --out"
                    ),
                    _ if saved.is_some() => format!(
                        "it holds a run{model} that saved no epoch (stopped or diverged before its \
                         first checkpoint); pass --resume to start it again from its beginning, \
                         --overwrite to replace it, or choose another --out"
                    ),
                    _ => format!(
                        "it holds another run's files ({}); pass --overwrite to replace them, or \
                         choose another --out",
                        run_files.join(", ")
                    ),
                };
                return Err(Error::run(dir, message));
            }
            for name in &run_files {
                remove(&dir.join(name))?;
            }
            eprintln!(
                "--overwrite: removed the previous run's {} files from {}",
                run_files.len(),
                dir.display()
            );
        }
        if !options.resume {
            run.write_run_file()?;
        }
        Ok(run)
    }

    /// The run folder `dir` as the ranks other than 0 of a data-parallel run see it: they
    /// neither lock, check, clean, restore nor write anything ([`RunDir::save_epoch`] and
    /// [`RunDir::write_metrics`] do nothing); rank 0's [`RunDir::open`] does it all.
    pub fn follower(dir: &Path, kind: &str, epochs: usize, options: RunOptions) -> Self {
        RunDir {
            dir: dir.to_path_buf(),
            run: RunFile {
                kind: kind.to_string(),
                epochs,
                settings: RunSettings::new(),
            },
            options,
            verbose: false,
            writer: false,
            _lock: None,
        }
    }

    /// Whether this value writes the folder (not a [`RunDir::follower`]).
    pub fn is_writer(&self) -> bool {
        self.writer
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn saved(&self) -> Result<Option<RunFile>> {
        let path = self.dir.join(RUN_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::run(
                &self.dir,
                format!("{} is not a run file of this program: {e}", path.display()),
            )
        })
    }

    fn write_run_file(&self) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(&self.run).map_err(|e| Error::io(&self.dir, e.into()))?;
        bytes.push(b'\n');
        write_atomic(&self.dir.join(RUN_FILE), &bytes)
    }

    /// Refuses to resume a run with other settings (model, data, transforms, optimisation), unless
    /// allowed.
    fn check_settings(&self, saved: Option<&RunFile>) -> Result<()> {
        let Some(saved) = saved else {
            eprintln!(
                "warning: {} has no {RUN_FILE} (written by an older version): the settings of the resumed run cannot be checked",
                self.dir.display()
            );
            return Ok(());
        };
        let changes = differences(&saved.settings, &self.run.settings);
        if changes.is_empty() {
            return Ok(());
        }
        if !self.options.allow_changes {
            return Err(Error::run(
                &self.dir,
                format!(
                    "the run was started with other settings ({}); resume with the same \
                     settings, or pass --allow-changes to continue with the new ones",
                    changes.join("; ")
                ),
            ));
        }
        eprintln!("resuming with changed settings (--allow-changes):");
        for change in &changes {
            eprintln!("  {change}");
        }
        Ok(())
    }

    /// Removes what a killed run leaves: hidden temporary files, optimizer states and metrics
    /// records whose checkpoint was never written.
    fn clean_leftovers(&self) -> Result<()> {
        let checkpoints = epochs_with(&self.dir, ".safetensors");
        let mut removed = Vec::new();
        for name in file_names(&self.dir)? {
            if is_temporary(&name) {
                removed.push(name);
            }
        }
        for suffix in [".optimizer.safetensors", ".ema.safetensors"] {
            for epoch in epochs_with(&self.dir, suffix) {
                if !checkpoints.contains(&epoch) {
                    removed.push(format!("epoch-{epoch:03}{suffix}"));
                }
            }
        }
        let latest = latest_epoch(&self.dir).unwrap_or(0);
        for epoch in epochs_with(&self.dir, ".metrics.json") {
            if epoch > latest {
                removed.push(format!("epoch-{epoch:03}.metrics.json"));
            }
        }
        for name in &removed {
            remove(&self.dir.join(name))?;
        }
        // Said even with --quiet: files were deleted.
        if !removed.is_empty() {
            eprintln!(
                "removed {} files left by an interrupted run in {}: {}",
                removed.len(),
                self.dir.display(),
                removed.join(", ")
            );
        }
        Ok(())
    }

    /// With [`RunOptions::resume`]: loads the latest complete epoch into `varmap` and into the
    /// optimizer `optimizer_for(epoch)` builds, and returns that epoch and optimizer. An epoch
    /// whose files cannot be read (truncated, corrupt) is set aside as `*.corrupt` with a
    /// warning and the previous one is tried. A checkpoint that reads but does not fit the
    /// model is an error (nothing is set aside). Fails when the run already has `epochs`
    /// epochs. Without `resume`: `None`.
    pub fn restore(
        &self,
        varmap: &VarMap,
        mut optimizer_for: impl FnMut(usize) -> Result<Box<dyn Optimizer>>,
    ) -> Result<Option<(usize, Box<dyn Optimizer>)>> {
        if !self.options.resume || !self.writer {
            return Ok(None);
        }
        let candidates = complete_epochs(&self.dir);
        if candidates.is_empty() {
            eprintln!(
                "note: {} holds no complete epoch: the run starts again from epoch 1",
                self.dir.display()
            );
            self.write_run_file()?;
            return Ok(None);
        }
        if let Some(&latest) = candidates.last() {
            if latest >= self.run.epochs {
                return Err(Error::run(
                    &self.dir,
                    format!(
                        "the run has finished: it has {latest} epochs and {} were asked; pass a \
                         larger --epochs to train longer, or --overwrite to start again",
                        self.run.epochs
                    ),
                ));
            }
        }
        let mut first_failure: Option<Error> = None;
        for &epoch in candidates.iter().rev() {
            let checkpoint = checkpoint_path(&self.dir, epoch);
            let state_path = optimizer_path(&self.dir, epoch);
            let read = load_checkpoint(&checkpoint, &candle_core::Device::Cpu)
                // Optimizer state is float (moments, f64 step counts) and finite.
                .and_then(|weights| {
                    let state =
                        load_checkpoint_with(&state_path, &candle_core::Device::Cpu, &ReadOptions::float())?;
                    Ok((weights, state))
                });
            let (weights, state) = match read {
                Ok(read) => read,
                Err(e) => {
                    eprintln!(
                        "warning: epoch {epoch} cannot be resumed from ({e}); its files are kept as *.corrupt, trying the previous epoch"
                    );
                    for path in [&checkpoint, &state_path] {
                        let mut aside = path.clone().into_os_string();
                        aside.push(".corrupt");
                        std::fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
                    }
                    let record = record_path(&self.dir, epoch);
                    if record.exists() {
                        remove(&record)?;
                    }
                    first_failure.get_or_insert(e);
                    continue;
                }
            };
            apply_to_varmap(&checkpoint, weights, varmap)?;
            let mut optimizer = optimizer_for(epoch)?;
            optimizer
                .load_state(&state)
                .map_err(|e| Error::checkpoint(&state_path, format!("cannot restore the optimizer: {e}")))?;
            if self.verbose {
                eprintln!("resuming after epoch {epoch} from {}", checkpoint.display());
            }
            self.write_run_file()?;
            return Ok(Some((epoch, optimizer)));
        }
        Err(first_failure.unwrap_or_else(|| Error::run(&self.dir, "nothing to resume")))
    }

    /// The metrics of epochs `1..=upto`, in order, from the per-epoch records (unreadable ones
    /// skipped with a warning); epochs without a record (a folder written by an older version)
    /// come from `metrics.json` when it has them.
    pub fn history(&self, upto: usize) -> Vec<EpochMetrics> {
        let mut rows: Vec<EpochMetrics> = std::fs::read(self.dir.join("metrics.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<RunMetrics>(&bytes).ok())
            .map(|run| run.epochs.into_iter().filter(|r| r.epoch <= upto).collect())
            .unwrap_or_default();
        for epoch in epochs_with(&self.dir, ".metrics.json") {
            if epoch > upto {
                continue;
            }
            let path = record_path(&self.dir, epoch);
            let row = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<EpochMetrics>(&bytes).map_err(|e| e.to_string()));
            match row {
                Ok(row) if row.epoch == epoch => {
                    rows.retain(|r| r.epoch != epoch);
                    rows.push(row);
                }
                Ok(row) => {
                    eprintln!("warning: {} holds epoch {}, ignored", path.display(), row.epoch);
                }
                Err(e) => {
                    eprintln!("warning: {} is unreadable ({e}), ignored", path.display());
                }
            }
        }
        rows.sort_by_key(|r| r.epoch);
        rows.dedup_by_key(|r| r.epoch);
        rows
    }

    /// Saves an epoch: optimizer state, the weights' moving average (`ema`, when kept),
    /// metrics record, then the checkpoint (each atomic; the checkpoint last, so an epoch with
    /// a checkpoint is complete), then prunes checkpoints beyond the latest `keep` (0 keeps
    /// all).
    pub fn save_epoch(
        &self,
        row: &EpochMetrics,
        varmap: &VarMap,
        optimizer: &dyn Optimizer,
        ema: Option<&crate::ema::ModelEma>,
        keep: usize,
    ) -> Result<PathBuf> {
        let epoch = row.epoch;
        if !self.writer {
            return Ok(checkpoint_path(&self.dir, epoch));
        }
        crate::checkpoint::save_checkpoint(&optimizer_path(&self.dir, epoch), &optimizer.state()?)?;
        if let Some(ema) = ema {
            crate::checkpoint::save_checkpoint(&ema_path(&self.dir, epoch), &ema.state())?;
        }
        let mut bytes = serde_json::to_vec_pretty(row).map_err(|e| Error::io(&self.dir, e.into()))?;
        bytes.push(b'\n');
        write_atomic(&record_path(&self.dir, epoch), &bytes)?;
        let checkpoint = checkpoint_path(&self.dir, epoch);
        crate::checkpoint::save_varmap(&checkpoint, varmap)?;
        self.prune(epoch, keep)?;
        Ok(checkpoint)
    }

    /// Removes checkpoints and optimizer states of epochs `<= latest - keep`.
    fn prune(&self, latest: usize, keep: usize) -> Result<()> {
        if keep == 0 {
            return Ok(());
        }
        for suffix in [".safetensors", ".optimizer.safetensors", ".ema.safetensors"] {
            for epoch in epochs_with(&self.dir, suffix) {
                if epoch + keep <= latest {
                    let path = self.dir.join(format!("epoch-{epoch:03}{suffix}"));
                    remove(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Loads the weights' moving average saved with `epoch` into `ema` (a resumed run with
    /// `--model-ema`). A missing file is an error naming it, unless the run accepts changed
    /// settings (a run saved without the average, resumed with it): the average then starts
    /// from the restored weights, with a note.
    pub fn restore_ema(&self, epoch: usize, ema: &mut crate::ema::ModelEma) -> Result<()> {
        let path = ema_path(&self.dir, epoch);
        if !path.exists() && self.options.allow_changes {
            eprintln!(
                "note: {} does not exist: the weights' moving average starts from the restored weights",
                path.display()
            );
            return Ok(());
        }
        let state = load_checkpoint(&path, &candle_core::Device::Cpu)?;
        ema.load_state(state, &path)
    }

    /// The newest checkpoint in the folder.
    pub fn latest_checkpoint(&self) -> Option<PathBuf> {
        latest_epoch(&self.dir).map(|epoch| checkpoint_path(&self.dir, epoch))
    }

    /// Writes `metrics.json`, `metrics.csv` and `curves.png` (titled `title`) from `history`,
    /// and `confusion.png` when there is a final evaluation.
    pub fn write_metrics(
        &self,
        history: &[EpochMetrics],
        final_eval: Option<&EvalMetrics>,
        class_names: &[String],
        title: &str,
    ) -> Result<()> {
        if !self.writer {
            return Ok(());
        }
        let run = RunMetrics {
            epochs: history.to_vec(),
            final_eval: final_eval.cloned(),
            class_names: class_names.to_vec(),
            extra: serde_json::Value::Null,
        };
        let dir = &self.dir;
        crate::metrics::write_metrics_json(&dir.join("metrics.json"), &run)?;
        crate::metrics::write_metrics_csv(&dir.join("metrics.csv"), history)?;
        #[cfg(feature = "plot")]
        {
            crate::plot::plot_curves(&dir.join("curves.png"), history, title)?;
            if let Some(eval) = final_eval {
                crate::plot::plot_confusion(&dir.join("confusion.png"), &eval.confusion, class_names)?;
            }
        }
        #[cfg(not(feature = "plot"))]
        let _ = title;
        Ok(())
    }
}

/// Stops training on a non-finite loss, or one that explodes past `FACTOR` times the first
/// epoch's mean (or, during the first epoch, the first step's loss).
#[derive(Debug, Clone)]
pub struct LossGuard {
    reference: Option<f64>,
    /// The classifier's class count (guessing uniformly costs `ln(classes)`).
    classes: usize,
}

impl LossGuard {
    /// How many times the reference loss a step's loss may reach.
    pub const FACTOR: f64 = 1e3;
    /// The smallest reference (a nearly perfect first epoch would make any noise an explosion).
    const MIN_REFERENCE: f64 = 0.1;

    /// A guard for a classifier of `classes` classes whose reference is the first recorded
    /// epoch's training loss, if any. The reference never exceeds the loss of chance-level
    /// guessing, `ln(classes)`: a first epoch that is already absurd (inputs normalised by a
    /// std of 1e-30, say) does not make every later loss look fine.
    pub fn new(history: &[EpochMetrics], classes: usize) -> Self {
        Self {
            reference: history
                .iter()
                .find(|r| r.epoch == 1)
                .map(|r| r.train_loss)
                .filter(|l| l.is_finite()),
            classes: classes.max(2),
        }
    }

    /// Sets the reference to the first epoch's mean loss (once).
    pub fn end_epoch(&mut self, row: &EpochMetrics) {
        if row.epoch == 1 && row.train_loss.is_finite() {
            self.reference = Some(row.train_loss);
        }
    }

    /// Checks a step's loss (before it is applied); the error names the epoch, step and the
    /// newest checkpoint of `run`, which is left untouched.
    pub fn check(&mut self, loss: f64, epoch: usize, step: usize, run: &RunDir) -> Result<()> {
        let problem = if !loss.is_finite() {
            Some(format!("the loss is {loss}"))
        } else {
            let first = *self.reference.get_or_insert(loss);
            let chance = (self.classes as f64).ln();
            let (reference, what) = if first > chance {
                (chance, format!("chance level's (ln of {} classes)", self.classes))
            } else {
                (first, "the first epoch's".to_string())
            };
            let bound = Self::FACTOR * reference.max(Self::MIN_REFERENCE);
            (loss > bound).then(|| {
                format!(
                    "the loss {loss:.4e} exceeds {} x {what} {reference:.4}",
                    Self::FACTOR
                )
            })
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(Error::Diverged {
                epoch,
                step,
                problem: format!("{problem}; lower the learning rate, and check the inputs' normalisation"),
                last_good: run.latest_checkpoint(),
            }),
        }
    }
}

/// A short, stable fingerprint of some bytes (FNV-1a, 64 bits), to tell datasets apart in
/// [`RunSettings`].
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash = hash.wrapping_mul(0x0100_0000_01b3) ^ part.len() as u64;
    }
    format!("{hash:016x}")
}
