//! [`DataLoader`]: seeded, optionally multi-threaded mini-batches of any [`Dataset`] through a
//! transform [`Pipeline`].
//!
//! Determinism: the order of epoch `e` depends only on `(seed, e)` (a ChaCha8 generator seeded
//! with `seed` on stream `e`, and an unbiased Fisher-Yates of our own, so it does not change with
//! the version of `rand`), and the transform of sample `i` in epoch `e` draws from a ChaCha8
//! generator keyed by `(seed, e)` on stream `i`. Batches are therefore bit-identical whatever the
//! number of workers and whatever the batch size (for the per-sample transforms).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::image::{shuffle, Dataset};
use crate::data::transforms::Pipeline;
use crate::error::{Error, Result};

/// What the loader does with a sample whose file cannot be read or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCorrupt {
    /// Leave it out of its batch and record it (see [`DataLoader::skipped`]).
    #[default]
    Skip,
    /// Yield the error (naming the file) in place of the batch.
    Fail,
}

/// How a [`DataLoader`] cuts, orders and loads a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch (the last batch may be smaller unless `drop_last`, and skipped samples
    /// make a batch smaller); must be positive.
    pub batch_size: usize,
    /// Whether each epoch visits the samples in a seeded random order (else in dataset order).
    pub shuffle: bool,
    /// Seed of the order and of the random transforms.
    pub seed: u64,
    /// Whether to drop the last batch when the dataset does not fill it.
    pub drop_last: bool,
    /// Threads decoding and transforming batches ahead of the consumer; 0 loads each batch on
    /// the calling thread when it is asked for.
    pub workers: usize,
    /// Batches loaded (or being loaded) ahead of the consumer when `workers > 0`; at least
    /// `workers` are (one per worker).
    pub prefetch: usize,
    /// What to do with unreadable or corrupt samples.
    pub on_corrupt: OnCorrupt,
}

impl LoaderConfig {
    /// Batches of `batch_size`, shuffled with seed 0, last partial batch kept, no worker thread,
    /// prefetch 2, corrupt samples skipped.
    pub fn new(batch_size: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size,
            shuffle: true,
            seed: 0,
            drop_last: false,
            workers: 0,
            prefetch: 2,
            on_corrupt: OnCorrupt::Skip,
        }
    }
}

impl Default for LoaderConfig {
    /// [`LoaderConfig::new`] with batch size 64.
    fn default() -> Self {
        LoaderConfig::new(64)
    }
}

/// One mini-batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[N, C, H, W]` images in the loader's dtype (f32 unless [`DataLoader::with_dtype`]).
    pub images: Tensor,
    /// `[N]` u32 labels.
    pub labels: Tensor,
    /// The dataset index of each image (skipped samples are absent).
    pub indices: Vec<usize>,
}

/// The samples skipped so far: unique descriptions in order of first skip, with their message.
#[derive(Debug, Default)]
struct SkipLog {
    entries: Vec<(String, String)>,
    seen: HashSet<String>,
    count: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stay consistent (plain counters and lists), so a poisoned lock is used
    // as is rather than turned into a panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Batches a [`Dataset`] through a transform [`Pipeline`], epoch after epoch.
///
/// ```no_run
/// # fn main() -> trainer::Result<()> {
/// use std::sync::Arc;
/// use trainer::data::{DataLoader, ImageFolder, Interpolation, LoaderConfig, Pipeline};
/// use trainer::data::{IMAGENET_MEAN, IMAGENET_STD};
/// let folder = Arc::new(ImageFolder::open("data/train")?);
/// let transform = Pipeline::train((224, 224), Interpolation::Bilinear, &IMAGENET_MEAN, &IMAGENET_STD)?;
/// let config = LoaderConfig { workers: 4, prefetch: 8, ..LoaderConfig::new(32) };
/// let loader = DataLoader::new(folder, transform, config)?;
/// for batch in loader.epoch(0, &candle_core::Device::Cpu) {
///     let batch = batch?; // [32, 3, 224, 224] f32 images, [32] u32 labels
///     # let _ = batch;
/// }
/// for (file, problem) in loader.skipped() {
///     eprintln!("skipped {file}: {problem}");
/// }
/// # Ok(()) }
/// ```
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    transform: Arc<Pipeline>,
    config: LoaderConfig,
    skipped: Arc<Mutex<SkipLog>>,
    /// `(rank, world)`: the shard of each epoch this loader reads (`(0, 1)`: all of it).
    shard: (usize, usize),
    /// Whether the shards are padded to equal lengths (training, [`DataLoader::with_shard`])
    /// or split exactly (evaluation, [`DataLoader::with_eval_shard`]).
    padded: bool,
    /// The dtype of the images of the batches ([`DataLoader::with_dtype`]).
    dtype: DType,
}

impl fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataLoader")
            .field("len", &self.dataset.len())
            .field("transform", &self.transform)
            .field("config", &self.config)
            .finish()
    }
}

impl DataLoader {
    /// A loader of `dataset` through `transform`. Fails when the batch size is 0, a transform
    /// step is invalid or the dataset is empty.
    pub fn new(dataset: Arc<dyn Dataset>, transform: Pipeline, config: LoaderConfig) -> Result<DataLoader> {
        if config.batch_size == 0 {
            return Err(Error::config(
                "data loader: the batch size must be positive, got 0",
            ));
        }
        if dataset.is_empty() {
            return Err(Error::config("data loader: the dataset is empty"));
        }
        transform.validate()?;
        Ok(DataLoader {
            dataset,
            transform: Arc::new(transform),
            config,
            skipped: Arc::default(),
            shard: (0, 1),
            padded: true,
            dtype: DType::F32,
        })
    }

    /// The loader whose batches hold their images in `dtype` (a float dtype: the dtype of the
    /// model they feed, e.g. f64); the transforms still compute in f32, the batch is converted.
    pub fn with_dtype(mut self, dtype: DType) -> Result<DataLoader> {
        if !dtype.is_float() {
            return Err(Error::config(format!(
                "data loader: images are floating point, not {dtype:?}"
            )));
        }
        self.dtype = dtype;
        Ok(self)
    }

    /// The dtype of the batches' images (f32 unless [`DataLoader::with_dtype`]).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The loader of rank `rank`'s shard of every epoch over `world` ranks (torch's
    /// `DistributedSampler`, see [`crate::distributed::shard_indices`]): the same seeded order
    /// on every rank, padded to a multiple of `world`, rank `rank` takes every `world`-th index.
    pub fn with_shard(mut self, rank: usize, world: usize) -> Result<DataLoader> {
        if world == 0 || rank >= world {
            return Err(Error::config(format!(
                "data loader: rank {rank} is not one of {world} ranks"
            )));
        }
        self.shard = (rank, world);
        self.padded = true;
        Ok(self)
    }

    /// The loader of rank `rank`'s part of every pass over `world` ranks for evaluation: the
    /// positions `rank, rank + world, ...` of the order, without padding
    /// ([`crate::distributed::split_indices_exact`]), so that the ranks' metrics, summed, count
    /// every image once. A rank may have one image fewer than another, or none.
    pub fn with_eval_shard(mut self, rank: usize, world: usize) -> Result<DataLoader> {
        self = self.with_shard(rank, world)?;
        self.padded = false;
        Ok(self)
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// The transform applied to each sample.
    pub fn transform(&self) -> &Pipeline {
        &self.transform
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Number of batches of each epoch: `ceil(len / batch_size)`, or `floor` with `drop_last`
    /// (an epoch yields fewer when every sample of a batch is skipped).
    pub fn num_batches(&self) -> usize {
        let (rank, world) = self.shard;
        let len = match self.padded {
            true => crate::distributed::shard_len(self.dataset.len(), world),
            false => self.dataset.len().saturating_sub(rank).div_ceil(world),
        };
        super::num_batches(len, self.config.batch_size, self.config.drop_last)
    }

    /// The order in which epoch `epoch` visits the dataset (all indices, including those of a
    /// dropped last batch); with [`DataLoader::with_shard`], this rank's shard of it.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
            rng.set_stream(epoch as u64);
            shuffle(&mut order, &mut rng);
        }
        match self.padded {
            true => crate::distributed::shard_indices(&order, self.shard.0, self.shard.1),
            false => crate::distributed::split_indices_exact(&order, self.shard.0, self.shard.1),
        }
    }

    /// The batches of epoch `epoch`, with tensors on `device`, in order. With `workers > 0`,
    /// worker threads load batches ahead; dropping the iterator stops and joins them.
    pub fn epoch(&self, epoch: usize, device: &Device) -> Epoch {
        let job = Arc::new(Job {
            dataset: Arc::clone(&self.dataset),
            transform: Arc::clone(&self.transform),
            seed: self.config.seed,
            epoch,
            batch_size: self.config.batch_size,
            order: self.order(epoch),
            on_corrupt: self.config.on_corrupt,
            cancelled: AtomicBool::new(false),
        });
        let end = self.num_batches();
        let mode = if self.config.workers == 0 || end == 0 {
            Mode::Inline
        } else {
            let window = self.config.prefetch.max(self.config.workers).max(1);
            match Pool::spawn(&job, self.config.workers, window, end) {
                Some(pool) => Mode::Pool(pool),
                // Threads could not be started: load on the calling thread (same batches).
                None => Mode::Inline,
            }
        };
        Epoch {
            job,
            skipped: Arc::clone(&self.skipped),
            device: device.clone(),
            dtype: self.dtype,
            next: 0,
            end,
            mode,
        }
    }

    /// The samples skipped so far (with [`OnCorrupt::Skip`]), over all epochs: each sample's
    /// description (its file) once, in order of first skip, with the error message.
    pub fn skipped(&self) -> Vec<(String, String)> {
        lock(&self.skipped).entries.clone()
    }

    /// How many times a sample was skipped so far (a corrupt file counts once per epoch).
    pub fn skipped_count(&self) -> usize {
        lock(&self.skipped).count
    }
}

/// What every loader of one epoch shares.
struct Job {
    dataset: Arc<dyn Dataset>,
    transform: Arc<Pipeline>,
    seed: u64,
    epoch: usize,
    batch_size: usize,
    order: Vec<usize>,
    on_corrupt: OnCorrupt,
    cancelled: AtomicBool,
}

/// A batch as loaded, before the tensors are made on the consumer's device.
struct Loaded {
    /// The batch, or `None` when every sample was skipped (or the epoch was cancelled).
    batch: Result<Option<Pixels>>,
    /// `(description, message)` of the samples skipped.
    skipped: Vec<(String, String)>,
}

struct Pixels {
    data: Vec<f32>,
    dims: (usize, usize, usize),
    labels: Vec<u32>,
    indices: Vec<usize>,
}

/// The generator of sample `index`'s transform in `epoch`: a ChaCha key made of the seed, the
/// epoch and a constant that keeps it apart from the shuffling generator, one stream per sample.
fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..24].copy_from_slice(b"loader!!");
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index as u64);
    rng
}

/// The generator of batch `batch`'s batch-level augmentation (e.g. [`Mixup`](crate::data::Mixup))
/// in `epoch`: keyed like the samples' generators, with its own constant and one stream per
/// batch, so a resumed run draws the same numbers as an uninterrupted one.
pub fn batch_rng(seed: u64, epoch: usize, batch: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..24].copy_from_slice(b"batches!");
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(batch as u64);
    rng
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

impl Job {
    fn load(&self, batch: usize) -> Loaded {
        let start = batch.saturating_mul(self.batch_size).min(self.order.len());
        let stop = start.saturating_add(self.batch_size).min(self.order.len());
        let mut skipped = Vec::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.load_indices(&self.order[start..stop], &mut skipped)
        }));
        let batch = match outcome {
            Ok(result) => result,
            Err(payload) => {
                let first = self.order.get(start).copied().unwrap_or_default();
                Err(Error::dataset(
                    self.dataset.describe(first),
                    format!(
                        "a data loader worker panicked while loading the batch starting with this sample: {}",
                        panic_message(payload.as_ref())
                    ),
                ))
            }
        };
        Loaded { batch, skipped }
    }

    fn load_indices(&self, indices: &[usize], skipped: &mut Vec<(String, String)>) -> Result<Option<Pixels>> {
        let num_classes = self.dataset.num_classes();
        let mut pixels: Option<Pixels> = None;
        let mut first_description = String::new();
        for &index in indices {
            if self.cancelled.load(Ordering::Relaxed) {
                return Ok(None);
            }
            // A panic is a bug, never a corrupt file: it fails even with `OnCorrupt::Skip`.
            let got = catch_unwind(AssertUnwindSafe(|| self.dataset.get(index))).map_err(|payload| {
                Error::dataset(
                    self.dataset.describe(index),
                    format!("panicked while loading: {}", panic_message(payload.as_ref())),
                )
            })?;
            let sample = match got {
                Ok(sample) => sample,
                Err(Error::Dataset { path, problem }) if self.on_corrupt == OnCorrupt::Skip => {
                    skipped.push((path.display().to_string(), problem));
                    continue;
                }
                Err(e @ Error::Io { .. }) if self.on_corrupt == OnCorrupt::Skip => {
                    skipped.push((self.dataset.describe(index), e.to_string()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let describe = || self.dataset.describe(index);
            if sample.label >= num_classes {
                return Err(Error::dataset(
                    describe(),
                    format!(
                        "label {} is out of range: expected a class < {num_classes}",
                        sample.label
                    ),
                ));
            }
            let label = u32::try_from(sample.label).map_err(|_| {
                Error::dataset(describe(), format!("label {} does not fit u32", sample.label))
            })?;
            let mut rng = sample_rng(self.seed, self.epoch, index);
            let image = catch_unwind(AssertUnwindSafe(|| self.transform.apply(sample.image, &mut rng)))
                .unwrap_or_else(|payload| {
                    Err(Error::config(format!(
                        "panicked while transforming: {}",
                        panic_message(payload.as_ref())
                    )))
                })
                .map_err(|e| Error::dataset(describe(), format!("transform failed: {e}")))?;
            image
                .validate()
                .map_err(|e| Error::dataset(describe(), format!("transform output: {e}")))?;
            match &mut pixels {
                None => {
                    first_description = describe();
                    pixels = Some(Pixels {
                        dims: image.dims(),
                        data: image.data,
                        labels: vec![label],
                        indices: vec![index],
                    });
                }
                Some(p) => {
                    if image.dims() != p.dims {
                        let (c, h, w) = image.dims();
                        let (c0, h0, w0) = p.dims;
                        return Err(Error::dataset(
                            describe(),
                            format!(
                                "after the transform this image is {c}x{h}x{w} (CxHxW) but the batch's first \
                                 image ({first_description}) is {c0}x{h0}x{w0}: images of one batch must have \
                                 one size (add a resize or crop step)"
                            ),
                        ));
                    }
                    p.data.extend_from_slice(&image.data);
                    p.labels.push(label);
                    p.indices.push(index);
                }
            }
        }
        Ok(pixels)
    }
}

/// Where an epoch's batches are loaded.
enum Mode {
    /// On the consumer's thread, when asked for.
    Inline,
    /// By worker threads.
    Pool(Pool),
}

/// The progress shared by the workers and the consumer.
struct Progress {
    /// The next batch a worker will take.
    next_to_take: usize,
    /// Batches handed to the consumer so far.
    delivered: usize,
    /// Set when the epoch iterator is dropped.
    cancelled: bool,
}

struct Pool {
    progress: Arc<(Mutex<Progress>, Condvar)>,
    receiver: Receiver<(usize, Loaded)>,
    /// Batches that arrived before the ones the consumer waits for.
    pending: BTreeMap<usize, Loaded>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `workers` threads loading the `end` batches of `job`, at most `window` ahead of the
    /// consumer; `None` when a thread cannot be started (those started are stopped).
    fn spawn(job: &Arc<Job>, workers: usize, window: usize, end: usize) -> Option<Pool> {
        let progress = Arc::new((
            Mutex::new(Progress {
                next_to_take: 0,
                delivered: 0,
                cancelled: false,
            }),
            Condvar::new(),
        ));
        let (sender, receiver) = channel();
        let mut pool = Pool {
            progress,
            receiver,
            pending: BTreeMap::new(),
            handles: Vec::with_capacity(workers),
        };
        for w in 0..workers {
            let job = Arc::clone(job);
            let progress = Arc::clone(&pool.progress);
            let sender = sender.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("data-loader-{w}"))
                .spawn(move || worker(&job, &progress, &sender, window, end));
            match spawned {
                Ok(handle) => pool.handles.push(handle),
                Err(_) => {
                    pool.stop();
                    return None;
                }
            }
        }
        Some(pool)
    }

    /// The loaded batch `batch`, waiting for it; tells the workers it was taken.
    fn take(&mut self, batch: usize) -> Result<Loaded> {
        let loaded = loop {
            if let Some(loaded) = self.pending.remove(&batch) {
                break loaded;
            }
            match self.receiver.recv() {
                Ok((i, loaded)) => {
                    self.pending.insert(i, loaded);
                }
                Err(_) => {
                    return Err(Error::config(format!(
                        "data loader: the worker threads stopped before loading batch {batch}"
                    )))
                }
            }
        };
        let (mutex, condvar) = &*self.progress;
        lock(mutex).delivered = batch + 1;
        condvar.notify_all();
        Ok(loaded)
    }

    /// Tells the workers to stop and waits for them.
    fn stop(&mut self) {
        let (mutex, condvar) = &*self.progress;
        lock(mutex).cancelled = true;
        condvar.notify_all();
        for handle in self.handles.drain(..) {
            // A worker's panics are caught in `Job::load`; nothing is left to report here.
            let _ = handle.join();
        }
    }
}

/// A worker: takes the next batch while fewer than `window` are ahead of the consumer, loads it,
/// sends it; returns when all are taken, when the epoch is cancelled or the consumer is gone.
fn worker(
    job: &Job,
    progress: &(Mutex<Progress>, Condvar),
    sender: &Sender<(usize, Loaded)>,
    window: usize,
    end: usize,
) {
    let (mutex, condvar) = progress;
    loop {
        let batch = {
            let mut state = lock(mutex);
            loop {
                if state.cancelled || state.next_to_take >= end {
                    return;
                }
                if state.next_to_take < state.delivered.saturating_add(window) {
                    break;
                }
                state = condvar.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.next_to_take += 1;
            state.next_to_take - 1
        };
        if sender.send((batch, job.load(batch))).is_err() {
            return;
        }
    }
}

/// The batches of one epoch of a [`DataLoader`] (see [`DataLoader::epoch`]). Dropping it stops
/// the worker threads (each finishes the sample it is decoding) and joins them.
pub struct Epoch {
    job: Arc<Job>,
    skipped: Arc<Mutex<SkipLog>>,
    device: Device,
    dtype: DType,
    next: usize,
    end: usize,
    mode: Mode,
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Epoch")
            .field("epoch", &self.job.epoch)
            .field("next", &self.next)
            .field("end", &self.end)
            .field("workers", &matches!(self.mode, Mode::Pool(_)))
            .finish()
    }
}

impl Epoch {
    fn to_batch(&self, pixels: Pixels) -> Result<Batch> {
        let n = pixels.labels.len();
        let (c, h, w) = pixels.dims;
        Ok(Batch {
            images: Tensor::from_vec(pixels.data, (n, c, h, w), &self.device)?.to_dtype(self.dtype)?,
            labels: Tensor::from_vec(pixels.labels, n, &self.device)?,
            indices: pixels.indices,
        })
    }

    fn record(&self, skipped: Vec<(String, String)>) {
        if skipped.is_empty() {
            return;
        }
        let mut log = lock(&self.skipped);
        log.count += skipped.len();
        for (description, message) in skipped {
            if log.seen.insert(description.clone()) {
                log.entries.push((description, message));
            }
        }
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.end {
            let batch = self.next;
            self.next += 1;
            let loaded = match &mut self.mode {
                Mode::Inline => self.job.load(batch),
                Mode::Pool(pool) => match pool.take(batch) {
                    Ok(loaded) => loaded,
                    Err(e) => {
                        self.next = self.end;
                        return Some(Err(e));
                    }
                },
            };
            self.record(loaded.skipped);
            match loaded.batch {
                Ok(Some(pixels)) => return Some(self.to_batch(pixels)),
                // Every sample of the batch was skipped.
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.end - self.next))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.job.cancelled.store(true, Ordering::Relaxed);
        if let Mode::Pool(pool) = &mut self.mode {
            pool.stop();
        }
    }
}
