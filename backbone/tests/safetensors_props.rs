//! Property tests of the safetensors reader: a valid file, truncated and with bytes flipped, or
//! with a header of arbitrary shapes and offsets, gives `Ok` or `Err`, never a panic, and never
//! an allocation sized by a corrupt header (the test would abort).

use std::collections::HashMap;
use std::path::Path;

use backbone::weights::{parse_safetensors, ReadOptions};
use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;

/// Few cases (the suite runs on 2 cores; `PROPTEST_CASES` asks for more), no regression files.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid file with float weights of several dtypes and a `num_batches_tracked` counter.
fn valid() -> Vec<u8> {
    let dev = Device::Cpu;
    let w = Tensor::arange(0f32, 12.0, &dev).unwrap().reshape((3, 4)).unwrap();
    let tensors: HashMap<String, Tensor> = HashMap::from([
        ("conv.weight".to_string(), w.clone()),
        (
            "conv.bias".to_string(),
            w.to_dtype(DType::F16).unwrap().narrow(1, 0, 1).unwrap(),
        ),
        (
            "bn.running_var".to_string(),
            w.to_dtype(DType::BF16).unwrap().get(0).unwrap(),
        ),
        ("fc.weight".to_string(), w.to_dtype(DType::F64).unwrap()),
        (
            "bn.num_batches_tracked".to_string(),
            Tensor::new(5i64, &dev).unwrap(),
        ),
    ]);
    safetensors::tensor::serialize(
        tensors.iter().map(|(k, v)| (k.as_str(), v.contiguous().unwrap())),
        None,
    )
    .unwrap()
}

fn parse(bytes: &[u8], options: ReadOptions) -> backbone::Result<HashMap<String, Tensor>> {
    parse_safetensors(bytes, Path::new("fuzzed.safetensors"), &Device::Cpu, &options)
}

/// Every tensor read is as large as its shape says.
fn check(bytes: &[u8]) {
    for options in [ReadOptions::weights(), ReadOptions::any(), ReadOptions::float()] {
        if let Ok(tensors) = parse(bytes, options) {
            for tensor in tensors.values() {
                assert_eq!(tensor.elem_count(), tensor.dims().iter().product::<usize>());
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_files_never_panic(
        flips in prop::collection::vec((any::<usize>(), 1u8..=255), 0..6),
        keep in prop::option::of(0.0f64..1.0),
    ) {
        let mut bytes = valid();
        let len = bytes.len();
        for (i, mask) in flips {
            bytes[i % len] ^= mask;
        }
        if let Some(keep) = keep {
            bytes.truncate((len as f64 * keep) as usize);
        }
        check(&bytes);
    }

    #[test]
    fn any_header_length_is_checked_against_the_file(n in any::<u64>(), tail in 0usize..64) {
        let mut bytes = n.to_le_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b' ', tail));
        let result = parse(&bytes, ReadOptions::any());
        prop_assert!(result.is_err() || n <= tail as u64);
    }

    #[test]
    fn headers_of_arbitrary_shapes_and_offsets_never_panic(
        entries in prop::collection::vec(
            (
                prop::sample::select(vec!["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F4", "F6_E2M3", "X"]),
                prop::collection::vec(prop_oneof![0u64..6, any::<u64>()], 0..4),
                prop_oneof![0u64..64, any::<u64>()],
                prop_oneof![0u64..64, any::<u64>()],
            ),
            0..5,
        ),
        data_len in 0usize..80,
    ) {
        let fields: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(i, (dtype, shape, b, e))| {
                format!(r#""t{i}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{b},{e}]}}"#)
            })
            .collect();
        let header = format!("{{{}}}", fields.join(","));
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend((0..data_len).map(|i| i as u8));
        check(&bytes);
    }
}

#[test]
fn the_valid_file_loads() {
    let tensors = parse(&valid(), ReadOptions::weights()).unwrap();
    assert_eq!(tensors.len(), 5);
    assert_eq!(tensors["conv.bias"].dims(), [3, 1]);
    assert_eq!(tensors["bn.num_batches_tracked"].dtype(), DType::I64);
}
