//! CIFAR-10, binary version (`cifar-10-binary.tar.gz`): [`Cifar10::load_dir`] reads the six batch
//! files into memory.
//!
//! Each file is a sequence of 3073-byte records: one label byte (0 to 9), then the 32x32 image as
//! 1024 red, 1024 green and 1024 blue bytes, each plane row-major (already CHW).

use std::path::{Path, PathBuf};

use crate::data::image::{index_error, Dataset, Image, Sample};
use crate::error::{Error, Result};

/// Height and width of a CIFAR image.
pub const CIFAR_SIDE: usize = 32;
/// Pixel bytes of one CIFAR image (3 planes of 32x32).
pub const CIFAR_IMAGE_BYTES: usize = 3 * CIFAR_SIDE * CIFAR_SIDE;
/// Bytes of one CIFAR-10 record: the label byte and the pixels.
pub const CIFAR10_RECORD_BYTES: usize = 1 + CIFAR_IMAGE_BYTES;
/// Records of each file of the official release.
const RECORDS_PER_FILE: usize = 10_000;
/// The CIFAR-10 class names, in label order (as in `batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
/// The training batch files, in order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// The optional file of class names, one a line.
pub const CIFAR10_META_FILE: &str = "batches.meta.txt";
/// The folder the release's archive extracts to.
const CIFAR10_ARCHIVE_DIR: &str = "cifar-10-batches-bin";

/// The CIFAR-10 training (50,000 images) and test (10,000 images) splits.
#[derive(Debug, Clone)]
pub struct Cifar10 {
    /// `data_batch_1.bin` to `data_batch_5.bin`, in order.
    pub train: CifarDataset,
    /// `test_batch.bin`.
    pub test: CifarDataset,
}

impl Cifar10 {
    /// Reads `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin` from `dir` (or from
    /// `dir/cifar-10-batches-bin`, where the archive extracts to, when `dir` has no
    /// `data_batch_1.bin`), and the class names from `batches.meta.txt` when present (else
    /// [`CIFAR10_CLASSES`]). A missing file, a size that is not a whole number of 3073-byte
    /// records, or a label `>= 10` is an [`Error::Dataset`] naming the file.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Cifar10> {
        let mut dir = dir.as_ref().to_path_buf();
        let nested = dir.join(CIFAR10_ARCHIVE_DIR);
        if !dir.join(CIFAR10_TRAIN_FILES[0]).exists() && nested.join(CIFAR10_TRAIN_FILES[0]).exists() {
            dir = nested;
        }
        let class_names = read_class_names(&dir)?;
        let train_files: Vec<PathBuf> = CIFAR10_TRAIN_FILES.iter().map(|f| dir.join(f)).collect();
        let train = CifarDataset::from_files(&train_files, class_names.clone())?;
        let test = CifarDataset::from_files(&[dir.join(CIFAR10_TEST_FILE)], class_names)?;
        Ok(Cifar10 { train, test })
    }
}

/// The names of `dir/batches.meta.txt` (non-empty lines, trimmed), or the standard names when the
/// file does not exist.
fn read_class_names(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(CIFAR10_META_FILE);
    let text = match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect());
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != CIFAR10_CLASSES.len() {
        return Err(Error::dataset(
            &path,
            format!(
                "expected {} class names (one a line), found {}",
                CIFAR10_CLASSES.len(),
                names.len()
            ),
        ));
    }
    Ok(names)
}

/// Parses the content of one CIFAR-10 binary batch file into `(pixels, labels)`: `n * 3072` CHW
/// pixel bytes and `n` labels. Fails (naming `path`) when the size is 0 or not a multiple of
/// 3073 bytes, or a label is `>= num_classes`.
pub fn parse_cifar10_batch(bytes: &[u8], path: &Path, num_classes: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let len = bytes.len();
    if len == 0 || !len.is_multiple_of(CIFAR10_RECORD_BYTES) {
        let (whole, over) = (len / CIFAR10_RECORD_BYTES, len % CIFAR10_RECORD_BYTES);
        return Err(Error::dataset(
            path,
            format!(
                "{}: expected a multiple of {CIFAR10_RECORD_BYTES} bytes (1 label byte + {CIFAR_IMAGE_BYTES} \
                 pixel bytes per record; {} bytes for the {RECORDS_PER_FILE} records of a release file), \
                 found {len} bytes ({whole} whole records and {over} bytes over)",
                if len == 0 { "empty file" } else { "truncated or oversized file" },
                RECORDS_PER_FILE * CIFAR10_RECORD_BYTES,
            ),
        ));
    }
    let n = len / CIFAR10_RECORD_BYTES;
    let mut pixels = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (record, chunk) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
        let label = chunk[0];
        if usize::from(label) >= num_classes {
            return Err(Error::dataset(
                path,
                format!(
                    "record {record} (byte offset {}) has label {label}; expected a class < {num_classes}",
                    record * CIFAR10_RECORD_BYTES
                ),
            ));
        }
        labels.push(label);
        pixels.extend_from_slice(&chunk[1..]);
    }
    Ok((pixels, labels))
}

/// CIFAR images in memory (32x32 RGB), as a [`Dataset`].
#[derive(Debug, Clone)]
pub struct CifarDataset {
    /// `len * 3072` bytes, CHW per image.
    pixels: Vec<u8>,
    labels: Vec<u8>,
    class_names: Vec<String>,
    /// Each source file with the number of records it gave, in order.
    files: Vec<(PathBuf, usize)>,
}

impl CifarDataset {
    /// Reads the given CIFAR-10 batch files (see [`parse_cifar10_batch`]) in order, labelled
    /// with `class_names` (labels must be below their count). A file that does not exist is an
    /// [`Error::Dataset`] naming it.
    pub fn from_files(paths: &[PathBuf], class_names: Vec<String>) -> Result<CifarDataset> {
        if class_names.is_empty() || class_names.len() > 256 {
            return Err(Error::config(format!(
                "CIFAR dataset: expected 1 to 256 class names, got {}",
                class_names.len()
            )));
        }
        let mut dataset = CifarDataset {
            pixels: Vec::new(),
            labels: Vec::new(),
            class_names,
            files: Vec::new(),
        };
        for path in paths {
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::dataset(
                        path,
                        format!(
                            "missing: the CIFAR-10 binary version has {} and {CIFAR10_TEST_FILE} ({e})",
                            CIFAR10_TRAIN_FILES.join(", ")
                        ),
                    ));
                }
                Err(e) => return Err(Error::io(path, e)),
            };
            let (pixels, labels) = parse_cifar10_batch(&bytes, path, dataset.class_names.len())?;
            dataset.files.push((path.clone(), labels.len()));
            dataset.pixels.extend_from_slice(&pixels);
            dataset.labels.extend_from_slice(&labels);
        }
        Ok(dataset)
    }

    /// The label of every image.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The CHW pixel bytes of image `index`, or `None` past the end.
    pub fn image_bytes(&self, index: usize) -> Option<&[u8]> {
        let start = index.checked_mul(CIFAR_IMAGE_BYTES)?;
        self.pixels.get(start..start.checked_add(CIFAR_IMAGE_BYTES)?)
    }

    /// The source files with the number of records read from each.
    pub fn files(&self) -> &[(PathBuf, usize)] {
        &self.files
    }

    /// The first `n` images (all of them if there are fewer): a quick run on a slice.
    pub fn head(&self, n: usize) -> CifarDataset {
        let n = n.min(self.labels.len());
        let mut files = Vec::new();
        let mut left = n;
        for (path, count) in &self.files {
            if left == 0 {
                break;
            }
            files.push((path.clone(), (*count).min(left)));
            left -= (*count).min(left);
        }
        CifarDataset {
            pixels: self.pixels[..n * CIFAR_IMAGE_BYTES].to_vec(),
            labels: self.labels[..n].to_vec(),
            class_names: self.class_names.clone(),
            files,
        }
    }
}

impl Dataset for CifarDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (bytes, &label) = self
            .image_bytes(index)
            .zip(self.labels.get(index))
            .ok_or_else(|| index_error("CIFAR dataset", index, self.labels.len()))?;
        let data = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
        Ok(Sample {
            image: Image::new(3, CIFAR_SIDE, CIFAR_SIDE, data)?,
            label: usize::from(label),
        })
    }

    fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }

    fn label(&self, index: usize) -> Result<usize> {
        self.labels
            .get(index)
            .map(|&l| usize::from(l))
            .ok_or_else(|| index_error("CIFAR dataset", index, self.labels.len()))
    }

    fn describe(&self, index: usize) -> String {
        let mut first = 0;
        for (path, count) in &self.files {
            if index < first + count {
                return format!("{} (record {})", path.display(), index - first);
            }
            first += count;
        }
        format!("<CIFAR index {index} out of range>")
    }
}
