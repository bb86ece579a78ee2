//! The one validated safetensors reader of the workspace: model weights ([`Weights::from_file`]),
//! checkpoints and optimizer state (in `trainer`) all go through [`read_safetensors`] or one of
//! its variants.
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON header
//! (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}`, plus an
//! optional `__metadata__` object), then the data section the offsets point into.
//!
//! The reader checks everything before it reads any tensor data, and names what is wrong:
//!
//! - the file: shorter than the 8-byte length, a header length larger than the rest of the file
//!   (nothing is allocated from a size read in the file before it is compared to the file's
//!   length), a header that is not UTF-8, not JSON or not a JSON object
//!   ([`Error::WeightsFile`]);
//! - each tensor ([`Error::Weights`], naming it): an unknown or unsupported dtype, a malformed
//!   shape or `data_offsets`, a byte length that does not match shape x dtype size, offsets that
//!   run past the end of the data section or overlap another tensor's;
//! - then, by [`ReadOptions`]: a tensor that must be float but is not (an `I32` where a
//!   convolution weight belongs), and NaN or infinite values in float tensors (their count and
//!   the first one's flat index).
//!
//! [`Weights::from_file`]: super::Weights::from_file

use crate::{Error, Result};
use candle_core::safetensors::Load;
use candle_core::{Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The largest JSON header accepted, as the reference implementation (100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Which tensors of a file must have a float dtype (F16, BF16, F32 or F64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DTypeRule {
    /// Any dtype candle can load (checkpoints holding integer counters).
    Any,
    /// Every tensor (optimizer state).
    Float,
    /// Every tensor except `num_batches_tracked` buffers, which PyTorch stores as I64 (model
    /// weights).
    FloatExceptCounters,
}

/// What [`read_safetensors`] requires of the tensors, beyond a well-formed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Which tensors must be float.
    pub dtypes: DTypeRule,
    /// Whether float tensors (F16, BF16, F32, F64) must hold finite values only.
    pub finite: bool,
}

impl ReadOptions {
    /// Model weights: float tensors, finite, except `num_batches_tracked` buffers.
    pub fn weights() -> Self {
        Self {
            dtypes: DTypeRule::FloatExceptCounters,
            finite: true,
        }
    }

    /// Optimizer state: every tensor float and finite.
    pub fn float() -> Self {
        Self {
            dtypes: DTypeRule::Float,
            finite: true,
        }
    }

    /// Any tensors (integer ones included); float ones must be finite.
    pub fn any() -> Self {
        Self {
            dtypes: DTypeRule::Any,
            finite: true,
        }
    }

    fn must_be_float(&self, name: &str) -> bool {
        match self.dtypes {
            DTypeRule::Any => false,
            DTypeRule::Float => true,
            DTypeRule::FloatExceptCounters => !is_counter(name),
        }
    }
}

impl Default for ReadOptions {
    /// [`ReadOptions::weights`].
    fn default() -> Self {
        Self::weights()
    }
}

/// Whether `name` is a `num_batches_tracked` buffer (an integer counter of PyTorch's batch norm,
/// not a weight).
pub fn is_counter(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// Whether a safetensors dtype is one of the float dtypes weights may have.
fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
}

/// Whether candle can load the dtype (see `candle_core::safetensors`).
fn candle_supports(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::U8
            | Dtype::U16
            | Dtype::U32
            | Dtype::I16
            | Dtype::I32
            | Dtype::I64
            | Dtype::BF16
            | Dtype::F16
            | Dtype::F32
            | Dtype::F64
            | Dtype::F8_E4M3
            | Dtype::F6_E2M3
            | Dtype::F6_E3M2
            | Dtype::F4
            | Dtype::F8_E8M0
    )
}

/// Reads the safetensors file at `path` onto `device`, validating it (see the module docs).
/// A path that is not a file is an [`Error::WeightsFile`] saying `no such file`.
pub fn read_safetensors(
    path: &Path,
    device: &Device,
    options: &ReadOptions,
) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(file_error(path, "no such file"));
    }
    let file = std::fs::File::open(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    read_safetensors_from(file, path, device, options)
}

/// Parses the content of a safetensors file already in memory; `file` names it in errors.
pub fn parse_safetensors(
    bytes: &[u8],
    file: &Path,
    device: &Device,
    options: &ReadOptions,
) -> Result<HashMap<String, Tensor>> {
    read_safetensors_from(std::io::Cursor::new(bytes), file, device, options)
}

/// Reads a safetensors file from `reader` (its whole length, from the start); `file` names it
/// in errors. I/O errors are [`Error::WeightsFile`]s saying `cannot read`.
pub fn read_safetensors_from<R: Read + Seek>(
    mut reader: R,
    file: &Path,
    device: &Device,
    options: &ReadOptions,
) -> Result<HashMap<String, Tensor>> {
    let io = |e: std::io::Error| file_error(file, format!("cannot read: {e}"));
    let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let header = read_header(&mut reader, len, file)?;
    let entries = parse_header(&header, len - 8 - header.len() as u64, file)?;
    for entry in &entries {
        if options.must_be_float(&entry.name) && !is_float(entry.dtype) {
            return Err(tensor_error(
                file,
                &entry.name,
                format!(
                    "expected a float dtype (F16, BF16, F32 or F64), found {:?}",
                    entry.dtype
                ),
            ));
        }
    }
    let data_start = 8 + header.len() as u64;
    let mut tensors = HashMap::with_capacity(entries.len());
    let mut buffer = Vec::new();
    for entry in entries {
        // The offsets were checked against the file's length: the allocation is bounded by it.
        let size = usize::try_from(entry.end - entry.begin)
            .map_err(|_| tensor_error(file, &entry.name, "too large for this machine"))?;
        reader
            .seek(SeekFrom::Start(data_start + entry.begin))
            .map_err(io)?;
        buffer.clear();
        buffer.resize(size, 0);
        reader.read_exact(&mut buffer).map_err(io)?;
        if options.finite {
            check_finite(&buffer, entry.dtype, file, &entry.name)?;
        }
        let view = TensorView::new(entry.dtype, entry.shape.clone(), &buffer)
            .map_err(|e| tensor_error(file, &entry.name, format!("invalid tensor: {e}")))?;
        let tensor = view
            .load(device)
            .map_err(|e| tensor_error(file, &entry.name, format!("cannot load: {e}")))?;
        tensors.insert(entry.name, tensor);
    }
    Ok(tensors)
}

/// One tensor of the header, checked: a supported dtype, a byte length that matches its shape.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

fn file_error(file: &Path, problem: impl Into<String>) -> Error {
    Error::WeightsFile {
        file: file.to_path_buf(),
        problem: problem.into(),
    }
}

fn tensor_error(file: &Path, tensor: &str, problem: impl Into<String>) -> Error {
    Error::Weights {
        file: Some(PathBuf::from(file)),
        tensor: tensor.to_string(),
        problem: problem.into(),
    }
}

/// Reads the header length and the header, after checking the length against the file's.
fn read_header<R: Read>(reader: &mut R, len: u64, file: &Path) -> Result<Vec<u8>> {
    if len < 8 {
        return Err(file_error(
            file,
            format!(
                "truncated: a safetensors file starts with an 8-byte header length, found only {len} bytes"
            ),
        ));
    }
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|e| file_error(file, format!("cannot read: {e}")))?;
    let n = u64::from_le_bytes(prefix);
    let rest = len - 8;
    if n > rest {
        return Err(file_error(
            file,
            format!(
                "the header length says {n} bytes but only {rest} bytes follow: the file is truncated \
                 or not a safetensors file"
            ),
        ));
    }
    if n > MAX_HEADER_BYTES {
        return Err(file_error(
            file,
            format!("the header length {n} is over the limit of {MAX_HEADER_BYTES} bytes: not a safetensors file?"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    reader
        .read_exact(&mut header)
        .map_err(|e| file_error(file, format!("cannot read: {e}")))?;
    Ok(header)
}

/// Parses and checks the JSON header; `data_len` is the length of the data section. The
/// entries come back in the order of their offsets.
fn parse_header(header: &[u8], data_len: u64, file: &Path) -> Result<Vec<Entry>> {
    let text = std::str::from_utf8(header).map_err(|e| {
        file_error(
            file,
            format!(
                "the header is not UTF-8 (invalid byte at offset {} of {}): not a safetensors file?",
                8 + e.valid_up_to(),
                header.len()
            ),
        )
    })?;
    let root: Value = serde_json::from_str(text).map_err(|e| {
        file_error(
            file,
            format!("the header is not valid JSON ({e}): corrupt, or not a safetensors file?"),
        )
    })?;
    let Value::Object(map) = root else {
        return Err(file_error(
            file,
            format!(
                "the header is JSON {}, expected an object of tensors",
                json_kind(&root)
            ),
        ));
    };
    let mut entries = Vec::with_capacity(map.len());
    for (name, value) in map {
        if name == "__metadata__" {
            if !value.is_object() {
                return Err(file_error(
                    file,
                    format!(
                        "the header's `__metadata__` is {}, expected an object",
                        json_kind(&value)
                    ),
                ));
            }
            continue;
        }
        let entry =
            parse_entry(name, &value).map_err(|(name, problem)| tensor_error(file, &name, problem))?;
        entries.push(entry);
    }
    // Offsets past the end: the first such tensor in offset order is the one the truncation
    // cut, the others are after it.
    entries.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));
    if let Some(entry) = entries.iter().find(|e| e.end > data_len) {
        let after = entries.iter().filter(|e| e.end > data_len).count() - 1;
        let others = if after > 0 {
            format!("; {after} more tensor(s) after it too")
        } else {
            String::new()
        };
        return Err(tensor_error(
            file,
            &entry.name,
            format!(
                "data_offsets [{}, {}] run past the end of the data section ({data_len} bytes after the \
                 header): the file is truncated or the header corrupt{others}",
                entry.begin, entry.end
            ),
        ));
    }
    // Sorted by begin: a range overlaps an earlier one iff it begins before the furthest end so
    // far (empty tensors overlap nothing).
    let mut furthest: Option<&Entry> = None;
    for entry in entries.iter().filter(|e| e.end > e.begin) {
        if let Some(prev) = furthest {
            if entry.begin < prev.end {
                return Err(tensor_error(
                    file,
                    &entry.name,
                    format!(
                        "data_offsets [{}, {}] overlap those of tensor `{}` [{}, {}]",
                        entry.begin, entry.end, prev.name, prev.begin, prev.end
                    ),
                ));
            }
        }
        if furthest.is_none_or(|p| entry.end > p.end) {
            furthest = Some(entry);
        }
    }
    Ok(entries)
}

/// Checks one header entry; the error is `(tensor name, problem)`.
fn parse_entry(name: String, value: &Value) -> std::result::Result<Entry, (String, String)> {
    let fail = |problem: String| Err((name.clone(), problem));
    let Value::Object(fields) = value else {
        return fail(format!(
            "expected an object with `dtype`, `shape` and `data_offsets`, found {}",
            json_kind(value)
        ));
    };
    let dtype = match fields.get("dtype") {
        Some(Value::String(s)) => match serde_json::from_value::<Dtype>(Value::String(s.clone())) {
            Ok(dtype) if candle_supports(dtype) => dtype,
            Ok(dtype) => return fail(format!("dtype {dtype:?} is not supported")),
            Err(_) => return fail(format!("unknown dtype {s:?}")),
        },
        Some(other) => return fail(format!("`dtype`: expected a string, found {}", json_kind(other))),
        None => return fail("no `dtype`".to_string()),
    };
    let shape = match fields.get("shape") {
        Some(Value::Array(dims)) => {
            let dims: Option<Vec<usize>> = dims
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect();
            match dims {
                Some(dims) => dims,
                None => {
                    return fail(format!(
                        "`shape`: expected an array of non-negative integers, found {}",
                        json_kind(&fields["shape"])
                    ))
                }
            }
        }
        Some(other) => return fail(format!("`shape`: expected an array, found {}", json_kind(other))),
        None => return fail("no `shape`".to_string()),
    };
    let (begin, end) = match fields.get("data_offsets") {
        Some(Value::Array(offsets)) => match offsets[..] {
            [ref b, ref e] => match (b.as_u64(), e.as_u64()) {
                (Some(b), Some(e)) => (b, e),
                _ => return fail(bad_offsets(value)),
            },
            _ => return fail(bad_offsets(value)),
        },
        _ => return fail(bad_offsets(value)),
    };
    if end < begin {
        return fail(format!("data_offsets [{begin}, {end}] end before they begin"));
    }
    let bytes = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.bitsize()))
        .filter(|bits| bits % 8 == 0)
        .map(|bits| bits / 8);
    let Some(bytes) = bytes else {
        return fail(format!(
            "shape {shape:?} of {dtype:?} is too large or not a whole number of bytes"
        ));
    };
    if end - begin != bytes as u64 {
        return fail(format!(
            "byte length mismatch: shape {shape:?} of {dtype:?} ({} bits each) needs {bytes} bytes, but \
             data_offsets [{begin}, {end}] span {} bytes",
            dtype.bitsize(),
            end - begin
        ));
    }
    Ok(Entry {
        name,
        dtype,
        shape,
        begin,
        end,
    })
}

fn bad_offsets(value: &Value) -> String {
    format!(
        "`data_offsets`: expected [begin, end] (non-negative integers), found {}",
        value.get("data_offsets").map_or("nothing".to_string(), json_kind)
    )
}

/// The JSON type of `value`, with a short excerpt, for messages (`an array ([1, 2])`).
pub fn json_kind(value: &Value) -> String {
    let name = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let mut text = value.to_string();
    if text.len() > 40 {
        let cut = (0..=37).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(cut);
        text.push_str("...");
    }
    format!("{name} ({text})")
}

/// Fails, naming the tensor, when float data (little-endian F16, BF16, F32 or F64) holds NaN or
/// infinite values; other dtypes pass.
fn check_finite(data: &[u8], dtype: Dtype, file: &Path, name: &str) -> Result<()> {
    // A value is not finite iff its exponent bits are all ones.
    fn scan<const N: usize>(data: &[u8], exponent: u64, sign: u64) -> Option<(usize, usize, &'static str)> {
        let mut first = None;
        let mut count = 0;
        for (i, chunk) in data.chunks_exact(N).enumerate() {
            let mut word = [0u8; 8];
            word[..N].copy_from_slice(chunk);
            let bits = u64::from_le_bytes(word);
            if bits & exponent == exponent {
                count += 1;
                if first.is_none() {
                    let what = if bits & !(exponent | sign) != 0 {
                        "NaN"
                    } else if bits & sign != 0 {
                        "-inf"
                    } else {
                        "inf"
                    };
                    first = Some((i, what));
                }
            }
        }
        first.map(|(i, what)| (count, i, what))
    }
    let found = match dtype {
        Dtype::F16 => scan::<2>(data, 0x7C00, 0x8000),
        Dtype::BF16 => scan::<2>(data, 0x7F80, 0x8000),
        Dtype::F32 => scan::<4>(data, 0x7F80_0000, 0x8000_0000),
        Dtype::F64 => scan::<8>(data, 0x7FF0_0000_0000_0000, 0x8000_0000_0000_0000),
        _ => None,
    };
    match found {
        None => Ok(()),
        Some((count, first, what)) => {
            let total = data.len() / (dtype.bitsize() / 8);
            Err(tensor_error(
                file,
                name,
                format!(
                    "{count} non-finite value(s) (NaN or infinity) of {total}, the first at flat index \
                     {first} ({what})"
                ),
            ))
        }
    }
}
