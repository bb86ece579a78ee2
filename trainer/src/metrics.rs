//! Evaluation metrics and the run history: top-1 / top-k accuracy, the confusion matrix (counted
//! and printed), per-epoch metrics written as JSON and CSV, and the [`softmax`] and [`top_k`]
//! helpers of prediction.
//!
//! Everything here works on the host: the logits of a batch (`[N, C]`) are copied once per batch,
//! which is small next to the forward pass that produced them.
//!
//! Ranking rule (used by [`top_k`], top-1 / top-k accuracy and the confusion matrix): higher
//! scores first; equal scores go to the lower class index first (`torch.topk` does not specify
//! its order for ties, `torch.argmax` returns the first maximum, as here); NaN ranks below every
//! number.

use crate::checkpoint::write_atomic;
use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::path::Path;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// The `k` of the top-k accuracy: 5, or the number of classes when there are fewer.
pub const TOP_K: usize = 5;

/// Above this many classes, [`ConfusionMatrix::render`] prints the most-confused pairs instead of
/// the whole matrix.
pub const MAX_PRINTED_CLASSES: usize = 20;

/// How many of the most-confused pairs [`ConfusionMatrix::render`] prints for many classes.
const PRINTED_PAIRS: usize = 20;

/// Longest class name [`ConfusionMatrix::render`] prints, in characters (longer names are
/// truncated with an ellipsis).
const PRINTED_NAME_CHARS: usize = 18;

/// Orders `(index, score)` pairs by the ranking rule of the module docs (best first).
fn rank(a: &(usize, f32), b: &(usize, f32)) -> Ordering {
    match (a.1.is_nan(), b.1.is_nan()) {
        (false, false) => {
            b.1.partial_cmp(&a.1)
                .unwrap_or(Ordering::Equal)
                .then(a.0.cmp(&b.0))
        }
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (true, true) => a.0.cmp(&b.0),
    }
}

/// The `k` highest entries of `row` (scores or probabilities) as `(class index, value)`, best
/// first; equal values keep the lower index first and NaN ranks last. Returns
/// `min(k, row.len())` entries.
pub fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let k = k.min(row.len());
    let mut pairs: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
    if k == 0 {
        return Vec::new();
    }
    if k < pairs.len() {
        pairs.select_nth_unstable_by(k - 1, rank);
        pairs.truncate(k);
    }
    pairs.sort_unstable_by(rank);
    pairs
}

/// The index of the highest entry of a non-empty `row` (the first one among equals, NaN last).
fn argmax(row: &[f32]) -> usize {
    row.iter().copied().enumerate().min_by(rank).map_or(0, |(i, _)| i)
}

/// The softmax of `row`, computed with the maximum subtracted first so that large scores
/// neither overflow nor underflow. Entries of `+inf` share the whole probability; a row of only
/// `-inf` gives a uniform distribution; a NaN anywhere gives NaN everywhere. An empty row gives
/// an empty vector.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    if row.iter().any(|x| x.is_nan()) {
        return vec![f32::NAN; row.len()];
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = if max == f32::INFINITY {
        row.iter().map(|&x| if x == max { 1.0 } else { 0.0 }).collect()
    } else if max == f32::NEG_INFINITY {
        vec![1.0; row.len()]
    } else {
        row.iter()
            .map(|&x| (f64::from(x) - f64::from(max)).exp())
            .collect()
    };
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| (w / sum) as f32).collect()
}

/// Copies a batch to the host after checking it: `logits` `[N, C]` of a float dtype with
/// `C == num_classes` (when given) and `targets` `[N]` of an integer dtype with every value in
/// `0..C`. Returns the logits row-major, the targets and `C`.
fn host_batch(
    what: &str,
    logits: &Tensor,
    targets: &Tensor,
    num_classes: Option<usize>,
) -> Result<(Vec<f32>, Vec<usize>, usize)> {
    let (_, c, labels) = crate::loss::check_logits_targets(what, logits, targets)?;
    if let Some(expected) = num_classes {
        if c != expected {
            return Err(Error::config(format!(
                "{what}: logits have {c} classes (shape {:?}), expected {expected}",
                logits.dims()
            )));
        }
    }
    let scores = logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok((scores, labels, c))
}

/// Counts of (true class, predicted class) pairs: row = true class, column = predicted class.
///
/// Serialised as `{"num_classes": C, "counts": [[...], ...]}` (one array per true class).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ConfusionRepr", try_from = "ConfusionRepr")]
pub struct ConfusionMatrix {
    num_classes: usize,
    counts: Vec<u64>,
}

/// The serialised form of [`ConfusionMatrix`].
#[derive(Serialize, Deserialize)]
struct ConfusionRepr {
    num_classes: usize,
    counts: Vec<Vec<u64>>,
}

impl From<ConfusionMatrix> for ConfusionRepr {
    fn from(cm: ConfusionMatrix) -> Self {
        let counts = if cm.num_classes == 0 {
            Vec::new()
        } else {
            cm.counts.chunks(cm.num_classes).map(<[u64]>::to_vec).collect()
        };
        ConfusionRepr {
            num_classes: cm.num_classes,
            counts,
        }
    }
}

impl TryFrom<ConfusionRepr> for ConfusionMatrix {
    type Error = String;

    fn try_from(repr: ConfusionRepr) -> std::result::Result<Self, String> {
        let n = repr.num_classes;
        if repr.counts.len() != n || repr.counts.iter().any(|row| row.len() != n) {
            return Err(format!(
                "a confusion matrix of {n} classes needs {n} rows of {n} counts"
            ));
        }
        Ok(ConfusionMatrix {
            num_classes: n,
            counts: repr.counts.concat(),
        })
    }
}

impl ConfusionMatrix {
    /// An empty matrix for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            counts: vec![0; num_classes * num_classes],
        }
    }

    /// The number of classes `C`.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Counts one image of class `actual` predicted as `predicted`. Fails with
    /// [`Error::Config`] when either is not in `0..C`.
    pub fn add(&mut self, actual: usize, predicted: usize) -> Result<()> {
        let n = self.num_classes;
        if actual >= n || predicted >= n {
            return Err(Error::config(format!(
                "confusion matrix: class pair (true {actual}, predicted {predicted}) is out of range \
                 for {n} classes (expected 0..{n})"
            )));
        }
        self.counts[actual * n + predicted] += 1;
        Ok(())
    }

    /// Counts a batch: the prediction of each row of `logits` `[N, C]` is its highest score (the
    /// first one among equals), the true classes are `targets` `[N]` (any integer dtype). Fails
    /// with [`Error::Config`] when the shapes, the dtypes or `C` do not fit or a target is not in
    /// `0..C`; nothing is counted then.
    pub fn add_batch(&mut self, logits: &Tensor, targets: &Tensor) -> Result<()> {
        let (scores, labels, c) = host_batch("confusion matrix", logits, targets, Some(self.num_classes))?;
        for (row, &t) in scores.chunks(c).zip(&labels) {
            self.counts[t * c + argmax(row)] += 1;
        }
        Ok(())
    }

    /// The number of images of class `actual` predicted as `predicted` (0 out of range).
    pub fn get(&self, actual: usize, predicted: usize) -> u64 {
        if actual < self.num_classes && predicted < self.num_classes {
            self.counts[actual * self.num_classes + predicted]
        } else {
            0
        }
    }

    /// All counts, row-major (`counts()[actual * C + predicted]`).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The counts of true class `actual` (one per predicted class); empty out of range.
    pub fn row(&self, actual: usize) -> &[u64] {
        if actual < self.num_classes {
            &self.counts[actual * self.num_classes..(actual + 1) * self.num_classes]
        } else {
            &[]
        }
    }

    /// The number of images counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The number of images whose prediction is their true class (the diagonal).
    pub fn correct(&self) -> u64 {
        (0..self.num_classes).map(|i| self.get(i, i)).sum()
    }

    /// The fraction of images predicted correctly, in `[0, 1]`; 0 when nothing was counted.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            self.correct() as f64 / total as f64
        }
    }

    /// Per true class, the fraction of its images predicted correctly (recall); `None` for a
    /// class without images.
    pub fn per_class_recall(&self) -> Vec<Option<f64>> {
        (0..self.num_classes)
            .map(|i| {
                let total: u64 = self.row(i).iter().sum();
                (total > 0).then(|| self.get(i, i) as f64 / total as f64)
            })
            .collect()
    }

    /// Per predicted class, the fraction of the images predicted as it that belong to it
    /// (precision); `None` for a class never predicted.
    pub fn per_class_precision(&self) -> Vec<Option<f64>> {
        (0..self.num_classes)
            .map(|j| {
                let total: u64 = (0..self.num_classes).map(|i| self.get(i, j)).sum();
                (total > 0).then(|| self.get(j, j) as f64 / total as f64)
            })
            .collect()
    }

    /// Up to `limit` off-diagonal pairs `(true class, predicted class, count)` with a non-zero
    /// count, the most frequent first (ties: by true class, then predicted class).
    pub fn most_confused(&self, limit: usize) -> Vec<(usize, usize, u64)> {
        let n = self.num_classes;
        let mut pairs: Vec<(usize, usize, u64)> = (0..n * n)
            .filter(|&k| k / n != k % n && self.counts[k] > 0)
            .map(|k| (k / n, k % n, self.counts[k]))
            .collect();
        pairs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        pairs.truncate(limit);
        pairs
    }

    /// The matrix as a table for the terminal. Rows are true classes labelled `index name`
    /// (names from `class_names`, truncated to 18 characters; classes beyond the names get their
    /// index only), columns are predicted classes labelled by index, and the last column is the
    /// recall of the row. With more than [`MAX_PRINTED_CLASSES`] classes it prints a note and the
    /// most-confused pairs instead.
    pub fn render(&self, class_names: &[String]) -> String {
        let n = self.num_classes;
        let mut out = String::new();
        let total = self.total();
        let _ = writeln!(
            out,
            "confusion matrix: {n} classes, {total} images, accuracy {:.2}%",
            100.0 * self.accuracy()
        );
        let name = |i: usize| -> String {
            match class_names.get(i) {
                Some(name) => format!("{i} {}", truncate(name, PRINTED_NAME_CHARS)),
                None => i.to_string(),
            }
        };
        if n > MAX_PRINTED_CLASSES {
            let pairs = self.most_confused(PRINTED_PAIRS);
            let _ = writeln!(
                out,
                "(too many classes to print the matrix; the {} most frequent confusions)",
                pairs.len()
            );
            if pairs.is_empty() {
                let _ = writeln!(out, "no confusions");
                return out;
            }
            let count_width = pairs.iter().map(|p| digits(p.2)).max().unwrap_or(1).max(5);
            let true_width = pairs.iter().map(|p| name(p.0).chars().count()).max().unwrap_or(0);
            let _ = writeln!(
                out,
                "{:>count_width$}  {:<true_width$}    predicted",
                "count", "true"
            );
            for (t, p, count) in pairs {
                let _ = writeln!(
                    out,
                    "{count:>count_width$}  {:<true_width$} -> {}",
                    name(t),
                    name(p)
                );
            }
            return out;
        }
        let _ = writeln!(out, "rows: true class, columns: predicted class");
        let labels: Vec<String> = (0..n).map(name).collect();
        let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0).max(4);
        let max_count = self.counts.iter().copied().max().unwrap_or(0);
        let cell = digits(max_count).max(digits(n.saturating_sub(1) as u64)) + 1;
        let _ = write!(out, "{:<label_width$}", "true");
        for j in 0..n {
            let _ = write!(out, " {j:>cell$}");
        }
        let _ = writeln!(out, "  recall");
        for (i, recall) in self.per_class_recall().into_iter().enumerate() {
            let _ = write!(out, "{:<label_width$}", labels[i]);
            for count in self.row(i) {
                let _ = write!(out, " {count:>cell$}");
            }
            match recall {
                Some(r) => {
                    let _ = writeln!(out, "  {:>5.1}%", 100.0 * r);
                }
                None => {
                    let _ = writeln!(out, "  {:>6}", "-");
                }
            }
        }
        out
    }
}

impl fmt::Display for ConfusionMatrix {
    /// [`ConfusionMatrix::render`] without class names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&[]))
    }
}

/// The number of decimal digits of `v`.
fn digits(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// `s` cut to at most `max` characters, the last one an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Deserialises an `f64` that may have been written as `null` (serde_json writes non-finite
/// numbers as `null`) as NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Metrics of one evaluation pass. Accuracies are fractions in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Mean loss per image.
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
    /// Top-1 accuracy.
    #[serde(deserialize_with = "f64_or_nan")]
    pub top1: f64,
    /// Top-k accuracy with `k = min(5, C)` (so 1 when there are at most 5 classes).
    #[serde(deserialize_with = "f64_or_nan")]
    pub top5: f64,
    /// Number of images evaluated.
    pub count: usize,
    /// The confusion matrix of the top-1 predictions.
    pub confusion: ConfusionMatrix,
}

/// Accumulates [`EvalMetrics`] batch by batch.
#[derive(Debug, Clone)]
pub struct MetricsAccumulator {
    loss_sum: f64,
    top1: u64,
    topk: u64,
    count: usize,
    confusion: ConfusionMatrix,
}

impl MetricsAccumulator {
    /// An empty accumulator for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            loss_sum: 0.0,
            top1: 0,
            topk: 0,
            count: 0,
            confusion: ConfusionMatrix::new(num_classes),
        }
    }

    /// Adds a batch: `logits` `[N, C]`, `targets` `[N]` (any integer dtype) and `loss_sum`, the
    /// batch's summed per-image loss (its mean loss times `N`). Top-1, top-k (`k = min(5, C)`)
    /// and the confusion matrix are computed here, on the host, with the ranking rule of the
    /// module docs. Fails with [`Error::Config`] when the shapes, the dtypes or `C` do not fit or
    /// a target is not in `0..C`; nothing is added then.
    pub fn update(&mut self, logits: &Tensor, targets: &Tensor, loss_sum: f64) -> Result<()> {
        let num_classes = self.confusion.num_classes();
        let (scores, labels, c) = host_batch("metrics", logits, targets, Some(num_classes))?;
        let k = TOP_K.min(c);
        for (row, &t) in scores.chunks(c).zip(&labels) {
            let best = top_k(row, k);
            if let Some(&(predicted, _)) = best.first() {
                self.top1 += u64::from(predicted == t);
                self.confusion.add(t, predicted)?;
            }
            self.topk += u64::from(best.iter().any(|&(i, _)| i == t));
        }
        self.loss_sum += loss_sum;
        self.count += labels.len();
        Ok(())
    }

    /// The number of images added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Replaces every sum (loss, top-1 and top-k counts, image count, confusion matrix) with
    /// its sum over the ranks of a data-parallel evaluation: `all_reduce_sum` sums a slice of
    /// `f64` over the ranks in place (counts stay exact below 2^53).
    pub fn all_reduce(&mut self, all_reduce_sum: impl FnOnce(&mut [f64]) -> Result<()>) -> Result<()> {
        let mut values = vec![
            self.loss_sum,
            self.top1 as f64,
            self.topk as f64,
            self.count as f64,
        ];
        values.extend(self.confusion.counts.iter().map(|&c| c as f64));
        all_reduce_sum(&mut values)?;
        self.loss_sum = values[0];
        self.top1 = values[1].round() as u64;
        self.topk = values[2].round() as u64;
        self.count = values[3].round() as usize;
        for (c, v) in self.confusion.counts.iter_mut().zip(&values[4..]) {
            *c = v.round() as u64;
        }
        Ok(())
    }

    /// The metrics of everything added: mean loss, top-1 and top-k accuracy and the confusion
    /// matrix. All zero when nothing was added.
    pub fn finish(self) -> EvalMetrics {
        let n = self.count.max(1) as f64;
        EvalMetrics {
            loss: self.loss_sum / n,
            top1: self.top1 as f64 / n,
            top5: self.topk as f64 / n,
            count: self.count,
            confusion: self.confusion,
        }
    }
}

/// Metrics of one training epoch. Accuracies are fractions in `[0, 1]`; a value that was not
/// measured is NaN (written as `null` in JSON and as an empty field in CSV).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss.
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    /// Training top-1 accuracy (measured on the fly, in training mode).
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_top1: f64,
    /// Mean validation loss.
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_loss: f64,
    /// Validation top-1 accuracy.
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_top1: f64,
    /// Validation top-k accuracy, `k = min(5, C)`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_top5: f64,
    /// Learning rate at the end of the epoch.
    #[serde(deserialize_with = "f64_or_nan")]
    pub lr: f64,
    /// Wall time of the epoch, seconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub seconds: f64,
    /// Training throughput, images per second.
    #[serde(deserialize_with = "f64_or_nan")]
    pub images_per_sec: f64,
    /// Mean auxiliary-classifier loss (the mean over the auxiliary heads; NaN for a model
    /// without them).
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub train_aux_loss: f64,
    /// Validation loss of the weights' moving average (NaN without `--model-ema`).
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub val_ema_loss: f64,
    /// Validation top-1 accuracy of the weights' moving average (NaN without `--model-ema`).
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub val_ema_top1: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// Everything a run reports: the epochs, the final evaluation, the class names and free-form
/// extra information (model, configuration, ...), written by [`write_metrics_json`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunMetrics {
    /// One entry per epoch.
    pub epochs: Vec<EpochMetrics>,
    /// The evaluation after training, if any.
    pub final_eval: Option<EvalMetrics>,
    /// The class names, by index (may be empty).
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Anything else worth keeping with the metrics (`null` when unused).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// The header of [`write_metrics_csv`]'s files.
pub const METRICS_CSV_HEADER: &str =
    "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,seconds,images_per_sec,train_aux_loss,val_ema_loss,val_ema_top1";

/// Writes `run` to `path` as pretty-printed JSON, atomically (a temporary file in the same
/// directory renamed over `path`), creating the parent directories. Non-finite numbers are
/// written as `null`. Errors ([`Error::Io`]) name the file.
pub fn write_metrics_json(path: &Path, run: &RunMetrics) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(run).map_err(|e| Error::io(path, e.into()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// One line of `metrics.csv`: the fields of [`EpochMetrics`] in order, a value that was not
/// measured left empty.
#[derive(Serialize)]
struct CsvRow {
    epoch: usize,
    train_loss: Option<f64>,
    train_top1: Option<f64>,
    val_loss: Option<f64>,
    val_top1: Option<f64>,
    val_top5: Option<f64>,
    lr: Option<f64>,
    seconds: Option<f64>,
    images_per_sec: Option<f64>,
    train_aux_loss: Option<f64>,
    val_ema_loss: Option<f64>,
    val_ema_top1: Option<f64>,
}

impl From<&EpochMetrics> for CsvRow {
    fn from(e: &EpochMetrics) -> Self {
        let field = |v: f64| v.is_finite().then_some(v);
        CsvRow {
            epoch: e.epoch,
            train_loss: field(e.train_loss),
            train_top1: field(e.train_top1),
            val_loss: field(e.val_loss),
            val_top1: field(e.val_top1),
            val_top5: field(e.val_top5),
            lr: field(e.lr),
            seconds: field(e.seconds),
            images_per_sec: field(e.images_per_sec),
            train_aux_loss: field(e.train_aux_loss),
            val_ema_loss: field(e.val_ema_loss),
            val_ema_top1: field(e.val_ema_top1),
        }
    }
}

/// Writes `epochs` to `path` as CSV (the `csv` crate) with the header [`METRICS_CSV_HEADER`],
/// one line per epoch, numbers in their shortest exact form and non-finite values as empty
/// fields; atomically, like [`write_metrics_json`].
pub fn write_metrics_csv(path: &Path, epochs: &[EpochMetrics]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| Error::io(path, std::io::Error::other(e.to_string()));
    if epochs.is_empty() {
        writer
            .write_record(METRICS_CSV_HEADER.split(','))
            .map_err(csv_error)?;
    }
    for e in epochs {
        writer.serialize(CsvRow::from(e)).map_err(csv_error)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    write_atomic(path, &bytes)
}
