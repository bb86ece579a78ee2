//! The validated safetensors reader: crafted files, and the messages of their errors.

use backbone::weights::{parse_safetensors, read_safetensors, ReadOptions, Weights};
use backbone::Error;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A safetensors file written by hand: `entries` are `(name, dtype, shape, [begin, end])`.
fn raw(entries: &[(&str, &str, &[usize], [u64; 2])], data: &[u8]) -> Vec<u8> {
    let fields: Vec<String> = entries
        .iter()
        .map(|(name, dtype, shape, [b, e])| {
            format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{b},{e}]}}"#)
        })
        .collect();
    with_header(&format!("{{{}}}", fields.join(",")), data)
}

fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn parse(bytes: &[u8], options: ReadOptions) -> backbone::Result<HashMap<String, Tensor>> {
    parse_safetensors(bytes, Path::new("crafted.safetensors"), &Device::Cpu, &options)
}

/// The tensor and problem of an [`Error::Weights`], with the full message.
fn tensor_error(result: backbone::Result<HashMap<String, Tensor>>) -> (String, String, String) {
    match result {
        Err(e @ Error::Weights { .. }) => {
            let message = e.to_string();
            let Error::Weights {
                tensor,
                problem,
                file,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(file.as_deref(), Some(Path::new("crafted.safetensors")));
            assert!(message.contains("crafted.safetensors"), "{message}");
            (tensor, problem, message)
        }
        Err(other) => panic!("expected a tensor error, got {other:?}"),
        Ok(t) => panic!("expected an error, got {} tensors", t.len()),
    }
}

fn file_error(result: backbone::Result<HashMap<String, Tensor>>) -> String {
    match result {
        Err(e @ Error::WeightsFile { .. }) => {
            let message = e.to_string();
            assert!(message.contains("crafted.safetensors"), "{message}");
            message
        }
        Err(other) => panic!("expected a file error, got {other:?}"),
        Ok(t) => panic!("expected an error, got {} tensors", t.len()),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_valid_file_loads_with_its_dtypes() {
    let data = [f32_bytes(&[1.0, 2.0, 3.0, 4.0]), 7i64.to_le_bytes().to_vec()].concat();
    let bytes = raw(
        &[
            ("conv.weight", "F32", &[2, 2], [0, 16]),
            ("bn.num_batches_tracked", "I64", &[], [16, 24]),
        ],
        &data,
    );
    let tensors = parse(&bytes, ReadOptions::weights()).unwrap();
    assert_eq!(
        tensors["conv.weight"].to_vec2::<f32>().unwrap(),
        [[1.0, 2.0], [3.0, 4.0]]
    );
    assert_eq!(tensors["bn.num_batches_tracked"].dtype(), DType::I64);
    assert_eq!(tensors["bn.num_batches_tracked"].to_scalar::<i64>().unwrap(), 7);
}

#[test]
fn num_batches_tracked_buffers_still_load_as_weights() {
    let dev = Device::Cpu;
    let tensors = HashMap::from([
        (
            "bn.weight".to_string(),
            Tensor::ones(3, DType::F32, &dev).unwrap(),
        ),
        (
            "bn.num_batches_tracked".to_string(),
            Tensor::new(12i64, &dev).unwrap(),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bn.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let weights = Weights::from_file(&path, &dev).unwrap();
    assert_eq!(weights.tensors().len(), 2);
    let w = weights
        .build(DType::F32, &dev, true, |vb| Ok(vb.get(3, "bn.weight")?))
        .unwrap();
    assert_eq!(w.to_vec1::<f32>().unwrap(), [1.0; 3]);
}

#[test]
fn a_byte_length_mismatch_names_the_tensor() {
    let bytes = raw(
        &[
            ("fc.bias", "F32", &[2], [0, 8]),
            ("fc.weight", "F32", &[2, 3], [8, 28]),
        ],
        &[0u8; 28],
    );
    let (tensor, problem, message) = tensor_error(parse(&bytes, ReadOptions::any()));
    assert_eq!(tensor, "fc.weight");
    assert!(
        problem.contains("needs 24 bytes") && problem.contains("span 20 bytes"),
        "{message}"
    );
    assert!(problem.contains("[2, 3]") && problem.contains("F32"), "{message}");
}

#[test]
fn offsets_past_the_end_name_the_tensor_that_runs_past() {
    // `b` and `c` lie after the data: `b`, the first of them, is named.
    let bytes = raw(
        &[
            ("c", "F32", &[2], [16, 24]),
            ("a", "F32", &[2], [0, 8]),
            ("b", "F32", &[2], [8, 16]),
        ],
        &[0u8; 12],
    );
    let (tensor, problem, message) = tensor_error(parse(&bytes, ReadOptions::any()));
    assert_eq!(tensor, "b", "{message}");
    assert!(
        problem.contains("[8, 16]") && problem.contains("12 bytes"),
        "{message}"
    );
    assert!(problem.contains("1 more tensor"), "{message}");

    // A real file cut short: the last tensor (by offset) is the one named.
    let dev = Device::Cpu;
    let tensors = HashMap::from([
        ("first".to_string(), Tensor::zeros(4, DType::F32, &dev).unwrap()),
        ("second".to_string(), Tensor::zeros(4, DType::F64, &dev).unwrap()),
    ]);
    let full =
        safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v.clone())), None).unwrap();
    let cut = &full[..full.len() - 3];
    let st = safetensors::SafeTensors::deserialize(&full).unwrap();
    let last = st
        .tensors()
        .into_iter()
        .max_by_key(|(_, v)| v.data().as_ptr() as usize)
        .unwrap()
        .0;
    let (tensor, _, message) = tensor_error(parse(cut, ReadOptions::any()));
    assert_eq!(tensor, last, "{message}");
}

#[test]
fn overlapping_offsets_name_both_tensors() {
    let bytes = raw(
        &[("a", "F32", &[2], [0, 8]), ("b", "F32", &[2], [4, 12])],
        &[0u8; 12],
    );
    let (tensor, problem, message) = tensor_error(parse(&bytes, ReadOptions::any()));
    assert_eq!(tensor, "b");
    assert!(
        problem.contains("overlap") && problem.contains("`a`"),
        "{message}"
    );
}

#[test]
fn an_i32_weight_is_refused_with_its_name_and_dtype() {
    let bytes = raw(
        &[
            ("conv1.weight", "I32", &[2, 1, 1, 1], [0, 8]),
            ("conv1.bias", "F32", &[2], [8, 16]),
        ],
        &[0u8; 16],
    );
    let (tensor, problem, message) = tensor_error(parse(&bytes, ReadOptions::weights()));
    assert_eq!(tensor, "conv1.weight");
    assert!(
        problem.contains("expected a float dtype") && problem.contains("I32"),
        "{message}"
    );
    // Integer tensors are fine where any dtype is.
    let tensors = parse(&bytes, ReadOptions::any()).unwrap();
    assert_eq!(tensors["conv1.weight"].dtype(), DType::I32);
    // And refused by `Weights::from_file`, which reads weights.
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "int.safetensors", &bytes);
    let err = Weights::from_file(&path, &Device::Cpu).err().unwrap();
    assert!(
        matches!(&err, Error::Weights { tensor, .. } if tensor == "conv1.weight"),
        "{err:?}"
    );
    assert!(err.to_string().contains("int.safetensors"), "{err}");
    // Under `Float`, counters are refused too.
    let counter = raw(&[("bn.num_batches_tracked", "I64", &[], [0, 8])], &[0u8; 8]);
    parse(&counter, ReadOptions::weights()).unwrap();
    let (tensor, _, _) = tensor_error(parse(&counter, ReadOptions::float()));
    assert_eq!(tensor, "bn.num_batches_tracked");
}

#[test]
fn integer_tensors_in_memory_are_refused_for_float_variables() {
    let dev = Device::Cpu;
    let tensors = HashMap::from([("fc.weight".to_string(), Tensor::new(&[[1i64, 2]], &dev).unwrap())]);
    let weights = Weights::from_tensors(tensors, Some(PathBuf::from("remapped.safetensors")));
    let err = weights
        .build(DType::F32, &dev, false, |vb| Ok(vb.get((1, 2), "fc.weight")?))
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(
        message.contains("fc.weight") && message.contains("I64") && message.contains("float"),
        "{message}"
    );
}

#[test]
fn non_finite_values_are_refused_with_the_tensor_and_index() {
    let bytes = raw(
        &[("fc.weight", "F32", &[4], [0, 16])],
        &f32_bytes(&[0.5, f32::NAN, 1.0, f32::INFINITY]),
    );
    let (tensor, problem, message) = tensor_error(parse(&bytes, ReadOptions::weights()));
    assert_eq!(tensor, "fc.weight");
    assert!(problem.contains("2 non-finite value(s)"), "{message}");
    assert!(problem.contains("flat index 1 (NaN)"), "{message}");

    // f16 -inf, bf16 NaN, f64 inf.
    let f16_neg_inf = 0xFC00u16.to_le_bytes();
    let bf16_nan = 0x7FC0u16.to_le_bytes();
    let f64_inf = f64::INFINITY.to_le_bytes();
    for (dtype, bytes, what) in [
        ("F16", &f16_neg_inf[..], "-inf"),
        ("BF16", &bf16_nan[..], "NaN"),
        ("F64", &f64_inf[..], "inf"),
    ] {
        let data = [vec![0u8; bytes.len()], bytes.to_vec()].concat();
        let file = raw(&[("w", dtype, &[2], [0, data.len() as u64])], &data);
        let (tensor, problem, _) = tensor_error(parse(&file, ReadOptions::weights()));
        assert_eq!(tensor, "w");
        assert!(
            problem.contains(&format!("flat index 1 ({what})")),
            "{dtype}: {problem}"
        );
    }
    // Unless finiteness is not asked for.
    let lenient = ReadOptions {
        finite: false,
        ..ReadOptions::weights()
    };
    assert!(parse(&bytes, lenient).unwrap()["fc.weight"]
        .to_vec1::<f32>()
        .unwrap()[1]
        .is_nan());
}

#[test]
fn truncated_and_malformed_files_are_clear_file_errors() {
    let good = raw(&[("w", "F32", &[1], [0, 4])], &f32_bytes(&[1.0]));
    let message = file_error(parse(&good[..5], ReadOptions::any()));
    assert!(
        message.contains("truncated") && message.contains("5 bytes"),
        "{message}"
    );

    let message = file_error(parse(&good[..20], ReadOptions::any()));
    assert!(message.contains("header length says"), "{message}");

    let huge = [u64::MAX.to_le_bytes().to_vec(), b"{}".to_vec()].concat();
    let message = file_error(parse(&huge, ReadOptions::any()));
    assert!(
        message.contains(&u64::MAX.to_string()) && message.contains("2 bytes follow"),
        "{message}"
    );

    let mut not_utf8 = good.clone();
    not_utf8[9] = 0xFF;
    let message = file_error(parse(&not_utf8, ReadOptions::any()));
    assert!(
        message.contains("not UTF-8") && message.contains("offset 9"),
        "{message}"
    );

    let message = file_error(parse(&with_header("{\"w\": ", &[]), ReadOptions::any()));
    assert!(message.contains("not valid JSON"), "{message}");

    let message = file_error(parse(&with_header("[1, 2]", &[]), ReadOptions::any()));
    assert!(message.contains("an array"), "{message}");

    // The data cut short: the tensor that ran past the end is named.
    let (tensor, problem, _) = tensor_error(parse(&good[..good.len() - 1], ReadOptions::any()));
    assert_eq!(tensor, "w");
    assert!(problem.contains("truncated"), "{problem}");
}

#[test]
fn malformed_entries_name_the_tensor() {
    for (entry, tensor, expected) in [
        (r#""a": 3"#, "a", "expected an object"),
        (
            r#""b": {"dtype": "Q7", "shape": [], "data_offsets": [0, 0]}"#,
            "b",
            "unknown dtype \"Q7\"",
        ),
        (
            r#""c": {"dtype": "BOOL", "shape": [1], "data_offsets": [0, 1]}"#,
            "c",
            "BOOL is not supported",
        ),
        (
            r#""d": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}"#,
            "d",
            "`shape`",
        ),
        (
            r#""e": {"dtype": "F32", "shape": [1], "data_offsets": [4]}"#,
            "e",
            "`data_offsets`",
        ),
        (
            r#""f": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}"#,
            "f",
            "end before they begin",
        ),
        (
            r#""g": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}"#,
            "g",
            "too large",
        ),
        (
            r#""h": {"shape": [1], "data_offsets": [0, 4]}"#,
            "h",
            "no `dtype`",
        ),
    ] {
        let bytes = with_header(&format!("{{{entry}}}"), &[0u8; 4]);
        let (name, problem, message) = tensor_error(parse(&bytes, ReadOptions::any()));
        assert_eq!(name, tensor, "{message}");
        assert!(problem.contains(expected), "{message}");
    }
    // `__metadata__` is not a tensor.
    let bytes = with_header(
        r#"{"__metadata__": {"format": "pt"}, "w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}"#,
        &[9],
    );
    assert_eq!(parse(&bytes, ReadOptions::any()).unwrap().len(), 1);
}

#[test]
fn a_missing_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.safetensors");
    let err = read_safetensors(&path, &Device::Cpu, &ReadOptions::weights()).unwrap_err();
    assert!(matches!(err, Error::WeightsFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains("absent.safetensors: no such file"),
        "{err}"
    );
}
