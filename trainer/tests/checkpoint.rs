//! Atomic safetensors checkpoints.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarMap};
use trainer::checkpoint::{load_checkpoint, load_varmap, save_checkpoint, save_varmap};
use trainer::Error;

fn sample(offset: f32) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let w = Tensor::arange(0f32, 6.0, &dev)
        .unwrap()
        .affine(1.0, offset as f64)
        .unwrap();
    HashMap::from([
        ("conv1.weight".to_string(), w.reshape((2, 3)).unwrap()),
        (
            "conv1.bias".to_string(),
            Tensor::new(&[offset as f64, -1.5], &dev).unwrap(),
        ),
        ("step".to_string(), Tensor::new(&[7i64], &dev).unwrap()),
        ("counts".to_string(), Tensor::new(&[1u32, 2, 3], &dev).unwrap()),
        // Non-contiguous: must be written in logical order.
        ("transposed".to_string(), w.reshape((2, 3)).unwrap().t().unwrap()),
    ])
}

fn assert_same(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) {
    let mut keys: Vec<_> = a.keys().collect();
    keys.sort();
    let mut other: Vec<_> = b.keys().collect();
    other.sort();
    assert_eq!(keys, other);
    for k in keys {
        let (x, y) = (&a[k], &b[k]);
        assert_eq!((x.dims(), x.dtype()), (y.dims(), y.dtype()), "{k}");
        let x = x
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let y = y
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(x, y, "{k}");
    }
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn round_trip_creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs/a/epoch-001.safetensors");
    let tensors = sample(0.5);
    save_checkpoint(&path, &tensors).unwrap();
    let loaded = load_checkpoint(&path, &Device::Cpu).unwrap();
    assert_same(&tensors, &loaded);
    assert_eq!(
        loaded["transposed"].to_vec2::<f32>().unwrap(),
        vec![vec![0.5, 3.5], vec![1.5, 4.5], vec![2.5, 5.5]]
    );
    assert_eq!(listing(path.parent().unwrap()), vec!["epoch-001.safetensors"]);
    // A plain safetensors file: the reference reader parses it too.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("conv1.weight").unwrap().shape(), &[2, 3]);
    assert_eq!(
        st.tensor("conv1.weight").unwrap().dtype(),
        safetensors::Dtype::F32
    );
}

#[test]
fn existing_checkpoint_is_replaced_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    save_checkpoint(&path, &sample(1.0)).unwrap();
    let second = sample(2.0);
    save_checkpoint(&path, &second).unwrap();
    assert_same(&second, &load_checkpoint(&path, &Device::Cpu).unwrap());
    assert_eq!(listing(dir.path()), vec!["last.safetensors"]);
}

#[test]
fn failed_save_keeps_the_previous_checkpoint_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let first = sample(1.0);
    save_checkpoint(&path, &first).unwrap();
    let before = std::fs::read(&path).unwrap();

    // A dtype safetensors cannot store: the save fails and the old file is untouched.
    let mut bad = sample(3.0);
    let f4 = Tensor::from_raw_buffer(&[0u8; 2], DType::F4, &[4], &Device::Cpu).unwrap();
    assert_eq!(f4.dtype(), DType::F4);
    bad.insert("packed".into(), f4);
    let err = save_checkpoint(&path, &bad).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err:?}");
    assert!(
        err.to_string().contains("packed") && err.to_string().contains("model.safetensors"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(listing(dir.path()), vec!["model.safetensors"]);

    // A failure after the data was written (the final rename: the destination is a non-empty
    // directory): the temporary file is removed and the destination untouched.
    let blocked = dir.path().join("blocked.safetensors");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    let err = save_checkpoint(&blocked, &first).unwrap_err();
    match &err {
        Error::Io { path, .. } => assert_eq!(path, &blocked),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        listing(dir.path()),
        vec!["blocked.safetensors", "model.safetensors"]
    );
    assert_eq!(listing(&blocked), vec!["keep"]);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn concurrent_saves_to_one_path_leave_a_complete_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.safetensors");
    std::thread::scope(|s| {
        for i in 0..4 {
            let path = &path;
            s.spawn(move || save_checkpoint(path, &sample(i as f32)).unwrap());
        }
    });
    let loaded = load_checkpoint(&path, &Device::Cpu).unwrap();
    let offset = loaded["conv1.bias"].to_vec1::<f64>().unwrap()[0];
    assert_same(&sample(offset as f32), &loaded);
    assert_eq!(listing(dir.path()), vec!["shared.safetensors"]);
}

#[test]
fn truncated_corrupt_or_missing_files_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    save_checkpoint(&good, &sample(0.0)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for (name, content) in [
        ("truncated.safetensors", &bytes[..bytes.len() - 5]),
        ("header-only.safetensors", &bytes[..20]),
        ("empty.safetensors", &bytes[..0]),
        ("garbage.safetensors", &b"definitely not a checkpoint"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = load_checkpoint(&path, &Device::Cpu).unwrap_err();
        match &err {
            Error::Checkpoint { path: p, .. } => assert_eq!(p, &path),
            other => panic!("{name}: {other:?}"),
        }
        assert!(err.to_string().contains(name), "{err}");
    }
    let missing = dir.path().join("missing.safetensors");
    match load_checkpoint(&missing, &Device::Cpu).unwrap_err() {
        err @ Error::Io { .. } => {
            assert!(err.to_string().contains("missing.safetensors"), "{err}");
            let Error::Io { source, .. } = err else {
                unreachable!()
            };
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
}

fn varmap(fill: f64) -> VarMap {
    let vm = VarMap::new();
    let dev = Device::Cpu;
    vm.get((2, 3), "fc.weight", Init::Const(fill), DType::F32, &dev)
        .unwrap();
    vm.get(2, "fc.bias", Init::Const(-fill), DType::F32, &dev)
        .unwrap();
    vm
}

fn value(vm: &VarMap, name: &str) -> Vec<f32> {
    vm.data().lock().unwrap()[name]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

#[test]
fn varmap_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vm.safetensors");
    save_varmap(&path, &varmap(0.25)).unwrap();
    let loaded = load_checkpoint(&path, &Device::Cpu).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded["fc.weight"].dims(), &[2, 3]);

    let target = varmap(9.0);
    load_varmap(&path, &target).unwrap();
    assert_eq!(value(&target, "fc.weight"), vec![0.25; 6]);
    assert_eq!(value(&target, "fc.bias"), vec![-0.25; 2]);

    // A variable the file lacks, or of another shape: an error, and nothing is changed.
    let bigger = varmap(5.0);
    bigger
        .get(3, "extra", Init::Const(1.0), DType::F32, &Device::Cpu)
        .unwrap();
    let err = load_varmap(&path, &bigger).unwrap_err().to_string();
    assert!(err.contains("extra") && err.contains("vm.safetensors"), "{err}");
    assert_eq!(value(&bigger, "fc.weight"), vec![5.0; 6]);

    let other_shape = VarMap::new();
    other_shape
        .get(2, "fc.bias", Init::Const(3.0), DType::F32, &Device::Cpu)
        .unwrap();
    other_shape
        .get((3, 2), "fc.weight", Init::Const(3.0), DType::F32, &Device::Cpu)
        .unwrap();
    let err = load_varmap(&path, &other_shape).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
    assert_eq!(value(&other_shape, "fc.bias"), vec![3.0; 2]);
}
