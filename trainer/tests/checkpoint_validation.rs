//! Checkpoints, optimizer state and pretrained weights go through `backbone`'s validated
//! safetensors reader: crafted files and the messages of their errors.

use std::collections::HashMap;
use std::path::Path;

use backbone::init::SeededVarMap;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarMap};
use lenet::{LeNet, LeNetConfig};
use trainer::checkpoint::{
    load_checkpoint, load_checkpoint_with, load_varmap, save_checkpoint, save_varmap, ReadOptions,
};
use trainer::data::{ImageDataset, Mnist};
use trainer::pretrained::read_safetensors;
use trainer::run::{checkpoint_path, optimizer_path};
use trainer::train::{train as fit, TrainConfig, TrainData};
use trainer::Error;

/// A safetensors file written by hand: `entries` are `(name, dtype, shape, [begin, end])`.
fn raw(entries: &[(&str, &str, &[usize], [u64; 2])], data: &[u8]) -> Vec<u8> {
    let fields: Vec<String> = entries
        .iter()
        .map(|(name, dtype, shape, [b, e])| {
            format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{b},{e}]}}"#)
        })
        .collect();
    let header = format!("{{{}}}", fields.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The problem of an [`Error::Checkpoint`] about `path`, with the whole message.
fn checkpoint_problem(err: Error, path: &Path) -> (String, String) {
    let message = err.to_string();
    match err {
        Error::Checkpoint { path: p, problem } => {
            assert_eq!(p, path);
            assert!(message.contains(&path.display().to_string()), "{message}");
            (problem, message)
        }
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn a_byte_length_mismatch_names_the_tensor_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("epoch-001.safetensors");
    let bytes = raw(
        &[
            ("fc.bias", "F32", &[2], [0, 8]),
            ("fc.weight", "F32", &[3], [8, 24]),
        ],
        &[0u8; 24],
    );
    std::fs::write(&path, bytes).unwrap();
    let (problem, message) = checkpoint_problem(load_checkpoint(&path, &Device::Cpu).unwrap_err(), &path);
    assert!(
        problem.starts_with("tensor `fc.weight`: byte length mismatch"),
        "{message}"
    );
    assert!(
        problem.contains("needs 12 bytes") && problem.contains("span 16 bytes"),
        "{message}"
    );
}

#[test]
fn a_truncated_checkpoint_names_the_tensor_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    let dev = Device::Cpu;
    save_checkpoint(
        &path,
        &HashMap::from([(
            "only".to_string(),
            Tensor::ones((4, 4), DType::F32, &dev).unwrap(),
        )]),
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let (problem, message) = checkpoint_problem(load_checkpoint(&path, &dev).unwrap_err(), &path);
    assert!(
        problem.starts_with("tensor `only`: data_offsets [0, 64] run past the end"),
        "{message}"
    );
    assert!(
        problem.contains("54 bytes") && problem.contains("truncated"),
        "{message}"
    );

    std::fs::write(&path, &bytes[..4]).unwrap();
    let (problem, message) = checkpoint_problem(load_checkpoint(&path, &dev).unwrap_err(), &path);
    assert!(
        problem.starts_with("truncated") && problem.contains("4 bytes"),
        "{message}"
    );
}

#[test]
fn integer_counters_still_round_trip_but_nan_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let path = dir.path().join("mixed.safetensors");
    let tensors = HashMap::from([
        ("step".to_string(), Tensor::new(&[7i64], &dev).unwrap()),
        ("w".to_string(), Tensor::new(&[1f32, 2.0], &dev).unwrap()),
    ]);
    save_checkpoint(&path, &tensors).unwrap();
    assert_eq!(load_checkpoint(&path, &dev).unwrap().len(), 2);
    // Optimizer state must be float.
    let (problem, message) = checkpoint_problem(
        load_checkpoint_with(&path, &dev, &ReadOptions::float()).unwrap_err(),
        &path,
    );
    assert!(
        problem.contains("tensor `step`: expected a float dtype") && problem.contains("I64"),
        "{message}"
    );

    let nan = dir.path().join("nan.safetensors");
    let tensors = HashMap::from([(
        "w".to_string(),
        Tensor::new(&[1f32, 2.0, f32::NAN], &dev).unwrap(),
    )]);
    save_checkpoint(&nan, &tensors).unwrap();
    let (problem, message) = checkpoint_problem(load_checkpoint(&nan, &dev).unwrap_err(), &nan);
    assert!(
        problem.contains("tensor `w`: 1 non-finite value(s)") && problem.contains("flat index 2 (NaN)"),
        "{message}"
    );
}

#[test]
fn load_varmap_refuses_an_integer_tensor_for_a_float_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int.safetensors");
    let dev = Device::Cpu;
    let tensors = HashMap::from([("fc.weight".to_string(), Tensor::new(&[[1i32, 2]], &dev).unwrap())]);
    save_checkpoint(&path, &tensors).unwrap();
    let vm = VarMap::new();
    vm.get((1, 2), "fc.weight", Init::Const(0.5), DType::F32, &dev)
        .unwrap();
    let (problem, message) = checkpoint_problem(load_varmap(&path, &vm).unwrap_err(), &path);
    assert!(
        problem.contains("tensor `fc.weight`: expected a float dtype") && problem.contains("I32"),
        "{message}"
    );
    // Untouched.
    let data = vm.data().lock().unwrap();
    assert_eq!(data["fc.weight"].to_vec2::<f32>().unwrap(), [[0.5, 0.5]]);
}

#[test]
fn pretrained_weights_refuse_integer_and_nan_weights_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let int = dir.path().join("int.safetensors");
    let bytes = raw(
        &[
            ("conv1.weight", "I32", &[1, 1, 1, 2], [0, 8]),
            ("conv1.bias", "F32", &[1], [8, 12]),
        ],
        &[0u8; 12],
    );
    std::fs::write(&int, bytes).unwrap();
    let err = read_safetensors(&int).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, Error::Model(backbone::Error::Weights { tensor, .. }) if tensor == "conv1.weight"),
        "{err:?}"
    );
    assert!(
        message.contains("int.safetensors") && message.contains("I32"),
        "{message}"
    );

    let nan = dir.path().join("nan.safetensors");
    let data = [f32_bytes(&[0.0, f32::INFINITY]), f32_bytes(&[1.0])].concat();
    std::fs::write(
        &nan,
        raw(
            &[
                ("conv1.weight", "F32", &[1, 1, 1, 2], [0, 8]),
                ("conv1.bias", "F32", &[1], [8, 12]),
            ],
            &data,
        ),
    )
    .unwrap();
    let vm = VarMap::new();
    vm.get(
        (1, 1, 1, 2),
        "conv1.weight",
        Init::Const(0.0),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let err: Error = read_safetensors(&nan)
        .and_then(|t| Ok(backbone::weights::load_into(&vm, t, &nan, &[])?))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("nan.safetensors") && message.contains("conv1.weight") && message.contains("(inf)"),
        "{message}"
    );

    // PyTorch's I64 `num_batches_tracked` buffers are still read (and ignored by the loader).
    let bn = dir.path().join("bn.safetensors");
    let data = [f32_bytes(&[0.25, 0.5]), 3i64.to_le_bytes().to_vec()].concat();
    std::fs::write(
        &bn,
        raw(
            &[
                ("conv1.weight", "F32", &[1, 1, 1, 2], [0, 8]),
                ("bn.num_batches_tracked", "I64", &[], [8, 16]),
            ],
            &data,
        ),
    )
    .unwrap();
    assert_eq!(read_safetensors(&bn).unwrap().len(), 2);
    let report = backbone::weights::load_into(&vm, read_safetensors(&bn).unwrap(), &bn, &[]).unwrap();
    assert_eq!(report.loaded, ["conv1.weight"]);
}

fn slice(data: &ImageDataset, n: usize) -> ImageDataset {
    let size = data.image_size();
    ImageDataset {
        images: data.images[..n * size].to_vec(),
        labels: data.labels[..n].to_vec(),
        ..data.clone()
    }
}

#[test]
fn resuming_from_a_nan_optimizer_state_names_the_file_and_the_entry() {
    let mnist = Mnist::bundled().unwrap();
    let (train, test) = (slice(&mnist.train, 32), slice(&mnist.test, 16));
    let dir = tempfile::tempdir().unwrap();
    let vars = SeededVarMap::new(1);
    let model = LeNet::new(&LeNetConfig::lenet5(), vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    save_varmap(&checkpoint_path(dir.path(), 1), vars.varmap()).unwrap();
    let state = HashMap::from([(
        "momentum_buffer.conv1.weight".to_string(),
        Tensor::new(&[0f32, f32::NAN], &Device::Cpu).unwrap(),
    )]);
    let state_path = optimizer_path(dir.path(), 1);
    save_checkpoint(&state_path, &state).unwrap();
    let config = TrainConfig {
        epochs: 2,
        out_dir: dir.path().to_path_buf(),
        verbose: false,
        batch_size: 16,
        run: trainer::run::RunOptions {
            resume: true,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let data = TrainData::mnist(train, test, trainer::data::Preprocess::mnist(), None).unwrap();
    let err = fit(&model, vars.varmap(), data, &config, &Device::Cpu).unwrap_err();
    let (problem, message) = checkpoint_problem(err, &state_path);
    assert!(
        problem.contains("tensor `momentum_buffer.conv1.weight`: 1 non-finite value(s)"),
        "{message}"
    );
}
