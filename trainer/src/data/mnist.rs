//! The MNIST handwritten digits in the IDX format, plain or gzip-compressed.
//!
//! An IDX file is a big-endian header followed by raw unsigned bytes:
//!
//! | file | header | payload |
//! | --- | --- | --- |
//! | images (IDX3) | magic `2051`, count, rows, cols (4 x u32) | `count * rows * cols` pixels |
//! | labels (IDX1) | magic `2049`, count (2 x u32) | `count` labels |
//!
//! The readers check the magic number, the dimensions and that the file size matches the header
//! exactly, so a truncated download or a mixed-up file is reported with the file name, what was
//! expected and what was found, instead of turning into garbage tensors.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Magic number of an IDX3 file of unsigned bytes (images): `0x00000803`.
pub const IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX1 file of unsigned bytes (labels): `0x00000801`.
pub const LABELS_MAGIC: u32 = 2049;
/// Number of classes of MNIST (the digits 0 to 9).
pub const MNIST_CLASSES: usize = 10;

/// File name of the MNIST training images (without `.gz`).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// File name of the MNIST training labels (without `.gz`).
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// File name of the MNIST test images (without `.gz`).
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// File name of the MNIST test labels (without `.gz`).
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

const IMAGES_HEADER: usize = 16;
const LABELS_HEADER: usize = 8;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Pseudo-directory used in error messages about the sample embedded in the binary.
const BUNDLED_DIR: &str = "<bundled>";

static BUNDLED_TRAIN_IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/mnist-10k/train-images-idx3-ubyte.gz"
));
static BUNDLED_TRAIN_LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/mnist-10k/train-labels-idx1-ubyte.gz"
));
static BUNDLED_TEST_IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/mnist-10k/t10k-images-idx3-ubyte.gz"
));
static BUNDLED_TEST_LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/mnist-10k/t10k-labels-idx1-ubyte.gz"
));

/// The images of an IDX3 file, as read: `count` images of `rows x cols` grey pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Height of each image, in pixels.
    pub rows: usize,
    /// Width of each image, in pixels.
    pub cols: usize,
    /// `count * rows * cols` pixels, image after image, each row-major (0 = background).
    pub pixels: Vec<u8>,
}

/// A labelled set of single-channel 8-bit images, all of the same size.
///
/// Built by [`Mnist::load_dir`] and [`Mnist::bundled`] (or by [`ImageDataset::from_idx`]), which
/// guarantee `images.len() == len() * rows * cols` and `labels[i] < num_classes`; a dataset built
/// field by field can be checked with [`ImageDataset::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDataset {
    /// `len() * rows * cols` grey pixels, image after image, each row-major.
    pub images: Vec<u8>,
    /// One label per image, each `< num_classes`.
    pub labels: Vec<u8>,
    /// Height of each image, in pixels.
    pub rows: usize,
    /// Width of each image, in pixels.
    pub cols: usize,
    /// Number of classes the labels range over (10 for MNIST).
    pub num_classes: usize,
}

/// The MNIST training and test splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// The training split (60,000 images for the full MNIST, 8,000 for the bundled sample).
    pub train: ImageDataset,
    /// The test split (10,000 images for the full MNIST, 2,000 for the bundled sample).
    pub test: ImageDataset,
}

impl ImageDataset {
    /// Pairs images and labels read from IDX files, checking that the counts agree and that every
    /// label is `< num_classes`. The paths only serve the error messages.
    pub fn from_idx(
        images: IdxImages,
        images_path: &Path,
        labels: Vec<u8>,
        labels_path: &Path,
        num_classes: usize,
    ) -> Result<Self> {
        if images.count != labels.len() {
            return Err(Error::dataset(
                labels_path,
                format!(
                    "count mismatch: {} has {} images but this file has {} labels",
                    images_path.display(),
                    images.count,
                    labels.len()
                ),
            ));
        }
        if let Some((i, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= num_classes)
        {
            return Err(Error::dataset(
                labels_path,
                format!("label {label} at index {i} is out of range: expected a class < {num_classes}"),
            ));
        }
        Ok(ImageDataset {
            images: images.pixels,
            labels,
            rows: images.rows,
            cols: images.cols,
            num_classes,
        })
    }

    /// Number of images (and labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset has no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of pixels of one image (`rows * cols`).
    pub fn image_size(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `index` (row-major), or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let size = self.image_size();
        let start = index.checked_mul(size)?;
        self.images.get(start..start.checked_add(size)?)
    }

    /// The label of image `index`, or `None` past the end.
    pub fn label(&self, index: usize) -> Option<u8> {
        self.labels.get(index).copied()
    }

    /// The first `n` images (all of them if there are fewer): a quick run on a slice.
    pub fn head(&self, n: usize) -> ImageDataset {
        let n = n.min(self.len());
        ImageDataset {
            images: self.images[..n * self.image_size()].to_vec(),
            labels: self.labels[..n].to_vec(),
            ..self.clone()
        }
    }

    /// How many images each class has (`num_classes` entries).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &label in &self.labels {
            if let Some(c) = counts.get_mut(usize::from(label)) {
                *c += 1;
            }
        }
        counts
    }

    /// Checks the invariants a dataset built field by field may break: non-zero image size,
    /// `images.len() == len() * rows * cols` and every label `< num_classes`.
    pub fn validate(&self) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            return Err(Error::config(format!(
                "image dataset: images of {}x{} pixels; both dimensions must be non-zero",
                self.rows, self.cols
            )));
        }
        let expected = self.len().checked_mul(self.image_size());
        if expected != Some(self.images.len()) {
            return Err(Error::config(format!(
                "image dataset: {} labels of {}x{} images need {} pixels, found {}",
                self.len(),
                self.rows,
                self.cols,
                expected.map_or_else(|| "more than usize::MAX".to_string(), |e| e.to_string()),
                self.images.len()
            )));
        }
        if let Some((i, &label)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= self.num_classes)
        {
            return Err(Error::config(format!(
                "image dataset: label {label} at index {i} is out of range: expected a class < {}",
                self.num_classes
            )));
        }
        Ok(())
    }
}

impl Mnist {
    /// Reads the four MNIST files of `dir`: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    /// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each either plain or with a `.gz`
    /// suffix (the plain file is preferred when both exist). Compression is detected from the
    /// content, so a gzip file without the suffix, or a plain one with it, also works.
    pub fn load_dir(dir: &Path) -> Result<Mnist> {
        let (train, _) = load_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?;
        let (test, test_images) = load_split(dir, TEST_IMAGES, TEST_LABELS)?;
        check_same_size(&train, &test, &test_images)?;
        Ok(Mnist { train, test })
    }

    /// The 10,000-digit sample of real MNIST embedded in the binary (8,000 training and 2,000
    /// test images, 28x28; see `trainer/data/mnist-10k/README.md`), so that training needs no
    /// download.
    pub fn bundled() -> Result<Mnist> {
        let split = |images: &[u8], images_name: &str, labels: &[u8], labels_name: &str| {
            let images_path = bundled_path(images_name);
            let labels_path = bundled_path(labels_name);
            let images = parse_idx_images(images, &images_path)?;
            let labels = parse_idx_labels(labels, &labels_path)?;
            ImageDataset::from_idx(images, &images_path, labels, &labels_path, MNIST_CLASSES)
        };
        let train = split(
            BUNDLED_TRAIN_IMAGES,
            TRAIN_IMAGES,
            BUNDLED_TRAIN_LABELS,
            TRAIN_LABELS,
        )?;
        let test = split(BUNDLED_TEST_IMAGES, TEST_IMAGES, BUNDLED_TEST_LABELS, TEST_LABELS)?;
        check_same_size(&train, &test, &bundled_path(TEST_IMAGES))?;
        Ok(Mnist { train, test })
    }
}

fn bundled_path(name: &str) -> PathBuf {
    Path::new(BUNDLED_DIR).join(format!("{name}.gz"))
}

fn check_same_size(train: &ImageDataset, test: &ImageDataset, test_images: &Path) -> Result<()> {
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(Error::dataset(
            test_images,
            format!(
                "test images are {}x{} but training images are {}x{}",
                test.rows, test.cols, train.rows, train.cols
            ),
        ));
    }
    Ok(())
}

/// `dir/name` if it exists, else `dir/name.gz` if it exists, else a not-found error.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(Error::io(
        plain,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {name} nor {name}.gz exists in {}", dir.display()),
        ),
    ))
}

/// Reads one split; returns it with the path of its image file.
fn load_split(dir: &Path, images_name: &str, labels_name: &str) -> Result<(ImageDataset, PathBuf)> {
    let images_path = find_file(dir, images_name)?;
    let labels_path = find_file(dir, labels_name)?;
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    let dataset = ImageDataset::from_idx(images, &images_path, labels, &labels_path, MNIST_CLASSES)?;
    Ok((dataset, images_path))
}

/// Reads an IDX3 image file (plain or gzip-compressed); see [`parse_idx_images`].
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_idx_images(&bytes, path)
}

/// Reads an IDX1 label file (plain or gzip-compressed); see [`parse_idx_labels`].
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_idx_labels(&bytes, path)
}

/// Parses the content of an IDX3 image file: gunzipped first when it starts with the gzip magic
/// bytes `1f 8b`; then magic `2051`, non-zero rows and columns, and a size of exactly
/// `16 + count * rows * cols` bytes. `source` names the file in error messages.
pub fn parse_idx_images(bytes: &[u8], source: &Path) -> Result<IdxImages> {
    let mut header = [0usize; 4];
    let (data, size_kind) = gunzip_if_compressed(bytes, source, IMAGES_HEADER, |data| {
        header = read_header::<4>(data, source, IMAGES_MAGIC, "IDX3 unsigned-byte images")?;
        let [_, count, rows, cols] = header;
        if rows == 0 || cols == 0 {
            return Err(Error::dataset(
                source,
                format!("header says images of {rows}x{cols} pixels; both dimensions must be non-zero"),
            ));
        }
        count
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(cols))
            .and_then(|n| n.checked_add(IMAGES_HEADER))
            .ok_or_else(|| {
                Error::dataset(
                    source,
                    format!("header says {count} images of {rows}x{cols}, too large to load"),
                )
            })
    })?;
    let (expected, [_, count, rows, cols]) = (data.expected, header);
    let data = data.bytes;
    check_size(
        &data,
        expected,
        source,
        size_kind,
        &format!("{count} images of {rows}x{cols}"),
    )?;
    let mut pixels = data.into_owned();
    pixels.drain(..IMAGES_HEADER);
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

/// Parses the content of an IDX1 label file: gunzipped first when it starts with the gzip magic
/// bytes `1f 8b`; then magic `2049` and a size of exactly `8 + count` bytes. `source` names the
/// file in error messages. The label values are not checked here (see
/// [`ImageDataset::from_idx`]).
pub fn parse_idx_labels(bytes: &[u8], source: &Path) -> Result<Vec<u8>> {
    let mut count = 0;
    let (data, size_kind) = gunzip_if_compressed(bytes, source, LABELS_HEADER, |data| {
        [_, count] = read_header::<2>(data, source, LABELS_MAGIC, "IDX1 unsigned-byte labels")?;
        count
            .checked_add(LABELS_HEADER)
            .ok_or_else(|| Error::dataset(source, format!("header says {count} labels, too many to load")))
    })?;
    let (expected, data) = (data.expected, data.bytes);
    check_size(&data, expected, source, size_kind, &format!("{count} labels"))?;
    let mut labels = data.into_owned();
    labels.drain(..LABELS_HEADER);
    Ok(labels)
}

/// The content of an IDX file with the size its header implies.
struct Content<'a> {
    bytes: Cow<'a, [u8]>,
    /// The size the header implies, from `expected_size`.
    expected: usize,
}

/// The bytes of the file, decompressed when they start with the gzip magic, with the size
/// `expected_size` finds in their first `header` bytes (or in fewer when the file is shorter),
/// and how to call their size in messages.
///
/// Decompression stops one byte past the expected size: a corrupt header or a gzip bomb cannot
/// make it allocate more than the header says (and the header's size was checked to be
/// addressable), and the size check still sees that there is trailing data.
fn gunzip_if_compressed<'a>(
    bytes: &'a [u8],
    source: &Path,
    header: usize,
    mut expected_size: impl FnMut(&[u8]) -> Result<usize>,
) -> Result<(Content<'a>, &'static str)> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        let expected = expected_size(bytes)?;
        let content = Content {
            bytes: Cow::Borrowed(bytes),
            expected,
        };
        return Ok((content, "file size"));
    }
    let gzip_error = |e: std::io::Error| Error::dataset(source, gzip_problem(bytes, e));
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut out = Vec::with_capacity(header);
    (&mut decoder)
        .take(header as u64)
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    let expected = expected_size(&out)?;
    let limit = expected.saturating_add(1);
    // Grows with the data actually decompressed, up to the limit.
    out.reserve(limit.min(bytes.len().saturating_mul(4)).saturating_sub(out.len()));
    decoder
        .take((limit - out.len()) as u64)
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    Ok((
        Content {
            bytes: Cow::Owned(out),
            expected,
        },
        "decompressed size",
    ))
}

/// Why gzip data failed to decompress with `e`: bytes after a complete gzip stream that are not
/// another gzip stream are named as such (flate2 reports them as "unexpected end of file" or a
/// bad header, which reads like truncation).
fn gzip_problem(bytes: &[u8], e: std::io::Error) -> String {
    let mut first = flate2::bufread::GzDecoder::new(bytes);
    let complete = std::io::copy(&mut first, &mut std::io::sink()).is_ok();
    let rest = first.into_inner();
    if complete && !rest.is_empty() && !rest.starts_with(&GZIP_MAGIC) {
        return format!(
            "invalid gzip data: {} bytes of trailing garbage after the end of the gzip stream (at \
             byte {}); the file is damaged or was appended to",
            rest.len(),
            bytes.len() - rest.len()
        );
    }
    format!("invalid gzip data: {e}")
}

/// Reads the `N` big-endian u32 of the header (the magic first) and checks the magic.
fn read_header<const N: usize>(data: &[u8], source: &Path, magic: u32, what: &str) -> Result<[usize; N]> {
    let truncated = |len: usize, needed: usize| {
        Error::dataset(
            source,
            format!(
                "truncated header: an {what} file starts with {needed} header bytes, found only {len} bytes"
            ),
        )
    };
    let word =
        |i: usize| u32::from_be_bytes([data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]]);
    let needed = 4 * N;
    if data.len() < 4 {
        return Err(truncated(data.len(), needed));
    }
    let found = word(0);
    if found != magic {
        let hint = match found {
            IMAGES_MAGIC => " (an IDX3 image file?)",
            LABELS_MAGIC => " (an IDX1 label file?)",
            _ => "",
        };
        return Err(Error::dataset(
            source,
            format!("bad magic number: expected {magic} ({what}), found {found} ({found:#010x}){hint}"),
        ));
    }
    if data.len() < needed {
        return Err(truncated(data.len(), needed));
    }
    let mut header = [0usize; N];
    for (i, field) in header.iter_mut().enumerate() {
        let value = word(i);
        *field = usize::try_from(value)
            .map_err(|_| Error::dataset(source, format!("header field {value} does not fit in memory")))?;
    }
    Ok(header)
}

fn check_size(data: &[u8], expected: usize, source: &Path, size_kind: &str, content: &str) -> Result<()> {
    let actual = data.len();
    if actual == expected {
        return Ok(());
    }
    let problem = if actual < expected {
        "truncated"
    } else {
        "trailing data"
    };
    // Decompression stops one byte past the expected size: more is all that is known.
    let found = if size_kind == "decompressed size" && actual > expected {
        "more".to_string()
    } else {
        format!("{actual} bytes")
    };
    Err(Error::dataset(
        source,
        format!(
            "{problem}: the header says {content}, so expected {expected} bytes, but the {size_kind} is {found}"
        ),
    ))
}
